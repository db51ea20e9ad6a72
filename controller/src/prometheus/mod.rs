//! Reading Prometheus: an instant-query client ([`Client`]) and query templates ([`QueryTemplate`]), shared by
//! rollout analysis and autoscaling. A measurement that could not be taken is an error ([`QueryError`]), never a
//! number; a result that is not exactly one number (no series, several, NaN) is a [`Shape`] the caller's policy
//! judges (`onEmpty`, `onNaN`, `onError`), never a crash.

mod client;
mod template;

pub use client::{Client, InstantQuery, QueryError, QueryResult, Series, Shape};
pub use template::{QueryTemplate, ResolveError, RolloutVars, Scope, TemplateError, Var, Vars, resolve};
