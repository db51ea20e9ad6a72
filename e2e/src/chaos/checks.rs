//! The end state the soak checks: every app converged on its last write, and every job a person owns untouched.

use std::collections::BTreeMap;
use std::time::Duration;

use drover::status::Phase;
use serde_json::json;
use tokio::time::Instant;

use super::apps::{self, Kind, SCALE_MAX, SCALE_MIN};
use crate::{SimProcess, job_image, job_modify_index, job_owner};

/// The fleet as a person wrote it: each app's kind, last image version and the generation of its last write.
pub(super) struct Fleet {
    pub(super) kinds: Vec<Kind>,
    pub(super) version: Vec<u64>,
    pub(super) generation: Vec<u64>,
    pub(super) prometheus: Option<String>,
}

impl Fleet {
    pub(super) async fn write(&mut self, sim: &SimProcess, i: usize) {
        let image = apps::image(self.version[i]);
        let yaml = apps::record(i, self.kinds[i], &image, self.prometheus.as_deref());
        self.generation[i] = sim.put_record("default", &apps::name(i), yaml).await;
    }
}

/// Polls (every second) until every app is converged, or `within` has passed: what each app that is not shows
/// (empty: all converged).
pub(super) async fn converge(sim: &SimProcess, fleet: &Fleet, within: Duration) -> Vec<(usize, String)> {
    let until = Instant::now() + within;
    loop {
        let pending = unconverged(sim, fleet).await;
        if pending.is_empty() || Instant::now() >= until {
            return pending;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every app not converged, one line each: a good app's status at the generation of its last write, Healthy, and
/// its job running the last written image (an autoscaled one within its bounds); a colliding app's status at its
/// last generation and Failed.
pub(super) async fn unconverged(sim: &SimProcess, fleet: &Fleet) -> Vec<(usize, String)> {
    let statuses = crate::statuses(&sim.http, &sim.consul_url).await;
    let mut pending = Vec::new();
    for (i, kind) in fleet.kinds.iter().enumerate() {
        let name = apps::name(i);
        let generation = fleet.generation[i];
        let Some(status) = statuses.get(&name) else {
            pending.push((i, format!("{name} ({kind:?}): no status")));
            continue;
        };
        let want = if *kind == Kind::Colliding { Phase::Failed } else { Phase::Healthy };
        if status.observed_generation != generation || status.phase != want {
            let seen = format!("status {:?} at generation {}", status.phase, status.observed_generation);
            let why = format!("last error {:?}", status.last_error);
            pending.push((i, format!("{name} ({kind:?}): {seen} (last write: {generation}, want {want:?}); {why}")));
            continue;
        }
        if *kind == Kind::Colliding {
            continue;
        }
        let image = apps::image(fleet.version[i]);
        let Some(job) = sim.job("default", &name).await else {
            pending.push((i, format!("{name} ({kind:?}): Healthy at generation {generation} but Nomad has no job")));
            continue;
        };
        let count = job["TaskGroups"][0]["Count"].as_u64().unwrap_or(0);
        if job_image(&job) != Some(image.as_str()) || job_owner(&job).is_none() {
            pending.push((
                i,
                format!(
                    "{name} ({kind:?}): Nomad runs {:?} (owner {:?}); the last write ({generation}) says {image}",
                    job_image(&job),
                    job_owner(&job)
                ),
            ));
        } else if *kind == Kind::Autoscaled && !(SCALE_MIN..=SCALE_MAX).contains(&count) {
            pending.push((i, format!("{name}: count {count} outside [{SCALE_MIN}, {SCALE_MAX}]")));
        } else if *kind != Kind::Autoscaled && count != 2 {
            pending.push((i, format!("{name} ({kind:?}): count {count}, the record says 2")));
        }
    }
    pending
}

/// Every job a person owns that is not as they left it: one line each.
pub(super) async fn check_foreign(sim: &SimProcess, foreign: &BTreeMap<String, (u64, u64)>) -> Vec<String> {
    let mut touched = Vec::new();
    for (id, (index, version)) in foreign {
        match sim.job("default", id).await {
            None => touched.push(format!("unowned job {id} was deleted")),
            Some(job) => {
                let now = (job_modify_index(&job), crate::job_version(&job));
                if now != (*index, *version) || job_owner(&job).is_some() || job["Stop"] == json!(true) {
                    touched.push(format!(
                        "unowned job {id} changed: (JobModifyIndex, Version) {:?} -> {now:?}, owner {:?}, Stop {}",
                        (index, version),
                        job_owner(&job),
                        job["Stop"]
                    ));
                }
            }
        }
    }
    touched
}
