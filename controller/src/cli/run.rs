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
    /// Concurrent reconciles: each mostly waits on Consul and Nomad, so this bounds the requests in flight.
    #[arg(long, default_value_t = crate::queue::DEFAULT_WORKERS)]
    pub workers: NonZeroUsize,
    /// Every app is reconciled again this often, even without events (e.g. `5m`; 1s to 24h).
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
    /// Serve --listen over HTTPS with this PEM certificate chain (needs --listen-tls-key).
    #[arg(long, requires = "listen_tls_key")]
    pub listen_tls_cert: Option<String>,
    /// The PEM private key of --listen-tls-cert.
    #[arg(long, requires = "listen_tls_cert")]
    pub listen_tls_key: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Contend for the leader lock at `<prefix>/leader`, so replicas can run side by side and only the leader
    /// writes; `false` for a single replica that always leads [env: DROVER_LEADER_ELECT; default true].
    #[arg(long)]
    pub leader_elect: Option<String>,
    /// TTL of the leader session (10s to 24h); renewed every half of it. After a `kill -9`, a standby takes over
    /// within 2×TTL + lock-delay [env: DROVER_LOCK_TTL; default 15s].
    #[arg(long)]
    pub lock_ttl: Option<String>,
    /// Consul lock-delay (0s to 60s): after the leader's session dies, nobody may take the lock for this long
    /// [env: DROVER_LOCK_DELAY; default 5s].
    #[arg(long)]
    pub lock_delay: Option<String>,
    /// Webhook notifications: a YAML file of `targets` (README "Notifications"), checked before anything starts.
    #[arg(long, value_name = "FILE")]
    pub notifications: Option<std::path::PathBuf>,
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

/// The shortest `--resync`: below a second, resyncs of a large fleet would be a busy loop.
pub const MIN_RESYNC: Duration = Duration::from_secs(1);
/// The longest `--resync`: a day. The resync is the safety net for a missed event, so a longer one hides drift for
/// too long; and a duration too large for a clock (`1000000000y`) would overflow tokio's `Instant + period` and panic.
pub const MAX_RESYNC: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest `--max-backoff` (STYLE item 6: a 30 s–5 min cap).
pub const MIN_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `--max-backoff`.
pub const MAX_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Checks that a duration flag lies in `min..=max`, with an error naming the flag and both bounds.
fn check_bounds(flag: &str, value: Duration, min: Duration, max: Duration) -> anyhow::Result<()> {
    if !(min..=max).contains(&value) {
        anyhow::bail!(
            "{flag} must be between {} and {}, got {}",
            humantime::format_duration(min),
            humantime::format_duration(max),
            humantime::format_duration(value)
        );
    }
    Ok(())
}

