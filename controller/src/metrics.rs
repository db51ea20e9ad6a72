//! Drover's Prometheus metrics: one place that registers them and typed methods to record them, so label values are
//! always bounded (`&'static str` kinds and enums, never error text or free-form names).
//!
//! Names follow `drover_<name>_<unit>_total` (DESIGN §7). Per-app labels appear only on gauges users graph per app.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Label set `{priority}` of `queue_wait_seconds`: `key` or `sweep`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabel {
    priority: &'static str,
}

/// Label set `{phase}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// Label set `{on}` of `apps_waiting`: `dependencies` or `dependents`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitingLabel {
    on: &'static str,
}

/// Label set `{endpoint, code}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
    code: String,
}

/// Label set `{endpoint}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

/// Label set `{op, code}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
    code: String,
}

/// Label set `{source}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// Label set `{version}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Label set `{kind}` for writes dropped or failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Label set `{direction}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

/// Label set `{provider, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderResultLabels {
    provider: &'static str,
    result: &'static str,
}

/// Label set `{target, result}` of notifications: `target` is a name from the notifications file (at most
/// `notify::config::MAX_TARGETS` of them, checked at start), so the set stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabels {
    target: String,
    result: &'static str,
}

/// How one notification (or one attempt at it) ended: the `result` label of `drover_notifications_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationResult {
    /// The receiver accepted it (2xx).
    Delivered,
    /// An attempt failed and another follows (one per retry).
    Retried,
    /// Given up: retries exhausted, or refused (a 4xx other than 408/429).
    Failed,
    /// The target's queue was full; never sent.
    Dropped,
    /// The target had already taken this occurrence; not sent again.
    Deduplicated,
}

impl NotificationResult {
    /// Every result, for the zero series of a new target.
    pub const ALL: [NotificationResult; 5] = [
        NotificationResult::Delivered,
        NotificationResult::Retried,
        NotificationResult::Failed,
        NotificationResult::Dropped,
        NotificationResult::Deduplicated,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationResult::Delivered => "delivered",
            NotificationResult::Retried => "retried",
            NotificationResult::Failed => "failed",
            NotificationResult::Dropped => "dropped",
            NotificationResult::Deduplicated => "deduplicated",
        }
    }
}

/// Label set `{namespace, app}`: only on the per-app gauges DESIGN §7 lists.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    namespace: String,
    app: String,
}

/// All of Drover's metrics.
/// A call refused by an ACL: which server, and the call's bounded name (the `op`/`endpoint` of the request metrics).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeniedLabels {
    server: &'static str,
    call: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    reconcile_total: Family<ResultLabel, Counter>,
    reconcile_duration: Histogram,
    queue_depth: Gauge,
    queue_wait: Family<PriorityLabel, Histogram>,
    apps: Family<PhaseLabel, Gauge>,
    apps_waiting: Family<WaitingLabel, Gauge>,
    drift_detected_total: Counter,
    nomad_requests_total: Family<EndpointLabels, Counter>,
    nomad_request_duration: Family<EndpointLabel, Histogram>,
    consul_requests_total: Family<OpLabels, Counter>,
    permission_denied_total: Family<DeniedLabels, Counter>,
    consul_bytes_read_total: Counter,
    watch_restarts_total: Family<SourceLabel, Counter>,
    status_writes_total: Family<ResultLabel, Counter>,
    nomad_writes_total: Family<KindLabel, Counter>,
    leader: Gauge,
    writes_dropped_total: Counter,
    autoscale_events_total: Family<DirectionLabel, Counter>,
    autoscale_desired: Family<AppLabels, Gauge>,
    autoscale_current: Family<AppLabels, Gauge>,
    autoscale_check_errors_total: Counter,
    autoscale_evaluation_duration: Histogram,
    /// The rollout metrics (issue #8).
    pub rollout: crate::rollout::metrics::RolloutMetrics,
    analysis_runs_total: Family<ResultLabel, Counter>,
    analysis_measurements_total: Family<ProviderResultLabels, Counter>,
    analysis_query_duration: Histogram,
    notifications_total: Family<NotificationLabels, Counter>,
}

