//! What clients and nodes say to the scheduler, and what it answers.
//!
//! Every request is signed by its sender's ed25519 key. Deploy, stop and migrate
//! need an allowlisted submitter key; a drain needs the drained node's own key (or
//! a submitter's); reports need an allowlisted node's key.

use std::collections::{BTreeMap, BTreeSet};

use plexus_actors::NodeId;
use plexus_actors::codec::{self, CodecError};
use plexus_durable::types::{Ballot, DurableKey, ReplicaSet};
use plexus_vocab::identity::{self, NodeKey, SignatureError};
use serde::{Deserialize, Serialize};

use crate::placement::NodeInfo;

/// Signature domain of scheduler requests.
const DOMAIN: &[u8] = b"plexus/scheduler-request/v1";

/// The scheduler's durable key.
pub const SCHEDULER_KEY: &str = "plexus/scheduler";

/// A request to the scheduler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Deploy a job (the TOML text is what was signed and what runs).
    Deploy {
        /// The job spec.
        spec: String,
    },
    /// Stop a job and forget its actors' state.
    Stop {
        /// Its name.
        job: String,
    },
    /// Move an actor, live.
    Migrate {
        /// Its key (`job/stage/index`).
        actor: String,
        /// The target node.
        to: NodeId,
    },
    /// Move everything off a node (it is shutting down).
    Drain {
        /// The node.
        node: NodeId,
    },
    /// What runs where.
    Status,
    /// A node reports on an actor.
    Report(Report),
}

/// A node's report on an actor it hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Report {
    /// The actor serves on `node`, committing to `set`.
    Active {
        /// The actor.
        key: String,
        /// Where.
        node: NodeId,
        /// Its replica set.
        set: ReplicaSet,
        /// The activation's ballot: a report under a lower ballot than one already
        /// heard is stale (it crossed a newer activation's) and is ignored.
        ballot: Ballot,
    },
    /// The actor failed for good (its code keeps failing, or its state does not
    /// restore).
    Failed {
        /// The actor.
        key: String,
        /// Where.
        node: NodeId,
        /// Why.
        why: String,
    },
}

/// Largest encoded client request accepted (a job spec is a few KiB).
pub const REQUEST_BYTES_MAX: usize = 1 << 20;

/// A signed request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signed {
    /// The request.
    pub request: Request,
    /// Makes each signature unique.
    pub nonce: u64,
    /// The signing key.
    pub signer: NodeId,
    /// ed25519 over the encoded `(request, nonce)`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl Signed {
    /// Signs a request.
    pub fn sign(request: Request, nonce: u64, key: &NodeKey) -> Result<Signed, CodecError> {
        let body = codec::encode_body(&(&request, nonce))?;
        Ok(Signed {
            request,
            nonce,
            signer: key.node_id(),
            signature: key.sign(DOMAIN, &body).to_vec(),
        })
    }

    /// Encodes for a client to send (a versioned codec frame).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// Decodes what a client sent; malformed or oversized input is an error.
    pub fn decode(bytes: &[u8]) -> Result<Signed, CodecError> {
        codec::decode_with_limit(bytes, REQUEST_BYTES_MAX)
    }

    /// Checks the signature.
    pub fn verify(&self) -> Result<(), SignatureError> {
        let body = codec::encode_body(&(&self.request, self.nonce))
            .map_err(|_| SignatureError::Length(0))?;
        identity::verify(&self.signer, DOMAIN, &body, &self.signature)
    }
}

/// What the scheduler's host tells it every tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// The node hosting the scheduler.
    pub me: Option<NodeId>,
    /// Every node membership knows, alive or not, with tags and capacity.
    pub nodes: Vec<NodeInfo>,
    /// Where each durable actor is active (the cluster registry).
    pub locations: BTreeMap<String, NodeId>,
    /// Keys allowed to submit.
    pub submitters: BTreeSet<NodeId>,
    /// Nodes in the allowlist.
    pub members: BTreeSet<NodeId>,
    /// Actor kinds the scheduler's node knows (all nodes run the same build).
    pub kinds: BTreeSet<String>,
}

/// The scheduler's inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// A signed request from a client or a node.
    Signed(Signed),
    /// A tick (local only: refused from senders).
    Tick(View),
}

