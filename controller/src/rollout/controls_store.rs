//! The controls store: the controls people wrote at `<prefix>/control/<ns>/<name>` (`drover promote`, `abort`, ...),
//! as the reconcile stage reads them. One writer, the controls watch ([`watch_controls`]), cheap readers
//! ([`Controls`]), as for the other stores (STYLE item 2).
//!
//! The control prefix is small (one key per app someone commanded), so its watch is the records watch's state
//! machine ([`crate::consul::watch::Watcher`]: blocking queries, backoff, relist when the index goes backwards) on
//! another prefix. What this module adds:
//! - a control that is not a [`Control`] (not JSON, an unknown action, a missing field) is kept as an
//!   [`UnreadableControl`] carrying its `ModifyIndex`, so `decide` reports it once, exactly as it consumes a good
//!   one, and the watch never stops on it;
//! - the app whose control changed (written, rewritten or deleted) is woken, and only that app.
//!
//! Drover never writes or deletes a control: `status.lastControl.modifyIndex` makes each one act once, so nothing
//! destructive is needed, and a control is never lost to a race with a person writing the next one.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Control;
use crate::app::AppKey;
use crate::consul::kv::KvPair;
use crate::consul::watch::{PrefixSource, WatchConfig, WatchEvent, Watcher};
use crate::metrics::Metrics;

/// A control as read from Consul, with the index that makes it act once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredControl {
    /// What the person asked for.
    pub control: Control,
    /// The control key's `ModifyIndex`: a control acts when this is above `status.lastControl.modifyIndex`, so a
    /// re-read (a relist, a restart, a failover) never applies it twice, while writing the same JSON again (a
    /// second `drover promote`) does act again.
    pub modify_index: u64,
}

/// A value at a control key that is not a control. Kept (not dropped) so the app's status can say why the
/// command did nothing, once per write like a good control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableControl {
    /// The control key's `ModifyIndex`, as for [`StoredControl::modify_index`].
    pub modify_index: u64,
    /// Why it could not be read (the JSON error, with the line and column).
    pub message: String,
}

impl fmt::Display for UnreadableControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable control (ModifyIndex {}): {}", self.modify_index, self.message)
    }
}

/// One app's control: readable, or not.
pub type ControlEntry = Result<StoredControl, UnreadableControl>;

impl StoredControl {
    /// Reads a control key's value: a [`StoredControl`], or why it is not one. Never fails otherwise.
    pub fn parse(pair: &KvPair) -> ControlEntry {
        match serde_json::from_slice::<Control>(&pair.value) {
            Ok(control) => Ok(StoredControl { control, modify_index: pair.modify_index }),
            Err(err) => Err(UnreadableControl { modify_index: pair.modify_index, message: err.to_string() }),
        }
    }

    /// The index that makes this entry act once, readable or not.
    pub fn modify_index_of(entry: &ControlEntry) -> u64 {
        match entry {
            Ok(c) => c.modify_index,
            Err(e) => e.modify_index,
        }
    }
}

type ByApp = HashMap<AppKey, Arc<ControlEntry>>;

fn read(l: &RwLock<ByApp>) -> std::sync::RwLockReadGuard<'_, ByApp> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write(l: &RwLock<ByApp>) -> std::sync::RwLockWriteGuard<'_, ByApp> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Controls by app: the read side (what `decide` sees as `Observed.control`).
#[derive(Clone, Debug, Default)]
pub struct Controls {
    inner: Arc<RwLock<ByApp>>,
}

/// Controls by app: the write side, owned by the controls watch.
#[derive(Debug)]
pub struct ControlsWriter {
    prefix: String,
    inner: Arc<RwLock<ByApp>>,
}

/// A controls store for the installation using KV prefix `prefix`: its one writer and a reader.
pub fn controls(prefix: &str) -> (ControlsWriter, Controls) {
    let inner = Arc::new(RwLock::new(HashMap::new()));
    (ControlsWriter { prefix: prefix.to_string(), inner: inner.clone() }, Controls { inner })
}

impl Controls {
    /// The control written for `app`, if any (readable or not).
    pub fn get(&self, app: &AppKey) -> Option<Arc<ControlEntry>> {
        read(&self.inner).get(app).cloned()
    }

    /// How many apps have a control.
    pub fn len(&self) -> usize {
        read(&self.inner).len()
    }

    /// True when no app has a control.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The app a control key belongs to: `<prefix>/control/<ns>/<name>`, with the same rules as record keys (so
/// `drover/control/default` or `drover/control/a/b/c` belong to no app).
pub fn key_from_control_kv_key(prefix: &str, key: &str) -> Option<AppKey> {
    let prefix = prefix.trim_end_matches('/');
    let rest = if prefix.is_empty() { key } else { key.strip_prefix(prefix)?.strip_prefix('/')? };
    let rest = rest.strip_prefix("control/")?;
    AppKey::from_kv_key("", &format!("apps/{rest}"))
}

impl ControlsWriter {
    /// Applies a complete listing of the control prefix and returns the apps whose control was written, rewritten
    /// or deleted (to wake). Entries are compared by `ModifyIndex`, so an unchanged control is not parsed again
    /// and does not wake its app. Keys that belong to no app are ignored.
    pub fn apply_snapshot(&mut self, entries: &[KvPair]) -> BTreeSet<AppKey> {
        let mut seen = BTreeSet::new();
        let mut changed = Vec::new();
        {
            let inner = read(&self.inner);
            for e in entries {
                let Some(key) = key_from_control_kv_key(&self.prefix, &e.key) else { continue };
                let known = inner.get(&key).map(|c| StoredControl::modify_index_of(c));
                if known != Some(e.modify_index) {
                    changed.push((key.clone(), Arc::new(StoredControl::parse(e))));
                }
                seen.insert(key);
            }
        }
        let mut inner = write(&self.inner);
        let gone: Vec<AppKey> = inner.keys().filter(|k| !seen.contains(*k)).cloned().collect();
        let mut woken = BTreeSet::new();
        for key in gone {
            inner.remove(&key);
            woken.insert(key);
        }
        for (key, entry) in changed {
            if let Err(bad) = entry.as_ref() {
                tracing::warn!(app = %key, error = %bad, "a control is not valid JSON for a control; reported in status");
            }
            inner.insert(key.clone(), entry);
            woken.insert(key);
        }
        woken
    }
}

/// Follows `<prefix>/control/` (as `config.prefix`) until `shutdown`, the one writer of the controls store: after
/// every snapshot the apps whose control changed are passed to `wake`. Consul outages are retried by the watcher
/// with backoff and never end the task; a bad control never stops it.
pub async fn watch_controls<S: PrefixSource + 'static>(
    mut writer: ControlsWriter,
    source: S,
    config: WatchConfig,
    metrics: Arc<Metrics>,
    wake: impl Fn(AppKey) + Send,
    shutdown: CancellationToken,
) {
    let stream = Watcher::new(source, config, metrics).into_stream();
    tokio::pin!(stream);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(WatchEvent::Snapshot { entries, .. }) = event else { return };
        for key in writer.apply_snapshot(&entries) {
            wake(key);
        }
    }
}

#[cfg(any(test, feature = "test-util"))]
impl ControlsWriter {
    /// Sets one app's control directly (tests of the stage and `decide`, without a listing).
    pub fn insert(&mut self, app: AppKey, entry: ControlEntry) {
        write(&self.inner).insert(app, Arc::new(entry));
    }
}

#[cfg(test)]
#[path = "controls_store_tests.rs"]
mod tests;
