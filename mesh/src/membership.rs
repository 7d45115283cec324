//! SWIM membership and failure detection, as a sans-IO state machine.
//!
//! Each probe period every node pings one member, chosen by randomised round-robin.
//! No ack within `probe_timeout` and it asks `indirect_probes` others to ping the
//! target for it (ping-req). Still nothing by the end of the period and the target is
//! *suspected*. A suspect that does not refute within the suspicion timeout is
//! declared *dead*. The timeout is Lifeguard's: `suspicion_mult * max(1, log10 n)`
//! periods while this node alone suspects the member, cut on a log scale for each
//! other member that suspects it too, down to `suspicion_min_mult` periods at
//! `suspicion_confirmations` of them ("dogpile"). So a real crash, which every
//! prober sees, is declared within a few periods, while a suspicion born of a lost
//! frame, which nobody confirms, leaves the member the full timeout to refute.
//! Members that join are put at random places in the probe round, so nodes that
//! started together do not probe in step.
//!
//! **Local health** (Lifeguard's other half). A helper asked to ping a target that
//! stays silent says so to the asker ([`Probe::Nack`]). A failed probe that no
//! helper nacked, and a suspicion of this node that it had to refute, are signs
//! that this node is the slow one (overloaded, paused, its links lossy): each
//! raises its health score by one, and each acked probe lowers it by one. At score `s` the
//! node probes `s + 1` times slower and waits `s + 1` times longer for acks (up to
//! `health_max` times), so a sick node accuses healthy ones less.
//!
//! **Incarnations.** Every member carries an incarnation number that only its owner
//! raises. A node that hears it is suspected (or declared dead) at its current
//! incarnation raises it and re-announces itself alive: the refutation. Updates are
//! ordered: for the same member, a higher incarnation wins; at the same incarnation,
//! `Dead`/`Left` beat `Suspect`, which beats `Alive`.
//!
//! **Dissemination.** State changes ride on the protocol's own messages through a
//! [`BroadcastQueue`], each sent `O(log n)` times, so they reach every member in
//! `O(log n)` rounds. Every sync period a node also exchanges its full member list
//! with a random member (push-pull anti-entropy); half of those syncs go to a member
//! it believes dead, so two sides of a healed partition rediscover each other. A
//! sync to a live member starts with digests ([`Probe::SyncOffer`]): the lists are
//! exchanged only if the two views (or registries) differ.
//! A message from a member believed dead also triggers a full sync; one from a
//! stranger, a pull (a sync carrying only this node's own statement, which the
//! stranger answers with its view). A node that is alone asks one peer for its
//! view at a time. An update is piggybacked for at most
//! [`MembershipConfig::gossip_max_age`]; past that, syncs carry it. So a node
//! that has just exchanged full views (they differed) syncs again within
//! `sync_interval`, not the period stretched for the cluster's size
//! ([`MembershipConfig::sync_period`]): while views disagree, as after a mass
//! join, anti-entropy runs at its base rate; once a node's offer finds its
//! partner's view equal, it is back to the stretched period.
//!
//! **Who may say what (trust).** Admitted operators do not trust each other, so a
//! statement is only applied if its origin may make it:
//!
//! * *A node speaks only for itself.* `Alive` and `Left` about member X (its
//!   incarnation, its address and meta) are applied only if they carry X's signature
//!   over the statement ([`MemberUpdate::sign`], domain [`MEMBER_DOMAIN`]), or came
//!   straight from X (the transport-authenticated sender). Signed statements can be
//!   relayed by anyone: that is how gossip and syncs spread them. Each node keeps the
//!   latest signed statement of each member to relay.
//! * *Suspicion and death come from this node's own failure detector.* `Suspect` or
//!   `Dead` about X from anyone else is hearsay: it is never applied, it only makes
//!   this node probe X next (a *hint*, [`MembershipStats::hints`]). X is suspected
//!   here only when this node's own direct and indirect probes of X fail, and
//!   declared dead here only when its own suspicion times out. So a liar alone cannot
//!   get an honest node declared dead by anyone who can still reach it; the cost is
//!   that each node detects a death itself, which adds one hinted probe and one
//!   suspicion to [`MembershipConfig::detection_bound`]. Hearsay about *this*
//!   node still makes it refute (a harmless extra incarnation), so a node suspected
//!   by another's detector learns of it and proves itself alive.
//! * *Hearsay counts once per accuser, and only to shorten.* A node's own verdicts go
//!   out as signed accusations ([`MemberUpdate::accusation`], domain
//!   [`ACCUSE_DOMAIN`]), which anyone relays; an unsigned one counts for its
//!   transport-authenticated sender. Each distinct accuser of X (at X's current
//!   incarnation, within one full timeout) shortens this node's suspicion of X, at
//!   most `suspicion_confirmations` of them, and none raises one. So `k` colluding
//!   liars can shorten a suspicion this node's own probes raised (a lost frame) to
//!   `suspicion_min_mult` periods, and cannot make one. A forged accusation is
//!   refused ([`GossipRefused::Forged`]); an accusation of an earlier incarnation
//!   is ignored.
//! * *Incarnations are checked arithmetic with a bounded step.* A statement whose
//!   incarnation is more than [`INCARNATION_STEP_MAX`] above the one known for its
//!   member, or a first statement above [`INCARNATION_MAX`], is refused; raising this
//!   node's own incarnation never overflows (at the bound it stays put and the
//!   refutation is counted as refused). `u64::MAX` cannot wedge or panic anything.
//! * *Only admitted nodes exist.* With an admission set ([`Membership::set_admitted`],
//!   from the allowlist), statements about, hints about, probe requests for and
//!   messages from non-admitted nodes are ignored, and members no longer admitted are
//!   dropped.
//!
//! * *Acks count only from whom they must come:* the probed member, or a member this
//!   node asked to ping it; a relayed ack only from the member the relay pinged. A
//!   liar cannot keep a dead member alive by acking for it.
//!
//! Every refusal is counted by reason in [`MembershipStats::refused`], so an operator
//! can see a liar.
//!
//! **Bounds.** At most `members_max` members (more are ignored and counted); relay
//! state for ping-reqs expires after one period; dead members are forgotten after
//! `dead_retention`; piggybacked gossip is at most `gossip_per_message` updates.
//!
//! Inputs: [`Membership::handle_timeout`], [`Membership::handle_message`],
//! [`Membership::handle_discovered`], [`Membership::apply`]. Outputs, polled in any
//! order: [`Membership::poll_transmit`], [`Membership::poll_event`],
//! [`Membership::poll_timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use plexus_actors::rng::DetRng;
use plexus_actors::{NodeId, Time};
use serde::{Deserialize, Serialize};

use crate::admitted::Admitted;
use crate::broadcast::{BroadcastQueue, ceil_log2};
use crate::shuffle::Shuffle;
use crate::sig::SigBytes;
use crate::table::{Keyed, TABLE_MAX, Table};
use plexus_vocab::identity::{NodeKey, SigCheck, SignatureError};
use plexus_vocab::resources::{NodeMeta, Resources};

/// The members a node knows, by id.
type Members = Table<Member>;

/// Domain of a member's signature over its own statement.
pub const MEMBER_DOMAIN: &[u8] = b"plexus/mesh/member/v1";

/// Domain of a member's signature over its accusation of another (its own
/// detector's `Suspect` or `Dead`).
pub const ACCUSE_DOMAIN: &[u8] = b"plexus/mesh/accuse/v1";

/// Length of an accusation's `sig`: the accuser's id, then its signature.
const ACCUSATION_LEN: usize = 32 + 64;

/// Largest rise of a member's incarnation accepted in one statement, over the one
/// known for it. Drivers start an incarnation at wall-clock milliseconds, so this
/// (2^40 ms, about 35 years) never refuses a restart, and a `u64::MAX` is refused.
pub const INCARNATION_STEP_MAX: u64 = 1 << 40;

/// Largest incarnation accepted for a member not yet known (2^62): far above any
/// wall-clock start, and far enough below `u64::MAX` that refutations never overflow.
pub const INCARNATION_MAX: u64 = 1 << 62;

/// Why a member statement was refused. The sender (or whoever it relayed) is at
/// fault; the statement is dropped and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GossipRefused {
    /// About, or from, a node that is not admitted.
    #[error("the node is not admitted")]
    NotAdmitted,
    /// `Alive`/`Left` about another node without that node's valid signature.
    #[error("a statement not signed by the node it is about")]
    Forged,
    /// The incarnation jumps more than the bound.
    #[error("the incarnation jumps past the bound")]
    IncarnationJump,
    /// `Alive`/`Left` about another node without the meta it advertises (every
    /// such statement carries it; a member's meta is read from its latest one).
    #[error("an alive or left statement without its meta")]
    NoMeta,
}

/// Refused statements, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusedCounts {
    /// [`GossipRefused::NotAdmitted`].
    pub not_admitted: u64,
    /// [`GossipRefused::Forged`].
    pub forged: u64,
    /// [`GossipRefused::IncarnationJump`].
    pub incarnation_jump: u64,
    /// [`GossipRefused::NoMeta`].
    pub no_meta: u64,
}

