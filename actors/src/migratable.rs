//! The `Migratable` state contract: how an actor's state leaves one node and comes
//! back to life on another (or on the same node after a crash).
//!
//! A [`Snapshot`] is the state encoded through [`crate::codec`] plus the schema
//! version it was written with. `restore` accepts exactly the current version; an
//! older one goes through [`Migratable::upgrade`], which by default refuses. A newer
//! one is always refused: a node must never guess at a format it does not know.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};

/// Encoded actor state, as stored on disk and sent between nodes. The default is
/// the empty state of an actor that never ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The [`Migratable::SCHEMA_VERSION`] of the state that wrote it.
    pub schema_version: u32,
    /// The state, encoded as a codec body. A byte string on the wire: as a
    /// sequence, bincode spent a call per byte on it, which at 16 MiB of state was
    /// tens of milliseconds per commit, restore and migration.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Why a snapshot could not be restored. The fault lies with whoever wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// Written by a newer build; this build cannot read it.
    #[error("snapshot schema {found} is newer than this build's {supported}")]
    SchemaTooNew {
        /// Version in the snapshot.
        found: u32,
        /// Version this build writes.
        supported: u32,
    },
    /// Written by an older build and the type has no upgrade path for it.
    #[error("snapshot schema {found} cannot be upgraded to {supported}")]
    NoUpgrade {
        /// Version in the snapshot.
        found: u32,
        /// Version this build writes.
        supported: u32,
    },
    /// The bytes do not decode.
    #[error("snapshot does not decode: {0}")]
    Codec(#[from] CodecError),
}

/// State that can be snapshotted and restored, possibly on another node.
///
/// Implement it by naming the schema version; the encoding comes from serde through
/// the codec. Bump `SCHEMA_VERSION` whenever the encoded form changes, and override
/// [`Migratable::upgrade`] to read the versions you still accept.
pub trait Migratable: Serialize + DeserializeOwned + Sized {
    /// The version of the encoded form this build writes.
    const SCHEMA_VERSION: u32;

    /// Encodes the state.
    fn snapshot(&self) -> Result<Snapshot, CodecError> {
        Ok(Snapshot {
            schema_version: Self::SCHEMA_VERSION,
            bytes: codec::encode_body(self)?,
        })
    }

    /// Decodes a snapshot of the current version, or upgrades an older one.
    fn restore(snapshot: &Snapshot) -> Result<Self, RestoreError> {
        use std::cmp::Ordering;
        match snapshot.schema_version.cmp(&Self::SCHEMA_VERSION) {
            Ordering::Equal => Ok(codec::decode_body(&snapshot.bytes, codec::FRAME_BYTES_MAX)?),
            Ordering::Greater => Err(RestoreError::SchemaTooNew {
                found: snapshot.schema_version,
                supported: Self::SCHEMA_VERSION,
            }),
            Ordering::Less => Self::upgrade(snapshot),
        }
    }

    /// Reads a snapshot written with an older schema. The default refuses.
    fn upgrade(snapshot: &Snapshot) -> Result<Self, RestoreError> {
        Err(RestoreError::NoUpgrade {
            found: snapshot.schema_version,
            supported: Self::SCHEMA_VERSION,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct CounterV1 {
        count: u32,
    }
    impl Migratable for CounterV1 {
        const SCHEMA_VERSION: u32 = 1;
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct CounterV2 {
        count: u64,
        label: String,
    }
    impl Migratable for CounterV2 {
        const SCHEMA_VERSION: u32 = 2;
        fn upgrade(s: &Snapshot) -> Result<Self, RestoreError> {
            match s.schema_version {
                1 => {
                    let old: CounterV1 = codec::decode_body(&s.bytes, 1024)?;
                    Ok(Self {
                        count: u64::from(old.count),
                        label: String::new(),
                    })
                }
                found => Err(RestoreError::NoUpgrade {
                    found,
                    supported: 2,
                }),
            }
        }
    }

    #[test]
    fn snapshot_restores_and_upgrades() {
        let v1 = CounterV1 { count: 5 };
        let snap = v1.snapshot().unwrap();
        assert_eq!(CounterV1::restore(&snap).unwrap(), v1);
        assert_eq!(
            CounterV2::restore(&snap).unwrap(),
            CounterV2 {
                count: 5,
                label: String::new()
            }
        );
        let v2 = CounterV2 {
            count: 9,
            label: "x".into(),
        }
        .snapshot()
        .unwrap();
        assert_eq!(
            CounterV1::restore(&v2).unwrap_err(),
            RestoreError::SchemaTooNew {
                found: 2,
                supported: 1
            }
        );
        let v0 = Snapshot {
            schema_version: 0,
            bytes: vec![],
        };
        assert_eq!(
            CounterV1::restore(&v0).unwrap_err(),
            RestoreError::NoUpgrade {
                found: 0,
                supported: 1
            }
        );
        let bad = Snapshot {
            schema_version: 1,
            bytes: vec![],
        };
        assert!(matches!(
            CounterV1::restore(&bad),
            Err(RestoreError::Codec(CodecError::Truncated))
        ));
    }

    #[test]
    fn a_snapshot_is_a_byte_string_on_the_wire() {
        let snap = |n: usize| Snapshot {
            schema_version: 1,
            bytes: vec![0xFF; n],
        };
        let small = codec::encode_body(&snap(0)).unwrap().len();
        let big = codec::encode_body(&snap(100_000)).unwrap().len();
        // A length and the raw bytes: as a sequence, each 0xFF took three bytes.
        assert!(big - small <= 100_000 + 8, "{small} then {big}");
        let bytes = codec::encode_body(&snap(100_000)).unwrap();
        assert_eq!(
            codec::decode_body::<Snapshot>(&bytes, 1 << 20).unwrap(),
            snap(100_000)
        );
    }
}
