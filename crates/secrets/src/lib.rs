//! Secrets read from files (OpenFaaS mounts each at
//! `/var/openfaas/secrets/<name>`), never from the environment.

use std::fmt;
use std::path::{Path, PathBuf};

/// The secret every function of the fleet shares: functions that are not
/// meant for callers outside the fleet (classify, embed, provider-proxy)
/// answer only requests that carry it in [`INTERNAL_TOKEN_HEADER`].
pub const INTERNAL_TOKEN: &str = "internal-token";
/// The header that carries [`INTERNAL_TOKEN`] on calls between functions.
pub const INTERNAL_TOKEN_HEADER: &str = "X-Fleet-Token";

/// A secret value whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it (an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(*****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// The folder secrets are mounted in.
#[derive(Debug, Clone)]
pub struct SecretStore {
    dir: PathBuf,
}

/// Why a secret could not be read. Carries the name, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No file, or an empty one.
    #[error("secret {name:?} is missing (expected a file at {path})")]
    Missing {
        /// Secret name.
        name: String,
        /// Where it was looked for.
        path: String,
    },
    /// The file exists but could not be read as UTF-8 text.
    #[error("secret {name:?} could not be read: {reason}")]
    Unreadable {
        /// Secret name.
        name: String,
        /// The I/O error.
        reason: String,
    },
}

impl SecretStore {
    /// A store reading from `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads secret `name`, trimming the trailing newline a file often has.
    pub fn read(&self, name: &str) -> Result<Secret, SecretError> {
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let value = text.trim_end_matches(['\n', '\r']);
                if value.is_empty() {
                    Err(SecretError::Missing {
                        name: name.to_owned(),
                        path: path.display().to_string(),
                    })
                } else {
                    Ok(Secret::new(value))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretError::Missing {
                name: name.to_owned(),
                path: path.display().to_string(),
            }),
            Err(e) => Err(SecretError::Unreadable {
                name: name.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// Reads `name` if present; `Ok(None)` when missing.
    pub fn read_optional(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        match self.read(name) {
            Ok(s) => Ok(Some(s)),
            Err(SecretError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("secrets-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_and_trims_and_never_prints_the_value() {
        let dir = temp_dir("read");
        std::fs::write(dir.join("groq-api-key"), "gsk_live_value\n").unwrap();
        let store = SecretStore::new(&dir);
        let secret = store.read("groq-api-key").unwrap();
        assert_eq!(secret.expose(), "gsk_live_value");
        assert!(!format!("{secret:?} {secret}").contains("gsk_live_value"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_and_empty_secrets_are_reported_by_name() {
        let dir = temp_dir("missing");
        std::fs::write(dir.join("empty"), "\n").unwrap();
        let store = SecretStore::new(&dir);
        for name in ["absent", "empty"] {
            let err = store.read(name).unwrap_err();
            assert!(matches!(&err, SecretError::Missing { name: n, .. } if n == name));
        }
        assert_eq!(store.read_optional("absent"), Ok(None));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
