//! `SyncFailed`: what `drover sync --watch --notifications FILE` tells the targets of the same notifications file
//! `drover run` reads, through the same delivery (queue, retries, `drover_notifications_total` on the `/metrics` of
//! `sync --watch --listen`).
//!
//! A sync's outcome (the value recorded at `<prefix>/sync/<name>`) that is not `Succeeded` — invalid records, a
//! conflict, a source or Consul it could not read — is one event, deduplicated per (revision, successes before it):
//! a watch that fails again on the same commit every interval tells a target once, a new commit that fails is news,
//! and so is any failure after a sync succeeded, on the same commit or with no revision at all (a source that
//! cannot be read has none: its failures share one occurrence until a sync succeeds).
//!
//! A sync is not an app, so a target's `selector` (namespaces and apps) does not filter these events: the file is
//! given to one sync process, and its `events:` list decides whether a target hears of `SyncFailed`.

use serde_json::{Value, json};

use super::config::{Format, Target};
use super::{EventKind, Notice};
use crate::sync::outcome::{SyncOutcome, SyncResult};

/// How many of the outcome's errors a payload carries (the outcome at `<prefix>/sync/<name>` has them all).
pub const MAX_PAYLOAD_ERRORS: usize = 10;

/// One failed sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncEvent {
    /// The sync's name.
    pub name: String,
    /// The source, without credentials.
    pub source: String,
    /// The revision the sync read, if it could read one.
    pub revision: Option<String>,
    /// How it ended (never `Succeeded`).
    pub result: SyncResult,
    /// The outcome's first errors, at most [`MAX_PAYLOAD_ERRORS`].
    pub errors: Vec<String>,
    /// How many errors the outcome lists in all.
    pub error_count: usize,
    /// When the sync ended (RFC 3339).
    pub at: String,
    /// How many syncs of this process had succeeded before this one: a failure after a success is news.
    pub successes_before: u64,
}

/// One occurrence of a sync's failure (one process runs one sync, so its name is not part of it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncKey {
    /// The revision; `None` when the source could not be read.
    pub revision: Option<String>,
    /// [`SyncEvent::successes_before`].
    pub successes_before: u64,
}

/// The events of one `sync --watch` process, outcome by outcome: it counts the syncs that succeeded, so a failure
/// after a success is news again, even on the same revision ([`SyncEvent::successes_before`]).
#[derive(Debug, Default)]
pub struct SyncEvents {
    successes: std::cell::Cell<u64>,
}

impl SyncEvents {
    /// The event of the sync that ended with `outcome` (`None` when it succeeded).
    pub fn after(&self, outcome: &SyncOutcome) -> Option<SyncEvent> {
        let event = SyncEvent::from_outcome(outcome, self.successes.get());
        if event.is_none() {
            self.successes.set(self.successes.get() + 1);
        }
        event
    }
}

impl SyncEvent {
    /// The event of `outcome`, after `successes_before` syncs of this process succeeded: `None` for a sync that
    /// succeeded.
    pub fn from_outcome(outcome: &SyncOutcome, successes_before: u64) -> Option<SyncEvent> {
        if outcome.result == SyncResult::Succeeded {
            return None;
        }
        Some(SyncEvent {
            name: outcome.name.clone(),
            source: outcome.source.clone(),
            revision: outcome.revision.clone(),
            result: outcome.result,
            errors: outcome.errors.iter().take(MAX_PAYLOAD_ERRORS).cloned().collect(),
            error_count: outcome.errors.len(),
            at: outcome.finished_at.clone(),
            successes_before,
        })
    }

    /// `sync prod (Invalid) at abc1234: 2 errors: first; second`.
    pub fn message(&self) -> String {
        let revision = self.revision.as_deref().map(|r| format!(" at {}", short(r))).unwrap_or_default();
        let mut text = format!("sync {} ({}){revision}", self.name, self.result.as_str());
        if self.error_count > 0 {
            let n = self.error_count;
            text.push_str(&format!(": {n} error{}: {}", if n == 1 { "" } else { "s" }, self.errors.join("; ")));
            if n > self.errors.len() {
                text.push_str(&format!("; and {} more", n - self.errors.len()));
            }
        }
        text
    }
}

/// The first 12 characters of a revision (a commit reads as `git log --oneline` would show it, a little longer).
fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

impl Notice for SyncEvent {
    type Key = SyncKey;

    fn kind(&self) -> EventKind {
        EventKind::SyncFailed
    }

    fn wanted_by(&self, target: &Target) -> bool {
        target.wants_kind(EventKind::SyncFailed)
    }

    fn dedup_key(&self) -> SyncKey {
        SyncKey { revision: self.revision.clone(), successes_before: self.successes_before }
    }

    fn payload(&self, format: Format) -> Value {
        match format {
            Format::Drover => json!({
                "event": EventKind::SyncFailed.as_str(),
                "sync": self.name,
                "source": self.source,
                "revision": self.revision,
                "result": self.result.as_str(),
                "message": self.message(),
                "errors": self.errors,
                "at": self.at,
            }),
            Format::Slack => {
                let icon = super::deliver::icon(EventKind::SyncFailed);
                let text = format!("{icon} SyncFailed: {}", self.message());
                let mut section = format!(
                    "{icon} *SyncFailed* `{}`\nresult *{}*, source {}",
                    self.name,
                    self.result.as_str(),
                    self.source
                );
                if let Some(r) = &self.revision {
                    section.push_str(&format!(", revision `{}`", short(r)));
                }
                for e in &self.errors {
                    section.push_str("\n>");
                    section.push_str(e);
                }
                json!({
                    "text": super::deliver::slack_escape(&text),
                    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": super::deliver::slack_escape(&section)}}],
                })
            }
        }
    }