/// Validates the run flags that clap cannot: every duration is bounded, so none can overflow a timer.
pub fn runtime_config(
    prefix: &str,
    workers: NonZeroUsize,
    resync: Duration,
    max_backoff: Duration,
) -> anyhow::Result<Config> {
    check_bounds("--max-backoff", max_backoff, MIN_MAX_BACKOFF, MAX_MAX_BACKOFF)?;
    check_bounds("--resync", resync, MIN_RESYNC, MAX_RESYNC)?;
    let backoff = Backoff::try_new(Duration::from_millis(200), max_backoff, 2.0, 0.2).context("--max-backoff")?;
    Ok(Config { prefix: prefix.to_string(), workers, resync, backoff, ..Config::default() })
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
    let mut config = runtime_config(&args.prefix.prefix, args.workers, args.resync, args.max_backoff)?;
    // Rejected here, before anything starts, with the flag or variable named (see `consul::budget`).
    let watch_budget = crate::config::resolve_watch_budget(args.watch_budget.as_deref(), &super::env_lookup)?;
    config.watch_budget = watch_budget;
    let lock_flags = crate::leader::settings::LockFlags {
        leader_elect: args.leader_elect.clone(),
        lock_ttl: args.lock_ttl.clone(),
        lock_delay: args.lock_delay.clone(),
    };
    let lock = crate::leader::settings::resolve(&lock_flags, &super::env_lookup)?;
    config.election = lock.map(|s| {
        let holder = crate::leader::Holder::this_process(&args.listen.to_string(), &super::env_lookup);
        crate::leader::LockConfig::new(&config.prefix, s.ttl, s.lock_delay, holder)
    });
    if let Some(path) = &args.notifications {
        config.notifications = Some(super::notifications(path)?);
    }
    let metrics = Arc::new(Metrics::new());
    let consul_config = args.consul.config()?;
    let nomad_config = args.nomad.config()?;
    let consul =
        crate::consul::Client::new(&consul_config, metrics.clone()).context("cannot build the Consul client")?;
    let nomad = crate::nomad::Client::new(&nomad_config, metrics.clone()).context("cannot build the Nomad client")?;
    probe_servers(&consul, &consul_config, &nomad, &nomad_config).await?;
    let listen_tls = match (&args.listen_tls_cert, &args.listen_tls_key) {
        (Some(cert), Some(key)) => Some(crate::http::listen_tls_config(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen", args.listen))?;
    tracing::info!(
        consul = consul.addr(),
        listen = %args.listen,
        listen_tls = listen_tls.is_some(),
        prefix = %config.prefix,
        watch_budget = %watch_budget,
        leader_lock = ?config.election.as_ref().map(|l| (&l.key, l.ttl, l.lock_delay)),
        "drover starting"
    );
    // A single replica leads from the start; with an election, the elector's gate sets it.
    metrics.set_leader(config.election.is_none());
    let controller = Controller::new(config, consul, nomad, metrics);
    let shutdown = shutdown_on_signal();
    let http_shutdown = shutdown.clone();
    let router = crate::http::router(controller.handle());
    let stopped = async move { http_shutdown.cancelled().await };
    let http = match listen_tls {
        Some(tls) => tokio::spawn(async move {
            crate::http::serve_tls(listener, router, tls, stopped).await;
            Ok(())
        }),
        None => tokio::spawn(crate::http::serve(listener, router, stopped)),
    };
    controller.run(shutdown).await;
    match http.await {
        Ok(res) => res.context("HTTP server failed")?,
        Err(e) => anyhow::bail!("HTTP server task failed: {e}"),
    }
    tracing::info!("drover stopped");
    Ok(())
}

/// Probes both servers once, concurrently ([`crate::probe`]): a TLS failure is returned (and ends `drover run` with
/// that one line); an outage is logged and left to the usual retries.
async fn probe_servers(
    consul: &crate::consul::Client,
    consul_config: &crate::config::ConsulConfig,
    nomad: &crate::nomad::Client,
    nomad_config: &crate::config::NomadConfig,
) -> Result<(), crate::probe::ProbeError> {
    use crate::probe::{Target, probe};
    use crate::tls::TlsFiles;
    let consul_target = Target {
        server: "Consul",
        env: "CONSUL",
        addr: consul.addr(),
        files: TlsFiles {
            ca_cert: consul_config.ca_cert.as_deref(),
            client_cert: consul_config.client_cert.as_deref(),
            client_key: consul_config.client_key.as_deref(),
        },
        http: consul.http(),
    };
    let nomad_target = Target {
        server: "Nomad",
        env: "NOMAD",
        addr: nomad.addr(),
        files: TlsFiles {
            ca_cert: nomad_config.ca_cert.as_deref(),
            client_cert: nomad_config.client_cert.as_deref(),
            client_key: nomad_config.client_key.as_deref(),
        },
        http: nomad.http(),
    };
    let (consul_probe, nomad_probe) = tokio::join!(probe(consul_target), probe(nomad_target));
    for (target, result) in [(consul_target, consul_probe), (nomad_target, nomad_probe)] {
        if let Some(outage) = result? {
            tracing::warn!(
                server = target.server,
                addr = target.addr,
                error = %crate::error_chain(&outage),
                "not reachable at start; retrying with backoff"
            );
        }
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM (Ctrl-C only, where there is no SIGTERM). If SIGTERM cannot be watched, Ctrl-C
/// still stops the process.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGTERM; only Ctrl-C stops drover");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    /// Parses `drover run <flags>` and validates it as `run` does.
    fn config_of(flags: &[&str]) -> anyhow::Result<Config> {
        let cli = Cli::try_parse_from(["drover", "run"].iter().chain(flags))?;
        let Command::Run(args) = cli.command else { anyhow::bail!("not a run command") };
        runtime_config(&args.prefix.prefix, args.workers, args.resync, args.max_backoff)
    }

    #[test]
    fn runtime_config_should_reject_a_resync_too_large_for_a_timer_naming_the_flag() {
        // Issue #7 2.6: `--resync 1000000000y` used to panic in tokio's interval (Instant overflow).
        let err = config_of(&["--resync", "1000000000y"]).expect_err("a billion-year resync must be refused");
        let text = format!("{err:#}");
        assert!(text.contains("--resync must be between 1s and 1day"), "{text}");
        assert!(config_of(&["--resync", "25h"]).is_err());
    }

    #[test]
    fn runtime_config_should_accept_both_resync_bounds_and_refuse_below() {
        assert_eq!(config_of(&["--resync", "1s"]).map(|c| c.resync).ok(), Some(MIN_RESYNC));
        assert_eq!(config_of(&["--resync", "24h"]).map(|c| c.resync).ok(), Some(MAX_RESYNC));
        let err = config_of(&["--resync", "999ms"]).expect_err("a sub-second resync must be refused");
        assert!(format!("{err:#}").contains("--resync"), "{err:#}");
    }

    #[test]
    fn runtime_config_should_bound_max_backoff_naming_the_flag() {
        for bad in ["29s", "301s", "1000000000y"] {
            let err = config_of(&["--max-backoff", bad]).expect_err("out-of-range --max-backoff must be refused");
            assert!(format!("{err:#}").contains("--max-backoff must be between 30s and 5m"), "{bad}: {err:#}");
        }
        assert!(config_of(&["--max-backoff", "30s"]).is_ok() && config_of(&["--max-backoff", "5m"]).is_ok());
    }
}
