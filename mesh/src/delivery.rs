//! Remote delivery: reliable, ordered, acknowledged links between nodes, as a sans-IO
//! state machine.
//!
//! Each ordered pair of nodes has a link. The sender numbers frames `1, 2, 3...`
//! within a `(session, epoch)`; the receiver hands them to actors strictly in order,
//! drops duplicates and anything out of order (go-back-N), and acknowledges
//! cumulatively. That gives, per sender node and so per sending actor, FIFO order and
//! at most one delivery of each frame.
//!
//! **What an acknowledgement means here:** every frame up to `up_to` has an outcome.
//! It was either accepted into the target actor's mailbox, or refused for the reason
//! listed with it (no such actor, wrong type, mailbox still full...). A sender that
//! gets no ack resends everything unacked after `retransmit_after` or when the link
//! comes back up; the receiver's deduplication makes that safe.
//!
//! **Sessions and epochs.** A sender's session is its incarnation, so a restarted
//! sender starts a fresh sequence the receiver recognises. If a sender declares the
//! receiver dead it fails every unacked frame (event [`DeliveryEvent::Unreachable`])
//! and, should the receiver come back, starts a new epoch so the receiver resets its
//! expectations instead of waiting forever for the failed frames.
//!
//! A *receiver* that restarts starts with no inbound state and expects every link
//! from seq 1. Its acks carry its session, so the sender notices the change, fails
//! the link's unacknowledged frames as for a dead peer and opens a new epoch.
//!
//! Epochs come from one counter per node, not per peer: every link a node opens
//! has a higher epoch than any it opened before, to whichever peer, so a new link
//! is newer than whatever record its receiver still holds without the sender
//! keeping anything per peer.
//!
//! **Closing and forgetting.** Inbound state survives a peer being declared dead
//! (see [`Delivery::peer_failed`]): one small record per peer that sent in a
//! session, so by default at most one per admitted node. A cluster that sets
//! `forget_after` keeps fewer: a sender drops an outbound link after
//! `idle_link_after` with everything acknowledged, and then tells the receiver so
//! with a [`CloseFrame`] (unreliable, like an ack): nothing after `up_to` will come
//! in that `(session, epoch)`, and its next frame to this peer opens a newer epoch.
//! The receiver keeps its record for `forget_after` more (as TCP's TIME-WAIT does,
//! so a late copy of a frame of the closed link is still known for a duplicate;
//! rounded up to a tick, a quarter of `idle_link_after` or of `forget_after`,
//! whichever is shorter, so one wake-up forgets the records of every close heard
//! within a tick) and then forgets it, if it is still that link's, complete and
//! acknowledged. So a node keeps records for the peers that talked to it lately,
//! not for every peer that ever did. A lost close only leaves its record in place until that peer's next
//! link closes. Only admitted peers can send, and a close only makes its receiver
//! forget the sender's own link. It is off by default because it costs a frame per
//! link closed and saves little in a real node (a record is under 100 bytes, so
//! 10,000 peers cost 1 MB); a simulator that runs 10,000 nodes in one process, each
//! telling random peers, saves gigabytes with it (docs/benchmarks.md).
//!
//! **Large bodies.** A body over `chunk_bytes` (4 MiB by default, well under the
//! 8 MiB frame bound) is encoded once and sent as consecutive [`DataBody::Chunk`]
//! frames of the same link. Each chunk is a frame like any other (numbered,
//! acknowledged, retransmitted); the receiver takes chunks in as they come in
//! order and completes them itself, and hands the joined body out with the last
//! chunk's seq, which is the seq the sender's events name. A frame bound therefore
//! never limits what an actor can send; `message_bytes_max` (64 MiB) does. A body
//! over it is refused at [`Delivery::send`] (the driver checks first and gives the
//! caller a typed error), and a joined body over it is refused by the receiver with
//! [`Failure::Rejected`], which the sender's [`DeliveryEvent::Refused`] reports.
//! No frame is larger than a chunk and its header, whatever the body.
//!
//! **Bounds.** Each outbound link has two windows, each of at most `window_frames`
//! frames and `window_bytes` bytes queued or unacknowledged: one for tells and asks
//! (the *user window*), one for replies, so a peer flooding this node with asks
//! cannot starve its own tells, nor tells the replies it is owed. At a bound
//! [`Delivery::send`] refuses and hands the body back. The user window is the only
//! flow control on outbound actor traffic: the rule is [`Window::admits`], and the
//! libp2p driver keeps a concurrent copy of each user window (so `try_tell` can
//! answer on the caller's thread) that it releases as [`DeliveryEvent::Released`]
//! says; `try_tell` then fails with `MailboxFull` and an awaiting `tell` waits for
//! that event. A reply that finds its window full is dropped, and its asker times
//! out. A body sent in chunks counts as one frame of its full size against its
//! window. Inbound state is one small record per peer, plus the part of a chunked
//! body taken in so far: at most `message_bytes_max` per sending peer (over it, the
//! rest of the body is discarded as it arrives and the body is refused).
//! Retransmissions continue until the peer acks or membership declares it dead,
//! so retries are bounded by the failure-detection bound.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use plexus_actors::codec;
use plexus_actors::{NodeId, Time};
use serde::{Deserialize, Serialize};

use crate::wire::{
    AckFrame, CloseFrame, DataBody, DataFrame, Failure, Frame, MESH_FRAME_BYTES_MAX,
};

/// The most closes waiting to be sent; past it a link closes unannounced, and its
/// receiver keeps the record until a later link from this node closes.
const CLOSES_MAX: usize = 4096;

/// The most closes waiting out `forget_after` (64 bytes each).
pub const CLOSED_MAX: usize = 65_536;

/// The smallest `chunk_bytes` in force (a smaller setting is raised to it).
pub const CHUNK_BYTES_MIN: usize = 1024;
/// The largest `chunk_bytes` in force: half the frame bound, which leaves room for
/// the frame's own fields (a larger setting is cut to it).
pub const CHUNK_BYTES_MAX: usize = MESH_FRAME_BYTES_MAX / 2;

/// Delivery tuning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryConfig {
    /// Most frames queued or unacked per peer and window (user frames; replies).
    pub window_frames: usize,
    /// Most bytes queued or unacked per peer and window.
    pub window_bytes: usize,
    /// Acknowledge after this many completed frames...
    pub ack_every: u64,
    /// ...or this long after the first unacknowledged one.
    pub ack_delay: Duration,
    /// Resend unacked frames after this long without ack progress.
    pub retransmit_after: Duration,
    /// When the receiver reports a gap (it dropped a frame that came after a
    /// missing one), resend from the missing frame at once, but at most this often.
    pub fast_retransmit_gap: Duration,
    /// An outbound link with nothing queued or unacknowledged for this long is
    /// dropped; the next send to that peer opens a new epoch, which the receiver
    /// takes as a rebuilt link. A node then keeps state for the peers it talks to
    /// now, not for every peer it ever told something (at 1,000 nodes telling
    /// random peers, that was most of the simulator's memory growth).
    #[serde(default = "idle_link_after_default")]
    pub idle_link_after: Duration,
    /// With a value, idle links are closed with a [`CloseFrame`] and a receiver
    /// forgets a closed link's record this long after the close, rounded up to a
    /// quarter of `idle_link_after` or of this, whichever is shorter (see the
    /// module docs); without (the default), neither. Set it cluster-wide: a node
    /// without it ignores closes, one with it sends them.
    #[serde(default)]
    pub forget_after: Option<Duration>,
    /// A body larger than this crosses as chunks of this size (see the module docs;
    /// held between [`CHUNK_BYTES_MIN`] and [`CHUNK_BYTES_MAX`]).
    #[serde(default = "chunk_bytes_default")]
    pub chunk_bytes: usize,
    /// The largest body a node sends or joins, chunks and all.
    #[serde(default = "message_bytes_max_default")]
    pub message_bytes_max: usize,
}

fn idle_link_after_default() -> Duration {
    Duration::from_secs(60)
}

fn chunk_bytes_default() -> usize {
    CHUNK_BYTES_MAX
}

fn message_bytes_max_default() -> usize {
    64 * 1024 * 1024
}

impl DeliveryConfig {
    /// The chunk size in force.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes.clamp(CHUNK_BYTES_MIN, CHUNK_BYTES_MAX)
    }

    /// Whether a body of `bytes` (as [`DataBody::size_bytes`] counts) is within
    /// `message_bytes_max`. The one size rule: [`Delivery::send`] applies it, and
    /// so do the cluster core's asks and the driver before a send is queued.
    pub fn fits(&self, bytes: usize) -> bool {
        bytes <= self.message_bytes_max
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            window_frames: 4096,
            window_bytes: 64 * 1024 * 1024,
            ack_every: 128,
            ack_delay: Duration::from_millis(2),
            retransmit_after: Duration::from_secs(2),
            fast_retransmit_gap: Duration::from_millis(20),
            idle_link_after: idle_link_after_default(),
            forget_after: None,
            chunk_bytes: chunk_bytes_default(),
            message_bytes_max: message_bytes_max_default(),
        }
    }
}

/// Frames and bytes held against one window of a link (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Frames held.
    pub frames: usize,
    /// Bytes held.
    pub bytes: usize,
}

impl Window {
    /// Whether a frame of `bytes` fits under `config`'s bounds: fewer than
    /// `window_frames` frames held, and `window_bytes` not exceeded (a single frame
    /// larger than `window_bytes` fits an empty window, so it is never stuck).
    ///
    /// The one admission rule: the core applies it, and the driver's concurrent
    /// copy of a user window applies it too. It is monotone: whatever fits a window
    /// fits any window holding less.
    pub fn admits(&self, bytes: usize, config: &DeliveryConfig) -> bool {
        self.frames < config.window_frames
            && self.bytes.saturating_add(bytes) <= config.window_bytes.max(bytes)
    }

