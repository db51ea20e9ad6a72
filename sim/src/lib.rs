//! drover-sim: a model of the Consul and Nomad HTTP APIs.
