//! Where a sync's records come from: a directory, or a git repository checked out at one ref.
//!
//! Git goes through the `git` CLI, as Argo CD's repo server does (it shells out to `git` rather than linking a
//! library): no new crate to build on a 2-core machine (`gix` with a network transport is hundreds of crates), every
//! transport and credential helper the operator's `git` already knows (`file://`, `https://`, `ssh://`,
//! `git@host:repo`), and a well-trodden failure surface. A checkout is a shallow fetch of the one ref
//! (`git fetch --depth 1 <url> <ref>`) into a fresh temporary directory, removed when the sync ends; a commit SHA
//! that the server refuses to serve shallowly is fetched with every branch and tag, then resolved.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::app::parse::MAX_DOCUMENTS_BYTES;

/// The most files one source may hold: a bound on memory and on the work of one sync.
pub const MAX_FILES: usize = 20_000;

/// Where the records are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A directory on this machine.
    Directory(PathBuf),
    /// A git repository: `file://`, `http(s)://`, `ssh://`, `git://` or scp-like `user@host:path`.
    Git {
        /// The URL as given (credentials included, if any; never written to Consul).
        url: String,
    },
}

/// Why the records could not be read. None of these is about a record's content (those are [`super::Problem`]s).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `git` could not be started (not installed, or not on `PATH`). Not retryable until it is installed.
    #[error("cannot run git (is it installed and on PATH?)")]
    GitMissing(#[source] std::io::Error),
    /// A `git` command failed: the URL is wrong, the server is unreachable, credentials are refused, or the ref
    /// does not exist. Retryable when the cause was the network.
    #[error("git {command} failed: {stderr}")]
    GitFailed {
        /// The git subcommand (`fetch`, `checkout`, …).
        command: &'static str,
        /// What git said, trimmed (credentials in the URL are not echoed: the URL is not part of it).
        stderr: String,
    },
    /// Reading or preparing a local path failed. Retryable when the cause is transient.
    #[error("cannot read {path}")]
    Io {
        /// The path.
        path: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// `--path` is absolute or climbs out of the source with `..`. Not retryable.
    #[error("--path {0:?} must be a relative folder inside the source, without `..`")]
    BadPath(String),
    /// `--ref` was given for a directory, which has no refs. Not retryable.
    #[error("--ref needs a git URL; {0} is a directory")]
    RefWithDirectory(String),
    /// The source (or its `--path` folder) is not a directory. Not retryable.
    #[error("{0} is not a directory")]
    NotADirectory(String),
    /// The source holds more than [`MAX_FILES`] record files. Not retryable.
    #[error("the source holds more than {MAX_FILES} record files")]
    TooManyFiles,
}

/// One record file of a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Its path from the source's root (`apps/web.yaml`), `/`-separated.
    pub path: String,
    /// Its text, or why it could not be used as text (not UTF-8, too large): a problem reported with the others.
    pub text: Result<String, String>,
}

/// A source read at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkout {
    /// The git commit (full SHA), or for a directory `sha256:` and the first 16 hex digits of a digest of every
    /// file's path and content.
    pub revision: String,
    /// The source as it may be shown and stored: the URL without credentials, or the directory's path.
    pub label: String,
    /// Every record file under `--path`, sorted by path.
    pub files: Vec<SourceFile>,
}

impl Source {
    /// A git source for anything that looks like a git URL, a directory otherwise.
    pub fn parse(text: &str) -> Source {
        let schemes = ["file://", "https://", "http://", "ssh://", "git://"];
        let scp_like = !text.contains("://")
            && text.split_once(':').is_some_and(|(host, _)| host.contains('@') && !host.contains('/'));
        if schemes.iter().any(|s| text.starts_with(s)) || scp_like {
            Source::Git { url: text.to_owned() }
        } else {
            Source::Directory(PathBuf::from(text))
        }
    }

    /// The source without credentials: `https://user:token@host/x` → `https://host/x`.
    pub fn label(&self) -> String {
        match self {
            Source::Directory(dir) => dir.display().to_string(),
            Source::Git { url } => match url.split_once("://") {
                Some((scheme, rest)) if scheme.starts_with("http") => {
                    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
                    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
                    if path.is_empty() { format!("{scheme}://{host}") } else { format!("{scheme}://{host}/{path}") }
                }
                _ => url.clone(),
            },
        }
    }
}

