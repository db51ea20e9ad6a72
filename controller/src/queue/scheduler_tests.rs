//! Unit tests of the scheduler's rules, with time passed in by hand.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::*;

const MS: Duration = Duration::from_millis(1);

fn scheduler<K: Clone + Eq + std::hash::Hash + Ord>() -> Scheduler<K> {
    let backoff = Backoff::try_new(200 * MS, 1000 * MS, 2.0, 0.0).expect("valid backoff");
    Scheduler::new(backoff)
}

fn wake(at: Instant, generation: Option<u64>) -> Wake {
    Wake { at, generation, reason: "test", priority: Priority::Key }
}

fn sweep(at: Instant) -> Wake {
    Wake { at, generation: None, reason: "sweep", priority: Priority::Sweep }
}

/// Pops every key due at `now`, in order.
fn drain<K: Clone + Eq + std::hash::Hash + Ord>(s: &mut Scheduler<K>, now: Instant) -> Vec<K> {
    std::iter::from_fn(|| s.pop_due(now).map(|(key, _)| key)).collect()
}

#[test]
fn scheduler_should_run_a_key_wake_up_ahead_of_a_sweep_due_earlier() {
    let t0 = Instant::now();
    let mut s = scheduler();
    for key in 0..1_000u32 {
        s.schedule(key, sweep(t0));
    }
    s.schedule(5_000, wake(t0 + 1_000 * MS, None));
    let now = t0 + 1_000 * MS;
    let order = drain(&mut s, now);
    assert_eq!(order.first(), Some(&5_000), "the single-key wake-up goes before the sweep's 1 000 keys");
    assert_eq!(order.len(), 1_001);
    assert_eq!(order[1..], (0..1_000).collect::<Vec<_>>()[..], "the sweep keeps its own order");
    s.assert_consistent();
}

#[test]
fn scheduler_should_run_a_sweep_ahead_of_key_wake_ups_due_after_its_handicap() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("swept", sweep(t0));
    s.schedule("late", wake(t0 + SWEEP_HANDICAP + MS, None));
    s.schedule("early", wake(t0 + SWEEP_HANDICAP - MS, None));
    let now = t0 + 2 * SWEEP_HANDICAP;
    assert_eq!(drain(&mut s, now), vec!["early", "swept", "late"], "a sweep is never starved past its handicap");
}

#[test]
fn scheduler_should_run_a_due_sweep_at_once_when_no_key_wake_up_is_due() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("swept", sweep(t0));
    s.schedule("later", wake(t0 + 10 * MS, None));
    assert_eq!(s.next_due_at(), Some(t0));
    assert_eq!(s.pop_due(t0).map(|p| p.0), Some("swept"), "a free worker never waits on the handicap");
    assert_eq!(s.pop_due(t0), None);
}

#[test]
fn scheduler_should_raise_a_swept_key_woken_on_its_own() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", sweep(t0));
    s.schedule("b", sweep(t0));
    s.schedule("b", wake(t0 + 5 * MS, None));
    s.schedule("c", wake(t0 + 1 * MS, None));
    assert_eq!(s.depth(), 3);
    s.assert_consistent();
    assert_eq!(drain(&mut s, t0 + 5 * MS), vec!["b", "c", "a"], "b keeps the sweep's time and the key's priority");
}

#[test]
fn scheduler_should_keep_a_swept_key_in_the_sweep_when_its_own_wake_up_is_far_off() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", sweep(t0));
    s.schedule("b", sweep(t0));
    // b's own requeue is due long after the handicap: it ranks after the sweep, so b stays a swept key (run at t0).
    s.schedule("b", wake(t0 + SWEEP_HANDICAP * 20, None));
    s.schedule("c", wake(t0 + 1 * MS, None));
    s.assert_consistent();
    assert_eq!(drain(&mut s, t0 + 1 * MS), vec!["c", "a", "b"], "the event first, then the sweep in its order");
}

