//! `HumanDuration`: a record duration written as a Go/humantime string (`30s`, `5m`, `1h30m`).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern the JSON Schema gives for a duration: one or more `<digits><unit>` parts.
///
/// It is deliberately looser than the parser (units are checked by `humantime`), so an editor
/// flags `"5 minutes later"` but the exact reason comes from Drover's own error.
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*[a-zA-Zµ]+\s*)+$";

/// The longest duration a record may hold: a year. Nomad takes durations as `int64`
/// nanoseconds (about 292 years), so anything below this renders without overflow, and no
/// deadline, interval or pause in a rollout sensibly runs longer.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A duration in a record, written as a string such as `30s`, `5m` or `1h30m`.
///
/// Records carry durations as text (like Kubernetes and Nomad's HCL), never as numbers, so a
/// bare `30` is rejected rather than guessed to be seconds or nanoseconds. Parsing happens
/// while the record is read, so an unparsable duration is reported with its field path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Wraps a `Duration`.
    #[must_use]
    pub const fn new(d: Duration) -> Self {
        Self(d)
    }

    /// A whole number of seconds.
    #[must_use]
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The duration.
    #[must_use]
    pub const fn get(self) -> Duration {
        self.0
    }

    /// Nanoseconds as Nomad's JSON wants them (`time.Duration` is an `int64` of nanoseconds),
    /// saturating at `i64::MAX`; validation keeps record durations far below that.
    #[must_use]
    pub fn as_nanos_i64(self) -> i64 {
        i64::try_from(self.0.as_nanos()).unwrap_or(i64::MAX)
    }

    /// Parses `30s`, `5m`, `1h30m`, `250ms`: the syntax of Go's `time.ParseDuration` without a
    /// sign or fractions, as `humantime` reads it.
    ///
    /// # Errors
    /// A message saying what is wrong with `text`, meant to follow a field path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("a duration must not be empty (write e.g. 30s or 5m)".to_owned());
        }
        if trimmed.starts_with('-') {
            return Err(format!("invalid duration `{text}`: durations cannot be negative"));
        }
        match humantime::parse_duration(trimmed) {
            Ok(d) if d > MAX_DURATION => Err(format!("invalid duration `{text}`: longer than the maximum of 365d")),
            Ok(d) => Ok(Self(d)),
            Err(err) => Err(format!("invalid duration `{text}`: {err} (write e.g. 30s, 5m, 1h30m)")),
        }
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // humantime writes `1h 30m`; a record prefers Go's compact `1h30m`.
        let text = humantime::format_duration(self.0).to_string();
        f.write_str(&text.replace(' ', ""))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as 30s, 5m or 1h30m")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                HumanDuration::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as `30s`, `5m` or `1h30m` (Go/humantime syntax, no sign, at most 365d).",
            "examples": ["30s", "5m", "1h30m"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_should_accept_go_style_durations() {
        assert_eq!(HumanDuration::parse("30s"), Ok(HumanDuration::from_secs(30)));
        assert_eq!(HumanDuration::parse("5m"), Ok(HumanDuration::from_secs(300)));
        assert_eq!(HumanDuration::parse("1h30m"), Ok(HumanDuration::from_secs(5400)));
        assert_eq!(HumanDuration::parse("250ms"), Ok(HumanDuration::new(Duration::from_millis(250))));
    }

    #[test]
    fn parse_should_reject_garbage_negative_and_huge_values() {
        for bad in ["", "30", "-5s", "five minutes", "2y", "99999999999999999999999h"] {
            assert!(HumanDuration::parse(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn display_should_round_trip_through_parse() {
        for text in ["30s", "5m", "1h30m", "250ms"] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(d.to_string(), text);
            assert_eq!(HumanDuration::parse(&d.to_string()), Ok(d));
        }
    }

    #[test]
    fn as_nanos_should_match_nomad_encoding() {
        assert_eq!(HumanDuration::from_secs(10).as_nanos_i64(), 10_000_000_000);
    }
}
