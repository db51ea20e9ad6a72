//! The measurement stage (DESIGN §4: "analysis is I/O, so it runs as its own stage"; §5): Prometheus queries run
//! here, off the reconcile path, and what they answered is kept in a store ([`Measurements`]) that decisions read
//! like any other state, so `decide` stays pure. One writer (the poller that runs [`measure`]), cheap readers.
//!
//! Shared by rollout analysis and autoscaling (issues #8 and #11). What this module gives them:
//! - [`measure`]: one round of queries. Identical queries asked in a round (same address, query, timeout and
//!   headers — e.g. 1 000 apps autoscaled on one shared query) run once, with bounded concurrency.
//! - [`Measured`]: what a query answered, as data: a number, a [`Shape`] that is not one number, or a failure
//!   (kind, message, retryable) — never an error that could stop a round.
//! - [`Schedule`]: which app is due for its next evaluation, with per-app intervals; pure, time passed in.
//!
//! The poller task that drives them from the records' policies and wakes the apps it measured is wired in
//! `runtime.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::time::Instant;

use crate::app::AppKey;
use crate::prometheus::{Client, InstantQuery, QueryError, QueryResult, Shape};

/// What the measurement stage needs of Prometheus: one instant query.
pub trait Querier: Send + Sync + 'static {
    /// Runs `query`.
    fn query(&self, query: &InstantQuery<'_>) -> impl Future<Output = Result<QueryResult, QueryError>> + Send;
}

impl Querier for Client {
    async fn query(&self, query: &InstantQuery<'_>) -> Result<QueryResult, QueryError> {
        Client::query(self, query).await
    }
}

/// One query to run: where, what (already rendered from its template), how long to wait, with which headers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Request {
    /// The Prometheus base URL.
    pub address: String,
    /// The rendered PromQL.
    pub query: String,
    /// The query's timeout.
    pub timeout: Duration,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
}

/// What one query answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Measured {
    /// Exactly one number (may be infinite: judging that is the caller's policy).
    Value(f64),
    /// An answer that is not one number: no series, several, NaN.
    NotANumber(Shape),
    /// No answer: an error, not a measurement.
    Failed {
        /// A bounded kind ([`QueryError::kind`]), for metrics.
        kind: &'static str,
        /// The error and its causes, for status.
        message: String,
        /// Whether asking again may answer (an unreachable server) or not (a query Prometheus refuses).
        retryable: bool,
    },
}

impl Measured {
    /// Classifies a query's outcome.
    pub fn from_result(result: Result<QueryResult, QueryError>) -> Measured {
        match result {
            Ok(answer) => match answer.single() {
                Ok(v) => Measured::Value(v),
                Err(shape) => Measured::NotANumber(shape),
            },
            Err(e) => Measured::Failed { kind: e.kind(), message: crate::error_chain(&e), retryable: e.is_retryable() },
        }
    }
}

/// One measurement, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// The query as run (status keeps the resolved query).
    pub query: String,
    /// What it answered.
    pub value: Measured,
    /// When the round ran (wall clock, for status).
    pub at: SystemTime,
}

/// One question of a round: the app, the name of its check (or analysis), and the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// The app.
    pub app: AppKey,
    /// The check's name, unique within the app.
    pub check: String,
    /// The query.
    pub request: Request,
}

/// What a round did, for metrics and the benchmark.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundStats {
    /// Questions asked.
    pub asked: usize,
    /// Queries actually sent (after deduplication).
    pub sent: usize,
}

