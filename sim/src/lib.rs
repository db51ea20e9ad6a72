//! drover-sim: a model of the Consul and Nomad HTTP APIs that Drover uses, exact to `api-contract.md`.
//!
//! It is a test and demo tool, not a Consul or Nomad server: state lives in memory, Nomad's client nodes are a capacity model, and only the
//! endpoints Drover needs exist. Where it is modelled it is meant to be exactly as strict as the real servers.
//!
//! # Layout
//! - [`clock`]: simulated time; every modelled duration goes through it (`--time-scale`).
//! - [`faults`]: faults as data (latency, error, dropped connection), applied before routing.
//! - [`reqlog`]: the log of answered API requests that tests assert on.
//! - [`server`]: the listener loop shared by both servers (logging, faults, leader loss).
//! - [`tls`]: HTTPS (`--tls-dir`): the certificate set, flawed sets for tests, the rustls server configuration.
//! - [`control`]: the shared `/_sim/` control API.
//! - [`harness`]: starting both servers on bound listeners ([`testing::spawn`] for tests).
//! - `consul`, `nomad`: the two servers' models and routes.

pub mod clock;
pub mod consul;
pub mod control;
pub mod faults;
pub mod harness;
pub mod nomad;
pub mod reqlog;
pub mod server;
pub mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use clock::{Clock, SimInstant};

/// What tests use to start a simulator: `testing::spawn(SimConfig::fast()).await`.
pub mod testing {
    pub use crate::harness::{SimHandle as TestSim, spawn};
}

/// Which of the two modelled servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    /// The Consul HTTP API.
    Consul,
    /// The Nomad HTTP API.
    Nomad,
}

/// How a simulator is started.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Real seconds per simulated second (`0.01` makes `10s` last 100 ms).
    pub time_scale: f64,
    /// Enables ACLs on both servers, with this token as the management (bootstrap) token.
    pub acl_bootstrap_token: Option<String>,
    /// Seed for IDs and jitter, for reproducible runs.
    pub seed: Option<u64>,
    /// The Nomad client nodes the simulator starts with.
    pub cluster: ClusterConfig,
    /// When set, both APIs are served over TLS with this configuration ([`tls::CertSet::server_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            time_scale: 1.0,
            acl_bootstrap_token: None,
            seed: None,
            cluster: ClusterConfig::default(),
            tls: None,
        }
    }
}

/// The Nomad client nodes at start: `nodes` identical nodes. Capacity is finite, as in a real cluster, so that a
/// group that does not fit stays queued; the default is large enough for the benchmarks (10 000 jobs of Nomad's
/// default task size, 100 MHz / 300 MB, twice over during rolling updates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Number of client nodes (0 is allowed: nothing can be placed until a node is added).
    pub nodes: u32,
    /// CPU of each node, MHz (Nomad's `Resources.CPU` unit).
    pub node_cpu_mhz: u64,
    /// Memory of each node, MB (Nomad's `Resources.MemoryMB` unit).
    pub node_memory_mb: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        // 10 nodes × 400 GHz / 1.2 TB: 40 000 default-sized allocations, finite but out of the benchmarks' way.
        ClusterConfig { nodes: 10, node_cpu_mhz: 400_000, node_memory_mb: 1_200_000 }
    }
}

impl SimConfig {
    /// A configuration for tests: a modelled second lasts one real millisecond.
    pub fn fast() -> Self {
        SimConfig { time_scale: 0.001, ..SimConfig::default() }
    }
}

/// Everything both servers share. One per simulator.
#[derive(Debug)]
pub struct Shared {
    /// Simulated time.
    pub clock: Clock,
    /// Faults in force.
    pub faults: faults::Faults,
    /// Answered API requests.
    pub log: reqlog::RequestLog,
    /// ACLs are on in both servers iff this is set; it is then the management token.
    pub acl_bootstrap_token: Option<String>,
    rng: Mutex<StdRng>,
    consul_leader: watch::Sender<bool>,
    nomad_leader: watch::Sender<bool>,
    consul_cuts: watch::Sender<u64>,
    nomad_cuts: watch::Sender<u64>,
}

impl Shared {
    /// Shared state for one simulator.
    pub fn new(config: &SimConfig) -> Arc<Shared> {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Arc::new(Shared {
            clock: Clock::new(config.time_scale),
            faults: faults::Faults::default(),
            log: reqlog::RequestLog::default(),
            acl_bootstrap_token: config.acl_bootstrap_token.clone(),
            rng: Mutex::new(rng),
            consul_leader: watch::Sender::new(true),
            nomad_leader: watch::Sender::new(true),
            consul_cuts: watch::Sender::new(0),
            nomad_cuts: watch::Sender::new(0),
        })
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A random version-4 UUID (reproducible with `--seed`).
    pub fn uuid(&self) -> String {
        let bytes: [u8; 16] = self.rng().random();
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }

    /// A uniformly random duration in `[0, max)`; zero when `max` is zero. Used for blocking-query jitter.
    pub fn random_below(&self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.rng().random_range(0..nanos))
    }

    fn leader(&self, s: Server) -> &watch::Sender<bool> {
        match s {
            Server::Consul => &self.consul_leader,
            Server::Nomad => &self.nomad_leader,
        }
    }

    /// False while a test simulates the loss of that server's leader.
    pub fn has_leader(&self, s: Server) -> bool {
        *self.leader(s).borrow()
    }

    /// Changes of a server's leadership, e.g. to re-arm session TTL timers when a leader comes back.
    pub fn leader_watch(&self, s: Server) -> watch::Receiver<bool> {
        self.leader(s).subscribe()
    }

    fn cuts(&self, s: Server) -> &watch::Sender<u64> {
        match s {
            Server::Consul => &self.consul_cuts,
            Server::Nomad => &self.nomad_cuts,
        }
    }

    /// What a request in flight on server `s` watches: it is dropped (connection closed, no answer) when this
    /// changes. Used by the listener loop.
    pub fn cut_watch(&self, s: Server) -> watch::Receiver<u64> {
        self.cuts(s).subscribe()
    }

    /// Drops every request in flight on server `s` (blocking queries waiting, slow answers), as a server restart
    /// does; returns how many there were. Responses already streaming (Nomad's event stream) are not affected.
    pub fn cut_in_flight(&self, s: Server) -> usize {
        let open = self.cuts(s).receiver_count();
        self.cuts(s).send_modify(|g| *g += 1);
        open
    }

    /// Simulates losing (`false`) or regaining (`true`) a server's leader.
    pub fn set_leader(&self, s: Server, present: bool) {
        self.leader(s).send_replace(present);
    }
}
