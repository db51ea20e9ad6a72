//! The KV table and its graveyard, with the exact semantics of Consul's state store (`agent/consul/state/kvs.go`):
//! no-op writes, CAS, lock/unlock, deletes leaving tombstones, and the index each read reports (api-contract.md
//! A2 rule 5/6, A3, A4, A5).

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use crate::SimInstant;

/// One KV entry (`structs.DirEntry`). Serialises with Go's field order; `Value` is base64 or `null` when empty,
/// `Session` is omitted when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirEntry {
    /// Bumped each time a session acquires the key while it is unlocked; reset to 0 by plain writes.
    pub lock_index: u64,
    /// The key.
    pub key: String,
    /// Opaque flags.
    pub flags: u64,
    /// The value bytes (empty reads back as `null`).
    pub value: Bytes,
    /// The holding session, empty when unlocked.
    pub session: String,
    /// Index of the write that created the key.
    pub create_index: u64,
    /// Index of the last write that changed the key.
    pub modify_index: u64,
}

impl DirEntry {
    /// `DirEntry.Equal`: what makes a write a no-op (indexes do not count).
    fn same_content(&self, o: &DirEntry) -> bool {
        self.lock_index == o.lock_index
            && self.key == o.key
            && self.flags == o.flags
            && self.value == o.value
            && self.session == o.session
    }

    /// A copy with the value blanked, as txn write results carry.
    pub fn without_value(&self) -> DirEntry {
        DirEntry { value: Bytes::new(), ..self.clone() }
    }
}

impl Serialize for DirEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let n = if self.session.is_empty() { 6 } else { 7 };
        let mut st = s.serialize_struct("DirEntry", n)?;
        st.serialize_field("LockIndex", &self.lock_index)?;
        st.serialize_field("Key", &self.key)?;
        st.serialize_field("Flags", &self.flags)?;
        if self.value.is_empty() {
            st.serialize_field("Value", &None::<String>)?;
        } else {
            st.serialize_field("Value", &base64::engine::general_purpose::STANDARD.encode(&self.value))?;
        }
        if !self.session.is_empty() {
            st.serialize_field("Session", &self.session)?;
        }
        st.serialize_field("CreateIndex", &self.create_index)?;
        st.serialize_field("ModifyIndex", &self.modify_index)?;
        st.end()
    }
}

/// A deleted key's (or deleted prefix's) marker, kept for `TombstoneTTL` so prefix indexes do not slide back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    /// Index of the delete.
    pub index: u64,
    /// When it was created, for the TTL reaper.
    pub created: SimInstant,
}

/// The `kvs` and `tombstones` tables with their table indexes.
#[derive(Debug, Clone, Default)]
pub struct KvStore {
    /// Live entries by key.
    pub entries: BTreeMap<String, DirEntry>,
    /// The graveyard by key (a tree delete leaves one tombstone at the prefix).
    pub tombstones: BTreeMap<String, Tombstone>,
    /// The `kvs` table index.
    pub kvs_index: u64,
    /// The `tombstones` table index (not lowered by reaping).
    pub tombstones_index: u64,
}

/// Iterates the map entries whose key starts with `prefix`, in key order.
pub fn prefix_range<'a, 'p, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'p str,
) -> impl Iterator<Item = (&'a String, &'a V)> + use<'a, 'p, V> {
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)).take_while(move |(k, _)| k.starts_with(prefix))
}

/// What a transaction may change, saved before it runs so a failed transaction can be undone without copying the
/// whole store (a copy per transaction made every status write cost O(keys)).
#[derive(Debug)]
pub struct UndoPoint {
    kvs_index: u64,
    tombstones_index: u64,
    keys: Vec<(String, Option<DirEntry>, Option<Tombstone>)>,
    prefixes: Vec<SavedPrefix>,
}

/// A prefix's live entries and tombstones, as saved by [`KvStore::undo_point`].
type SavedPrefix = (String, Vec<(String, DirEntry)>, Vec<(String, Tombstone)>);

