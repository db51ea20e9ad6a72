//! Drover: a reconciling operator for HashiCorp Nomad, driven by records in Consul KV.
pub mod app;
pub mod metrics;
pub mod config;
pub mod tls;
pub mod status;
pub mod live;
pub mod queue;
pub mod consul;
pub mod nomad;
pub mod reconcile;

/// An error and its causes on one line (`a: b: c`), for status messages and logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
pub mod store;