#[test]
fn scheduler_should_keep_the_priority_of_a_wake_up_held_during_a_run() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", wake(t0, None));
    assert_eq!(s.pop_due(t0).map(|p| p.0), Some("a"));
    s.schedule("a", sweep(t0));
    s.schedule("b", sweep(t0));
    s.schedule("c", wake(t0 + MS, None));
    s.finish("a", &Reconciled::done(None), t0 + MS, &mut rng());
    s.assert_consistent();
    assert_eq!(drain(&mut s, t0 + MS), vec!["c", "a", "b"], "the held sweep stays a sweep, ordered by time");
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

#[test]
fn scheduler_should_keep_one_entry_per_key_at_the_earliest_time() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", wake(t0 + 50 * MS, None));
    s.schedule("a", wake(t0 + 10 * MS, None));
    s.schedule("a", wake(t0 + 90 * MS, None));
    assert_eq!(s.depth(), 1);
    assert_eq!(s.next_due_at(), Some(t0 + 10 * MS));
    assert_eq!(s.pop_due(t0 + 9 * MS), None);
    assert_eq!(s.pop_due(t0 + 10 * MS), Some(("a", "test")));
    assert_eq!((s.depth(), s.running()), (0, 1));
    assert_eq!(s.pop_due(t0 + 100 * MS), None, "the later duplicates were merged");
}

#[test]
fn scheduler_should_report_when_a_key_becomes_the_earliest() {
    let t0 = Instant::now();
    let mut s = scheduler();
    assert!(s.schedule("a", wake(t0 + 50 * MS, None)));
    assert!(!s.schedule("b", wake(t0 + 60 * MS, None)));
    assert!(s.schedule("b", wake(t0 + 40 * MS, None)));
    assert!(!s.schedule("a", wake(t0 + 70 * MS, None)));
}

#[test]
fn scheduler_should_pop_due_keys_in_time_order() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("late", wake(t0 + 20 * MS, None));
    s.schedule("early", wake(t0 + 10 * MS, None));
    let now = t0 + 30 * MS;
    assert_eq!(s.pop_due(now).map(|p| p.0), Some("early"));
    assert_eq!(s.pop_due(now).map(|p| p.0), Some("late"));
    assert_eq!(s.pop_due(now), None);
}

#[test]
fn scheduler_should_hold_a_running_key_and_run_it_once_more_after() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", wake(t0, None));
    assert!(s.pop_due(t0).is_some());
    s.schedule("a", wake(t0 + 30 * MS, None));
    s.schedule("a", wake(t0 + 20 * MS, None));
    assert_eq!(s.depth(), 1);
    assert_eq!(s.pop_due(t0 + 100 * MS), None, "a running key is never popped");
    s.finish("a", &Reconciled::done(None), t0 + 5 * MS, &mut rng());
    assert_eq!(s.next_due_at(), Some(t0 + 20 * MS));
    assert_eq!(s.depth(), 1);
}

#[test]
fn scheduler_should_forget_a_key_that_succeeded_with_nothing_pending() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", wake(t0, None));
    s.pop_due(t0);
    s.finish("a", &Reconciled::done(None), t0, &mut rng());
    assert_eq!((s.tracked(), s.depth(), s.running()), (0, 0, 0));
}

#[test]
fn scheduler_should_grow_failures_only_on_results() {
    let t0 = Instant::now();
    let mut s = scheduler();
    let mut rng = rng();
    s.schedule("a", wake(t0, Some(1)));
    s.pop_due(t0);
    s.finish("a", &Reconciled::retry(Retry::Backoff, Some(1)), t0, &mut rng);
    assert_eq!(s.failures(&"a"), 1);
    assert_eq!(s.next_due_at(), Some(t0 + 200 * MS));
    for _ in 0..10 {
        s.schedule("a", wake(t0 + MS, Some(1)));
        s.schedule("a", wake(t0 + MS, None));
    }
    assert_eq!(s.failures(&"a"), 1, "wake-ups must not count as failures");
    assert_eq!(s.next_due_at(), Some(t0 + 200 * MS), "nor run the key early");
    assert_eq!(s.depth(), 1);
}

