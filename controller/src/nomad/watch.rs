//! The live watcher: one list of jobs and deployments, then the event stream, as an explicit state machine
//! (STYLE 3). It feeds the live cache the way an informer does.
//!
//! ```text
//!                              subscribed, then listed: Resynced        frame: events
//!  Listing ───────────────▶ Subscribing ─────────────────▶ Streaming ◀──────────────┐
//!   ▲  ▲ │ (stream failed             │ error                  │ │  heartbeat: —      │
//!   │  │ │  `fallback_after` times    ▼                        │ └────────────────────┘
//!   │  │ │  in a row)              Backoff ◀──── drop ─────────┘
//!   │  │ ▼                            │
//!   │  │ Polling (blocking queries on /v1/jobs + /v1/deployments: Resynced on change)
//!   │  └──────── after the delay ─────┘
//!   └── Polling, after `retry_stream_after`: try the stream again
//! ```
//!
//! Rules from B15/C23: resume with `index = last + 1` and still expect duplicates (handlers are idempotent: events
//! older than what was already reported for the same job or deployment are dropped here, by `ModifyIndex`); after
//! any reconnect, relist (the stream cannot say what was missed); if the stream keeps failing, fall back to
//! blocking queries (DESIGN §1).
//!
//! **Subscribe first, then list** (issue #7, 2.0). Nomad keeps only the last 100 write batches for the stream, and
//! a subscription asked to start before them silently starts at the oldest one (B15 "no error and no marker"). A
//! list taken *before* subscribing can therefore be separated from the stream by a gap no one sees: under load
//! (10 000 apps starting) more than 100 batches pass while 10 000 jobs are listed, a deployment's `successful`
//! update falls in the gap, and its app stays `Progressing` forever. Once subscribed, the stream holds every batch
//! from its start on (a reader that falls behind is cut off, and relists), so a list taken *after* subscribing
//! leaves no gap; stream events the list already covers are dropped (at or below the lists' lower index, or not
//! newer than the listed object).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use futures::future::{Either, select};
use tokio::time::Instant;

use super::client::Client;
use super::events::{EventStream, SILENCE_LIMIT};
use super::types::{Deployment, Event, Frame, Job, JobStub};
use super::{BlockingQuery, Error};
use crate::consul::watch::TokenBucket;
use crate::metrics::Metrics;
use crate::queue::Backoff;

/// Where the live watcher reads from; [`Client`] in production, an in-memory model in tests.
pub trait LiveSource: Send + Sync {
    /// `GET /v1/jobs?namespace=*&meta=true`, blocking per `query`.
    fn list_jobs(&self, query: BlockingQuery) -> impl Future<Output = Result<(Vec<JobStub>, u64), Error>> + Send;
    /// `GET /v1/deployments?namespace=*`, blocking per `query`.
    fn list_deployments(
        &self,
        query: BlockingQuery,
    ) -> impl Future<Output = Result<(Vec<Deployment>, u64), Error>> + Send;
    /// Job and Deployment events in every namespace, from `index` inclusive.
    fn subscribe(&self, index: u64) -> impl Future<Output = Result<EventStream, Error>> + Send;
}

impl LiveSource for Client {
    fn list_jobs(&self, query: BlockingQuery) -> impl Future<Output = Result<(Vec<JobStub>, u64), Error>> + Send {
        Client::list_jobs(self, query)
    }

    fn list_deployments(
        &self,
        query: BlockingQuery,
    ) -> impl Future<Output = Result<(Vec<Deployment>, u64), Error>> + Send {
        Client::list_deployments(self, "*", query)
    }

    fn subscribe(&self, index: u64) -> impl Future<Output = Result<EventStream, Error>> + Send {
        Client::subscribe(self, index)
    }
}

impl<T: LiveSource> LiveSource for Arc<T> {
    fn list_jobs(&self, query: BlockingQuery) -> impl Future<Output = Result<(Vec<JobStub>, u64), Error>> + Send {
        T::list_jobs(self, query)
    }

    fn list_deployments(
        &self,
        query: BlockingQuery,
    ) -> impl Future<Output = Result<(Vec<Deployment>, u64), Error>> + Send {
        T::list_deployments(self, query)
    }

