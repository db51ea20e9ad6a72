//! Drover: a reconciling operator for HashiCorp Nomad, driven by records in Consul KV.
pub mod metrics;
pub mod config;
pub mod tls;
pub mod status;
pub mod queue;