    /// Holds a frame of `bytes`.
    pub fn take(&mut self, bytes: usize) {
        self.frames += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Gives back `frames` frames of `bytes` bytes in all.
    pub fn release(&mut self, frames: usize, bytes: usize) {
        self.frames = self.frames.saturating_sub(frames);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

/// What happened to frames this node sent.
#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryEvent {
    /// Every frame to `peer` up to `up_to` has an outcome (refusals reported apart).
    Acked {
        /// The receiver.
        peer: NodeId,
        /// The link epoch.
        epoch: u64,
        /// The highest acknowledged seq.
        up_to: u64,
    },
    /// A frame was refused by the receiver.
    Refused {
        /// The receiver.
        peer: NodeId,
        /// Its seq.
        seq: u64,
        /// Why.
        failure: Failure,
        /// The frame's content.
        body: Arc<DataBody>,
    },
    /// `peer` was declared dead with these frames unacknowledged; they may or may
    /// not have been delivered.
    Unreachable {
        /// The peer.
        peer: NodeId,
        /// The frames, in order.
        frames: Vec<(u64, Arc<DataBody>)>,
    },
    /// User frames (tells and asks) to `peer` left its user window (acknowledged,
    /// refused or given up): so much room opened.
    Released {
        /// The peer.
        peer: NodeId,
        /// Frames released.
        frames: usize,
        /// Their bytes.
        bytes: usize,
    },
}

/// What the receiver should do with an incoming data frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// Deliver it, then call [`Delivery::complete`] with the outcome.
    Deliver {
        /// Its seq (pass it to `complete`).
        seq: u64,
        /// What to deliver.
        body: Arc<DataBody>,
    },
    /// Already delivered (a retransmission): dropped.
    Duplicate,
    /// Ahead of the next expected frame, or from an old session: dropped; the sender
    /// will resend.
    Dropped,
    /// Handled by the core: a chunk taken in, or a joined body refused (too large,
    /// or not decodable). Nothing to deliver.
    Absorbed,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Data frames transmitted, retransmissions included.
    pub frames_sent: u64,
    /// Of which retransmissions.
    pub retransmitted: u64,
    /// Frames handed to the driver for delivery.
    pub delivered: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Out-of-order or stale frames dropped.
    pub dropped: u64,
    /// Frames the receiver refused.
    pub refused: u64,
    /// Sends refused because a window was full.
    pub window_full: u64,
    /// Outbound links dropped after `idle_link_after` with nothing in flight.
    pub links_dropped_idle: u64,
    /// Inbound records forgotten `forget_after` past their sender's close.
    pub records_forgotten: u64,
    /// Closes ignored because [`CLOSED_MAX`] were waiting.
    pub closes_ignored: u64,
    /// Bodies sent in chunks.
    pub chunked_sent: u64,
    /// Chunked bodies joined and handed out.
    pub chunked_received: u64,
    /// Bodies refused for their size: at `send` (over `message_bytes_max`), or
    /// joined from a peer's chunks.
    pub too_large: u64,
}

struct Pending {
    seq: u64,
    /// What is transmitted: the body, or one chunk of it.
    frame: Arc<DataBody>,
    /// What was sent, on the frame that completes it (the body itself, or the last
    /// chunk of a chunked body); `None` on the other chunks. Events name this.
    message: Option<Arc<DataBody>>,
    /// Bytes charged to the window: the body's, on the frame that completes it.
    bytes: usize,
    reply: bool,
}

impl Pending {
    /// Whether the frame holds a place in its window (one per body).
    fn charged(&self) -> bool {
        self.message.is_some()
    }
}

fn is_reply(body: &DataBody) -> bool {
    matches!(body, DataBody::Reply { .. })
}

/// When `link` resends what is unacked: `retransmit_after` past its last progress,
/// or sooner for a gap report held back; `None` with nothing in flight.
fn resend_time(link: &OutLink, after: Duration) -> Option<Time> {
    (link.up && link.cursor > 0).then(|| {
        let timeout = link.last_progress + after;
        link.gap_at.map_or(timeout, |g| g.min(timeout))
    })
}

struct OutLink {
    epoch: u64,
    next_seq: u64,
    queue: VecDeque<Pending>,
    /// Index in `queue` of the first frame not yet transmitted.
    cursor: usize,
    /// Tells and asks in `queue`.
    user: Window,
    /// Replies in `queue`.
    replies: Window,
    up: bool,
    last_progress: Time,
    /// Its key in `Delivery::resends`, when it has unacked frames on a live link.
    resend_at: Option<Time>,
    /// No fast retransmission before this.
    fast_after: Time,
    /// A gap report came while fast retransmission was held back (before
    /// `fast_after`): resend then, rather than wait out `retransmit_after` (a
    /// report is all a receiver sends about a gap, and a lost resend followed by
    /// nothing new left the link stalled for the whole timeout).
    gap_at: Option<Time>,
    /// The receiver's session, from its first ack on this link.
    peer_session: Option<u64>,
    /// Since when nothing is queued or unacknowledged (its key in
    /// `Delivery::idle`); `None` while frames are.
    idle_since: Option<Time>,
}

/// What a node keeps per peer it has heard from: the inbound link's record. Found
/// on every frame received.
struct InLink {
    session: u64,
    epoch: u64,
    /// Last seq handed out for delivery.
    delivered: u64,
    /// Last seq with an outcome.
    completed: u64,
    /// Last seq acknowledged to the sender.
    acked: u64,
    ack_due: Option<Time>,
    /// Refusals to report and a chunked body being joined, if any: boxed, since
    /// almost no link has either and every node keeps a record for every peer.
    rare: Option<Box<Rare>>,
}

impl InLink {
    /// A record before any frame from the peer: session and epoch 0, older than
    /// every frame.
    fn unheard() -> Self {
        Self {
            session: 0,
            epoch: 0,
            delivered: 0,
            completed: 0,
            acked: 0,
            ack_due: None,
            rare: None,
        }
    }

    /// The chunked body being joined, if any.
    fn joining(&self) -> Option<&Joining> {
        self.rare.as_ref()?.joining.as_ref()
    }

    /// Whether everything handed out has an outcome that was acknowledged, and
    /// nothing is owed or held: what forgetting the record would lose.
    fn settled(&self) -> bool {
        self.delivered == self.completed
            && self.completed == self.acked
            && self.ack_due.is_none()
            && self.rare.is_none()
    }

    /// Drops the rare part once it holds nothing.
    fn tidy(&mut self) {
        if self
            .rare
            .as_ref()
            .is_some_and(|r| r.refused.is_empty() && r.joining.is_none())
        {
            self.rare = None;
        }
    }
}

// Every node keeps one record per peer, inline in a hashed table: keep it small.
const _: () = assert!(std::mem::size_of::<InLink>() <= 64);

/// The part of an inbound record that few links have at any time.
#[derive(Default)]
struct Rare {
    /// Frames refused since the last ack, with why: the next ack reports them.
    refused: Vec<(u64, Failure)>,
    /// The chunked body being joined.
    joining: Option<Joining>,
}

/// A chunked body being joined.
#[derive(Clone, Default)]
struct Joining {
    /// Its chunks so far.
    body: Vec<u8>,
    /// Why it will be refused (it outgrew the bound); its remaining chunks are
    /// discarded as they come.
    refused: Option<Failure>,
}

/// The per-peer maps, found on every frame sent, received and acknowledged: hashed,
/// not ordered. Only the invariant check walks them, and whether it finds a fault
/// does not depend on the order; every order the protocol acts in is kept by the
/// time-ordered indexes in [`Delivery`]. The seed is fixed ([`plexus_actors::fixed`])
/// so runs replay; only admitted peers have records. Idle outbound links are
/// dropped, and with `forget_after` inbound records are forgotten after their links
/// close, so both maps hold the peers of late. An inbound record holds what few
/// links need (refusals to report, a body being joined) behind one pointer, so it is
/// 64 bytes inline. A hash probe per frame replaced a B-tree walk of 32-byte keys.
/// Inline records ran a simulated 1,000-node hour 6% faster than boxed ones, in 10%
/// more memory (tables grow by doubling and leave the smaller ones behind); see
/// docs/benchmarks.md.
type PeerMap<V> = plexus_actors::fixed::FixedMap<NodeId, V>;

/// One node's links.
pub struct Delivery {
    session: u64,
    config: DeliveryConfig,
    out: PeerMap<OutLink>,
    /// Per peer heard from: the inbound record (see [`PeerMap`]).
    inbound: PeerMap<InLink>,
    /// The epoch of the next outbound link, to whichever peer (from 1).
    next_epoch: u64,
    /// Links whose senders closed them, in the order they closed: when the record
    /// goes (`forget_after` after the close, rounded up to the forget tick, if it
    /// is still that link's and settled), and the close. One wait for all, so a
    /// queue is in time order and its front is the next due (a B-tree's first
    /// entry, looked up at every `poll_timeout`, cost a simulated 1,000-node run
    /// 3%).
    closed: VecDeque<(Time, NodeId, CloseFrame)>,
    /// A quarter of `idle_link_after` in microseconds (at least 1): idle links are
    /// dropped on multiples of it. Worked out once, not at every `poll_timeout`.
    idle_tick_us: u64,
    /// The tick closed links' records are forgotten on: the idle tick, or a quarter
    /// of `forget_after` if that is shorter (so a record is kept at most a quarter
    /// longer than asked).
    forget_tick_us: u64,
    /// Closes to send for links dropped idle, with their peers.
    closes: VecDeque<(NodeId, CloseFrame)>,
    ready: VecDeque<NodeId>,
    events: VecDeque<DeliveryEvent>,
    stats: DeliveryStats,
    /// Due acknowledgements, ordered by due time: `poll_transmit` and `poll_timeout`
    /// never scan the links.
    acks_due: Deadlines,
    /// Retransmission deadlines of links with unacked frames.
    resends: Deadlines,
    /// Outbound links with nothing in flight, by when they became so.
    idle: Deadlines,
}

/// `(time, peer)` entries in time order, with the earliest time kept inline:
/// `poll_timeout` runs after every input and reads three of these, and a
/// B-tree's first entry is a walk into memory that is cold when a process runs a
/// thousand nodes (3% of a simulated 1,000-node hour).
#[derive(Default)]
struct Deadlines {
    set: BTreeSet<(Time, NodeId)>,
    /// The first entry's time: `set.first()`'s, kept current by every change.
    first: Option<Time>,
}

impl Deadlines {
    fn insert(&mut self, at: Time, peer: NodeId) {
        if self.set.insert((at, peer)) {
            self.first = Some(self.first.map_or(at, |f| f.min(at)));
        }
    }

    fn remove(&mut self, at: Time, peer: NodeId) {
        if self.set.remove(&(at, peer)) && self.first == Some(at) {
            self.first = self.set.first().map(|e| e.0);
        }
    }