    fn subscribe(&self, index: u64) -> impl Future<Output = Result<EventStream, Error>> + Send {
        T::subscribe(self, index)
    }
}

/// Settings of the live watcher.
#[derive(Clone, Debug)]
pub struct LiveWatchConfig {
    /// Server-side wait of the fallback blocking queries; Nomad clamps it to 5 min (C3).
    pub wait: Duration,
    /// Delay between a failure and the relist that follows it.
    pub backoff: Backoff,
    /// Token-bucket burst for lists and subscriptions.
    pub burst: u32,
    /// Time to earn one token back.
    pub refill: Duration,
    /// Consecutive subscriptions that fail before their first heartbeat, after which the watcher polls instead.
    pub fallback_after: u32,
    /// How long to poll before trying the stream again.
    pub retry_stream_after: Duration,
    /// Silence after which the stream counts as dropped.
    pub silence_limit: Duration,
}

impl Default for LiveWatchConfig {
    /// 5 min waits, burst 4 and one request per second under churn (as the Consul watch, so a relist after a
    /// drop is followed by the resubscribe at once), fall back after 3 refused subscriptions, retry the stream
    /// every 5 min, 45 s silence limit.
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(300),
            backoff: Backoff::default(),
            burst: 4,
            refill: Duration::from_secs(1),
            fallback_after: 3,
            retry_stream_after: Duration::from_secs(300),
            silence_limit: SILENCE_LIMIT,
        }
    }
}

/// What the live watcher reports. Handlers must be idempotent: the same state can be reported more than once.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveEvent {
    /// Everything, from a list: replace the cache's contents. Jobs or deployments absent here are gone.
    Resynced {
        /// Every job stub (with `Meta`).
        jobs: Vec<JobStub>,
        /// Every deployment.
        deployments: Vec<Deployment>,
        /// The lower of the two lists' `X-Nomad-Index`.
        index: u64,
    },
    /// A job was registered, stopped, scaled, reverted or marked stable.
    JobUpserted(Job),
    /// A job was purged.
    JobDeleted {
        /// Namespace.
        namespace: String,
        /// Job ID.
        id: String,
    },
    /// A deployment was created or changed.
    Deployment(Deployment),
}

/// The watcher's state.
#[derive(Debug)]
pub enum State {
    /// About to list jobs and deployments without blocking.
    Listing {
        /// Consecutive failed attempts, for the backoff.
        failures: u32,
        /// Consecutive subscriptions that failed before their first heartbeat.
        stream_failures: u32,
        /// The last frame index seen before a drop, to resume from.
        resume: Option<u64>,
    },
    /// About to subscribe from `index + 1`, then list.
    Subscribing {
        /// Last frame index seen before a drop (0 at first: from the oldest buffered batch). Any start works, as
        /// the list that follows covers what came before the subscription.
        index: u64,
        /// Consecutive failed attempts, for the backoff.
        failures: u32,
        /// As in `Listing`.
        stream_failures: u32,
    },
    /// Reading frames.
    Streaming {
        /// The open stream.
        stream: EventStream,
        /// Last frame index seen.
        index: u64,
        /// As in `Listing`; reset by the first heartbeat.
        stream_failures: u32,
    },
    /// The stream is unavailable: blocking queries on both lists.
    Polling {
        /// Index of the last jobs list.
        jobs_index: u64,
        /// Index of the last deployments list.
        deployments_index: u64,
        /// When to try the stream again.
        retry_stream_at: Instant,
    },
    /// Waiting before relisting.
    Backoff {
        /// Consecutive failures.
        failures: u32,
        /// When to relist.
        until: Instant,
        /// Carried to the next `Listing`.
        stream_failures: u32,
        /// Carried to the next `Listing`.
        resume: Option<u64>,
    },
}

impl State {
    /// The starting state.
    pub fn initial() -> Self {
        Self::Listing { failures: 0, stream_failures: 0, resume: None }
    }
}

/// What has been reported per object, by `ModifyIndex`, so that replays and duplicates are dropped (B15 resume
/// rules). A purge leaves the purge's index as a tombstone, so an older replayed upsert cannot resurrect the job.
#[derive(Debug, Default)]
struct Reported {
    jobs: HashMap<(String, String), u64>,
    deployments: HashMap<String, u64>,
    /// Events at or below this index are covered by the last list, whatever object they are about (a job purged
    /// before the list is in no map, and its older events must not bring it back).
    listed: u64,
}

