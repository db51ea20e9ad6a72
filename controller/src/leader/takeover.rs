//! The gate writers read, derived from the elector's: a step-down is passed on at once; a new term only once the
//! caller's `prepare` succeeded (the runtime reads every status again: a standby's copy is as old as its start, and
//! deciding on it could repeat a finished step), and then `gained` runs (the runtime resyncs every app, so the new
//! leader acts on current state).

use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::{LeaderGate, Leadership, LeadershipSender, Term};
use crate::queue::Backoff;

/// What a take-over calls: `prepare` before a new term opens (retried with `backoff` until it succeeds or the term
/// ends), `gained` once it opened, `stood_down` whenever this replica does not lead.
pub struct Hooks<P, G, S> {
    /// Makes the replica ready to write (reads state again); an `Err` is logged and retried.
    pub prepare: P,
    /// Runs when a term opened.
    pub gained: G,
    /// Runs when the replica does not lead (at start, after each step-down, and at shutdown).
    pub stood_down: S,
}

/// Follows `elected` and publishes on `serving` until `shutdown`, then publishes [`Leadership::Standby`].
pub async fn follow<P, Fut, E, G, S>(
    mut elected: LeaderGate,
    serving: LeadershipSender,
    mut hooks: Hooks<P, G, S>,
    backoff: Backoff,
    shutdown: CancellationToken,
) where
    P: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error,
    G: FnMut(Term),
    S: FnMut(),
{
    loop {
        match elected.current_seen() {
            Leadership::Standby => {
                serving.send(Leadership::Standby);
                (hooks.stood_down)();
            }
            Leadership::Leading(term) if serving.current() != Leadership::Leading(term) => {
                let mut failures = 0u32;
                loop {
                    let prepared = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        () = elected.lost(term) => break,
                        prepared = (hooks.prepare)() => prepared,
                    };
                    match prepared {
                        Ok(()) => {
                            serving.send(Leadership::Leading(term));
                            (hooks.gained)(term);
                            break;
                        }
                        Err(err) => {
                            failures += 1;
                            let delay = backoff.delay(failures, &mut rand::rng());
                            tracing::warn!(error = %crate::error_chain(&err), retry_in = ?delay, "cannot take over yet");
                            tokio::select! {
                                _ = shutdown.cancelled() => break,
                                () = elected.lost(term) => break,
                                _ = tokio::time::sleep(delay) => {}
                            }
                        }
                    }
                }
            }
            Leadership::Leading(_) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = elected.changed() => if changed.is_none() { break },
        }
    }
    serving.send(Leadership::Standby);
    (hooks.stood_down)();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("statuses unreadable (test)")]
    struct Unreadable;

    #[tokio::test(start_paused = true)]
    async fn follow_should_open_a_term_only_after_prepare_and_pass_a_step_down_at_once() {
        let (elector, elected) = crate::leader::channel();
        let (serving, gate) = crate::leader::channel();
        let failing = Arc::new(AtomicU32::new(2));
        let events = Arc::new(Mutex::new(Vec::new()));
        let hooks = Hooks {
            prepare: {
                let failing = failing.clone();
                move || {
                    let failing = failing.clone();
                    async move {
                        // Fails twice (Consul unreachable), then reads.
                        let left = failing.load(Ordering::SeqCst);
                        if left > 0 {
                            failing.store(left - 1, Ordering::SeqCst);
                            return Err(Unreadable);
                        }
                        Ok(())
                    }
                }
            },
            gained: {
                let events = events.clone();
                move |term: Term| events.lock().unwrap_or_else(|p| p.into_inner()).push(format!("gained {}", term.0))
            },
            stood_down: {
                let events = events.clone();
                move || events.lock().unwrap_or_else(|p| p.into_inner()).push("standby".to_string())
            },
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(follow(elected, serving, hooks, Backoff::default(), shutdown.clone()));
        tokio::task::yield_now().await;

        elector.send(Leadership::Leading(Term(1)));
        tokio::task::yield_now().await;
        assert_eq!(gate.current(), Leadership::Standby, "no term opens before prepare succeeded");
        let mut watch = gate.clone();
        tokio::time::timeout(Duration::from_secs(10), async {
            while watch.changed().await != Some(Leadership::Leading(Term(1))) {}
        })
        .await
        .expect("the term opens once prepare succeeds");
        assert_eq!(failing.load(Ordering::SeqCst), 0, "prepare was retried until it succeeded");

        elector.send(Leadership::Standby);
        tokio::task::yield_now().await;
        assert_eq!(gate.current(), Leadership::Standby, "a step-down is passed on at once");

        shutdown.cancel();
        task.await.expect("follow ends at shutdown");
        let events = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(events, ["standby", "gained 1", "standby", "standby"]);
    }
}
