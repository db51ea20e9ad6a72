//! `--leader-elect`, `--lock-ttl` and `--lock-delay`, with `DROVER_LEADER_ELECT`, `DROVER_LOCK_TTL` and
//! `DROVER_LOCK_DELAY` as fallback (flags win), read through a `lookup` seam (STYLE 10).

use std::time::Duration;

/// Consul's `session_ttl_min` default: shorter TTLs are refused with a 500 (A6).
pub const MIN_TTL: Duration = Duration::from_secs(10);
/// Consul's `SessionTTLMax`.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Consul caps lock-delay at 60 s (`MaxLockDelay`, A6).
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
/// `DefaultLockSessionTTL`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// Shorter than Consul's 15 s: a leader that cannot renew stops writing well before its session can expire (see
/// [`super::LockConfig::renew_deadline`]), so lock-delay only has to cover writes a dead leader left on the wire,
/// and every second of it is a second longer fail-over.
pub const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(5);

/// A lock setting that cannot be used; never retryable (the operator has to fix it).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Not a duration (`15s`, `1m`).
    #[error("{source_name}: invalid duration {value:?}")]
    InvalidDuration {
        /// The flag or variable.
        source_name: &'static str,
        /// The rejected value.
        value: String,
        /// Why.
        #[source]
        source: humantime::DurationError,
    },
    /// A duration outside what Consul accepts.
    #[error("{source_name} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The flag or variable.
        source_name: &'static str,
        /// The rejected value.
        value: String,
        /// The lower bound.
        min: String,
        /// The upper bound.
        max: String,
    },
    /// Not one of Go's `strconv.ParseBool` spellings.
    #[error("{source_name}: invalid boolean {value:?} (true or false)")]
    InvalidBool {
        /// The flag or variable.
        source_name: &'static str,
        /// The rejected value.
        value: String,
    },
}

/// What the flags gave; each `Some` wins over its environment variable.
#[derive(Clone, Debug, Default)]
pub struct LockFlags {
    /// `--leader-elect`.
    pub leader_elect: Option<String>,
    /// `--lock-ttl`.
    pub lock_ttl: Option<String>,
    /// `--lock-delay`.
    pub lock_delay: Option<String>,
}

/// The resolved settings: `None` when leader election is off (a single replica that always leads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockSettings {
    /// The session TTL.
    pub ttl: Duration,
    /// The lock-delay.
    pub lock_delay: Duration,
}

/// Resolves the flags, then the environment, then the defaults.
pub fn resolve(
    flags: &LockFlags,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<LockSettings>, SettingsError> {
    let pick = |flag: &Option<String>, flag_name: &'static str, var: &'static str| {
        flag.clone().map(|v| (v, flag_name)).or_else(|| lookup(var).map(|v| (v, var)))
    };
    if let Some((value, source_name)) = pick(&flags.leader_elect, "--leader-elect", "DROVER_LEADER_ELECT") {
        match value.trim() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => {}
            "0" | "f" | "F" | "FALSE" | "false" | "False" => return Ok(None),
            _ => return Err(SettingsError::InvalidBool { source_name, value }),
        }
    }
    let duration = |picked: Option<(String, &'static str)>, default: Duration, min: Duration, max: Duration| {
        let Some((value, source_name)) = picked else { return Ok(default) };
        let d = humantime::parse_duration(value.trim()).map_err(|source| SettingsError::InvalidDuration {
            source_name,
            value: value.clone(),
            source,
        })?;
        if !(min..=max).contains(&d) {
            return Err(SettingsError::OutOfRange {
                source_name,
                value,
                min: humantime::format_duration(min).to_string(),
                max: humantime::format_duration(max).to_string(),
            });
        }
        Ok(d)
    };
    let ttl = duration(pick(&flags.lock_ttl, "--lock-ttl", "DROVER_LOCK_TTL"), DEFAULT_TTL, MIN_TTL, MAX_TTL)?;
    let lock_delay = duration(
        pick(&flags.lock_delay, "--lock-delay", "DROVER_LOCK_DELAY"),
        DEFAULT_LOCK_DELAY,
        Duration::ZERO,
        MAX_LOCK_DELAY,
    )?;
    Ok(Some(LockSettings { ttl, lock_delay }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve_with(flags: LockFlags, env: &[(&str, &str)]) -> Result<Option<LockSettings>, SettingsError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        resolve(&flags, &|k| env.get(k).cloned())
    }

    #[test]
    fn resolve_should_default_to_an_election_with_a_15s_ttl() {
        let s = resolve_with(LockFlags::default(), &[]).expect("defaults resolve");
        assert_eq!(s, Some(LockSettings { ttl: DEFAULT_TTL, lock_delay: DEFAULT_LOCK_DELAY }));
    }

    #[test]
    fn resolve_should_prefer_flags_to_the_environment() {
        let flags = LockFlags { lock_ttl: Some("20s".into()), ..LockFlags::default() };
        let s = resolve_with(flags, &[("DROVER_LOCK_TTL", "30s"), ("DROVER_LOCK_DELAY", "1s")]).expect("resolves");
        assert_eq!(s, Some(LockSettings { ttl: Duration::from_secs(20), lock_delay: Duration::from_secs(1) }));
        let off = resolve_with(LockFlags::default(), &[("DROVER_LEADER_ELECT", "false")]).expect("resolves");
        assert_eq!(off, None);
    }

    #[test]
    fn resolve_should_refuse_what_consul_refuses_naming_the_setting() {
        let flags = LockFlags { lock_ttl: Some("9s".into()), ..LockFlags::default() };
        let err = resolve_with(flags, &[]).expect_err("Consul refuses TTLs under 10 s");
        assert_eq!(err.to_string(), "--lock-ttl must be between 10s and 1day, got 9s");
        let err = resolve_with(LockFlags::default(), &[("DROVER_LOCK_DELAY", "61s")]).expect_err("over 60 s");
        assert!(err.to_string().starts_with("DROVER_LOCK_DELAY must be between 0s and 1m"), "{err}");
        let flags = LockFlags { leader_elect: Some("yes".into()), ..LockFlags::default() };
        assert!(matches!(resolve_with(flags, &[]), Err(SettingsError::InvalidBool { .. })));
        let flags = LockFlags { lock_delay: Some("soon".into()), ..LockFlags::default() };
        assert!(matches!(resolve_with(flags, &[]), Err(SettingsError::InvalidDuration { .. })));
    }
}