impl RefusedCounts {
    fn count(&mut self, why: GossipRefused) {
        match why {
            GossipRefused::NotAdmitted => self.not_admitted += 1,
            GossipRefused::Forged => self.forged += 1,
            GossipRefused::IncarnationJump => self.incarnation_jump += 1,
            GossipRefused::NoMeta => self.no_meta += 1,
        }
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.not_admitted + self.forged + self.incarnation_jump + self.no_meta
    }
}

/// Most bootstrap peers remembered.
const SEEDS_MAX: usize = 64;

/// How often dead members past their retention are forgotten.
const GC_INTERVAL: Duration = Duration::from_secs(10);

/// Tuning of the protocol. `Default` suits production; tests and the simulator
/// shorten the periods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MembershipConfig {
    /// One probe per member per period.
    pub probe_interval: Duration,
    /// Wait this long for a direct ack before asking others (must be < interval).
    pub probe_timeout: Duration,
    /// How many members are asked to ping an unresponsive target.
    pub indirect_probes: usize,
    /// Suspicion lasts at most `suspicion_mult * max(1, log10 n)` probe intervals.
    pub suspicion_mult: u32,
    /// Lifeguard's dogpile: how many other members' independent suspicions of the
    /// same member bring this node's own suspicion down to its shortest
    /// (`suspicion_min_mult` periods). Each one counted shortens it on a log
    /// scale; 0 turns this off (every suspicion lasts the full timeout).
    #[serde(default = "default_confirmations")]
    pub suspicion_confirmations: u32,
    /// The shortest suspicion, in probe intervals, once `suspicion_confirmations`
    /// others suspect the member too (never longer than the full timeout).
    #[serde(default = "default_suspicion_min_mult")]
    pub suspicion_min_mult: u32,
    /// Lifeguard's local health: this node's probe period and ack wait stretch
    /// up to this many times while its own probes fail without the helpers'
    /// nacks that would show the target, not this node, is at fault (a slow or
    /// overloaded node then accuses others less). 1 turns it off.
    #[serde(default = "default_health_max")]
    pub health_max: u32,
    /// Each update is piggybacked `retransmit_mult * ceil(log2(n+1))` times.
    pub retransmit_mult: u32,
    /// Full-state push-pull with a random member this often.
    pub sync_interval: Duration,
    /// Dead members are forgotten after this long.
    pub dead_retention: Duration,
    /// Most members tracked.
    pub members_max: usize,
    /// Most updates piggybacked on one message.
    pub gossip_per_message: usize,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(400),
            indirect_probes: 3,
            suspicion_mult: 4,
            suspicion_confirmations: default_confirmations(),
            suspicion_min_mult: default_suspicion_min_mult(),
            health_max: default_health_max(),
            retransmit_mult: 4,
            sync_interval: Duration::from_secs(30),
            dead_retention: Duration::from_secs(3600),
            members_max: 10_000,
            gossip_per_message: 8,
        }
    }
}

fn default_confirmations() -> u32 {
    3
}

fn default_suspicion_min_mult() -> u32 {
    2
}

fn default_health_max() -> u32 {
    8
}

impl MembershipConfig {
    /// The suspicion timeout for a cluster of `n` members when no other member
    /// suspects the same one: the longest a suspicion lasts.
    pub fn suspicion_timeout(&self, n: usize) -> Duration {
        let factor = (n.max(1) as f64).log10().max(1.0);
        self.probe_interval
            .mul_f64(f64::from(self.suspicion_mult) * factor)
    }

    /// The suspicion timeout in a cluster of `n` when `confirmations` other members
    /// independently suspect the member too (Lifeguard's formula): from the full
    /// timeout at none, down on a log scale to the shortest
    /// (`suspicion_min_mult` periods) at `suspicion_confirmations`.
    pub fn suspicion_timeout_confirmed(&self, n: usize, confirmations: usize) -> Duration {
        let max = self.suspicion_timeout(n);
        let k = self.suspicion_confirmations;
        if k == 0 || confirmations == 0 {
            return max;
        }
        let min = self
            .probe_interval
            .saturating_mul(self.suspicion_min_mult)
            .min(max);
        let c = confirmations.min(k as usize) as f64;
        let frac = (c + 1.0).ln() / (f64::from(k) + 1.0).ln();
        let cut = (max - min).mul_f64(frac.clamp(0.0, 1.0));
        (max - cut).max(min)
    }

    /// The shortest suspicion any member can have: with all its confirmations, or
    /// in the smallest cluster.
    pub fn suspicion_shortest(&self) -> Duration {
        self.suspicion_timeout_confirmed(1, self.suspicion_confirmations as usize)
    }

    /// The push-pull period for a cluster of `n`: `sync_interval`, stretched by
    /// `ceil(log2 n) - 4` above 32 members (as memberlist does), because each sync costs
    /// O(n) on both ends and n nodes run them. A node whose last sync exchanged full
    /// views (they differed) syncs again after `sync_interval` instead.
    pub fn sync_period(&self, n: usize) -> Duration {
        let factor = if n <= 32 {
            1
        } else {
            ceil_log2(n as u64).saturating_sub(4).max(1)
        };
        self.sync_interval * factor
    }

    /// A lower bound on the time from a member falling silent (cut off, or
    /// paused) until anyone declares it dead: the probe that finds it silent
    /// fails at the end of its period, then the shortest suspicion
    /// ([`MembershipConfig::suspicion_shortest`]: others suspect it too; a silent
    /// member refuses no dial, so suspicion is not cut shorter). Work a cut-off
    /// member does alone must stop within this (the durable activation lease is
    /// fitted to it).
    pub fn detection_min(&self) -> Duration {
        self.probe_interval + self.suspicion_shortest()
    }

    /// How long an update is piggybacked at most, in a cluster of `n` members:
    /// `retransmit_mult * ceil(log2(n + 1))` probe periods, the rounds in which
    /// gossip spreads it when queues keep up. A queue that keeps up has sent each
    /// update its full count well before (a node sends several messages a period);
    /// one that fell behind, as every node's does when thousands join at once,
    /// leaves what it could not send to the syncs, which carry every statement.
    pub fn gossip_max_age(&self, n: usize) -> Duration {
        let periods = self
            .retransmit_mult
            .saturating_mul(ceil_log2(n as u64 + 1).max(1));
        self.probe_interval.saturating_mul(periods)
    }

    /// An upper bound on the time from a member's crash until every other member
    /// has declared it dead, absent message loss: the first probe of it within
    /// `n - 1` periods (round-robin), its failure at the end of that period, the
    /// suspicion timeout, then dissemination of the death in
    /// `retransmit_mult * ceil(log2(n + 1))` periods.
    pub fn detection_bound(&self, n: usize) -> Duration {
        let periods =
            n.saturating_sub(1) as u32 + 1 + self.retransmit_mult * ceil_log2(n as u64 + 1);
        self.probe_interval * periods + self.suspicion_timeout(n)
    }
}

/// A member's state. In human-readable formats (the HTTP API's JSON, the daemon's
/// event lines) it is written `alive`, `suspect`, `dead` or `left`; on the wire it is
/// the variant's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe; dead unless it refutes in time.
    Suspect,
    /// Declared failed.
    Dead,
    /// Left on purpose.
    Left,
}

impl MemberState {
    fn rank(self) -> u8 {
        match self {
            MemberState::Alive => 0,
            MemberState::Suspect => 1,
            MemberState::Dead | MemberState::Left => 2,
        }
    }

    /// Dead or left.
    pub fn is_down(self) -> bool {
        matches!(self, MemberState::Dead | MemberState::Left)
    }

    /// The state's name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        }
    }
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member statement as a view, the gossip queue, syncs and frames hold it: one
/// allocation shared by all of them (and, in a process that runs many nodes, by
/// every node that received it). On the wire it is the statement itself.
pub type Statement = Arc<MemberUpdate>;

/// A statement about a member, as gossiped and synced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberUpdate {
    /// Whom it is about.
    pub id: NodeId,
    /// At which incarnation.
    pub incarnation: u64,
    /// The claimed state.
    pub state: MemberState,
    /// What the member advertises (carried with `Alive`; may be absent otherwise).
    /// Shared, so a view and the gossip about it do not copy it.
    pub meta: Option<Arc<NodeMeta>>,
    /// On `Alive`/`Left`: the member's own signature over `(id, incarnation,
    /// state, meta)`, domain [`MEMBER_DOMAIN`]. On `Suspect`/`Dead` (hearsay, never
    /// applied): an accusation, the accuser's id (32 bytes) then its signature over
    /// `(id, incarnation, state, accuser)`, domain [`ACCUSE_DOMAIN`]
    /// ([`MemberUpdate::accusation`]); or empty, for the sender's own verdict as
    /// an earlier build sends it and as full syncs carry dead members.
    #[serde(default)]
    pub sig: SigBytes,
}

impl MemberUpdate {
    fn signed_bytes(&self) -> Vec<u8> {
        // Sized for a statement with its meta at once, not grown byte by byte.
        let mut out = Vec::with_capacity(256);
        let fields = (self.id, self.incarnation, self.state, &self.meta);
        match plexus_actors::codec::encode_body_into(&fields, &mut out) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }

    /// Signs the statement with `key` (which must be the key of `id`).
    pub fn sign(mut self, key: &NodeKey) -> Self {
        self.sig = key
            .sign(MEMBER_DOMAIN, &self.signed_bytes())
            .to_vec()
            .into();
        self
    }

