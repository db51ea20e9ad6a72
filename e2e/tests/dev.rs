//! `drover dev` with its own Prometheus (the README's canary walk-through, issue #8): with `prometheus` on PATH, dev
//! starts it on `--prometheus-addr`, scraping the in-process simulator, and writes the canary example (`checkout`)
//! pointing at it; stopping dev stops it. Skipped, saying why, when `prometheus` is not on PATH (`scripts/test.sh`
//! installs it).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use drover_e2e::{DEADLINE, binary, free_port, http_client, wait_until};
use serde_json::Value;

/// `drover dev`, killed when dropped (the test stops it with SIGTERM first, so that dev stops its Prometheus).
struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    /// SIGTERM, then waits for dev to exit.
    async fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {pid} failed: {status}");
        wait_until(DEADLINE, "drover dev to exit after SIGTERM", || {
            let exited = self.child.try_wait().ok().flatten();
            async move { exited.ok_or("still running") }
        })
        .await;
    }

    /// What `find` extracts from the first line dev printed that it matches (waiting for one).
    async fn printed(&mut self, what: &str, find: impl Fn(&str) -> Option<String>) -> String {
        wait_until(DEADLINE, what, || {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            let found = self.seen.iter().find_map(|l| find(l));
            let seen = self.seen.join("\n");
            async move { found.ok_or(seen) }
        })
        .await
    }
}

#[tokio::test]
async fn dev_should_start_prometheus_on_the_simulator_and_point_the_canary_example_at_it() {
    // Like every test that needs Prometheus, this one fails rather than passes without it.
    drover_e2e::require_tool("prometheus");
    let port = free_port();
    let mut child = Command::new(binary("drover"))
        .args(["dev", "--plain", "--listen", "127.0.0.1:0", "--prometheus-addr", &format!("127.0.0.1:{port}")])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn drover dev");
    let stdout = child.stdout.take().expect("dev's stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut dev = Dev { child, lines, seen: Vec::new() };
    let prometheus = format!("http://127.0.0.1:{port}");
    let banner = dev
        .printed("the banner naming dev's Prometheus", |l| l.starts_with("Prometheus: http://").then(|| l.to_string()))
        .await;
    assert!(banner.starts_with(&format!("Prometheus: {prometheus} ")), "{banner}");
    let consul = dev
        .printed("the banner's CONSUL_HTTP_ADDR", |l| {
            let rest = l.trim().strip_prefix("export CONSUL_HTTP_ADDR=")?;
            rest.split_whitespace().next().map(str::to_string)
        })
        .await;

    // The canary example queries dev's Prometheus.
    let http = http_client();
    let record = http
        .get(format!("{consul}/v1/kv/drover/apps/default/checkout?raw"))
        .send()
        .await
        .expect("GET the checkout record")
        .text()
        .await
        .expect("record text");
    assert!(record.contains(&format!("address: {prometheus}\n")), "{record}");
    assert!(!record.contains("service.consul"), "the smoke URL must resolve in dev: {record}");

    // Prometheus scrapes the simulator, whose checkout allocations serve the example's traffic.
    wait_until(DEADLINE, "Prometheus to hold checkout's request rate from the simulator", || async {
        let query = r#"sum(rate(http_requests_total{job="checkout"}[10s]))"#;
        let resp = http.get(format!("{prometheus}/api/v1/query")).query(&[("query", query)]).send().await;
        let body: Value = resp.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        let rate = body["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
        match rate {
            Some(r) if r > 0.0 => Ok(r),
            _ => Err(body.to_string()),
        }
    })
    .await;

    // Stopping dev stops its Prometheus.
    dev.stop().await;
    wait_until(DEADLINE, "dev's Prometheus to be gone after dev stopped", || async {
        match http.get(format!("{prometheus}/-/ready")).send().await {
            Err(_) => Ok(()),
            Ok(r) => Err(format!("still answering: {}", r.status())),
        }
    })
    .await;
}