impl Reported {
    fn reset(&mut self, jobs: &[JobStub], deployments: &[Deployment], listed: u64) {
        self.jobs = jobs.iter().map(|j| ((j.namespace.clone(), j.id.clone()), j.modify_index)).collect();
        self.deployments = deployments.iter().map(|d| (d.id.clone(), d.modify_index)).collect();
        self.listed = listed;
    }

    /// Records `index` for the key and says whether it is newer than anything reported.
    fn advance<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u64>, key: K, index: u64) -> bool {
        match map.get(&key) {
            Some(seen) if *seen >= index => false,
            _ => {
                map.insert(key, index);
                true
            }
        }
    }

    /// Turns one stream event into a live event, unless it is not newer than what was reported.
    fn accept(&mut self, event: &Event) -> Result<Option<LiveEvent>, serde_json::Error> {
        if event.index <= self.listed {
            return Ok(None);
        }
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
                    let fresh = Self::advance(&mut self.jobs, (namespace.clone(), id.clone()), event.index);
                    return Ok(fresh.then_some(LiveEvent::JobDeleted { namespace, id }));
                }
                let job: Job = serde_json::from_value(payload.cloned().unwrap_or_default())?;
                let namespace = if job.namespace.is_empty() { event.namespace.clone() } else { job.namespace.clone() };
                let id = if job.id.is_empty() { event.key.clone() } else { job.id.clone() };
                let fresh = Self::advance(&mut self.jobs, (namespace, id), job.modify_index);
                Ok(fresh.then_some(LiveEvent::JobUpserted(job)))
            }
            "Deployment" => {
                let deployment: Deployment =
                    serde_json::from_value(event.payload.get("Deployment").cloned().unwrap_or_default())?;
                let fresh = Self::advance(&mut self.deployments, deployment.id.clone(), deployment.modify_index);
                Ok(fresh.then_some(LiveEvent::Deployment(deployment)))
            }
            _ => Ok(None),
        }
    }
}

/// The live watcher: source, settings, rate limiter, metrics, and what it has reported.
#[derive(Debug)]
pub struct LiveWatcher<S> {
    source: S,
    config: LiveWatchConfig,
    limiter: TokenBucket,
    metrics: Arc<Metrics>,
    reported: Reported,
}

/// The result of one step: events to hand on, or the error that sent the watcher into backoff.
pub type StepResult = Result<Vec<LiveEvent>, Error>;

impl<S: LiveSource> LiveWatcher<S> {
    /// A watcher in its initial state.
    pub fn new(source: S, config: LiveWatchConfig, metrics: Arc<Metrics>) -> Self {
        let limiter = TokenBucket::new(config.burst, config.refill);
        Self { source, config, limiter, metrics, reported: Reported::default() }
    }

    fn backoff(&self, failures: u32, stream_failures: u32, resume: Option<u64>) -> State {
        // Every way into Backoff ends in a relist: a watch restart.
        self.metrics.watch_restart("nomad");
        let delay = self.config.backoff.delay(failures, &mut rand::rng());
        State::Backoff { failures, until: Instant::now() + delay, stream_failures, resume }
    }

    /// Lists both collections, without blocking or with the given queries.
    async fn list_both(
        &self,
        jobs: BlockingQuery,
        deployments: BlockingQuery,
    ) -> Result<(Vec<JobStub>, u64, Vec<Deployment>, u64), Error> {
        let (jobs, jobs_index) = self.source.list_jobs(jobs).await?;
        let (deployments, deployments_index) = self.source.list_deployments(deployments).await?;
        Ok((jobs, jobs_index, deployments, deployments_index))
    }

    fn resynced(&mut self, jobs: Vec<JobStub>, deployments: Vec<Deployment>, index: u64) -> Vec<LiveEvent> {
        self.reported.reset(&jobs, &deployments, index);
        vec![LiveEvent::Resynced { jobs, deployments, index }]
    }

