//! `drover run`: the controller, its HTTP endpoints, logging, and two-step shutdown (the first SIGINT/SIGTERM is
//! graceful, a second one exits at once).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::{ConsulArgs, NomadArgs, PrefixArg};
use crate::metrics::Metrics;
use crate::queue::Backoff;
use crate::runtime::{Config, Controller};

/// Log format.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `drover run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Consul connection.
    #[command(flatten)]
    pub consul: ConsulArgs,
    /// Nomad connection.
    #[command(flatten)]
    pub nomad: NomadArgs,
    /// KV prefix.
    #[command(flatten)]
    pub prefix: PrefixArg,
    /// Concurrent reconciles.
    #[arg(long, default_value = "8")]
    pub workers: NonZeroUsize,
    /// Every app is reconciled again this often, even without events (e.g. `5m`).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub resync: Duration,
    /// Longest retry backoff after repeated failures (30s to 5m).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
    /// Bytes per second the Consul record watch may read, e.g. `32MiB/s` (units B, KB, KiB, MB, MiB, GB, GiB; 64KiB/s
    /// to 16GiB/s). A small prefix is re-read at once after every change, a large one as often as this pays for
    /// [env: DROVER_WATCH_BUDGET; default 32MiB/s].
    #[arg(long)]
    pub watch_budget: Option<String>,
    /// Address for /metrics, /healthz, /readyz and /api/v1/apps.
    #[arg(long, default_value = "127.0.0.1:9469")]
    pub listen: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Sets up `tracing` output on stderr (`RUST_LOG` filters, default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Validates the run flags that clap cannot.
pub fn runtime_config(
    prefix: &str,
    workers: NonZeroUsize,
    resync: Duration,
    max_backoff: Duration,
) -> anyhow::Result<Config> {
    if !(Duration::from_secs(30)..=Duration::from_secs(300)).contains(&max_backoff) {
        anyhow::bail!("--max-backoff must be between 30s and 5m, got {}", humantime::format_duration(max_backoff));
    }
    if resync < Duration::from_secs(1) {
        anyhow::bail!("--resync must be at least 1s, got {}", humantime::format_duration(resync));
    }
    let backoff = Backoff::try_new(Duration::from_millis(200), max_backoff, 2.0, 0.2).context("--max-backoff")?;
    Ok(Config { prefix: prefix.to_string(), workers, resync, backoff })
}

/// Completes on the first SIGINT/SIGTERM; a second one exits the process at once.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutting down (send the signal again to exit at once)");
        t.cancel();
        signal().await;
        std::process::exit(130);
    });
    token
}

/// `drover run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let config = runtime_config(&args.prefix.prefix, args.workers, args.resync, args.max_backoff)?;
    // Rejected here, before anything starts, with the flag or variable named. The runtime passes it to the watch
    // with `WatchConfig::with_budget` (see `consul::budget`).
    let watch_budget = crate::config::resolve_watch_budget(args.watch_budget.as_deref(), &super::env_lookup)?;
    let metrics = Arc::new(Metrics::new());
    let consul = args.consul.client(metrics.clone())?;
    let nomad = args.nomad.client(metrics.clone())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen", args.listen))?;
    tracing::info!(
        consul = consul.addr(),
        listen = %args.listen,
        prefix = %config.prefix,
        watch_budget = %watch_budget,
        "drover starting"
    );
    metrics.set_leader(true);
    let controller = Controller::new(config, consul, nomad, metrics);
    let shutdown = shutdown_on_signal();
    let http_shutdown = shutdown.clone();
    let http = tokio::spawn(crate::http::serve(listener, crate::http::router(controller.handle()), async move {
        http_shutdown.cancelled().await
    }));
    controller.run(shutdown).await;
    match http.await {
        Ok(res) => res.context("HTTP server failed")?,
        Err(e) => anyhow::bail!("HTTP server task failed: {e}"),
    }
    tracing::info!("drover stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM (the same wait the simulator's binary uses).
pub async fn signal() {
    drover_sim::server::shutdown_signal().await
}
