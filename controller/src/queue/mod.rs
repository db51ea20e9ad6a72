//! The work queue: decides when each key is reconciled, one run per key at a time, on bounded workers.
//!
//! Every source of work (the Consul watcher, the Nomad event stream, the resync
//! timer, requeues and retries) only says *which key* and *not before when*;
//! the queue turns that into runs of the reconciler (DESIGN.md §1, STYLE item 6):
//!
//! - **One entry per key.** Wake-ups of a waiting key merge; the earlier time wins.
//! - **Never two runs of one key.** A wake-up of a running key is held and runs
//!   exactly once after the run ends, at the earliest requested time.
//! - **Bounded.** At most `workers` reconciles at once.
//! - **Sweeps yield.** A wake-up of every key (start, resync, new leader) runs after
//!   single-key wake-ups (events, controls, measurements, requeues) due up to
//!   [`SWEEP_HANDICAP`] later, and before later ones: an event never waits behind
//!   10 000 resyncs, and a stream of events never starves a resync.
//! - **Ready gating.** Nothing runs until [`Queue::set_ready`]: the stores must hold
//!   a full listing before anything acts on them.
//! - **Per-key backoff.** `Retry::Backoff` counts a failure and retries after a
//!   jittered exponential [`Backoff`]. A success, or a result or wake-up for a
//!   *different generation* of the record, resets it. Other wake-ups during the
//!   backoff never count as failures and never run the key before the backoff
//!   ends (kubernetes/kubernetes#132805 is the bug this avoids: a rate limiter fed
//!   by every event grows faster than exponentially).
//! - **Reasons are for logs.** The reconciler gets only the key; it reads the whole
//!   current state instead of trusting what woke it.
//!
//! # States of one key
//!
//! ```text
//!   enqueue                      due, ready, worker free
//!  ----------> +---------+ ------------------------------> +---------+
//!              | Waiting |                                 | Running |<--+ enqueue: held,
//!  +---------> +---------+ <---------------+               +---------+---+ merged, runs
//!  |             |     ^                   |                    |            once after
//!  |             +-----+                   | RequeueAfter(d),   | run ends
//!  |       enqueue: earlier time           | Retry::After(d),   |
//!  |       wins; not before the backoff    | Retry::Backoff,    |
//!  |       ends unless the generation      | or a held wake-up  |
//!  |       differs                         +--------------------+
//!  |                                                            |
//!  |  enqueue   +------+    Done or Retry::Never, nothing held  |
//!  +----------- | Idle | <--------------------------------------+
//!               +------+
//! ```
//!
//! Failures are not a state of their own but a window attached to the key
//! (`failures`, the generation they belong to, `until`), set by `Retry::Backoff`
//! and cleared by `Done`, `RequeueAfter` or a new generation. An idle key without
//! failures holds no memory.
//!
//! # Design
//!
//! The handle, [`Queue`], is a cheap clone shared by every producer; enqueueing is
//! a synchronous call that merges into the per-key entry under one short lock.
//! STYLE item 2 suggests requeues travel through one bounded channel to a single
//! owner; here the deduplication happens at the sender instead, so memory is
//! `O(keys)` whatever the event rate, producers never block or drop, and
//! [`Queue::depth`] is exact. The state still has a single owner in spirit: all of
//! it sits in one `scheduler::Scheduler` value behind one mutex (never held across an
//! await), and the [`Runner`] is the only task that starts and finishes runs.
//! Keys wait in a `BTreeSet` ordered by time (`O(log n)` per operation, no scan,
//! no task per idle key); the runner sleeps until the earliest one or until woken.

mod backoff;
mod outcome;
mod runner;
mod scheduler;

pub use backoff::{Backoff, BackoffError};
pub use outcome::{Outcome, Reconciled, Retry};
pub use runner::{DEFAULT_WORKERS, Queue, QueueConfig, Runner, Stopped};
pub use scheduler::{Priority, SWEEP_HANDICAP};

#[cfg(test)]
mod tests;
