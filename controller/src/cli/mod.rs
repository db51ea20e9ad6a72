//! The command line: `drover run` (the controller), `drover dev` (simulator + controller + live view) and the
//! commands for people (`apply`, `get`, `describe`, `diff`, `delete`, `validate`, `wait`, `schema`, and the rollout
//! controls `promote`, `abort`, `retry`, `pause`, `resume`, `restart`), and `sync` (GitOps).
//!
//! Errors reach `main` as `anyhow` chains and are printed on one line with a non-zero exit.

mod apply;
mod control;
mod diff;
mod rollout_view;
mod show;
mod sync;
mod wait;

pub mod dev;
pub mod run;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{ConsulConfig, ConsulFlags, NomadConfig, NomadFlags};
use crate::metrics::Metrics;
use crate::rollout::ControlAction;

/// A reconciling operator for HashiCorp Nomad, driven by records in Consul KV.
#[derive(Parser, Debug)]
#[command(name = "drover", version, about, propagate_version = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller against Consul and Nomad.
    Run(run::RunArgs),
    /// Run the embedded simulator with the example apps and the controller, with a live view (no cluster needed).
    Dev(dev::DevArgs),
    /// Validate records and write them to Consul KV (file, directory or `-` for stdin; multi-document YAML).
    Apply(apply::ApplyArgs),
    /// List apps with their phase.
    Get(show::GetArgs),
    /// Show one app's status, conditions, deployment and history.
    Describe(show::DescribeArgs),
    /// Show what applying a record would change in Nomad (Nomad's plan diff).
    Diff(diff::DiffArgs),
    /// Delete an app's record (its deletionPolicy then applies to the job).
    Delete(show::DeleteArgs),
    /// Validate records without writing anything.
    Validate(apply::ValidateArgs),
    /// Wait until the app's current generation is Healthy (exit 0), ends Degraded/Failed/Invalid (exit 1), or the
    /// timeout passes (exit 2), printing phase changes. For CI pipelines.
    Wait(wait::WaitArgs),
    /// Write the JSON Schemas of the records.
    Schema(SchemaArgs),
    /// End the current rollout step (a pause, a manual gate, an inconclusive analysis) and go on; with --full,
    /// skip every remaining step and promote now. Every control command exits 3, writing nothing, when the
    /// control would do nothing (it says why).
    Promote(control::PromoteArgs),
    /// Stop the current rollout: Nomad reverts to the stable version and the app ends Degraded (Aborted).
    Abort(control::ControlArgs),
    /// Roll out again a spec whose rollout failed (it is otherwise not registered again until the record changes).
    Retry(control::ControlArgs),
    /// Hold the current rollout where it is (phase Paused, the Nomad deployment paused) until `drover resume`.
    Pause(control::ControlArgs),
    /// Go on with a rollout held by `drover pause`.
    Resume(control::ControlArgs),
    /// Start the steps of the rollout in progress again from the first.
    Restart(control::ControlArgs),
    /// GitOps: make the records in Consul match a directory or a git repository (plan, CAS-guarded writes,
    /// optional prune, dry run, --watch with a webhook), or show the outcome of past syncs (`sync status`).
    Sync(sync::SyncArgs),
}

/// Where Consul is (flags win over `CONSUL_*` variables).
#[derive(Args, Debug, Clone, Default)]
pub struct ConsulArgs {
    /// Consul HTTP address [env: CONSUL_HTTP_ADDR; default http://127.0.0.1:8500].
    #[arg(long)]
    pub consul_addr: Option<String>,
    /// Consul ACL token [env: CONSUL_HTTP_TOKEN].
    #[arg(long)]
    pub consul_token: Option<crate::config::Secret>,
    /// File holding the Consul ACL token, re-read when it changes [env: CONSUL_HTTP_TOKEN_FILE].
    #[arg(long)]
    pub consul_token_file: Option<String>,
    /// CA certificate for Consul's TLS [env: CONSUL_CACERT].
    #[arg(long)]
    pub consul_cacert: Option<String>,
    /// Client certificate for Consul mTLS [env: CONSUL_CLIENT_CERT].
    #[arg(long)]
    pub consul_client_cert: Option<String>,
    /// Client key for Consul mTLS [env: CONSUL_CLIENT_KEY].
    #[arg(long)]
    pub consul_client_key: Option<String>,
}

/// Where Nomad is (flags win over `NOMAD_*` variables).
#[derive(Args, Debug, Clone, Default)]
pub struct NomadArgs {
    /// Nomad HTTP address [env: NOMAD_ADDR; default http://127.0.0.1:4646].
    #[arg(long)]
    pub nomad_addr: Option<String>,
    /// Nomad ACL token [env: NOMAD_TOKEN].
    #[arg(long)]
    pub nomad_token: Option<crate::config::Secret>,
    /// File holding the Nomad ACL token, re-read when it changes [env: NOMAD_TOKEN_FILE].
    #[arg(long)]
    pub nomad_token_file: Option<String>,
    /// Nomad region [env: NOMAD_REGION].
    #[arg(long)]
    pub nomad_region: Option<String>,
    /// CA certificate for Nomad's TLS [env: NOMAD_CACERT].
    #[arg(long)]
    pub nomad_cacert: Option<String>,
    /// Client certificate for Nomad mTLS [env: NOMAD_CLIENT_CERT].
    #[arg(long)]
    pub nomad_client_cert: Option<String>,
    /// Client key for Nomad mTLS [env: NOMAD_CLIENT_KEY].
    #[arg(long)]
    pub nomad_client_key: Option<String>,
}

