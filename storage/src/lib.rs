//! Plexus storage, sans-IO.
//!
//! Everything storage decides, as pure code: what a file's id is ([`cid`]), how a
//! file becomes chunks and a manifest ([`manifest`]), how a chunk is sealed for its
//! readers ([`seal`]), which nodes hold a chunk ([`placement`]), what a shard does
//! to keep every chunk at its replication factor ([`repair`]), and the replicated
//! key-value store ([`kv`]). The daemon's storage service (`src/storage/` in the
//! `plexus` crate) carries bytes to and from rocksdb and the mesh; the simulator
//! drives the same cores.
//!
//! Never here: a clock, OS randomness, a socket, a file. Keys, nonces and `now`
//! come in as arguments. The exceptions are behind the `client` feature (off by
//! default): wrapping a file key to readers with the age format ([`access`]),
//! whose library draws its own ephemeral keys, and sealing chunks
//! ([`seal::Sealer`]) with ring, whose tree carries `getrandom` for ring's own
//! generator (the sealer draws nothing: keys and nonces come in).
//!
//! `docs/design/storage.md` states the guarantees, the formats and the threat model.

#![forbid(unsafe_code)]

pub mod cid;
pub mod gc;
pub mod kv;
pub mod manifest;
pub mod placement;
pub mod put;
pub mod repair;
pub mod seal;
pub mod wire;

#[cfg(feature = "client")]
pub mod access;

pub use cid::{ChunkId, CidError};
pub use manifest::{Manifest, ManifestError, Sealing};
