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

/// Writes `key` to `path`, atomically, mode 0600. Fails if the file exists.
pub fn write_new_key(path: &Path, key: &NodeKey) -> Result<(), KeyStoreError> {
    if path.exists() {
        return Err(KeyStoreError::Exists(path.to_path_buf()));
    }
    let bytes = codec::encode(&KeyFile {
        algorithm: "ed25519".into(),
        seed: key.seed(),
    })
    .map_err(|e| KeyStoreError::Malformed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes, 0o600)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync directory),
/// creating parent directories (mode 0700).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyStoreError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let _ = mode;
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
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
    fresh_seed: impl FnOnce() -> [u8; 32],
) -> Result<NodeKey, KeyStoreError> {
    let path = data_dir.join(NODE_KEY_FILE);
    if path.exists() {
        return read_key(&path);
    }
    let key = NodeKey::from_seed(fresh_seed());
    write_new_key(&path, &key)?;
    Ok(key)
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
        let a = load_or_create_node_key(&dir, || [3; 32]).unwrap();
        let b = load_or_create_node_key(&dir, || [4; 32]).unwrap();
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
}
