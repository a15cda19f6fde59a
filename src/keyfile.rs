//! The key file: where a replica's encryption keys come from when `HEXBROKER_ENCRYPTION_KEYS`
//! is unset. With SQLite, a file beside the database (made on first run, mode 0600, never made
//! anew beside a database that holds values sealed by another key); with Postgres, the keys must
//! be configured.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::config::Config;
use crate::crypto::{self, Keyring};
use crate::store;

/// Why Postgres will not start without keys.
pub(crate) const POSTGRES_NEEDS_KEYS: &str =
    "HEXBROKER_ENCRYPTION_KEYS: is required with Postgres; create a key with `hexbroker encryption-key generate`";

/// The configured keyring; with SQLite and none configured, the key file beside the database
/// (generated on first run, mode 0600). `holds_sealed` says the database already holds values
/// sealed by some key, so that a missing key file is an error rather than a fresh key.
pub(crate) fn resolve_keyring(config: &Config, holds_sealed: bool) -> anyhow::Result<Keyring> {
    if let Some(keyring) = &config.encryption_keys {
        return Ok(keyring.clone());
    }
    if !config.is_sqlite() {
        bail!(POSTGRES_NEEDS_KEYS);
    }
    match key_file_path(config) {
        Some(path) => key_file(&path, holds_sealed),
        None => {
            tracing::warn!(
                "HEXBROKER_ENCRYPTION_KEYS is unset and the database is in memory: using a throwaway key"
            );
            Ok(Keyring::parse(&Keyring::generate_entry())?)
        }
    }
}

/// The key file hexbroker uses when `HEXBROKER_ENCRYPTION_KEYS` is unset: `<database>.key` beside
/// a SQLite file; `None` when keys are configured, or on Postgres, or for an in-memory database.
pub fn key_file_path(config: &Config) -> Option<PathBuf> {
    if config.encryption_keys.is_some() || !config.is_sqlite() {
        return None;
    }
    let mut path = store::sqlite_database_file(&config.database_url)?.into_os_string();
    path.push(".key");
    Some(PathBuf::from(path))
}

/// The keyring in the key file at `path`, made on first run. A database that already holds
/// sealed values never gets a fresh key beside it: that key would open nothing. Two processes
/// starting at once both end up with the one file: each writes a whole file under a name of its
/// own and links it into place, and the one that finds the place taken reads the other's.
fn key_file(path: &Path, holds_sealed: bool) -> anyhow::Result<Keyring> {
    if let Some(keyring) = read_key_file(path)? {
        tracing::warn!(key_file = %path.display(), "HEXBROKER_ENCRYPTION_KEYS is unset: using the key file beside the SQLite database");
        return Ok(keyring);
    }
    if holds_sealed {
        bail!(
            "this database's key file is missing: expected it at {}. The database holds values sealed \
             by the key that was in it, and a fresh key would open none of them; restore the file from \
             a backup, or set HEXBROKER_ENCRYPTION_KEYS to that key",
            path.display()
        );
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.tmp", hex::encode(crypto::random_bytes::<8>())));
    let staging = std::path::PathBuf::from(staging);
    let written = write_new_key_file(&staging).and_then(|()| match std::fs::hard_link(&staging, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    });
    let _ = std::fs::remove_file(&staging);
    if written.with_context(|| format!("creating the key file {}", path.display()))? {
        tracing::warn!(
            key_file = %path.display(),
            "HEXBROKER_ENCRYPTION_KEYS is unset: generated an encryption key beside the SQLite database; \
             back it up, or set HEXBROKER_ENCRYPTION_KEYS for production"
        );
    }
    read_key_file(path)?.with_context(|| format!("the key file {} vanished while starting", path.display()))
}

/// Writes a fresh keyring to a new file at `path`, readable by its owner alone, and syncs it.
fn write_new_key_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let entry = zeroize::Zeroizing::new(Keyring::generate_entry());
    writeln!(file, "{}", entry.as_str())?;
    file.sync_all()
}

/// The keyring in the key file, or `None` when there is no file. A file that group or others
/// may read is repaired to 0600 with a warning (its key may have been read: rotate it).
fn read_key_file(path: &Path) -> anyhow::Result<Option<Keyring>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => zeroize::Zeroizing::new(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the key file {}", path.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).with_context(|| {
                format!(
                    "the key file {} may be read by other users (mode {:o}) and could not be made 0600",
                    path.display(),
                    mode & 0o777
                )
            })?;
            tracing::warn!(
                key_file = %path.display(),
                was = format!("{:o}", mode & 0o777),
                "the key file could be read by other users; made it 0600. If others had access, \
                 rotate the key (`hexbroker encryption-key generate`, then `hexbroker reencrypt`)"
            );
        }
    }
    Keyring::parse(&text)
        .map(Some)
        .with_context(|| format!("the key file {} is not a KID:BASE64 keyring", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_that_others_can_read_is_made_0600_and_still_opens() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.key");
        let entry = Keyring::generate_entry();
        std::fs::write(&path, format!("{entry}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let keyring = key_file(&path, true).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(keyring.active_key_id(), entry.split_once(':').unwrap().0);
    }

    #[test]
    fn a_missing_key_file_beside_sealed_rows_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.key");
        let err = format!("{:#}", key_file(&path, true).unwrap_err());
        assert!(err.contains("key file is missing"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!path.exists(), "no fresh key was written");
    }

    #[test]
    fn processes_creating_the_key_file_at_once_all_end_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.key");
        let barrier = std::sync::Barrier::new(8);
        let rings: Vec<Keyring> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        key_file(&path, false)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        });
        let sealed = rings[0].seal(b"aad", b"value");
        for ring in &rings {
            assert_eq!(ring.open(b"aad", &sealed).unwrap().as_slice(), b"value");
        }
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no staging file is left behind: {left:?}");
    }
}
