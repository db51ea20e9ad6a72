//! The queue's bookkeeping: when each key runs next, which keys are running, and each key's failures.
//!
//! Pure and synchronous: every method takes `now` as a value, so the rules of the
//! module doc's state diagram are tested here without a runtime. The runner owns
//! one `Scheduler` behind a mutex and only calls these methods.
//!
//! Costs, for 10 000+ keys: `schedule`, `pop_due` and `finish` are `O(log n)`
//! (one `HashMap` lookup and at most one `BTreeSet` removal and insertion); an idle
//! key with no failures holds no memory at all.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::outcome::{Outcome, Reconciled, Retry};

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
}

impl Wake {
    /// Folds `other` into `self`: the earlier time wins (with its reason), and the
    /// newer known generation is kept.
    fn merge(&mut self, other: Wake) {
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
    /// `Scheduler::due` holds `(next.at, key)`.
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
    /// Keys waiting to run and not running, by time then key.
    due: BTreeSet<(Instant, K)>,
    /// Keys with a `next` run, running or not: the queue depth.
    waiting: usize,
    /// Keys in flight.
    running: usize,
    backoff: Backoff,
}

impl<K: Clone + Eq + Hash + Ord> Scheduler<K> {
    pub(crate) fn new(backoff: Backoff) -> Scheduler<K> {
        Scheduler { keys: HashMap::new(), due: BTreeSet::new(), waiting: 0, running: 0, backoff }
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
        self.due.first().map(|(at, _)| *at)
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
        let before = state.next.map(|next| next.at);
        match state.next.as_mut() {
            Some(next) => next.merge(wake),
            None => {
                state.next = Some(wake);
                self.waiting += 1;
            }
        }
        let at = state.next.map_or(wake.at, |next| next.at);
        if before != Some(at) {
            if let Some(before) = before {
                self.due.remove(&(before, key.clone()));
            }
            self.due.insert((at, key.clone()));
        }
        self.due.first() == Some(&(at, key))
    }

    /// Takes the earliest key due at `now`, marking it running. Returns the key and
    /// the reason of the wake-up that set its time, for logs.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(K, &'static str)> {
        if self.next_due_at()? > now {
            return None;
        }
        let (_, key) = self.due.pop_first()?;
        let state = self.keys.get_mut(&key)?;
        let wake = state.next.take()?;
        self.waiting -= 1;
        state.running = true;
        self.running += 1;
        Some((key, wake.reason))
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
            state.next = Some(Wake { at: later(now, after), generation: None, reason });
            self.waiting += 1;
        }
        if state.is_idle() && held.is_none() {
            self.keys.remove(&key);
            return;
        }
        if let Some(at) = state.next.map(|next| next.at) {
            self.due.insert((at, key.clone()));
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
        let mut due = BTreeSet::new();
        let (mut waiting, mut running) = (0, 0);
        for (key, state) in &self.keys {
            assert!(!state.is_idle(), "an idle key must not hold memory");
            waiting += usize::from(state.next.is_some());
            running += usize::from(state.running);
            if let (Some(next), false) = (state.next, state.running) {
                due.insert((next.at, key.clone()));
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
