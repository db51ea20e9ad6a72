//! Jittered exponential backoff: the delay before a failing key is retried.
//!
//! The type holds only the policy (start, cap, factor, jitter); the failure count
//! lives with each key in the scheduler, so one `Backoff` serves every key.
//! The shape follows the usual controller defaults (a sub-second start that
//! doubles up to a cap of tens of seconds to minutes, with jitter so that keys
//! which failed together do not retry in lockstep).

use std::time::Duration;

use rand::Rng;

/// Why a [`Backoff`] could not be built. None of these can be retried: they are
/// configuration mistakes, reported once at start-up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    /// The first delay is zero, so the first retries would hammer the failing service.
    #[error("backoff minimum delay must be greater than zero")]
    ZeroMin,
    /// The first delay is larger than the cap.
    #[error("backoff minimum delay {min:?} is above the maximum {max:?}")]
    MinAboveMax {
        /// The rejected minimum.
        min: Duration,
        /// The rejected maximum.
        max: Duration,
    },
    /// The factor would make delays shrink (or is not a finite number).
    #[error("backoff factor {factor} must be a finite number >= 1")]
    InvalidFactor {
        /// The rejected factor.
        factor: f64,
    },
    /// The jitter is not a fraction in `[0, 1)`; at 1 or more a delay could be zero or negative.
    #[error("backoff jitter {jitter} must be in [0, 1)")]
    InvalidJitter {
        /// The rejected jitter.
        jitter: f64,
    },
    /// The cap, once jittered upwards, does not fit in a `Duration`.
    #[error("backoff maximum delay {max:?} is too large")]
    MaxTooLarge {
        /// The rejected maximum.
        max: Duration,
    },
}

/// A validated jittered exponential backoff policy.
///
/// Invariants (checked by [`Backoff::try_new`]): `0 < min <= max`, `factor >= 1`
/// and finite, `0 <= jitter < 1`. For the `n`-th consecutive failure (`n >= 1`) the
/// delay before jitter is `min(min * factor^(n-1), max)`, which never decreases with
/// `n` and reaches `max`; after jitter every delay lies in
/// `[min * (1 - jitter), max * (1 + jitter)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
    /// `min * (1 - jitter)`: the smallest delay ever returned.
    floor: Duration,
    /// `max * (1 + jitter)`: the largest delay ever returned.
    ceiling: Duration,
}

impl Backoff {
    /// Builds a policy, rejecting any combination that breaks the invariants above.
    pub fn try_new(min: Duration, max: Duration, factor: f64, jitter: f64) -> Result<Backoff, BackoffError> {
        if min.is_zero() {
            return Err(BackoffError::ZeroMin);
        }
        if min > max {
            return Err(BackoffError::MinAboveMax { min, max });
        }
        // Written so that NaN fails the check too.
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(BackoffError::InvalidFactor { factor });
        }
        if !(0.0..1.0).contains(&jitter) {
            return Err(BackoffError::InvalidJitter { jitter });
        }
        let ceiling = Duration::try_from_secs_f64(max.as_secs_f64() * (1.0 + jitter))
            .map_err(|_| BackoffError::MaxTooLarge { max })?;
        let floor = Duration::from_secs_f64(min.as_secs_f64() * (1.0 - jitter));
        Ok(Backoff { min, max, factor, jitter, floor, ceiling })
    }

    /// The first delay, before jitter.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The cap, before jitter.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The growth factor between consecutive failures.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The jitter fraction: each delay is scaled by a uniform factor in `[1 - jitter, 1 + jitter]`.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay after `failures` consecutive failures, before jitter.
    ///
    /// `failures` counts from 1 (the first failure waits `min`); 0 is treated as 1.
    /// Never decreases as `failures` grows, and is capped at `max`.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let exponent = f64::from(failures.saturating_sub(1));
        let secs = self.min.as_secs_f64() * self.factor.powf(exponent);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            return self.max;
        }
        // `secs` is finite and below `max`, so the conversion cannot fail; fall back
        // to the cap rather than panic if rounding ever says otherwise.
        Duration::try_from_secs_f64(secs).unwrap_or(self.max).clamp(self.min, self.max)
    }

    /// The delay after `failures` consecutive failures, with jitter drawn from `rng`.
    ///
    /// Always within `[min * (1 - jitter), max * (1 + jitter)]`.
    pub fn delay<R: Rng + ?Sized>(&self, failures: u32, rng: &mut R) -> Duration {
        let base = self.base_delay(failures);
        if self.jitter == 0.0 {
            return base;
        }
        let scale = 1.0 + rng.random_range(-self.jitter..=self.jitter);
        Duration::try_from_secs_f64(base.as_secs_f64() * scale)
            .unwrap_or(self.ceiling)
            // Float rounding must not push a delay outside the documented bounds.
            .clamp(self.floor, self.ceiling)
    }
}