    /// `accuser`'s signed accusation: its own detector moved `id` to `state`
    /// (`Suspect` or `Dead`) at `incarnation`. Anyone may relay it, and each
    /// receiver counts it once for its accuser.
    pub fn accusation(id: NodeId, incarnation: u64, state: MemberState, accuser: &NodeKey) -> Self {
        let mut update = MemberUpdate {
            id,
            incarnation,
            state,
            meta: None,
            sig: SigBytes::default(),
        };
        let by = accuser.node_id();
        let sig = accuser.sign(ACCUSE_DOMAIN, &update.accusation_bytes(&by));
        update.sig = by
            .to_bytes()
            .into_iter()
            .chain(sig)
            .collect::<Vec<u8>>()
            .into();
        update
    }

    fn accusation_bytes(&self, accuser: &NodeId) -> Vec<u8> {
        plexus_actors::codec::encode_body(&(self.id, self.incarnation, self.state, accuser))
            .unwrap_or_default()
    }

    /// Who this accusation names as its accuser, unchecked: `None` unless it is a
    /// `Suspect`/`Dead` carrying an accusation.
    pub fn accuser(&self) -> Option<NodeId> {
        if !matches!(self.state, MemberState::Suspect | MemberState::Dead)
            || self.sig.len() != ACCUSATION_LEN
        {
            return None;
        }
        let bytes: [u8; 32] = self.sig[..32].try_into().ok()?;
        Some(NodeId::from_public_key(bytes))
    }

    /// The accuser of a validly signed accusation, through `check`.
    pub fn verify_accusation_with(&self, check: &SigCheck) -> Option<NodeId> {
        let accuser = self.accuser()?;
        check
            .verify(
                &accuser,
                ACCUSE_DOMAIN,
                &self.accusation_bytes(&accuser),
                &self.sig[32..],
            )
            .ok()?;
        Some(accuser)
    }

    /// Where the gossip queue keeps it: a member's own statement replaces its
    /// last; each accuser's accusation of it is kept beside them.
    fn gossip_key(&self) -> (NodeId, Option<NodeId>) {
        (self.id, self.accuser())
    }

    /// Whether the statement carries a valid signature of the node it is about.
    pub fn verify(&self) -> bool {
        self.verify_with(&SigCheck::Direct)
    }

    /// [`MemberUpdate::verify`], through `check`.
    pub fn verify_with(&self, check: &SigCheck) -> bool {
        !self.sig.is_empty() && self.check_sig(check).is_ok()
    }

    /// Checks the signature (of the node it is about, for [`MEMBER_DOMAIN`]).
    fn check_sig(&self, check: &SigCheck) -> Result<(), SignatureError> {
        check.verify(&self.id, MEMBER_DOMAIN, &self.signed_bytes(), &self.sig)
    }
}

/// The protocol's own messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// Are you there?
    Ping {
        /// Matches the ack.
        seq: u32,
    },
    /// Yes.
    Ack {
        /// The ping's seq.
        seq: u32,
    },
    /// Please ping `target` for me.
    PingReq {
        /// The requester's seq, echoed in the forwarded ack.
        seq: u32,
        /// Whom to ping.
        target: NodeId,
    },
    /// My full view; answer with yours.
    Sync {
        /// Every member I know, and me.
        members: Vec<Statement>,
    },
    /// My full view, in answer to a sync.
    SyncReply {
        /// Every member I know, and me.
        members: Vec<Statement>,
    },
    /// Nothing but piggybacked gossip.
    Gossip,
    /// The periodic sync's first step: digests of my view and of the registry's
    /// claims. A partner whose digests match has nothing to exchange and stays
    /// quiet; one whose differ starts a full [`Probe::Sync`]. So a converged
    /// cluster's anti-entropy costs two hashes per period, not two full views.
    SyncOffer {
        /// [`Membership::view_digest`] of the sender.
        view: [u8; 32],
        /// The sender's registry digest (filled in by the cluster).
        names: [u8; 32],
    },
    /// A helper's answer to a [`Probe::PingReq`] whose target did not ack in time:
    /// "I am here; it is the target that is silent". A failed probe that no
    /// helper nacked costs the requester local health.
    /// (The last variant, so the others keep their wire indices; an earlier
    /// build drops it as a malformed frame.)
    Nack {
        /// The requester's seq.
        seq: u32,
    },
    /// A sharded registry's claims (in the packet's `claims`): pushed by an owner to
    /// the claimants and askers of a name, by a claimant to the owners, by an owner
    /// to the owners taking over, or answering a [`Probe::Resolve`]. `resolved`
    /// lists the names this answers a resolve for, claims held on them or not.
    /// Membership treats it as gossip. (After `Nack`, for the same reason.)
    Names {
        /// The names answered.
        resolved: Vec<Arc<str>>,
    },
    /// A sharded registry's question to an owner: the claims on these names, and
    /// pushes when they change (for `RegistryConfig::watch_refresh` twice over).
    Resolve {
        /// The names asked about.
        names: Vec<Arc<str>>,
    },
}

/// A member as seen locally: 16 bytes beside the statement it shares. In a
/// simulated world of 10,000 full views there are 100 million of these, so each
/// 8 bytes is 0.8 GB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its own latest statement, signed (what this node relays about it), which
    /// also holds its id, incarnation and meta. Shared: the gossip queue, syncs
    /// and, in a process that runs many nodes (the simulator), every node that
    /// holds this member point to one allocation. Always `Alive` or `Left` and
    /// always with its meta: statements without are refused
    /// ([`GossipRefused::NoMeta`]), and the detector's verdicts keep the last one.
    pub statement: Statement,
    /// When it entered `state`, in whole seconds since the driver's origin (136
    /// years fit). A suspicion's exact start is kept with its timer.
    since_secs: u32,
    /// Current state.
    pub state: MemberState,
}

/// What [`Member::meta`] shows for a statement without meta (none is accepted).
static NO_META: NodeMeta = NodeMeta {
    addrs: Vec::new(),
    total: Resources {
        cpu_millis: 0,
        memory_bytes: 0,
        gpus: 0,
    },
    free: Resources {
        cpu_millis: 0,
        memory_bytes: 0,
        gpus: 0,
    },
    tags: BTreeMap::new(),
    allowlist_version: 0,
    software: String::new(),
};

/// `t` in whole seconds, saturating at `u32::MAX`.
fn whole_secs(t: Time) -> u32 {
    u32::try_from(t.as_micros() / 1_000_000).unwrap_or(u32::MAX)
}

impl Member {
    fn new(statement: Statement, state: MemberState, now: Time) -> Self {
        Self {
            statement,
            since_secs: whole_secs(now),
            state,
        }
    }

    /// Its id.
    pub fn id(&self) -> NodeId {
        self.statement.id
    }

    /// Latest incarnation seen: its statement's. Only the member's own statements
    /// (alive, left) move it; this node's detector judges a member at the
    /// incarnation it knows, so its verdicts never do.
    pub fn incarnation(&self) -> u64 {
        self.statement.incarnation
    }

    /// What it advertises: its latest statement's meta.
    pub fn meta(&self) -> &NodeMeta {
        self.statement.meta.as_deref().unwrap_or(&NO_META)
    }

    /// When it entered its state, to the second (rounded down).
    pub fn since(&self) -> Time {
        Time::from_micros(u64::from(self.since_secs) * 1_000_000)
    }
}

impl Keyed for Member {
    type Key = NodeId;
    fn key(&self) -> &NodeId {
        &self.statement.id
    }
}

/// What changed, for the driver (and the registry) to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A member became known and alive.
    Joined(NodeId),
    /// An alive member changed what it advertises.
    Updated(NodeId),
    /// A member is suspected.
    Suspected(NodeId),
    /// A suspected or dead member proved alive.
    Recovered(NodeId),
    /// A member was declared dead.
    Died(NodeId),
    /// A member left.
    Left(NodeId),
    /// This node refuted a suspicion about itself.
    Refuted {
        /// The incarnation it moved to.
        incarnation: u64,
    },
}

struct ProbeState {
    target: NodeId,
    /// Members asked to ping the target for us: with the target, the only ones whose
    /// ack counts (anyone else's is a lie that would keep a dead member alive).
    helpers: Vec<NodeId>,
    /// Helpers that nacked (each once).
    nacked: Vec<NodeId>,
    seq: u32,
    indirect_at: Time,
    indirect_sent: bool,
    acked: bool,
}

/// A suspicion this node's detector raised: when it began, when it ends (the
/// member is then declared dead), shortened by others' accusations.
#[derive(Clone, Copy, Debug)]
struct Suspicion {
    began: Time,
    ends: Time,
}

