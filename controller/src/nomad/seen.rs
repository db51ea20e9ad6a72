//! The live watcher's duplicate filter, bounded (issue #7, 2.6).
//!
//! The event stream replays: a resubscription from `index = L + 1` re-sends the newest buffered batch when nothing
//! newer exists, and a resume point older than the relist replays events the list already reflects (B15). Handlers
//! are idempotent, but an old upsert replayed after a newer state would move the cache backwards, so events that
//! are not newer than what was reported are dropped here.
//!
//! Two rules, per topic, keep it bounded:
//! - **A floor.** After a relist at index `I`, every object version `<= I` is in the list, so any event at or below
//!   the floor is dropped without a per-object entry. A relist therefore starts with empty maps, whatever the
//!   number of jobs.
//! - **A window.** Between relists (a stream can stay open for days), each reported object leaves an entry
//!   (`ModifyIndex`, or the purge's index as a tombstone so that an older replayed upsert cannot resurrect a purged
//!   job). When a map passes [`SEEN_LIMIT`] entries, entries older than the current frame are dropped and the floor
//!   rises to the highest index dropped. This is safe because within one connection frames arrive in index order:
//!   an event at or below the raised floor can only be a replay. Entries at the current frame's index are kept,
//!   because one Raft index can carry several frames (B15).

use std::collections::HashMap;
use std::hash::Hash;

use super::types::{Deployment, Event, Job};
use super::watch::LiveEvent;

/// The most entries a map holds before it is pruned below the current frame's index.
pub const SEEN_LIMIT: usize = 4096;

/// Reported versions of one kind of object, with the floor under which everything counts as seen.
#[derive(Debug)]
struct Seen<K> {
    floor: u64,
    by_key: HashMap<K, u64>,
}

impl<K> Default for Seen<K> {
    fn default() -> Self {
        Self { floor: 0, by_key: HashMap::new() }
    }
}

impl<K: Hash + Eq> Seen<K> {
    /// After a relist at `index`: everything up to it is reflected in the list.
    fn reset(&mut self, index: u64) {
        // Assigned, not raised: an index that went backwards is a reset of Nomad's state (B2).
        self.floor = index;
        self.by_key = HashMap::new();
    }

    /// Records `version` for `key` and says whether it is newer than anything reported.
    fn advance(&mut self, key: K, version: u64) -> bool {
        if version <= self.floor {
            return false;
        }
        match self.by_key.get(&key) {
            Some(seen) if *seen >= version => false,
            _ => {
                self.by_key.insert(key, version);
                true
            }
        }
    }

    /// Bounds the map once it passes `limit`: entries below `frame_index` go, and the floor covers them.
    fn prune(&mut self, frame_index: u64, limit: usize) {
        if self.by_key.len() <= limit {
            return;
        }
        let mut highest_dropped = self.floor;
        self.by_key.retain(|_, version| {
            if *version < frame_index {
                highest_dropped = highest_dropped.max(*version);
                false
            } else {
                true
            }
        });
        self.floor = highest_dropped;
    }
}

/// What has been reported per job and per deployment.
#[derive(Debug)]
pub(crate) struct Reported {
    jobs: Seen<(String, String)>,
    deployments: Seen<String>,
    limit: usize,
}

impl Default for Reported {
    fn default() -> Self {
        Self::with_limit(SEEN_LIMIT)
    }
}

impl Reported {
    /// A filter that prunes past `limit` entries per map.
    pub(crate) fn with_limit(limit: usize) -> Self {
        Self { jobs: Seen::default(), deployments: Seen::default(), limit }
    }

    /// After a relist: the jobs list at `jobs_index` and the deployments list at `deployments_index`.
    pub(crate) fn reset(&mut self, jobs_index: u64, deployments_index: u64) {
        self.jobs.reset(jobs_index);
        self.deployments.reset(deployments_index);
    }

