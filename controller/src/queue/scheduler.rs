//! The queue's bookkeeping: when each key runs next, which keys are running, and each key's failures.
//!
//! Pure and synchronous: every method takes `now` as a value, so the rules of the
//! module doc's state diagram are tested here without a runtime. The runner owns
//! one `Scheduler` behind a mutex and only calls these methods.
//!
//! Costs, for 10 000+ keys: `schedule`, `pop_due` and `finish` are `O(log n)`
//! (one `HashMap` lookup and at most one `BTreeSet` removal and insertion); an idle
//! key with no failures holds no memory at all.
//!
//! # Sweeps wait behind single-key wake-ups, for a bounded time
//!
//! A sweep (the start, a periodic resync, a new leader's resync) wakes every key at
//! once: 10 000 keys ahead of a promote, an abort or a record change that arrives a
//! moment later would delay it by the whole sweep (kubernetes/kubernetes#68179). So a
//! sweep's wake-up is [`Priority::Sweep`]: among due keys, it is taken as if it were
//! due [`SWEEP_HANDICAP`] later. A single-key wake-up due up to that much later still
//! goes first; one due after that waits its turn. The handicap is finite on purpose:
//! with a strict priority, a steady stream of requeues starves a sweep forever
//! (controller-runtime's priority queue, kubernetes-sigs/controller-runtime#3496), and
//! the periodic resync is what repairs a missed event. A key woken both ways runs at
//! the earlier time, under the priority of the wake-up that ranks first: a requeue due
//! in ten minutes does not make a swept key jump the sweep. Nothing waits on the handicap while a worker is free: a due sweep
//! key runs at once when no single-key wake-up is due.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::outcome::{Outcome, Reconciled, Retry};

/// How long a due sweep key lets single-key wake-ups go first (see the module doc).
pub const SWEEP_HANDICAP: Duration = Duration::from_secs(30);

/// Which wake-ups go first among due keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// A wake-up of every key at once (start, resync, leadership gained): taken after
    /// single-key wake-ups due up to [`SWEEP_HANDICAP`] later.
    Sweep,
    /// A wake-up of one key: an event, a control, a measurement, a requeue, a retry.
    Key,
}

/// A request to run a key: the earliest time, the generation that asked (if known)
/// and why, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wake {
    /// Not before this instant.
    pub(crate) at: Instant,
    /// The generation of the record that caused the wake-up, if the caller knew it.
    pub(crate) generation: Option<u64>,
    /// Why, for logs only: never handed to the reconciler.
    pub(crate) reason: &'static str,
    /// Whether this wake-up yields to single-key ones.
    pub(crate) priority: Priority,
}

impl Wake {
    /// Where this wake-up ranks among due keys: a sweep's time plus [`SWEEP_HANDICAP`].
    fn rank(&self) -> Instant {
        match self.priority {
            Priority::Sweep => later(self.at, SWEEP_HANDICAP),
            Priority::Key => self.at,
        }
    }

    /// Folds `other` into `self`: the earlier time wins (with its reason), the priority
    /// of the wake-up that ranks first wins (a tie goes to the single-key one), and the
    /// newer known generation is kept.
    fn merge(&mut self, other: Wake) {
        let other_first = match other.rank().cmp(&self.rank()) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => other.priority > self.priority,
        };
        if other_first {
            self.priority = other.priority;
        }
        if other.at < self.at {
            self.at = other.at;
            self.reason = other.reason;
        }
        self.generation = other.generation.or(self.generation);
    }
}

/// A key that has failed since its last success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failing {
    /// Consecutive `Retry::Backoff` failures; at least 1.
    failures: u32,
    /// The generation these failures belong to, when known.
    generation: Option<u64>,
    /// Wake-ups of the same generation do not run the key before this instant.
    until: Instant,
}

/// One key's state. Exists only while the key is scheduled, running or failing.
#[derive(Debug, Default)]
struct KeyState {
    /// The next run. If `running`, it is held back until the run ends; otherwise
    /// `Scheduler::due` holds it (under its priority).
    next: Option<Wake>,
    /// A reconcile of this key is in flight.
    running: bool,
    /// Failures since the last success.
    failing: Option<Failing>,
}

impl KeyState {
    /// Applies a generation reported by a wake-up or a result: a different known
    /// generation drops the failures (a new record deserves a fresh start); an
    /// unknown one is adopted so the next difference can be recognised.
    fn observe_generation(&mut self, generation: Option<u64>) {
        let (Some(seen), Some(failing)) = (generation, self.failing.as_mut()) else {
            return;
        };
        match failing.generation {
            Some(owner) if owner != seen => self.failing = None,
            Some(_) => {}
            None => failing.generation = Some(seen),
        }
    }

