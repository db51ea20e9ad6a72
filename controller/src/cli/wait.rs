//! `drover wait APP`: blocks until the record's current generation has rolled out, for CI pipelines. Exit 0 when it
//! is `Healthy`; 1 when it ended `Degraded`, `Failed` or `Invalid` (or is suspended or being deleted: nothing will
//! roll out); 2 when the timeout passes first. Phase changes are printed as they happen. It follows the status key
//! with Consul blocking queries, so it costs one request per change, not a poll.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::time::Instant;

use super::{ConsulArgs, PrefixArg};
use crate::consul::BlockingQuery;
use crate::metrics::Metrics;
use crate::status::{AppStatus, ConditionType, Phase};

/// Exit code: the generation is `Healthy`.
pub const EXIT_HEALTHY: u8 = 0;
/// Exit code: the generation ended without becoming healthy.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the timeout passed first.
pub const EXIT_TIMEOUT: u8 = 2;

/// How long one blocking query may wait (well under Consul's 10-minute cap).
const MAX_BLOCK: Duration = Duration::from_secs(300);

/// `drover wait`.
#[derive(Args, Debug)]
pub struct WaitArgs {
    /// The app (`name` or `namespace/name`).
    pub app: String,
    /// Give up after this long (exit 2), e.g. `90s`, `10m`.
    #[arg(long, default_value = "10m", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Consul connection.
    #[command(flatten)]
    pub consul: ConsulArgs,
    /// KV prefix.
    #[command(flatten)]
    pub prefix: PrefixArg,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("--timeout {text:?}: {e}"))?;
    if d.is_zero() || d > Duration::from_secs(7 * 24 * 3600) {
        return Err(format!("--timeout {text:?}: must be more than 0 and at most 7 days"));
    }
    Ok(d)
}

/// Where a status stands for the generation being waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not there yet (not observed, or still rolling out, or paused at a gate a person will open).
    Waiting,
    /// Healthy at (or after) the generation.
    Healthy,
    /// Ended, or will not roll out; the phase says which.
    Ended(Phase),
}

/// The verdict on `status` for record generation `generation`. A newer generation than the one waited for
/// supersedes it and is judged instead.
pub fn verdict(generation: u64, status: Option<&AppStatus>) -> Verdict {
    let Some(s) = status.filter(|s| s.observed_generation >= generation) else { return Verdict::Waiting };
    match s.phase {
        Phase::Healthy => Verdict::Healthy,
        Phase::Degraded | Phase::Failed | Phase::Invalid | Phase::Suspended | Phase::Deleting => {
            Verdict::Ended(s.phase)
        }
        Phase::Pending | Phase::Progressing | Phase::Paused => Verdict::Waiting,
    }
}

/// One line for a phase change: `Progressing (DeploymentRunning): deployment 1a2b3c4d …`.
fn describe(generation: u64, status: Option<&AppStatus>) -> String {
    match status {
        None => format!("waiting for Drover to observe generation {generation}"),
        Some(s) if s.observed_generation < generation => {
            format!("waiting for Drover to observe generation {generation} (status is at {})", s.observed_generation)
        }
        Some(s) => match s.condition(ConditionType::Ready) {
            Some(c) => format!("{} ({}): {}", s.phase.as_str(), c.reason, c.message),
            None => s.phase.as_str().to_string(),
        },
    }
}

/// Runs `drover wait`; returns the exit code.
///
/// # Errors
/// The app does not exist, or Consul cannot be reached before the timeout.
pub async fn wait(args: WaitArgs) -> anyhow::Result<u8> {
    let consul = args.consul.client(Arc::new(Metrics::new()))?;
    let key = super::show::parse_key(&args.app)?;
    let prefix = &args.prefix.prefix;
    let deadline = Instant::now() + args.timeout;
    let record = consul.get(&key.app_kv_key(prefix)).await.context("cannot read the record")?;
    let Some(record) = record else { bail!("app {key} not found (no record at {})", key.app_kv_key(prefix)) };
    let generation = record.modify_index;
    let status_key = key.status_kv_key(prefix);
    let mut index = 0;
    let mut last = String::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let query = BlockingQuery::after(index, remaining.min(MAX_BLOCK));
        let read = match tokio::time::timeout(remaining, consul.get_blocking(&status_key, query, false)).await {
            Err(_) => {
                println!("{key}: timed out after {}; {last}", humantime::format_duration(args.timeout));
                return Ok(EXIT_TIMEOUT);
            }
            Ok(Err(err)) if Instant::now() < deadline && err.is_retryable() => {
                eprintln!("{key}: {}; retrying", crate::error_chain(&err));
                tokio::time::sleep(Duration::from_secs(1).min(remaining)).await;
                continue;
            }
            Ok(Err(err)) => return Err(err).context("cannot read the status"),
            Ok(Ok(read)) => read,
        };
        // An index that went backwards (a restored snapshot) means starting over (contract A2).
        index = if read.index < index { 0 } else { read.index };
        let status: Option<AppStatus> = read.entry.as_ref().and_then(|p| serde_json::from_slice(&p.value).ok());
        let line = describe(generation, status.as_ref());
        if line != last {
            println!("{key}: {line}");
            last = line;
        }
        match verdict(generation, status.as_ref()) {
            Verdict::Waiting => {}
            Verdict::Healthy => return Ok(EXIT_HEALTHY),
            Verdict::Ended(_) => return Ok(EXIT_FAILED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(generation: u64, phase: Phase) -> AppStatus {
        AppStatus { observed_generation: generation, phase, ..AppStatus::default() }
    }

    #[test]
    fn verdict_should_wait_for_the_generation_then_judge_its_phase() {
        assert_eq!(verdict(10, None), Verdict::Waiting);
        assert_eq!(verdict(10, Some(&at(9, Phase::Healthy))), Verdict::Waiting, "an older generation says nothing");
        assert_eq!(verdict(10, Some(&at(10, Phase::Progressing))), Verdict::Waiting);
        assert_eq!(verdict(10, Some(&at(10, Phase::Paused))), Verdict::Waiting, "a gate a person will open");
        assert_eq!(verdict(10, Some(&at(10, Phase::Healthy))), Verdict::Healthy);
        assert_eq!(verdict(10, Some(&at(12, Phase::Healthy))), Verdict::Healthy, "a newer generation supersedes");
        for phase in [Phase::Degraded, Phase::Failed, Phase::Invalid, Phase::Suspended, Phase::Deleting] {
            assert_eq!(verdict(10, Some(&at(10, phase))), Verdict::Ended(phase));
        }
    }

    #[test]
    fn timeout_should_be_bounded() {
        assert!(parse_timeout("90s").is_ok());
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("1000000y").is_err());
    }
}