    /// Entries held (jobs, deployments), for tests of the bound.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.jobs.by_key.len(), self.deployments.by_key.len())
    }

    /// Called after each frame: keeps both maps within the limit.
    pub(crate) fn end_frame(&mut self, frame_index: u64) {
        self.jobs.prune(frame_index, self.limit);
        self.deployments.prune(frame_index, self.limit);
    }

    /// Turns one stream event into a live event, unless it is not newer than what was reported.
    pub(crate) fn accept(&mut self, event: &Event) -> Result<Option<LiveEvent>, serde_json::Error> {
        match event.topic.as_str() {
            "Job" => {
                let deleted = event.payload.get("Deleted").and_then(serde_json::Value::as_bool).unwrap_or(false);
                let payload = event.payload.get("Job").filter(|j| !j.is_null());
                if deleted {
                    // A purge: the payload's job may be absent, so the event's own key and namespace are enough.
                    let field = |name: &str, fallback: &str| {
                        payload
                            .and_then(|j| j.get(name))
                            .and_then(serde_json::Value::as_str)
                            .filter(|v| !v.is_empty())
                            .unwrap_or(fallback)
                            .to_owned()
                    };
                    let namespace = field("Namespace", &event.namespace);
                    let id = field("ID", &event.key);
                    let fresh = self.jobs.advance((namespace.clone(), id.clone()), event.index);
                    return Ok(fresh.then_some(LiveEvent::JobDeleted { namespace, id }));
                }
                let job: Job = serde_json::from_value(payload.cloned().unwrap_or_default())?;
                let namespace = if job.namespace.is_empty() { event.namespace.clone() } else { job.namespace.clone() };
                let id = if job.id.is_empty() { event.key.clone() } else { job.id.clone() };
                let version = if job.modify_index == 0 { event.index } else { job.modify_index };
                let fresh = self.jobs.advance((namespace, id), version);
                Ok(fresh.then_some(LiveEvent::JobUpserted(job)))
            }
            "Deployment" => {
                let deployment: Deployment =
                    serde_json::from_value(event.payload.get("Deployment").cloned().unwrap_or_default())?;
                let version = if deployment.modify_index == 0 { event.index } else { deployment.modify_index };
                let fresh = self.deployments.advance(deployment.id.clone(), version);
                Ok(fresh.then_some(LiveEvent::Deployment(deployment)))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job_event(index: u64, id: &str, deleted: bool) -> Event {
        let mut payload = json!({"Job": {"ID": id, "Namespace": "default", "ModifyIndex": index}});
        if deleted {
            payload["Deleted"] = json!(true);
        }
        serde_json::from_value(json!({"Topic": "Job", "Type": "JobRegistered", "Key": id, "Namespace": "default",
            "Index": index, "Payload": payload}))
        .unwrap()
    }

    fn deployment_event(index: u64, id: &str) -> Event {
        serde_json::from_value(json!({"Topic": "Deployment", "Type": "PlanResult", "Key": id, "Namespace": "default",
            "Index": index, "Payload": {"Deployment": {"ID": id, "JobID": "web", "Namespace": "default",
            "Status": "running", "ModifyIndex": index}}}))
        .unwrap()
    }

    fn accepted(r: &mut Reported, event: &Event) -> bool {
        r.accept(event).unwrap().is_some()
    }

    #[test]
    fn reported_should_stay_bounded_under_a_long_stream_and_still_drop_replays() {
        let limit = 64;
        let mut r = Reported::with_limit(limit);
        r.reset(10, 10);
        // 100 000 frames, each a new deployment and a new job, every third job event a purge. Without the window
        // the maps would hold 100 000 entries each.
        for index in 11..100_011u64 {
            assert!(accepted(&mut r, &deployment_event(index, &format!("d{index}"))));
            assert!(accepted(&mut r, &job_event(index, &format!("j{index}"), index % 3 == 0)));
            r.end_frame(index);
            let (jobs, deployments) = r.len();
            assert!(
                jobs <= limit && deployments <= limit,
                "at {index}: {jobs} job and {deployments} deployment entries"
            );
        }
        // Replays of anything already reported are still dropped: pruned ones by the floor, recent ones by the map.
        assert!(!accepted(&mut r, &deployment_event(500, "d500")), "an old replayed deployment");
        assert!(!accepted(&mut r, &job_event(99_998, "j99999", false)), "an upsert older than its purge at 99 999");
        assert!(!accepted(&mut r, &deployment_event(100_010, "d100010")), "the last frame replayed");
        assert!(accepted(&mut r, &deployment_event(100_011, "d100011")), "a new frame passes");
        assert!(accepted(&mut r, &job_event(100_011, "j99999", false)), "a job registered again after its purge");
    }

    #[test]
    fn reported_should_keep_entries_of_the_current_index_when_pruning() {
        // Two frames can share one Raft index (B15): pruning after the first must not hide the second.
        let mut r = Reported::with_limit(1);
        r.reset(0, 0);
        assert!(accepted(&mut r, &deployment_event(5, "a")));
        assert!(accepted(&mut r, &deployment_event(7, "b")));
        r.end_frame(7);
        assert!(accepted(&mut r, &deployment_event(7, "c")), "a second frame at index 7");
        assert!(!accepted(&mut r, &deployment_event(5, "a")), "5 is under the raised floor");
    }

    #[test]
    fn reported_should_drop_what_a_relist_already_reflects_and_follow_an_index_reset() {
        let mut r = Reported::default();
        r.reset(100, 90);
        assert!(!accepted(&mut r, &job_event(100, "web", false)), "in the jobs list at 100");
        assert!(accepted(&mut r, &deployment_event(95, "d")), "after the deployments list at 90");
        assert!(accepted(&mut r, &job_event(101, "web", false)));
        // Nomad's indexes went backwards (a restore): the floor follows, it is not kept at its maximum.
        r.reset(5, 5);
        assert!(accepted(&mut r, &job_event(6, "web", false)));
    }
}
