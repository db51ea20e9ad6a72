//! Query templates: PromQL with `{{ .Version }}`-style variables (the Go-template spelling Argo Rollouts, Flagger and
//! the Nomad Autoscaler users know), parsed once when the record is validated — an unknown variable or a broken
//! `{{` is a field error then, never a surprise at query time — and rendered per measurement.
//!
//! Autoscaling parses with its own [`Scope`] and renders with [`Vars`]; rollout analysis (issue #8) parses with
//! [`QueryTemplate::parse_rollout`] (every variable, any argument: the step that runs a template gives the
//! arguments, and validation checks them per step) and resolves with [`RolloutVars`], where a missing value is an
//! error rather than an empty string.
//!
//! Only plain variable references are supported (`{{ .Name }}`, `{{ .Args.NAME }}`), no pipelines or functions:
//! values are inserted verbatim (records are written by operators; quote a value inside a label matcher yourself).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A variable a template may use.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Var {
    /// `{{ .Version }}`: the job version being measured (the canary's).
    Version,
    /// `{{ .StableVersion }}`: the last stable job version.
    StableVersion,
    /// `{{ .JobID }}`.
    JobId,
    /// `{{ .Namespace }}`.
    Namespace,
    /// `{{ .Group }}`: the task group.
    Group,
    /// `{{ .Args.NAME }}`: an argument given where the template is used.
    Arg(String),
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Version => f.write_str(".Version"),
            Var::StableVersion => f.write_str(".StableVersion"),
            Var::JobId => f.write_str(".JobID"),
            Var::Namespace => f.write_str(".Namespace"),
            Var::Group => f.write_str(".Group"),
            Var::Arg(name) => write!(f, ".Args.{name}"),
        }
    }
}

/// Which variables a template may use where it appears.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// The named variables available (`Version`, `JobID`, …).
    pub vars: BTreeSet<Var>,
    /// The argument names available as `.Args.NAME`.
    pub args: BTreeSet<String>,
}

impl Scope {
    /// Every named variable, and these argument names.
    pub fn all(args: impl IntoIterator<Item = String>) -> Scope {
        let vars = [Var::Version, Var::StableVersion, Var::JobId, Var::Namespace, Var::Group].into_iter().collect();
        Scope { vars, args: args.into_iter().collect() }
    }

    fn allows(&self, var: &Var) -> bool {
        match var {
            Var::Arg(name) => self.args.contains(name),
            other => self.vars.contains(other),
        }
    }

    fn known(&self) -> String {
        let mut names: Vec<String> = self.vars.iter().map(|v| format!("{{{{ {v} }}}}")).collect();
        names.extend(self.args.iter().map(|a| format!("{{{{ .Args.{a} }}}}")));
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    }
}

/// Why a template does not parse. Not retryable: the record must change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without `}}`.
    #[error("`{{{{` at byte {at} is not closed with `}}}}`")]
    Unclosed {
        /// Byte offset of the `{{`.
        at: usize,
    },
    /// Something between `{{` and `}}` that is not a variable reference.
    #[error("`{{{{{text}}}}}` is not a variable reference (write e.g. `{{{{ .Version }}}}` or `{{{{ .Args.name }}}}`)")]
    NotAVariable {
        /// What was written.
        text: String,
    },
    /// A variable that does not exist here.
    #[error("`{{{{ {var} }}}}` does not exist here; known: {known}")]
    Unknown {
        /// The variable.
        var: String,
        /// The variables that do.
        known: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// The values of a rollout measurement's variables (issue #8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutVars {
    /// `{{ .Version }}`: the job version measured (the canary's; the stable one for a baseline).
    pub version: u64,
    /// `{{ .StableVersion }}`: the last stable job version; `None` before any version was stable.
    pub stable_version: Option<u64>,
    /// `{{ .JobID }}`.
    pub job_id: String,
    /// `{{ .Namespace }}`.
    pub namespace: String,
    /// `{{ .Group }}`: the first group with canaries, else the first group.
    pub group: String,
    /// `{{ .Args.NAME }}`: the step's `args`.
    pub args: BTreeMap<String, String>,
}

impl RolloutVars {
    /// The same variables for the stable version: what a `baseline` is measured with (`Version := StableVersion`).
    ///
    /// # Errors
    /// [`ResolveError::NoStableVersion`] when no version was stable yet.
    pub fn for_baseline(&self) -> Result<RolloutVars, ResolveError> {
        let stable = self.stable_version.ok_or(ResolveError::NoStableVersion)?;
        Ok(RolloutVars { version: stable, ..self.clone() })
    }
}

/// Why a rollout template has no text for these values. Not retryable for the same values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The text does not parse (see [`TemplateError`]).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Template(Vec<TemplateError>),
    /// `{{ .StableVersion }}` (or a baseline) before any version of the job was stable.
    #[error("no stable version of the job yet, so `{{{{ .StableVersion }}}}` and `baseline` have no value")]
    NoStableVersion,
    /// `{{ .Args.NAME }}` that the step does not give.
    #[error("`{{{{ .Args.{name} }}}}` has no value: the step's `args` do not give `{name}`")]
    MissingArg {
        /// The argument.
        name: String,
    },
}

