//! The Consul prefix watch's rate limit: a budget of bytes read per second, not a count of requests.
//!
//! # Why bytes
//! What a prefix watch costs Consul (and Drover) is the size of each answer: every wake returns the whole prefix
//! (contract A2: a blocking query answers with the full result, not a delta). Counting requests treats a 2 KB
//! prefix and a 5 MB one alike, so a limit strict enough for the large one (the old token bucket: a burst of 4,
//! then one request per second) made a small one wait ~1 s per write under back-to-back writes. A byte budget
//! charges each answer what it weighs:
//!
//! - a small prefix is re-read at once after every change (500 KB at 1 000 apps is 1/64 of a second of the
//!   default budget);
//! - a large one is batched: after a 5 MB answer the next request waits until the budget has earned the 5 MB back,
//!   and that next answer carries every change made meanwhile (each answer is a full snapshot, so waiting loses
//!   nothing);
//! - Consul bytes read per second stay at or below the budget over any window longer than [`ByteBudget`]'s burst,
//!   plus one answer.
//!
//! # Rules
//! - **Pay after, wait before.** An answer's size is known only once it arrives, so [`ByteBudget::spend`] debits
//!   it afterwards and the balance may go negative; [`ByteBudget::ready`] waits until the debt is repaid at
//!   `rate`. A request is therefore never delayed while the balance is positive: after an idle period the first
//!   read goes out at once.
//! - **An idle cluster costs nothing.** The limiter only acts between requests; a blocking query that waits its
//!   5 minutes on an unchanged prefix spends one answer per wait, as before.
//! - **A floor per answer.** Each answer is charged at least [`MIN_CHARGE`], so a server answering an empty or tiny
//!   prefix at once, again and again (contract C2: a return is no proof of change), is held to at most
//!   `rate / MIN_CHARGE` requests a second (512/s at the default) — the "rate limit the loop" of A2 for the
//!   degenerate case, where the old bucket gave 1/s.
//! - **Savings are capped.** The balance never exceeds `rate × burst` ([`DEFAULT_BURST`], 1 s), so an idle hour
//!   does not buy an unbounded burst.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

/// Least charge for one answer, whatever its size (headers, the request's own work on the server, and a bound
/// on the request rate when the prefix is empty).
pub const MIN_CHARGE: u64 = 64 * 1024;
/// Default budget: 32 MiB/s. At ~500 bytes a record in a listing, that re-reads 1 000 apps about 64 times a second
/// (every back-to-back write seen at once) and 10 000 apps about 6 times a second (20 writes/s batched by ~3).
pub const DEFAULT_BUDGET: ByteRate = ByteRate(32 * 1024 * 1024);
/// Default savings cap: one second of budget.
pub const DEFAULT_BURST: Duration = Duration::from_secs(1);
/// Lowest budget accepted: one [`MIN_CHARGE`] a second. Below that even an empty prefix is read less than once a
/// second, which is the old limit and no longer a budget worth configuring.
pub const MIN_BUDGET: ByteRate = ByteRate(MIN_CHARGE);
/// Highest budget accepted: 16 GiB/s, beyond any loopback; a larger value is a typo (a missing `/s` unit mix-up).
pub const MAX_BUDGET: ByteRate = ByteRate(16 * 1024 * 1024 * 1024);

/// A validated number of bytes per second, written like `32MiB/s`, `500KB/s` or `1048576B/s`.
///
/// Invariant: within [`MIN_BUDGET`]`..=`[`MAX_BUDGET`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteRate(u64);