fn code_label(code: u16) -> String {
    if code == 0 { "error".to_string() } else { code.to_string() }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric; `build_info{version}` is set at once.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("drover");
        let reconcile_total = Family::<ResultLabel, Counter>::default();
        registry.register("reconcile", "Reconciles finished, by result", reconcile_total.clone());
        let reconcile_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", reconcile_duration.clone());
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Keys waiting in the work queue", queue_depth.clone());
        let queue_wait = Family::<PriorityLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 18))
        });
        registry.register(
            "queue_wait_seconds",
            "Time a due key waited for a worker, by priority (key: one app's wake-up; sweep: start, resync, new leader)",
            queue_wait.clone(),
        );
        let apps = Family::<PhaseLabel, Gauge>::default();
        registry.register("apps", "Apps by phase", apps.clone());
        let apps_waiting = Family::<WaitingLabel, Gauge>::default();
        registry.register(
            "apps_waiting",
            "Apps held back by spec.dependsOn: on=dependencies (not created or rolled out yet), on=dependents (a deleted record's deletionPolicy waits)",
            apps_waiting.clone(),
        );
        let drift_detected_total = Counter::default();
        registry.register("drift_detected", "Jobs found changed behind Drover's back", drift_detected_total.clone());
        let nomad_requests_total = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "nomad_requests",
            "Nomad API requests by endpoint and status code",
            nomad_requests_total.clone(),
        );
        let nomad_request_duration = Family::<EndpointLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "nomad_request_duration_seconds",
            "Nomad API request latency",
            nomad_request_duration.clone(),
        );
        let consul_requests_total = Family::<OpLabels, Counter>::default();
        registry.register(
            "consul_requests",
            "Consul API requests by operation and status code",
            consul_requests_total.clone(),
        );
        let permission_denied_total = Family::<DeniedLabels, Counter>::default();
        registry.register(
            "permission_denied",
            "Calls refused by an ACL (HTTP 403), by server and call: what Drover's token lacks",
            permission_denied_total.clone(),
        );
        let consul_bytes_read_total = Counter::default();
        registry.register(
            "consul_read_bytes",
            "Bytes of KV listings read from Consul",
            consul_bytes_read_total.clone(),
        );
        let watch_restarts_total = Family::<SourceLabel, Counter>::default();
        registry.register("watch_restarts", "Watch restarts (relists) by source", watch_restarts_total.clone());
        let status_writes_total = Family::<ResultLabel, Counter>::default();
        registry.register("status_writes", "Status writes to Consul by result", status_writes_total.clone());
        let nomad_writes_total = Family::<KindLabel, Counter>::default();
        registry.register("nomad_writes", "Writes sent to Nomad by kind", nomad_writes_total.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 when this replica is the leader and reconciles", leader.clone());
        let writes_dropped_total = Counter::default();
        registry.register(
            "writes_dropped",
            "Writes not sent because this replica stopped leading after the reconcile started",
            writes_dropped_total.clone(),
        );
        let autoscale_events_total = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "autoscale_events",
            "Scales made by autoscaling, by direction",
            autoscale_events_total.clone(),
        );
        let autoscale_desired = Family::<AppLabels, Gauge>::default();
        registry.register("autoscale_desired_count", "The count autoscaling wants, per app", autoscale_desired.clone());
        let autoscale_current = Family::<AppLabels, Gauge>::default();
        registry.register("autoscale_current_count", "The scaled group's count, per app", autoscale_current.clone());
        let autoscale_check_errors_total = Counter::default();
        registry.register(
            "autoscale_check_errors",
            "Autoscaling checks without a usable measurement (query errors, no series, NaN)",
            autoscale_check_errors_total.clone(),
        );
        let autoscale_evaluation_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "autoscale_evaluation_duration_seconds",
            "Time one measurement round took (all its queries)",
            autoscale_evaluation_duration.clone(),
        );
        let rollout = crate::rollout::metrics::RolloutMetrics::register(&mut registry);
        let analysis_runs_total = Family::<ResultLabel, Counter>::default();
        registry.register(
            "analysis_runs",
            "Analysis runs (and webhook steps) ended, by result",
            analysis_runs_total.clone(),
        );
        let analysis_measurements_total = Family::<ProviderResultLabels, Counter>::default();
        registry.register(
            "analysis_measurements",
            "Analysis measurements taken (or attempted: result error), by provider and result",
            analysis_measurements_total.clone(),
        );
        let analysis_query_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "analysis_query_duration_seconds",
            "Time one analysis call took (Prometheus query, web metric or webhook), answered or not",
            analysis_query_duration.clone(),
        );
        let notifications_total = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications by target and result (delivered, retried, failed, dropped, deduplicated)",
            notifications_total.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "Build information", build_info);
        Metrics {
            registry: Mutex::new(registry),
            reconcile_total,
            reconcile_duration,
            queue_depth,
            queue_wait,
            apps,
            apps_waiting,
            drift_detected_total,
            nomad_requests_total,
            nomad_request_duration,
            consul_requests_total,
            permission_denied_total,
            consul_bytes_read_total,
            watch_restarts_total,
            status_writes_total,
            nomad_writes_total,
            leader,
            writes_dropped_total,
            autoscale_events_total,
            autoscale_desired,
            autoscale_current,
            autoscale_check_errors_total,
            autoscale_evaluation_duration,
            rollout,
            analysis_runs_total,
            analysis_measurements_total,
            analysis_query_duration,
            notifications_total,
        }
    }

    /// A notification to `target` ended (or an attempt did) with `result`.
    pub fn notification(&self, target: &str, result: NotificationResult) {
        self.notifications_total
            .get_or_create(&NotificationLabels { target: target.to_string(), result: result.as_str() })
            .inc();
    }

    /// Creates the zero series of a target, so rates exist before its first notification.
    pub fn notification_target(&self, target: &str) {
        for result in NotificationResult::ALL {
            let _ = self
                .notifications_total
                .get_or_create(&NotificationLabels { target: target.to_string(), result: result.as_str() });
        }
    }

    /// An analysis run ended with `result` (`successful`, `failed`, `inconclusive`, `error`).
    pub fn analysis_run_finished(&self, result: &'static str) {
        self.analysis_runs_total.get_or_create(&ResultLabel { result }).inc();
    }

    /// One analysis measurement of `provider` (`prometheus`, `web`, `webhook`) was judged `result` (`successful`,
    /// `failed`, `inconclusive`, `error`).
    pub fn analysis_measured(&self, provider: &'static str, result: &'static str) {
        self.analysis_measurements_total.get_or_create(&ProviderResultLabels { provider, result }).inc();
    }

    /// One analysis call took `elapsed`.
    pub fn analysis_query(&self, elapsed: Duration) {
        self.analysis_query_duration.observe(elapsed.as_secs_f64());
    }

    /// An autoscaling evaluation of `namespace/app` saw `current` and wanted `desired`, with `errors` checks
    /// lacking a usable measurement; `scaled` is the direction of the scale it made, if any.
    pub fn autoscale_evaluated(
        &self,
        namespace: &str,
        app: &str,
        current: i64,
        desired: i64,
        errors: usize,
        scaled: Option<&'static str>,
    ) {
        let labels = AppLabels { namespace: namespace.to_string(), app: app.to_string() };
        self.autoscale_current.get_or_create(&labels).set(current);
        self.autoscale_desired.get_or_create(&labels).set(desired);
        self.autoscale_check_errors_total.inc_by(errors as u64);
        if let Some(direction) = scaled {
            self.autoscale_events_total.get_or_create(&DirectionLabel { direction }).inc();
        }
    }

    /// One measurement round took `elapsed`.
    pub fn autoscale_round(&self, elapsed: Duration) {
        self.autoscale_evaluation_duration.observe(elapsed.as_secs_f64());
    }

    /// Registers more metrics in the same registry: those only one command has (`sync --watch`'s).
    pub fn register_with(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]) of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        to_prometheus_text(&out)
    }

    /// One reconcile finished with `result` (`ok`, `requeue`, `error`, …) after `elapsed`.
    pub fn reconcile_finished(&self, result: &'static str, elapsed: Duration) {
        self.reconcile_total.get_or_create(&ResultLabel { result }).inc();
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    /// A due key waited `waited` for a worker before its reconcile started.
    pub fn queue_waited(&self, priority: crate::queue::Priority, waited: Duration) {
        let priority = match priority {
            crate::queue::Priority::Key => "key",
            crate::queue::Priority::Sweep => "sweep",
        };
        self.queue_wait.get_or_create(&PriorityLabel { priority }).observe(waited.as_secs_f64());
    }

    /// The work queue holds `depth` keys.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Sets how many apps wait for their dependencies and how many deleted apps wait for their dependents.
    pub fn set_apps_waiting(&self, on_dependencies: usize, on_dependents: usize) {
        for (on, n) in [("dependencies", on_dependencies), ("dependents", on_dependents)] {
            self.apps_waiting.get_or_create(&WaitingLabel { on }).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Replaces the per-phase app counts.
    pub fn set_apps_by_phase<'a>(
        &self,
        counts: impl IntoIterator<Item = (&'static str, usize)>,
        all_phases: impl IntoIterator<Item = &'a &'static str>,
    ) {
        for phase in all_phases {
            self.apps.get_or_create(&PhaseLabel { phase }).set(0);
        }
        for (phase, n) in counts {
            self.apps.get_or_create(&PhaseLabel { phase }).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// A job was found changed behind Drover's back.
    pub fn drift_detected(&self) {
        self.drift_detected_total.inc();
    }

    /// One Nomad request answered with `code` (0 = no answer) after `elapsed`; a 403 also counts as a denial.
    pub fn nomad_request(&self, endpoint: &'static str, code: u16, elapsed: Duration) {
        self.nomad_requests_total.get_or_create(&EndpointLabels { endpoint, code: code_label(code) }).inc();
        if code == 403 {
            self.permission_denied_total.get_or_create(&DeniedLabels { server: "nomad", call: endpoint }).inc();
        }
        self.nomad_request_duration.get_or_create(&EndpointLabel { endpoint }).observe(elapsed.as_secs_f64());
    }

    /// A call `server` refused or filtered by an ACL; `call` is a bounded name (an `op` or `endpoint`).
    pub fn permission_denied(&self, server: &'static str, call: &'static str) {
        self.permission_denied_total.get_or_create(&DeniedLabels { server, call }).inc();
    }

    /// One Consul request answered with `code` (0 = no answer); a 403 also counts as a denial.
    pub fn consul_request(&self, op: &'static str, code: u16) {
        self.consul_requests_total.get_or_create(&OpLabels { op, code: code_label(code) }).inc();
        if code == 403 {
            self.permission_denied_total.get_or_create(&DeniedLabels { server: "consul", call: op }).inc();
        }
    }

    /// `n` bytes of KV listing were read from Consul.
    pub fn consul_bytes_read(&self, n: usize) {
        self.consul_bytes_read_total.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// A watch started over (relist) for `source` (`consul` or `nomad`).
    pub fn watch_restart(&self, source: &'static str) {
        self.watch_restarts_total.get_or_create(&SourceLabel { source }).inc();
    }

    /// A status write ended with `result` (`written`, `conflict`, `error`).
    pub fn status_write(&self, result: &'static str) {
        self.status_writes_total.get_or_create(&ResultLabel { result }).inc();
    }

    /// A write of `kind` (`register`, `stop`, `purge`) was sent to Nomad.
    pub fn nomad_write(&self, kind: &'static str) {
        self.nomad_writes_total.get_or_create(&KindLabel { kind }).inc();
    }

    /// A write was not sent: the replica stopped leading in the term its reconcile started in.
    pub fn write_dropped(&self) {
        self.writes_dropped_total.inc();
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

/// The content type of [`Metrics::encode`]: the classic Prometheus text format, which every scraper and
/// `promtool check metrics` read.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text (what `prometheus-client` writes) → Prometheus text format 0.0.4: a counter family is named with
/// its `_total` suffix in `# HELP`/`# TYPE` (OpenMetrics names the family without it, which the classic parser
/// reads as samples with no help text), `# UNIT` and `# EOF` are dropped.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_should_name_counter_families_as_the_classic_format_does() {
        let om = "# HELP drover_reconcile Reconciles.\n# TYPE drover_reconcile counter\ndrover_reconcile_total{result=\"ok\"} 1\n# HELP drover_apps Apps.\n# TYPE drover_apps gauge\n# UNIT drover_apps apps\ndrover_apps 3\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP drover_reconcile_total Reconciles.\n# TYPE drover_reconcile_total counter\ndrover_reconcile_total{result=\"ok\"} 1\n# HELP drover_apps Apps.\n# TYPE drover_apps gauge\ndrover_apps 3\n"
        );
    }

    #[test]
    fn encode_should_expose_build_info_and_recorded_requests() {
        let m = Metrics::new();
        m.nomad_request("register", 200, Duration::from_millis(3));
        m.consul_request("kv_get", 0);
        let text = m.encode();
        assert!(text.contains("drover_build_info{version="), "{text}");
        assert!(text.contains("drover_nomad_requests_total{endpoint=\"register\",code=\"200\"} 1"), "{text}");
        assert!(text.contains("drover_consul_requests_total{op=\"kv_get\",code=\"error\"} 1"), "{text}");
    }
}