struct Relay {
    /// Whom we pinged for the origin: only its ack is forwarded.
    target: NodeId,
    origin: NodeId,
    origin_seq: u32,
    expires: Time,
    /// No ack from the target by then: nack the origin (once).
    nack_at: Option<Time>,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Probes started.
    pub probes: u64,
    /// Probes that needed ping-req.
    pub indirect_probes: u64,
    /// Suspicions raised by this node.
    pub suspicions: u64,
    /// Members ignored because `members_max` was reached.
    pub over_capacity: u64,
    /// Refutations of suspicions about this node.
    pub refutations: u64,
    /// Hearsay (another node's suspicion or death declaration) taken as a prompt to
    /// probe the member.
    pub hints: u64,
    /// Members probed out of turn because the transport lost its connection to
    /// them ([`Membership::link_lost`]).
    pub link_hints: u64,
    /// Connections to members refused by their hosts ([`Membership::link_refused`]).
    pub refused_dials: u64,
    /// Statements refused, by reason.
    pub refused: RefusedCounts,
    /// Periodic syncs started with digests ([`Probe::SyncOffer`]).
    pub sync_offers: u64,
    /// Offers received whose view digest differed from this node's (each answered
    /// with a full sync).
    pub sync_offers_differ: u64,
    /// Views asked of strangers that talked to this node (a sync carrying only
    /// this node's own statement).
    pub pulls: u64,
    /// Gossip updates dropped unsent because they were queued longer than
    /// [`MembershipConfig::gossip_max_age`] ago (a queue that fell behind).
    pub gossip_expired: u64,
    /// Other members' suspicions counted toward shortening this node's own
    /// (Lifeguard's dogpile; at most `suspicion_confirmations` per member and
    /// incarnation).
    pub accusations: u64,
    /// Nacks sent for ping-reqs whose target did not answer in time.
    pub nacks_sent: u64,
    /// Nacks received from this node's helpers.
    pub nacks_received: u64,
    /// Failed probes that cost this node local health (no helper nacked).
    pub health_raised: u64,
    /// Syncs sent to bootstrap peers this node never knew as members (one per
    /// sync period while there are any).
    pub seeds_resynced: u64,
}

/// One node's membership state machine.
pub struct Membership {
    me: NodeId,
    key: NodeKey,
    /// How others' signatures are checked.
    sig_check: SigCheck,
    /// [`Membership::view_digest`] while `members` and `self_statement` are
    /// unchanged; every write to either clears it.
    view_digest: Option<[u8; 32]>,
    /// This node's current signed statement about itself.
    self_statement: Statement,
    /// With an allowlist: the nodes admitted (others are ignored everywhere).
    admitted: Option<Admitted>,
    /// Members to probe before the round-robin goes on (hearsay hints).
    hinted: std::collections::BTreeSet<NodeId>,
    /// When this node's transport last had a connection to a member refused (no
    /// process listens at its address): a suspicion of it then lasts one probe
    /// period, not the full timeout. Only members, not down ones.
    refused: BTreeMap<NodeId, Time>,
    incarnation: u64,
    meta: Arc<NodeMeta>,
    config: MembershipConfig,
    rng: DetRng,
    members: Members,
    /// This round's probe order: a random order of the member table's slots,
    /// computed place by place (no memory per member) over the power of four
    /// above the table's size when the round began. Places past the table's end
    /// are skipped, so a member added mid-round is probed in it if the walk has
    /// not passed its slot yet (in the next round otherwise); a table that grows
    /// past the range starts a new round. A member moved to a slot already passed
    /// (when another is removed) waits for the next round too: each member is
    /// probed at least once in every two rounds.
    probe_round: Shuffle,
    probe_next: u64,
    next_probe_at: Time,
    probe: Option<ProbeState>,
    relays: BTreeMap<u32, Relay>,
    /// Running suspicions of members, by member.
    suspicions: BTreeMap<NodeId, Suspicion>,
    /// Lifeguard's local health score, `0..health_max`: raised by failed probes
    /// no helper nacked and by refuting suspicions of this node,
    /// lowered by each acked probe. The probe period and ack wait are stretched
    /// `health + 1` times.
    health: u32,
    /// Lifeguard's dogpile: for a member known and up here, the other members that
    /// said they suspect it (or declared it dead) at its current incarnation, and
    /// when; at most `suspicion_confirmations` each, counted within one full
    /// suspicion timeout. Cleared when the member moves to a newer incarnation or
    /// goes down.
    accusers: BTreeMap<NodeId, Vec<(NodeId, Time)>>,
    next_sync_at: Time,
    sync_sent: BTreeMap<NodeId, Time>,
    seq: u32,
    /// Keyed by [`MemberUpdate::gossip_key`].
    gossip: BroadcastQueue<(NodeId, Option<NodeId>), Statement>,
    out: VecDeque<(NodeId, Probe)>,
    events: VecDeque<MembershipEvent>,
    stats: MembershipStats,
    left: bool,
    /// Members alive or suspect (this node excluded), kept current on every change.
    live: usize,
    next_gc_at: Time,
    /// Peers the transport introduced (bootstrap peers): while this node knows no
    /// live member it keeps syncing with one of them, so a lost first contact is retried.
    seeds: std::collections::BTreeSet<NodeId>,
    /// Peers the transport introduced while this node was alone with a sync out:
    /// at the next probe tick, those the answer did not bring as live members are
    /// synced too (at most `SEEDS_MAX`; past that, each is synced at once).
    deferred: std::collections::BTreeSet<NodeId>,
}

impl Membership {
    /// A node that knows only itself. `incarnation` must exceed any it used in an
    /// earlier life (drivers use wall-clock milliseconds, the simulator a durable
    /// counter), so a restarted node is not mistaken for its dead predecessor.
    pub fn new(
        key: NodeKey,
        incarnation: u64,
        meta: NodeMeta,
        config: MembershipConfig,
        seed: u64,
        now: Time,
    ) -> Self {
        let gossip = BroadcastQueue::new(config.retransmit_mult, config.members_max.max(16));
        let me = key.node_id();
        let mut this = Self {
            me,
            self_statement: Arc::new(MemberUpdate {
                id: me,
                incarnation,
                state: MemberState::Alive,
                meta: None,
                sig: SigBytes::default(),
            }),
            key,
            sig_check: SigCheck::Direct,
            view_digest: None,
            admitted: None,
            hinted: std::collections::BTreeSet::new(),
            refused: BTreeMap::new(),
            incarnation,
            meta: Arc::new(meta),
            rng: DetRng::new(seed),
            members: Members::default(),
            probe_round: Shuffle::default(),
            probe_next: 0,
            next_probe_at: now + config.probe_interval,
            probe: None,
            relays: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            health: 0,
            accusers: BTreeMap::new(),
            next_sync_at: now + config.sync_interval,
            sync_sent: BTreeMap::new(),
            seq: 0,
            gossip,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: MembershipStats::default(),
            left: false,
            live: 0,
            next_gc_at: now + GC_INTERVAL,
            seeds: std::collections::BTreeSet::new(),
            deferred: std::collections::BTreeSet::new(),
            config,
        };
        this.announce_self();
        this
    }

    // ----- getters -----

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// This node's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// This node's advertised metadata.
    pub fn meta(&self) -> &NodeMeta {
        &self.meta
    }

    /// The configuration.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// Every member known, this node excluded, in id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// One member.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// `id`'s state; `Alive` for this node.
    pub fn state_of(&self, id: &NodeId) -> Option<MemberState> {
        if *id == self.me {
            Some(MemberState::Alive)
        } else {
            self.members.get(id).map(|m| m.state)
        }
    }

    /// Members alive or suspect, plus this node.
    pub fn live_count(&self) -> usize {
        1 + self.live
    }

    /// Counters.
    pub fn stats(&self) -> MembershipStats {
        MembershipStats {
            gossip_expired: self.gossip.expired(),
            ..self.stats
        }
    }

    /// Lifeguard's local health score (0 is healthy): this node probes
    /// `health + 1` times slower than configured.
    pub fn local_health(&self) -> u32 {
        self.health
    }

    /// How many times slower than configured this node probes now.
    fn health_mult(&self) -> u32 {
        self.health + 1
    }

    fn change_health(&mut self, delta: i64) {
        let max = i64::from(self.config.health_max.max(1)) - 1;
        let next = (i64::from(self.health) + delta).clamp(0, max);
        self.health = u32::try_from(next).unwrap_or(0);
    }

    /// Updates waiting to be piggybacked.
    pub fn gossip_backlog(&self) -> usize {
        self.gossip.len()
    }

    /// Whether `id` is admitted (always, without an admission set).
    pub fn is_admitted(&self, id: &NodeId) -> bool {
        self.admitted.as_ref().is_none_or(|a| a.contains(id))
    }

    /// Checks signatures through `check` (a memo shared by the simulator's nodes).
    pub fn set_sig_check(&mut self, check: SigCheck) {
        self.sig_check = check;
    }

    /// Restricts membership to `admitted` (the allowlist's nodes; `None`: anyone the
    /// transport lets in). Members no longer admitted are dropped, as if they left.
    pub fn set_admitted(&mut self, now: Time, admitted: Option<Admitted>) {
        self.admitted = admitted;
        let gone: Vec<NodeId> = self
            .members
            .values()
            .map(|m| m.id())
            .filter(|id| !self.is_admitted(id))
            .collect();
        for id in gone {
            self.view_digest = None;
            if let Some(m) = self.members.remove(&id)
                && !m.state.is_down()
            {
                self.live -= 1;
                self.events.push_back(MembershipEvent::Left(id));
            }
            self.suspicions.remove(&id);
            self.accusers.remove(&id);
            self.hinted.remove(&id);
            self.sync_sent.remove(&id);
            self.seeds.remove(&id);
        }
        let _ = now;
    }

    // ----- inputs -----