/// Why a byte rate was rejected. Never retryable: the operator fixes the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ByteRateError {
    /// The value does not end in `/s`.
    #[error("expected a rate such as 32MiB/s (the `/s` is required)")]
    MissingPerSecond,
    /// The number part is missing, negative or not a number.
    #[error("expected a positive number before the unit, such as the 32 in 32MiB/s")]
    InvalidNumber,
    /// The unit is not one of B, KB, KiB, MB, MiB, GB, GiB.
    #[error("unknown unit {0:?}: use B, KB, KiB, MB, MiB, GB or GiB")]
    UnknownUnit(String),
    /// Outside [`MIN_BUDGET`]`..=`[`MAX_BUDGET`].
    #[error("{bytes_per_sec} bytes/s is out of range: the budget must be between 64KiB/s and 16GiB/s")]
    OutOfRange {
        /// The parsed value, rounded down to whole bytes.
        bytes_per_sec: u64,
    },
}

impl ByteRate {
    /// A rate from bytes per second, if within bounds.
    pub fn try_from_bytes_per_sec(bytes_per_sec: u64) -> Result<Self, ByteRateError> {
        if (MIN_BUDGET.0..=MAX_BUDGET.0).contains(&bytes_per_sec) {
            Ok(Self(bytes_per_sec))
        } else {
            Err(ByteRateError::OutOfRange { bytes_per_sec })
        }
    }

    /// Bytes per second.
    pub const fn bytes_per_sec(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteRate {
    type Err = ByteRateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let amount = s.trim().strip_suffix("/s").ok_or(ByteRateError::MissingPerSecond)?.trim();
        let split = amount.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(amount.len());
        let (number, unit) = amount.split_at(split);
        let number: f64 = number.parse().map_err(|_| ByteRateError::InvalidNumber)?;
        if !(number.is_finite() && number > 0.0) {
            return Err(ByteRateError::InvalidNumber);
        }
        let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "b" => 1.0,
            "kb" => 1e3,
            "kib" => 1024.0,
            "mb" => 1e6,
            "mib" => 1024.0 * 1024.0,
            "gb" => 1e9,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(ByteRateError::UnknownUnit(unit.trim().to_owned())),
        };
        // `as` saturates for values beyond u64, which the range check then rejects.
        Self::try_from_bytes_per_sec((number * scale) as u64)
    }
}

/// Printed in the largest binary unit that divides it, so `32MiB/s` prints as it was written.
impl fmt::Display for ByteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}/s", self.0 / size);
            }
        }
        write!(f, "{}B/s", self.0)
    }
}

/// A byte budget: a balance earned at `rate` up to `rate × burst`, spent by each answer's size.
///
/// Invariants: `balance <= capacity`; a request is admitted exactly when `balance >= 0`; bytes charged over any
/// interval `[t0, t1]` during which requests were admitted by this budget are at most
/// `capacity + rate × (t1 − t0)` plus the charge of the last answer (property-tested below).
#[derive(Debug)]
pub struct ByteBudget {
    /// Bytes earned per second.
    rate: f64,
    /// Most bytes that can be saved up.
    capacity: f64,
    /// Bytes available now (negative: a debt to repay before the next request).
    balance: f64,
    /// When `balance` was last brought up to date.
    last: Instant,
}

/// Debt (in bytes) small enough to count as paid: repaying a debt over a wait rounded up to the microsecond can still
/// leave a fraction of a byte in floating point (found by the property test below), and bytes are what is charged.
const ROUNDING_SLACK: f64 = 0.5;

impl ByteBudget {
    /// A full budget, as of now.
    pub fn new(rate: ByteRate, burst: Duration) -> Self {
        Self::starting_at(rate, burst, Instant::now())
    }

    /// A full budget as of `now` (tests pass their own clock).
    pub fn starting_at(rate: ByteRate, burst: Duration, now: Instant) -> Self {
        let rate = rate.bytes_per_sec() as f64;
        // At least one minimum charge can be saved, so a tiny burst still admits a request at once after idling.
        let capacity = (rate * burst.as_secs_f64()).max(MIN_CHARGE as f64);
        Self { rate, capacity, balance: capacity, last: now }
    }