impl Default for Backoff {
    /// 200 ms doubling up to 60 s, with ±20 % jitter: quick enough that a blip costs
    /// well under a second, slow enough that an outage of minutes costs a handful of
    /// calls per key.
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(200),
            max: Duration::from_secs(60),
            factor: 2.0,
            jitter: 0.2,
            floor: Duration::from_millis(160),
            ceiling: Duration::from_secs(72),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn backoff_should_reject_invalid_parameters() {
        let ms = Duration::from_millis;
        assert_eq!(Backoff::try_new(Duration::ZERO, ms(10), 2.0, 0.1), Err(BackoffError::ZeroMin));
        assert_eq!(
            Backoff::try_new(ms(20), ms(10), 2.0, 0.1),
            Err(BackoffError::MinAboveMax { min: ms(20), max: ms(10) })
        );
        for factor in [0.5, f64::NAN, f64::INFINITY] {
            assert!(matches!(Backoff::try_new(ms(1), ms(10), factor, 0.1), Err(BackoffError::InvalidFactor { .. })));
        }
        for jitter in [-0.1, 1.0, f64::NAN] {
            assert!(matches!(Backoff::try_new(ms(1), ms(10), 2.0, jitter), Err(BackoffError::InvalidJitter { .. })));
        }
        assert!(matches!(Backoff::try_new(ms(1), Duration::MAX, 2.0, 0.5), Err(BackoffError::MaxTooLarge { .. })));
    }

    #[test]
    fn backoff_should_default_to_a_valid_policy() {
        let built = Backoff::try_new(Duration::from_millis(200), Duration::from_secs(60), 2.0, 0.2)
            .expect("the default parameters are valid");
        assert_eq!(Backoff::default(), built);
    }

    #[test]
    fn backoff_should_double_from_min_to_max_without_jitter() {
        let b =
            Backoff::try_new(Duration::from_millis(200), Duration::from_secs(1), 2.0, 0.0).expect("valid parameters");
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<u64> = (1..=5).map(|n| b.delay(n, &mut rng).as_millis() as u64).collect();
        assert_eq!(delays, [200, 400, 800, 1000, 1000]);
        assert_eq!(b.base_delay(0), b.base_delay(1));
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(1));
    }

    fn any_backoff() -> impl Strategy<Value = Backoff> {
        (1u64..5_000, 0u64..600_000, 1.0f64..10.0, 0.0f64..0.999).prop_map(|(min_ms, extra_ms, factor, jitter)| {
            Backoff::try_new(Duration::from_millis(min_ms), Duration::from_millis(min_ms + extra_ms), factor, jitter)
                .expect("the strategy only produces valid parameters")
        })
    }

    proptest! {
        #[test]
        fn backoff_should_keep_every_delay_within_jittered_bounds(
            b in any_backoff(), failures in 0u32..10_000, seed in any::<u64>()
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let d = b.delay(failures, &mut rng);
            let lo = b.min().as_secs_f64() * (1.0 - b.jitter());
            let hi = b.max().as_secs_f64() * (1.0 + b.jitter());
            // One nanosecond of slack for the float-to-Duration rounding of the bounds themselves.
            prop_assert!(d.as_secs_f64() >= lo - 1e-9, "{d:?} below {lo}");
            prop_assert!(d.as_secs_f64() <= hi + 1e-9, "{d:?} above {hi}");
        }

        #[test]
        fn backoff_should_never_decrease_before_jitter(b in any_backoff(), failures in 0u32..10_000) {
            prop_assert!(b.base_delay(failures) <= b.base_delay(failures + 1));
            prop_assert!(b.base_delay(failures) >= b.min());
            prop_assert!(b.base_delay(failures) <= b.max());
        }

        #[test]
        fn backoff_should_reach_the_cap(b in any_backoff()) {
            // The cap is reached after ceil(log_factor(max / min)) + 1 failures when
            // factor > 1 (or at once when min == max); with factor == 1 and min < max
            // the delay stays at min by design.
            let ratio = b.max().as_secs_f64() / b.min().as_secs_f64();
            if b.factor() > 1.0 {
                let needed = (ratio.ln() / b.factor().ln()).ceil() + 1.0;
                prop_assume!(needed < 1e6, "factor too close to 1 to reach the cap in a test");
                // One extra failure absorbs float rounding in `needed`.
                prop_assert_eq!(b.base_delay(needed as u32 + 1), b.max());
            } else {
                prop_assert_eq!(b.base_delay(u32::MAX), b.min());
            }
        }
    }
}
