//! `drover diff`: what Nomad would change if a record were applied, from Nomad's own plan (`Diff: true`), printed
//! as a readable tree. Detecting change never relies on this (DESIGN §3); it is for people.

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use super::{ConsulArgs, NomadArgs, PrefixArg};
use crate::app::{self, AppKey};
use crate::metrics::Metrics;
use crate::nomad::types::{DiffType, FieldDiff, JobDiff, ObjectDiff};

/// `drover diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The app whose stored record is compared with the live job (`name` or `namespace/name`).
    #[arg(conflicts_with = "file", required_unless_present = "file")]
    pub app: Option<String>,
    /// A record file to compare with the live job instead (one document).
    #[arg(short = 'f', long = "filename")]
    pub file: Option<String>,
    /// Consul connection (to read a stored record).
    #[command(flatten)]
    pub consul: ConsulArgs,
    /// Nomad connection.
    #[command(flatten)]
    pub nomad: NomadArgs,
    /// KV prefix.
    #[command(flatten)]
    pub prefix: PrefixArg,
}

/// `drover diff`.
pub async fn diff(args: DiffArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let (key, bytes) = match (&args.file, &args.app) {
        (Some(file), _) => {
            let text = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
            let record = app::parse(&text).map_err(|errors| invalid(file, &errors))?;
            (AppKey::new(record.metadata.namespace.clone(), record.metadata.name.clone()), text)
        }
        (None, Some(name)) => {
            let key: AppKey = name.parse().map_err(|e| anyhow::anyhow!("app {name:?}: {e}"))?;
            let consul = args.consul.client(metrics.clone())?;
            let pair = consul.get(&key.app_kv_key(&args.prefix.prefix)).await.context("cannot read the record")?;
            let Some(pair) = pair else { bail!("app {key} not found") };
            (key, pair.value)
        }
        (None, None) => bail!("give an app name or -f FILE"),
    };
    let desired = app::load(&key, &bytes).map_err(|errors| invalid(&key.to_string(), &errors))?;
    let nomad = args.nomad.client(metrics)?;
    let plan = nomad.plan(&key.namespace, &desired.job, true).await.context("Nomad's plan failed")?;
    match plan.diff {
        Some(d) if d.diff_type != DiffType::None => print!("{}", render_diff(&d)),
        _ => println!("no changes: job {:?} already runs this spec", desired.job_id),
    }
    Ok(())
}

fn invalid(source: &str, errors: &[app::FieldError]) -> anyhow::Error {
    for e in errors {
        eprintln!("invalid: {source}: {e}");
    }
    anyhow::anyhow!("{} problem(s) in {source}", errors.len())
}

fn mark(t: &DiffType) -> &'static str {
    match t {
        DiffType::Added => "+",
        DiffType::Deleted => "-",
        DiffType::Edited => "~",
        DiffType::None | DiffType::Unknown(_) => " ",
    }
}

fn field(out: &mut String, indent: usize, f: &FieldDiff) {
    let pad = " ".repeat(indent);
    let value = match f.diff_type {
        DiffType::Added => format!("{:?}", f.new),
        DiffType::Deleted => format!("{:?}", f.old),
        _ => format!("{:?} => {:?}", f.old, f.new),
    };
    let notes = if f.annotations.is_empty() { String::new() } else { format!(" ({})", f.annotations.join(", ")) };
    out.push_str(&format!("{pad}{} {}: {value}{notes}\n", mark(&f.diff_type), f.name));
}

fn object(out: &mut String, indent: usize, o: &ObjectDiff) {
    out.push_str(&format!("{}{} {} {{\n", " ".repeat(indent), mark(&o.diff_type), o.name));
    for f in &o.fields {
        field(out, indent + 2, f);
    }
    for child in &o.objects {
        object(out, indent + 2, child);
    }
    out.push_str(&format!("{}}}\n", " ".repeat(indent)));
}

/// The plan diff as an indented tree: `+` added, `-` deleted, `~` edited.
pub fn render_diff(d: &JobDiff) -> String {
    let mut out = format!("{} Job {:?}\n", mark(&d.diff_type), d.id);
    for f in &d.fields {
        field(&mut out, 2, f);
    }
    for o in &d.objects {
        object(&mut out, 2, o);
    }
    for g in &d.task_groups {
        let updates: Vec<String> = g.updates.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let updates = if updates.is_empty() { String::new() } else { format!(" ({})", updates.join(", ")) };
        out.push_str(&format!("  {} Task Group {:?}{updates}\n", mark(&g.diff_type), g.name));
        for f in &g.fields {
            field(&mut out, 4, f);
        }
        for o in &g.objects {
            object(&mut out, 4, o);
        }
        for t in &g.tasks {
            let notes =
                if t.annotations.is_empty() { String::new() } else { format!(" ({})", t.annotations.join(", ")) };
            out.push_str(&format!("    {} Task {:?}{notes}\n", mark(&t.diff_type), t.name));
            for f in &t.fields {
                field(&mut out, 6, f);
            }
            for o in &t.objects {
                object(&mut out, 6, o);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nomad::types::{TaskDiff, TaskGroupDiff};

    #[test]
    fn render_diff_should_show_edited_fields_with_old_and_new() {
        let d = JobDiff {
            diff_type: DiffType::Edited,
            id: "web".into(),
            task_groups: vec![TaskGroupDiff {
                diff_type: DiffType::Edited,
                name: "web".into(),
                tasks: vec![TaskDiff {
                    diff_type: DiffType::Edited,
                    name: "web".into(),
                    fields: vec![FieldDiff {
                        diff_type: DiffType::Edited,
                        name: "Config[image]".into(),
                        old: "nginx:1".into(),
                        new: "nginx:2".into(),
                        annotations: vec![],
                    }],
                    annotations: vec!["forces create/destroy update".into()],
                    ..TaskDiff::default()
                }],
                ..TaskGroupDiff::default()
            }],
            ..JobDiff::default()
        };
        let text = render_diff(&d);
        assert!(text.contains("~ Job \"web\""), "{text}");
        assert!(text.contains("~ Config[image]: \"nginx:1\" => \"nginx:2\""), "{text}");
        assert!(text.contains("(forces create/destroy update)"), "{text}");
    }
}
