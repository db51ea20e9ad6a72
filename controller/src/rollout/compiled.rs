//! [`CompiledTemplate`]: an analysis template (`spec.analysis.NAME`) checked once, with its conditions parsed, its
//! query or URL parsed as a template and every default applied. Validation builds it with the same function the
//! analysis stage uses, so a record that validates never fails later for a reason validation could have seen.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::analysis::JsonPath;
use crate::app::validate_strategy::check_http_url;
use crate::app::{AnalysisTemplate, FieldError, HumanDuration, OnEmpty};
use crate::expr::Condition;
use crate::prometheus::{QueryTemplate, ResolveError, RolloutVars};

/// Time between measurements when `interval` is left out.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// How long a query or call may take when `timeout` is left out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Errors in a row that fail a run when `consecutiveErrorLimit` is left out.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// The longest wait before an error is retried: errors are retried sooner than the interval.
pub const ERROR_RETRY: Duration = Duration::from_secs(5);
/// The most measurements a run may ask for (`count`), and the largest limit: far above any real analysis, low
/// enough that a step's deadline stays finite and a typo is caught.
pub const MAX_MEASUREMENT_COUNT: i64 = 10_000;

/// Where a measurement comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Provider {
    /// An instant query to a Prometheus server.
    Prometheus {
        /// The server's base URL (http or https).
        address: String,
        /// The PromQL query.
        query: QueryTemplate,
        /// Request headers.
        headers: BTreeMap<String, String>,
    },
    /// A JSON document from an HTTP endpoint.
    Web {
        /// The URL (http or https, checked again once resolved).
        url: QueryTemplate,
        /// Where the value is in the answer (the analysis stage's own parser, so what validates is what runs).
        json_path: JsonPath,
        /// Request headers.
        headers: BTreeMap<String, String>,
    },
}

impl Provider {
    /// A bounded label for metrics: `prometheus` or `web`.
    pub fn kind(&self) -> &'static str {
        match self {
            Provider::Prometheus { .. } => "prometheus",
            Provider::Web { .. } => "web",
        }
    }

    fn template(&self) -> &QueryTemplate {
        match self {
            Provider::Prometheus { query, .. } => query,
            Provider::Web { url, .. } => url,
        }
    }
}

/// An analysis template ready to run: parsed, checked, defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledTemplate {
    /// The template as written (for what the fields below do not carry over, e.g. to show it).
    pub template: AnalysisTemplate,
    /// Where measurements come from.
    pub provider: Provider,
    /// When it measures and how many results it tolerates (timeout, interval, count, limits).
    pub schedule: Schedule,
    /// Passes a measurement; `None`: a measurement passes unless `failure` holds.
    pub success: Option<Condition>,
    /// Fails a measurement; checked first.
    pub failure: Option<Condition>,
    /// How an empty result counts.
    pub on_empty: OnEmpty,
    /// How a NaN result counts.
    pub on_nan: OnEmpty,
    /// Reported, never decisive.
    pub dry_run: bool,
}

impl CompiledTemplate {
    /// Checks `t` and applies its defaults. Error paths are relative to the template (`prometheus.query`,
    /// `successCondition`); validation prefixes them with `spec.analysis.NAME`.
    ///
    /// # Errors
    /// Every problem found, each with its path.
    pub fn new(t: &AnalysisTemplate) -> Result<CompiledTemplate, Vec<FieldError>> {
        let mut errors = Vec::new();
        let provider = provider(t, &mut errors);
        let schedule = Schedule::checked(t, &mut errors);
        let mut condition = |path: &str, text: &Option<String>| {
            let text = text.as_ref()?;
            Condition::parse(text)
                .map_err(|e| errors.push(FieldError::new(path, format!("`{text}` does not parse: {e}"))))
                .ok()
        };
        let success = condition("successCondition", &t.success_condition);
        let failure = condition("failureCondition", &t.failure_condition);
        if t.success_condition.is_none() && t.failure_condition.is_none() {
            errors.push(FieldError::new(
                "successCondition",
                "give successCondition, failureCondition or both: without a condition nothing is judged",
            ));
        }
        match provider {
            Some(provider) if errors.is_empty() => Ok(CompiledTemplate {
                template: t.clone(),
                provider,
                schedule,
                success,
                failure,
                on_empty: t.on_empty.unwrap_or_default(),
                on_nan: t.on_nan.unwrap_or_default(),
                dry_run: t.dry_run,
            }),
            _ => Err(errors),
        }
    }

