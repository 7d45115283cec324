//! What clients and nodes say to the scheduler, and what it answers.
//!
//! Every request is signed by its sender's ed25519 key. Deploy, stop and migrate
//! need an allowlisted submitter key; a drain needs the drained node's own key (or
//! a submitter's); a report needs the key of the node it is about.
//!
//! # Replay
//! The signature covers the request, the network's name, a per-signer sequence
//! number and an expiry (milliseconds since the Unix epoch). [`admit`] checks, with
//! no state, the signature, the network, the expiry against the time the
//! submitting host stamped on the request (no later than
//! [`VALIDITY_MAX_MS`] ahead), and the signer's rights; the host runs it before it
//! opens any session, and the scheduler again on apply. The scheduler then keeps
//! the highest sequence number it accepted from each signer and refuses any
//! request at or below it (see [`crate::core::State::seqs`]), so a captured
//! request is applied at most once, and not at all once it expires.
//!
//! Reports are the exception: they carry no expiry or sequence check (a node's
//! host has no wall clock, and its session numbers restart with the process).
//! They are bound to the reporting node instead (the signer must be the node the
//! report is about), travel on that node's exactly-once session, and are ordered
//! by ballot: a replayed report restates an activation the scheduler already
//! heard of, or is older than one it heard of and is ignored.

use std::collections::{BTreeMap, BTreeSet};

use plexus_actors::NodeId;
use plexus_actors::codec::{self, CodecError};
use plexus_durable::types::{Ballot, DurableKey, ReplicaSet};
use plexus_vocab::identity::{self, NodeKey, SignatureError};
use serde::{Deserialize, Serialize};

use crate::job::JobError;
use crate::placement::{NodeInfo, Unsatisfiable};

/// Signature domain of scheduler requests (v2: network, sequence and expiry).
const DOMAIN: &[u8] = b"plexus/scheduler-request/v2";

/// Furthest ahead of the host's clock an expiry may lie: bounds how long a
/// captured request stays usable, whatever its signer chose.
pub const VALIDITY_MAX_MS: u64 = 10 * 60 * 1000;

/// How long clients make their requests valid for (well under
/// [`VALIDITY_MAX_MS`], leaving room for clock skew).
pub const VALIDITY_DEFAULT_MS: u64 = 2 * 60 * 1000;

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
    /// A move the scheduler ordered failed at its source, `node`: it could not
    /// start (`started: false`: the actor was still restoring, or moving
    /// already), or the target refused the handoff or did not answer
    /// (`started: true`; the actor resumed at the source).
    MoveFailed {
        /// The actor.
        key: String,
        /// The source, reporting.
        node: NodeId,
        /// The target.
        to: NodeId,
        /// Whether the handoff left.
        started: bool,
        /// Why (the scheduler keeps at most [`WHY_BYTES_MAX`] of it).
        why: String,
    },
}

/// Most bytes of a reported reason the scheduler keeps.
pub const WHY_BYTES_MAX: usize = 256;

/// Largest encoded client request accepted (a job spec is a few KiB).
pub const REQUEST_BYTES_MAX: usize = 1 << 20;

/// A signed request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signed {
    /// The request.
    pub request: Request,
    /// The network it is meant for (the allowlist's name).
    pub network: String,
    /// The signer's sequence number: higher than any the signer used before
    /// (clients use their clock's microseconds).
    pub seq: u64,
    /// Not valid after this (milliseconds since the Unix epoch).
    pub expires_ms: u64,
    /// The signing key.
    pub signer: NodeId,
    /// ed25519 over the encoded `(request, network, seq, expires_ms)`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// What a signature covers.
fn body(
    request: &Request,
    network: &str,
    seq: u64,
    expires_ms: u64,
) -> Result<Vec<u8>, CodecError> {
    codec::encode_body(&(request, network, seq, expires_ms))
}

