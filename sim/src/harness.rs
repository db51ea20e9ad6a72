//! Starting a simulator: both servers on already-bound listeners, their background tasks, and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Server, Shared, SimConfig, consul, control, nomad, server};

/// A running simulator. Dropping it stops both servers.
pub struct SimHandle {
    /// Where the Consul API listens.
    pub consul_addr: SocketAddr,
    /// Where the Nomad API listens.
    pub nomad_addr: SocketAddr,
    /// URL of the Consul API: `http://`, or `https://` when [`SimConfig::tls`] is set.
    pub consul_url: String,
    /// URL of the Nomad API: `http://`, or `https://` when [`SimConfig::tls`] is set.
    pub nomad_url: String,
    /// Clock, faults, request log, leadership.
    pub shared: Arc<Shared>,
    /// The Consul model.
    pub consul: Arc<consul::Consul>,
    /// The Nomad model.
    pub nomad: Arc<nomad::Nomad>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle").field("consul_url", &self.consul_url).field("nomad_url", &self.nomad_url).finish()
    }
}

/// Starts both servers on the given listeners.
///
/// # Errors
/// When a listener's local address cannot be read.
pub fn start(
    consul_listener: TcpListener,
    nomad_listener: TcpListener,
    config: &SimConfig,
) -> std::io::Result<SimHandle> {
    let consul_addr = consul_listener.local_addr()?;
    let nomad_addr = nomad_listener.local_addr()?;
    let shared = Shared::new(config);
    let consul = consul::Consul::new(shared.clone());
    let nomad = nomad::Nomad::new(shared.clone(), &config.cluster);
    let shutdown = CancellationToken::new();

    let controls = control::router(shared.clone())
        .merge(consul::control_router(consul.clone()))
        .merge(nomad::control_router(nomad.clone()));
    let consul_router = consul::router(consul.clone()).merge(controls.clone());
    let nomad_router = nomad::router(nomad.clone()).merge(controls);

    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let tasks = vec![
        consul.spawn_background(shutdown.clone()),
        nomad.spawn_background(shutdown.clone()),
        tokio::spawn(server::serve(
            consul_listener,
            Server::Consul,
            shared.clone(),
            consul_router,
            tls.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(server::serve(nomad_listener, Server::Nomad, shared.clone(), nomad_router, tls, shutdown.clone())),
    ];
    Ok(SimHandle {
        consul_addr,
        nomad_addr,
        consul_url: format!("{scheme}://{consul_addr}"),
        nomad_url: format!("{scheme}://{nomad_addr}"),
        shared,
        consul,
        nomad,
        shutdown,
        tasks,
    })
}

impl SimHandle {
    /// Stops both servers and waits for their tasks.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a simulator on two free loopback ports, for tests.
///
/// # Panics
/// When loopback ports cannot be bound (the test cannot run at all then).
pub async fn spawn(config: SimConfig) -> SimHandle {
    let consul = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port for the Consul API");
    let nomad = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port for the Nomad API");
    start(consul, nomad, &config).expect("read the bound addresses")
}