    /// A transport connected to `peer`, which may be new to us: exchange views.
    pub fn handle_discovered(&mut self, now: Time, peer: NodeId) {
        if peer == self.me || !self.is_admitted(&peer) {
            return;
        }
        if self.seeds.len() < SEEDS_MAX {
            self.seeds.insert(peer);
        }
        match self.members.get(&peer) {
            Some(m) if !m.state.is_down() => {}
            // Alone, with a sync already out to another peer (a joiner is handed
            // all its seeds at once): that one answer usually brings the whole
            // view, so the others wait for the next probe tick and are synced
            // then only if the answer did not bring them (the first peer may be
            // as alone as this node, or the answer lost).
            _ if self.live == 0 && self.sync_pending(now) && self.deferred.len() < SEEDS_MAX => {
                self.deferred.insert(peer);
            }
            _ => self.send_sync(now, peer),
        }
    }

    /// Whether a sync went out within the last probe interval (and may still be
    /// answered).
    fn sync_pending(&self, now: Time) -> bool {
        self.sync_sent
            .values()
            .any(|at| now.saturating_since(*at) < self.config.probe_interval)
    }

    /// Advances timers: probes, ping-reqs, suspicion timeouts, syncs, expiries.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.left {
            return;
        }
        if let Some(probe) = &mut self.probe
            && !probe.acked
            && !probe.indirect_sent
            && now >= probe.indirect_at
        {
            probe.indirect_sent = true;
            let (target, seq) = (probe.target, probe.seq);
            self.stats.indirect_probes += 1;
            let mut helpers: Vec<NodeId> = self
                .members
                .values()
                .filter(|m| m.state == MemberState::Alive && m.id() != target)
                .map(|m| m.id())
                .collect();
            self.rng.shuffle(&mut helpers);
            helpers.truncate(self.config.indirect_probes);
            for helper in &helpers {
                self.out
                    .push_back((*helper, Probe::PingReq { seq, target }));
            }
            if let Some(probe) = &mut self.probe {
                probe.helpers = helpers;
            }
        }
        if now >= self.next_probe_at {
            if let Some(probe) = self.probe.take() {
                if probe.acked {
                    self.change_health(-1);
                } else {
                    // A helper that nacked saw the target silent too: the fault is
                    // not this node's. With no nack at all (or no helper to ask),
                    // this node may be the one that cannot hear. (Lifeguard counts
                    // each missing nack; on a lossy network one lost nack is noise,
                    // and counting each slowed the last nodes' detection of a
                    // crash by a third at 1% loss and 1,000 nodes.)
                    if probe.nacked.is_empty() {
                        self.stats.health_raised += 1;
                        self.change_health(1);
                    }
                    self.suspect(now, probe.target);
                }
            }
            self.start_probe(now);
            self.next_probe_at = now
                + self
                    .config
                    .probe_interval
                    .saturating_mul(self.health_mult());
            if !self.deferred.is_empty() && (self.live > 0 || !self.sync_pending(now)) {
                for peer in std::mem::take(&mut self.deferred) {
                    if self.members.get(&peer).is_none_or(|m| m.state.is_down()) {
                        self.send_sync(now, peer);
                    }
                }
            }
            if self.live == 0 && !self.seeds.is_empty() && !self.left {
                // Alone: the first contact may have been lost. Try a seed again (at
                // most one sync per seed per probe interval).
                let seeds: Vec<NodeId> = self.seeds.iter().copied().collect();
                let seed = seeds[self.rng.index(seeds.len())];
                self.send_sync(now, seed);
            }
        }
        let expired: Vec<NodeId> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.ends <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.suspicions.remove(&id);
            if let Some(m) = self.members.get(&id)
                && m.state == MemberState::Suspect
            {
                self.declare(now, id, MemberState::Dead);
            }
        }
        if !self.relays.is_empty() {
            self.relays.retain(|_, r| r.expires > now);
            for relay in self.relays.values_mut() {
                if relay.nack_at.is_some_and(|t| t <= now) {
                    relay.nack_at = None;
                    self.stats.nacks_sent += 1;
                    self.out.push_back((
                        relay.origin,
                        Probe::Nack {
                            seq: relay.origin_seq,
                        },
                    ));
                }
            }
        }
        if now >= self.next_sync_at {
            self.next_sync_at = now + self.config.sync_period(self.live_count());
            self.periodic_sync(now);
        }
        // Only down members are ever forgotten, and `live` counts the others.
        if now < self.next_gc_at || self.members.len() == self.live {
            return;
        }
        self.next_gc_at = now + GC_INTERVAL;
        let members = &self.members;
        self.refused
            .retain(|id, _| members.get(id).is_some_and(|m| !m.state.is_down()));
        let retention = self.config.dead_retention;
        let forget: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| m.state.is_down() && now.saturating_since(m.since()) >= retention)
            .map(|m| m.id())
            .collect();
        for id in forget {
            self.view_digest = None;
            self.members.remove(&id);
            self.sync_sent.remove(&id);
        }
    }

    /// Handles one protocol message from `from` (gossip is applied separately with
    /// [`Membership::apply`]).
    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Probe) {
        if from == self.me {
            return;
        }
        if !self.is_admitted(&from) {
            self.stats.refused.count(GossipRefused::NotAdmitted);
            return;
        }
        // It is talking: whatever refused a connection to it before, it is back.
        self.refused.remove(&from);
        // A member we think is down, or a stranger, is talking to us: compare views.
        // (Not for a sharded registry's packets: they go to a name's owners, which in
        // a cluster still joining often do not know their sender yet, and a full sync
        // for each cost a 1,000-node join a sixth of its time. The sender's probes
        // start the sync if one is due.)
        if !matches!(
            msg,
            Probe::Sync { .. }
                | Probe::SyncReply { .. }
                | Probe::Names { .. }
                | Probe::Resolve { .. }
        ) {
            match self.members.get(&from) {
                Some(m) if !m.state.is_down() => {}
                Some(_) => self.send_sync(now, from),
                // A stranger knows of this node, so its view is likely the fuller
                // (it joined later, from a seed's view): ask for it, without
                // pushing this node's own (it holds most of it already). In a join
                // of thousands, every node hears from strangers for a while, and
                // full views both ways cost each of those talks twice the members.
                None => self.send_pull(now, from),
            }
        }
        match msg {
            Probe::Ping { seq } => self.out.push_back((from, Probe::Ack { seq })),
            Probe::Ack { seq } => {
                if let Some(probe) = &mut self.probe
                    && probe.seq == seq
                {
                    if from == probe.target || probe.helpers.contains(&from) {
                        probe.acked = true;
                    }
                } else if let Some(relay) = self.relays.get(&seq)
                    && relay.target == from
                    && let Some(relay) = self.relays.remove(&seq)
                {
                    self.out.push_back((
                        relay.origin,
                        Probe::Ack {
                            seq: relay.origin_seq,
                        },
                    ));
                }
            }
            Probe::PingReq { seq, target } => {
                if !self.is_admitted(&target) {
                    self.stats.refused.count(GossipRefused::NotAdmitted);
                } else if target == self.me {
                    self.out.push_back((from, Probe::Ack { seq }));
                } else {
                    let mine = self.next_seq();
                    // Nack halfway through the time the origin has left after
                    // asking, so the nack is back before its probe period ends.
                    let window = self
                        .config
                        .probe_interval
                        .saturating_sub(self.config.probe_timeout);
                    self.relays.insert(
                        mine,
                        Relay {
                            target,
                            origin: from,
                            origin_seq: seq,
                            expires: now + self.config.probe_interval,
                            nack_at: Some(now + window / 2),
                        },
                    );
                    self.out.push_back((target, Probe::Ping { seq: mine }));
                }
            }
            Probe::Sync { members } => {
                self.take_view(now, from, members);
                let view = self.full_view();
                self.out
                    .push_back((from, Probe::SyncReply { members: view }));
            }
            Probe::SyncReply { members } => self.take_view(now, from, members),
            Probe::Gossip | Probe::Names { .. } | Probe::Resolve { .. } => {}
            Probe::Nack { seq } => {
                if let Some(probe) = &mut self.probe
                    && probe.seq == seq
                    && probe.helpers.contains(&from)
                    && !probe.nacked.contains(&from)
                {
                    probe.nacked.push(from);
                    self.stats.nacks_received += 1;
                }
            }
            Probe::SyncOffer { view, names: _ } => {
                // The cluster compares the names digest (and asks for a sync
                // itself when they differ).
                if view != self.cached_view_digest() {
                    self.stats.sync_offers_differ += 1;
                    self.send_sync(now, from);
                }
            }
        }
    }

    /// A digest of what a full sync from this node would carry: each member's
    /// `(id, incarnation, state)` as [`Probe::Sync`] states it, and this node's own,
    /// in id order. Two nodes with equal digests would learn nothing from a sync.
    pub fn view_digest(&self) -> [u8; 32] {
        self.walk_view(|_| {})
    }

    /// [`Membership::view_digest`], computed in one walk over the members that
    /// also shows each to `visit` (the invariant check does its counts in the same
    /// pass: a walk over a thousand members that are not in the cache is costly).
    fn walk_view(&self, mut visit: impl FnMut(&Member)) -> [u8; 32] {
        const ENTRY: usize = 41;
        // One buffer hashed at once: BLAKE3 hashes its chunks in parallel lanes,
        // many times faster than a thousand small updates.
        let mut buf = Vec::with_capacity((self.members.len() + 1) * ENTRY);
        let entry = |buf: &mut Vec<u8>, id: &NodeId, incarnation: u64, state: MemberState| {
            buf.extend_from_slice(&id.to_bytes());
            buf.extend_from_slice(&incarnation.to_le_bytes());
            buf.push(match state {
                MemberState::Alive => 0,
                MemberState::Suspect => 1,
                MemberState::Dead => 2,
                MemberState::Left => 3,
            });
        };
        let mut me_done = false;
        for m in self.members.values() {
            visit(m);
            if !me_done && m.id() > self.me {
                me_done = true;
                let s = &self.self_statement;
                entry(&mut buf, &s.id, s.incarnation, s.state);
            }
            if m.state == MemberState::Dead {
                entry(&mut buf, &m.id(), m.incarnation(), m.state);
            } else {
                entry(
                    &mut buf,
                    &m.id(),
                    m.statement.incarnation,
                    m.statement.state,
                );
            }
        }
        if !me_done {
            let s = &self.self_statement;
            entry(&mut buf, &s.id, s.incarnation, s.state);
        }
        blake3::hash(&buf).into()
    }

    /// [`Membership::view_digest`], cached until the view changes.
    pub fn cached_view_digest(&mut self) -> [u8; 32] {
        if let Some(d) = self.view_digest {
            return d;
        }
        let d = self.view_digest();
        self.view_digest = Some(d);
        d
    }

    /// Applies a statement gossiped by `from` (the transport-authenticated sender).
    /// Returns whether it changed anything (changes are re-gossiped).
    pub fn apply(&mut self, now: Time, from: NodeId, update: impl Into<Statement>) -> bool {
        self.apply_with(now, from, update.into(), true)
    }

    /// Like [`Membership::apply`], saying why a statement was refused. `Ok(false)`:
    /// nothing new (an old or duplicate statement, or hearsay taken as a hint).
    pub fn try_apply(
        &mut self,
        now: Time,
        from: NodeId,
        update: impl Into<Statement>,
    ) -> Result<bool, GossipRefused> {
        let result = self.try_apply_with(now, from, update.into(), true);
        if let Err(why) = result {
            self.stats.refused.count(why);
        }
        result
    }

    /// Applies a statement; re-gossips it only if `rebroadcast`.
    ///
    /// A full-state sync hands over the partner's whole view. Re-gossiping all of it
    /// would make every joining node rebroadcast the entire cluster λ·log n times
    /// (quadratic traffic in a mass join), so only what a sync says about the partner
    /// itself is news to spread; the rest is applied quietly. Partitions still heal:
    /// one sync carries the other side's full view, and refutations are about their
    /// sender.
    fn apply_with(
        &mut self,
        now: Time,
        from: NodeId,
        update: Statement,
        rebroadcast: bool,
    ) -> bool {
        match self.try_apply_with(now, from, update, rebroadcast) {
            Ok(changed) => changed,
            Err(why) => {
                self.stats.refused.count(why);
                false
            }
        }
    }

    fn try_apply_with(
        &mut self,
        now: Time,
        from: NodeId,
        update: Statement,
        rebroadcast: bool,
    ) -> Result<bool, GossipRefused> {
        // Every member held is admitted (`set_admitted` drops the others), so only
        // a statement about a node not held costs a lookup in the allowlist: a
        // sync's view is mostly members held.
        let held = update.id != self.me && self.members.get(&update.id).is_some();
        if !self.is_admitted(&from) || (!held && !self.is_admitted(&update.id)) {
            return Err(GossipRefused::NotAdmitted);
        }
        if update.id == self.me {
            return self.apply_about_me(update);
        }
        if matches!(update.state, MemberState::Suspect | MemberState::Dead) {
            // Hearsay: only this node's own detector suspects or kills; the
            // accuser counts toward shortening that suspicion.
            return self.hint(now, from, update);
        }
        let known = self.members.get(&update.id);
        let newer = match known {
            None => update.state == MemberState::Alive,
            Some(m) => {
                update.incarnation > m.incarnation()
                    || (update.incarnation == m.incarnation()
                        && update.state.rank() > m.state.rank())
            }
        };
        if !newer {
            return Ok(false);
        }
        let jump = match known {
            None => update.incarnation > INCARNATION_MAX,
            Some(m) => update.incarnation - m.incarnation() > INCARNATION_STEP_MAX,
        };
        if jump {
            return Err(GossipRefused::IncarnationJump);
        }
        // A node speaks only for itself: its signature, or straight from it.
        let authentic = if update.sig.is_empty() {
            from == update.id
        } else {
            // Held: in a process of many nodes, the first to check a statement
            // answers for the others that hold the same one (`SigMemo`).
            self.sig_check
                .verify_held(&update, |check| update.check_sig(check))
                .is_ok()
        };
        if !authentic {
            return Err(GossipRefused::Forged);
        }
        if update.meta.is_none() {
            return Err(GossipRefused::NoMeta);
        }
        Ok(self.accept(now, update, rebroadcast))
    }

    /// The transport lost its last connection to `id` (a killed process's
    /// connections are reset by its kernel at once): probe it next (the same hint
    /// as hearsay, from this node's own transport), and now if no probe is in
    /// flight, unless it is unknown or down here. Only a hint: `id` is suspected
    /// only if that probe fails.
    pub fn link_lost(&mut self, now: Time, id: NodeId) {
        if self.members.get(&id).is_some_and(|m| !m.state.is_down()) && self.hinted.insert(id) {
            self.stats.link_hints += 1;
            if self.probe.as_ref().is_none_or(|p| p.acked) {
                self.next_probe_at = self.next_probe_at.min(now);
            }
        }
    }

    /// This node's transport was refused a connection to `id`: its host answers,
    /// but nothing listens at its address (its process is gone). Evidence of this
    /// node's own, not hearsay, and not enough alone: `id` is still suspected only
    /// when its probes fail, but that suspicion then lasts one probe period instead
    /// of the full timeout (a process that is not there cannot refute), and a
    /// suspicion already running is cut to one period from now. A stalled or
    /// partitioned process refuses nothing (its kernel keeps accepting, or nothing
    /// answers at all), so pauses and partitions keep the full timeout.
    pub fn link_refused(&mut self, now: Time, id: NodeId) {
        let Some(state) = self.members.get(&id).map(|m| m.state) else {
            return;
        };
        if state.is_down() {
            return;
        }
        self.stats.refused_dials += 1;
        self.refused.insert(id, now);
        if state == MemberState::Suspect {
            let short = now + self.config.probe_interval;
            if let Some(s) = self.suspicions.get_mut(&id)
                && short < s.ends
            {
                s.ends = short;
            }
        } else {
            self.link_lost(now, id);
        }
    }

    /// Hearsay from `from` about `update.id`: probe it next, and count its
    /// accuser as one more member suspecting it (Lifeguard's dogpile), unless it
    /// is unknown or down here or the hearsay is about an older incarnation.
    ///
    /// The accuser is the signer of a signed accusation, which is checked and then
    /// relayed (so accusations spread as fast as any gossip), or the
    /// transport-authenticated sender of an unsigned one (its own verdict: this
    /// node never relays those). Either way each member is counted once, so a
    /// liar adds one confirmation at most, and confirmations only shorten a
    /// suspicion this node's own probes raised: they never raise one.
    fn hint(&mut self, now: Time, from: NodeId, update: Statement) -> Result<bool, GossipRefused> {
        let Some(m) = self.members.get(&update.id) else {
            return Ok(false);
        };
        if m.state.is_down() || update.incarnation < m.incarnation() {
            return Ok(false);
        }
        if self.hinted.insert(update.id) {
            self.stats.hints += 1;
        }
        let k = self.config.suspicion_confirmations as usize;
        if k == 0 {
            return Ok(false);
        }
        let (accuser, signed) = if update.sig.is_empty() {
            (from, false)
        } else {
            (update.accuser().ok_or(GossipRefused::Forged)?, true)
        };
        let id = update.id;
        if accuser == id || accuser == self.me || !self.is_admitted(&accuser) {
            return Ok(false);
        }
        let window = self.config.suspicion_timeout(self.live_count());
        let list = self.accusers.entry(id).or_default();
        list.retain(|(_, at)| now.saturating_since(*at) < window);
        if let Some(entry) = list.iter_mut().find(|(a, _)| *a == accuser) {
            if !signed {
                entry.1 = now;
            }
            return Ok(false);
        }
        if list.len() >= k {
            return Ok(false);
        }
        if signed && update.verify_accusation_with(&self.sig_check).is_none() {
            return Err(GossipRefused::Forged);
        }
        list.push((accuser, now));
        self.stats.accusations += 1;
        if signed {
            self.gossip.push_at(now, (id, Some(accuser)), update);
        }
        // A suspicion running here gets shorter.
        if let Some(began) = self.suspicions.get(&id).map(|s| s.began) {
            let confirmed = self.suspicion_end(now, id, began);
            if let Some(s) = self.suspicions.get_mut(&id)
                && confirmed < s.ends
            {
                s.ends = confirmed;
            }
        }
        Ok(false)
    }

    /// When a suspicion of `id` that began at `since` ends, counting the others
    /// that suspect it within one full timeout of `now`.
    fn suspicion_end(&self, now: Time, id: NodeId, since: Time) -> Time {
        let n = self.live_count();
        let window = self.config.suspicion_timeout(n);
        let confirmations = self.accusers.get(&id).map_or(0, |list| {
            list.iter()
                .filter(|(_, at)| now.saturating_since(*at) < window)
                .count()
        });
        since + self.config.suspicion_timeout_confirmed(n, confirmations)
    }

    /// Applies an authentic statement, or this node's own detector's verdict.
    fn accept(&mut self, now: Time, update: Statement, rebroadcast: bool) -> bool {
        self.view_digest = None;
        let Some(member) = self.members.get_mut(&update.id) else {
            if update.state.is_down() {
                return false;
            }
            if self.members.len() >= self.config.members_max.min(TABLE_MAX) {
                self.stats.over_capacity += 1;
                return false;
            }
            // Its meta is there: `try_apply_with` refused statements without.
            let member = Member::new(update.clone(), update.state, now);
            if !self.members.insert_new(member) {
                self.stats.over_capacity += 1;
                return false;
            }
            self.live += 1;
            self.events.push_back(MembershipEvent::Joined(update.id));
            if rebroadcast {
                self.gossip.push_at(now, update.gossip_key(), update);
            }
            return true;
        };
        let before = member.state;
        let newer_life = update.incarnation > member.incarnation();
        if newer_life || update.state.is_down() {
            // Suspicions of an earlier life (or of a member now down) count no
            // more, and those of an earlier life (this node's own included) are
            // not relayed any longer.
            let accusers = self.accusers.remove(&update.id).unwrap_or_default();
            if newer_life {
                for a in accusers.into_iter().map(|(a, _)| a).chain([self.me]) {
                    self.gossip.remove(&(update.id, Some(a)));
                }
            }
        }
        let mut meta_changed = false;
        if matches!(update.state, MemberState::Alive | MemberState::Left) {
            // The member's own word (the detector's verdicts keep the last one),
            // with its meta (one without was refused).
            // (`Arc`'s equality checks the pointer first: `NodeMeta` is `Eq`.)
            meta_changed = update.meta != member.statement.meta;
            member.statement = update.clone();
        }
        match (before.is_down(), update.state.is_down()) {
            (true, false) => self.live += 1,
            (false, true) => self.live -= 1,
            _ => {}
        }
        if member.state != update.state {
            member.state = update.state;
            member.since_secs = whole_secs(now);
        }
        let id = update.id;
        if update.state.is_down() {
            self.hinted.remove(&id);
        }
        match (before, update.state) {
            (MemberState::Alive, MemberState::Alive) if meta_changed => {
                self.events.push_back(MembershipEvent::Updated(id));
            }
            (MemberState::Alive, MemberState::Alive) => {}
            (b, MemberState::Alive) => {
                self.suspicions.remove(&id);
                if b.is_down() {
                    self.events.push_back(MembershipEvent::Joined(id));
                } else {
                    self.events.push_back(MembershipEvent::Recovered(id));
                }
            }
            (MemberState::Alive, MemberState::Suspect) => {
                self.start_suspicion(now, id);
                self.events.push_back(MembershipEvent::Suspected(id));
            }
            (_, MemberState::Suspect) => {}
            (b, MemberState::Dead) if !b.is_down() => {
                self.suspicions.remove(&id);
                self.events.push_back(MembershipEvent::Died(id));
            }
            (b, MemberState::Left) if !b.is_down() => {
                self.suspicions.remove(&id);
                self.events.push_back(MembershipEvent::Left(id));
            }
            _ => {}
        }
        if rebroadcast {
            self.gossip.push_at(now, update.gossip_key(), update);
        }
        true
    }

    /// This node's own detector moves `id` to `state` (`Suspect` or `Dead`) at its
    /// known incarnation, and gossips it signed (a hint and a confirmation to
    /// others; a prompt to refute for `id`).
    fn declare(&mut self, now: Time, id: NodeId, state: MemberState) {
        let Some(m) = self.members.get(&id) else {
            return;
        };
        if state.rank() <= m.state.rank() {
            return;
        }
        let update = MemberUpdate::accusation(id, m.incarnation(), state, &self.key);
        self.accept(now, Arc::new(update), true);
    }

    fn apply_about_me(&mut self, update: Statement) -> Result<bool, GossipRefused> {
        if self.left {
            return Ok(false);
        }
        let refute = match update.state {
            // Anyone may tell me I am suspected; my answer is a new incarnation. An
            // accusation above my incarnation is a lie (I never said it).
            MemberState::Suspect | MemberState::Dead | MemberState::Left => {
                if update.incarnation > self.incarnation {
                    return Err(GossipRefused::IncarnationJump);
                }
                update.incarnation == self.incarnation
            }
            // Someone remembers an earlier life of ours with a higher incarnation: only
            // believable with my own signature, within the step.
            MemberState::Alive => {
                if update.incarnation <= self.incarnation {
                    false
                } else if update.incarnation - self.incarnation > INCARNATION_STEP_MAX {
                    return Err(GossipRefused::IncarnationJump);
                } else if !update.verify_with(&self.sig_check) {
                    return Err(GossipRefused::Forged);
                } else {
                    true
                }
            }
        };
        if !refute {
            return Ok(false);
        }
        let Some(next) = update.incarnation.checked_add(1) else {
            return Err(GossipRefused::IncarnationJump);
        };
        self.incarnation = next;
        self.stats.refutations += 1;
        // Suspected while alive: perhaps this node is the slow one.
        self.change_health(1);
        self.events.push_back(MembershipEvent::Refuted {
            incarnation: self.incarnation,
        });
        self.announce_self();
        Ok(true)
    }

    /// Changes what this node advertises; raises its incarnation so the change wins.
    pub fn set_meta(&mut self, meta: NodeMeta) {
        if meta != *self.meta {
            self.meta = Arc::new(meta);
            // At the (unreachable) bound the incarnation stays: the new meta is then
            // announced at the same incarnation, and only newcomers learn it.
            self.incarnation = self.incarnation.saturating_add(1);
            self.announce_self();
        }
    }

    /// Announces a graceful departure; keep driving for a few periods so it spreads.
    pub fn leave(&mut self) {
        self.incarnation = self.incarnation.saturating_add(1);
        let update = Arc::new(
            MemberUpdate {
                id: self.me,
                incarnation: self.incarnation,
                state: MemberState::Left,
                // Kept, as every member's own statement keeps it: a member's meta is
                // read from its latest statement.
                meta: Some(self.meta.clone()),
                sig: SigBytes::default(),
            }
            .sign(&self.key),
        );
        self.self_statement = update.clone();
        self.view_digest = None;
        self.gossip.push((self.me, None), update);
        let targets: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| !m.state.is_down())
            .map(|m| m.id())
            .collect();
        for t in targets {
            self.out.push_back((t, Probe::Gossip));
        }
        self.left = true;
    }

    // ----- outputs -----

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, Probe)> {
        crate::broadcast::pop_shrinking(&mut self.out)
    }

    /// Gossip to piggyback on a message sent at `now`. An update is piggybacked
    /// for at most [`MembershipConfig::gossip_max_age`] after it was queued: past
    /// that, the syncs have spread it (see [`BroadcastQueue`]'s "Age").
    pub fn take_gossip(&mut self, now: Time, max: usize) -> Vec<Statement> {
        let n = self.live_count();
        let max_age = self.config.gossip_max_age(n);
        self.gossip
            .take_at(now, max.min(self.config.gossip_per_message), n, max_age)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        crate::broadcast::pop_shrinking(&mut self.events)
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Time {
        let mut t = self.next_probe_at.min(self.next_sync_at);
        if let Some(p) = &self.probe
            && !p.acked
            && !p.indirect_sent
        {
            t = t.min(p.indirect_at);
        }
        if let Some(s) = self.suspicions.values().map(|s| s.ends).min() {
            t = t.min(s);
        }
        if let Some(n) = self.relays.values().filter_map(|r| r.nack_at).min() {
            t = t.min(n);
        }
        t
    }

    // ----- internals -----

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn announce_self(&mut self) {
        let update = Arc::new(
            MemberUpdate {
                id: self.me,
                incarnation: self.incarnation,
                state: MemberState::Alive,
                meta: Some(self.meta.clone()),
                sig: SigBytes::default(),
            }
            .sign(&self.key),
        );
        self.self_statement = update.clone();
        self.view_digest = None;
        self.gossip.push((self.me, None), update);
    }

    /// This node's current signed statement about itself.
    pub fn self_statement(&self) -> &Statement {
        &self.self_statement
    }

    /// Every member's own latest signed statement (and this node's); a dead member
    /// as hearsay, which the receiver only takes as a prompt to probe.
    fn full_view(&self) -> Vec<Statement> {
        let mut view: Vec<Statement> = self
            .members
            .values()
            .map(|m| {
                if m.state == MemberState::Dead {
                    Arc::new(MemberUpdate {
                        id: m.id(),
                        incarnation: m.incarnation(),
                        state: m.state,
                        meta: None,
                        sig: SigBytes::default(),
                    })
                } else {
                    m.statement.clone()
                }
            })
            .collect();
        view.push(self.self_statement.clone());
        view
    }

    /// Sends `peer` this node's full view (at most one unsolicited sync per peer
    /// per probe interval); the cluster calls it for an offer whose names digest
    /// differs.
    pub(crate) fn send_sync(&mut self, now: Time, peer: NodeId) {
        if self.may_sync(now, peer) {
            let members = self.full_view();
            self.out.push_back((peer, Probe::Sync { members }));
        }
    }

    /// Asks `peer` for its full view: a sync carrying only this node's own
    /// statement (the peer answers any sync with its whole view). Limited as
    /// [`Membership::send_sync`] is.
    fn send_pull(&mut self, now: Time, peer: NodeId) {
        if self.may_sync(now, peer) {
            self.stats.pulls += 1;
            let members = vec![self.self_statement.clone()];
            self.out.push_back((peer, Probe::Sync { members }));
        }
    }

    /// Whether a sync may go to `peer` now (admitted, and at most one unsolicited
    /// sync per peer per probe interval); if so, it is counted as sent.
    fn may_sync(&mut self, now: Time, peer: NodeId) -> bool {
        if !self.is_admitted(&peer) {
            return false;
        }
        if let Some(last) = self.sync_sent.get(&peer)
            && now.saturating_since(*last) < self.config.probe_interval
        {
            return false;
        }
        self.sync_sent.insert(peer, now);
        true
    }

    /// Applies a view `from` sent in a sync or a sync's answer. Only what it says
    /// about `from` itself is news to re-gossip (see [`Membership::apply_with`]).
    ///
    /// Then views were exchanged in full, so two of them differed (or a stranger
    /// pulled, which also says its view and this node's do not match): the next
    /// periodic sync is due within `sync_interval`. What gossip failed to spread
    /// (an update past its age limit, a member that joined in a storm) then reaches
    /// the nodes that lack it in a few base periods, not in minutes of stretched
    /// ones (at 10,000 members the stretched period is 300 s). When views agree,
    /// offers exchange digests only and the stretched period returns. A peer that
    /// sends syncs on purpose only makes this node offer digests every
    /// `sync_interval`; each sync it sends already costs it the full answer.
    fn take_view(&mut self, now: Time, from: NodeId, members: Vec<Statement>) {
        for update in members {
            let news = update.id == from;
            self.apply_with(now, from, update, news);
        }
        self.next_sync_at = self.next_sync_at.min(now + self.config.sync_interval);
    }

    fn periodic_sync(&mut self, now: Time) {
        // A bootstrap peer this node has never known as a member is on the other
        // side of something: nodes that joined each other while cut off from
        // their seeds (a partition at start) form a view of their own, and
        // neither side has a down member to reach the other through. One such
        // seed is synced every period, besides the usual sync, until it is known.
        if !self.left {
            let unknown: Vec<NodeId> = self
                .seeds
                .iter()
                .filter(|s| self.members.get(s).is_none())
                .copied()
                .collect();
            if !unknown.is_empty() {
                let seed = unknown[self.rng.index(unknown.len())];
                self.stats.seeds_resynced += 1;
                self.send_sync(now, seed);
            }
        }
        let alive: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| !m.state.is_down())
            .map(|m| m.id())
            .collect();
        let down: Vec<NodeId> = self
            .members
            .values()
            .filter(|m| m.state.is_down())
            .map(|m| m.id())
            .collect();
        let pick_down = !down.is_empty() && (alive.is_empty() || self.rng.chance(0.5));
        let pool = if pick_down { &down } else { &alive };
        if pool.is_empty() {
            return;
        }
        let peer = pool[self.rng.index(pool.len())];
        if pick_down {
            // A member believed down gets the full view: if it is alive on the other
            // side of a healed partition, both sides learn of each other at once.
            self.sync_sent.remove(&peer);
            self.send_sync(now, peer);
        } else if self.is_admitted(&peer) {
            // A live one gets the digests first; it answers with a full sync only
            // if the views differ.
            self.stats.sync_offers += 1;
            let view = self.cached_view_digest();
            self.out.push_back((
                peer,
                Probe::SyncOffer {
                    view,
                    names: [0; 32],
                },
            ));
        }
    }

    fn start_probe(&mut self, now: Time) {
        // Hinted members first (someone else suspects them: see for ourselves), then
        // a randomised round-robin over alive and suspect members.
        let mut target = None;
        while let Some(id) = self.hinted.pop_first() {
            if self.members.get(&id).is_some_and(|m| !m.state.is_down()) {
                target = Some(id);
                break;
            }
        }
        for _ in 0..2 {
            if target.is_some() {
                break;
            }
            // A table that outgrew this round's range starts a new round: the
            // members past it would otherwise wait a whole round (a node that
            // began its round knowing a few hundred members of a joining thousand
            // would leave the rest to others).
            let len = self.members.len();
            if len as u64 <= self.probe_round.domain() {
                while let Some(slot) = self.probe_round.at(self.probe_next) {
                    self.probe_next += 1;
                    if let Some(m) = self.members.in_slot(slot)
                        && !m.state.is_down()
                    {
                        target = Some(m.id());
                        break;
                    }
                }
            }
            if target.is_some() {
                break;
            }
            // The table holds at most `TABLE_MAX` (`u32::MAX`) entries.
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            self.probe_round = Shuffle::new(len, &mut self.rng);
            self.probe_next = 0;
        }
        let Some(target) = target else { return };
        let seq = self.next_seq();
        self.stats.probes += 1;
        self.probe = Some(ProbeState {
            target,
            helpers: Vec::new(),
            nacked: Vec::new(),
            seq,
            indirect_at: now + self.config.probe_timeout.saturating_mul(self.health_mult()),
            indirect_sent: false,
            acked: false,
        });
        self.out.push_back((target, Probe::Ping { seq }));
    }

    fn suspect(&mut self, now: Time, id: NodeId) {
        let Some(m) = self.members.get(&id) else {
            return;
        };
        if m.state != MemberState::Alive {
            return;
        }
        self.stats.suspicions += 1;
        self.declare(now, id, MemberState::Suspect);
        // The members whose suspicions this node has heard need this one to
        // shorten theirs: send it to them now (piggybacked on a bare gossip
        // message, where it goes first as the newest), instead of waiting for
        // the epidemic to reach them. At most `suspicion_confirmations` messages.
        if let Some(accusers) = self.accusers.get(&id) {
            for (a, _) in accusers {
                self.out.push_back((*a, Probe::Gossip));
            }
        }
    }

    fn start_suspicion(&mut self, now: Time, id: NodeId) {
        // As long as the full timeout, shorter for each other member suspecting it.
        let mut end = self.suspicion_end(now, id, now);
        // Refused within the last two periods: nothing listens where it was.
        if self
            .refused
            .get(&id)
            .is_some_and(|t| now.saturating_since(*t) <= self.config.probe_interval * 2)
        {
            end = end.min(now + self.config.probe_interval);
        }
        self.suspicions.entry(id).or_insert(Suspicion {
            began: now,
            ends: end,
        });
    }

    /// Checks internal consistency; tests and the simulator call it after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.members.contains_key(&self.me) {
            return Err("a node lists itself as a member".into());
        }
        self.members.check_invariants()?;
        if self.members.len() > self.config.members_max {
            return Err(format!("{} members exceed members_max", self.members.len()));
        }
        if self.deferred.len() > SEEDS_MAX {
            return Err(format!(
                "{} deferred peers exceed {SEEDS_MAX}",
                self.deferred.len()
            ));
        }
        // One walk over the members for the digest and the counts below.
        let (mut live, mut untimed_suspect, mut not_admitted) = (0, None, None);
        let mut visit = |m: &Member| {
            live += usize::from(!m.state.is_down());
            if m.state == MemberState::Suspect && !self.suspicions.contains_key(&m.id()) {
                untimed_suspect.get_or_insert(m.id());
            }
            if !self.is_admitted(&m.id()) {
                not_admitted.get_or_insert(m.id());
            }
        };
        let stale = match self.view_digest {
            Some(cached) => cached != self.walk_view(&mut visit),
            None => {
                self.members.values().for_each(&mut visit);
                false
            }
        };
        if stale {
            return Err("the cached view digest is out of date".into());
        }
        if let Some(id) = untimed_suspect {
            return Err(format!("suspect {id:?} has no suspicion timer"));
        }
        // `try_apply_with` skips the allowlist for members held.
        if let Some(id) = not_admitted {
            return Err(format!("member {id:?} is not admitted"));
        }
        for (id, s) in &self.suspicions {
            match self.members.get(id) {
                Some(m) if m.state == MemberState::Suspect => {}
                other => {
                    return Err(format!(
                        "suspicion timer for {id:?} in state {:?}",
                        other.map(|m| m.state)
                    ));
                }
            }
            if s.ends < s.began {
                return Err(format!("suspicion of {id:?} ends before it began"));
            }
        }
        if self.health >= self.config.health_max.max(1) {
            return Err(format!(
                "local health {} not under {}",
                self.health, self.config.health_max
            ));
        }
        let k = self.config.suspicion_confirmations as usize;
        for (id, list) in &self.accusers {
            if self.members.get(id).is_none_or(|m| m.state.is_down()) {
                return Err(format!("accusers kept for {id:?}, not an up member"));
            }
            if list.len() > k {
                return Err(format!("{} accusers of {id:?}, over {k}", list.len()));
            }
            for (i, (a, _)) in list.iter().enumerate() {
                if a == id || *a == self.me || list[..i].iter().any(|(b, _)| b == a) {
                    return Err(format!("accuser {a:?} of {id:?} is itself, me, or twice"));
                }
            }
        }
        if live != self.live {
            return Err(format!(
                "live count {} but {live} members are up",
                self.live
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
