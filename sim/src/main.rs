//! `drover-sim`: runs the Consul and Nomad API simulator on two listeners until SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use drover_sim::{ClusterConfig, SimConfig, harness, server};

/// A model of the Consul and Nomad HTTP APIs for tests and demos (not a Consul or Nomad server).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address for the Consul API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8500")]
    consul_addr: String,
    /// Address for the Nomad API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:4646")]
    nomad_addr: String,
    /// Real seconds per simulated second: 0.01 makes a modelled 10s last 100 ms.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Enables ACLs on both servers with this management token.
    #[arg(long)]
    acl_bootstrap_token: Option<String>,
    /// Seed for IDs and jitter.
    #[arg(long)]
    seed: Option<u64>,
    /// Number of Nomad client nodes at start (more can be added with `POST /_sim/nomad/nodes`).
    #[arg(long, default_value_t = ClusterConfig::default().nodes)]
    nodes: u32,
    /// CPU of each starting node, MHz.
    #[arg(long, default_value_t = ClusterConfig::default().node_cpu_mhz)]
    node_cpu: u64,
    /// Memory of each starting node, MB.
    #[arg(long, default_value_t = ClusterConfig::default().node_memory_mb)]
    node_memory: u64,
    /// Serve both APIs over HTTPS: writes ca.pem, server.pem, server-key.pem (for 127.0.0.1 and localhost),
    /// client.pem and client-key.pem into this directory (replacing what is there).
    #[arg(long)]
    tls_dir: Option<std::path::PathBuf>,
    /// With --tls-dir: require a client certificate signed by ca.pem (Consul's verify_incoming, Nomad's
    /// verify_https_client).
    #[arg(long, requires = "tls_dir")]
    tls_verify_incoming: bool,
    /// With --tls-dir: use the five files already in the directory instead of writing new ones (tests give flawed
    /// sets this way: an expired or v1 server certificate).
    #[arg(long, requires = "tls_dir")]
    tls_keep_existing: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        anyhow::bail!("--time-scale must be a positive number, got {}", args.time_scale);
    }
    let consul = tokio::net::TcpListener::bind(&args.consul_addr)
        .await
        .with_context(|| format!("--consul-addr {}: cannot listen", args.consul_addr))?;
    let nomad = tokio::net::TcpListener::bind(&args.nomad_addr)
        .await
        .with_context(|| format!("--nomad-addr {}: cannot listen", args.nomad_addr))?;
    let tls = match &args.tls_dir {
        Some(dir) => Some(
            drover_sim::tls::setup_dir(dir, args.tls_keep_existing, args.tls_verify_incoming)
                .with_context(|| format!("--tls-dir {}", dir.display()))?,
        ),
        None => None,
    };
    let cluster = ClusterConfig { nodes: args.nodes, node_cpu_mhz: args.node_cpu, node_memory_mb: args.node_memory };
    let config = SimConfig {
        time_scale: args.time_scale,
        acl_bootstrap_token: args.acl_bootstrap_token,
        seed: args.seed,
        cluster,
        tls,
    };
    let sim = harness::start(consul, nomad, &config)?;
    println!("consul listening on {}", sim.consul_url);
    println!("nomad listening on {}", sim.nomad_url);
    server::shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}