    /// Whether a condition mentions `baseline`: each measurement then also runs the query for the stable version.
    pub fn needs_baseline(&self) -> bool {
        self.success.as_ref().is_some_and(Condition::uses_baseline)
            || self.failure.as_ref().is_some_and(Condition::uses_baseline)
    }

    /// The `{{ .Args.NAME }}` the query or URL uses: a step running the template must give each.
    pub fn args(&self) -> BTreeSet<&str> {
        self.provider.template().args()
    }

    /// The query (or URL) for these values.
    ///
    /// # Errors
    /// A variable without a value (see [`QueryTemplate::resolve`]).
    pub fn resolve(&self, vars: &RolloutVars) -> Result<String, ResolveError> {
        self.provider.template().resolve(vars)
    }

    /// The query (or URL) for the stable version, when a condition needs a `baseline`.
    ///
    /// # Errors
    /// No stable version yet, or a variable without a value.
    pub fn resolve_baseline(&self, vars: &RolloutVars) -> Option<Result<String, ResolveError>> {
        self.needs_baseline().then(|| self.resolve(&vars.for_baseline()?))
    }

    /// How long after an error the next attempt is due: the interval, but at most [`ERROR_RETRY`].
    pub fn error_retry(&self) -> Duration {
        self.schedule.interval.min(ERROR_RETRY)
    }
}

/// When a template measures and when it must have ended: its timing fields with their defaults applied. The
/// analysis stage measures on it (through [`CompiledTemplate`]) and the rollout engine sets step deadlines from it,
/// so the two cannot disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// How long one query or call may take.
    pub timeout: Duration,
    /// Time between measurements.
    pub interval: Duration,
    /// Measurements to take.
    pub count: u32,
    /// Wait before the first measurement.
    pub initial_delay: Duration,
    /// Failed measurements tolerated.
    pub failure_limit: u32,
    /// Inconclusive measurements tolerated.
    pub inconclusive_limit: u32,
    /// Errors in a row that fail the run (at least 1).
    pub consecutive_error_limit: u32,
}

impl Schedule {
    /// The schedule of `t`, a value out of range taking its default (validation reports it; see
    /// [`CompiledTemplate::new`]).
    pub fn of(t: &AnalysisTemplate) -> Schedule {
        Schedule::checked(t, &mut Vec::new())
    }

    /// The schedule of `t`, each value out of range reported in `errors` and replaced by its default.
    fn checked(t: &AnalysisTemplate, errors: &mut Vec<FieldError>) -> Schedule {
        let timeout_field = match (&t.prometheus, &t.web) {
            (Some(p), _) => p.timeout.map(|d| ("prometheus.timeout", d)),
            (None, Some(w)) => w.timeout.map(|d| ("web.timeout", d)),
            (None, None) => None,
        };
        Schedule {
            timeout: positive(timeout_field, DEFAULT_TIMEOUT, errors),
            interval: positive(t.interval.map(|d| ("interval", d)), DEFAULT_INTERVAL, errors),
            initial_delay: t.initial_delay.map_or(Duration::ZERO, HumanDuration::get),
            count: limit("count", t.count, 1, 1, errors),
            failure_limit: limit("failureLimit", t.failure_limit, 0, 0, errors),
            inconclusive_limit: limit("inconclusiveLimit", t.inconclusive_limit, 0, 0, errors),
            consecutive_error_limit: limit(
                "consecutiveErrorLimit",
                t.consecutive_error_limit,
                DEFAULT_CONSECUTIVE_ERROR_LIMIT,
                1,
                errors,
            ),
        }
    }

    /// The longest a run can take before it must have ended (the step's deadline, plan contract 6): `initialDelay +
    /// (count + failureLimit + inconclusiveLimit + consecutiveErrorLimit + 1) × (interval + timeout)`, saturating.
    pub fn max_duration(&self) -> Duration {
        let attempts = self
            .count
            .saturating_add(self.failure_limit)
            .saturating_add(self.inconclusive_limit)
            .saturating_add(self.consecutive_error_limit)
            .saturating_add(1);
        self.initial_delay.saturating_add(self.interval.saturating_add(self.timeout).saturating_mul(attempts))
    }
}

