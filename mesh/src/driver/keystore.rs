//! Key files on disk: a node's identity, a network's governance key, a client key.
//!
//! A key file is a codec frame holding the 32-byte ed25519 seed. It is created with
//! mode 0600 by writing a temporary file in the same directory, syncing it and
//! renaming it into place, so a crash never leaves a half-written key. A key file
//! readable by group or others is refused, as OpenSSH does.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use plexus_actors::codec;
use serde::{Deserialize, Serialize};

use plexus_vocab::identity::NodeKey;

/// File name of a node's identity key inside its data directory.
pub const NODE_KEY_FILE: &str = "node.key";

#[derive(Serialize, Deserialize)]
struct KeyFile {
    algorithm: String,
    seed: [u8; 32],
}

/// Why a key could not be read or written. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a key file.
    #[error("{path}: not a Plexus key file ({reason})")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Others can read the key.
    #[error(
        "{path}: permissions {mode:o} are too open; the key must be readable by its owner only (chmod 600)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Refusing to overwrite an existing key.
    #[error("{0}: a key exists already")]
    Exists(PathBuf),
    /// The OS random source failed, so no key (or temporary name) was made.
    #[error("the OS random source failed ({0}); refusing to make a predictable key")]
    Randomness(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyStoreError + '_ {
    move |source| KeyStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a key file.
pub fn read_key(path: &Path) -> Result<NodeKey, KeyStoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyStoreError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let bytes = fs::read(path).map_err(io(path))?;
    let file: KeyFile =
        codec::decode_with_limit(&bytes, 1024).map_err(|e| KeyStoreError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if file.algorithm != "ed25519" {
        return Err(KeyStoreError::Malformed {
            path: path.to_path_buf(),
            reason: format!("unknown algorithm `{}`", file.algorithm),
        });
    }
    Ok(NodeKey::from_seed(file.seed))
}

/// Writes `key` to `path`, atomically, mode 0600. Fails if the file exists, even
/// when another process creates it at the same moment: the key is written to a
/// fresh temporary file and then hard-linked into place, and a link never replaces
/// an existing file (no check-then-rename race).
pub fn write_new_key(path: &Path, key: &NodeKey) -> Result<(), KeyStoreError> {
    let bytes = codec::encode(&KeyFile {
        algorithm: "ed25519".into(),
        seed: key.seed(),
    })
    .map_err(|e| KeyStoreError::Malformed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_new(path, &bytes, 0o600)
}

/// Writes `bytes` to a new file at `path` (mode `mode`), atomically; fails with
/// [`KeyStoreError::Exists`] if `path` exists.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyStoreError> {
    let (dir, tmp) = write_temp(path, bytes, mode)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(KeyStoreError::Exists(path.to_path_buf()));
        }
        Err(e) => return Err(io(path)(e)),
    }
    sync_dir(&dir);
    Ok(())
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync directory),
/// creating parent directories (mode 0700). Replaces an existing file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyStoreError> {
    let (dir, tmp) = write_temp(path, bytes, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    sync_dir(&dir);
    Ok(())
}

/// How many random temporary names are tried before giving up.
const TEMP_TRIES_MAX: usize = 8;

/// Writes `bytes` to a new temporary file beside `path`, created exclusively
/// (`O_EXCL`) under a random name, with `mode` from the start, and synced. The
/// name is unpredictable, so another local user cannot pre-create it or link it
/// somewhere else.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> Result<(PathBuf, PathBuf), KeyStoreError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    create_private_dir(&dir)?;
    let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    for _ in 0..TEMP_TRIES_MAX {
        let mut suffix = [0u8; 12];
        // Fail closed: without OS randomness the name would be guessable.
        getrandom::fill(&mut suffix).map_err(|e| KeyStoreError::Randomness(e.to_string()))?;
        let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!(".{base}.tmp-{suffix}"));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let _ = mode;
        let mut file = match options.open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&tmp)(e)),
        };
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        return Ok((dir, tmp));
    }
    Err(io(path)(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no free temporary name",
    )))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Creates a directory (and parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> Result<(), KeyStoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io(dir))
}

/// Loads the node key from `data_dir`, creating one from `fresh_seed` on first start.
pub fn load_or_create_node_key(
    data_dir: &Path,
    fresh_seed: impl FnOnce() -> Result<[u8; 32], KeyStoreError>,
) -> Result<NodeKey, KeyStoreError> {
    let path = data_dir.join(NODE_KEY_FILE);
    if path.exists() {
        return read_key(&path);
    }
    let key = NodeKey::from_seed(fresh_seed()?);
    match write_new_key(&path, &key) {
        Ok(()) => Ok(key),
        // Another process created it between the check and the link: use theirs.
        Err(KeyStoreError::Exists(_)) => read_key(&path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("plexus-keystore-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn created_once_with_0600_and_reused() {
        let dir = temp_dir("reuse");
        let a = load_or_create_node_key(&dir, || Ok([3; 32])).unwrap();
        let b = load_or_create_node_key(&dir, || Ok([4; 32])).unwrap();
        assert_eq!(a.node_id(), b.node_id(), "the second start reuses the key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(NODE_KEY_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(
            write_new_key(&dir.join(NODE_KEY_FILE), &a),
            Err(KeyStoreError::Exists(_))
        ));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn open_permissions_and_junk_are_refused() {
        let dir = temp_dir("junk");
        create_private_dir(&dir).unwrap();
        let path = dir.join("bad.key");
        write_atomic(&path, b"not a key", 0o600).unwrap();
        assert!(matches!(
            read_key(&path),
            Err(KeyStoreError::Malformed { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let good = dir.join("good.key");
            write_new_key(&good, &NodeKey::from_seed([1; 32])).unwrap();
            fs::set_permissions(&good, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                read_key(&good),
                Err(KeyStoreError::Permissions { mode: 0o644, .. })
            ));
        }
        assert!(matches!(
            read_key(&dir.join("missing.key")),
            Err(KeyStoreError::Io { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }

    /// Many writers racing for one key file: exactly one wins, the file holds the
    /// winner's key, and no temporary file is left behind. With the old
    /// check-then-rename, every racer "won" and the last rename silently replaced
    /// the key the others had already returned.
    #[test]
    fn racing_creators_never_replace_a_key() {
        let dir = temp_dir("race");
        create_private_dir(&dir).unwrap();
        let path = dir.join("race.key");
        let results: Vec<(u8, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..=8u8)
                .map(|i| {
                    let path = path.clone();
                    s.spawn(move || {
                        (
                            i,
                            write_new_key(&path, &NodeKey::from_seed([i; 32])).is_ok(),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<u8> = results
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "exactly one creator wins: {results:?}");
        let on_disk = read_key(&path).unwrap();
        assert_eq!(
            on_disk.seed(),
            [winners[0]; 32],
            "the file holds the winner's key"
        );
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        let _ = fs::remove_dir_all(&dir);
    }
}