    /// The earliest time, if any.
    fn first(&self) -> Option<Time> {
        self.first
    }

    /// Takes the earliest entry if its time is at or before `until`.
    fn pop_until(&mut self, until: Time) -> Option<(Time, NodeId)> {
        if self.first? > until {
            return None;
        }
        let entry = self.set.pop_first();
        self.first = self.set.first().map(|e| e.0);
        entry
    }

    fn contains(&self, at: Time, peer: NodeId) -> bool {
        self.set.contains(&(at, peer))
    }

    /// Whether the inline time is the set's first (for the invariant check).
    fn consistent(&self) -> bool {
        self.first == self.set.first().map(|e| e.0)
    }
}

/// `t` rounded up to a multiple of `tick_us` (at least 1): housekeeping due within
/// one tick is done by one wake-up.
fn on_tick(t: Time, tick_us: u64) -> Time {
    Time::from_micros(t.as_micros().div_ceil(tick_us).saturating_mul(tick_us))
}

impl Delivery {
    /// Links for a node whose session (incarnation) is `session`.
    pub fn new(session: u64, config: DeliveryConfig) -> Self {
        let quarter = |d: Duration| {
            u64::try_from((d / 4).as_micros())
                .unwrap_or(u64::MAX)
                .max(1)
        };
        let idle_tick_us = quarter(config.idle_link_after);
        let forget_tick_us = config
            .forget_after
            .map_or(idle_tick_us, |f| idle_tick_us.min(quarter(f)));
        Self {
            session,
            config,
            out: PeerMap::default(),
            inbound: PeerMap::default(),
            next_epoch: 1,
            idle_tick_us,
            forget_tick_us,
            closed: VecDeque::new(),
            closes: VecDeque::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            stats: DeliveryStats::default(),
            acks_due: Deadlines::default(),
            resends: Deadlines::default(),
            idle: Deadlines::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> DeliveryStats {
        self.stats
    }

    /// Frames queued or unacknowledged towards `peer`.
    pub fn in_flight(&self, peer: &NodeId) -> usize {
        self.out.get(peer).map_or(0, |l| l.queue.len())
    }

    /// Whether a small tell or ask to `peer` would be accepted now.
    pub fn has_room(&self, peer: &NodeId) -> bool {
        self.user_window(peer).admits(1, &self.config)
    }

    /// What the tells and asks to `peer` hold of its user window.
    pub fn user_window(&self, peer: &NodeId) -> Window {
        self.out.get(peer).map_or(Window::default(), |l| l.user)
    }

    /// The tuning in force.
    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// The outbound link to `peer`, opened (in a new epoch) if there is none. It
    /// borrows only what it needs.
    fn link<'a>(
        out: &'a mut PeerMap<OutLink>,
        next_epoch: &mut u64,
        peer: NodeId,
        now: Time,
    ) -> &'a mut OutLink {
        out.entry(peer).or_insert_with(|| {
            let epoch = *next_epoch;
            // 2^64 links opened in one session do not happen; saturating keeps the
            // counter total.
            *next_epoch = next_epoch.saturating_add(1);
            OutLink {
                epoch,
                next_seq: 1,
                queue: VecDeque::new(),
                cursor: 0,
                user: Window::default(),
                replies: Window::default(),
                up: true,
                last_progress: now,
                resend_at: None,
                fast_after: now,
                gap_at: None,
                peer_session: None,
                idle_since: None,
            }
        })
    }

    /// Makes `peer`'s inbound link owe an ack no later than `at`.
    fn schedule_ack(&mut self, peer: NodeId, at: Time) {
        let Some(link) = self.inbound.get_mut(&peer) else {
            return;
        };
        match link.ack_due {
            Some(due) if due <= at => {}
            old => {
                if let Some(due) = old {
                    self.acks_due.remove(due, peer);
                }
                link.ack_due = Some(at);
                self.acks_due.insert(at, peer);
            }
        }
    }

    /// Brings `peer`'s entry in `resends` in line with its link.
    fn reindex(&mut self, peer: NodeId) {
        let after = self.config.retransmit_after;
        let Some(link) = self.out.get_mut(&peer) else {
            return;
        };
        let want = resend_time(link, after);
        if want != link.resend_at {
            if let Some(old) = link.resend_at {
                self.resends.remove(old, peer);
            }
            if let Some(at) = want {
                self.resends.insert(at, peer);
            }
            link.resend_at = want;
        }
    }

    /// Queues `body` for `peer`. Returns its seq (for a body sent in chunks, its
    /// last chunk's, which events name), or the body back if its window (replies',
    /// or the user window for tells and asks) is full, if it is over
    /// `message_bytes_max` ([`DeliveryConfig::fits`]; counted in
    /// [`DeliveryStats::too_large`]; drivers check the size first and tell the
    /// caller), or if it is a chunk.
    pub fn send(
        &mut self,
        now: Time,
        peer: NodeId,
        body: Arc<DataBody>,
    ) -> Result<u64, Arc<DataBody>> {
        let config = self.config.clone();
        let bytes = body.size_bytes();
        if matches!(*body, DataBody::Chunk { .. }) {
            // Chunks are made here, never taken from a caller.
            return Err(body);
        }
        if !config.fits(bytes) {
            self.stats.too_large += 1;
            return Err(body);
        }
        let reply = is_reply(&body);
        // In use again. (An idle link's windows are empty, so the send below is
        // admitted: an oversized frame fits an empty window.)
        let link = Self::link(&mut self.out, &mut self.next_epoch, peer, now);
        if let Some(since) = link.idle_since.take() {
            self.idle.remove(since, peer);
        }
        let window = if reply {
            &mut link.replies
        } else {
            &mut link.user
        };
        if !window.admits(bytes, &config) {
            self.stats.window_full += 1;
            return Err(body);
        }
        let chunk = config.chunk_bytes();
        let encoded = if bytes > chunk {
            // Encoding these types cannot fail (plain data, no maps with odd keys);
            // were it to, the body is handed back like a refused one.
            match codec::encode_body(&*body) {
                Ok(encoded) => Some(bytes::Bytes::from(encoded)),
                Err(_) => return Err(body),
            }
        } else {
            None
        };
        window.take(bytes);
        if link.queue.is_empty() {
            link.last_progress = now;
        }
        let first = link.queue.len();
        let chunked = encoded.is_some();
        match encoded {
            None => {
                let seq = link.next_seq;
                link.next_seq += 1;
                link.queue.push_back(Pending {
                    seq,
                    frame: body.clone(),
                    message: Some(body),
                    bytes,
                    reply,
                });
            }
            Some(encoded) => {
                let mut at = 0;
                while at < encoded.len() {
                    let end = encoded.len().min(at + chunk);
                    let last = end == encoded.len();
                    let seq = link.next_seq;
                    link.next_seq += 1;
                    link.queue.push_back(Pending {
                        seq,
                        frame: Arc::new(DataBody::Chunk {
                            bytes: encoded.slice(at..end),
                            last,
                        }),
                        message: last.then(|| body.clone()),
                        bytes: if last { bytes } else { 0 },
                        reply,
                    });
                    at = end;
                }
            }
        }
        let seq = link.next_seq - 1;
        if link.up && link.cursor == first {
            self.ready.push_back(peer);
        }
        if chunked {
            self.stats.chunked_sent += 1;
        }
        Ok(seq)
    }

    /// The transport to `peer` is (re)connected: resend everything unacked.
    pub fn link_up(&mut self, now: Time, peer: NodeId) {
        if let Some(link) = self.out.get_mut(&peer) {
            link.up = true;
            link.gap_at = None;
            if link.cursor > 0 {
                self.stats.retransmitted += link.cursor as u64;
            }
            link.cursor = 0;
            link.last_progress = now;
            if !link.queue.is_empty() {
                self.ready.push_back(peer);
            }
        }
        self.reindex(peer);
    }

    /// The transport to `peer` is down: hold frames until it is back.
    pub fn link_down(&mut self, peer: NodeId) {
        if let Some(link) = self.out.get_mut(&peer) {
            link.up = false;
        }
        self.reindex(peer);
    }

    /// `peer` was declared dead: fail its unacked frames.
    ///
    /// The inbound side is kept on purpose. A peer declared dead may only have been
    /// partitioned or paused; it then keeps resending its unacked frames in the same
    /// session, and only the inbound record of what was delivered stops them being
    /// delivered twice. A peer that really restarted shows a new session and resets
    /// the record itself. (The simulator found this: dropping the record here
    /// redelivered frames after every false suspicion.)
    pub fn peer_failed(&mut self, peer: NodeId) {
        if let Some(at) = self.out.get(&peer).and_then(|l| l.resend_at) {
            self.resends.remove(at, peer);
        }
        if let Some(link) = self.out.remove(&peer)
            && !link.queue.is_empty()
        {
            if link.user.frames > 0 {
                self.events.push_back(DeliveryEvent::Released {
                    peer,
                    frames: link.user.frames,
                    bytes: link.user.bytes,
                });
            }
            let frames = link
                .queue
                .into_iter()
                .filter_map(|p| Some((p.seq, p.message?)))
                .collect();
            self.events
                .push_back(DeliveryEvent::Unreachable { peer, frames });
        }
    }