#[test]
fn scheduler_should_reset_failures_when_a_wake_up_brings_a_new_generation() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", wake(t0, Some(1)));
    s.pop_due(t0);
    s.finish("a", &Reconciled::retry(Retry::Backoff, Some(1)), t0, &mut rng());
    s.schedule("a", wake(t0 + MS, Some(2)));
    assert_eq!(s.failures(&"a"), 0);
    assert_eq!(s.next_due_at(), Some(t0 + MS));
}

#[test]
fn scheduler_should_reset_failures_when_a_result_reports_a_new_generation() {
    let t0 = Instant::now();
    let mut s = scheduler();
    let mut rng = rng();
    let mut now = t0;
    for _ in 0..3 {
        s.schedule("a", wake(now, None));
        now = s.next_due_at().expect("scheduled");
        s.pop_due(now);
        s.finish("a", &Reconciled::retry(Retry::Backoff, Some(1)), now, &mut rng);
    }
    assert_eq!(s.failures(&"a"), 3);
    now = s.next_due_at().expect("retry scheduled");
    s.pop_due(now);
    s.finish("a", &Reconciled::retry(Retry::Backoff, Some(2)), now, &mut rng);
    assert_eq!(s.failures(&"a"), 1);
    assert_eq!(s.next_due_at(), Some(now + 200 * MS));
}

#[test]
fn scheduler_should_not_delay_a_new_generation_that_arrived_during_a_failing_run() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", wake(t0, Some(1)));
    s.pop_due(t0);
    s.schedule("a", wake(t0 + MS, Some(2)));
    s.finish("a", &Reconciled::retry(Retry::Backoff, Some(1)), t0 + 2 * MS, &mut rng());
    assert_eq!(s.next_due_at(), Some(t0 + MS), "generation 2 runs without backoff");
    assert_eq!(s.failures(&"a"), 0);
}

#[test]
fn scheduler_should_delay_a_same_generation_wake_up_that_arrived_during_a_failing_run() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", wake(t0, Some(1)));
    s.pop_due(t0);
    s.schedule("a", wake(t0 + MS, Some(1)));
    s.finish("a", &Reconciled::retry(Retry::Backoff, Some(1)), t0 + 2 * MS, &mut rng());
    assert_eq!(s.next_due_at(), Some(t0 + 202 * MS));
    assert_eq!((s.failures(&"a"), s.depth()), (1, 1));
}

#[test]
fn scheduler_should_leave_the_backoff_alone_on_retry_after_and_never() {
    let t0 = Instant::now();
    let mut s = scheduler();
    let mut rng = rng();
    s.schedule("a", wake(t0, None));
    s.pop_due(t0);
    s.finish("a", &Reconciled::retry(Retry::Backoff, None), t0, &mut rng);
    let t1 = t0 + 200 * MS;
    s.pop_due(t1);
    s.finish("a", &Reconciled::retry(Retry::After(Duration::ZERO), None), t1, &mut rng);
    assert_eq!(s.next_due_at(), Some(t1), "a conflict retries at once");
    s.pop_due(t1);
    s.finish("a", &Reconciled::retry(Retry::Never, None), t1, &mut rng);
    assert_eq!(s.next_due_at(), None, "never means nothing scheduled");
    assert_eq!(s.failures(&"a"), 1);
    s.schedule("a", wake(t1, None));
    s.pop_due(t1);
    s.finish("a", &Reconciled::retry(Retry::Backoff, None), t1, &mut rng);
    assert_eq!(s.failures(&"a"), 2);
    assert_eq!(s.next_due_at(), Some(t1 + 400 * MS));
}

#[test]
fn scheduler_should_saturate_absurd_delays_instead_of_panicking() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", wake(t0, None));
    s.pop_due(t0);
    s.finish("a", &Reconciled::requeue_after(Duration::MAX, None), t0, &mut rng());
    assert!(s.next_due_at().is_some_and(|at| at > t0));
}

