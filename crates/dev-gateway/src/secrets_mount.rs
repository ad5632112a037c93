//! Per-function secrets folders: a function sees only the secrets it lists in
//! `stack.yml`, as with the projected volume OpenFaaS mounts at
//! `/var/openfaas/secrets`.

use std::path::{Path, PathBuf};

use crate::Error;

/// The fleet's internal token: the one secret the dev gateway makes up when
/// it is missing, so that a local fleet runs with internal calls
/// authenticated and nothing to set up.
const INTERNAL_TOKEN: &str = "internal-token";

/// Writes a random internal token at `path` unless one is there. Functions
/// start concurrently, so the token is written whole to a file of its own
/// and then linked into place: the first link wins, and no one ever reads a
/// half-written token.
fn ensure_internal_token(path: &Path) -> Result<(), Error> {
    if path.is_file() {
        return Ok(());
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let draft = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&draft, token.as_bytes()).map_err(|e| Error::file("writing", &draft, e))?;
    let linked = std::fs::hard_link(&draft, path);
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the fleet's internal token");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::file("creating", path, e)),
    }
}

/// Name of the folder, inside the secrets folder, holding one folder per function.
pub const MOUNTS_DIR: &str = ".mounts";

/// Recreates `<secrets_dir>/.mounts/<function>/` holding copies of exactly the
/// listed secrets that exist in `secrets_dir`, and returns its absolute path.
/// Secrets that are listed but missing are logged and skipped (OpenFaaS would
/// refuse the deployment; locally the function gets to report it).
pub(crate) fn prepare_secrets_mount(
    secrets_dir: &Path,
    function: &str,
    secrets: &[String],
) -> Result<PathBuf, Error> {
    let mount = std::path::absolute(secrets_dir.join(MOUNTS_DIR).join(function))
        .map_err(|e| Error::file("resolving", secrets_dir, e))?;
    match std::fs::remove_dir_all(&mount) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::file("clearing", &mount, e)),
    }
    std::fs::create_dir_all(&mount).map_err(|e| Error::file("creating", &mount, e))?;
    for secret in secrets {
        if secret.is_empty() || secret.starts_with('.') || secret.contains(['/', '\\']) {
            tracing::warn!(function, secret, "ignoring secret with an invalid name");
            continue;
        }
        let source = secrets_dir.join(secret);
        if secret == INTERNAL_TOKEN {
            ensure_internal_token(&source)?;
        }
        if !source.is_file() {
            tracing::warn!(
                function,
                secret,
                path = %source.display(),
                "secret listed in stack.yml is missing from the secrets folder"
            );
            continue;
        }
        let target = mount.join(secret);
        std::fs::copy(&source, &target)
            .map_err(|e| Error::file("copying secret to", &target, e))?;
    }
    Ok(mount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internal_token_is_made_up_once_and_shared() {
        let dir = std::env::temp_dir().join(format!("dev-gateway-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let listed = vec![INTERNAL_TOKEN.to_owned()];
        let a = prepare_secrets_mount(&dir, "router", &listed).unwrap();
        let b = prepare_secrets_mount(&dir, "proxy", &listed).unwrap();
        let token_a = std::fs::read_to_string(a.join(INTERNAL_TOKEN)).unwrap();
        let token_b = std::fs::read_to_string(b.join(INTERNAL_TOKEN)).unwrap();
        assert_eq!(token_a.len(), 64);
        assert_eq!(token_a, token_b);
        // An existing token is kept.
        std::fs::write(dir.join(INTERNAL_TOKEN), "chosen").unwrap();
        let c = prepare_secrets_mount(&dir, "router", &listed).unwrap();
        assert_eq!(
            std::fs::read_to_string(c.join(INTERNAL_TOKEN)).unwrap(),
            "chosen"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn mounts_exactly_the_listed_existing_secrets() {
        let dir =
            std::env::temp_dir().join(format!("dev-gateway-secrets-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("groq-api-key"), "gsk-1\n").unwrap();
        std::fs::write(dir.join("vertex-sa"), "{}").unwrap();
        std::fs::write(dir.join("unlisted"), "nope").unwrap();

        let mount =
            prepare_secrets_mount(&dir, "router", &["groq-api-key".into(), "missing".into()])
                .unwrap();
        assert!(mount.is_absolute());
        assert!(mount.ends_with(".mounts/router"));
        let mut names: Vec<_> = std::fs::read_dir(&mount)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["groq-api-key"]);
        assert_eq!(
            std::fs::read_to_string(mount.join("groq-api-key")).unwrap(),
            "gsk-1\n"
        );

        // A later start with a different list leaves nothing stale behind.
        let mount =
            prepare_secrets_mount(&dir, "router", &["vertex-sa".into(), "../unlisted".into()])
                .unwrap();
        let names: Vec<_> = std::fs::read_dir(&mount)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["vertex-sa"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
