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

use crate::job::JobError;
use crate::placement::{NodeInfo, Unsatisfiable};

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
    Rejected(Rejection),
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

/// Why the scheduler refused a request; nothing changed. [`Rejection::fault`] says
/// whose fault it is: the request's (asking again unchanged gets the same answer),
/// the cluster's present state (the same request may succeed later), or the
/// scheduler's own. The text is what clients print.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    // The request is at fault.
    /// The signature does not verify over the request and nonce.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Deploy, stop and migrate need an allowlisted submitter's key.
    #[error("{signer} is not an allowlisted submitter")]
    NotSubmitter {
        /// Who signed.
        signer: NodeId,
    },
    /// A drain needs a submitter's key or the drained node's own.
    #[error("{signer} may not drain {node}")]
    MayNotDrain {
        /// Who signed.
        signer: NodeId,
        /// The node to drain.
        node: NodeId,
    },
    /// A status request needs a node's or a submitter's key.
    #[error("{signer} is neither a node nor a submitter")]
    NotNodeOrSubmitter {
        /// Who signed.
        signer: NodeId,
    },
    /// Reports need an allowlisted node's key.
    #[error("{signer} is not an allowlisted node")]
    NotNode {
        /// Who signed.
        signer: NodeId,
    },
    /// The job spec does not parse or validate (or names a kind no node has).
    #[error("{0}")]
    Spec(JobError),
    /// A name that makes no valid actor key.
    #[error("`{key}` is not a valid actor key")]
    InvalidKey {
        /// The name.
        key: String,
    },
    /// No such job.
    #[error("no job named `{job}`")]
    UnknownJob {
        /// The name asked for.
        job: String,
    },
    /// No such actor.
    #[error("no actor `{actor}`")]
    UnknownActor {
        /// The key asked for.
        actor: String,
    },
    /// No such node.
    #[error("{node} is not a member")]
    UnknownNode {
        /// The node asked for.
        node: NodeId,
    },
    /// The target node's tags do not satisfy the actor's constraints.
    #[error("{node} does not satisfy `{constraint}`")]
    ConstraintUnmet {
        /// The target.
        node: NodeId,
        /// The actor's constraint expression.
        constraint: String,
    },

    // The cluster's present state is at fault.
    /// The scheduler has no view of the cluster yet (it just started or was
    /// restored); the request may be asked again at once.
    #[error("the scheduler is starting (no view of the cluster yet); retry")]
    Starting,
    /// A job of that name runs with another spec.
    #[error("job `{job}` already runs with another spec; stop it first")]
    JobExists {
        /// The name.
        job: String,
    },
    /// No node can take one of the job's actors now; nothing was deployed.
    #[error("unsatisfiable: stage `{stage}` replica {replica}: {why}")]
    Unsatisfiable {
        /// The stage.
        stage: String,
        /// Which of its replicas.
        replica: u32,
        /// Why nothing fits.
        why: Unsatisfiable,
    },
    /// The actor is already where the move would take it (the scheduler's
    /// placement may be a report behind the hosts').
    #[error("`{actor}` already runs on {node}")]
    AlreadyThere {
        /// The actor.
        actor: String,
        /// Its host.
        node: NodeId,
    },
    /// The target node is not alive.
    #[error("{node} is not a live member")]
    NotLive {
        /// The target.
        node: NodeId,
    },
    /// The target node is not alive, or is being drained.
    #[error("{node} is not a live, undrained member")]
    Unavailable {
        /// The target.
        node: NodeId,
    },
    /// The target node lacks the room.
    #[error("{node} has no room for `{actor}`")]
    NoRoom {
        /// The target.
        node: NodeId,
        /// The actor.
        actor: String,
    },

    // The scheduler is at fault.
    /// Something the scheduler built itself failed (a bug).
    #[error("internal scheduler error: {0}")]
    Internal(String),
}

/// Whose fault a [`Rejection`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The request: change it before asking again.
    Request,
    /// The cluster's present state: the same request may succeed later.
    Cluster,
    /// The scheduler (a bug).
    Scheduler,
}

