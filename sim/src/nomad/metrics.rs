//! Simulated workload metrics (`GET /_sim/metrics`): per running allocation, driven by
//! `POST /_sim/nomad/workload`, advancing with sim time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::model::Alloc;
use crate::SimInstant;

/// Histogram bucket bounds (seconds).
pub const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Load on a job (version): requests per second over its running allocations, and the error share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Fraction of requests that fail, 0.0–1.0.
    pub error_rate: f64,
    /// Requests per second for the whole job version.
    pub load: f64,
}

#[derive(Debug, Clone)]
struct Counters {
    requests: f64,
    errors: f64,
    buckets: [f64; BUCKETS.len()],
    sum: f64,
    cpu: f64,
    last: SimInstant,
}

/// Workload settings and per-allocation counters.
#[derive(Debug, Default)]
pub struct Workloads {
    /// (namespace, job, version or all) → load.
    pub config: BTreeMap<(String, String, Option<u64>), Workload>,
    counters: BTreeMap<String, Counters>,
}

impl Workloads {
    fn lookup(&self, ns: &str, job: &str, version: u64) -> Option<Workload> {
        self.config
            .get(&(ns.to_string(), job.to_string(), Some(version)))
            .or_else(|| self.config.get(&(ns.to_string(), job.to_string(), None)))
            .copied()
    }

    /// Advances every running allocation's counters to `now` under the settings in force.
    pub fn advance<'a>(&mut self, allocs: impl Iterator<Item = &'a Alloc>, now: SimInstant) {
        let running: Vec<&Alloc> =
            allocs.filter(|a| a.desired_status == "run" && a.client_status == "running").collect();
        let mut per_version: BTreeMap<(&str, &str, u64), u64> = BTreeMap::new();
        for a in &running {
            *per_version.entry((&a.namespace, &a.job_id, a.job_version)).or_default() += 1;
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &running {
            seen.insert(a.id.clone());
            let n =
                per_version.get(&(a.namespace.as_str(), a.job_id.as_str(), a.job_version)).copied().unwrap_or(1).max(1);
            let w =
                self.lookup(&a.namespace, &a.job_id, a.job_version).unwrap_or(Workload { error_rate: 0.0, load: 0.0 });
            let rps = w.load.max(0.0) / n as f64;
            let c = self.counters.entry(a.id.clone()).or_insert_with(|| Counters {
                requests: 0.0,
                errors: 0.0,
                buckets: [0.0; BUCKETS.len()],
                sum: 0.0,
                cpu: 0.0,
                last: a.running_since.unwrap_or(now),
            });
            let dt = now.elapsed_since(c.last).as_secs_f64();
            c.last = now;
            let req = rps * dt;
            let err_rate = w.error_rate.clamp(0.0, 1.0);
            // Mean latency grows with load per allocation; failing requests are slower.
            let mean = 0.02 + 0.0005 * rps + 0.2 * err_rate;
            c.requests += req;
            c.errors += req * err_rate;
            c.sum += req * mean;
            for (i, b) in BUCKETS.iter().enumerate() {
                c.buckets[i] += req * (1.0 - (-b / mean).exp());
            }
            c.cpu = (2.0 + 0.5 * rps).min(100.0);
        }
        self.counters.retain(|id, _| seen.contains(id));
    }

    /// Prometheus text exposition of every running allocation.
    pub fn render<'a>(&self, allocs: impl Iterator<Item = &'a Alloc>) -> String {
        let mut rows: Vec<(&Alloc, &Counters)> =
            allocs.filter_map(|a| self.counters.get(&a.id).map(|c| (a, c))).collect();
        rows.sort_by(|a, b| (&a.0.namespace, &a.0.job_id, &a.0.id).cmp(&(&b.0.namespace, &b.0.job_id, &b.0.id)));
        let mut out = String::new();
        let labels = |a: &Alloc| {
            format!(
                "namespace=\"{}\",job=\"{}\",group=\"{}\",version=\"{}\",alloc=\"{}\"",
                a.namespace, a.job_id, a.group, a.job_version, a.id
            )
        };
        // Names match DESIGN.md's analysis and autoscaling examples:
        // `http_requests_total{code=~"5.."}` for error rates, `cpu_percent` for CPU.
        out.push_str("# HELP http_requests_total Requests served by an allocation, by status code.\n# TYPE http_requests_total counter\n");
        for (a, c) in &rows {
            let l = labels(a);
            let _ =
                writeln!(out, "http_requests_total{{{l},code=\"200\"}} {}", (c.requests - c.errors).max(0.0).floor());
            let _ = writeln!(out, "http_requests_total{{{l},code=\"500\"}} {}", c.errors.floor());
        }
        out.push_str(
            "# HELP http_request_duration_seconds Request latency.\n# TYPE http_request_duration_seconds histogram\n",
        );
        for (a, c) in &rows {
            let l = labels(a);
            for (i, b) in BUCKETS.iter().enumerate() {
                let v = c.buckets[i].floor().min(c.requests.floor());
                let _ = writeln!(out, "http_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {v}");
            }
            let _ = writeln!(out, "http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}", c.requests.floor());
            let _ = writeln!(out, "http_request_duration_seconds_sum{{{l}}} {}", c.sum);
            let _ = writeln!(out, "http_request_duration_seconds_count{{{l}}} {}", c.requests.floor());
        }
        out.push_str("# HELP cpu_percent CPU use of an allocation.\n# TYPE cpu_percent gauge\n");
        for (a, c) in &rows {
            let _ = writeln!(out, "cpu_percent{{{}}} {}", labels(a), c.cpu);
        }
        out
    }
}