/// Reads `source` at `git_ref` (git only; the remote's `HEAD` when `None`), keeping only the files under `path`.
/// Blocking: it runs `git` and reads files; call it from `spawn_blocking`.
///
/// # Errors
/// The source cannot be read; see [`SourceError`].
pub fn checkout(source: &Source, git_ref: Option<&str>, path: Option<&str>) -> Result<Checkout, SourceError> {
    let folder = check_path(path)?;
    match source {
        Source::Directory(dir) => {
            if git_ref.is_some() {
                return Err(SourceError::RefWithDirectory(dir.display().to_string()));
            }
            let files = read_files(dir, &folder)?;
            Ok(Checkout { revision: digest(&files), label: source.label(), files })
        }
        Source::Git { url } => {
            let temp = TempDir::new()?;
            let revision = fetch(temp.path(), url, git_ref)?;
            git(
                temp.path(),
                "checkout",
                &["-c", "advice.detachedHead=false", "checkout", "-q", "--detach", &revision],
            )?;
            let files = read_files(temp.path(), &folder)?;
            Ok(Checkout { revision, label: source.label(), files })
        }
    }
}

/// `--path` as a relative path with only normal components.
fn check_path(path: Option<&str>) -> Result<PathBuf, SourceError> {
    let Some(text) = path else { return Ok(PathBuf::new()) };
    let p = Path::new(text);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(SourceError::BadPath(text.to_owned()));
            }
        }
    }
    Ok(out)
}

/// Fetches `git_ref` (or `HEAD`) shallowly into a new repository at `dir` and returns the commit it names.
fn fetch(dir: &Path, url: &str, git_ref: Option<&str>) -> Result<String, SourceError> {
    git(dir, "init", &["init", "-q"])?;
    let wanted = git_ref.unwrap_or("HEAD");
    // `--` ends the options, so a URL or ref starting with `-` cannot become one (CVE-2017-1000117's lesson).
    let shallow = git(dir, "fetch", &["fetch", "-q", "--depth", "1", "--no-tags", "--", url, wanted]);
    match shallow {
        Ok(_) => resolve(dir, "FETCH_HEAD"),
        Err(shallow_error) => {
            let looks_like_sha = wanted.len() >= 7 && wanted.chars().all(|c| c.is_ascii_hexdigit());
            if !looks_like_sha {
                return Err(shallow_error);
            }
            // Servers that do not serve arbitrary commits shallowly: fetch every branch and tag, then resolve.
            git(
                dir,
                "fetch",
                &["fetch", "-q", "--", url, "+refs/heads/*:refs/remotes/source/*", "+refs/tags/*:refs/tags/*"],
            )?;
            resolve(dir, wanted)
        }
    }
}

/// The commit `rev` names (an annotated tag resolves to its commit).
fn resolve(dir: &Path, rev: &str) -> Result<String, SourceError> {
    let out = git(dir, "rev-parse", &["rev-parse", "--verify", "--end-of-options", &format!("{rev}^{{commit}}")])?;
    Ok(out.trim().to_owned())
}