    /// An incoming data frame.
    pub fn handle_data(&mut self, now: Time, from: NodeId, frame: DataFrame) -> Inbound {
        // Every (session, epoch) numbers its frames from 1, so a new one is expected
        // from 1 whatever frame shows up first. (The simulator found this: starting
        // from the first frame seen skipped frame 1 whenever frame 2 overtook it.)
        let link = self.inbound.entry(from).or_insert_with(InLink::unheard);
        if (frame.session, frame.epoch) > (link.session, link.epoch) {
            // A new sender life or a rebuilt link (or the first frame): start over.
            *link = InLink {
                session: frame.session,
                epoch: frame.epoch,
                ..InLink::unheard()
            };
        } else if (frame.session, frame.epoch) < (link.session, link.epoch) {
            self.stats.dropped += 1;
            return Inbound::Dropped;
        }
        if frame.seq <= link.completed {
            // A retransmission of something already done: make sure the sender hears.
            self.stats.duplicates += 1;
            link.acked = link.acked.min(frame.seq.saturating_sub(1));
            self.schedule_ack(from, now);
            return Inbound::Duplicate;
        }
        if frame.seq != link.completed + 1 || link.delivered != link.completed {
            self.stats.dropped += 1;
            let gap = link.delivered == link.completed;
            if gap {
                // A frame before this one is missing. Say at once where this side
                // stands, so the sender resends from there (fast retransmit) instead
                // of waiting out its timer.
                self.schedule_ack(from, now);
            }
            return Inbound::Dropped;
        }
        link.delivered = frame.seq;
        let DataBody::Chunk { bytes, last } = &*frame.body else {
            self.stats.delivered += 1;
            return Inbound::Deliver {
                seq: frame.seq,
                body: frame.body,
            };
        };
        // A chunk: take it in, and on the last one hand out the joined body.
        let max = self.config.message_bytes_max;
        let joining = link
            .rare
            .get_or_insert_with(Box::default)
            .joining
            .get_or_insert_with(Joining::default);
        if joining.refused.is_none() {
            if joining.body.len().saturating_add(bytes.len()) > max {
                joining.body = Vec::new();
                joining.refused = Some(Failure::Rejected(format!(
                    "a chunked message over the receiver's bound of {max} bytes"
                )));
            } else {
                joining.body.extend_from_slice(bytes);
            }
        }
        if !*last {
            self.complete(now, from, frame.seq, Ok(()));
            return Inbound::Absorbed;
        }
        let Joining { body, refused } = link
            .rare
            .as_mut()
            .and_then(|r| r.joining.take())
            .unwrap_or_default();
        link.tidy();
        let joined = bytes::Bytes::from(body);
        let outcome = match refused {
            Some(failure) => Err(failure),
            None => match codec::decode_body_shared::<DataBody>(&joined, max) {
                Ok(DataBody::Chunk { .. }) => Err(Failure::Malformed(
                    "a chunked message made of a chunk".into(),
                )),
                Ok(body) => {
                    self.stats.delivered += 1;
                    self.stats.chunked_received += 1;
                    return Inbound::Deliver {
                        seq: frame.seq,
                        body: Arc::new(body),
                    };
                }
                Err(e) => Err(Failure::Malformed(format!("a chunked message: {e}"))),
            },
        };
        self.stats.too_large += u64::from(matches!(outcome, Err(Failure::Rejected(_))));
        self.complete(now, from, frame.seq, outcome);
        Inbound::Absorbed
    }

    /// Records the outcome of a frame handed out by `handle_data`.
    pub fn complete(&mut self, now: Time, from: NodeId, seq: u64, outcome: Result<(), Failure>) {
        let Some(link) = self.inbound.get_mut(&from) else {
            return;
        };
        if seq != link.delivered || seq != link.completed + 1 {
            return;
        }
        link.completed = seq;
        if let Err(failure) = outcome {
            link.rare
                .get_or_insert_with(Box::default)
                .refused
                .push((seq, failure));
        }
        let due = if link.completed - link.acked >= self.config.ack_every {
            now
        } else {
            now + self.config.ack_delay
        };
        self.schedule_ack(from, due);
    }

    /// An acknowledgement from `from` for frames this node sent.
    pub fn handle_ack(&mut self, now: Time, from: NodeId, ack: AckFrame) {
        if ack.session != self.session {
            return;
        }
        let Some(link) = self.out.get_mut(&from) else {
            return;
        };
        if ack.epoch != link.epoch {
            return;
        }
        match link.peer_session {
            None => link.peer_session = Some(ack.receiver),
            Some(s) if s != ack.receiver => {
                // The receiver restarted and expects a new link from seq 1; what it
                // had not acknowledged may or may not have reached its previous
                // life. Fail those frames as for a dead peer; the next send opens a
                // new epoch.
                self.peer_failed(from);
                return;
            }
            Some(_) => {}
        }
        let mut refused: BTreeMap<u64, Failure> = ack.refused.into_iter().collect();
        let mut progressed = false;
        let mut released = Window::default();
        while let Some(front) = link.queue.front() {
            if front.seq > ack.up_to {
                break;
            }
            let Some(done) = link.queue.pop_front() else {
                break;
            };
            progressed = true;
            link.cursor = link.cursor.saturating_sub(1);
            // A refusal of a chunk before a body's last is a receiver's lie (it
            // completes those itself): nothing to report, the body's outcome comes
            // with its last chunk.
            let Some(message) = done.message else {
                continue;
            };
            if done.reply {
                link.replies.release(1, done.bytes);
            } else {
                link.user.release(1, done.bytes);
                released.take(done.bytes);
            }
            if let Some(failure) = refused.remove(&done.seq) {
                self.stats.refused += 1;
                self.events.push_back(DeliveryEvent::Refused {
                    peer: from,
                    seq: done.seq,
                    failure,
                    body: message,
                });
            }
        }
        if !progressed {
            // An ack that moves nothing while frames are in flight: the receiver
            // reports a gap at the first unacked frame. Go back to it now, or as
            // soon as fast retransmission is allowed again.
            let gap = link.cursor > 0 && link.queue.front().is_some_and(|f| f.seq == ack.up_to + 1);
            if gap && now >= link.fast_after {
                self.stats.retransmitted += link.cursor as u64;
                link.cursor = 0;
                link.fast_after = now + self.config.fast_retransmit_gap;
                link.gap_at = None;
                link.last_progress = now;
                self.ready.push_back(from);
                self.reindex(from);
            } else if gap {
                link.gap_at = Some(link.fast_after);
                self.reindex(from);
            }
            return;
        }
        {
            link.last_progress = now;
            link.gap_at = None;
            let epoch = link.epoch;
            if link.queue.is_empty() {
                link.idle_since = Some(now);
                self.idle.insert(now, from);
            }
            self.reindex(from);
            self.events.push_back(DeliveryEvent::Acked {
                peer: from,
                epoch,
                up_to: ack.up_to,
            });
            if released.frames > 0 {
                self.events.push_back(DeliveryEvent::Released {
                    peer: from,
                    frames: released.frames,
                    bytes: released.bytes,
                });
            }
        }
    }

