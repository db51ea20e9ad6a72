//! The live watcher: one list of namespaces, jobs and deployments, then the event stream, as an explicit state
//! machine (STYLE 3). It feeds the live cache the way an informer does.
//!
//! ```text
//!                              subscribed, then listed: Resynced        frame: events
//!  Listing ───────────────▶ Subscribing ─────────────────▶ Streaming ◀──────────────┐
//!   ▲  ▲ ▲ │ (stream failed           │ error                │ │ │  heartbeat: —      │
//!   │  │ │ │  `fallback_after` times  ▼                      │ │ │  namespaces same   │
//!   │  │ │ │  in a row)            Backoff ◀──── drop ───────┘ │ │  or fewer: —       │
//!   │  │ │ ▼                          │                        │ └────────────────────┘
//!   │  │ │ Polling (blocking queries on /v1/jobs + /v1/deployments: Resynced on change)
//!   │  │ └──────── after the delay ───┘                        │
//!   │  └── Polling, after `retry_stream_after`: try the stream again
//!   └──── a namespace the stream does not cover appeared (blocking query on /v1/namespaces, C25)
//! ```
//!
//! Rules from B15/C23: resume with `index = last + 1` and still expect duplicates (handlers are idempotent; events
//! the last relist already reflects, or older than what was reported for the same job or deployment, are dropped by
//! the bounded filter in `seen`); after any reconnect, relist (the stream cannot say what was missed); if the stream
//! keeps failing, fall back to blocking queries (DESIGN §1).
//!
//! Rule from B15/C25: a `namespace=*` stream covers the namespaces that existed when it subscribed. The watcher
//! lists namespaces before subscribing and keeps a blocking query on `GET /v1/namespaces` open beside the stream
//! ([`super::namespaces`]); a new namespace reopens the stream and relists, a removed one only narrows what the
//! stream is known to cover and never reports a job as gone. The polling fallback needs no such query: each
//! `namespace=*` list is evaluated when it runs.
//!
//! **Subscribe first, then list** (issue #7, 2.0). Nomad keeps only the last 100 write batches for the stream, and
//! a subscription asked to start before them silently starts at the oldest one (B15 "no error and no marker"). A
//! list taken *before* subscribing can therefore be separated from the stream by a gap no one sees: under load
//! (10 000 apps starting) more than 100 batches pass while 10 000 jobs are listed, a deployment's `successful`
//! update falls in the gap, and its app stays `Progressing` forever. Once subscribed, the stream holds every batch
//! from its start on (a reader that falls behind is cut off, and relists), so a list taken *after* subscribing
//! leaves no gap; stream events the list already covers are dropped (at or below the lists' indexes, `seen`). The
//! order of a relist is therefore: namespaces (so the stream covers at least those), subscribe, jobs and
//! deployments (reading the stream meanwhile).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use futures::future::{Either, select};
use tokio::time::Instant;

use super::client::Client;
use super::events::{EventStream, SILENCE_LIMIT};
use super::namespaces::{Change, Covered, ListResult, Namespace, NamespaceWatch, PendingList, next_query};
use super::seen::Reported;
use super::types::{Deployment, Frame, Job, JobStub};
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
    /// `GET /v1/namespaces`, blocking per `query`: the namespaces the token sees.
    fn list_namespaces(
        &self,
        query: BlockingQuery,
    ) -> impl Future<Output = Result<(Vec<Namespace>, u64), Error>> + Send;
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

    fn list_namespaces(
        &self,
        query: BlockingQuery,
    ) -> impl Future<Output = Result<(Vec<Namespace>, u64), Error>> + Send {
        Client::list_namespaces(self, query)
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

    fn list_namespaces(
        &self,
        query: BlockingQuery,
    ) -> impl Future<Output = Result<(Vec<Namespace>, u64), Error>> + Send {
        T::list_namespaces(self, query)
    }
}

