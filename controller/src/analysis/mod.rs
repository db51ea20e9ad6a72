//! The analysis stage (DESIGN §4, issue #8): analysis is I/O, so it runs on its own, off the reconcile path. A
//! poller ([`poller`]) follows the statuses, measures the `Running` analysis runs (and webhook steps) of each app's
//! current rollout on schedule through a [`provider::Provider`] (Prometheus, a JSON value over HTTP, a webhook
//! call), judges each measurement ([`crate::rollout::judge`], the one verdict), keeps the runs in the [`AnalysisRuns`] store and wakes the app;
//! `decide` reads that store like any other state and never measures.
//!
//! # Layout
//! - [`store`]: [`AnalysisRuns`], one writer (the poller), cheap readers;
//! - [`resolve`]: a run in status → the calls that measure it (template, step `args`, versions);
//! - [`provider`]: the calls (Prometheus instant query, web metric with a small JSON path, webhook);
//! - [`poller`]: the schedule, the bounded concurrency, the fold, the task.

pub mod poller;
pub mod provider;
pub mod resolve;
pub mod store;

pub use poller::{AnalysisStage, Poller, PollerConfig};
pub use provider::{HttpProvider, JsonPath, Provider, ProviderError, Reply, Request};
pub use resolve::{RunSpec, Specs};
pub use store::{AnalysisRuns, AnalysisRunsWriter, analysis_runs};
