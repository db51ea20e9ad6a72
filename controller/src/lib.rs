//! Drover: a reconciling operator for HashiCorp Nomad, driven by records in Consul KV.
pub mod app;
pub mod config;
pub mod consul;
pub mod live;
pub mod metrics;
pub mod nomad;
pub mod queue;
pub mod reconcile;
pub mod status;
pub mod tls;

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
pub mod cli;
pub mod http;
pub mod runtime;
pub mod store;
