//! The controls store: the controls people wrote at `<prefix>/control/<ns>/<name>` (`drover promote`, `abort`, ...),
//! as the reconcile stage reads them. One writer, the controls watch ([`watch_controls`]), cheap readers
//! ([`Controls`]), as for the other stores (STYLE item 2).
//!
//! The control prefix is small (one key per app someone commanded), so its watch is the records watch's state
//! machine ([`crate::consul::watch::Watcher`]: blocking queries, backoff, relist when the index goes backwards) on
//! another prefix. What this module adds:
//! - a control that is not a [`Control`] (not JSON, an unknown action, a missing field) is kept as an `Err` saying
//!   why (a [`ControlEntry`]), so `decide` reports it in status, and the watch never stops on it;
//! - the app whose control changed (written, rewritten or deleted) is woken, and only that app.
//!
//! Drover never writes or deletes a control: `status.lastControl.modifyIndex` makes each one act once, so nothing
//! destructive is needed, and a control is never lost to a race with a person writing the next one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Control, ControlEntry, StoredControl};
use crate::app::AppKey;
use crate::consul::kv::KvPair;
use crate::consul::watch::{PrefixSource, WatchConfig, WatchEvent, Watcher};
use crate::metrics::Metrics;

/// Reads a control key's value: the control with its `ModifyIndex`, or why the value is not a control (the JSON
/// error, with its line and column). Never fails otherwise.
pub fn parse(pair: &KvPair) -> ControlEntry {
    match serde_json::from_slice::<Control>(&pair.value) {
        Ok(control) => Ok(StoredControl { control, modify_index: pair.modify_index }),
        Err(err) => Err(format!("{} (ModifyIndex {})", err, pair.modify_index)),
    }
}

/// An entry with the `ModifyIndex` it was read at, readable or not (so an unchanged key is not parsed again).
type Held = (u64, Arc<ControlEntry>);

type ByApp = HashMap<AppKey, Held>;

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
        read(&self.inner).get(app).map(|(_, entry)| entry.clone())
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
                if inner.get(&key).map(|(index, _)| *index) != Some(e.modify_index) {
                    changed.push((key.clone(), (e.modify_index, Arc::new(parse(e)))));
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
            if let Err(bad) = entry.1.as_ref() {
                tracing::warn!(app = %key, error = %bad, "a control is not a valid control; reported in status");
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
    pub fn insert(&mut self, app: AppKey, modify_index: u64, entry: ControlEntry) {
        write(&self.inner).insert(app, (modify_index, Arc::new(entry)));
    }
}

#[cfg(test)]
#[path = "controls_store_tests.rs"]
mod tests;
