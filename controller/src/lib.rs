//! Drover: a reconciling operator for HashiCorp Nomad, driven by records in Consul KV.
