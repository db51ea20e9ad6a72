//! The body of `drover dev` (feature `dev`): starts `drover-sim` in-process on loopback, writes the example apps,
//! runs the controller against it and redraws a live view of the apps until Ctrl-C.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::prometheus::{DevPrometheus, find_on_path};
use super::{DevArgs, EXAMPLES, dev_canary};
use crate::app::AppKey;
use crate::cli::run::{LogFormat, init_logging, runtime_config, shutdown_on_signal};
use crate::cli::show::table;
use crate::config::{ConsulConfig, ConsulFlags, NomadConfig, NomadFlags};
use crate::metrics::Metrics;
use crate::runtime::{Controller, Handle};

/// Runs the simulator, the example apps, the controller and the live view until Ctrl-C.
pub(super) async fn run(args: DevArgs) -> anyhow::Result<()> {
    init_logging_quiet();
    let consul_listener = tokio::net::TcpListener::bind(&args.consul_addr)
        .await
        .with_context(|| format!("--consul-addr {}: cannot listen", args.consul_addr))?;
    let nomad_listener = tokio::net::TcpListener::bind(&args.nomad_addr)
        .await
        .with_context(|| format!("--nomad-addr {}: cannot listen", args.nomad_addr))?;
    let sim_config = drover_sim::SimConfig { time_scale: args.time_scale, ..drover_sim::SimConfig::default() };
    let sim = drover_sim::harness::start(consul_listener, nomad_listener, &sim_config)?;

    let metrics = Arc::new(Metrics::new());
    let no_env = |_: &str| None;
    let consul_config =
        ConsulConfig::resolve(&ConsulFlags { addr: Some(sim.consul_url.clone()), ..ConsulFlags::default() }, &no_env)?;
    let nomad_config =
        NomadConfig::resolve(&NomadFlags { addr: Some(sim.nomad_url.clone()), ..NomadFlags::default() }, &no_env)?;
    let consul = crate::consul::Client::new(&consul_config, metrics.clone())?;
    let nomad = crate::nomad::Client::new(&nomad_config, metrics.clone())?;

    // Prometheus first: the canary example's address is where it listens.
    let (prometheus, prometheus_note) = start_prometheus(&args, &sim.nomad_url).await;
    let prometheus_url = format!("http://{}", args.prometheus_addr);
    // Every example app takes 20 simulated requests per second without errors, so the canary's analysis has values
    // (a version is made bad with `POST /_sim/nomad/workload`).
    let http = reqwest::Client::new();
    for (name, text) in EXAMPLES {
        let key = AppKey::new("default", name);
        let text =
            if name == "checkout" { dev_canary(text, &prometheus_url, &sim.nomad_url) } else { text.to_string() };
        consul
            .put(&key.app_kv_key("drover"), text.as_bytes())
            .await
            .with_context(|| format!("cannot write example {name}"))?;
        let workload = serde_json::json!({"namespace": "default", "job": name, "load": 20.0, "error_rate": 0.0});
        http.post(format!("{}/_sim/nomad/workload", sim.nomad_url))
            .json(&workload)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("cannot set the simulated workload of example {name}"))?;
    }

    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen for /metrics")?,
    };
    let api_addr = listener.local_addr()?;
    let config = runtime_config(
        "drover",
        std::num::NonZeroUsize::MIN.saturating_add(7),
        Duration::from_secs(300),
        Duration::from_secs(60),
    )?;
    metrics.set_leader(true);
    let controller = Controller::new(config, consul, nomad, metrics);
    let handle = controller.handle();
    let shutdown = shutdown_on_signal();
    let http_shutdown = shutdown.clone();
    tokio::spawn(crate::http::serve(listener, crate::http::router(handle.clone()), async move {
        http_shutdown.cancelled().await
    }));
    let view_shutdown = shutdown.clone();
    let mut banner = banner(&sim.consul_url, &sim.nomad_url, &api_addr.to_string(), args.time_scale);
    banner.push_str(&prometheus_note);
    let plain = args.plain || !std::io::stdout().is_terminal();
    let view = tokio::spawn(live_view(handle, banner, plain, view_shutdown));
    controller.run(shutdown).await;
    let _ = view.await;
    sim.shutdown().await;
    drop(prometheus);
    println!("drover dev stopped");
    Ok(())
}

/// Starts dev's Prometheus when asked and found; returns it (if running) and a banner line saying what happened.
/// Never fails `drover dev`: without Prometheus everything but the canary example's analysis works.
async fn start_prometheus(args: &DevArgs, nomad_url: &str) -> (Option<DevPrometheus>, String) {
    if args.no_prometheus {
        return (
            None,
            "Prometheus: not started (--no-prometheus); the checkout canary's analysis will fail.\n\n".into(),
        );
    }
    let Some(binary) = find_on_path("prometheus", std::env::var_os("PATH").as_deref()) else {
        let note = "Prometheus: `prometheus` is not on PATH, so none was started; the checkout canary's analysis will \
                    fail (install Debian's `prometheus` package and start drover dev again).\n\n";
        return (None, note.into());
    };
    match super::prometheus::start(&binary, &args.prometheus_addr, nomad_url).await {
        Ok(p) => {
            let note = format!(
                "Prometheus: {} (scrapes the simulator's /_sim/metrics every second; the checkout canary's analysis \
                 queries it)\n\n",
                p.url
            );
            (Some(p), note)
        }
        Err(err) => {
            tracing::warn!(error = format!("{err:#}"), "Prometheus did not start");
            (None, format!("Prometheus: did not start ({err:#}); the checkout canary's analysis will fail.\n\n"))
        }
    }
}

/// Logs only warnings, so they do not scroll the live view away.
fn init_logging_quiet() {
    if std::env::var_os("RUST_LOG").is_none() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_writer(std::io::stderr)
            .try_init();
    } else {
        init_logging(LogFormat::Text);
    }
}

fn banner(consul: &str, nomad: &str, api: &str, scale: f64) -> String {
    format!(
        "drover dev: Drover against drover-sim, a simulated Consul and Nomad (a test and demo tool, not a cluster);\n\
         simulated time runs at {:.0}x.\n\n\
         Point tools at it:\n  export CONSUL_HTTP_ADDR={consul} NOMAD_ADDR={nomad}\n  \
         drover get    drover describe web    drover apply -f manifests/examples/web.yaml\n  \
         curl http://{api}/api/v1/apps    curl http://{api}/metrics    curl $NOMAD_ADDR/v1/jobs\n\n",
        1.0 / scale
    )
}

/// Redraws the app table every second (or prints it when it changes, in plain mode) until shutdown.
async fn live_view(handle: Handle, banner: String, plain: bool, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last = String::new();
    if plain {
        print!("{banner}");
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut keys = handle.records.keys();
        keys.extend(handle.statuses.keys());
        keys.sort();
        keys.dedup();
        let statuses: Vec<_> = keys.iter().map(|k| handle.statuses.get(k).and_then(|s| s.status)).collect();
        let generations: Vec<_> = keys.iter().map(|k| handle.records.get(k).map(|e| e.generation())).collect();
        let text = table(keys.iter().zip(generations).zip(statuses.iter()).map(|((k, g), s)| (k, g, s.as_deref())));
        let ready = if *handle.ready.borrow() { "" } else { "(loading…)\n" };
        let mut out = std::io::stdout().lock();
        if plain {
            if text != last {
                let _ = writeln!(out, "{ready}{text}");
            }
        } else {
            let _ = write!(out, "\x1b[2J\x1b[H{banner}{ready}{text}\nCtrl-C stops everything.\n");
        }
        let _ = out.flush();
        last = text;
    }
}
