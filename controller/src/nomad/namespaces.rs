//! Namespace coverage of the event stream: an event stream opened with `namespace=*` carries the events of the
//! namespaces that existed when it subscribed, and no others (contract B15, C25; nomad/event_endpoint.go fixes the
//! namespace list at subscribe time). The live watcher therefore lists `GET /v1/namespaces` before it subscribes,
//! keeps a blocking query on that list open beside the stream, and reopens the stream (with a relist) when a
//! namespace it does not cover appears.
//!
//! `GET /v1/namespaces` supports blocking queries; its index is the `namespaces` table index, floored at 1, and it
//! lists only the namespaces in which the token has some capability (nomad/namespace_endpoint.go `ListNamespaces`,
//! website/content/api-docs/namespaces.mdx). A namespace write emits no event on the event stream, so the list is
//! the only way to learn of one.
//!
//! A namespace that disappears from the list (deleted, or no longer visible to the token) never makes the watcher
//! report its jobs as gone: Nomad refuses to delete a namespace that still has a non-terminal job
//! (nomad/state/state_store.go `DeleteNamespaces`), and a namespace the token can no longer see says nothing about
//! its jobs. The watcher only narrows what the open stream is known to cover, and says in
//! [`super::LiveEvent::Resynced`] which namespaces a relist looked at.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;

use super::{BlockingQuery, Error};

/// One entry of `GET /v1/namespaces` (the fields Drover reads).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Namespace {
    /// The namespace's name, the value of `?namespace=` and of every object's `Namespace`.
    pub name: String,
    /// Index of the last write to this namespace; for logs.
    #[serde(default)]
    pub modify_index: u64,
}

/// The namespaces a stream or a list covered, and the namespace list's index when they were read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Covered {
    /// Namespace names.
    pub names: BTreeSet<String>,
    /// `X-Nomad-Index` of the namespace list they came from: the next blocking query waits past it.
    pub index: u64,
}

/// How a newer namespace list compares with what the open stream covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The same names: nothing to do (a blocking query's return is no proof of change, B2).
    Same,
    /// Namespaces the stream does not cover: reopen it and relist, or their events are never seen (C25).
    Added(BTreeSet<String>),
    /// Only removals: the stream still covers everything that exists; its jobs are not reported as gone.
    Removed(BTreeSet<String>),
}

impl Covered {
    /// The names of a namespace list, read at `index`.
    pub fn from_list(list: &[Namespace], index: u64) -> Self {
        Self { names: list.iter().map(|n| n.name.clone()).collect(), index }
    }

    /// Compares a newer list with these names. Additions win over removals: one new namespace is enough to reopen.
    pub fn compare(&self, newer: &Covered) -> Change {
        let added: BTreeSet<String> = newer.names.difference(&self.names).cloned().collect();
        if !added.is_empty() {
            return Change::Added(added);
        }
        let removed: BTreeSet<String> = self.names.difference(&newer.names).cloned().collect();
        if removed.is_empty() { Change::Same } else { Change::Removed(removed) }
    }
}

/// What one namespace list returns.
pub type ListResult = Result<(Vec<Namespace>, u64), Error>;

/// A namespace list in flight, kept across the watcher's steps so that each stream frame does not cancel and
/// re-send the blocking query.
pub struct PendingList(Pin<Box<dyn Future<Output = ListResult> + Send>>);

impl PendingList {
    /// Wraps a list request.
    pub fn new(list: impl Future<Output = ListResult> + Send + 'static) -> Self {
        Self(Box::pin(list))
    }

    /// Waits `delay`, then sends `list` (a retry after a failed list, without touching the stream).
    pub fn after(delay: Duration, list: impl Future<Output = ListResult> + Send + 'static) -> Self {
        Self::new(async move {
            tokio::time::sleep(delay).await;
            list.await
        })
    }
}

impl Future for PendingList {
    type Output = ListResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<ListResult> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for PendingList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingList")
    }
}

/// The blocking query on the namespace list that runs beside an open event stream.
#[derive(Debug)]
pub struct NamespaceWatch {
    /// What the open stream covers: the list read before subscribing, narrowed by later removals.
    pub covered: Covered,
    /// Consecutive failed lists, for the retry delay.
    pub failures: u32,
    /// The list in flight.
    pub pending: PendingList,
}

/// The blocking query that follows a list read at `index`.
pub fn next_query(index: u64, wait: Duration) -> BlockingQuery {
    // Nomad floors the index at 1; 0 would not block (B2).
    BlockingQuery::after(index.max(1), wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(names: &[&str]) -> Covered {
        Covered { names: names.iter().map(|n| (*n).to_owned()).collect(), index: 1 }
    }

    #[test]
    fn compare_should_reopen_on_any_new_namespace_and_only_narrow_on_removals() {
        let old = covered(&["default", "apps"]);
        assert_eq!(old.compare(&covered(&["apps", "default"])), Change::Same);
        assert_eq!(old.compare(&covered(&["default", "apps", "late"])), Change::Added(["late".to_owned()].into()));
        assert_eq!(old.compare(&covered(&["default"])), Change::Removed(["apps".to_owned()].into()));
        // One removed, one added: the new one must be covered, so this is a reopen.
        assert_eq!(old.compare(&covered(&["default", "late"])), Change::Added(["late".to_owned()].into()));
    }

    #[test]
    fn namespace_list_entries_should_parse_from_nomad_json() {
        let body = r#"[{"CreateIndex":31,"Description":"Production API Servers","ModifyIndex":31,"Name":"api-prod",
            "Quota":""},{"CreateIndex":5,"Description":"Default shared namespace","ModifyIndex":5,"Name":"default",
            "Quota":""}]"#;
        let list: Vec<Namespace> = serde_json::from_str(body).unwrap();
        let c = Covered::from_list(&list, 31);
        assert_eq!(c.names.iter().map(String::as_str).collect::<Vec<_>>(), ["api-prod", "default"]);
        assert_eq!(list[0].modify_index, 31);
    }
}