/// Settings of the live watcher.
#[derive(Clone, Debug)]
pub struct LiveWatchConfig {
    /// Server-side wait of the fallback blocking queries and of the namespace query beside the stream; Nomad clamps
    /// it to 5 min (C3).
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
    /// Everything, from a list: replace the cache's contents. A job or deployment absent here is gone only if
    /// its namespace is in `namespaces`; one in a namespace the lists did not cover (deleted, or no longer visible
    /// to the token) is unknown, not proven gone.
    Resynced {
        /// Every job stub (with `Meta`).
        jobs: Vec<JobStub>,
        /// Every deployment.
        deployments: Vec<Deployment>,
        /// The lower of the two lists' `X-Nomad-Index`.
        index: u64,
        /// The namespaces the token could see when the lists were read: absence is proof only inside these.
        namespaces: BTreeSet<String>,
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
        /// The namespaces listed before subscribing: the stream will cover at least these.
        namespaces: Covered,
    },
    /// Reading frames, with a blocking query on the namespace list beside them.
    Streaming {
        /// The open stream.
        stream: EventStream,
        /// Last frame index seen.
        index: u64,
        /// As in `Listing`; reset by the first heartbeat.
        stream_failures: u32,
        /// What the stream covers, and the namespace list in flight.
        namespaces: NamespaceWatch,
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

/// One relist: both lists and their indexes.
struct Listed {
    jobs: Vec<JobStub>,
    jobs_index: u64,
    deployments: Vec<Deployment>,
    deployments_index: u64,
}

impl<S: LiveSource + Clone + 'static> LiveWatcher<S> {
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
    async fn list_both(&self, jobs: BlockingQuery, deployments: BlockingQuery) -> Result<Listed, Error> {
        let (jobs, jobs_index) = self.source.list_jobs(jobs).await?;
        let (deployments, deployments_index) = self.source.list_deployments(deployments).await?;
        Ok(Listed { jobs, jobs_index, deployments, deployments_index })
    }

    /// Lists namespaces without blocking.
    async fn list_namespaces_now(&self) -> Result<Covered, Error> {
        let (list, index) = self.source.list_namespaces(BlockingQuery::now()).await?;
        Ok(Covered::from_list(&list, index))
    }

    fn resynced(&mut self, listed: Listed, namespaces: &Covered) -> Vec<LiveEvent> {
        let Listed { jobs, jobs_index, deployments, deployments_index } = listed;
        // Everything up to each list's index is in that list: replays at or below it are dropped (seen.rs).
        self.reported.reset(jobs_index, deployments_index);
        let index = jobs_index.min(deployments_index);
        vec![LiveEvent::Resynced { jobs, deployments, index, namespaces: namespaces.names.clone() }]
    }

    /// The blocking query on the namespace list that follows a list at `covered.index`, after `delay`.
    fn namespace_query(&self, covered: &Covered, delay: Duration) -> PendingList {
        let source = self.source.clone();
        let query = next_query(covered.index, self.config.wait);
        let list = async move { source.list_namespaces(query).await };
        if delay.is_zero() { PendingList::new(list) } else { PendingList::after(delay, list) }
    }

    /// Runs one transition.
    pub async fn step(&mut self, state: State) -> (StepResult, State) {
        match state {
            State::Backoff { failures, until, stream_failures, resume } => {
                tokio::time::sleep_until(until).await;
                (Ok(Vec::new()), State::Listing { failures, stream_failures, resume })
            }
            State::Listing { failures, stream_failures, resume } if stream_failures < self.config.fallback_after => {
                // Namespaces first (the stream then covers at least these), then subscribe; the lists follow in
                // `Subscribing` (module doc). Resume from the last frame seen, or from the oldest buffered batch
                // (B15).
                self.limiter.acquire().await;
                match self.list_namespaces_now().await {
                    Err(err) => (Err(err), self.backoff(failures.saturating_add(1), stream_failures, resume)),
                    Ok(namespaces) => {
                        let index = resume.unwrap_or(0);
                        (Ok(Vec::new()), State::Subscribing { index, failures, stream_failures, namespaces })
                    }
                }
            }
            State::Listing { failures, stream_failures, resume } => {
                self.limiter.acquire().await;
                // The stream keeps failing: poll. Namespaces after the lists: a namespace in the set existed while
                // they ran (or was created just after, with no job the cache knew), so absence from them is proof
                // only inside the set.
                let listed = match self.list_both(BlockingQuery::now(), BlockingQuery::now()).await {
                    Ok(listed) => self.list_namespaces_now().await.map(|namespaces| (namespaces, listed)),
                    Err(err) => Err(err),
                };
                match listed {
                    Err(err) => (Err(err), self.backoff(failures.saturating_add(1), stream_failures, resume)),
                    Ok((namespaces, listed)) => {
                        let (jobs_index, deployments_index) = (listed.jobs_index, listed.deployments_index);
                        let events = self.resynced(listed, &namespaces);
                        let next = State::Polling {
                            jobs_index,
                            deployments_index,
                            retry_stream_at: Instant::now() + self.config.retry_stream_after,
                        };
                        (Ok(events), next)
                    }
                }
            }
            State::Subscribing { index, failures, stream_failures, namespaces } => {
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
                    Ok(listed) => {
                        // Events the lists already cover are dropped by `Reported` (at or below their indexes).
                        let floor = listed.jobs_index.min(listed.deployments_index);
                        let mut events = self.resynced(listed, &namespaces);
                        let mut last = index.max(floor);
                        for frame in &early {
                            events.extend(self.accept_frame(frame));
                            last = last.max(frame.index);
                        }
                        let pending = self.namespace_query(&namespaces, Duration::ZERO);
                        let namespaces = NamespaceWatch { covered: namespaces, failures: 0, pending };
                        (Ok(events), State::Streaming { stream, index: last, stream_failures, namespaces })
                    }
                }
            }
            State::Streaming { mut stream, index, stream_failures, mut namespaces } => {
                // Frames first when both are ready; the namespace query stays in flight across frames.
                let woke = match select(Box::pin(stream.next_frame()), &mut namespaces.pending).await {
                    Either::Left((frame, _)) => Either::Left(frame),
                    Either::Right((listed, _)) => Either::Right(listed),
                };
                match woke {
                    Either::Left(Ok(frame)) if frame.is_heartbeat() => {
                        (Ok(Vec::new()), State::Streaming { stream, index, stream_failures: 0, namespaces })
                    }
                    Either::Left(Ok(frame)) => {
                        let events = self.accept_frame(&frame);
                        let index = index.max(frame.index);
                        (Ok(events), State::Streaming { stream, index, stream_failures, namespaces })
                    }
                    Either::Left(Err(err)) => {
                        // A stream that never sent its first `{}` was refused (B15: v2.0.x closes instead of a
                        // 403); enough of those in a row and the watcher polls instead.
                        let stream_failures =
                            if stream.saw_heartbeat() { 0 } else { stream_failures.saturating_add(1) };
                        (Err(err), self.backoff(1, stream_failures, Some(index)))
                    }
                    Either::Right(listed) => self.namespaces_listed(listed, stream, index, stream_failures, namespaces),
                }
            }
            State::Polling { jobs_index, deployments_index, retry_stream_at } => {
                self.poll(jobs_index, deployments_index, retry_stream_at).await
            }
        }
    }

