//! Query templates: PromQL with `{{ .Version }}`-style variables (the Go-template spelling Argo Rollouts, Flagger and
//! the Nomad Autoscaler users know), parsed once when the record is validated — an unknown variable or a broken
//! `{{` is a field error then, never a surprise at query time — and rendered per measurement.
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
                Some(Ok(var)) if scope.allows(&var) => parts.push(Part::Var(var)),
                Some(Ok(var)) => errors.push(TemplateError::Unknown { var: var.to_string(), known: scope.known() }),
                Some(Err(name)) => errors.push(TemplateError::Unknown { var: name, known: scope.known() }),
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

    proptest! {
        #[test]
        fn text_without_braces_should_render_to_itself(text in "[^{}]{0,64}") {
            let t = QueryTemplate::parse(&text, &Scope::default()).expect("plain text parses");
            prop_assert_eq!(t.render(&Vars::default()), text);
        }
    }
}
