//! Simulated time: every duration the servers model runs on this clock, so `--time-scale` applies to all of them.
//!
//! Built on `tokio::time`, so tests that pause tokio time drive the simulator's clock too.

use std::ops::Add;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A point in simulated time, measured from the simulator's start.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default, Hash)]
pub struct SimInstant(Duration);

impl SimInstant {
    /// The simulated time between `earlier` and `self` (zero when `earlier` is later).
    pub fn elapsed_since(self, earlier: SimInstant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// `self + d`, or `None` on overflow.
    pub fn checked_add(self, d: Duration) -> Option<SimInstant> {
        self.0.checked_add(d).map(SimInstant)
    }

    /// Simulated time since the simulator started.
    pub fn since_start(self) -> Duration {
        self.0
    }
}

impl Add<Duration> for SimInstant {
    type Output = SimInstant;
    fn add(self, d: Duration) -> SimInstant {
        SimInstant(self.0.saturating_add(d))
    }
}

/// The simulator's clock. `scale` is real seconds per simulated second: `0.01` makes a modelled `10s` last 100 ms.
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    scale: f64,
    start: Instant,
    wall_start_nanos: i64,
}

impl Clock {
    /// A clock starting now. A scale that is not a positive finite number is taken as 1.
    pub fn new(scale: f64) -> Clock {
        let scale = if scale.is_finite() && scale > 0.0 { scale } else { 1.0 };
        let wall_start_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Clock { inner: Arc::new(Inner { scale, start: Instant::now(), wall_start_nanos }) }
    }

    /// Real seconds per simulated second.
    pub fn scale(&self) -> f64 {
        self.inner.scale
    }

    /// The current simulated instant.
    pub fn now(&self) -> SimInstant {
        let real = Instant::now().saturating_duration_since(self.inner.start);
        SimInstant(self.to_sim(real))
    }

    /// Wall-clock time as the servers report it: the start's wall time plus the simulated time elapsed.
    pub fn unix_nanos(&self) -> i64 {
        self.unix_nanos_at(self.now())
    }

    /// Wall-clock Unix nanoseconds of a simulated instant.
    pub fn unix_nanos_at(&self, t: SimInstant) -> i64 {
        let since = i64::try_from(t.0.as_nanos()).unwrap_or(i64::MAX);
        self.inner.wall_start_nanos.saturating_add(since)
    }

    /// RFC 3339 with nanoseconds, UTC, as Go formats `time.Time`.
    pub fn rfc3339(&self, t: SimInstant) -> String {
        let nanos = self.unix_nanos_at(t).max(0) as u64;
        let st = UNIX_EPOCH + Duration::from_nanos(nanos);
        humantime::format_rfc3339_nanos(st).to_string()
    }

    /// The real duration that a simulated duration lasts.
    pub fn to_real(&self, sim: Duration) -> Duration {
        sim.mul_f64(self.inner.scale)
    }

    /// The simulated duration that a real duration represents.
    pub fn to_sim(&self, real: Duration) -> Duration {
        real.div_f64(self.inner.scale)
    }

    /// Sleep for a simulated duration.
    pub async fn sleep(&self, sim: Duration) {
        tokio::time::sleep(self.to_real(sim)).await
    }

    /// Sleep until a simulated instant (returns at once if it has passed).
    pub async fn sleep_until(&self, t: SimInstant) {
        let real = self.to_real(t.0);
        tokio::time::sleep_until(self.inner.start + real).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn clock_should_scale_sleeps() {
        let clock = Clock::new(0.01);
        let t0 = clock.now();
        clock.sleep(Duration::from_secs(10)).await;
        let waited = clock.now().elapsed_since(t0);
        assert!(waited >= Duration::from_secs(10), "slept {waited:?} of sim time");
        assert!(waited < Duration::from_secs(11), "slept {waited:?} of sim time");
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_until_past_should_return_at_once() {
        let clock = Clock::new(1.0);
        tokio::time::advance(Duration::from_secs(5)).await;
        let before = tokio::time::Instant::now();
        clock.sleep_until(SimInstant::default() + Duration::from_secs(1)).await;
        assert_eq!(tokio::time::Instant::now(), before);
    }

    #[test]
    fn rfc3339_should_be_utc_with_nanos() {
        let clock = Clock::new(1.0);
        let s = clock.rfc3339(SimInstant::default());
        assert!(s.ends_with('Z') && s.contains('T'), "{s}");
    }
}