/// The KV prefix shared by every command.
#[derive(Args, Debug, Clone)]
pub struct PrefixArg {
    /// KV prefix: records at <prefix>/apps/<ns>/<name>, status at <prefix>/status/<ns>/<name>.
    #[arg(long, default_value = "drover")]
    pub prefix: String,
}

/// `drover schema`.
#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Directory to write the schemas to.
    #[arg(long, default_value = "crds")]
    pub dir: PathBuf,
}

/// Output format of `get` and `describe`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// For people.
    #[default]
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// The notifications file at `path` (`--notifications` of `run` and `sync --watch`), checked, with the default
/// delivery settings.
pub(crate) fn notifications(path: &std::path::Path) -> anyhow::Result<crate::notify::Notifications> {
    let targets = crate::notify::load(path, &env_lookup)?;
    Ok(crate::notify::Notifications::new(targets, crate::notify::DeliveryConfig::default())?)
}

/// The process environment, read through one seam (STYLE item 10).
pub fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl ConsulArgs {
    /// Resolves flags and `CONSUL_*` variables into a client.
    pub fn client(&self, metrics: Arc<Metrics>) -> anyhow::Result<crate::consul::Client> {
        let config = self.config()?;
        crate::consul::Client::new(&config, metrics).context("cannot build the Consul client")
    }

    /// Resolves flags and `CONSUL_*` variables.
    pub fn config(&self) -> anyhow::Result<ConsulConfig> {
        let flags = ConsulFlags {
            addr: self.consul_addr.clone(),
            token: self.consul_token.clone(),
            token_file: self.consul_token_file.clone(),
            ca_cert: self.consul_cacert.clone(),
            client_cert: self.consul_client_cert.clone(),
            client_key: self.consul_client_key.clone(),
        };
        Ok(ConsulConfig::resolve(&flags, &env_lookup)?)
    }
}

impl NomadArgs {
    /// Resolves flags and `NOMAD_*` variables into a client.
    pub fn client(&self, metrics: Arc<Metrics>) -> anyhow::Result<crate::nomad::Client> {
        let config = self.config()?;
        crate::nomad::Client::new(&config, metrics).context("cannot build the Nomad client")
    }

    /// Resolves flags and `NOMAD_*` variables.
    pub fn config(&self) -> anyhow::Result<NomadConfig> {
        let flags = NomadFlags {
            addr: self.nomad_addr.clone(),
            token: self.nomad_token.clone(),
            token_file: self.nomad_token_file.clone(),
            region: self.nomad_region.clone(),
            ca_cert: self.nomad_cacert.clone(),
            client_cert: self.nomad_client_cert.clone(),
            client_key: self.nomad_client_key.clone(),
        };
        Ok(NomadConfig::resolve(&flags, &env_lookup)?)
    }
}

/// Runs a parsed command line and returns the process's exit code (0 unless the command says otherwise, as
/// `drover wait` and the control commands do).
///
/// # Errors
/// Whatever the command met, as one chain for `main` to print.
pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let done = match cli.command {
        Command::Wait(args) => return wait::wait(args).await,
        Command::Promote(args) => {
            let action = if args.full { ControlAction::PromoteFull } else { ControlAction::Promote };
            return control::run(action, args.common).await;
        }
        Command::Abort(args) => return control::run(ControlAction::Abort, args).await,
        Command::Retry(args) => return control::run(ControlAction::Retry, args).await,
        Command::Pause(args) => return control::run(ControlAction::Pause, args).await,
        Command::Resume(args) => return control::run(ControlAction::Resume, args).await,
        Command::Restart(args) => return control::run(ControlAction::Restart, args).await,
        Command::Sync(args) => return sync::sync(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Dev(args) => dev::dev(args).await,
        Command::Apply(args) => apply::apply(args).await,
        Command::Get(args) => show::get(args).await,
        Command::Describe(args) => show::describe(args).await,
        Command::Diff(args) => diff::diff(args).await,
        Command::Delete(args) => show::delete(args).await,
        Command::Validate(args) => apply::validate(args),
        Command::Schema(args) => {
            crate::app::write_schemas(&args.dir)
                .with_context(|| format!("cannot write schemas to {}", args.dir.display()))?;
            println!("wrote {} schemas to {}", crate::app::schemas().len(), args.dir.display());
            Ok(())
        }
    };
    done.map(|()| 0)
}