    /// Runs one transition.
    pub async fn step(&mut self, state: State) -> (StepResult, State) {
        match state {
            State::Backoff { failures, until, stream_failures, resume } => {
                tokio::time::sleep_until(until).await;
                (Ok(Vec::new()), State::Listing { failures, stream_failures, resume })
            }
            State::Listing { failures, stream_failures, resume } if stream_failures < self.config.fallback_after => {
                // Subscribe first; the list follows in `Subscribing` (module doc). Resume from the last frame seen,
                // or from the oldest buffered batch (B15).
                (Ok(Vec::new()), State::Subscribing { index: resume.unwrap_or(0), failures, stream_failures })
            }
            State::Listing { failures, stream_failures, resume } => {
                self.limiter.acquire().await;
                match self.list_both(BlockingQuery::now(), BlockingQuery::now()).await {
                    Err(err) => (Err(err), self.backoff(failures.saturating_add(1), stream_failures, resume)),
                    Ok((jobs, jobs_index, deployments, deployments_index)) => {
                        let events = self.resynced(jobs, deployments, jobs_index.min(deployments_index));
                        let next = State::Polling {
                            jobs_index,
                            deployments_index,
                            retry_stream_at: Instant::now() + self.config.retry_stream_after,
                        };
                        (Ok(events), next)
                    }
                }
            }
            State::Subscribing { index, failures, stream_failures } => {
                self.limiter.acquire().await;
                let mut stream = match self.source.subscribe(index.saturating_add(1)).await {
                    Ok(stream) => stream.with_silence_limit(self.config.silence_limit),
                    Err(err) => return (Err(err), self.backoff(1, stream_failures.saturating_add(1), Some(index))),
                };
                // The subscription now holds every batch from its start: list, and the stream carries on from there.
                // Frames are read while the list runs: a subscription left unread for the length of a 10 000-job
                // list falls out of Nomad's buffer and is cut off (sim README), which would only start this over.
                let mut early = Vec::new();
                let listed = {
                    let mut list = std::pin::pin!(self.list_both(BlockingQuery::now(), BlockingQuery::now()));
                    loop {
                        tokio::select! {
                            biased;
                            listed = &mut list => break listed,
                            frame = stream.next_frame() => match frame {
                                Ok(frame) if frame.is_heartbeat() => {}
                                Ok(frame) => early.push(frame),
                                Err(err) => {
                                    let stream_failures =
                                        if stream.saw_heartbeat() { 0 } else { stream_failures.saturating_add(1) };
                                    return (Err(err), self.backoff(1, stream_failures, Some(index)));
                                }
                            },
                        }
                    }
                };
                match listed {
                    Err(err) => (Err(err), self.backoff(failures.saturating_add(1), stream_failures, Some(index))),
                    Ok((jobs, jobs_index, deployments, deployments_index)) => {
                        // The lower index: events between the two lists are replayed rather than missed, and the
                        // duplicates are dropped by `Reported`.
                        let listed = jobs_index.min(deployments_index);
                        let mut events = self.resynced(jobs, deployments, listed);
                        let mut last = index.max(listed);
                        for frame in &early {
                            events.extend(self.accept_frame(frame));
                            last = last.max(frame.index);
                        }
                        (Ok(events), State::Streaming { stream, index: last, stream_failures })
                    }
                }
            }
            State::Streaming { mut stream, index, stream_failures } => match stream.next_frame().await {
                Ok(frame) if frame.is_heartbeat() => {
                    (Ok(Vec::new()), State::Streaming { stream, index, stream_failures: 0 })
                }
                Ok(frame) => {
                    let events = self.accept_frame(&frame);
                    (Ok(events), State::Streaming { stream, index: index.max(frame.index), stream_failures })
                }
                Err(err) => {
                    // A stream that never sent its first `{}` was refused (B15: v2.0.x closes instead of a 403);
                    // enough of those in a row and the watcher polls instead.
                    let stream_failures = if stream.saw_heartbeat() { 0 } else { stream_failures.saturating_add(1) };
                    (Err(err), self.backoff(1, stream_failures, Some(index)))
                }
            },
            State::Polling { jobs_index, deployments_index, retry_stream_at } => {
                self.poll(jobs_index, deployments_index, retry_stream_at).await
            }
        }
    }

