//! `drover apply` and `drover validate`: records are read from files, a directory or stdin, every one is validated
//! (all errors, all documents) before anything is written, then each is written with CAS.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use super::{ConsulArgs, PrefixArg};
use crate::app::{self, AppKey, FieldError};
use crate::metrics::Metrics;

/// `drover apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A record file (YAML, multi-document allowed, or JSON), a directory of them, or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Consul connection.
    #[command(flatten)]
    pub consul: ConsulArgs,
    /// KV prefix.
    #[command(flatten)]
    pub prefix: PrefixArg,
}

/// `drover validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// A record file, a directory of them, or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
}

/// A record ready to write: its key and the exact bytes that were validated.
struct Prepared {
    key: AppKey,
    bytes: Vec<u8>,
}

/// Reads every input; `(source name, text)` per file.
fn read_inputs(inputs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for input in inputs {
        if input == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read records from stdin")?;
            out.push(("<stdin>".to_string(), text));
            continue;
        }
        let path = Path::new(input);
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read directory {input}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
                out.push((f.display().to_string(), text));
            }
        } else {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {input}"))?;
            out.push((input.clone(), text));
        }
    }
    Ok(out)
}

/// Parses and validates every document of every input exactly as the controller will (`app::load` on the bytes
/// that will be stored), so a person sees every error the status would show; all problems are printed before
/// failing, and nothing is written unless every document is valid.
fn prepare(inputs: &[String]) -> anyhow::Result<Vec<Prepared>> {
    let mut prepared = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for (source, text) in read_inputs(inputs)? {
        let documents = match app::split_documents(&text) {
            Ok(documents) => documents,
            Err(errors) => {
                problems.extend(errors.iter().map(|e| format!("{source}: {e}")));
                continue;
            }
        };
        for (i, document) in documents.into_iter().enumerate() {
            let bytes = match serde_json::to_vec_pretty(&document) {
                Ok(b) => b,
                Err(e) => {
                    problems.push(format!("{source}: documents[{i}]: cannot encode: {e}"));
                    continue;
                }
            };
            let Some(key) = app::record_key(&bytes) else {
                problems
                    .push(format!("{source}: documents[{i}].metadata.name: required, to know where the record goes"));
                continue;
            };
            match app::load(&key, &bytes) {
                Ok(_) => prepared.push(Prepared { key, bytes }),
                Err(errors) => problems.extend(errors.iter().map(|e: &FieldError| format!("{source}: {key}: {e}"))),
            }
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("invalid: {p}");
        }
        bail!("{} problem(s) found; nothing was written", problems.len());
    }
    Ok(prepared)
}

/// `drover validate`.
pub fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    for p in prepare(&args.files)? {
        println!("valid: {}", p.key);
    }
    Ok(())
}

/// `drover apply`.
pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let records = prepare(&args.files)?;
    let consul = args.consul.client(Arc::new(Metrics::new()))?;
    for p in records {
        let kv_key = p.key.app_kv_key(&args.prefix.prefix);
        let current = consul.get(&kv_key).await.with_context(|| format!("cannot read {kv_key}"))?;
        if current.as_ref().is_some_and(|c| c.value == p.bytes) {
            println!("app {} unchanged", p.key);
            continue;
        }
        let index = current.as_ref().map_or(0, |c| c.modify_index);
        let written = consul.cas(&kv_key, &p.bytes, index).await.with_context(|| format!("cannot write {kv_key}"))?;
        if !written {
            bail!(
                "app {} was changed by someone else while applying; nothing more was written, run apply again",
                p.key
            );
        }
        println!("app {} {}", p.key, if current.is_some() { "configured" } else { "created" });
    }
    Ok(())
}