    /// How long to wait from `now` before the next request may go out; zero while the balance is not negative.
    pub fn delay(&mut self, now: Instant) -> Duration {
        self.earn(now);
        if self.balance > -ROUNDING_SLACK {
            return Duration::ZERO;
        }
        // Rounded up to the microsecond so the balance is not negative once the wait is over.
        Duration::from_micros((-self.balance / self.rate * 1e6).ceil() as u64)
    }

    /// Waits until the next request may go out.
    pub async fn ready(&mut self) {
        let delay = self.delay(Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
            self.earn(Instant::now());
        }
    }

    /// Charges an answer of `bytes` (at least [`MIN_CHARGE`]) as of `now`; returns the amount charged.
    pub fn spend(&mut self, bytes: usize, now: Instant) -> u64 {
        self.earn(now);
        let charge = (bytes as u64).max(MIN_CHARGE);
        self.balance -= charge as f64;
        charge
    }

    /// The balance in bytes (negative while in debt), as of the last update.
    pub fn balance(&self) -> f64 {
        self.balance
    }

    fn earn(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.balance = (self.balance + elapsed * self.rate).min(self.capacity);
        self.last = self.last.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn byte_rate_should_parse_the_documented_spellings() {
        let parse = |s: &str| s.parse::<ByteRate>().map(ByteRate::bytes_per_sec);
        assert_eq!(parse("32MiB/s"), Ok(32 * MIB));
        assert_eq!(parse("32mib/s"), Ok(32 * MIB));
        assert_eq!(parse(" 1.5 GiB/s "), Ok(3 * 512 * MIB));
        assert_eq!(parse("500KB/s"), Ok(500_000));
        assert_eq!(parse("65536B/s"), Ok(65_536));
        assert_eq!(DEFAULT_BUDGET.to_string(), "32MiB/s");
        assert_eq!("32MiB/s".parse::<ByteRate>().map(|r| r.to_string()).as_deref(), Ok("32MiB/s"));
    }

    #[test]
    fn byte_rate_should_reject_nonsense_with_a_reason() {
        let parse = |s: &str| s.parse::<ByteRate>();
        assert_eq!(parse("32MiB"), Err(ByteRateError::MissingPerSecond));
        assert_eq!(parse("MiB/s"), Err(ByteRateError::InvalidNumber));
        assert_eq!(parse("-1MiB/s"), Err(ByteRateError::InvalidNumber));
        assert_eq!(parse("0MiB/s"), Err(ByteRateError::InvalidNumber));
        assert_eq!(parse("1.2.3MiB/s"), Err(ByteRateError::InvalidNumber));
        assert_eq!(parse("32Mb/s"), Ok(ByteRate(32_000_000)), "units are case-insensitive; b is bytes");
        assert_eq!(parse("32MiBps/s"), Err(ByteRateError::UnknownUnit("MiBps".into())));
        assert_eq!(parse("1KiB/s"), Err(ByteRateError::OutOfRange { bytes_per_sec: 1024 }));
        assert!(matches!(parse("1e30GiB/s"), Err(ByteRateError::InvalidNumber | ByteRateError::UnknownUnit(_))));
        assert!(matches!(parse("99999999999GiB/s"), Err(ByteRateError::OutOfRange { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_should_admit_at_once_while_in_credit_then_make_a_large_answer_wait() {
        let start = Instant::now();
        let mut budget = ByteBudget::new(ByteRate(32 * MIB), DEFAULT_BURST);
        // A 512 KiB prefix read 64 times back to back: all within the saved second.
        for _ in 0..64 {
            budget.ready().await;
            budget.spend(512 * 1024, Instant::now());
        }
        assert_eq!(Instant::now(), start, "a small prefix is re-read at once while the budget lasts");
        // Now at zero: one 64 MiB answer costs two seconds of budget before the next request.
        budget.ready().await;
        assert_eq!(Instant::now(), start);
        budget.spend((64 * MIB) as usize, Instant::now());
        budget.ready().await;
        let waited = Instant::now() - start;
        assert!(
            (Duration::from_secs(2)..Duration::from_millis(2001)).contains(&waited),
            "a 64 MiB answer at 32 MiB/s should delay the next request by 2 s, waited {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn budget_should_charge_at_least_the_floor_for_empty_answers() {
        let start = Instant::now();
        // 64 KiB/s saves one floor: the first two empty answers go at once (the second overdraws, pay-after), then
        // one a second.
        let mut budget = ByteBudget::new(MIN_BUDGET, DEFAULT_BURST);
        for _ in 0..5 {
            budget.ready().await;
            assert_eq!(budget.spend(0, Instant::now()), MIN_CHARGE);
        }
        let waited = Instant::now() - start;
        assert!(
            (Duration::from_secs(3)..Duration::from_millis(3001)).contains(&waited),
            "five empty answers at one floor a second should take 3 s, took {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn budget_should_not_save_more_than_its_burst_while_idle() {
        let mut budget = ByteBudget::new(ByteRate(MIB), DEFAULT_BURST);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(budget.delay(Instant::now()), Duration::ZERO);
        assert_eq!(budget.balance(), MIB as f64, "an idle hour saves one second of budget, no more");
        budget.spend((3 * MIB) as usize, Instant::now());
        assert_eq!(budget.delay(Instant::now()), Duration::from_secs(2));
    }

    proptest! {
        /// Whatever the answers' sizes and the gaps between requests, bytes charged over a run never exceed the
        /// savings plus what the rate earned in that time plus the last answer (the overshoot of pay-after).
        #[test]
        fn budget_should_bound_bytes_by_rate_times_time(
            rate in 64u64 * 1024..256 * MIB,
            burst_ms in 0u64..5_000,
            requests in proptest::collection::vec((0u64..2_000, 0usize..(64 * MIB as usize)), 1..200),
        ) {
            let start = Instant::now();
            let mut budget = ByteBudget::starting_at(ByteRate(rate), Duration::from_millis(burst_ms), start);
            let capacity = (rate as f64 * burst_ms as f64 / 1000.0).max(MIN_CHARGE as f64);
            let mut now = start;
            let mut charged = 0u64;
            let mut last = 0u64;
            for (gap_ms, bytes) in requests {
                now += Duration::from_millis(gap_ms);
                now += budget.delay(now);
                prop_assert!(budget.delay(now).is_zero(), "after waiting its delay a request is admitted");
                last = budget.spend(bytes, now);
                charged += last;
            }
            let earned = rate as f64 * (now - start).as_secs_f64();
            // One byte per request of slack for the microsecond rounding of delays.
            prop_assert!(charged as f64 <= capacity + earned + last as f64 + 200.0 * rate as f64 * 1e-6 + 1.0,
                "charged {charged} > capacity {capacity} + earned {earned} + last {last}");
        }

        /// A request is delayed exactly while the balance is negative, and by no more than the debt takes to repay.
        #[test]
        fn budget_should_delay_only_by_the_debt(
            rate in 64u64 * 1024..256 * MIB,
            bytes in 0usize..(256 * MIB as usize),
            gap_ms in 0u64..10_000,
        ) {
            let start = Instant::now();
            let mut budget = ByteBudget::starting_at(ByteRate(rate), DEFAULT_BURST, start);
            budget.spend(bytes, start);
            let now = start + Duration::from_millis(gap_ms);
            let delay = budget.delay(now);
            let debt = -budget.balance();
            if debt < ROUNDING_SLACK {
                prop_assert!(delay.is_zero());
            } else {
                let exact = debt / rate as f64;
                prop_assert!(delay.as_secs_f64() >= exact - 1e-9 && delay.as_secs_f64() <= exact + 2e-6,
                    "delay {delay:?} for a debt of {debt} bytes at {rate} B/s");
            }
        }
    }
}