/// Parses `text` as a rollout template and fills it in: the one-call form for text used once (a webhook URL).
///
/// # Errors
/// The text does not parse, or a variable has no value.
pub fn resolve(text: &str, vars: &RolloutVars) -> Result<String, ResolveError> {
    QueryTemplate::parse_rollout(text).map_err(ResolveError::Template)?.resolve(vars)
}

/// A parsed query template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryTemplate {
    parts: Vec<Part>,
}

/// The values of one rendering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vars {
    /// `.Version`.
    pub version: String,
    /// `.StableVersion`.
    pub stable_version: String,
    /// `.JobID`.
    pub job_id: String,
    /// `.Namespace`.
    pub namespace: String,
    /// `.Group`.
    pub group: String,
    /// `.Args.NAME`.
    pub args: BTreeMap<String, String>,
}

impl QueryTemplate {
    /// Parses `text`, allowing only the variables in `scope`. Every problem is reported, in order.
    pub fn parse(text: &str, scope: &Scope) -> Result<QueryTemplate, Vec<TemplateError>> {
        Self::parse_with(text, &|var| scope.allows(var), &|| scope.known())
    }

    /// Parses an analysis template's text (issue #8): every named variable, and any `{{ .Args.NAME }}` — which
    /// arguments exist depends on the step that runs the template, so [`QueryTemplate::args`] lists them for the
    /// validation of each step.
    pub fn parse_rollout(text: &str) -> Result<QueryTemplate, Vec<TemplateError>> {
        let scope = Scope::all([]);
        Self::parse_with(text, &|var| matches!(var, Var::Arg(_)) || scope.allows(var), &|| {
            format!("{}, {{{{ .Args.NAME }}}}", scope.known())
        })
    }

    /// The argument names the template uses (`{{ .Args.NAME }}`), each once.
    pub fn args(&self) -> BTreeSet<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(Var::Arg(name)) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether the template uses `var`.
    pub fn uses(&self, var: &Var) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var(v) if v == var))
    }

    /// The text for a rollout measurement.
    ///
    /// # Errors
    /// A variable without a value: `{{ .StableVersion }}` before any version was stable, or an argument the step
    /// does not give (validation refuses that, so it means a record changed under a running step).
    pub fn resolve(&self, vars: &RolloutVars) -> Result<String, ResolveError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::Version) => out.push_str(&vars.version.to_string()),
                Part::Var(Var::StableVersion) => {
                    out.push_str(&vars.stable_version.ok_or(ResolveError::NoStableVersion)?.to_string());
                }
                Part::Var(Var::JobId) => out.push_str(&vars.job_id),
                Part::Var(Var::Namespace) => out.push_str(&vars.namespace),
                Part::Var(Var::Group) => out.push_str(&vars.group),
                Part::Var(Var::Arg(name)) => match vars.args.get(name) {
                    Some(value) => out.push_str(value),
                    None => return Err(ResolveError::MissingArg { name: name.clone() }),
                },
            }
        }
        Ok(out)
    }

    fn parse_with(
        text: &str,
        allows: &dyn Fn(&Var) -> bool,
        known: &dyn Fn() -> String,
    ) -> Result<QueryTemplate, Vec<TemplateError>> {
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                errors.push(TemplateError::Unclosed { at: offset + start });
                rest = "";
                break;
            };
            let inner = after[..end].trim();
            match parse_var(inner) {
                Some(Ok(var)) if allows(&var) => parts.push(Part::Var(var)),
                Some(Ok(var)) => errors.push(TemplateError::Unknown { var: var.to_string(), known: known() }),
                Some(Err(name)) => errors.push(TemplateError::Unknown { var: name, known: known() }),
                None => errors.push(TemplateError::NotAVariable { text: after[..end].to_string() }),
            }
            let consumed = start + 2 + end + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if errors.is_empty() { Ok(QueryTemplate { parts }) } else { Err(errors) }
    }

    /// The query for these values.
    pub fn render(&self, vars: &Vars) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::Version) => out.push_str(&vars.version),
                Part::Var(Var::StableVersion) => out.push_str(&vars.stable_version),
                Part::Var(Var::JobId) => out.push_str(&vars.job_id),
                Part::Var(Var::Namespace) => out.push_str(&vars.namespace),
                Part::Var(Var::Group) => out.push_str(&vars.group),
                Part::Var(Var::Arg(name)) => out.push_str(vars.args.get(name).map_or("", String::as_str)),
            }
        }
        out
    }
}

