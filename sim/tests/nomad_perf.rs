//! Load check (ignored by default): 10 000 jobs, then register throughput and memory.
//! Run: `cargo test -p drover-sim --release --test nomad_perf -- --ignored --nocapture`.

mod nomad_support;

use std::time::Duration;

use drover_sim::SimConfig;
use nomad_support::{job, spawn, with_meta};
use serde_json::json;

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test"]
async fn nomad_register_throughput_should_exceed_3000_per_second_with_10000_jobs() {
    let s = spawn(SimConfig { time_scale: 1.0, ..SimConfig::default() }).await;
    let base = rss_mb();
    let run = |offset: usize, n: usize, tag: &'static str| {
        let s = s.clone();
        async move {
            let mut tasks = Vec::new();
            for w in 0..16 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let mut i = w;
                    while i < n {
                        let id = format!("job-{}", offset + i);
                        let r = s.post("/v1/jobs", &json!({"Job": with_meta(job(&id, 1), "tag", tag)})).await;
                        assert_eq!(r.status, 200, "{}", r.body);
                        i += 16;
                    }
                }));
            }
            for t in tasks {
                t.await.expect("worker");
            }
        }
    };
    let t0 = tokio::time::Instant::now();
    run(0, 10_000, "a").await;
    let load = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("loaded 10000 jobs in {load:?}; RSS {:.0} MB (base {base:.0} MB)", rss_mb());
    let t1 = tokio::time::Instant::now();
    run(0, 10_000, "b").await;
    let el = t1.elapsed();
    println!("10000 changed registers in {el:?} = {:.0}/s; RSS {:.0} MB", 10_000.0 / el.as_secs_f64(), rss_mb());
    for tag in ["c", "d", "e", "f", "g"] {
        run(0, 10_000, tag).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("after 7 versions per job: RSS {:.0} MB", rss_mb());
    let t2 = tokio::time::Instant::now();
    let r = s.get("/v1/jobs").await;
    println!("list of {} bytes in {:?}", r.body.len(), t2.elapsed());
}
