//! `drover sync` (issue #10) as a process against the simulator, from real git repositories made by the test
//! (`git init`, commits, a branch, a tag): first sync, an update of one app only, prune of only this sync's records,
//! an invalid file that writes nothing, a racing hand edit reported and not overwritten, a dry run that writes
//! nothing, and `--watch` with a signed webhook. Assertions on exit codes, Consul KV, Nomad jobs and the simulator's
//! request log.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use drover::status::Phase;
use drover::sync::webhook::sign;
use drover::sync::{SyncOutcome, SyncResult};
use drover_e2e::{
    DEADLINE, DroverProcess, SimProcess, TIME_SCALE, binary, free_port, http_client, job_image, job_version,
    metric_sum, template_record, wait_until,
};
use serde_json::{Value, json};

/// A git repository in a temporary directory of its own, removed when dropped.
struct Repo {
    dir: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("drover-e2e-sync-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the repository's directory");
        let repo = Repo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// Runs git in the repository, isolated from the machine's git configuration, and returns its stdout.
    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(["-c", "user.name=Drover E2E", "-c", "user.email=e2e@drover.invalid", "-c", "commit.gpgsign=false"])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("run git (is it installed?)");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("create folders");
        std::fs::write(path, text).expect("write a file");
    }

    fn remove(&self, path: &str) {
        self.git(&["rm", "-q", path]);
    }

    /// Commits everything and returns the commit's SHA.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `drover sync … -o json`, returning the printed report.
async fn sync_json(sim: &SimProcess, args: &[&str]) -> (Output, Value) {
    let mut all = vec!["sync", "-o", "json"];
    all.extend_from_slice(args);
    let out = sim.cli(&all, &[]).await;
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("sync -o json prints JSON ({e}): {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), stderr(&out))
    });
    (out, report)
}

/// The record of `default/<name>` as JSON, with its ModifyIndex.
async fn record(sim: &SimProcess, name: &str) -> Option<(Value, u64)> {
    let (bytes, index) = sim.kv_get(&format!("drover/apps/default/{name}")).await?;
    let text = String::from_utf8(bytes).expect("a UTF-8 record");
    Some((serde_json::from_str(&text).unwrap_or_else(|e| panic!("record {name} is JSON ({e}): {text}")), index))
}

fn annotation<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record["metadata"]["annotations"][key].as_str()
}

async fn outcome(sim: &SimProcess, name: &str) -> Option<SyncOutcome> {
    let (bytes, _) = sim.kv_get(&format!("drover/sync/{name}")).await?;
    Some(serde_json::from_slice(&bytes).expect("an outcome"))
}