    /// Handles retransmission timers.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some((at, peer)) = self.resends.pop_until(now) {
            let Some(link) = self.out.get_mut(&peer) else {
                continue;
            };
            if link.resend_at != Some(at) {
                continue;
            }
            link.resend_at = None;
            self.stats.retransmitted += link.cursor as u64;
            link.cursor = 0;
            link.last_progress = now;
            if link.gap_at.take().is_some() {
                link.fast_after = now + self.config.fast_retransmit_gap;
            }
            self.ready.push_back(peer);
            self.reindex(peer);
        }
        let idle_for = self.config.idle_link_after;
        // Links idle since this or earlier are due (none before `idle_for` has
        // passed since the origin).
        let cutoff = (now.saturating_since(Time::ZERO) >= idle_for).then(|| now - idle_for);
        while let Some((since, peer)) = cutoff.and_then(|c| self.idle.pop_until(c)) {
            // Entries go stale when the link is used again or removed; only a link
            // idle since exactly then goes, and its receiver hears that it closed.
            if let std::collections::hash_map::Entry::Occupied(entry) = self.out.entry(peer)
                && entry.get().idle_since == Some(since)
                && entry.get().queue.is_empty()
            {
                let link = entry.remove();
                self.stats.links_dropped_idle += 1;
                if self.config.forget_after.is_some() && self.closes.len() < CLOSES_MAX {
                    self.closes.push_back((
                        peer,
                        CloseFrame {
                            session: self.session,
                            epoch: link.epoch,
                            up_to: link.next_seq.saturating_sub(1),
                        },
                    ));
                }
            }
        }
        while let Some(&(at, peer, close)) = self.closed.front() {
            if at > now {
                break;
            }
            self.closed.pop_front();
            // Only the record of the closed link goes: the close names its
            // `(session, epoch)` and every frame done on it, all acknowledged. A
            // close of any other link, or one that claims less or more than was
            // done, changes nothing.
            if let std::collections::hash_map::Entry::Occupied(record) = self.inbound.entry(peer)
                && (record.get().session, record.get().epoch) == (close.session, close.epoch)
                && record.get().completed == close.up_to
                && record.get().settled()
            {
                record.remove();
                self.stats.records_forgotten += 1;
            }
        }
    }

    /// `from` closed its link to this node: nothing after `close.up_to` comes in
    /// that `(session, epoch)`. Its record is forgotten `forget_after` from now
    /// (rounded up to the forget tick: a quarter of `idle_link_after`, or of
    /// `forget_after` if shorter) if it is then still that link's, with every
    /// frame up to `up_to` done and acknowledged (checked then, not now: one
    /// lookup per close instead of two).
    /// At most [`CLOSED_MAX`] closes wait; past it a close is ignored and its
    /// record kept, so a peer flooding closes costs a bounded queue and at worst
    /// keeps records as before closes existed.
    pub fn handle_close(&mut self, now: Time, from: NodeId, close: CloseFrame) {
        let Some(forget_after) = self.config.forget_after else {
            return;
        };
        if self.closed.len() >= CLOSED_MAX {
            self.stats.closes_ignored += 1;
            return;
        }
        // On a tick, as idle drops are (the same one by default): the closes heard
        // within one tick are forgotten by one wake-up, not one each (a node
        // telling random peers hears about one close a second). Clocks only go
        // forward, so the queue is in time order (the `max` keeps it so whatever a
        // driver passes).
        let at = on_tick(now + forget_after, self.forget_tick_us)
            .max(self.closed.back().map_or(now, |c| c.0));
        self.closed.push_back((at, from, close));
    }

    /// The next frame to send: due acks first, then data, round-robin over peers.
    pub fn poll_transmit(&mut self, now: Time) -> Option<(NodeId, Frame)> {
        while let Some((due, peer)) = self.acks_due.pop_until(now) {
            let Some(link) = self.inbound.get_mut(&peer) else {
                continue;
            };
            if link.ack_due != Some(due) {
                continue;
            }
            link.acked = link.completed;
            link.ack_due = None;
            let refused = link
                .rare
                .as_mut()
                .map(|r| std::mem::take(&mut r.refused))
                .unwrap_or_default();
            link.tidy();
            let ack = AckFrame {
                session: link.session,
                epoch: link.epoch,
                up_to: link.completed,
                refused,
                receiver: self.session,
            };
            return Some((peer, Frame::Ack(ack)));
        }
        if let Some((peer, close)) = self.closes.pop_front() {
            return Some((peer, Frame::Close(close)));
        }
        while let Some(peer) = self.ready.pop_front() {
            let Some(link) = self.out.get_mut(&peer) else {
                continue;
            };
            if !link.up || link.cursor >= link.queue.len() {
                continue;
            }
            let pending = &link.queue[link.cursor];
            let frame = DataFrame {
                session: self.session,
                epoch: link.epoch,
                seq: pending.seq,
                body: pending.frame.clone(),
            };
            link.cursor += 1;
            let more = link.cursor < link.queue.len();
            let first_in_flight = link.cursor == 1;
            if more {
                self.ready.push_back(peer);
            }
            if first_in_flight {
                self.reindex(peer);
            }
            self.stats.frames_sent += 1;
            return Some((peer, Frame::Data(frame)));
        }
        None
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DeliveryEvent> {
        crate::broadcast::pop_shrinking(&mut self.events)
    }

    /// When `handle_timeout` or `poll_transmit` next has work (possibly a little
    /// early: index entries are removed lazily).
    pub fn poll_timeout(&self) -> Option<Time> {
        let acks = self.acks_due.first();
        let resend = self.resends.first();
        // Rounded up to a quarter of the idle time, so the links that went idle
        // within one quarter are dropped together, by one wake-up.
        let idle = self
            .idle
            .first()
            .map(|t| on_tick(t + self.config.idle_link_after, self.idle_tick_us));
        let forget = self.closed.front().map(|(t, ..)| *t);
        [acks, resend, idle, forget].into_iter().flatten().min()
    }

    /// Checks internal consistency.
    pub fn check_invariants(&self) -> Result<(), String> {
        if !(self.acks_due.consistent() && self.resends.consistent() && self.idle.consistent()) {
            return Err("a deadline index's first time is out of date".into());
        }
        for (peer, link) in &self.out {
            match link.idle_since {
                Some(since) if !link.queue.is_empty() || !self.idle.contains(since, *peer) => {
                    return Err(format!("idle index out of date for {peer:?}"));
                }
                _ => {}
            }
            let want = resend_time(link, self.config.retransmit_after);
            if want != link.resend_at || want.is_some_and(|t| !self.resends.contains(t, *peer)) {
                return Err(format!("retransmit index out of date for {peer:?}"));
            }
            if link.cursor > link.queue.len() {
                return Err(format!("cursor past queue for {peer:?}"));
            }
            if link.user.frames > self.config.window_frames
                || link.replies.frames > self.config.window_frames
            {
                return Err(format!("window exceeded for {peer:?}"));
            }
            let mut held = (Window::default(), Window::default());
            for p in link.queue.iter().filter(|p| p.charged()) {
                if p.reply {
                    held.1.take(p.bytes);
                } else {
                    held.0.take(p.bytes);
                }
            }
            let mut chunks = link.queue.iter().map(|p| &*p.frame).peekable();
            while let Some(frame) = chunks.next() {
                // A body's chunks are contiguous and end with its last: a chunk
                // marked not last is followed by another chunk.
                if let DataBody::Chunk { last: false, .. } = frame
                    && chunks
                        .peek()
                        .is_some_and(|next| !matches!(next, DataBody::Chunk { .. }))
                {
                    return Err(format!("a chunked body interleaved for {peer:?}"));
                }
            }
            if held != (link.user, link.replies) {
                return Err(format!("window count drift for {peer:?}"));
            }
            if link
                .queue
                .iter()
                .zip(link.queue.iter().skip(1))
                .any(|(a, b)| b.seq != a.seq + 1)
            {
                return Err(format!("non-contiguous queue for {peer:?}"));
            }
        }
        for (peer, link) in &self.inbound {
            if link
                .joining()
                .is_some_and(|j| j.body.len() > self.config.message_bytes_max)
            {
                return Err(format!("a chunked body over the bound from {peer:?}"));
            }
            if link
                .rare
                .as_ref()
                .is_some_and(|r| r.refused.is_empty() && r.joining.is_none())
            {
                return Err(format!("an empty rare part kept for {peer:?}"));
            }
            if link
                .ack_due
                .is_some_and(|t| !self.acks_due.contains(t, *peer))
            {
                return Err(format!("ack index missing {peer:?}"));
            }
            if !(link.acked <= link.completed
                && link.completed <= link.delivered
                && link.delivered <= link.completed + 1)
            {
                return Err(format!("inbound counters out of order for {peer:?}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexus_actors::ActorId;

    fn tell(n: u8) -> Arc<DataBody> {
        Arc::new(DataBody::Tell {
            target: ActorId::new(NodeId::synthetic(2), 1),
            message_type: "t".into(),
            payload: vec![n].into(),
            trace: None,
        })
    }

    fn payload(body: &DataBody) -> u8 {
        match body {
            DataBody::Tell { payload, .. } => payload[0],
            DataBody::Reply { .. } => u8::MAX,
            _ => panic!("not a tell"),
        }
    }

    /// Moves frames from `a` to `b` (and acks back), delivering everything `b` accepts.
    fn pump(
        now: Time,
        a: &mut Delivery,
        an: NodeId,
        b: &mut Delivery,
        bn: NodeId,
        lose: &mut dyn FnMut(u64) -> bool,
    ) -> Vec<u8> {
        pump_bodies(now, a, an, b, bn, lose)
            .iter()
            .map(|(_, body)| payload(body))
            .collect()
    }

    /// As `pump`, returning what `b` delivered with its seqs.
    fn pump_bodies(
        now: Time,
        a: &mut Delivery,
        an: NodeId,
        b: &mut Delivery,
        bn: NodeId,
        lose: &mut dyn FnMut(u64) -> bool,
    ) -> Vec<(u64, Arc<DataBody>)> {
        let mut got = Vec::new();
        for _ in 0..100 {
            let mut moved = false;
            while let Some((to, frame)) = a.poll_transmit(now) {
                assert_eq!(to, bn);
                moved = true;
                match frame {
                    Frame::Data(f) => {
                        if lose(f.seq) {
                            continue;
                        }
                        if let Inbound::Deliver { seq, body } = b.handle_data(now, an, f) {
                            got.push((seq, body));
                            b.complete(now, an, seq, Ok(()));
                        }
                    }
                    Frame::Close(c) => b.handle_close(now, an, c),
                    _ => {}
                }
            }
            while let Some((to, frame)) = b.poll_transmit(now + Duration::from_secs(1)) {
                assert_eq!(to, an);
                moved = true;
                if let Frame::Ack(ack) = frame {
                    a.handle_ack(now, bn, ack);
                }
            }
            if !moved {
                break;
            }
        }
        a.check_invariants().unwrap();
        b.check_invariants().unwrap();
        got
    }

    fn small_chunks() -> DeliveryConfig {
        DeliveryConfig {
            chunk_bytes: CHUNK_BYTES_MIN,
            ..DeliveryConfig::default()
        }
    }

    fn big_tell(len: usize, salt: u8) -> Arc<DataBody> {
        Arc::new(DataBody::Tell {
            target: ActorId::new(NodeId::synthetic(2), 1),
            message_type: "t".into(),
            payload: (0..len).map(|i| (i as u8).wrapping_mul(7) ^ salt).collect(),
            trace: None,
        })
    }

    /// A body over `chunk_bytes` crosses as chunks: a chunk lost midway is resent,
    /// the body is handed out once, whole and in its place, with the seq `send`
    /// returned, and the window gives back the body as one frame.
    #[test]
    fn a_large_body_crosses_in_chunks_and_is_joined_once() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut a = Delivery::new(10, small_chunks());
        let mut b = Delivery::new(20, small_chunks());
        let big = big_tell(5000, 3);
        a.send(Time::ZERO, bn, tell(1)).unwrap();
        let big_seq = a.send(Time::ZERO, bn, big.clone()).unwrap();
        a.send(Time::ZERO, bn, tell(2)).unwrap();
        assert_eq!(
            big_seq,
            1 + 5,
            "5,000 bytes and the envelope in 1 KiB chunks"
        );
        assert_eq!(a.user_window(&bn).frames, 3, "one window frame per body");
        // The third chunk is lost: the tell before the body is delivered, nothing
        // after the gap.
        let got = pump_bodies(Time::ZERO, &mut a, an, &mut b, bn, &mut |seq| seq == 4);
        assert_eq!(got.len(), 1);
        assert_eq!(payload(&got[0].1), 1);
        let later = Time::ZERO + DeliveryConfig::default().retransmit_after;
        a.handle_timeout(later);
        let got = pump_bodies(later, &mut a, an, &mut b, bn, &mut |_| false);
        assert_eq!(got.len(), 2, "the body once, then the tell after it");
        assert_eq!(got[0], (big_seq, big.clone()));
        assert_eq!(payload(&got[1].1), 2);
        assert_eq!(a.in_flight(&bn), 0);
        assert_eq!(a.user_window(&bn), Window::default());
        let released: usize = std::iter::from_fn(|| a.poll_event())
            .filter_map(|e| match e {
                DeliveryEvent::Released { frames, .. } => Some(frames),
                _ => None,
            })
            .sum();
        assert_eq!(released, 3);
        assert_eq!(a.stats().chunked_sent, 1);
        assert_eq!(b.stats().chunked_received, 1);
        assert_eq!(b.stats().delivered, 3);
    }

    /// A receiver with a smaller bound refuses the joined body, keeps nothing of
    /// it, and the sender hears with the whole body back; the link goes on.
    #[test]
    fn a_chunked_body_over_the_receivers_bound_is_refused_with_its_body() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut a = Delivery::new(10, small_chunks());
        let mut b = Delivery::new(
            20,
            DeliveryConfig {
                message_bytes_max: 3000,
                ..small_chunks()
            },
        );
        let big = big_tell(5000, 9);
        a.send(Time::ZERO, bn, big.clone()).unwrap();
        a.send(Time::ZERO, bn, tell(4)).unwrap();
        let got = pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false);
        assert_eq!(got, vec![4]);
        assert_eq!(b.stats().too_large, 1);
        let refused: Vec<_> = std::iter::from_fn(|| a.poll_event())
            .filter_map(|e| match e {
                DeliveryEvent::Refused { failure, body, .. } => Some((failure, body)),
                _ => None,
            })
            .collect();
        assert_eq!(refused.len(), 1);
        assert!(
            matches!(refused[0].0, Failure::Rejected(_)),
            "{:?}",
            refused[0].0
        );
        assert_eq!(refused[0].1, big);
        // And the sender's own bound refuses at once.
        let mut tight = Delivery::new(
            11,
            DeliveryConfig {
                message_bytes_max: 3000,
                ..small_chunks()
            },
        );
        assert_eq!(tight.send(Time::ZERO, bn, big.clone()), Err(big));
        assert_eq!(tight.stats().too_large, 1);
        assert_eq!(tight.in_flight(&bn), 0);
    }

    /// The sender gives up on the receiver midway through a body (Unreachable names
    /// the body once, not its chunks); the receiver, holding the first chunks,
    /// starts the join over when the body comes again on the new epoch.
    #[test]
    fn a_new_epoch_midway_starts_the_join_over() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut a = Delivery::new(10, small_chunks());
        let mut b = Delivery::new(20, small_chunks());
        let first = big_tell(4000, 1);
        a.send(Time::ZERO, bn, first.clone()).unwrap();
        let got = pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |seq| seq >= 3);
        assert!(got.is_empty());
        a.peer_failed(bn);
        let unreachable: Vec<_> = std::iter::from_fn(|| a.poll_event())
            .filter_map(|e| match e {
                DeliveryEvent::Unreachable { frames, .. } => Some(frames),
                _ => None,
            })
            .collect();
        assert_eq!(unreachable.len(), 1);
        assert_eq!(unreachable[0].len(), 1, "the body, not its chunks");
        assert_eq!(unreachable[0][0].1, first);
        let second = big_tell(4500, 2);
        let seq = a.send(Time::ZERO, bn, second.clone()).unwrap();
        let got = pump_bodies(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false);
        assert_eq!(got, vec![(seq, second)]);
    }

    /// Chunks never slip through as bodies: a chunked body made of a chunk is
    /// refused, and `send` takes no chunk from a caller.
    #[test]
    fn chunks_inside_chunks_are_refused() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut b = Delivery::new(20, small_chunks());
        let inner = DataBody::Chunk {
            bytes: bytes::Bytes::from_static(b"x"),
            last: true,
        };
        let frame = DataFrame {
            session: 10,
            epoch: 1,
            seq: 1,
            body: Arc::new(DataBody::Chunk {
                bytes: codec::encode_body(&inner).unwrap().into(),
                last: true,
            }),
        };
        assert_eq!(b.handle_data(Time::ZERO, an, frame), Inbound::Absorbed);
        let Some((_, Frame::Ack(ack))) = b.poll_transmit(Time::from_millis(1000)) else {
            panic!("an ack with the refusal")
        };
        assert_eq!(ack.up_to, 1);
        assert!(matches!(ack.refused[..], [(1, Failure::Malformed(_))]));
        let mut a = Delivery::new(10, small_chunks());
        assert!(a.send(Time::ZERO, bn, Arc::new(inner)).is_err());
    }

    #[test]
    fn in_order_exactly_once_across_loss_and_retransmission() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut a = Delivery::new(10, DeliveryConfig::default());
        let mut b = Delivery::new(20, DeliveryConfig::default());
        for i in 0..10 {
            a.send(Time::ZERO, bn, tell(i)).unwrap();
        }
        // Frame 4 is lost: 1..=3 delivered, 5.. dropped as out of order.
        let got = pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |seq| seq == 4);
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(a.in_flight(&bn), 7);
        // After the retransmit timeout, everything unacked goes again, once.
        let later = Time::ZERO + DeliveryConfig::default().retransmit_after;
        a.handle_timeout(later);
        let got = pump(later, &mut a, an, &mut b, bn, &mut |_| false);
        assert_eq!(got, vec![3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(a.in_flight(&bn), 0);
        // A duplicate of an old frame is recognised.
        let dup = DataFrame {
            session: 10,
            epoch: 1,
            seq: 2,
            body: tell(1),
        };
        assert_eq!(b.handle_data(later, an, dup), Inbound::Duplicate);
    }

    #[test]
    fn refusals_come_back_with_the_body() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut a = Delivery::new(10, DeliveryConfig::default());
        let mut b = Delivery::new(20, DeliveryConfig::default());
        a.send(Time::ZERO, bn, tell(7)).unwrap();
        let (_, frame) = a.poll_transmit(Time::ZERO).unwrap();
        let Frame::Data(f) = frame else { panic!() };
        let Inbound::Deliver { seq, .. } = b.handle_data(Time::ZERO, an, f) else {
            panic!()
        };
        b.complete(Time::ZERO, an, seq, Err(Failure::NoSuchActor));
        let (_, Frame::Ack(ack)) = b.poll_transmit(Time::from_millis(10)).unwrap() else {
            panic!()
        };
        a.handle_ack(Time::ZERO, bn, ack);
        match a.poll_event() {
            Some(DeliveryEvent::Refused {
                seq: 1,
                failure: Failure::NoSuchActor,
                body,
                ..
            }) => assert_eq!(payload(&body), 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_window_hands_the_body_back_and_reopens() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let config = DeliveryConfig {
            window_frames: 2,
            ..DeliveryConfig::default()
        };
        let mut a = Delivery::new(10, config);
        let mut b = Delivery::new(20, DeliveryConfig::default());
        a.send(Time::ZERO, bn, tell(1)).unwrap();
        a.send(Time::ZERO, bn, tell(2)).unwrap();
        let back = a.send(Time::ZERO, bn, tell(3)).unwrap_err();
        assert_eq!(payload(&back), 3);
        assert!(!a.has_room(&bn));
        // Replies have a window of their own: a full user window does not block them.
        let reply = Arc::new(DataBody::Reply {
            corr: 1,
            result: Ok(vec![]),
        });
        a.send(Time::ZERO, bn, reply).unwrap();
        assert_eq!(a.user_window(&bn).frames, 2);
        pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false);
        assert!(a.has_room(&bn));
        assert_eq!(a.user_window(&bn), Window::default());
        let mut opened = 0;
        while let Some(e) = a.poll_event() {
            if let DeliveryEvent::Released { frames, bytes, .. } = e {
                opened += frames;
                assert_eq!(bytes, tell(1).size_bytes() * frames);
            }
        }
        assert_eq!(
            opened, 2,
            "both user frames released, the reply not counted"
        );
    }

    #[test]
    fn the_window_rule_is_monotone_and_lets_a_big_frame_through_alone() {
        let config = DeliveryConfig {
            window_frames: 2,
            window_bytes: 100,
            ..DeliveryConfig::default()
        };
        let empty = Window::default();
        assert!(
            empty.admits(1_000, &config),
            "an oversized frame fits alone"
        );
        let mut w = empty;
        w.take(60);
        assert!(!w.admits(41, &config));
        assert!(w.admits(40, &config));
        w.take(40);
        assert!(!w.admits(0, &config), "frames bound");
        w.release(1, 60);
        assert_eq!(
            w,
            Window {
                frames: 1,
                bytes: 40
            }
        );
        assert!(w.admits(60, &config));
    }

    #[test]
    fn a_dead_peer_fails_its_frames_and_a_new_epoch_resyncs_the_receiver() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut a = Delivery::new(10, DeliveryConfig::default());
        let mut b = Delivery::new(20, DeliveryConfig::default());
        a.send(Time::ZERO, bn, tell(1)).unwrap();
        pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false);
        a.send(Time::ZERO, bn, tell(2)).unwrap();
        a.send(Time::ZERO, bn, tell(3)).unwrap();
        // b is (falsely) declared dead before these go out.
        a.peer_failed(bn);
        let events: Vec<DeliveryEvent> = std::iter::from_fn(|| a.poll_event()).collect();
        let one = tell(1).size_bytes();
        assert!(
            matches!(
                &events[..],
                [
                    DeliveryEvent::Acked { .. },
                    DeliveryEvent::Released { frames: 1, bytes: b1, .. },
                    DeliveryEvent::Released { frames: 2, bytes: b2, .. },
                    DeliveryEvent::Unreachable { frames, .. },
                ] if frames.len() == 2 && *b1 == one && *b2 == 2 * one
            ),
            "{events:?}"
        );
        assert_eq!(a.user_window(&bn), Window::default());
        // b comes back; a new epoch starts at seq 1 and b accepts it.
        a.send(Time::ZERO, bn, tell(4)).unwrap();
        let got = pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false);
        assert_eq!(got, vec![4]);
    }

    /// Regression (found by the durable-actor simulation, seed 100): a frame lost,
    /// its fast retransmission lost too, and the receiver's second gap report
    /// arriving inside `fast_retransmit_gap`. The report was dropped, and with
    /// nothing new sent the link stalled for the whole `retransmit_after` (2 s),
    /// longer than a durable activation's lease. Now the sender resends once fast
    /// retransmission is allowed again.
    #[test]
    fn a_gap_report_held_back_is_acted_on_once_allowed() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let config = DeliveryConfig::default();
        let mut a = Delivery::new(10, config.clone());
        let mut b = Delivery::new(20, config.clone());
        let t0 = Time::ZERO;
        for i in 1..=3 {
            a.send(t0, bn, tell(i)).unwrap();
        }
        let frames = |a: &mut Delivery, now: Time| {
            let mut out = Vec::new();
            while let Some((_, frame)) = a.poll_transmit(now) {
                if let Frame::Data(f) = frame {
                    out.push(f);
                }
            }
            out
        };
        // Frame 1 is lost; frame 2 arrives and waits, and the receiver reports
        // the gap.
        let gap_report = |b: &mut Delivery, f: DataFrame, now: Time| {
            assert_eq!(b.handle_data(now, an, f), Inbound::Dropped);
            let mut acks = Vec::new();
            while let Some((_, frame)) = b.poll_transmit(now + Duration::from_secs(1)) {
                if let Frame::Ack(ack) = frame {
                    acks.push(ack);
                }
            }
            acks.pop().expect("the receiver acks what it has")
        };
        let mut sent = frames(&mut a, t0);
        assert_eq!(sent.len(), 3);
        let ack = gap_report(&mut b, sent.remove(1), t0);
        assert_eq!(ack.up_to, 0);
        let t1 = t0 + Duration::from_millis(10);
        a.handle_ack(t1, bn, ack);
        let mut again = frames(&mut a, t1);
        assert_eq!(again[0].seq, 1, "fast retransmission from the gap");
        // The resend of frame 1 is lost too; frame 2's reports the gap again, within
        // `fast_retransmit_gap` of the first resend.
        let ack = gap_report(&mut b, again.remove(1), t1);
        let t2 = t1 + config.fast_retransmit_gap / 2;
        a.handle_ack(t2, bn, ack);
        assert!(frames(&mut a, t2).is_empty(), "not before the gap time");
        let due = a.poll_timeout().unwrap();
        assert_eq!(
            due,
            t1 + config.fast_retransmit_gap,
            "the held-back report is kept"
        );
        assert!(due < t1 + config.retransmit_after);
        a.handle_timeout(due);
        let resent = frames(&mut a, due);
        assert_eq!(resent.first().map(|f| f.seq), Some(1));
        a.check_invariants().unwrap();
        // This time they arrive: delivered in order, once.
        let mut got = Vec::new();
        for f in resent {
            if let Inbound::Deliver { seq, .. } = b.handle_data(due, an, f) {
                b.complete(due, an, seq, Ok(()));
                got.push(seq);
            }
        }
        assert_eq!(got, vec![1, 2, 3]);
        b.check_invariants().unwrap();
    }

    /// Regression (found by the durable-actor simulation): when frame 2 of a new link
    /// overtakes frame 1, frame 2 must wait, not become the start of the link.
    #[test]
    fn an_overtaken_first_frame_is_not_skipped() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut a = Delivery::new(10, DeliveryConfig::default());
        let mut b = Delivery::new(20, DeliveryConfig::default());
        a.send(Time::ZERO, bn, tell(1)).unwrap();
        a.send(Time::ZERO, bn, tell(2)).unwrap();
        let mut frames = Vec::new();
        while let Some((_, Frame::Data(f))) = a.poll_transmit(Time::ZERO) {
            frames.push(f);
        }
        assert_eq!(frames.len(), 2);
        let second = frames.pop().unwrap();
        let first = frames.pop().unwrap();
        assert_eq!(b.handle_data(Time::ZERO, an, second), Inbound::Dropped);
        match b.handle_data(Time::ZERO, an, first) {
            Inbound::Deliver { seq: 1, .. } => b.complete(Time::ZERO, an, 1, Ok(())),
            other => panic!("{other:?}"),
        }
        // The dropped frame comes again on retransmission and is delivered.
        let later = Time::ZERO + DeliveryConfig::default().retransmit_after;
        a.handle_timeout(later);
        let got = pump(later, &mut a, an, &mut b, bn, &mut |_| false);
        assert_eq!(got, vec![2]);
    }

    /// Regression (found by the simulator): a receiver that restarts expects seq 1
    /// on every link; the sender must notice and open a new epoch instead of
    /// resending frames the new receiver can never take.
    #[test]
    fn a_restarted_receiver_gets_a_new_link() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut a = Delivery::new(10, DeliveryConfig::default());
        let mut b = Delivery::new(20, DeliveryConfig::default());
        for i in 0..3 {
            a.send(Time::ZERO, bn, tell(i)).unwrap();
        }
        assert_eq!(
            pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false),
            vec![0, 1, 2]
        );
        // b restarts (new session, no inbound state); a's next frame is seq 4.
        let mut b = Delivery::new(21, DeliveryConfig::default());
        a.send(Time::ZERO, bn, tell(3)).unwrap();
        let t = Time::from_millis(5);
        let got = pump(t, &mut a, an, &mut b, bn, &mut |_| false);
        assert!(got.is_empty(), "seq 4 cannot start a fresh link");
        assert!(
            std::iter::from_fn(|| a.poll_event()).any(
                |e| matches!(e, DeliveryEvent::Unreachable { ref frames, .. } if frames.len() == 1)
            ),
            "the frame the old receiver never acked is failed"
        );
        // The next send opens a new epoch from seq 1, which the new receiver takes.
        a.send(t, bn, tell(4)).unwrap();
        assert_eq!(pump(t, &mut a, an, &mut b, bn, &mut |_| false), vec![4]);
    }

    /// Regression (found by the simulator): a receiver that falsely declares the
    /// sender dead must still recognise the sender's retransmissions.
    #[test]
    fn a_false_death_does_not_make_the_receiver_redeliver() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut a = Delivery::new(10, DeliveryConfig::default());
        let mut b = Delivery::new(20, DeliveryConfig::default());
        for i in 0..3 {
            a.send(Time::ZERO, bn, tell(i)).unwrap();
        }
        // b delivers all three, but its acks never reach a.
        while let Some((_, frame)) = a.poll_transmit(Time::ZERO) {
            let Frame::Data(f) = frame else { continue };
            if let Inbound::Deliver { seq, .. } = b.handle_data(Time::ZERO, an, f) {
                b.complete(Time::ZERO, an, seq, Ok(()));
            }
        }
        while b.poll_transmit(Time::from_millis(10)).is_some() {}
        b.peer_failed(an); // b wrongly thinks a is dead
        let later = Time::ZERO + DeliveryConfig::default().retransmit_after;
        a.handle_timeout(later);
        let got = pump(later, &mut a, an, &mut b, bn, &mut |_| false);
        assert!(got.is_empty(), "redelivered {got:?}");
        assert_eq!(a.in_flight(&bn), 0, "the duplicates were acknowledged");
        assert_eq!(b.stats().duplicates, 3);
    }

    #[test]
    fn a_restarted_sender_starts_a_new_session() {
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut b = Delivery::new(20, DeliveryConfig::default());
        let mut a = Delivery::new(10, DeliveryConfig::default());
        for i in 0..3 {
            a.send(Time::ZERO, bn, tell(i)).unwrap();
        }
        assert_eq!(
            pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false),
            vec![0, 1, 2]
        );
        let mut a2 = Delivery::new(11, DeliveryConfig::default());
        a2.send(Time::ZERO, bn, tell(9)).unwrap();
        assert_eq!(
            pump(Time::ZERO, &mut a2, an, &mut b, bn, &mut |_| false),
            vec![9]
        );
        // Frames from the old session are now stale.
        let old = DataFrame {
            session: 10,
            epoch: 1,
            seq: 4,
            body: tell(5),
        };
        assert_eq!(b.handle_data(Time::ZERO, an, old), Inbound::Dropped);
    }

    /// Sender `a` and receiver `b` with default settings, and the idle time.
    /// Two nodes that close idle links and forget closed links' records.
    fn idle_pair() -> (NodeId, NodeId, Duration, Delivery, Delivery) {
        let config = DeliveryConfig {
            forget_after: Some(Duration::from_secs(120)),
            ..DeliveryConfig::default()
        };
        let idle = config.idle_link_after;
        let a = Delivery::new(10, config.clone());
        let b = Delivery::new(20, config);
        (NodeId::synthetic(1), NodeId::synthetic(2), idle, a, b)
    }

    #[test]
    fn an_idle_link_is_dropped_and_the_next_send_opens_a_new_epoch() {
        let (an, bn, idle, mut a, mut b) = idle_pair();
        for i in 0..3 {
            a.send(Time::ZERO, bn, tell(i)).unwrap();
        }
        assert_eq!(
            pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false),
            vec![0, 1, 2]
        );
        // Everything acknowledged: a wake-up is due within a quarter of the idle
        // time after the link has been idle for it, and not before.
        let due = a.poll_timeout().expect("the idle link is timed");
        assert!(due >= Time::ZERO + idle && due <= Time::ZERO + idle + idle / 4);
        a.handle_timeout(Time::ZERO + idle / 2);
        assert_eq!(a.stats().links_dropped_idle, 0, "not idle long enough");
        a.handle_timeout(due);
        a.check_invariants().unwrap();
        assert_eq!(a.stats().links_dropped_idle, 1);
        assert_eq!(a.poll_timeout(), None, "nothing left to time");
        // The receiver hears that the link closed after its third frame.
        let Some((to, Frame::Close(close))) = a.poll_transmit(due) else {
            panic!("a close is due");
        };
        assert_eq!(to, bn);
        assert_eq!(
            close,
            CloseFrame {
                session: 10,
                epoch: 1,
                up_to: 3
            }
        );
        // The next send numbers from 1 in a new epoch, which the receiver, still
        // holding the old epoch's record, takes as a rebuilt link.
        a.send(due, bn, tell(7)).unwrap();
        let Some((_, Frame::Data(frame))) = a.poll_transmit(due) else {
            panic!("a data frame is due");
        };
        assert_eq!((frame.epoch, frame.seq), (2, 1));
        assert!(matches!(
            b.handle_data(due, an, frame),
            Inbound::Deliver { seq: 1, .. }
        ));
    }

    /// Telling a peer leaves no inbound record that could pass for one, even to a
    /// sender whose session is 0, and hearing from `b` does not reset the epoch of
    /// `a`'s links to it.
    #[test]
    fn a_peer_told_first_is_still_heard_from_its_first_frame() {
        let config = DeliveryConfig::default();
        let idle = config.idle_link_after;
        let mut a = Delivery::new(10, config);
        let mut b = Delivery::new(0, DeliveryConfig::default());
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        a.send(Time::ZERO, bn, tell(1)).unwrap();
        assert_eq!(
            pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false),
            vec![1]
        );
        b.send(Time::ZERO, an, tell(2)).unwrap();
        let Some((_, Frame::Data(frame))) = b.poll_transmit(Time::ZERO) else {
            panic!("a data frame is due");
        };
        assert_eq!((frame.session, frame.epoch, frame.seq), (0, 1, 1));
        assert!(matches!(
            a.handle_data(Time::ZERO, bn, frame),
            Inbound::Deliver { seq: 1, .. }
        ));
        a.check_invariants().unwrap();
        // a's link to b goes idle and is rebuilt: its epoch still counts on.
        a.handle_timeout(Time::ZERO + idle * 2);
        assert_eq!(a.stats().links_dropped_idle, 1);
        a.send(Time::ZERO + idle * 2, bn, tell(3)).unwrap();
        let Some((_, Frame::Data(frame))) = a.poll_transmit(Time::ZERO + idle * 2) else {
            panic!("a data frame is due");
        };
        assert_eq!((frame.epoch, frame.seq), (2, 1));
    }

    /// Sends `n` to `peer` and hands back the data frame that carries it (the first
    /// due; closes before it are dropped).
    fn send_one(a: &mut Delivery, now: Time, peer: NodeId, n: u8) -> DataFrame {
        a.send(now, peer, tell(n)).unwrap();
        loop {
            match a.poll_transmit(now) {
                Some((_, Frame::Data(frame))) => return frame,
                Some(_) => {}
                None => panic!("a data frame is due"),
            }
        }
    }

    /// `a` sends `b` two frames, both delivered and acknowledged; returns the
    /// first, for a late copy.
    fn two_frames_across(a: &mut Delivery, an: NodeId, b: &mut Delivery, bn: NodeId) -> DataFrame {
        let first = send_one(a, Time::ZERO, bn, 0);
        assert!(matches!(
            b.handle_data(Time::ZERO, an, first.clone()),
            Inbound::Deliver { seq: 1, .. }
        ));
        b.complete(Time::ZERO, an, 1, Ok(()));
        a.send(Time::ZERO, bn, tell(1)).unwrap();
        assert_eq!(pump(Time::ZERO, a, an, b, bn, &mut |_| false), vec![1]);
        first
    }

    #[test]
    fn a_closed_link_is_forgotten_after_its_wait_and_late_copies_stay_duplicates() {
        let (an, bn, idle, mut a, mut b) = idle_pair();
        let forget = b.config().forget_after.unwrap();
        let first = two_frames_across(&mut a, an, &mut b, bn);
        // Idle: the link closes and b hears it.
        let closed_at = Time::ZERO + idle * 2;
        a.handle_timeout(closed_at);
        assert_eq!(
            pump(closed_at, &mut a, an, &mut b, bn, &mut |_| false),
            Vec::<u8>::new()
        );
        // Exactly `forget_after` later: the close came on a tick (the sender drops
        // idle links on the same one) and `forget_after` is a whole number of them.
        assert_eq!(b.poll_timeout(), Some(closed_at + forget));
        // A late copy of the first frame within the wait is still a duplicate.
        let late = closed_at + forget / 2;
        b.handle_timeout(late);
        assert!(matches!(
            b.handle_data(late, an, first.clone()),
            Inbound::Duplicate
        ));
        assert_eq!(b.stats().records_forgotten, 0);
        // The duplicate was acknowledged again; the record still goes on time.
        while b.poll_transmit(late + forget).is_some() {}
        b.handle_timeout(closed_at + forget);
        b.check_invariants().unwrap();
        assert_eq!(b.stats().records_forgotten, 1);
        assert!(b.inbound.is_empty(), "the record is forgotten");
        // The next link is newer whatever b remembers, and is heard from seq 1.
        let later = closed_at + forget * 2;
        let frame = send_one(&mut a, later, bn, 2);
        assert_eq!((frame.epoch, frame.seq), (2, 1));
        assert!(matches!(
            b.handle_data(later, an, frame),
            Inbound::Deliver { seq: 1, .. }
        ));
    }

    #[test]
    fn closes_heard_within_one_tick_are_forgotten_by_one_wake_up() {
        let (an, bn, idle, mut a, mut b) = idle_pair();
        let cn = NodeId::synthetic(3);
        let mut c = Delivery::new(30, b.config().clone());
        let forget = b.config().forget_after.unwrap();
        let tick = u64::try_from((idle / 4).as_micros()).unwrap();
        two_frames_across(&mut a, an, &mut b, bn);
        two_frames_across(&mut c, cn, &mut b, bn);
        // Two links close half a tick apart, neither on the tick.
        let first = Time::ZERO + idle * 2 + Duration::from_millis(1);
        let second = first + idle / 8;
        let close = |session| CloseFrame {
            session,
            epoch: 1,
            up_to: 2,
        };
        b.handle_close(first, an, close(10));
        b.handle_close(second, cn, close(30));
        // Both are due at the first tick after the later one's wait.
        let due = b.poll_timeout().unwrap();
        assert!(
            due >= second + forget,
            "{due:?}: kept at least `forget_after`"
        );
        assert!(due < first + forget + idle / 4, "{due:?}: within a tick");
        assert_eq!(due.as_micros() % tick, 0, "{due:?} is on the tick");
        b.handle_timeout(Time::from_micros(due.as_micros() - 1));
        assert_eq!(b.stats().records_forgotten, 0, "not before the tick");
        b.handle_timeout(due);
        b.check_invariants().unwrap();
        assert_eq!(b.stats().records_forgotten, 2, "one wake-up forgets both");
        assert!(b.inbound.is_empty());
    }

    #[test]
    fn a_short_forget_after_rounds_to_a_quarter_of_itself() {
        let config = DeliveryConfig {
            forget_after: Some(Duration::from_secs(2)),
            ..DeliveryConfig::default()
        };
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let mut a = Delivery::new(10, config.clone());
        let mut b = Delivery::new(20, config);
        two_frames_across(&mut a, an, &mut b, bn);
        let at = Time::ZERO + Duration::from_millis(60_001);
        let close = CloseFrame {
            session: 10,
            epoch: 1,
            up_to: 2,
        };
        b.handle_close(at, an, close);
        // Not the idle tick's 15 s: the next half second after the 2 s asked.
        let due = b.poll_timeout().unwrap();
        assert_eq!(due, Time::ZERO + Duration::from_millis(62_500), "{due:?}");
        b.handle_timeout(due);
        assert_eq!(b.stats().records_forgotten, 1);
    }

    #[test]
    fn a_close_that_does_not_match_the_record_forgets_nothing() {
        let (an, bn, idle, mut a, mut b) = idle_pair();
        let forget = b.config().forget_after.unwrap();
        let first = two_frames_across(&mut a, an, &mut b, bn);
        let close = |session, epoch, up_to| CloseFrame {
            session,
            epoch,
            up_to,
        };
        // Another session, another epoch, fewer or more frames than were done, or
        // another peer's word: none is this link's close.
        for (from, c) in [
            (an, close(11, 1, 2)),
            (an, close(10, 2, 2)),
            (an, close(10, 1, 1)),
            (an, close(10, 1, 3)),
            (NodeId::synthetic(9), close(10, 1, 2)),
        ] {
            b.handle_close(Time::ZERO, from, c);
        }
        b.handle_timeout(Time::ZERO + forget * 2);
        assert_eq!(b.stats().records_forgotten, 0);
        assert!(
            matches!(
                b.handle_data(Time::ZERO + forget * 2, an, first),
                Inbound::Duplicate
            ),
            "the record is kept: a copy of the first frame is still a duplicate"
        );
        while b.poll_transmit(Time::ZERO + forget * 3).is_some() {}
        // The right close, then a new link before the wait is over: the record is
        // the new link's now, and stays.
        let closed_at = Time::ZERO + idle * 2;
        a.handle_timeout(closed_at);
        while a.poll_transmit(closed_at).is_some() {}
        b.handle_close(closed_at, an, close(10, 1, 2));
        let reopened = closed_at + forget / 2;
        let frame = send_one(&mut a, reopened, bn, 2);
        assert!(matches!(
            b.handle_data(reopened, an, frame),
            Inbound::Deliver { seq: 1, .. }
        ));
        b.complete(reopened, an, 1, Ok(()));
        // Acknowledged: the new link's record is settled, and still not the one
        // that closed.
        while b.poll_transmit(reopened + forget).is_some() {}
        b.handle_timeout(closed_at + forget * 2);
        b.check_invariants().unwrap();
        assert_eq!(b.stats().records_forgotten, 0);
        assert_eq!(b.inbound.len(), 1);
    }

    #[test]
    fn by_default_links_close_unannounced_and_records_stay() {
        let mut a = Delivery::new(10, DeliveryConfig::default());
        let mut b = Delivery::new(20, DeliveryConfig::default());
        let (an, bn) = (NodeId::synthetic(1), NodeId::synthetic(2));
        let idle = a.config().idle_link_after;
        a.send(Time::ZERO, bn, tell(0)).unwrap();
        assert_eq!(
            pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false),
            vec![0]
        );
        a.handle_timeout(Time::ZERO + idle * 2);
        assert_eq!(a.stats().links_dropped_idle, 1);
        assert!(a.poll_transmit(Time::ZERO + idle * 2).is_none(), "no close");
        // A close from a node that has the setting changes nothing here.
        b.handle_close(
            Time::ZERO,
            an,
            CloseFrame {
                session: 10,
                epoch: 1,
                up_to: 1,
            },
        );
        assert_eq!(b.poll_timeout(), None);
        b.handle_timeout(Time::ZERO + idle * 100);
        assert_eq!(b.stats().records_forgotten, 0);
        assert_eq!(b.inbound.len(), 1);
    }

    #[test]
    fn epochs_count_up_across_peers() {
        let (_, bn, idle, mut a, _) = idle_pair();
        let cn = NodeId::synthetic(3);
        assert_eq!(send_one(&mut a, Time::ZERO, bn, 0).epoch, 1);
        assert_eq!(send_one(&mut a, Time::ZERO, cn, 0).epoch, 2);
        // Neither is acknowledged: the links stay, and so do their epochs.
        assert_eq!(send_one(&mut a, Time::ZERO, bn, 1).epoch, 1);
        // A link rebuilt after its peer was declared dead is newer than both.
        a.peer_failed(cn);
        assert_eq!(send_one(&mut a, Time::ZERO + idle, cn, 2).epoch, 3);
    }

    #[test]
    fn a_link_with_frames_in_flight_is_never_dropped_as_idle() {
        let (an, bn, idle, mut a, mut b) = idle_pair();
        a.send(Time::ZERO, bn, tell(1)).unwrap();
        assert_eq!(
            pump(Time::ZERO, &mut a, an, &mut b, bn, &mut |_| false),
            vec![1]
        );
        // Used again before the idle time is up, and this frame is lost.
        let later = Time::ZERO + idle / 2;
        a.send(later, bn, tell(2)).unwrap();
        assert!(a.poll_transmit(later).is_some());
        for step in 1..=8u32 {
            a.handle_timeout(later + idle * step);
            a.check_invariants().unwrap();
        }
        assert_eq!(a.stats().links_dropped_idle, 0);
        assert_eq!(
            a.in_flight(&bn),
            1,
            "the unacknowledged frame is still held"
        );
    }
}