impl Rejection {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            Rejection::BadSignature(_)
            | Rejection::NotSubmitter { .. }
            | Rejection::MayNotDrain { .. }
            | Rejection::NotNodeOrSubmitter { .. }
            | Rejection::NotNode { .. }
            | Rejection::Spec(_)
            | Rejection::InvalidKey { .. }
            | Rejection::UnknownJob { .. }
            | Rejection::UnknownActor { .. }
            | Rejection::UnknownNode { .. }
            | Rejection::ConstraintUnmet { .. } => Fault::Request,
            Rejection::Starting
            | Rejection::JobExists { .. }
            | Rejection::Unsatisfiable { .. }
            | Rejection::AlreadyThere { .. }
            | Rejection::NotLive { .. }
            | Rejection::Unavailable { .. }
            | Rejection::NoRoom { .. } => Fault::Cluster,
            Rejection::Internal(_) => Fault::Scheduler,
        }
    }
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
    ///
    /// Refuses a spec no job could produce: more than [`crate::job::STAGES_MAX`]
    /// output stages, or an output stage with a replica count outside
    /// `1..=`[`crate::job::STAGE_REPLICAS_MAX`]. The spec comes with a peer's
    /// command, and [`ActorSpec::output_keys`] builds one key per downstream
    /// replica: without this bound a 50-byte spec claiming `u32::MAX` replicas made
    /// the receiving node allocate until it ran out of memory (found by the
    /// `actor_spec` fuzz target).
    pub fn decode(bytes: &[u8]) -> Result<ActorSpec, CodecError> {
        let spec: ActorSpec = codec::decode_body(bytes, 1 << 20)?;
        if spec.outputs.len() > crate::job::STAGES_MAX {
            return Err(CodecError::Malformed(format!(
                "{} output stages; the limit is {}",
                spec.outputs.len(),
                crate::job::STAGES_MAX
            )));
        }
        if let Some((stage, n)) = spec
            .outputs
            .iter()
            .find(|(_, n)| *n == 0 || *n > crate::job::STAGE_REPLICAS_MAX)
        {
            return Err(CodecError::Malformed(format!(
                "output stage `{stage}` has {n} replicas; the bounds are 1..={}",
                crate::job::STAGE_REPLICAS_MAX
            )));
        }
        Ok(spec)
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

    fn spec_with(outputs: Vec<(String, u32)>) -> ActorSpec {
        ActorSpec {
            job: "j".into(),
            stage: "s".into(),
            index: 0,
            kind: "k".into(),
            config: "{}".into(),
            outputs,
        }
    }

    #[test]
    fn actor_specs_no_job_could_produce_are_refused() {
        use crate::job::{STAGE_REPLICAS_MAX, STAGES_MAX};
        let most: Vec<_> = (0..STAGES_MAX)
            .map(|i| (format!("t{i}"), STAGE_REPLICAS_MAX))
            .collect();
        let ok = spec_with(most.clone());
        assert_eq!(ActorSpec::decode(&ok.encode().unwrap()).unwrap(), ok);
        assert_eq!(
            ok.output_keys().len(),
            STAGES_MAX * STAGE_REPLICAS_MAX as usize
        );
        // The fuzzer's out-of-memory input: a few bytes claiming u32::MAX replicas.
        let huge = spec_with(vec![("t".into(), u32::MAX)]);
        assert!(ActorSpec::decode(&huge.encode().unwrap()).is_err());
        let over = spec_with(vec![("t".into(), STAGE_REPLICAS_MAX + 1)]);
        assert!(ActorSpec::decode(&over.encode().unwrap()).is_err());
        let zero = spec_with(vec![("t".into(), 0)]);
        assert!(ActorSpec::decode(&zero.encode().unwrap()).is_err());
        let mut wide = most;
        wide.push(("extra".into(), 1));
        assert!(ActorSpec::decode(&spec_with(wide).encode().unwrap()).is_err());
    }

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