/// The one provider of `t`, checked.
fn provider(t: &AnalysisTemplate, errors: &mut Vec<FieldError>) -> Option<Provider> {
    let template = |path: &str, text: &str, errors: &mut Vec<FieldError>| match QueryTemplate::parse_rollout(text) {
        Ok(q) => Some(q),
        Err(es) => {
            errors.extend(es.into_iter().map(|e| FieldError::new(path, e.to_string())));
            None
        }
    };
    match (&t.prometheus, &t.web) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new("", "give exactly one provider, `prometheus` or `web`, not both"));
            None
        }
        (None, None) => {
            errors.push(FieldError::new("", "give exactly one provider: `prometheus` (a query) or `web` (a URL)"));
            None
        }
        (Some(p), None) => {
            if let Err(reason) = check_http_url(&p.address) {
                errors.push(FieldError::new("prometheus.address", reason));
            } else if p.address.contains("{{") {
                errors.push(FieldError::new(
                    "prometheus.address",
                    "takes no template variables (only the query and web URLs do): give the server's address",
                ));
            }
            if p.query.trim().is_empty() {
                errors.push(FieldError::new("prometheus.query", "must not be empty"));
            }
            check_headers("prometheus.headers", &p.headers, errors);
            let query = template("prometheus.query", &p.query, errors)?;
            Some(Provider::Prometheus { address: p.address.clone(), query, headers: p.headers.clone() })
        }
        (None, Some(w)) => {
            if let Err(reason) = check_http_url(&w.url) {
                errors.push(FieldError::new("web.url", reason));
            }
            check_headers("web.headers", &w.headers, errors);
            let json_path = JsonPath::parse(&w.json_path)
                .map_err(|reason| errors.push(FieldError::new("web.jsonPath", reason)))
                .ok();
            let url = template("web.url", &w.url, errors)?;
            Some(Provider::Web { url, json_path: json_path?, headers: w.headers.clone() })
        }
    }
}

/// Header names are HTTP tokens (RFC 9110 §5.1); values hold no line breaks (they would split the request).
pub(crate) fn check_headers(path: &str, headers: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    const TOKEN_PUNCT: &str = "!#$%&'*+-.^_`|~";
    for (name, value) in headers {
        let p = crate::app::key_path(path, name);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || TOKEN_PUNCT.contains(c)) {
            errors.push(FieldError::new(&p, "is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"));
        }
        if value.contains(['\r', '\n', '\0']) {
            errors.push(FieldError::new(&p, "must not contain line breaks or NUL"));
        }
    }
}

/// A duration that must be greater than 0 when given.
fn positive(field: Option<(&str, HumanDuration)>, default: Duration, errors: &mut Vec<FieldError>) -> Duration {
    match field {
        None => default,
        Some((path, d)) if d.get().is_zero() => {
            errors.push(FieldError::new(path, "must be greater than 0"));
            default
        }
        Some((_, d)) => d.get(),
    }
}