    /// The namespace query beside the stream returned: reopen on a new namespace, otherwise keep streaming.
    fn namespaces_listed(
        &mut self,
        listed: ListResult,
        stream: EventStream,
        index: u64,
        stream_failures: u32,
        mut watch: NamespaceWatch,
    ) -> (StepResult, State) {
        match listed {
            Err(err) => {
                // The stream itself is fine: retry the list alone, with backoff, and keep reading frames.
                watch.failures = watch.failures.saturating_add(1);
                let delay = self.config.backoff.delay(watch.failures, &mut rand::rng());
                let err: &(dyn std::error::Error + 'static) = &err;
                tracing::warn!(error = err, retry_in = ?delay, "listing Nomad namespaces failed; the event stream may miss a new namespace until it succeeds");
                watch.pending = self.namespace_query(&watch.covered, delay);
                (Ok(Vec::new()), State::Streaming { stream, index, stream_failures, namespaces: watch })
            }
            Ok((list, list_index)) => {
                let newer = Covered::from_list(&list, list_index);
                match watch.covered.compare(&newer) {
                    Change::Added(added) => {
                        // C25: the open stream will never carry these namespaces' events. Reopen it, relisting
                        // first (jobs may already exist there); no backoff, since nothing failed.
                        tracing::info!(namespaces = ?added, "new Nomad namespace; reopening the event stream");
                        drop(stream);
                        (Ok(Vec::new()), State::Listing { failures: 0, stream_failures, resume: Some(index) })
                    }
                    change @ (Change::Same | Change::Removed(_)) => {
                        if let Change::Removed(removed) = change {
                            // Deleted (Nomad requires its jobs to be dead first) or hidden from this token: no job
                            // is reported gone; the stream just covers less.
                            tracing::info!(namespaces = ?removed, "Nomad namespace no longer listed; its jobs are kept until a list proves them gone");
                        }
                        watch.failures = 0;
                        watch.pending = self.namespace_query(&newer, Duration::ZERO);
                        watch.covered = newer;
                        (Ok(Vec::new()), State::Streaming { stream, index, stream_failures, namespaces: watch })
                    }
                }
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
            Either::Left(Ok((jobs, ji))) => self
                .source
                .list_deployments(BlockingQuery::now())
                .await
                .map(|(d, di)| Listed { jobs, jobs_index: ji, deployments: d, deployments_index: di }),
            Either::Right(Ok((deployments, di))) => self
                .source
                .list_jobs(BlockingQuery::now())
                .await
                .map(|(j, ji)| Listed { jobs: j, jobs_index: ji, deployments, deployments_index: di }),
            Either::Left(Err(err)) | Either::Right(Err(err)) => Err(err),
        };
        match listed {
            Err(err) => (Err(err), self.backoff(1, self.config.fallback_after, None)),
            Ok(listed) => {
                let (ji, di) = (listed.jobs_index, listed.deployments_index);
                let next = State::Polling { jobs_index: ji, deployments_index: di, retry_stream_at };
                // Same indexes: the wait expired, nothing changed (B2). A different index, higher or lower (an index
                // going backwards is a reset, B2), is reported as a full snapshot; a return is no proof of change,
                // but a snapshot is idempotent for the cache. The namespaces it covered are read after the lists:
                // a namespace listed here existed when they ran, unless created in between (then it has no jobs
                // that a later round would not report).
                if ji == jobs_index && di == deployments_index {
                    return (Ok(Vec::new()), next);
                }
                match self.list_namespaces_now().await {
                    Ok(namespaces) => (Ok(self.resynced(listed, &namespaces)), next),
                    Err(err) => (Err(err), self.backoff(1, self.config.fallback_after, None)),
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
        self.reported.end_frame(frame.index);
        events
    }
}

impl<S: LiveSource + Clone + 'static> LiveWatcher<S> {
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
