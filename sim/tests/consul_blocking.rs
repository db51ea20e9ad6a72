//! Contract tests for api-contract.md A2 (blocking queries): index rules, waits on the sim clock, missing keys,
//! tombstones, and indexes that go backwards.

mod consul_support;

use std::time::Duration;

use consul_support::{Sim, eventually, spawn_scaled};

/// Waits until `n` blocking queries are parked in the model.
async fn parked(s: &Sim, n: usize) {
    let c = s.consul.clone();
    eventually(Duration::from_secs(10), "the blocking query to park", move || {
        let c = c.clone();
        async move { c.blocking_queries() >= n }
    })
    .await;
}

#[tokio::test]
async fn a2_index_zero_should_not_block() {
    let s = spawn_scaled(1.0).await;
    s.put_ok("/v1/kv/k", "v").await;
    let r = tokio::time::timeout(Duration::from_secs(5), s.get("/v1/kv/k?index=0&wait=10m"))
        .await
        .expect("index=0 must answer at once, not wait 10 minutes");
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a2_blocking_get_should_wake_on_the_write_that_changes_it() {
    let s = spawn_scaled(1.0).await;
    s.put_ok("/v1/kv/k", "v1").await;
    let idx = s.modify_index("k").await;
    let url = format!("/v1/kv/k?index={idx}&wait=10m");
    let waiter = {
        let s = &s;
        async move { s.get(&url).await }
    };
    let (r, ()) = tokio::join!(
        async { tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("a write must wake the query") },
        async {
            parked(&s, 1).await;
            s.put_ok("/v1/kv/k", "v2").await;
        }
    );
    assert_eq!(r.status, 200);
    assert!(r.index() > idx);
    assert_eq!(r.json()[0]["Value"], "djI=");
}

#[tokio::test]
async fn a2_noop_write_should_not_wake_a_blocking_query() {
    let s = spawn_scaled(0.001).await;
    s.put_ok("/v1/kv/k", "same").await;
    let idx = s.modify_index("k").await;
    let before = s.sim_now();
    let url = format!("/v1/kv/k?index={idx}&wait=30s");
    let (r, ()) = tokio::join!(s.get(&url), async {
        parked(&s, 1).await;
        s.put_ok("/v1/kv/k", "same").await;
    });
    assert_eq!((r.status, r.index()), (200, idx), "it ends on its timeout, unchanged");
    assert!(s.sim_now() - before >= Duration::from_secs(30), "it waited the full 30s of sim time");
}

#[tokio::test]
async fn a2_timeout_returns_same_index() {
    let s = spawn_scaled(0.001).await;
    s.put_ok("/v1/kv/k", "v").await;
    let first = s.get("/v1/kv/k").await;
    let before = s.sim_now();
    let r = s.get(&format!("/v1/kv/k?index={}&wait=2s", first.index())).await;
    assert!(s.sim_now() - before >= Duration::from_secs(2), "the wait runs on the sim clock");
    assert_eq!(r.status, 200);
    assert_eq!(r.index(), first.index(), "same X-Consul-Index on timeout");
    assert_eq!(r.body, first.body, "same body on timeout");
}

#[tokio::test]
async fn a2_wait_should_default_to_5_minutes_and_clamp_at_10() {
    let s = spawn_scaled(0.001).await;
    s.put_ok("/v1/kv/k", "v").await;
    let idx = s.modify_index("k").await;
    let before = s.sim_now();
    s.get(&format!("/v1/kv/k?index={idx}")).await;
    let waited = s.sim_now() - before;
    assert!(waited >= Duration::from_secs(300) && waited < Duration::from_secs(600), "default wait: {waited:?}");
    let before = s.sim_now();
    s.get(&format!("/v1/kv/k?index={idx}&wait=1h")).await;
    let waited = s.sim_now() - before;
    assert!(waited >= Duration::from_secs(600) && waited < Duration::from_secs(1200), "clamped wait: {waited:?}");
}

#[tokio::test]
async fn a2_bad_index_and_wait_should_be_400() {
    let s = spawn_scaled(0.001).await;
    let r = s.get("/v1/kv/k?index=abc").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid index"));
    let r = s.get("/v1/kv/k?index=-1").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid index"));
    let r = s.get("/v1/kv/k?index=1&wait=10").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid wait time"));
    let r = s.get("/v1/kv/k?stale").await;
    assert_eq!(r.status, 404, "?stale alone is fine");
    let r = s.get("/v1/kv/k?consistent").await;
    assert_eq!(r.status, 404, "?consistent alone is fine");
}

#[tokio::test]
async fn a2_missing_key_should_keep_blocking_while_the_table_index_moves() {
    let s = spawn_scaled(0.001).await;
    s.put_ok("/v1/kv/other", "1").await;
    let idx = s.get("/v1/kv/missing").await.index();
    let before = s.sim_now();
    let url = format!("/v1/kv/missing?index={idx}&wait=10m");
    let (r, moved) = tokio::join!(s.get(&url), async {
        parked(&s, 1).await;
        s.put_ok("/v1/kv/other", "2").await;
        s.modify_index("other").await
    });
    assert_eq!(r.status, 404, "still missing when the wait expires");
    assert!(s.sim_now() - before >= Duration::from_secs(600), "it did not return on the unrelated write");
    assert_eq!(r.index(), moved, "the 404 carries the current table index");
    assert!(moved > idx);
}

#[tokio::test]
async fn a2_missing_key_should_return_200_when_it_appears() {
    let s = spawn_scaled(1.0).await;
    let idx = s.get("/v1/kv/late").await.index();
    let (r, ()) = tokio::join!(
        async {
            tokio::time::timeout(Duration::from_secs(5), s.get(&format!("/v1/kv/late?index={idx}&wait=10m")))
                .await
                .expect("the key appearing must end the wait")
        },
        async {
            parked(&s, 1).await;
            s.put_ok("/v1/kv/late", "here").await;
        }
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["Key"], "late");
}

#[tokio::test]
async fn a2_missing_key_with_an_older_index_should_404_at_once() {
    let s = spawn_scaled(1.0).await;
    s.put_ok("/v1/kv/a", "1").await;
    s.put_ok("/v1/kv/b", "1").await;
    let current = s.get("/v1/kv/missing").await.index();
    let r = tokio::time::timeout(Duration::from_secs(5), s.get(&format!("/v1/kv/missing?index={}", current - 1)))
        .await
        .expect("an index below the current one answers on the first pass");
    assert_eq!((r.status, r.index()), (404, current));
}

#[tokio::test]
async fn a2_prefix_index_should_count_tombstones() {
    let s = spawn_scaled(0.001).await;
    s.put_ok("/v1/kv/p/a", "1").await;
    s.put_ok("/v1/kv/p/b", "1").await;
    s.put_ok("/v1/kv/q", "1").await;
    let a = s.modify_index("p/a").await;
    assert_eq!(s.delete("/v1/kv/p/b").await.body, "true");
    let after_delete = s.get("/v1/kv/p/?recurse").await.index();
    assert!(after_delete > a, "the tombstone of p/b counts for the p/ prefix");
    assert_eq!(s.get("/v1/kv/p/?keys").await.index(), after_delete);
    let q = s.modify_index("q").await;
    assert!(after_delete > q, "the delete is the newest write");
    let whole = s.get("/v1/kv/?recurse").await.index();
    assert_eq!(whole, after_delete, "the whole store reports the table index");
}

#[tokio::test]
async fn a2_reaping_tombstones_should_make_the_prefix_index_go_backwards() {
    let s = spawn_scaled(0.001).await;
    s.put_ok("/v1/kv/p/a", "1").await;
    s.put_ok("/v1/kv/p/b", "1").await;
    let a = s.modify_index("p/a").await;
    s.delete("/v1/kv/p/b").await;
    let before = s.get("/v1/kv/p/?recurse").await.index();
    let r = s.req(reqwest::Method::POST, "/_sim/consul/reap-tombstones", &[], None).await;
    assert_eq!(r.json()["Reaped"], 1);
    let after = s.get("/v1/kv/p/?recurse").await.index();
    assert!(after < before, "index went backwards: {before} -> {after}");
    assert_eq!(after, a);
    assert_eq!(s.get("/v1/kv/?recurse").await.index(), before, "the table index itself does not go back");
}

#[tokio::test]
async fn a2_tombstones_should_be_reaped_after_the_tombstone_ttl() {
    let s = spawn_scaled(0.0005).await;
    s.put_ok("/v1/kv/t", "1").await;
    let deleted_at = s.sim_now();
    s.delete("/v1/kv/t").await;
    assert_eq!(s.consul.stats().tombstones, 1);
    let c = s.consul.clone();
    eventually(Duration::from_secs(20), "the tombstone to be reaped", move || {
        let c = c.clone();
        async move { c.stats().tombstones == 0 }
    })
    .await;
    assert!(s.sim_now() - deleted_at >= Duration::from_secs(15 * 60), "not before TombstoneTTL");
}

#[tokio::test]
async fn a2_restore_should_make_indexes_go_backwards() {
    let s = spawn_scaled(0.001).await;
    s.put_ok("/v1/kv/a", "1").await;
    let old = s.modify_index("a").await;
    let snap = s.req(reqwest::Method::POST, "/_sim/consul/snapshot", &[], None).await;
    assert_eq!(snap.status, 200);
    s.put_ok("/v1/kv/a", "2").await;
    s.put_ok("/v1/kv/b", "2").await;
    let newer = s.modify_index("a").await;
    assert!(newer > old);
    let r = s.req(reqwest::Method::POST, "/_sim/consul/restore", &[], None).await;
    assert_eq!(r.status, 200);
    let g = s.get("/v1/kv/a").await;
    assert_eq!((g.index(), g.json()[0]["Value"].as_str()), (old, Some("MQ==")));
    assert_eq!(s.get("/v1/kv/b").await.status, 404);
    assert!(s.get("/v1/kv/?keys").await.index() < newer);
}

#[tokio::test]
async fn a2_restore_should_end_blocking_queries_with_their_last_result() {
    let s = spawn_scaled(1.0).await;
    s.put_ok("/v1/kv/a", "1").await;
    s.req(reqwest::Method::POST, "/_sim/consul/snapshot", &[], None).await;
    s.put_ok("/v1/kv/a", "2").await;
    let idx = s.modify_index("a").await;
    let (r, ()) = tokio::join!(
        async {
            tokio::time::timeout(Duration::from_secs(5), s.get(&format!("/v1/kv/a?index={idx}&wait=10m")))
                .await
                .expect("a restore abandons the store and ends the query")
        },
        async {
            parked(&s, 1).await;
            s.req(reqwest::Method::POST, "/_sim/consul/restore", &[], None).await;
        }
    );
    assert_eq!((r.status, r.index()), (200, idx), "the pre-restore result comes back");
    assert!(s.get("/v1/kv/a").await.index() < idx, "the next read sees the restored index");
}

#[tokio::test]
async fn cut_should_drop_a_blocking_query_in_flight_without_an_answer() {
    let s = spawn_scaled(1.0).await;
    s.put_ok("/v1/kv/k", "v1").await;
    let idx = s.modify_index("k").await;
    let url = format!("{}/v1/kv/k?index={idx}&wait=10m", s.url);
    let waiter = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    parked(&s, 1).await;
    let r = s.req(reqwest::Method::POST, "/_sim/requests/cut", &[], Some(br#"{"server":"consul"}"#.to_vec())).await;
    assert_eq!((r.status, r.json()["cut"].clone()), (200, serde_json::json!(1)), "{}", r.body);
    let out = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("a cut blocking query must end at once, not wait its 10 minutes")
        .expect("the waiting task does not panic");
    assert!(out.is_err(), "the client sees the connection close without an answer, got {out:?}");
    // The model is unharmed: the next blocking query parks again and a write wakes it.
    let r = tokio::time::timeout(Duration::from_secs(5), s.get(&format!("/v1/kv/k?index={idx}&wait=1s")))
        .await
        .expect("a 1 s blocking query answers (sim clock at scale 1)");
    assert_eq!(r.status, 200);
}