    /// The time a wake-up may actually run: not before the end of the backoff
    /// window, unless its generation resets the backoff.
    fn gate(&mut self, wake: Wake) -> Wake {
        self.observe_generation(wake.generation);
        match self.failing {
            Some(failing) if failing.until > wake.at => Wake { at: failing.until, ..wake },
            _ => wake,
        }
    }

    fn is_idle(&self) -> bool {
        self.next.is_none() && !self.running && self.failing.is_none()
    }
}

/// The scheduling state of every key. See the module doc of `queue` for the rules.
#[derive(Debug)]
pub(crate) struct Scheduler<K> {
    keys: HashMap<K, KeyState>,
    /// Keys waiting to run and not running, by priority, then time then key.
    due: Due<K>,
    /// Keys with a `next` run, running or not: the queue depth.
    waiting: usize,
    /// Keys in flight.
    running: usize,
    backoff: Backoff,
}

impl<K: Clone + Eq + Hash + Ord> Scheduler<K> {
    pub(crate) fn new(backoff: Backoff) -> Scheduler<K> {
        Scheduler { keys: HashMap::new(), due: Due::default(), waiting: 0, running: 0, backoff }
    }

    /// Keys waiting to run (including those waiting for their own run to end).
    pub(crate) fn depth(&self) -> usize {
        self.waiting
    }

    /// Keys being reconciled.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// When the earliest waiting key becomes due, if any.
    pub(crate) fn next_due_at(&self) -> Option<Instant> {
        self.due.next_at()
    }

    /// Asks for `key` to run. Returns true if this made it the earliest due key
    /// (so a runner asleep until a later time must wake up).
    ///
    /// Never touches the failure count: only results do (kubernetes/kubernetes#132805).
    pub(crate) fn schedule(&mut self, key: K, wake: Wake) -> bool {
        let state = self.keys.entry(key.clone()).or_default();
        if state.running {
            // Held raw: the backoff that applies is only known once the run ends.
            match state.next.as_mut() {
                Some(next) => next.merge(wake),
                None => {
                    state.next = Some(wake);
                    self.waiting += 1;
                }
            }
            return false;
        }
        let wake = state.gate(wake);
        let before = state.next;
        let next = match state.next.as_mut() {
            Some(next) => {
                next.merge(wake);
                *next
            }
            None => {
                state.next = Some(wake);
                self.waiting += 1;
                wake
            }
        };
        let moved = before.map(|b| (b.at, b.priority)) != Some((next.at, next.priority));
        if moved {
            if let Some(before) = before {
                self.due.remove(&before, &key);
            }
            self.due.insert(&next, key);
        }
        self.due.next_at() == Some(next.at)
    }

    /// Takes the earliest key due at `now`, marking it running. Returns the key and
    /// the reason of the wake-up that set its time, for logs.
    #[cfg(test)]
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(K, &'static str)> {
        self.pop_due_wake(now).map(|(key, wake)| (key, wake.reason))
    }

    /// [`Scheduler::pop_due`], with the whole wake-up: its priority, and its time, to tell how long it waited.
    pub(crate) fn pop_due_wake(&mut self, now: Instant) -> Option<(K, Wake)> {
        let key = self.due.pop(now)?;
        let state = self.keys.get_mut(&key)?;
        let wake = state.next.take()?;
        self.waiting -= 1;
        state.running = true;
        self.running += 1;
        Some((key, wake))
    }

    /// Records the end of `key`'s run at `now` and schedules what follows: the run
    /// the result asks for, merged with any wake-up that arrived meanwhile.
    pub(crate) fn finish<R: Rng + ?Sized>(&mut self, key: K, result: &Reconciled, now: Instant, rng: &mut R) {
        let Some(state) = self.keys.get_mut(&key) else {
            return;
        };
        if !state.running {
            return;
        }
        state.running = false;
        self.running -= 1;
        let held = state.next.take();
        if held.is_some() {
            self.waiting -= 1;
        }
        state.observe_generation(result.generation);
        let own = match result.outcome {
            Outcome::Done => {
                state.failing = None;
                None
            }
            Outcome::RequeueAfter(after) => {
                state.failing = None;
                Some((after, "requeue-after"))
            }
            Outcome::Retry { retry: Retry::Backoff } => {
                let failing = state.failing.take();
                let failures = failing.map_or(1, |f| f.failures.saturating_add(1));
                let delay = self.backoff.delay(failures, rng);
                state.failing = Some(Failing {
                    failures,
                    generation: result.generation.or(failing.and_then(|f| f.generation)),
                    until: later(now, delay),
                });
                Some((delay, "backoff"))
            }
            Outcome::Retry { retry: Retry::After(after) } => Some((after, "retry-after")),
            Outcome::Retry { retry: Retry::Never } => None,
        };
        // The result's own request is the queue's decision and is not gated again;
        // a wake-up held during the run is gated like any other.
        if let Some((after, reason)) = own {
            state.next = Some(Wake { at: later(now, after), generation: None, reason, priority: Priority::Key });
            self.waiting += 1;
        }
        if state.is_idle() && held.is_none() {
            self.keys.remove(&key);
            return;
        }
        if let Some(next) = state.next {
            self.due.insert(&next, key.clone());
        }
        if let Some(held) = held {
            self.schedule(key, held);
        }
    }