/// The scheduler's answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The job is placed; its actors are starting.
    Deployed {
        /// The job.
        job: String,
        /// Where each actor goes.
        actors: Vec<(String, NodeId)>,
    },
    /// Refused; nothing changed.
    Rejected {
        /// Why.
        reason: String,
    },
    /// The job is gone.
    Stopped {
        /// The job.
        job: String,
        /// How many actors it had.
        actors: usize,
    },
    /// The move is under way.
    Migrating {
        /// The actor.
        actor: String,
        /// From.
        from: NodeId,
        /// To.
        to: NodeId,
    },
    /// The drain is under way.
    Draining {
        /// The node.
        node: NodeId,
        /// Actors to move off it.
        actors: usize,
    },
    /// Everything the scheduler knows.
    Status(Status),
    /// A report was taken.
    Noted,
}

/// A snapshot of the scheduler's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Where the scheduler runs.
    pub host: Option<NodeId>,
    /// The jobs.
    pub jobs: Vec<JobStatus>,
    /// Their actors.
    pub actors: Vec<ActorStatus>,
    /// Nodes being drained.
    pub draining: Vec<NodeId>,
}

/// One job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Name.
    pub name: String,
    /// Priority.
    pub priority: u32,
    /// Actors.
    pub actors: usize,
    /// Actors active now.
    pub running: usize,
    /// `running`, `starting`, `degraded` or `failed: ...`.
    pub state: String,
    /// Who deployed it.
    pub submitter: NodeId,
}

/// One actor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActorStatus {
    /// Its key.
    pub key: String,
    /// Its job.
    pub job: String,
    /// Its stage's kind.
    pub kind: String,
    /// Where it is (or is being started).
    pub node: NodeId,
    /// Whether it serves now.
    pub active: bool,
    /// Where its snapshots go.
    pub replicas: Vec<NodeId>,
    /// Whether a migration is under way, and where to.
    pub moving_to: Option<NodeId>,
}

/// What a node runs for an actor (the opaque `spec` of durable commands).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActorSpec {
    /// The job.
    pub job: String,
    /// The stage.
    pub stage: String,
    /// Which replica of the stage.
    pub index: u32,
    /// The kind to run.
    pub kind: String,
    /// Its configuration (JSON text).
    pub config: String,
    /// Downstream stages and their replica counts.
    pub outputs: Vec<(String, u32)>,
}

impl ActorSpec {
    /// Encodes for a command.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode_body(self)
    }

    /// Decodes a command's spec.
    pub fn decode(bytes: &[u8]) -> Result<ActorSpec, CodecError> {
        codec::decode_body(bytes, 1 << 20)
    }

    /// The keys of every downstream actor, in stage then replica order (a name that
    /// is not a valid key is skipped; the job parser admits none).
    pub fn output_keys(&self) -> Vec<DurableKey> {
        self.outputs
            .iter()
            .flat_map(|(stage, n)| {
                (0..*n).filter_map(move |i| {
                    DurableKey::new(&crate::job::actor_key(&self.job, stage, i)).ok()
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_request_and_nonce() {
        let key = NodeKey::from_seed([3; 32]);
        let s = Signed::sign(Request::Status, 1, &key).unwrap();
        s.verify().unwrap();
        let mut forged = s.clone();
        forged.request = Request::Stop { job: "x".into() };
        assert!(forged.verify().is_err());
        let mut replayed = s.clone();
        replayed.nonce = 2;
        assert!(replayed.verify().is_err());
        let mut other = s;
        other.signer = NodeKey::from_seed([4; 32]).node_id();
        assert!(other.verify().is_err());
    }

    #[test]
    fn client_requests_round_trip() {
        let key = NodeKey::from_seed([3; 32]);
        let s = Signed::sign(
            Request::Deploy {
                spec: "name = \"x\"".into(),
            },
            9,
            &key,
        )
        .unwrap();
        let back = Signed::decode(&s.encode().unwrap()).unwrap();
        assert_eq!(back, s);
        back.verify().unwrap();
    }

    proptest::proptest! {
        /// The client-facing decoder never panics, whatever arrives.
        #[test]
        fn client_request_decoding_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = Signed::decode(&bytes);
        }
    }
}
