//! The measurement stage, in-process: deduplication, bounded concurrency, classification, the store and the
//! schedule.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::prometheus::Series;

/// A Prometheus that answers each query from a table (a missing query is refused), counts calls and tracks how
/// many run at once; each answer takes 10 ms of (paused) time.
#[derive(Default)]
struct FakePrometheus {
    answers: BTreeMap<String, f64>,
    calls: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Querier for FakePrometheus {
    async fn query(&self, q: &InstantQuery<'_>) -> Result<QueryResult, QueryError> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(q.query.to_string());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        match self.answers.get(q.query) {
            Some(v) => Ok(QueryResult::Vector(vec![Series { labels: BTreeMap::new(), value: *v }])),
            None => Err(QueryError::Rejected {
                address: q.address.to_string(),
                code: 400,
                error_type: "bad_data".into(),
                message: "parse error".into(),
            }),
        }
    }
}

fn ask(app: &str, check: &str, query: &str) -> Ask {
    Ask {
        app: AppKey::new("default", app),
        check: check.into(),
        request: Request {
            address: "http://prometheus:9090".into(),
            query: query.into(),
            timeout: Duration::from_secs(5),
            headers: Vec::new(),
        },
    }
}

fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[tokio::test(start_paused = true)]
async fn measure_should_run_identical_queries_once_and_answer_every_ask() {
    let prom = FakePrometheus { answers: BTreeMap::from([("cpu".to_string(), 80.0)]), ..Default::default() };
    let asks = vec![ask("a", "cpu", "cpu"), ask("b", "cpu", "cpu"), ask("c", "cpu", "cpu"), ask("c", "bad", "sum(")];
    let (answers, stats) = measure(&prom, asks, 4, at()).await;
    assert_eq!(stats, RoundStats { asked: 4, sent: 2 });
    assert_eq!(prom.calls.lock().unwrap_or_else(|p| p.into_inner()).len(), 2, "one call per distinct query");
    assert_eq!(answers.len(), 4);
    assert!(answers[..3].iter().all(|(_, m)| m.value == Measured::Value(80.0) && m.at == at()));
    assert!(matches!(&answers[3].1.value, Measured::Failed { kind: "rejected", retryable: false, .. }));
    // Another address is another query, even for the same text.
    let mut other = ask("d", "cpu", "cpu");
    other.request.address = "http://other:9090".into();
    let (_, stats) = measure(&prom, vec![ask("a", "cpu", "cpu"), other], 4, at()).await;
    assert_eq!(stats.sent, 2);
}

#[tokio::test(start_paused = true)]
async fn measure_should_bound_concurrency() {
    let answers = (0..20).map(|i| (format!("q{i}"), i as f64)).collect();
    let prom = FakePrometheus { answers, ..Default::default() };
    let asks = (0..20).map(|i| ask(&format!("app{i}"), "c", &format!("q{i}"))).collect();
    let (answers, _) = measure(&prom, asks, 3, at()).await;
    assert_eq!(answers.len(), 20);
    assert_eq!(prom.max_in_flight.load(Ordering::SeqCst), 3, "never more than the bound, and it is used");
}

#[test]
fn measured_should_classify_every_outcome() {
    let one = |v: f64| Ok(QueryResult::Vector(vec![Series { labels: BTreeMap::new(), value: v }]));
    assert_eq!(Measured::from_result(one(1.5)), Measured::Value(1.5));
    assert_eq!(Measured::from_result(Ok(QueryResult::Vector(vec![]))), Measured::NotANumber(Shape::Empty));
    assert_eq!(Measured::from_result(one(f64::NAN)), Measured::NotANumber(Shape::NaN));
    let down = QueryError::Timeout { address: "p".into(), timeout: Duration::from_secs(1) };
    assert!(matches!(Measured::from_result(Err(down)), Measured::Failed { kind: "timeout", retryable: true, .. }));
}

#[test]
fn store_should_keep_the_latest_per_check_and_forget_an_app() {
    let (mut writer, reader) = measurements();
    let m = |v: f64| Measurement { query: "q".into(), value: Measured::Value(v), at: at() };
    let woken = writer.record(vec![(ask("a", "cpu", "q"), m(1.0)), (ask("a", "mem", "q"), m(2.0))]);
    assert_eq!(woken.len(), 1);
    writer.record(vec![(ask("a", "cpu", "q"), m(3.0))]);
    let a = AppKey::new("default", "a");
    assert_eq!(reader.get(&a).get("cpu").map(|m| m.value.clone()), Some(Measured::Value(3.0)));
    assert_eq!(reader.get(&a).len(), 2);
    writer.forget(&a);
    assert!(reader.get(&a).is_empty());
}

#[test]
fn schedule_should_hand_out_due_apps_once_per_interval() {
    let t0 = Instant::now();
    let mut s = Schedule::default();
    let (a, b) = (AppKey::new("default", "a"), AppKey::new("default", "b"));
    let (ten, thirty) = (Duration::from_secs(10), Duration::from_secs(30));
    s.set(a.clone(), ten, t0);
    s.set(b.clone(), thirty, t0);
    // New apps start at a phase of their own within one interval.
    let (pa, pb) = (phase(&a, ten), phase(&b, thirty));
    assert!(pa < ten && pb < thirty);
    assert!(s.due(t0).len() <= 1, "at most an app whose phase is 0 is due at once");
    let all = s.due(t0 + thirty);
    assert_eq!(all.len(), 2, "both due within their first interval: {all:?}");
    // Then once per interval, counted from when they were handed out.
    let t1 = t0 + thirty;
    assert!(s.due(t1 + Duration::from_secs(9)).is_empty());
    assert_eq!(s.next_due(), Some(t1 + ten));
    assert_eq!(s.due(t1 + ten), vec![a.clone()]);
    // An unchanged interval keeps the time; a shorter one takes effect at once.
    s.set(a.clone(), ten, t1 + ten);
    assert_eq!(s.next_due(), Some(t1 + ten + ten));
    s.set(b.clone(), Duration::from_secs(5), t1 + Duration::from_secs(11));
    assert_eq!(s.next_due(), Some(t1 + Duration::from_secs(16)));
    s.remove(&a);
    s.remove(&b);
    assert!(s.is_empty());
    assert_eq!(s.next_due(), None);
}

#[test]
fn schedule_should_spread_apps_with_one_interval_over_it() {
    let t0 = Instant::now();
    let mut s = Schedule::default();
    let every = Duration::from_secs(10);
    for i in 0..1000 {
        s.set(AppKey::new("default", format!("app-{i:04}")), every, t0);
    }
    // In each tenth of the interval, about a tenth of the apps: no burst of 1 000 queries at once.
    for tenth in 1..=10u32 {
        let n = s.due(t0 + every * tenth / 10).len();
        assert!((50..=150).contains(&n), "tenth {tenth}: {n} apps due");
    }
}