/// Runs one round: every distinct request once, at most `concurrency` at a time; every ask gets the answer of its
/// request. Returns the answers per ask, in the order asked, and the round's stats.
pub async fn measure<Q: Querier>(
    querier: &Q,
    asks: Vec<Ask>,
    concurrency: usize,
    now: SystemTime,
) -> (Vec<(Ask, Measurement)>, RoundStats) {
    let distinct: BTreeSet<Request> = asks.iter().map(|a| a.request.clone()).collect();
    let stats = RoundStats { asked: asks.len(), sent: distinct.len() };
    let answered: BTreeMap<Request, Measured> = futures::stream::iter(distinct)
        .map(|r| async move {
            let q = InstantQuery { address: &r.address, query: &r.query, timeout: r.timeout, headers: &r.headers };
            let measured = Measured::from_result(querier.query(&q).await);
            (r, measured)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let results = asks
        .iter()
        .map(|ask| {
            let value = answered.get(&ask.request).cloned().unwrap_or(Measured::Failed {
                kind: "not_run",
                message: "the query was not run".into(),
                retryable: true,
            });
            (ask.clone(), Measurement { query: ask.request.query.clone(), value, at: now })
        })
        .collect();
    (results, stats)
}

type ByApp = HashMap<AppKey, BTreeMap<String, Measurement>>;

/// Measurements by app and check: the read side.
#[derive(Clone, Debug, Default)]
pub struct Measurements {
    inner: Arc<RwLock<ByApp>>,
}

/// Measurements by app and check: the write side, owned by the poller.
#[derive(Debug)]
pub struct MeasurementsWriter {
    inner: Arc<RwLock<ByApp>>,
}

/// A measurements store: its one writer and a reader.
pub fn measurements() -> (MeasurementsWriter, Measurements) {
    let inner = Arc::new(RwLock::new(HashMap::new()));
    (MeasurementsWriter { inner: inner.clone() }, Measurements { inner })
}

impl Measurements {
    /// The latest measurement of each check of `app`.
    pub fn get(&self, app: &AppKey) -> BTreeMap<String, Measurement> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).get(app).cloned().unwrap_or_default()
    }
}

impl MeasurementsWriter {
    /// Stores a round's answers; returns the apps measured (to wake).
    pub fn record(&mut self, answers: Vec<(Ask, Measurement)>) -> BTreeSet<AppKey> {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let mut woken = BTreeSet::new();
        for (ask, m) in answers {
            inner.entry(ask.app.clone()).or_default().insert(ask.check, m);
            woken.insert(ask.app);
        }
        woken
    }

    /// Forgets `app` (no longer autoscaled). A check removed from a record keeps its last measurement until
    /// then; `decide` looks up only the checks the policy names.
    pub fn forget(&mut self, app: &AppKey) {
        self.inner.write().unwrap_or_else(|p| p.into_inner()).remove(app);
    }
}

/// When each app is next due, with its interval. Pure: time is passed in.
#[derive(Debug, Default)]
pub struct Schedule {
    queue: BTreeSet<(Instant, AppKey)>,
    apps: HashMap<AppKey, (Instant, Duration)>,
}

impl Schedule {
    /// Measures `app` every `every` from now on. A new app is first due at a phase of its own within one interval
    /// (a hash of its key), so apps with the same interval are spread over it instead of all querying Prometheus in
    /// one burst; an existing app keeps its next time unless its interval changed.
    pub fn set(&mut self, app: AppKey, every: Duration, now: Instant) {
        match self.apps.get(&app) {
            Some((_, interval)) if *interval == every => {}
            Some((at, _)) => {
                let at = *at;
                self.queue.remove(&(at, app.clone()));
                let next = at.min(now + every);
                self.queue.insert((next, app.clone()));
                self.apps.insert(app, (next, every));
            }
            None => {
                let first = now + phase(&app, every);
                self.queue.insert((first, app.clone()));
                self.apps.insert(app, (first, every));
            }
        }
    }

    /// Stops measuring `app`.
    pub fn remove(&mut self, app: &AppKey) {
        if let Some((at, _)) = self.apps.remove(app) {
            self.queue.remove(&(at, app.clone()));
        }
    }

    /// The apps due at `now`, each rescheduled one interval later (from now: a round that ran late does not
    /// bunch the next ones).
    pub fn due(&mut self, now: Instant) -> Vec<AppKey> {
        let mut due = Vec::new();
        while let Some((at, app)) = self.queue.first().cloned() {
            if at > now {
                break;
            }
            self.queue.remove(&(at, app.clone()));
            if let Some(entry) = self.apps.get_mut(&app) {
                entry.0 = now + entry.1;
                self.queue.insert((entry.0, app.clone()));
            }
            due.push(app);
        }
        due
    }

    /// When the next app is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// The apps scheduled.
    pub fn apps(&self) -> impl Iterator<Item = &AppKey> {
        self.apps.keys()
    }

    /// How many apps are scheduled.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    /// True when no app is scheduled.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
}

/// A stable offset in `[0, every)` for `app` (FNV-1a of its key).
fn phase(app: &AppKey, every: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in app.namespace.bytes().chain([b'/']).chain(app.name.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let millis = every.as_millis().max(1) as u64;
    Duration::from_millis(h % millis)
}

#[cfg(test)]
#[path = "measure_tests.rs"]
mod tests;