/// A count or limit in `min..=MAX_MEASUREMENT_COUNT`.
fn limit(path: &str, value: Option<i64>, default: u32, min: i64, errors: &mut Vec<FieldError>) -> u32 {
    let Some(v) = value else { return default };
    if v < min || v > MAX_MEASUREMENT_COUNT {
        errors.push(FieldError::new(path, format!("must be {min}–{MAX_MEASUREMENT_COUNT}")));
        return default;
    }
    u32::try_from(v).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{PrometheusQuery, WebMetric};

    fn prometheus(query: &str) -> AnalysisTemplate {
        AnalysisTemplate {
            prometheus: Some(PrometheusQuery {
                address: "http://prometheus:9090".into(),
                query: query.into(),
                timeout: None,
                headers: BTreeMap::new(),
            }),
            success_condition: Some("result < 0.05".into()),
            ..AnalysisTemplate::default()
        }
    }

    fn paths(t: &AnalysisTemplate) -> Vec<String> {
        CompiledTemplate::new(t).expect_err("invalid").into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn new_should_apply_the_documented_defaults() {
        let t = CompiledTemplate::new(&prometheus("sum(rate(errors[1m]))")).expect("valid");
        assert_eq!(t.schedule.interval, Duration::from_secs(30));
        assert_eq!(t.schedule.timeout, Duration::from_secs(10));
        assert_eq!(
            (
                t.schedule.count,
                t.schedule.failure_limit,
                t.schedule.inconclusive_limit,
                t.schedule.consecutive_error_limit
            ),
            (1, 0, 0, 4)
        );
        assert_eq!((t.on_empty, t.on_nan, t.dry_run), (OnEmpty::Inconclusive, OnEmpty::Inconclusive, false));
        assert_eq!(t.schedule.initial_delay, Duration::ZERO);
        assert!(!t.needs_baseline());
        assert_eq!(t.provider.kind(), "prometheus");
        // (1 + 0 + 0 + 4 + 1) × (30 s + 10 s).
        assert_eq!(t.schedule.max_duration(), Duration::from_secs(240));
        assert_eq!(t.error_retry(), Duration::from_secs(5));
    }

    #[test]
    fn new_should_resolve_queries_and_baselines() {
        let mut raw =
            prometheus(r#"rate(errors{job="{{ .JobID }}",version="{{ .Version }}",route="{{ .Args.route }}"}[1m])"#);
        raw.failure_condition = Some("result > baseline * 1.5".into());
        let t = CompiledTemplate::new(&raw).expect("valid");
        assert!(t.needs_baseline());
        assert_eq!(t.args(), BTreeSet::from(["route"]));
        let vars = RolloutVars {
            version: 4,
            stable_version: Some(3),
            job_id: "web".into(),
            args: BTreeMap::from([("route".into(), "/".into())]),
            ..RolloutVars::default()
        };
        assert_eq!(t.resolve(&vars), Ok(r#"rate(errors{job="web",version="4",route="/"}[1m])"#.to_string()));
        assert_eq!(
            t.resolve_baseline(&vars),
            Some(Ok(r#"rate(errors{job="web",version="3",route="/"}[1m])"#.to_string()))
        );
        let first = RolloutVars { stable_version: None, ..vars };
        assert_eq!(t.resolve_baseline(&first), Some(Err(ResolveError::NoStableVersion)));
    }

    #[test]
    fn new_should_report_every_problem_with_its_path() {
        let mut raw = prometheus("{{ .Nope }}");
        if let Some(p) = raw.prometheus.as_mut() {
            p.address = "prometheus:9090".into();
            p.timeout = Some(HumanDuration::from_secs(0));
            p.headers.insert("Bad Header".into(), "x\ny".into());
        }
        raw.success_condition = Some("result <".into());
        raw.failure_condition = Some("result > 1".into());
        raw.interval = Some(HumanDuration::from_secs(0));
        raw.count = Some(0);
        raw.failure_limit = Some(-1);
        raw.inconclusive_limit = Some(MAX_MEASUREMENT_COUNT + 1);
        raw.consecutive_error_limit = Some(0);
        let errors = CompiledTemplate::new(&raw).expect_err("invalid");
        let got: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            got,
            [
                "prometheus.address",
                "prometheus.headers[\"Bad Header\"]",
                "prometheus.headers[\"Bad Header\"]",
                "prometheus.query",
                "prometheus.timeout",
                "interval",
                "count",
                "failureLimit",
                "inconclusiveLimit",
                "consecutiveErrorLimit",
                "successCondition",
            ]
        );
        let condition = &errors[10].reason;
        assert!(condition.contains("`result <` does not parse: at column 9"), "{condition}");
    }

    #[test]
    fn new_should_refuse_variables_in_a_prometheus_address() {
        let mut raw = prometheus("up");
        if let Some(p) = raw.prometheus.as_mut() {
            p.address = "http://prometheus-{{ .Namespace }}:9090".into();
        }
        assert_eq!(paths(&raw), ["prometheus.address"]);
    }

    #[test]
    fn new_should_want_exactly_one_provider_and_a_condition() {
        let web = WebMetric {
            url: "https://metrics.example/{{ .JobID }}".into(),
            json_path: "$.data.errorRate".into(),
            headers: BTreeMap::new(),
            timeout: Some(HumanDuration::from_secs(3)),
        };
        let mut both = prometheus("up");
        both.web = Some(web.clone());
        assert_eq!(paths(&both), [""]);
        assert_eq!(paths(&AnalysisTemplate { success_condition: Some("true".into()), ..Default::default() }), [""]);
        let no_condition = AnalysisTemplate { success_condition: None, ..prometheus("up") };
        assert_eq!(paths(&no_condition), ["successCondition"]);
        let ok = AnalysisTemplate {
            web: Some(web.clone()),
            failure_condition: Some("result > 0.1".into()),
            ..AnalysisTemplate::default()
        };
        let t = CompiledTemplate::new(&ok).expect("a web template");
        assert_eq!((t.provider.kind(), t.schedule.timeout), ("web", Duration::from_secs(3)));
        let bad = AnalysisTemplate {
            web: Some(WebMetric { url: "metrics.example".into(), json_path: "$..data".into(), ..web }),
            ..ok
        };
        assert_eq!(paths(&bad), ["web.url", "web.jsonPath"]);
    }
}