impl KvStore {
    /// Saves everything the given `(verb, key)` operations may change: the key itself, or the whole prefix for
    /// `delete-tree`, plus the table indexes.
    pub fn undo_point<'a>(&self, ops: impl IntoIterator<Item = (&'a str, &'a str)>) -> UndoPoint {
        let mut undo = UndoPoint {
            kvs_index: self.kvs_index,
            tombstones_index: self.tombstones_index,
            keys: Vec::new(),
            prefixes: Vec::new(),
        };
        for (verb, key) in ops {
            if verb == "delete-tree" {
                let entries = prefix_range(&self.entries, key).map(|(k, v)| (k.clone(), v.clone())).collect();
                let tombs = prefix_range(&self.tombstones, key).map(|(k, v)| (k.clone(), *v)).collect();
                undo.prefixes.push((key.to_string(), entries, tombs));
            } else {
                undo.keys.push((key.to_string(), self.entries.get(key).cloned(), self.tombstones.get(key).copied()));
            }
        }
        undo
    }

    /// Puts back what [`KvStore::undo_point`] saved.
    pub fn rollback(&mut self, undo: UndoPoint) {
        for (prefix, entries, tombs) in undo.prefixes {
            let live: Vec<String> = prefix_range(&self.entries, &prefix).map(|(k, _)| k.clone()).collect();
            for k in live {
                self.entries.remove(&k);
            }
            let dead: Vec<String> = prefix_range(&self.tombstones, &prefix).map(|(k, _)| k.clone()).collect();
            for k in dead {
                self.tombstones.remove(&k);
            }
            self.entries.extend(entries);
            self.tombstones.extend(tombs);
        }
        for (key, entry, tomb) in undo.keys {
            match entry {
                Some(e) => self.entries.insert(key.clone(), e),
                None => self.entries.remove(&key),
            };
            match tomb {
                Some(t) => self.tombstones.insert(key, t),
                None => self.tombstones.remove(&key),
            };
        }
        self.kvs_index = undo.kvs_index;
        self.tombstones_index = undo.tombstones_index;
    }

    /// `kvsMaxIndex`: max of the two table indexes.
    pub fn max_index(&self) -> u64 {
        self.kvs_index.max(self.tombstones_index)
    }

    /// `kvsGetTxn`: the table index and the entry, if any.
    pub fn get(&self, key: &str) -> (u64, Option<&DirEntry>) {
        (self.max_index(), self.entries.get(key))
    }

    /// `kvsListTxn`: the entries under `prefix` and the index a list reports (A2 rule 5).
    pub fn list<'a>(&'a self, prefix: &str) -> (u64, Vec<&'a DirEntry>) {
        let mut lindex = 0;
        let entries: Vec<&DirEntry> = prefix_range(&self.entries, prefix)
            .map(|(_, e)| {
                lindex = lindex.max(e.modify_index);
                e
            })
            .collect();
        if prefix.is_empty() {
            lindex = self.max_index();
        } else {
            let gindex = prefix_range(&self.tombstones, prefix).map(|(_, t)| t.index).max().unwrap_or(0);
            lindex = lindex.max(gindex);
        }
        let idx = if lindex != 0 { lindex } else { self.max_index() };
        (idx, entries)
    }

    /// `kvsSetTxn`. Keeps `CreateIndex`, keeps the existing `Session` unless `update_session`, skips the write when
    /// nothing changed (A4 no-op rule). Returns the entry as stored (or as it already was).
    pub fn set(&mut self, idx: u64, mut entry: DirEntry, update_session: bool) -> DirEntry {
        let existing = self.entries.get(&entry.key);
        entry.create_index = existing.map_or(idx, |e| e.create_index);
        if !update_session {
            entry.session = existing.map(|e| e.session.clone()).unwrap_or_default();
        }
        if let Some(e) = existing.filter(|e| e.same_content(&entry)) {
            entry.modify_index = e.modify_index;
            return entry;
        }
        entry.modify_index = idx;
        self.kvs_index = idx;
        self.entries.insert(entry.key.clone(), entry.clone());
        entry
    }

    /// `kvsSetCASTxn`: `cas=0` creates only; `cas=N` writes only over `ModifyIndex == N`.
    pub fn set_cas(&mut self, idx: u64, entry: DirEntry, cas: u64) -> Option<DirEntry> {
        let existing = self.entries.get(&entry.key);
        match (cas, existing) {
            (0, Some(_)) | (1.., None) => return None,
            (1.., Some(e)) if e.modify_index != cas => return None,
            _ => {}
        }
        Some(self.set(idx, entry, false))
    }

    /// `kvsLockTxn`. `session_exists` answers whether the session is live. `Err` is the FSM error text.
    pub fn lock(&mut self, idx: u64, mut entry: DirEntry, session_exists: bool) -> Result<Option<DirEntry>, String> {
        if entry.session.is_empty() {
            return Err("missing session".to_owned());
        }
        if !session_exists {
            return Err(format!("invalid session {}", super::http::go_quote(&entry.session)));
        }
        match self.entries.get(&entry.key) {
            Some(e) if e.session == entry.session => entry.lock_index = e.lock_index,
            Some(e) if !e.session.is_empty() => return Ok(None),
            Some(e) => entry.lock_index = e.lock_index + 1,
            None => entry.lock_index = 1,
        }
        Ok(Some(self.set(idx, entry, true)))
    }

    /// `kvsUnlockTxn`: only the holder can release; the session is cleared and `LockIndex` kept.
    pub fn unlock(&mut self, idx: u64, mut entry: DirEntry) -> Result<Option<DirEntry>, String> {
        if entry.session.is_empty() {
            return Err("missing session".to_owned());
        }
        match self.entries.get(&entry.key) {
            Some(e) if e.session == entry.session => {
                entry.session = String::new();
                entry.lock_index = e.lock_index;
                Ok(Some(self.set(idx, entry, true)))
            }
            _ => Ok(None),
        }
    }

    /// `kvsDeleteTxn`: removes the key and leaves a tombstone; nothing happens when it is missing.
    pub fn delete(&mut self, idx: u64, key: &str, now: SimInstant) {
        if self.entries.remove(key).is_some() {
            self.tombstones.insert(key.to_owned(), Tombstone { index: idx, created: now });
            self.tombstones_index = idx;
            self.kvs_index = idx;
        }
    }

    /// `kvsDeleteCASTxn`: true when deleted at `ModifyIndex == cas`, and also when the key is missing.
    pub fn delete_cas(&mut self, idx: u64, cas: u64, key: &str, now: SimInstant) -> bool {
        match self.entries.get(key) {
            None => true,
            Some(e) if e.modify_index != cas => false,
            Some(_) => {
                self.delete(idx, key, now);
                true
            }
        }
    }

    /// `kvsDeleteTreeTxn`: deletes every key under the prefix and leaves ONE tombstone at the prefix itself (none
    /// for the empty prefix).
    pub fn delete_tree(&mut self, idx: u64, prefix: &str, now: SimInstant) {
        let keys: Vec<String> = prefix_range(&self.entries, prefix).map(|(k, _)| k.clone()).collect();
        if keys.is_empty() {
            return;
        }
        for k in &keys {
            self.entries.remove(k);
        }
        if !prefix.is_empty() {
            self.tombstones.insert(prefix.to_owned(), Tombstone { index: idx, created: now });
            self.tombstones_index = idx;
        }
        self.kvs_index = idx;
    }

    /// Removes the tombstones matching `reap`; the tombstones table index is left as it is (as in Consul).
    pub fn reap(&mut self, mut reap: impl FnMut(&Tombstone) -> bool) -> usize {
        let before = self.tombstones.len();
        self.tombstones.retain(|_, t| !reap(t));
        before - self.tombstones.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> DirEntry {
        DirEntry { key: key.to_string(), value: Bytes::copy_from_slice(value.as_bytes()), ..DirEntry::default() }
    }

    fn state(kv: &KvStore) -> (BTreeMap<String, DirEntry>, BTreeMap<String, Tombstone>, u64, u64) {
        (kv.entries.clone(), kv.tombstones.clone(), kv.kvs_index, kv.tombstones_index)
    }

    #[test]
    fn rollback_should_restore_keys_prefixes_tombstones_and_indexes() {
        let now = SimInstant::default();
        let mut kv = KvStore::default();
        kv.set(11, entry("a/1", "x"), false);
        kv.set(12, entry("a/2", "y"), false);
        kv.set(13, entry("b", "z"), false);
        kv.delete(14, "c", now);
        let before = state(&kv);
        let undo = kv.undo_point([("set", "b"), ("delete-tree", "a/"), ("set", "new"), ("delete", "c")]);
        kv.set(20, entry("b", "changed"), false);
        kv.delete_tree(20, "a/", now);
        kv.set(20, entry("new", "n"), false);
        kv.set(20, entry("c", "back"), false);
        assert_ne!(state(&kv), before);
        kv.rollback(undo);
        assert_eq!(state(&kv), before);
    }
}
