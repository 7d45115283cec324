//! Reading a whole file out of storage inside the daemon: for model weights that
//! an `infer` stage names by content id (`weights = "bafk…"`).
//!
//! The node reads through its own storage service (so from any holder, each
//! chunk verified) and opens a sealed file with the node's own age identity
//! (`<data dir>/identity.age`, its recipient shown by `GET /v1/node`): a model
//! stored sealed reaches only the nodes it was shared with.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::sync::OnceLock;

use plexus_actors::runtime::ActorRef;
use plexus_storage::access::{self, Identity};
use plexus_storage::seal::Sealer;
use plexus_storage::wire::Bytes;
use plexus_storage::{ChunkId, Manifest, Sealing};
use tokio::sync::oneshot;

use super::{KvRequest, StorageMsg};
use crate::hosting::infer::WeightsSource;

/// The largest file read whole (model weights).
pub const FILE_BYTES_MAX: u64 = 512 << 20;

async fn get(storage: &ActorRef<StorageMsg>, chunk: ChunkId) -> Result<Bytes, String> {
    let (tx, rx) = oneshot::channel();
    storage
        .tell(StorageMsg::Get { chunk, reply: tx })
        .await
        .map_err(|e| e.to_string())?;
    rx.await
        .map_err(|_| "the storage service stopped".to_string())?
        .map_err(|e| e.to_string())
}

/// File `id`, whole, opened with `identity` if sealed.
pub async fn read_file(
    storage: &ActorRef<StorageMsg>,
    id: ChunkId,
    identity: &Identity,
) -> Result<Vec<u8>, String> {
    let manifest = Manifest::decode(&get(storage, id).await?).map_err(|e| format!("{id}: {e}"))?;
    if manifest.size > FILE_BYTES_MAX {
        return Err(format!(
            "{id} is {} bytes, over the {FILE_BYTES_MAX} read whole",
            manifest.size
        ));
    }
    let sealer = match manifest.sealing {
        Sealing::XChaCha20Poly1305 { nonce_prefix } => {
            let (tx, rx) = oneshot::channel();
            storage
                .tell(StorageMsg::Kv(KvRequest::List {
                    prefix: format!("{}{id}/", crate::api::fs::KEY_PREFIX),
                    limit: crate::api::fs::LIST_MAX,
                    reply: tx,
                }))
                .await
                .map_err(|e| e.to_string())?;
            let found = rx.await.map_err(|_| "the storage service stopped")?;
            let key =
                access::unwrap(identity, found.iter().map(|(_, v)| v.as_slice())).map_err(|e| {
                    format!(
                        "{id}: {e} (this node's recipient is {})",
                        identity.to_public()
                    )
                })?;
            Some(Sealer::new(
                &key,
                nonce_prefix,
                manifest.chunks.len() as u64,
            ))
        }
        _ => None,
    };
    let mut out = Vec::with_capacity(usize::try_from(manifest.size).unwrap_or(0));
    for (i, c) in manifest.chunks.iter().enumerate() {
        let bytes = get(storage, *c).await?;
        if bytes.len() != manifest.stored_len(i) {
            return Err(format!("{id}: chunk {i} has the wrong length"));
        }
        match &sealer {
            Some(s) => out.extend(s.open(i as u64, &bytes).map_err(|e| e.to_string())?),
            None => out.extend(bytes),
        }
    }
    Ok(out)
}

/// Model weights from storage, for the `infer` kind: bound to the storage
/// service once it has started.
pub struct StorageWeights {
    storage: OnceLock<ActorRef<StorageMsg>>,
    identity: Identity,
}

impl StorageWeights {
    /// A source that opens sealed files with `identity`.
    pub fn new(identity: Identity) -> Self {
        StorageWeights {
            storage: OnceLock::new(),
            identity,
        }
    }

    /// Binds the storage service (once).
    pub fn bind(&self, storage: ActorRef<StorageMsg>) {
        let _ = self.storage.set(storage);
    }
}

impl WeightsSource for StorageWeights {
    fn fetch(&self, id: ChunkId) -> Result<Vec<u8>, String> {
        let storage = self
            .storage
            .get()
            .ok_or_else(|| "the storage service has not started".to_string())?
            .clone();
        let handle = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        // The kind's build is synchronous; the fetch is a few messages to the
        // storage service, on another task.
        tokio::task::block_in_place(|| handle.block_on(read_file(&storage, id, &self.identity)))
    }
}
