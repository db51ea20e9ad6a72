//! The metrics of `drover sync --watch`, served on its `--listen` address: syncs by result, when the last one
//! succeeded, and whether this replica holds the sync's lock. Registered only by that command, so a `drover run`
//! never exports a sync whose last success reads as 0 (an alert on the age of the last success would fire on it).

use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::outcome::SyncResult;
use crate::metrics::Metrics;

/// Every result, so each counter exists (at 0) from the start and `rate()` sees the first failure.
const RESULTS: [SyncResult; 4] =
    [SyncResult::Succeeded, SyncResult::Invalid, SyncResult::Conflicted, SyncResult::Failed];

/// Label set `{sync}`: the sync's name (one per process).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabel {
    sync: String,
}

/// Label set `{sync, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncResultLabels {
    sync: String,
    result: &'static str,
}

/// The sync metrics of one `drover sync --watch`.
#[derive(Debug)]
pub struct SyncMetrics {
    name: String,
    runs_total: Family<SyncResultLabels, Counter>,
    last_success: Family<SyncLabel, Gauge>,
    lock_held: Family<SyncLabel, Gauge>,
}

impl SyncMetrics {
    /// Registers the sync metrics of sync `name` in `metrics`' registry.
    pub fn register(metrics: &Metrics, name: &str) -> SyncMetrics {
        let runs_total = Family::<SyncResultLabels, Counter>::default();
        let last_success = Family::<SyncLabel, Gauge>::default();
        let lock_held = Family::<SyncLabel, Gauge>::default();
        metrics.register_with(|registry| {
            registry.register("sync_runs", "Syncs run by this replica, by result", runs_total.clone());
            registry.register(
                "sync_last_success_timestamp_seconds",
                "Unix time of this replica's last successful sync (0: none yet)",
                last_success.clone(),
            );
            registry.register(
                "sync_lock_held",
                "1 while this replica holds the sync's lock (only the holder syncs)",
                lock_held.clone(),
            );
        });
        let m = SyncMetrics { name: name.to_string(), runs_total, last_success, lock_held };
        for result in RESULTS {
            let _ = m.runs_total.get_or_create(&m.result_labels(result));
        }
        m.last_success.get_or_create(&m.label()).set(0);
        m.set_lock_held(false);
        m
    }

    fn label(&self) -> SyncLabel {
        SyncLabel { sync: self.name.clone() }
    }

    fn result_labels(&self, result: SyncResult) -> SyncResultLabels {
        SyncResultLabels { sync: self.name.clone(), result: result.as_str() }
    }

    /// A sync ended with `result` at `at`.
    pub fn sync_finished(&self, result: SyncResult, at: SystemTime) {
        self.runs_total.get_or_create(&self.result_labels(result)).inc();
        if result == SyncResult::Succeeded {
            let secs = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            self.last_success.get_or_create(&self.label()).set(i64::try_from(secs).unwrap_or(i64::MAX));
        }
    }

    /// Whether this replica holds the lock now.
    pub fn set_lock_held(&self, held: bool) {
        self.lock_held.get_or_create(&self.label()).set(i64::from(held));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The value of the one sample of `series` (name and labels) in `text`.
    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    const FAILED: &str = r#"drover_sync_runs_total{sync="apps",result="Failed"}"#;
    const SUCCEEDED: &str = r#"drover_sync_runs_total{sync="apps",result="Succeeded"}"#;
    const LAST_SUCCESS: &str = r#"drover_sync_last_success_timestamp_seconds{sync="apps"}"#;
    const LOCK_HELD: &str = r#"drover_sync_lock_held{sync="apps"}"#;

    #[test]
    fn sync_metrics_should_count_results_and_keep_the_last_success() {
        let metrics = Metrics::new();
        let m = SyncMetrics::register(&metrics, "apps");
        let text = metrics.encode();
        let at_start = [FAILED, SUCCEEDED, LAST_SUCCESS, LOCK_HELD].map(|s| sample(&text, s));
        assert_eq!(at_start, [Some("0"); 4], "every series exists from the start: {text}");

        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        m.set_lock_held(true);
        m.sync_finished(SyncResult::Succeeded, at);
        m.sync_finished(SyncResult::Failed, at + Duration::from_secs(60));
        let text = metrics.encode();
        assert_eq!((sample(&text, SUCCEEDED), sample(&text, FAILED)), (Some("1"), Some("1")), "{text}");
        assert_eq!(sample(&text, LAST_SUCCESS), Some("1800000000"), "a failure does not move the last success");
        assert_eq!(sample(&text, LOCK_HELD), Some("1"));
    }

    #[test]
    fn a_run_registry_should_not_have_sync_metrics() {
        assert!(!Metrics::new().encode().contains("drover_sync_"), "only `drover sync --watch` registers them");
    }
}
