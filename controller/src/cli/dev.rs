//! `drover dev`: the embedded default. Starts `drover-sim` in-process on loopback, writes the example apps, runs the
//! controller against it and shows a live view of the apps until Ctrl-C. No cluster, no configuration.
//!
//! The simulator is compiled in only with the `dev` cargo feature (on by default): a production build
//! (`--no-default-features`) does not carry `drover-sim`, and `drover dev` then says how to get it.

use clap::Args;

#[cfg(feature = "dev")]
mod embedded;
#[cfg(feature = "dev")]
pub mod prometheus;

/// The example apps shipped in `manifests/examples/`, embedded so `drover dev` works from any directory.
pub const EXAMPLES: [(&str, &str); 4] = [
    ("web", include_str!("../../../manifests/examples/web.yaml")),
    ("worker", include_str!("../../../manifests/examples/worker.yaml")),
    ("broken", include_str!("../../../manifests/examples/broken.yaml")),
    ("checkout", include_str!("../../../manifests/examples/canary.yaml")),
];

/// The canary example's Prometheus address as written in `manifests/examples/canary.yaml`.
pub const EXAMPLE_PROMETHEUS: &str = "address: http://127.0.0.1:9090";
/// The canary example's smoke-test URL as written: a Consul DNS name that only a real cluster resolves.
pub const EXAMPLE_SMOKE_URL: &str = "url: \"http://checkout-smoke.service.consul:8080/check?version={{ .Version }}\"";

/// The canary example as `drover dev` writes it: its analysis queries dev's Prometheus at `prometheus_url`, and its
/// smoke test asks the simulated Nomad API for the job (`GET /v1/job/:id`, 200 while the job exists), since the
/// example's own smoke URL does not resolve outside a cluster. Everything else is the example as shipped.
pub fn dev_canary(text: &str, prometheus_url: &str, nomad_url: &str) -> String {
    let smoke = format!("url: \"{nomad_url}/v1/job/{{{{ .JobID }}}}?namespace={{{{ .Namespace }}}}\"");
    text.replace(EXAMPLE_PROMETHEUS, &format!("address: {prometheus_url}")).replace(EXAMPLE_SMOKE_URL, &smoke)
}

/// `drover dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// Address for the simulated Consul API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub consul_addr: String,
    /// Address for the simulated Nomad API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub nomad_addr: String,
    /// Address for Drover's /metrics and /api/v1/apps.
    #[arg(long, default_value = "127.0.0.1:9469")]
    pub listen: String,
    /// Real seconds per simulated second (0.001 to 1000); 0.1 makes Nomad's 10s minimum healthy time last one second.
    #[arg(long, default_value_t = 0.1)]
    pub time_scale: f64,
    /// Print the view once per change instead of redrawing the screen (the default when stdout is not a terminal).
    #[arg(long)]
    pub plain: bool,
    /// Where dev's own Prometheus listens. It is started when `prometheus` is on PATH, scrapes the simulator's
    /// `/_sim/metrics` every second, and is what the canary example (`checkout`) queries.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub prometheus_addr: String,
    /// Do not start Prometheus even when it is on PATH (the canary example's analysis then fails with errors).
    #[arg(long)]
    pub no_prometheus: bool,
}

/// What `drover dev` says in a build without the simulator.
pub const FEATURE_OFF: &str = "drover dev needs the embedded simulator, and this drover was built without it \
     (cargo feature `dev`, on by default; this build used --no-default-features). Rebuild with \
     `cargo build -p drover --features dev`, or run `drover-sim` and point `drover run` at it.";

/// `drover dev`: checks the flags, then runs the simulator and the controller, or explains that this build has no
/// simulator.
///
/// # Errors
/// A flag out of range, a port that cannot be bound, a simulator or controller that cannot start, or a build
/// without the `dev` feature.
pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    check_time_scale(args.time_scale)?;
    #[cfg(feature = "dev")]
    {
        embedded::run(args).await
    }
    #[cfg(not(feature = "dev"))]
    {
        Err(anyhow::anyhow!(FEATURE_OFF))
    }
}

/// The fastest `--time-scale`: a thousand simulated seconds per real one, as the simulator's own fast tests run.
pub const MIN_TIME_SCALE: f64 = 0.001;
/// The slowest `--time-scale`. Outside these bounds the simulator's clock arithmetic (`Duration::mul_f64` and
/// `div_f64`) would overflow and panic, and no demo needs Nomad a thousand times slower than real.
pub const MAX_TIME_SCALE: f64 = 1000.0;

/// Checks `--time-scale`, naming the flag and its bounds (NaN and infinities fail the range test too).
fn check_time_scale(scale: f64) -> anyhow::Result<()> {
    if !(MIN_TIME_SCALE..=MAX_TIME_SCALE).contains(&scale) {
        anyhow::bail!("--time-scale must be between {MIN_TIME_SCALE} and {MAX_TIME_SCALE}, got {scale:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_time_scale_should_refuse_values_that_would_overflow_the_clock_naming_the_flag() {
        for bad in [0.0, -1.0, 1e-300, 1e300, f64::NAN, f64::INFINITY] {
            let err = check_time_scale(bad).expect_err("an unusable time scale must be refused");
            assert!(err.to_string().starts_with("--time-scale must be between 0.001 and 1000"), "{bad}: {err}");
        }
        for good in [MIN_TIME_SCALE, 0.1, 1.0, MAX_TIME_SCALE] {
            assert!(check_time_scale(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn dev_canary_should_point_the_example_at_devs_prometheus_and_the_simulated_nomad() {
        let example = EXAMPLES.iter().find(|(name, _)| *name == "checkout").map(|(_, text)| *text).unwrap_or("");
        assert!(example.contains(EXAMPLE_PROMETHEUS), "the example's address moved: update EXAMPLE_PROMETHEUS");
        assert!(example.contains(EXAMPLE_SMOKE_URL), "the example's smoke URL moved: update EXAMPLE_SMOKE_URL");
        let text = dev_canary(example, "http://127.0.0.1:19090", "http://127.0.0.1:4646");
        assert!(text.contains("address: http://127.0.0.1:19090"), "{text}");
        assert!(
            text.contains(r#"url: "http://127.0.0.1:4646/v1/job/{{ .JobID }}?namespace={{ .Namespace }}""#),
            "{text}"
        );
        assert!(!text.contains("service.consul"), "{text}");
        let apps = crate::app::parse_documents(&text).expect("the rewritten example still parses");
        let errors: Vec<_> = apps.iter().flat_map(|a| crate::app::validate(a, None)).collect();
        assert_eq!((apps.len(), errors), (1, Vec::new()), "the rewritten example is one valid record");
    }

    /// Runs in the build without the simulator: `cargo test -p drover --no-default-features --lib cli::dev`.
    #[cfg(not(feature = "dev"))]
    #[tokio::test]
    async fn dev_should_explain_that_the_build_has_no_simulator() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from(["drover", "dev"]).expect("`drover dev` parses without the feature");
        let crate::cli::Command::Dev(args) = cli.command else { panic!("`drover dev` parsed as another command") };
        let err = dev(args).await.expect_err("without the simulator `drover dev` must fail");
        assert_eq!(err.to_string(), FEATURE_OFF);
    }
}
