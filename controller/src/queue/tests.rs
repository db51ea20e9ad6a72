//! Component tests of the queue and its runner, on paused tokio time.
//!
//! The reconciler in these tests hands every call to the test (key, start time
//! and a reply channel), so a test decides each outcome and can keep a run in
//! flight as long as it likes. Waiting uses `timeout` on paused time: the runtime
//! jumps straight to the next timer, so "nothing ran within an hour" costs nothing
//! and run times are exact.

use std::num::NonZeroUsize;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::*;

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);

/// One reconcile call, waiting for the test's verdict.
struct Call {
    key: u32,
    at: Instant,
    reply: oneshot::Sender<Reconciled>,
}

impl Call {
    fn reply(self, result: Reconciled) {
        // The runner may have aborted the task on shutdown; nothing to do then.
        let _ = self.reply.send(result);
    }

    fn fail(self, generation: Option<u64>) {
        self.reply(Reconciled::retry(Retry::Backoff, generation));
    }
}

struct Harness {
    queue: Queue<u32>,
    calls: mpsc::UnboundedReceiver<Call>,
    shutdown: CancellationToken,
    runner: JoinHandle<Stopped>,
    t0: Instant,
}

fn config(workers: usize) -> QueueConfig {
    QueueConfig {
        workers: NonZeroUsize::new(workers).expect("tests use at least one worker"),
        // No jitter, so run times are exact: 200, 400, 800, 1000, 1000 ms.
        backoff: Backoff::try_new(200 * MS, 1000 * MS, 2.0, 0.0).expect("valid backoff"),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Starts a runner whose reconciler forwards each call to the test.
fn start(config: QueueConfig) -> Harness {
    let (queue, runner) = Queue::new(config);
    let (tx, calls) = mpsc::unbounded_channel();
    let reconcile = move |key: u32| {
        let tx = tx.clone();
        async move {
            let (reply, verdict) = oneshot::channel();
            let call = Call { key, at: Instant::now(), reply };
            if tx.send(call).is_err() {
                return Reconciled::done(None);
            }
            verdict.await.unwrap_or_else(|_| Reconciled::done(None))
        }
    };
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(runner.run(reconcile, shutdown.clone()));
    Harness { queue, calls, shutdown, runner, t0: Instant::now() }
}

/// Starts a ready queue.
fn start_ready(workers: usize) -> Harness {
    let h = start(config(workers));
    h.queue.set_ready();
    h
}

impl Harness {
    /// The next reconcile call; panics if none starts within an hour.
    async fn next_call(&mut self) -> Call {
        timeout(HOUR, self.calls.recv())
            .await
            .expect("no reconcile started within an hour: the key was lost or never released")
            .expect("the runner stopped")
    }

    /// Asserts that no reconcile starts within `within`.
    async fn no_call_within(&mut self, within: Duration, why: &str) {
        if let Ok(Some(call)) = timeout(within, self.calls.recv()).await {
            panic!("{why}: key {} ran at +{:?}", call.key, call.at - self.t0);
        }
    }

    /// Lets the runner record every replied run before the test moves the clock
    /// by hand (`advance` does not wait for other tasks).
    async fn settle(&self) {
        for _ in 0..1000 {
            if self.queue.in_flight() == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the runner never recorded the end of a replied reconcile");
    }

    /// Milliseconds since the test started.
    fn ms(&self, at: Instant) -> u128 {
        (at - self.t0).as_millis()
    }

    fn enqueue(&self, key: u32, after: Duration, generation: Option<u64>) {
        self.queue.enqueue(key, Some(Instant::now() + after), generation, "test");
    }

    fn enqueue_now(&self, key: u32) {
        self.queue.enqueue(key, None, None, "test");
    }
}

#[tokio::test(start_paused = true)]
async fn queue_should_deduplicate_a_key_keeping_the_earlier_run_at() {
    let mut h = start(config(4));
    h.enqueue(1, 10 * MS, None);
    h.enqueue(1, 5 * MS, None);
    h.enqueue(1, 20 * MS, None);
    assert_eq!(h.queue.depth(), 1);
    h.queue.set_ready();
    let call = h.next_call().await;
    assert_eq!((call.key, h.ms(call.at)), (1, 5));
    assert_eq!(h.queue.depth(), 0);
    call.reply(Reconciled::done(None));
    h.no_call_within(HOUR, "the merged wake-ups must run once").await;
}

#[tokio::test(start_paused = true)]
async fn queue_should_not_run_a_key_twice_at_once_and_run_it_once_more_after() {
    let mut h = start_ready(4);
    h.enqueue_now(1);
    let first = h.next_call().await;
    h.enqueue(1, 30 * MS, None);
    h.enqueue(1, 20 * MS, None);
    h.enqueue(1, 40 * MS, None);
    assert_eq!(h.queue.depth(), 1, "wake-ups of a running key merge into one");
    h.no_call_within(10 * MS, "a running key must not start again").await;
    first.reply(Reconciled::done(None));
    let second = h.next_call().await;
    assert_eq!((second.key, h.ms(second.at)), (1, 20), "the held wake-up runs at its earliest requested time");
    second.reply(Reconciled::done(None));
    h.no_call_within(HOUR, "the held wake-ups must run exactly once").await;
}

#[tokio::test(start_paused = true)]
async fn queue_should_rerun_a_key_at_once_if_its_held_wake_up_is_overdue() {
    let mut h = start_ready(4);
    h.enqueue_now(1);
    let first = h.next_call().await;
    h.enqueue_now(1);
    tokio::time::advance(50 * MS).await;
    first.reply(Reconciled::done(None));
    let second = h.next_call().await;
    assert_eq!(h.ms(second.at), 50);
}

#[tokio::test(start_paused = true)]
async fn queue_should_bound_concurrent_reconciles_by_workers() {
    let mut h = start_ready(2);
    h.queue.enqueue_all(1..=5, "resync");
    let a = h.next_call().await;
    let b = h.next_call().await;
    assert_eq!((a.key, b.key), (1, 2));
    assert_eq!(h.queue.in_flight(), 2);
    assert_eq!(h.queue.depth(), 3);
    h.no_call_within(HOUR, "only two workers").await;
    a.reply(Reconciled::done(None));
    let c = h.next_call().await;
    assert_eq!(c.key, 3);
    h.no_call_within(HOUR, "only two workers").await;
    b.reply(Reconciled::done(None));
    c.reply(Reconciled::done(None));
    let rest = [h.next_call().await.key, h.next_call().await.key];
    assert_eq!(rest, [4, 5], "keys due together run in key order");
}

#[tokio::test(start_paused = true)]
async fn queue_should_hold_work_until_ready() {
    let mut h = start(config(4));
    h.enqueue_now(1);
    h.enqueue(2, 10 * MS, None);
    h.no_call_within(HOUR, "nothing runs before set_ready").await;
    assert_eq!(h.queue.depth(), 2);
    h.queue.set_ready();
    let a = h.next_call().await;
    let b = h.next_call().await;
    assert_eq!((a.key, b.key), (1, 2));
    assert_eq!(a.at, b.at, "both were overdue and run as soon as released");
}

/// Fails every run of key 1 `n` times and returns the run times in ms.
async fn fail_times(h: &mut Harness, n: usize, generation: Option<u64>) -> Vec<u128> {
    let mut times = Vec::new();
    for _ in 0..n {
        let call = h.next_call().await;
        times.push(h.ms(call.at));
        call.fail(generation);
    }
    times
}

#[tokio::test(start_paused = true)]
async fn queue_should_grow_the_backoff_up_to_its_cap() {
    let mut h = start_ready(4);
    h.enqueue_now(1);
    let times = fail_times(&mut h, 6, Some(1)).await;
    // Gaps of 200, 400, 800, then the 1000 ms cap.
    assert_eq!(times, [0, 200, 600, 1400, 2400, 3400]);
}

#[tokio::test(start_paused = true)]
async fn queue_should_reset_the_backoff_on_success() {
    let mut h = start_ready(4);
    h.enqueue_now(1);
    assert_eq!(fail_times(&mut h, 3, Some(1)).await, [0, 200, 600]);
    let call = h.next_call().await;
    assert_eq!(h.ms(call.at), 1400);
    call.reply(Reconciled::requeue_after(100 * MS, Some(1)));
    assert_eq!(
        fail_times(&mut h, 3, Some(1)).await,
        [1500, 1700, 2100],
        "after a success the backoff starts again at 200 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn queue_should_reset_the_backoff_when_woken_for_a_new_generation() {
    let mut h = start_ready(4);
    h.enqueue(1, Duration::ZERO, Some(1));
    assert_eq!(fail_times(&mut h, 3, Some(1)).await, [0, 200, 600]);
    h.settle().await;
    // Backing off until 1400 ms; the record changes at 700 ms.
    tokio::time::advance(100 * MS).await;
    h.enqueue(1, Duration::ZERO, Some(2));
    assert_eq!(
        fail_times(&mut h, 2, Some(2)).await,
        [700, 900],
        "generation 2 runs at once and starts a fresh backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn queue_should_reset_the_backoff_when_a_run_reports_a_new_generation() {
    let mut h = start_ready(4);
    h.enqueue_now(1);
    assert_eq!(fail_times(&mut h, 3, Some(1)).await, [0, 200, 600]);
    assert_eq!(
        fail_times(&mut h, 2, Some(2)).await,
        [1400, 1600],
        "the first failure of generation 2 waits 200 ms, not 1000"
    );
}

/// Regression test for kubernetes/kubernetes#132805: events for a key that is
/// backing off must neither count as failures nor cut the backoff short.
#[tokio::test(start_paused = true)]
async fn queue_should_not_count_or_hasten_other_wake_ups_during_backoff() {
    let mut h = start_ready(4);
    h.enqueue(1, Duration::ZERO, Some(1));
    assert_eq!(fail_times(&mut h, 2, Some(1)).await, [0, 200]);
    h.settle().await;
    // Backing off until 600 ms. Twenty events of the same (or an unknown)
    // generation arrive meanwhile.
    for i in 0..20 {
        tokio::time::advance(10 * MS).await;
        h.enqueue(1, Duration::ZERO, if i % 2 == 0 { Some(1) } else { None });
    }
    assert_eq!(h.queue.depth(), 1);
    let call = h.next_call().await;
    assert_eq!(h.ms(call.at), 600, "the wake-ups must not run the key early");
    call.fail(Some(1));
    let call = h.next_call().await;
    assert_eq!(h.ms(call.at), 1400, "the third failure waits 800 ms: the wake-ups did not count");
}

#[tokio::test(start_paused = true)]
async fn queue_should_requeue_after_the_requested_delay() {
    let mut h = start_ready(4);
    h.enqueue_now(1);
    h.next_call().await.reply(Reconciled::requeue_after(Duration::from_secs(30), None));
    let call = h.next_call().await;
    assert_eq!(h.ms(call.at), 30_000);
    call.reply(Reconciled::requeue_after(Duration::from_secs(30), None));
    h.settle().await;
    assert_eq!(h.queue.depth(), 1, "requeued for 60 s");
    tokio::time::advance(Duration::from_secs(10)).await;
    h.enqueue_now(1);
    let call = h.next_call().await;
    assert_eq!(h.ms(call.at), 40_000, "an earlier wake-up wins over the requeue");
}

#[tokio::test(start_paused = true)]
async fn queue_should_retry_at_once_after_a_conflict() {
    let mut h = start_ready(4);
    h.enqueue_now(1);
    h.next_call().await.reply(Reconciled::retry(Retry::After(Duration::ZERO), Some(1)));
    let call = h.next_call().await;
    assert_eq!(h.ms(call.at), 0);
}

#[tokio::test(start_paused = true)]
async fn queue_should_not_retry_when_told_never() {
    let mut h = start_ready(4);
    h.enqueue_now(1);
    h.next_call().await.reply(Reconciled::retry(Retry::Never, Some(1)));
    h.no_call_within(HOUR, "Retry::Never must not retry").await;
    assert_eq!(h.queue.depth(), 0);
    h.enqueue_now(1);
    let call = h.next_call().await;
    assert_eq!(h.ms(call.at), 3_600_000, "a later wake-up still runs it");
}

#[tokio::test(start_paused = true)]
async fn queue_should_not_retry_a_panicking_reconcile_until_woken() {
    let (queue, runner) = Queue::new(config(1));
    let (tx, mut started) = mpsc::unbounded_channel();
    let reconcile = move |key: u32| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(key);
            panic!("reconcile of {key} panicked on purpose");
        }
    };
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(runner.run(reconcile, shutdown.clone()));
    queue.set_ready();
    queue.enqueue(7, None, None, "test");
    let first = timeout(HOUR, started.recv()).await;
    assert_eq!(first.ok().flatten(), Some(7));
    assert!(timeout(HOUR, started.recv()).await.is_err(), "a panic must not be retried on its own");
    queue.enqueue(7, None, None, "test");
    let again = timeout(HOUR, started.recv()).await;
    assert_eq!(again.ok().flatten(), Some(7), "the runner survived the panic");
    shutdown.cancel();
    let stopped = timeout(HOUR, handle).await.expect("the runner did not stop");
    assert_eq!(stopped.expect("the runner panicked"), Stopped { aborted: 0 });
}

#[tokio::test(start_paused = true)]
async fn queue_should_let_running_reconciles_finish_on_shutdown() {
    let mut h = start_ready(4);
    h.enqueue_now(1);
    h.enqueue(2, 10 * MS, None);
    let call = h.next_call().await;
    h.shutdown.cancel();
    tokio::task::yield_now().await;
    h.enqueue_now(3);
    assert_eq!(h.queue.depth(), 0, "waiting and new work is dropped");
    assert!((&mut h.runner).now_or_never().is_none(), "the runner must wait for the running reconcile");
    tokio::time::advance(Duration::from_secs(1)).await;
    call.reply(Reconciled::requeue_after(Duration::ZERO, None));
    let stopped =
        timeout(HOUR, &mut h.runner).await.expect("the runner did not stop after its last reconcile finished");
    assert_eq!(stopped.expect("the runner panicked"), Stopped { aborted: 0 });
    assert_eq!((h.queue.depth(), h.queue.in_flight()), (0, 0));
    h.no_call_within(HOUR, "nothing runs after shutdown").await;
}

#[tokio::test(start_paused = true)]
async fn queue_should_abort_reconciles_that_outlive_the_shutdown_grace() {
    let mut h = start_ready(4);
    h.enqueue_now(1);
    let _held = h.next_call().await;
    h.shutdown.cancel();
    let stopped = timeout(HOUR, &mut h.runner).await.expect("the runner must stop once the 5 s grace runs out");
    assert_eq!(stopped.expect("the runner panicked"), Stopped { aborted: 1 });
    assert_eq!(h.ms(Instant::now()), 5000);
    assert_eq!((h.queue.depth(), h.queue.in_flight()), (0, 0), "nothing is left behind");
}

#[tokio::test(start_paused = true)]
async fn queue_should_enqueue_every_key_on_resync() {
    let mut h = start_ready(8);
    h.queue.enqueue_all([3, 1, 2], "resync");
    let mut keys = Vec::new();
    for _ in 0..3 {
        let call = h.next_call().await;
        keys.push(call.key);
        call.reply(Reconciled::done(None));
    }
    keys.sort_unstable();
    assert_eq!(keys, [1, 2, 3]);
    h.no_call_within(HOUR, "each key once").await;
}

#[tokio::test(start_paused = true)]
async fn queue_should_run_ten_thousand_keys_once_each_within_the_worker_bound() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const KEYS: u32 = 10_000;
    let (queue, runner) = Queue::new(config(8));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (tx, mut ran) = mpsc::unbounded_channel();
    let reconcile = {
        let (in_flight, peak) = (Arc::clone(&in_flight), Arc::clone(&peak));
        move |key: u32| {
            let (in_flight, peak, tx) = (Arc::clone(&in_flight), Arc::clone(&peak), tx.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(MS).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(key);
                Reconciled::done(None)
            }
        }
    };
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(runner.run(reconcile, shutdown.clone()));
    // Every key twice: the second wake-up of each merges into the first.
    queue.enqueue_all(0..KEYS, "resync");
    queue.enqueue_all((0..KEYS).rev(), "resync");
    assert_eq!(queue.depth(), KEYS as usize);
    queue.set_ready();
    let mut seen = vec![0u32; KEYS as usize];
    for _ in 0..KEYS {
        let key =
            timeout(HOUR, ran.recv()).await.expect("a key was lost: fewer runs than keys").expect("the runner stopped");
        seen[key as usize] += 1;
    }
    assert!(seen.iter().all(|&n| n == 1), "every key runs exactly once");
    assert_eq!(peak.load(Ordering::SeqCst), 8, "never more than 8 at once");
    assert!(timeout(HOUR, ran.recv()).await.is_err(), "no key runs a second time");
    assert_eq!((queue.depth(), queue.in_flight()), (0, 0));
    shutdown.cancel();
    let stopped = timeout(HOUR, handle).await.expect("the runner did not stop");
    assert_eq!(stopped.expect("the runner panicked"), Stopped { aborted: 0 });
}

#[tokio::test(start_paused = true)]
async fn queue_should_run_a_single_key_wake_up_ahead_of_a_resync_of_every_key() {
    let mut h = start_ready(2);
    h.queue.enqueue_all(0..10_000, "resync");
    // Two workers take the first two keys of the sweep; the event arrives while they run.
    let (first, second) = (h.next_call().await, h.next_call().await);
    h.enqueue_now(99_999);
    first.reply(Reconciled::done(None));
    let call = h.next_call().await;
    assert_eq!(call.key, 99_999, "the event ran after the run in flight, not after 9 998 swept keys");
    call.reply(Reconciled::done(None));
    second.reply(Reconciled::done(None));
    let mut swept = 2;
    while swept < 10_000 {
        let call = h.next_call().await;
        assert!(call.key < 10_000, "only swept keys are left");
        call.reply(Reconciled::done(None));
        swept += 1;
    }
    h.no_call_within(HOUR, "every key ran once").await;
}

#[tokio::test(start_paused = true)]
async fn queue_should_report_how_long_each_due_key_waited_for_a_worker() {
    let waits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (queue, runner) = Queue::new(config(1));
    let runner = {
        let waits = waits.clone();
        runner.with_wait_observer(move |priority, waited| {
            waits.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((priority, waited));
        })
    };
    let reconcile = |_key: u32| async {
        tokio::time::sleep(30 * MS).await;
        Reconciled::done(None)
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run(reconcile, shutdown.clone()));
    queue.enqueue(1, None, None, "test");
    queue.enqueue_all([2], "resync");
    queue.enqueue(3, Some(Instant::now() + 10 * MS), None, "test");
    queue.set_ready();
    tokio::time::sleep(200 * MS).await;
    shutdown.cancel();
    task.await.expect("the runner stops");
    let waits = waits.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    assert_eq!(
        waits,
        vec![(Priority::Key, Duration::ZERO), (Priority::Key, 20 * MS), (Priority::Sweep, 60 * MS)],
        "1 runs at once; 3, due at +10 ms, waits for 1 (30 ms); the sweep key waits for both"
    );
}
