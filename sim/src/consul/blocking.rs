//! Blocking queries (api-contract.md A2), the way `agent/blockingquery.Query` runs them: re-run the query on
//! every committed change until its index passes `?index=`, or the wait (clamped, plus jitter) runs out on the sim
//! clock, or the state store is replaced by a restore.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::Consul;
use super::error::ApiError;
use super::http::{ReadOptions, positive_duration};
use super::state::ConsulState;

/// `MaxQueryTime`: waits are clamped to 10 minutes.
pub const MAX_QUERY_TIME: Duration = Duration::from_secs(600);
/// `DefaultQueryTime`: a wait of zero or none means 5 minutes.
pub const DEFAULT_QUERY_TIME: Duration = Duration::from_secs(300);
/// `JitterFraction`: up to wait/16 is added after the clamp.
pub const JITTER_FRACTION: u32 = 16;

/// What one pass of a query produced.
#[derive(Debug, Clone)]
pub struct Pass<T> {
    /// The index of the result.
    pub index: u64,
    /// The result.
    pub value: T,
    /// True for the `ErrNotFound` sentinel (a missing single key): from the second such pass on, the minimum
    /// index becomes the current index, so the query keeps blocking until the key appears (A2 rule 4).
    pub not_found: bool,
}

impl Consul {
    /// `RPCQueryTimeout`: the wait clamped to `MaxQueryTime` (default `DefaultQueryTime` when ≤ 0 or absent),
    /// plus jitter in `[0, wait/16)` added after the clamp.
    pub(crate) fn query_timeout(&self, wait: Option<i128>) -> Duration {
        let wait = wait.and_then(positive_duration).map_or(DEFAULT_QUERY_TIME, |w| w.min(MAX_QUERY_TIME));
        wait + self.shared.random_below(wait / JITTER_FRACTION)
    }

    /// Runs `query` as a (possibly) blocking query. `query` sees the state under the lock and must be cheap.
    pub(crate) async fn blocking<T>(
        &self,
        opts: &ReadOptions,
        mut query: impl FnMut(&ConsulState) -> Result<Pass<T>, ApiError>,
    ) -> Result<Pass<T>, ApiError> {
        if opts.index == 0 {
            return query(&self.lock());
        }
        let deadline = self.shared.clock.now() + self.query_timeout(opts.wait);
        let mut changes = self.changes.subscribe();
        let mut min_index = opts.index;
        let mut seen_not_found = false;
        loop {
            changes.borrow_and_update();
            let (pass, generation) = {
                let state = self.lock();
                (query(&state)?, state.generation)
            };
            if pass.not_found {
                if seen_not_found {
                    min_index = pass.index;
                }
                seen_not_found = true;
            }
            if pass.index > min_index {
                return Ok(pass);
            }
            let woken = {
                let _parked = Parked::new(&self.parked);
                tokio::select! {
                    _ = self.shared.clock.sleep_until(deadline) => false,
                    changed = changes.changed() => changed.is_ok(),
                }
            };
            if !woken {
                return Ok(pass);
            }
            // A restore replaced the store while we waited: an abandoned store ends the query with the result we
            // already had, as `AbandonCh` does in Consul (the next query sees the restored, lower indexes).
            let restored = self.lock().generation != generation;
            if restored {
                return Ok(pass);
            }
        }
    }
}

/// Counts a parked query for as long as it lives (also when the request is dropped mid-wait).
struct Parked<'a>(&'a AtomicUsize);

impl<'a> Parked<'a> {
    fn new(counter: &'a AtomicUsize) -> Parked<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        Parked(counter)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Shared, SimConfig};

    #[test]
    fn query_timeout_should_clamp_then_add_jitter() {
        let c = Consul::new(Shared::new(&SimConfig::default()));
        for _ in 0..200 {
            let t = c.query_timeout(Some(3600 * 1_000_000_000));
            assert!(t >= MAX_QUERY_TIME && t < MAX_QUERY_TIME + MAX_QUERY_TIME / 16, "{t:?}");
            let t = c.query_timeout(None);
            assert!(t >= DEFAULT_QUERY_TIME && t < DEFAULT_QUERY_TIME + DEFAULT_QUERY_TIME / 16, "{t:?}");
            let t = c.query_timeout(Some(0));
            assert!(t >= DEFAULT_QUERY_TIME, "a zero wait means the default: {t:?}");
            let t = c.query_timeout(Some(16_000_000_000));
            assert!(t >= Duration::from_secs(16) && t < Duration::from_secs(17), "{t:?}");
        }
    }
}