impl Signed {
    /// Signs a request for `network`, as the signer's `seq`th, valid until
    /// `expires_ms`.
    pub fn sign(
        request: Request,
        network: &str,
        seq: u64,
        expires_ms: u64,
        key: &NodeKey,
    ) -> Result<Signed, CodecError> {
        let bytes = body(&request, network, seq, expires_ms)?;
        Ok(Signed {
            request,
            network: network.to_string(),
            seq,
            expires_ms,
            signer: key.node_id(),
            signature: key.sign(DOMAIN, &bytes).to_vec(),
        })
    }

    /// Signs a request as a client does at wall time `since_epoch` (since the Unix
    /// epoch): its sequence number is that time in microseconds, higher than any
    /// earlier request of a signer whose clock moves forward, and it is valid for
    /// [`VALIDITY_DEFAULT_MS`]. The time comes in: the caller reads its clock.
    pub fn sign_at(
        request: Request,
        network: &str,
        since_epoch: std::time::Duration,
        key: &NodeKey,
    ) -> Result<Signed, CodecError> {
        let seq = u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX);
        let expires_ms = u64::try_from(since_epoch.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(VALIDITY_DEFAULT_MS);
        Signed::sign(request, network, seq, expires_ms, key)
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
        let bytes = body(&self.request, &self.network, self.seq, self.expires_ms)
            .map_err(|_| SignatureError::Length(0))?;
        identity::verify(&self.signer, DOMAIN, &bytes, &self.signature)
    }
}

/// Who may ask the scheduler anything, as the allowlist says.
#[derive(Clone, Copy, Debug)]
pub struct Rights<'a> {
    /// The network's name.
    pub network: &'a str,
    /// Keys allowed to submit.
    pub submitters: &'a BTreeSet<NodeId>,
    /// Allowlisted nodes.
    pub members: &'a BTreeSet<NodeId>,
}

/// Checks a request without any state: the signature, the network, the expiry
/// against `now_ms` (the submitting host's clock, milliseconds since the Unix
/// epoch; reports excepted, see the module doc), and whether the signer may ask
/// it. The host runs this before it opens a session for the request, and the
/// scheduler again before it looks at the request.
pub fn admit(signed: &Signed, rights: Rights<'_>, now_ms: u64) -> Result<(), Rejection> {
    signed
        .verify()
        .map_err(|e| Rejection::BadSignature(e.to_string()))?;
    if signed.network != rights.network {
        return Err(Rejection::WrongNetwork {
            found: signed.network.clone(),
            expected: rights.network.to_string(),
        });
    }
    let signer = signed.signer;
    let submitter = rights.submitters.contains(&signer);
    let member = rights.members.contains(&signer);
    if let Request::Report(report) = &signed.request {
        let node = report.node();
        if !member {
            return Err(Rejection::NotNode { signer });
        }
        if node != signer {
            return Err(Rejection::NotTheReporter { signer, node });
        }
        return Ok(());
    }
    if signed.expires_ms < now_ms {
        return Err(Rejection::Expired {
            expires_ms: signed.expires_ms,
            now_ms,
        });
    }
    if signed.expires_ms - now_ms > VALIDITY_MAX_MS {
        return Err(Rejection::ExpiryTooFar {
            expires_ms: signed.expires_ms,
            now_ms,
        });
    }
    match &signed.request {
        Request::Deploy { .. } | Request::Stop { .. } | Request::Migrate { .. } => {
            if !submitter {
                return Err(Rejection::NotSubmitter { signer });
            }
        }
        Request::Drain { node } => {
            if !(submitter || signer == *node) {
                return Err(Rejection::MayNotDrain {
                    signer,
                    node: *node,
                });
            }
        }
        Request::Status => {
            if !(submitter || member) {
                return Err(Rejection::NotNodeOrSubmitter { signer });
            }
        }
        Request::Report(_) => {}
    }
    Ok(())
}

impl Report {
    /// The node the report is about.
    pub fn node(&self) -> NodeId {
        match self {
            Report::Active { node, .. }
            | Report::Failed { node, .. }
            | Report::MoveFailed { node, .. } => *node,
        }
    }
}