    /// Drops every waiting key (on shutdown); running keys are left to finish.
    pub(crate) fn clear_waiting(&mut self) {
        self.due.clear();
        self.keys.retain(|_, state| state.running);
        for state in self.keys.values_mut() {
            state.next = None;
        }
        self.waiting = 0;
    }

    /// Forgets everything (after shutdown, once no run can report back).
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.due.clear();
        self.waiting = 0;
        self.running = 0;
    }

    /// Panics if the bookkeeping disagrees with itself, for tests.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        let mut due = Due::default();
        let (mut waiting, mut running) = (0, 0);
        for (key, state) in &self.keys {
            assert!(!state.is_idle(), "an idle key must not hold memory");
            waiting += usize::from(state.next.is_some());
            running += usize::from(state.running);
            if let (Some(next), false) = (state.next, state.running) {
                due.insert(&next, key.clone());
            }
            if let Some(failing) = state.failing {
                assert!(failing.failures >= 1, "a failing key has failed at least once");
            }
        }
        assert!(due == self.due, "`due` must list exactly the waiting keys that are not running");
        assert_eq!((waiting, running), (self.waiting, self.running), "counters");
    }

    /// Consecutive failures of `key`, for tests.
    #[cfg(test)]
    pub(crate) fn failures(&self, key: &K) -> u32 {
        self.keys.get(key).and_then(|s| s.failing).map_or(0, |f| f.failures)
    }

    /// Number of keys holding memory, for tests.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.keys.len()
    }
}

/// The keys waiting to run and not running: one ordered set per priority.
#[derive(Debug, PartialEq, Eq)]
struct Due<K> {
    /// Single-key wake-ups, by time then key.
    key: BTreeSet<(Instant, K)>,
    /// Sweep wake-ups, by time then key.
    sweep: BTreeSet<(Instant, K)>,
}

impl<K> Default for Due<K> {
    fn default() -> Self {
        Due { key: BTreeSet::new(), sweep: BTreeSet::new() }
    }
}

impl<K: Clone + Ord> Due<K> {
    fn set(&mut self, priority: Priority) -> &mut BTreeSet<(Instant, K)> {
        match priority {
            Priority::Key => &mut self.key,
            Priority::Sweep => &mut self.sweep,
        }
    }

    fn insert(&mut self, wake: &Wake, key: K) {
        self.set(wake.priority).insert((wake.at, key));
    }

    fn remove(&mut self, wake: &Wake, key: &K) {
        self.set(wake.priority).remove(&(wake.at, key.clone()));
    }

    fn clear(&mut self) {
        self.key.clear();
        self.sweep.clear();
    }

    /// When the earliest key of either priority becomes due.
    fn next_at(&self) -> Option<Instant> {
        let key = self.key.first().map(|(at, _)| *at);
        let sweep = self.sweep.first().map(|(at, _)| *at);
        key.into_iter().chain(sweep).min()
    }

    /// Takes the key to run at `now`: of the earliest due key of each priority, the one
    /// that ranks first (a sweep's rank is its time plus [`SWEEP_HANDICAP`]; a tie goes
    /// to the single-key wake-up).
    fn pop(&mut self, now: Instant) -> Option<K> {
        let key = self.key.first().filter(|(at, _)| *at <= now).map(|(at, _)| *at);
        let sweep = self.sweep.first().filter(|(at, _)| *at <= now).map(|(at, _)| *at);
        let take_sweep = match (key, sweep) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(key), Some(sweep)) => later(sweep, SWEEP_HANDICAP) < key,
        };
        let set = if take_sweep { &mut self.sweep } else { &mut self.key };
        set.pop_first().map(|(_, key)| key)
    }
}

/// `now + after`, saturating far in the future instead of panicking on overflow
/// (a reconciler may ask for an absurd delay; that means "not soon", not a crash).
pub(crate) fn later(now: Instant, after: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    // Unreachable in practice (the monotonic clock is nowhere near its end); if it
    // were, running now beats panicking.
    now.checked_add(after.min(FAR)).unwrap_or(now)
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