/// Runs `git <args>` in `dir`, never prompting for credentials, and returns its stdout.
fn git(dir: &Path, command: &'static str, args: &[&str]) -> Result<String, SourceError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(SourceError::GitMissing)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().chars().take(1000).collect();
        return Err(SourceError::GitFailed { command, stderr });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every `*.yaml`, `*.yml` and `*.json` file under `root/folder`, recursively, sorted by path. Hidden files and
/// folders (`.git`, `.github`) are skipped, and so are symbolic links, so a repository cannot make a sync read a
/// file outside it.
fn read_files(root: &Path, folder: &Path) -> Result<Vec<SourceFile>, SourceError> {
    let start = root.join(folder);
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SourceError::Io { path, source }
    };
    if !std::fs::symlink_metadata(&start).map_err(io(&start))?.is_dir() {
        return Err(SourceError::NotADirectory(start.display().to_string()));
    }
    let mut files = Vec::new();
    let mut pending = vec![start];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let kind = entry.file_type().map_err(io(&path))?;
            if hidden || kind.is_symlink() {
                continue;
            }
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            let record_file = path.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json");
            if !kind.is_file() || !record_file {
                continue;
            }
            if files.len() >= MAX_FILES {
                return Err(SourceError::TooManyFiles);
            }
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let name: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            let len = entry.metadata().map_err(io(&path))?.len();
            let text = if len > MAX_DOCUMENTS_BYTES as u64 {
                Err(format!("the file is {len} bytes; the limit is {MAX_DOCUMENTS_BYTES}"))
            } else {
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                String::from_utf8(bytes).map_err(|e| {
                    format!("the file is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to())
                })
            };
            files.push(SourceFile { path: name.join("/"), text });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// A directory's revision: a digest of every file's path and content.
fn digest(files: &[SourceFile]) -> String {
    let mut hasher = Sha256::new();
    for f in files {
        hasher.update(f.path.as_bytes());
        hasher.update([0]);
        match &f.text {
            Ok(text) => hasher.update(text.as_bytes()),
            Err(reason) => hasher.update(reason.as_bytes()),
        }
        hasher.update([0]);
    }
    let hex = hex::encode(hasher.finalize());
    format!("sha256:{}", &hex[..16])
}

/// A directory removed (with its contents) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, SourceError> {
        let path =
            std::env::temp_dir().join(format!("drover-sync-{}-{:016x}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&path)
            .map_err(|source| SourceError::Io { path: path.display().to_string(), source })?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_should_tell_git_urls_from_directories() {
        assert_eq!(Source::parse("./records"), Source::Directory(PathBuf::from("./records")));
        assert_eq!(Source::parse("/srv/a:b"), Source::Directory(PathBuf::from("/srv/a:b")));
        for url in ["file:///tmp/r", "https://github.com/a/b.git", "ssh://git@host/a/b", "git@github.com:a/b.git"] {
            assert_eq!(Source::parse(url), Source::Git { url: url.to_owned() }, "{url}");
        }
    }

    #[test]
    fn label_should_drop_credentials() {
        assert_eq!(Source::parse("https://u:tok@github.com/a/b.git").label(), "https://github.com/a/b.git");
        assert_eq!(Source::parse("https://github.com").label(), "https://github.com");
        assert_eq!(Source::parse("ssh://git@host/a").label(), "ssh://git@host/a");
    }

    #[test]
    fn check_path_should_refuse_climbing_out() {
        assert_eq!(check_path(Some("./apps/prod/")).unwrap(), PathBuf::from("apps/prod"));
        assert!(check_path(Some("../etc")).is_err());
        assert!(check_path(Some("/etc")).is_err());
        assert!(check_path(Some("apps/../../x")).is_err());
    }

    #[test]
    fn read_files_should_take_record_files_recursively_and_skip_hidden_ones() {
        let temp = TempDir::new().unwrap();
        let root = temp.path();
        std::fs::create_dir_all(root.join("apps/team")).unwrap();
        std::fs::create_dir_all(root.join(".github")).unwrap();
        std::fs::write(root.join("apps/web.yaml"), "a").unwrap();
        std::fs::write(root.join("apps/team/api.json"), "{}").unwrap();
        std::fs::write(root.join("apps/README.md"), "no").unwrap();
        std::fs::write(root.join(".github/ci.yml"), "no").unwrap();
        std::fs::write(root.join("apps/bad.yml"), [0xff, 0xfe]).unwrap();
        let files = read_files(root, Path::new("")).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["apps/bad.yml", "apps/team/api.json", "apps/web.yaml"]);
        assert!(files[0].text.as_ref().is_err_and(|e| e.contains("UTF-8")));
        let only_team = read_files(root, Path::new("apps/team")).unwrap();
        assert_eq!(only_team.len(), 1);
        assert_eq!(only_team[0].path, "apps/team/api.json");
        assert_ne!(digest(&files), digest(&only_team));
    }
}