/// `.Version` → `Var::Version`, `.Args.x` → `Var::Arg("x")`, `.Other` → `Err(".Other")` (a name that is no
/// variable); `None` for anything else (pipelines, functions): not a variable reference at all.
fn parse_var(inner: &str) -> Option<Result<Var, String>> {
    let name = inner.strip_prefix('.')?;
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if let Some(arg) = name.strip_prefix("Args.") {
        return ident(arg).then(|| Ok(Var::Arg(arg.to_string())));
    }
    if !ident(name) {
        return None;
    }
    Some(match name {
        "Version" => Ok(Var::Version),
        "StableVersion" => Ok(Var::StableVersion),
        "JobID" => Ok(Var::JobId),
        "Namespace" => Ok(Var::Namespace),
        "Group" => Ok(Var::Group),
        other => Err(format!(".{other}")),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn vars() -> Vars {
        Vars {
            version: "7".into(),
            stable_version: "6".into(),
            job_id: "web".into(),
            namespace: "prod".into(),
            group: "api".into(),
            args: BTreeMap::from([("quantile".to_string(), "0.99".to_string())]),
        }
    }

    #[test]
    fn render_should_fill_every_variable() {
        let scope = Scope::all(["quantile".to_string()]);
        let t = QueryTemplate::parse(
            r#"histogram_quantile({{ .Args.quantile }}, x{job="{{.JobID}}",namespace="{{ .Namespace }}",group="{{ .Group }}",version=~"{{ .Version }}|{{ .StableVersion }}"})"#,
            &scope,
        )
        .expect("parses");
        assert_eq!(
            t.render(&vars()),
            r#"histogram_quantile(0.99, x{job="web",namespace="prod",group="api",version=~"7|6"})"#
        );
        assert_eq!(QueryTemplate::parse("up", &scope).map(|t| t.render(&vars())), Ok("up".to_string()));
    }

    #[test]
    fn parse_should_report_every_unknown_or_broken_variable() {
        let scope = Scope { vars: [Var::JobId].into_iter().collect(), args: BTreeSet::new() };
        let errors =
            QueryTemplate::parse("{{ .Version }} {{ .Args.x }} {{ .Nope }} {{ printf \"%d\" 1 }} {{ .JobID", &scope)
                .expect_err("invalid");
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(
            matches!(&errors[0], TemplateError::Unknown { var, known } if var == ".Version" && known.contains(".JobID"))
        );
        assert!(matches!(&errors[1], TemplateError::Unknown { var, .. } if var == ".Args.x"));
        assert!(matches!(&errors[2], TemplateError::Unknown { .. }));
        assert!(matches!(&errors[3], TemplateError::NotAVariable { .. }));
        assert!(matches!(&errors[4], TemplateError::Unclosed { .. }));
        // The messages name the variable as written.
        assert!(errors[2].to_string().starts_with("`{{ .Nope }}` does not exist here"), "{}", errors[2]);
    }

    fn rollout_vars() -> RolloutVars {
        RolloutVars {
            version: 7,
            stable_version: Some(6),
            job_id: "web".into(),
            namespace: "prod".into(),
            group: "api".into(),
            args: BTreeMap::from([("route".to_string(), "/checkout".to_string())]),
        }
    }

    #[test]
    fn parse_rollout_should_allow_every_variable_and_list_the_arguments() {
        let t = QueryTemplate::parse_rollout(
            r#"sum(rate(errors{job="{{ .JobID }}",ns="{{.Namespace}}",group="{{ .Group }}",version="{{ .Version }}",route="{{ .Args.route }}"}[1m]))"#,
        )
        .expect("parses");
        assert_eq!(t.args(), BTreeSet::from(["route"]));
        assert!(t.uses(&Var::Version) && !t.uses(&Var::StableVersion));
        assert_eq!(
            t.resolve(&rollout_vars()),
            Ok(r#"sum(rate(errors{job="web",ns="prod",group="api",version="7",route="/checkout"}[1m]))"#.to_string())
        );
        // A baseline is the same query for the stable version.
        let baseline = rollout_vars().for_baseline().expect("a stable version");
        assert!(t.resolve(&baseline).expect("resolves").contains(r#"version="6""#));
        // Unknown names are still refused, with every name that exists.
        let errors = QueryTemplate::parse_rollout("{{ .Versoin }}").expect_err("unknown");
        assert!(errors[0].to_string().contains("{{ .Args.NAME }}"), "{}", errors[0]);
    }

    #[test]
    fn resolve_should_refuse_variables_without_a_value() {
        let no_stable = RolloutVars { stable_version: None, ..rollout_vars() };
        assert_eq!(resolve("v{{ .StableVersion }}", &no_stable), Err(ResolveError::NoStableVersion));
        assert_eq!(no_stable.for_baseline(), Err(ResolveError::NoStableVersion));
        assert_eq!(
            resolve("{{ .Args.quantile }}", &rollout_vars()),
            Err(ResolveError::MissingArg { name: "quantile".into() })
        );
        assert!(matches!(resolve("{{ .Nope }}", &rollout_vars()), Err(ResolveError::Template(_))));
        assert_eq!(resolve("http://smoke/{{ .Version }}", &rollout_vars()), Ok("http://smoke/7".to_string()));
    }

    proptest! {
        #[test]
        fn text_without_braces_should_render_to_itself(text in "[^{}]{0,64}") {
            let t = QueryTemplate::parse(&text, &Scope::default()).expect("plain text parses");
            prop_assert_eq!(t.render(&Vars::default()), text);
        }
    }
}