/// What the scheduler's host tells it every tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// The node hosting the scheduler.
    pub me: Option<NodeId>,
    /// Every node membership knows, alive or not, with tags and capacity.
    pub nodes: Vec<NodeInfo>,
    /// Where each durable actor is active (the cluster registry, as far as the
    /// host's node holds it: see `partial`).
    pub locations: BTreeMap<String, NodeId>,
    /// Keys allowed to submit.
    pub submitters: BTreeSet<NodeId>,
    /// Nodes in the allowlist.
    pub members: BTreeSet<NodeId>,
    /// Actor kinds the scheduler's node knows (all nodes run the same build).
    pub kinds: BTreeSet<String>,
    /// The network's name (the allowlist's): requests must be signed for it.
    pub network: String,
    /// The registry is sharded: the host's node holds only some names, so an
    /// actor missing from `locations` is not known to be inactive. The scheduler
    /// then takes where actors run from their hosts' reports as well, which hosts
    /// repeat every [`REPORT_EVERY_TICKS`] ticks (see `Scheduler::tick`).
    pub partial: bool,
}

/// With a sharded registry ([`View::partial`]), how often (in scheduler ticks)
/// each host reports again every actor active on it.
pub const REPORT_EVERY_TICKS: u64 = 2;

/// The scheduler's inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// A signed request from a client or a node, stamped with the submitting
    /// host's clock (milliseconds since the Unix epoch) when it was submitted:
    /// the time its expiry is judged at, recorded with the input so every replay
    /// of the input log judges it alike.
    Signed {
        /// The request.
        signed: Signed,
        /// The submitting host's clock.
        now_ms: u64,
    },
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
    /// The signature does not verify over the request, network, sequence and
    /// expiry.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Signed for another network.
    #[error("the request is for network `{found}`, not `{expected}`")]
    WrongNetwork {
        /// The request's network.
        found: String,
        /// This network.
        expected: String,
    },
    /// Its expiry has passed.
    #[error("the request expired at {expires_ms} ms (now {now_ms} ms); sign it again")]
    Expired {
        /// Its expiry.
        expires_ms: u64,
        /// The host's clock.
        now_ms: u64,
    },
    /// Its expiry is further ahead than [`VALIDITY_MAX_MS`].
    #[error("the request's expiry {expires_ms} ms is too far past now ({now_ms} ms)")]
    ExpiryTooFar {
        /// Its expiry.
        expires_ms: u64,
        /// The host's clock.
        now_ms: u64,
    },
    /// The signer used this sequence number, or a higher one, before: a replay
    /// (or two clients sharing a key raced; sign it again).
    #[error("{signer} already used sequence {last}; {seq} is a replay or stale")]
    Replayed {
        /// Who signed.
        signer: NodeId,
        /// The request's sequence number.
        seq: u64,
        /// The highest the scheduler accepted from the signer.
        last: u64,
    },
    /// A report must be signed by the node it is about.
    #[error("{signer} may not report about {node}")]
    NotTheReporter {
        /// Who signed.
        signer: NodeId,
        /// The node the report is about.
        node: NodeId,
    },
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
    /// The scheduler keeps sequence numbers for [`crate::core::SIGNERS_MAX`]
    /// signers, and this one is new.
    #[error("the scheduler tracks too many signers already")]
    TooManySigners,
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
            | Rejection::WrongNetwork { .. }
            | Rejection::Expired { .. }
            | Rejection::ExpiryTooFar { .. }
            | Rejection::Replayed { .. }
            | Rejection::NotTheReporter { .. }
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
            | Rejection::NoRoom { .. }
            | Rejection::TooManySigners => Fault::Cluster,
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
    /// Why the last move ordered for it failed, as its host reported (kept until
    /// it moves; not kept when the scheduler itself moves).
    pub move_failed: Option<String>,
    /// Its stage's config (JSON text), e.g. the model an `infer` stage serves.
    pub config: String,
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
    fn a_request_signed_at_a_time_is_numbered_by_it_and_expires_after_the_default() {
        let key = NodeKey::from_seed([3; 32]);
        let at = std::time::Duration::from_micros(1_700_000_000_123_456);
        let s = Signed::sign_at(Request::Status, "net", at, &key).unwrap();
        s.verify().unwrap();
        assert_eq!(s.seq, 1_700_000_000_123_456);
        assert_eq!(s.expires_ms, 1_700_000_000_123 + VALIDITY_DEFAULT_MS);
        let later = Signed::sign_at(
            Request::Status,
            "net",
            at + std::time::Duration::from_micros(1),
            &key,
        )
        .unwrap();
        assert!(later.seq > s.seq);
    }

    #[test]
    fn signatures_cover_request_network_sequence_and_expiry() {
        let key = NodeKey::from_seed([3; 32]);
        let s = Signed::sign(Request::Status, "net", 1, 1_000, &key).unwrap();
        s.verify().unwrap();
        let mut forged = s.clone();
        forged.request = Request::Stop { job: "x".into() };
        assert!(forged.verify().is_err());
        let mut renumbered = s.clone();
        renumbered.seq = 2;
        assert!(renumbered.verify().is_err());
        let mut other_net = s.clone();
        other_net.network = "other".into();
        assert!(other_net.verify().is_err());
        let mut extended = s.clone();
        extended.expires_ms = 2_000;
        assert!(extended.verify().is_err());
        let mut other = s;
        other.signer = NodeKey::from_seed([4; 32]).node_id();
        assert!(other.verify().is_err());
    }

    #[test]
    fn admission_checks_network_expiry_rights_and_reporters() {
        let client = NodeKey::from_seed([3; 32]);
        let node = NodeKey::from_seed([4; 32]);
        let submitters: BTreeSet<NodeId> = [client.node_id()].into();
        let members: BTreeSet<NodeId> = [node.node_id(), NodeId::synthetic(7)].into();
        let rights = Rights {
            network: "net",
            submitters: &submitters,
            members: &members,
        };
        let stop = |net: &str, exp: u64, key: &NodeKey| {
            Signed::sign(Request::Stop { job: "x".into() }, net, 1, exp, key).unwrap()
        };
        admit(&stop("net", 1_000, &client), rights, 1_000).unwrap();
        assert!(matches!(
            admit(&stop("other", 1_000, &client), rights, 1_000),
            Err(Rejection::WrongNetwork { .. })
        ));
        assert!(matches!(
            admit(&stop("net", 999, &client), rights, 1_000),
            Err(Rejection::Expired { .. })
        ));
        assert!(matches!(
            admit(
                &stop("net", 1_001 + VALIDITY_MAX_MS, &client),
                rights,
                1_000
            ),
            Err(Rejection::ExpiryTooFar { .. })
        ));
        assert!(matches!(
            admit(&stop("net", 1_000, &node), rights, 1_000),
            Err(Rejection::NotSubmitter { .. })
        ));
        let mut bad = stop("net", 1_000, &client);
        bad.signature[0] ^= 1;
        assert!(matches!(
            admit(&bad, rights, 1_000),
            Err(Rejection::BadSignature(_))
        ));
        let report = |about: NodeId, key: &NodeKey| {
            let r = Report::Failed {
                key: "j/a/0".into(),
                node: about,
                why: "x".into(),
            };
            Signed::sign(Request::Report(r), "net", 1, 0, key).unwrap()
        };
        admit(&report(node.node_id(), &node), rights, 1_000).unwrap();
        assert!(matches!(
            admit(&report(NodeId::synthetic(7), &node), rights, 1_000),
            Err(Rejection::NotTheReporter { .. })
        ));
        assert!(matches!(
            admit(&report(client.node_id(), &client), rights, 1_000),
            Err(Rejection::NotNode { .. })
        ));
    }

    #[test]
    fn client_requests_round_trip() {
        let key = NodeKey::from_seed([3; 32]);
        let s = Signed::sign(
            Request::Deploy {
                spec: "name = \"x\"".into(),
            },
            "net",
            9,
            5,
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