    /// One round of the blocking-query fallback: wait on both lists, then report a full snapshot if either moved.
    async fn poll(&mut self, jobs_index: u64, deployments_index: u64, retry_stream_at: Instant) -> (StepResult, State) {
        let now = Instant::now();
        if now >= retry_stream_at {
            return (Ok(Vec::new()), State::Listing { failures: 0, stream_failures: 0, resume: None });
        }
        self.limiter.acquire().await;
        let wait = self.config.wait.min(retry_stream_at - now).max(Duration::from_secs(1));
        let jobs_query = BlockingQuery::after(jobs_index.max(1), wait);
        let deployments_query = BlockingQuery::after(deployments_index.max(1), wait);
        // Whichever list wakes first decides; the other is then read without blocking.
        let woke = {
            let jobs = Box::pin(self.source.list_jobs(jobs_query));
            let deployments = Box::pin(self.source.list_deployments(deployments_query));
            match select(jobs, deployments).await {
                Either::Left((jobs, _)) => Either::Left(jobs),
                Either::Right((deployments, _)) => Either::Right(deployments),
            }
        };
        let listed = match woke {
            Either::Left(Ok((jobs, ji))) => {
                self.source.list_deployments(BlockingQuery::now()).await.map(|(d, di)| (jobs, ji, d, di))
            }
            Either::Right(Ok((deployments, di))) => {
                self.source.list_jobs(BlockingQuery::now()).await.map(|(j, ji)| (j, ji, deployments, di))
            }
            Either::Left(Err(err)) | Either::Right(Err(err)) => Err(err),
        };
        match listed {
            Err(err) => (Err(err), self.backoff(1, self.config.fallback_after, None)),
            Ok((jobs, ji, deployments, di)) => {
                let next = State::Polling { jobs_index: ji, deployments_index: di, retry_stream_at };
                // Same indexes: the wait expired, nothing changed (B2). A different index, higher or lower (an index
                // going backwards is a reset, B2), is reported as a full snapshot; a return is no proof of change,
                // but a snapshot is idempotent for the cache.
                if ji == jobs_index && di == deployments_index {
                    (Ok(Vec::new()), next)
                } else {
                    (Ok(self.resynced(jobs, deployments, ji.min(di))), next)
                }
            }
        }
    }

    fn accept_frame(&mut self, frame: &Frame) -> Vec<LiveEvent> {
        let mut events = Vec::new();
        for event in &frame.events {
            match self.reported.accept(event) {
                Ok(Some(live)) => events.push(live),
                Ok(None) => {}
                Err(err) => {
                    // One unreadable payload must not stall the stream; the periodic resync repairs the cache.
                    let err: &(dyn std::error::Error + 'static) = &err;
                    tracing::warn!(topic = %event.topic, key = %event.key, index = event.index, error = err,
                        "skipping an unreadable Nomad event payload");
                }
            }
        }
        events
    }
}

impl<S: LiveSource + 'static> LiveWatcher<S> {
    /// Runs the state machine forever as a stream of batches: each batch is what one step produced (one list, or
    /// the events of one frame), so a consumer can apply a whole Nomad write before acting on any part of it (an
    /// auto-revert writes the failed deployment and the reverted job in one frame). Errors are logged here (and
    /// counted as watch restarts by the transition into backoff).
    pub fn into_stream(self) -> impl Stream<Item = Vec<LiveEvent>> + Send {
        futures::stream::unfold((self, State::initial()), |(mut watcher, mut state)| async move {
            loop {
                let (result, next) = watcher.step(state).await;
                state = next;
                match result {
                    Ok(events) if !events.is_empty() => return Some((events, (watcher, state))),
                    Ok(_) => {}
                    Err(err) => {
                        let err: &(dyn std::error::Error + 'static) = &err;
                        tracing::warn!(error = err, "Nomad live watch failed; relisting after backoff");
                    }
                }
            }
        })
    }
}

/// Watches Nomad's jobs and deployments: a stream of [`LiveEvent`] batches (one per list or frame), starting with a
/// [`LiveEvent::Resynced`].
pub fn watch(
    client: Client,
    config: LiveWatchConfig,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = Vec<LiveEvent>> + Send {
    LiveWatcher::new(client, config, metrics).into_stream()
}