#[test]
fn scheduler_should_drop_waiting_keys_but_keep_running_ones_on_clear() {
    let t0 = Instant::now();
    let mut s = scheduler();
    s.schedule("a", wake(t0, None));
    s.schedule("b", wake(t0, None));
    s.pop_due(t0);
    s.schedule("a", wake(t0, None));
    s.clear_waiting();
    assert_eq!((s.depth(), s.running(), s.next_due_at()), (0, 1, None));
    s.finish("a", &Reconciled::done(None), t0, &mut rng());
    assert_eq!((s.tracked(), s.depth(), s.running()), (0, 0, 0));
}

mod model {
    //! Random sequences of operations against the scheduler's invariants.

    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Schedule { key: u8, after_ms: u32, generation: Option<u64>, swept: bool },
        Advance { ms: u32 },
        Pop,
        Finish { pick: usize, outcome: u8, generation: Option<u64> },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 0u32..2_000, proptest::option::of(0u64..3), any::<bool>())
                .prop_map(|(key, after_ms, generation, swept)| Op::Schedule { key, after_ms, generation, swept }),
            (0u32..1_500).prop_map(|ms| Op::Advance { ms }),
            Just(Op::Pop),
            (any::<usize>(), 0u8..5, proptest::option::of(0u64..3))
                .prop_map(|(pick, outcome, generation)| Op::Finish { pick, outcome, generation }),
        ]
    }

    fn outcome(code: u8) -> Outcome {
        match code {
            0 => Outcome::Done,
            1 => Outcome::RequeueAfter(100 * MS),
            2 => Outcome::Retry { retry: Retry::Backoff },
            3 => Outcome::Retry { retry: Retry::After(Duration::ZERO) },
            _ => Outcome::Retry { retry: Retry::Never },
        }
    }

    proptest! {
        #[test]
        fn scheduler_should_keep_its_invariants_under_any_sequence(ops in proptest::collection::vec(op(), 1..200)) {
            let mut s = scheduler();
            let mut rng = rng();
            let mut now = Instant::now();
            let mut running: BTreeSet<u8> = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Schedule { key, after_ms, generation, swept } => {
                        let before = s.failures(&key);
                        let mut wake = wake(now + after_ms * MS, generation);
                        if swept {
                            wake.priority = Priority::Sweep;
                        }
                        s.schedule(key, wake);
                        let after = s.failures(&key);
                        prop_assert!(after == before || after == 0, "a wake-up changed failures {before} -> {after}");
                    }
                    Op::Advance { ms } => now += ms * MS,
                    Op::Pop => {
                        let due_at = s.next_due_at();
                        if let Some((key, _)) = s.pop_due(now) {
                            prop_assert!(due_at.is_some_and(|at| at <= now), "popped a key before its time");
                            prop_assert!(running.insert(key), "key {key} popped while running");
                        }
                    }
                    Op::Finish { pick, outcome: code, generation } => {
                        if running.is_empty() {
                            continue;
                        }
                        let key = *running.iter().nth(pick % running.len()).expect("non-empty");
                        running.remove(&key);
                        let before = s.failures(&key);
                        let result = Reconciled { outcome: outcome(code), generation };
                        s.finish(key, &result, now, &mut rng);
                        let after = s.failures(&key);
                        match result.outcome {
                            Outcome::Retry { retry: Retry::Backoff } => prop_assert!(
                                after == before + 1 || after <= 1,
                                "a failure moved failures {before} -> {after}"
                            ),
                            Outcome::Done | Outcome::RequeueAfter(_) => prop_assert!(after == 0),
                            Outcome::Retry { .. } => prop_assert!(after == before || after == 0),
                        }
                    }
                }
                s.assert_consistent();
                prop_assert_eq!(s.running(), running.len());
            }
        }
    }
}
