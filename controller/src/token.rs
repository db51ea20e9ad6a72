//! ACL tokens that may change while Drover runs: a fixed token (flag or variable), or a token file that is re-read
//! when it changes, so that a token can be rotated without a restart (`CONSUL_HTTP_TOKEN_FILE`,
//! `--nomad-token-file`).
//!
//! A file is checked before every request with one `stat` (no watcher, no new crate): when its modification time,
//! size or inode differ from the last read, it is read again. That covers an in-place write, an atomic rename and a
//! Kubernetes/Vault-agent symlink swap. A file that became unreadable or empty keeps the last good token (and is
//! logged once per change), so a half-written rotation never sends an empty token.
//!
//! A token never appears in `Debug`, logs, metrics, status or `/api/v1/apps`: [`Token`]'s `Debug` shows the file's
//! path or `<redacted>`, and the secret is only handed out by [`Token::current`], to the one place that sends it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::{ConfigError, Secret};

/// Where a server's ACL token comes from. Cheap to clone (a file is shared by all clones).
#[derive(Clone)]
pub enum Token {
    /// Given once, on the command line or in a variable.
    Fixed(Secret),
    /// Read from a file, and again whenever the file changes.
    File(Arc<TokenFile>),
}

impl Token {
    /// The token to send now (re-reading the file when it changed).
    pub fn current(&self) -> Secret {
        match self {
            Token::Fixed(secret) => secret.clone(),
            Token::File(file) => file.current(),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Fixed(_) => f.write_str("<redacted>"),
            Token::File(file) => write!(f, "<redacted, from {:?}>", file.path),
        }
    }
}

/// Two tokens are equal when they are the same fixed secret or the same file.
impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        match (self, other) {
            (Token::Fixed(a), Token::Fixed(b)) => a == b,
            (Token::File(a), Token::File(b)) => a.path == b.path,
            _ => false,
        }
    }
}

impl Eq for Token {}

impl From<Secret> for Token {
    fn from(secret: Secret) -> Token {
        Token::Fixed(secret)
    }
}

/// A token file and the token last read from it.
pub struct TokenFile {
    path: PathBuf,
    source_name: &'static str,
    state: Mutex<FileState>,
}

struct FileState {
    /// What the file looked like when last read (successfully or not): a new read happens when this changes.
    seen: Option<Stamp>,
    /// The last good token.
    secret: Secret,
}

/// What changes when a file is rewritten, renamed over or re-linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Stamp { modified: meta.modified().ok(), len: meta.len(), inode })
    }
}

impl TokenFile {
    /// Reads the file once; an unreadable or empty file is an error here (at start), naming `source_name` (the
    /// flag or variable that named the file).
    pub fn open(path: &str, source_name: &'static str) -> Result<TokenFile, ConfigError> {
        let seen = Stamp::of(Path::new(path));
        let secret = read(Path::new(path), source_name)?;
        Ok(TokenFile { path: PathBuf::from(path), source_name, state: Mutex::new(FileState { seen, secret }) })
    }

    /// The file's path (not secret).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current token: the file is read again when its stamp changed since the last read.
    pub fn current(&self) -> Secret {
        let stamp = Stamp::of(&self.path);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if stamp == state.seen {
            return state.secret.clone();
        }
        state.seen = stamp;
        match read(&self.path, self.source_name) {
            Ok(secret) => {
                if secret != state.secret {
                    tracing::info!(file = %self.path.display(), "token file changed; using the new token");
                }
                state.secret = secret;
            }
            Err(err) => tracing::warn!(
                error = %crate::error_chain(&err),
                "token file unusable; keeping the last token read from it"
            ),
        }
        state.secret.clone()
    }
}

fn read(path: &Path, source_name: &'static str) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFileUnreadable {
        source_name,
        path: path.display().to_string(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::Empty { source_name });
    }
    Ok(Secret::from(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("drover-token-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("token")
    }

    #[test]
    fn token_file_should_follow_a_rewrite_and_a_rename() {
        let path = temp("rotate");
        std::fs::write(&path, "first\n").unwrap();
        let token = Token::File(Arc::new(TokenFile::open(path.to_str().unwrap(), "NOMAD_TOKEN_FILE").unwrap()));
        assert_eq!(token.current().expose(), "first");
        // An in-place rewrite of another length.
        std::fs::write(&path, "second-token").unwrap();
        assert_eq!(token.current().expose(), "second-token");
        // An atomic rename over the file (a new inode).
        let next = path.with_extension("new");
        std::fs::write(&next, "third-token!").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(token.current().expose(), "third-token!");
    }

    #[test]
    fn token_file_should_keep_the_last_good_token_when_the_file_is_emptied_or_removed() {
        let path = temp("keep");
        std::fs::write(&path, "good").unwrap();
        let token = Token::File(Arc::new(TokenFile::open(path.to_str().unwrap(), "CONSUL_HTTP_TOKEN_FILE").unwrap()));
        std::fs::write(&path, "  \n").unwrap();
        assert_eq!(token.current().expose(), "good", "an empty file is a rotation in progress");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(token.current().expose(), "good", "a missing file keeps the last token");
        std::fs::write(&path, "back").unwrap();
        assert_eq!(token.current().expose(), "back");
    }

    #[test]
    fn token_debug_should_never_show_the_secret() {
        let path = temp("debug");
        std::fs::write(&path, "s3cret-file").unwrap();
        let file = Token::File(Arc::new(TokenFile::open(path.to_str().unwrap(), "NOMAD_TOKEN_FILE").unwrap()));
        let fixed = Token::Fixed(Secret::from("s3cret-fixed"));
        let shown = format!("{file:?} {fixed:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn token_file_open_should_name_the_variable_when_unreadable() {
        let err = TokenFile::open("/nonexistent/drover/token", "NOMAD_TOKEN_FILE").err().expect("an error");
        assert!(err.to_string().contains("NOMAD_TOKEN_FILE"), "{err}");
    }
}