fn counts(report: &Value) -> (u64, u64, u64, u64) {
    let c = &report["outcome"]["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(u64::MAX);
    (n("created"), n("updated"), n("unchanged"), n("pruned"))
}

#[tokio::test]
async fn sync_should_create_the_apps_then_update_only_the_app_a_commit_changes() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let _controller = DroverProcess::start(&sim, &[]).await;
    let repo = Repo::new();
    repo.write("apps/web.yaml", &template_record("web", "nginx:1.27", ""));
    repo.write("apps/api.yaml", &template_record("api", "api:1", ""));
    let first = repo.commit("two apps");
    repo.git(&["tag", "-a", "v1", "-m", "release 1"]);

    let (out, report) = sync_json(&sim, &[&repo.url(), "--ref", "v1", "--name", "deploy"]).await;
    assert!(out.status.success(), "the first sync succeeds: {}", stderr(&out));
    assert_eq!(counts(&report), (2, 0, 0, 0), "{report:#}");
    for app in ["web", "api"] {
        let (rec, _) = record(&sim, app).await.expect("the record was written");
        assert_eq!(annotation(&rec, "drover.io/sync"), Some("deploy"));
        assert_eq!(annotation(&rec, "drover.io/revision"), Some(first.as_str()), "the annotated tag's commit");
        let source = format!("{}//apps/{app}.yaml", repo.url());
        assert_eq!(annotation(&rec, "drover.io/source"), Some(source.as_str()));
        sim.wait_for_status("default", app, "Healthy", |s| s.phase == Phase::Healthy).await;
    }
    let api_job_version = job_version(&sim.job("default", "api").await.expect("api runs"));
    let (_, api_index) = record(&sim, "api").await.expect("api");

    repo.write("apps/web.yaml", &template_record("web", "nginx:1.28", ""));
    repo.write("README.md", "not a record\n");
    let second = repo.commit("web 1.28");
    let (out, report) = sync_json(&sim, &[&repo.url(), "--ref", "main", "--name", "deploy"]).await;
    assert!(out.status.success(), "the second sync succeeds: {}", stderr(&out));
    assert_eq!(counts(&report), (0, 1, 1, 0), "only web is written: {report:#}");
    assert_eq!(report["outcome"]["transactions"].as_u64(), Some(1));
    let (web, _) = record(&sim, "web").await.expect("web");
    assert_eq!(annotation(&web, "drover.io/revision"), Some(second.as_str()));
    let (api, index) = record(&sim, "api").await.expect("api");
    assert_eq!(index, api_index, "api's record is not rewritten (no new generation)");
    assert_eq!(annotation(&api, "drover.io/revision"), Some(first.as_str()), "the commit that last changed api");
    wait_until(DEADLINE, "web runs nginx:1.28", || async {
        let job = sim.job("default", "web").await;
        match job.as_ref().and_then(|j| job_image(j)) {
            Some("nginx:1.28") => Ok(()),
            other => Err(other.map(str::to_owned)),
        }
    })
    .await;
    sim.wait_for_status("default", "web", "Healthy at the new generation", |s| {
        s.phase == Phase::Healthy && s.applied_job_version.is_some_and(|v| v > 0)
    })
    .await;
    let api_job = sim.job("default", "api").await.expect("api still runs");
    assert_eq!(job_version(&api_job), api_job_version, "api's job is not touched");

    // A commit that changes no record: nothing is written at all.
    repo.write("README.md", "still not a record\n");
    repo.commit("docs");
    let since = sim.log(Some("consul"), 0).await.last_seq;
    let (out, report) = sync_json(&sim, &[&repo.url(), "--name", "deploy"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(counts(&report), (0, 0, 2, 0));
    let writes: Vec<_> = sim
        .log(Some("consul"), since)
        .await
        .requests
        .into_iter()
        .filter(|r| r.is_write() && (r.path == "/v1/txn" || r.path.starts_with("/v1/kv/drover/apps")))
        .collect();
    assert!(writes.is_empty(), "an unchanged re-sync writes no record: {writes:?}");
    let recorded = outcome(&sim, "deploy").await.expect("the outcome is recorded");
    assert_eq!((recorded.result, recorded.transactions), (SyncResult::Succeeded, 0));

    let out = sim.cli(&["sync", "status", "deploy", "-o", "json"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: SyncOutcome = serde_json::from_slice(&out.stdout).expect("sync status -o json prints the outcome");
    assert_eq!(shown, recorded);
}

#[tokio::test]
async fn sync_with_prune_should_delete_only_its_own_records_that_left_the_source() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let _controller = DroverProcess::start(&sim, &[]).await;
    let repo = Repo::new();
    repo.write("gone.yaml", &template_record("gone", "nginx:1", "deletionPolicy: Purge"));
    repo.write("stay.yaml", &template_record("stay", "nginx:1", ""));
    let keep = template_record("keep", "nginx:1", "")
        .replace("  namespace: default\n", "  namespace: default\n  annotations: {drover.io/prune: \"false\"}\n");
    repo.write("keep.yaml", &keep);
    repo.commit("three apps");
    let other = Repo::new();
    other.write("theirs.yaml", &template_record("theirs", "nginx:1", ""));
    other.commit("another team's app");
    sim.put_record("default", "hand", template_record("hand", "nginx:1", "")).await;

    for (url, name) in [(repo.url(), "team"), (other.url(), "other")] {
        let out = sim.cli(&["sync", &url, "--name", name], &[]).await;
        assert!(out.status.success(), "sync {name}: {}", stderr(&out));
    }
    sim.wait_for_status("default", "gone", "Healthy", |s| s.phase == Phase::Healthy).await;

    // Both files leave the source on a branch; the sync of that branch prunes.
    repo.git(&["checkout", "-q", "-b", "cleanup"]);
    repo.remove("gone.yaml");
    repo.remove("keep.yaml");
    repo.commit("remove gone and keep");
    let (out, report) = sync_json(&sim, &[&repo.url(), "--ref", "cleanup", "--name", "team", "--prune"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(counts(&report), (0, 0, 1, 1), "{report:#}");
    assert_eq!(report["outcome"]["counts"]["retained"].as_u64(), Some(1), "keep is annotated prune: false");
    assert!(record(&sim, "gone").await.is_none(), "this sync's record that left the source is deleted");
    for kept in ["stay", "keep", "theirs", "hand"] {
        assert!(sim.kv_get(&format!("drover/apps/default/{kept}")).await.is_some(), "{kept} stays");
    }
    wait_until(DEADLINE, "the pruned app's job purged (its deletionPolicy)", || async {
        match sim.job("default", "gone").await {
            None => Ok(()),
            Some(job) => Err(job["Status"].clone()),
        }
    })
    .await;
}

#[tokio::test]
async fn sync_should_write_nothing_when_one_file_is_invalid() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let repo = Repo::new();
    repo.write("good.yaml", &template_record("good", "nginx:1", ""));
    let bad = template_record("bad", "nginx:1", "").replace("count: 2", "count: -2");
    repo.write("apps/bad.yaml", &format!("{}---\n{bad}", template_record("fine", "nginx:1", "")));
    repo.commit("one bad document");

    let (out, report) = sync_json(&sim, &[&repo.url(), "--name", "deploy"]).await;
    assert!(!out.status.success(), "an invalid source fails the sync");
    let err = stderr(&out);
    assert!(err.contains("apps/bad.yaml: documents[1].spec.template.count:"), "file, document and field: {err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(report["outcome"]["result"], json!("Invalid"));
    for app in ["good", "fine", "bad"] {
        assert!(record(&sim, app).await.is_none(), "{app} is not written");
    }
    let recorded = outcome(&sim, "deploy").await.expect("the failed outcome is recorded");
    assert_eq!(recorded.result, SyncResult::Invalid);
    assert!(recorded.errors.iter().any(|e| e.contains("apps/bad.yaml: documents[1]")), "{:?}", recorded.errors);
}

#[tokio::test]
async fn sync_should_report_a_racing_hand_edit_and_not_overwrite_it() {
    // Real time (scale 1): the transaction is held 5 s by a fault, long enough for the hand edit to land between
    // the sync's read and its write.
    let sim = SimProcess::start(1.0).await;
    let repo = Repo::new();
    for app in ["a", "b", "c"] {
        repo.write(&format!("{app}.yaml"), &template_record(app, "nginx:1", ""));
    }
    repo.commit("three apps");
    let out = sim.cli(&["sync", &repo.url(), "--name", "deploy"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    for app in ["a", "b", "c"] {
        repo.write(&format!("{app}.yaml"), &template_record(app, "nginx:2", ""));
    }
    repo.commit("all three change");

    sim.add_fault(json!({"server": "consul", "method": "PUT", "path": "/v1/txn", "action": {"type": "latency", "ms": 5000}, "count": 1}))
        .await;
    let since = sim.log(Some("consul"), 0).await.last_seq;
    let url = repo.url();
    let consul = sim.consul_url.clone();
    let sync = tokio::task::spawn_blocking(move || {
        Command::new(binary("drover"))
            .args(["sync", &url, "--name", "deploy"])
            .env("CONSUL_HTTP_ADDR", consul)
            .output()
            .expect("run drover sync")
    });
    wait_until(DEADLINE, "the sync read the records", || async {
        let log = sim.log(Some("consul"), since).await;
        if log.requests.iter().any(|r| r.method == "GET" && r.path == "/v1/kv/drover/apps/") {
            Ok(())
        } else {
            Err(log.last_seq)
        }
    })
    .await;
    let hand = template_record("b", "nginx:hand", "");
    sim.put_record("default", "b", hand.clone()).await;
    let out = sync.await.expect("the sync thread");

    assert!(!out.status.success(), "a conflict fails the sync");
    let err = stderr(&out);
    assert!(err.contains("conflict: default/b"), "the conflicting record is named: {err}");
    let (bytes, _) = sim.kv_get("drover/apps/default/b").await.expect("b");
    assert_eq!(String::from_utf8_lossy(&bytes), hand, "the hand edit is not overwritten");
    for app in ["a", "c"] {
        let (rec, _) = record(&sim, app).await.expect("written");
        assert_eq!(rec["spec"]["template"]["image"], json!("nginx:2"), "{app}, in the same batch, is written");
    }
    let recorded = outcome(&sim, "deploy").await.expect("outcome");
    assert_eq!((recorded.result, recorded.counts.conflicts, recorded.counts.updated), (SyncResult::Conflicted, 1, 2));
}

#[tokio::test]
async fn sync_dry_run_should_print_the_plan_and_a_diff_and_write_nothing() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let repo = Repo::new();
    repo.write("web.yaml", &template_record("web", "nginx:1", ""));
    repo.write("old.yaml", &template_record("old", "nginx:1", ""));
    repo.commit("two apps");
    let out = sim.cli(&["sync", &repo.url(), "--name", "deploy"], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let before = outcome(&sim, "deploy").await.expect("outcome");
    repo.write("web.yaml", &template_record("web", "nginx:2", ""));
    repo.write("new.yaml", &template_record("new", "nginx:1", ""));
    repo.remove("old.yaml");
    repo.commit("change, add, remove");

    let since = sim.log(Some("consul"), 0).await.last_seq;
    let (out, report) = sync_json(&sim, &[&repo.url(), "--name", "deploy", "--prune", "--dry-run"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Vec<(String, String)> = report["plan"]
        .as_array()
        .expect("a plan")
        .iter()
        .map(|r| (r["app"].as_str().unwrap_or("").to_owned(), r["action"].as_str().unwrap_or("").to_owned()))
        .collect();
    let expected = [("default/new", "create"), ("default/old", "prune"), ("default/web", "update")];
    assert_eq!(plan, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    let web_diff = report["plan"][2]["diff"].as_str().expect("a diff for the update");
    assert!(web_diff.contains("-    image: nginx:1\n+    image: nginx:2\n"), "{web_diff}");

    let out = sim.cli(&["sync", &repo.url(), "--name", "deploy", "--prune", "--dry-run"], &[]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("--- default/web (update)") && table.contains("dry run: nothing written"), "{table}");

    let writes: Vec<_> = sim.log(Some("consul"), since).await.requests.into_iter().filter(|r| r.is_write()).collect();
    assert!(writes.is_empty(), "a dry run sends no write to Consul: {writes:?}");
    assert!(record(&sim, "new").await.is_none() && record(&sim, "old").await.is_some());
    assert_eq!(outcome(&sim, "deploy").await, Some(before), "a dry run records no outcome");
}

/// A `drover sync --watch` process, killed when dropped.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sync_watch_should_sync_a_new_commit_on_a_signed_webhook_and_refuse_a_bad_signature() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let repo = Repo::new();
    repo.write("web.yaml", &template_record("web", "nginx:1", ""));
    repo.commit("web");
    let secret_file = repo.dir.with_extension("secret");
    std::fs::write(&secret_file, "s3cret\n").expect("write the secret");
    let port = free_port();
    let _watch = Watch(
        Command::new(binary("drover"))
            .args(["sync", "--watch", &repo.url(), "--name", "w", "--interval", "1h", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--webhook-secret-file")
            .arg(&secret_file)
            .env("CONSUL_HTTP_ADDR", &sim.consul_url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start drover sync --watch"),
    );
    let first = wait_until(DEADLINE, "the watch's first sync", || async {
        match outcome(&sim, "w").await {
            Some(o) if o.result == SyncResult::Succeeded => Ok(o),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(first.run, 1);
    let (lock, _) = sim.kv_get("drover/sync/w/lock").await.expect("the watch holds its lock key");
    assert!(!lock.is_empty(), "the lock key names its holder");

    repo.write("web.yaml", &template_record("web", "nginx:2", ""));
    let second = repo.commit("web 2");
    let hook = format!("http://127.0.0.1:{port}/api/v1/sync/w");
    let body = json!({"ref": "refs/heads/main", "after": second}).to_string();
    let http = http_client();
    let bad = http
        .post(&hook)
        .header("X-Hub-Signature-256", sign(b"wrong secret", body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .expect("POST the webhook");
    assert_eq!(bad.status().as_u16(), 401, "a bad signature is refused");
    let unsigned = http.post(&hook).body(body.clone()).send().await.expect("POST the webhook");
    assert_eq!(unsigned.status().as_u16(), 401, "a missing signature is refused");
    let (rec, _) = record(&sim, "web").await.expect("web");
    assert_eq!(rec["spec"]["template"]["image"], json!("nginx:1"), "a refused webhook changes nothing");

    let good = http
        .post(&hook)
        .header("X-Hub-Signature-256", sign(b"s3cret", body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("POST the webhook");
    assert_eq!(good.status().as_u16(), 202, "a valid signature is accepted");
    let synced = wait_until(DEADLINE, "the watch synced the new commit", || async {
        match outcome(&sim, "w").await {
            Some(o) if o.revision.as_deref() == Some(second.as_str()) => Ok(o),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(synced.run, 2, "exactly one sync after the first: the refused deliveries triggered none");
    assert_eq!((synced.result, synced.counts.updated), (SyncResult::Succeeded, 1));
    let (rec, _) = record(&sim, "web").await.expect("web");
    assert_eq!(rec["spec"]["template"]["image"], json!("nginx:2"));

    // The same listener serves the sync's metrics: two successful syncs, the lock held, a last success set.
    let text = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.expect("GET /metrics");
    let text = text.text().await.expect("the metrics text");
    assert_eq!(metric_sum(&text, "drover_sync_runs_total{sync=\"w\",result=\"Succeeded\"}"), 2, "{text}");
    assert!(text.contains("drover_sync_runs_total{sync=\"w\",result=\"Failed\"} 0\n"), "{text}");
    assert_eq!(metric_sum(&text, "drover_sync_lock_held{sync=\"w\"}"), 1, "{text}");
    let unix_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let last = metric_sum(&text, "drover_sync_last_success_timestamp_seconds{sync=\"w\"}");
    assert!(unix_now.abs_diff(last) < 120, "the last success is recent: {last} vs now {unix_now}");
    drover_e2e::promtool_check_metrics(&text);
    let _ = std::fs::remove_file(secret_file);
}

#[tokio::test]
async fn sync_watch_should_notify_one_sync_failed_per_failing_revision() {
    let sim = SimProcess::start(TIME_SCALE).await;
    // The first delivery is refused (503), to exercise the retry.
    let receiver = std::sync::Arc::new(drover_e2e::webhook::Receiver::failing_first("sync", 1));
    let base = drover_e2e::webhook::serve(receiver.clone()).await;
    let repo = Repo::new();
    repo.write("web.yaml", &template_record("web", "nginx:1", ""));
    repo.commit("web");
    let file = repo.dir.with_extension("notifications.yaml");
    std::fs::write(&file, format!("targets:\n  - name: hook\n    url: {base}/sync\n    events: [SyncFailed]\n"))
        .expect("write the notifications file");
    // Every second: the same failing revision is synced again and again, and must be told of once.
    let _watch = Watch(
        Command::new(binary("drover"))
            .args(["sync", "--watch", &repo.url(), "--name", "w", "--interval", "1s", "--notifications"])
            .arg(&file)
            .env("CONSUL_HTTP_ADDR", &sim.consul_url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start drover sync --watch"),
    );
    wait_until(DEADLINE, "the watch's first sync succeeded", || async {
        match outcome(&sim, "w").await {
            Some(o) if o.result == SyncResult::Succeeded => Ok(o),
            other => Err(other),
        }
    })
    .await;

    repo.write("web.yaml", &template_record("web", "nginx:1", "").replace("count: 2", "count: -1"));
    let bad = repo.commit("an invalid count");
    let failed = wait_until(DEADLINE, "a sync of the invalid commit", || async {
        match outcome(&sim, "w").await {
            Some(o) if o.revision.as_deref() == Some(bad.as_str()) && o.result == SyncResult::Invalid => Ok(o),
            other => Err(other),
        }
    })
    .await;
    let delivered = wait_until(DEADLINE, "a SyncFailed delivered (after one 503)", || async {
        match receiver.delivered("sync") {
            d if !d.is_empty() => Ok(d),
            d => Err(d),
        }
    })
    .await;
    // Two more syncs of the same revision fail the same way: no new notification.
    wait_until(DEADLINE, "two more syncs of the invalid commit", || async {
        match outcome(&sim, "w").await {
            Some(o) if o.run >= failed.run + 2 && o.result == SyncResult::Invalid => Ok(o),
            other => Err(other),
        }
    })
    .await;
    let delivered_after = receiver.delivered("sync");
    assert_eq!(delivered_after.len(), 1, "one SyncFailed per (sync, revision): {delivered_after:?}");
    let body = &delivered[0];
    assert_eq!(body["event"], json!("SyncFailed"), "{body}");
    assert_eq!(body["sync"], json!("w"), "{body}");
    assert_eq!(body["result"], json!("Invalid"), "{body}");
    assert_eq!(body["revision"], json!(bad), "{body}");
    assert!(
        body["errors"].as_array().is_some_and(|e| e.iter().any(|e| e.as_str().is_some_and(|e| e.contains("count")))),
        "the payload names the field in error: {body}"
    );
    let attempts = receiver.got("sync").len();
    assert_eq!(attempts, 2, "one refused attempt (503), then one delivery");
    let _ = std::fs::remove_file(file);
}