    fn subject(&self) -> String {
        format!("sync {}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::notify::Selector;
    use crate::sync::outcome::Counts;

    fn outcome(result: SyncResult, revision: Option<&str>, errors: &[&str]) -> SyncOutcome {
        SyncOutcome {
            name: "prod".into(),
            source: "file:///repo".into(),
            path: None,
            git_ref: None,
            revision: revision.map(Into::into),
            finished_at: "2026-12-07T12:00:00Z".into(),
            result,
            counts: Counts::default(),
            errors: errors.iter().map(|e| (*e).to_string()).collect(),
            transactions: 0,
            bytes_written: 0,
            run: 3,
        }
    }

    fn target(events: Option<&[EventKind]>, selector: Selector) -> Target {
        Target {
            name: "t".into(),
            url: "http://127.0.0.1:1/".parse().expect("url"),
            headers: Default::default(),
            events: events.map(|e| e.iter().copied().collect::<BTreeSet<_>>()),
            selector,
            format: Format::Drover,
        }
    }

    #[test]
    fn sync_event_should_be_built_from_a_failed_outcome_only() {
        assert_eq!(SyncEvent::from_outcome(&outcome(SyncResult::Succeeded, Some("abc"), &[]), 0), None);
        for result in [SyncResult::Invalid, SyncResult::Conflicted, SyncResult::Failed] {
            let e = SyncEvent::from_outcome(&outcome(result, Some("abc"), &["x"]), 0).expect("an event");
            assert_eq!(e.result, result);
        }
    }

    #[test]
    fn sync_event_should_carry_the_outcome_in_its_payload() {
        let o = outcome(
            SyncResult::Invalid,
            Some("0123456789abcdef0123"),
            &["web.yaml: documents[0].spec.template.count: must be ≥ 0", "db.yaml: documents[0]: not YAML"],
        );
        let e = SyncEvent::from_outcome(&o, 0).expect("an event");
        let body = e.payload(Format::Drover);
        assert_eq!(body["event"], "SyncFailed");
        assert_eq!(body["sync"], "prod");
        assert_eq!(body["result"], "Invalid");
        assert_eq!(body["revision"], "0123456789abcdef0123");
        assert_eq!(body["errors"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            body["message"],
            "sync prod (Invalid) at 0123456789ab: 2 errors: web.yaml: documents[0].spec.template.count: must be ≥ 0; db.yaml: documents[0]: not YAML"
        );
        let slack = e.payload(Format::Slack);
        assert!(slack["text"].as_str().is_some_and(|t| t.starts_with(":x: SyncFailed: sync prod")), "{slack}");
        assert_eq!(slack["blocks"][0]["type"], "section");
    }

    #[test]
    fn sync_event_should_bound_the_errors_it_carries() {
        let errors: Vec<String> = (0..25).map(|i| format!("e{i}")).collect();
        let refs: Vec<&str> = errors.iter().map(String::as_str).collect();
        let e = SyncEvent::from_outcome(&outcome(SyncResult::Conflicted, Some("r"), &refs), 0).expect("an event");
        assert_eq!(e.errors.len(), MAX_PAYLOAD_ERRORS);
        assert!(e.message().ends_with("; and 15 more"), "{}", e.message());
    }

    #[test]
    fn sync_event_should_be_news_for_a_new_revision_or_after_a_success_only() {
        let mut seen = crate::notify::deliver::Seen::new(16);
        let events = SyncEvents::default();
        let mut notified = |o: &SyncOutcome| events.after(o).is_some_and(|e| seen.insert(&e.dedup_key()));
        let r1 = outcome(SyncResult::Invalid, Some("r1"), &["x"]);
        assert!(notified(&r1));
        // The next run fails again on the same revision, even with other errors: the same occurrence.
        let mut again = outcome(SyncResult::Conflicted, Some("r1"), &["y"]);
        again.run = 4;
        assert!(!notified(&again), "the same commit failing every interval tells a target once");
        assert!(notified(&outcome(SyncResult::Invalid, Some("r2"), &["x"])), "a new revision that fails is news");
        let unreadable = outcome(SyncResult::Failed, None, &["git: no such ref"]);
        assert!(notified(&unreadable));
        assert!(!notified(&unreadable), "one outage is one occurrence");
        // A sync succeeds: the same failures are news again.
        assert!(!notified(&outcome(SyncResult::Succeeded, Some("r3"), &[])), "a success is no event");
        assert!(notified(&r1), "the same commit failing again after a success");
        assert!(notified(&unreadable), "a new outage after a success");
    }

    #[test]
    fn sync_event_should_follow_the_events_filter_but_not_the_app_selector() {
        let e = SyncEvent::from_outcome(&outcome(SyncResult::Failed, None, &["x"]), 0).expect("event");
        let only_apps = Selector { namespaces: vec![crate::notify::Pattern::new("payments")], apps: Vec::new() };
        assert!(e.wanted_by(&target(None, Selector::default())));
        assert!(e.wanted_by(&target(Some(&[EventKind::SyncFailed]), only_apps)));
        assert!(!e.wanted_by(&target(Some(&[EventKind::RolloutAborted]), Selector::default())));
    }
}
