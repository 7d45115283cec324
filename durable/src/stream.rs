//! Outbound streams: the sender's half of exactly-once, per-sender-FIFO delivery to
//! durable actors.
//!
//! A sender numbers its messages to each receiver 1, 2, 3, ... and keeps every
//! message until the receiver acknowledges it (an ack promises the message's effect
//! is committed). It transmits in order, at most `window` unacknowledged messages
//! ahead, and goes back to the first unacknowledged one when the receiver asks
//! ([`crate::wire::Nack`]), moves ([`crate::wire::Redirect`]) or stays silent for a
//! retransmission timeout. The receiver takes only the next number from each
//! sender, so duplicates and reordering introduced by retries, forwarding and
//! migration never reach the actor.
//!
//! For a durable sender the numbered messages are part of its committed state
//! ([`OutStream`]), and only committed messages are transmitted
//! ([`Streams::release`]); after a crash the restored sender resends exactly what
//! it had committed, under the same numbers, so the receiver deduplicates them.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use plexus_actors::envelope::TraceContext;
use plexus_actors::{NodeId, Time};
use serde::{Deserialize, Serialize};

use crate::types::{Ballot, DurableKey, SenderId};
use crate::wire::{Envelope, Refusal, Reply};

/// One numbered message waiting for its ack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutMsg {
    /// Its number in the stream.
    pub seq: u64,
    /// The encoded message.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The trace context it was sent under.
    pub trace: Option<TraceContext>,
}

/// The durable part of a stream to one receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutStream {
    /// The number the next message gets.
    pub next_seq: u64,
    /// Sent or not, not yet acknowledged, in order.
    pub unacked: VecDeque<OutMsg>,
}

/// Settings of a set of streams.
#[derive(Clone, Copy, Debug)]
pub struct StreamConfig {
    /// Most messages in flight (transmitted, unacknowledged) per receiver.
    pub window: usize,
    /// First retransmission timeout; doubles on each silent timeout up to `rto_max`.
    pub rto_min: Duration,
    /// Longest retransmission timeout.
    pub rto_max: Duration,
    /// Most unacknowledged messages across all receivers; past it the owner stops
    /// producing (see [`Streams::is_full`]).
    pub unacked_max: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            window: 1024,
            rto_min: Duration::from_millis(300),
            rto_max: Duration::from_secs(3),
            unacked_max: 65_536,
        }
    }
}

/// Transmission state of one stream; not durable.
#[derive(Clone, Debug)]
struct Link {
    /// Where the receiver is believed to be, and under which ballot (a redirect
    /// with a lower ballot is stale and ignored).
    location: Option<(NodeId, Ballot)>,
    /// Highest number transmitted since the last rewind.
    sent_up_to: u64,
    /// Highest number that may be transmitted (committed, for durable senders).
    released_up_to: u64,
    /// When to retransmit if nothing is acknowledged.
    deadline: Option<Time>,
    rto: Duration,
    /// Do not transmit before this (the receiver asked to wait).
    hold_until: Time,
    /// The newest ballot of the receiver heard from (acks, redirects); sent in
    /// envelopes so that a stale activation steps down.
    seen: Ballot,
    /// The node last transmitted to (kept when `location` is forgotten, so its
    /// late acks still count).
    peer: Option<NodeId>,
}

struct Stream {
    durable: OutStream,
    link: Link,
}

/// What happened to a stream, for the owner.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// Messages up to `up_to` were acknowledged; replies to some of them.
    Acked {
        /// The receiver.
        to: DurableKey,
        /// Acknowledged up to here.
        up_to: u64,
        /// Replies by sequence number.
        replies: Vec<(u64, Reply)>,
    },
}

/// The outbound streams of one sender.
pub struct Streams {
    me: SenderId,
    config: StreamConfig,
    streams: BTreeMap<DurableKey, Stream>,
    unacked: usize,
    events: VecDeque<StreamEvent>,
    /// Counters.
    pub retransmits: u64,
}

impl Streams {
    /// No streams yet, for sender `me`.
    pub fn new(me: SenderId, config: StreamConfig) -> Self {
        Self {
            me,
            config,
            streams: BTreeMap::new(),
            unacked: 0,
            events: VecDeque::new(),
            retransmits: 0,
        }
    }

    /// Streams restored from committed state; everything in them is released.
    pub fn restore(
        me: SenderId,
        config: StreamConfig,
        durable: BTreeMap<DurableKey, OutStream>,
    ) -> Self {
        let mut s = Self::new(me, config);
        for (key, out) in durable {
            let released = out.next_seq.saturating_sub(1);
            s.unacked += out.unacked.len();
            s.streams.insert(
                key,
                Stream {
                    durable: out,
                    link: Link::new(config, released),
                },
            );
        }
        s
    }

    /// The durable part of every stream (for a snapshot).
    pub fn durable(&self) -> BTreeMap<DurableKey, OutStream> {
        self.streams
            .iter()
            .filter(|(_, s)| !s.durable.unacked.is_empty() || s.durable.next_seq > 1)
            .map(|(k, s)| (k.clone(), s.durable.clone()))
            .collect()
    }

    /// The sequence number the next message to every receiver would get (marks
    /// what a commit covers; see [`Streams::release`]).
    pub fn marks(&self) -> BTreeMap<DurableKey, u64> {
        self.streams
            .iter()
            .map(|(k, s)| (k.clone(), s.durable.next_seq.saturating_sub(1)))
            .collect()
    }

    /// Numbers a message to `to` and keeps it until acknowledged. It is transmitted
    /// once released. Returns its number.
    pub fn push(&mut self, to: &DurableKey, payload: Vec<u8>, trace: Option<TraceContext>) -> u64 {
        let config = self.config;
        let stream = self.streams.entry(to.clone()).or_insert_with(|| Stream {
            durable: OutStream {
                next_seq: 1,
                unacked: VecDeque::new(),
            },
            link: Link::new(config, 0),
        });
        let seq = stream.durable.next_seq.max(1);
        // 2^64 messages to one receiver are beyond any run; saturate, not wrap.
        stream.durable.next_seq = seq.saturating_add(1);
        stream.durable.unacked.push_back(OutMsg {
            seq,
            payload,
            trace,
        });
        self.unacked += 1;
        seq
    }

    /// Allows transmission of every message numbered up to the marks (taken when
    /// the state holding them was snapshotted, and now committed).
    pub fn release(&mut self, marks: &BTreeMap<DurableKey, u64>) {
        for (key, up_to) in marks {
            if let Some(s) = self.streams.get_mut(key) {
                s.link.released_up_to = s.link.released_up_to.max(*up_to);
            }
        }
    }

    /// Withholds everything until the next [`Streams::release`] (a restored state's
    /// outputs wait until it is committed under the new ballot).
    pub fn hold_all(&mut self) {
        for s in self.streams.values_mut() {
            s.link.released_up_to = 0;
            s.link.sent_up_to = 0;
            s.link.deadline = None;
        }
    }

    /// Releases everything (non-durable senders, which need no commit).
    pub fn release_all(&mut self) {
        for s in self.streams.values_mut() {
            s.link.released_up_to = s.durable.next_seq.saturating_sub(1);
        }
    }

    /// Whether the sender should stop producing until acks arrive.
    pub fn is_full(&self) -> bool {
        self.unacked >= self.config.unacked_max
    }

    /// Messages waiting for acks, across receivers.
    pub fn unacked(&self) -> usize {
        self.unacked
    }

    /// Streams with unacknowledged messages: receiver, first unacknowledged
    /// number, how many, and where the receiver is believed to be.
    pub fn pending(&self) -> Vec<(DurableKey, u64, usize, Option<NodeId>)> {
        self.streams
            .iter()
            .filter(|(_, s)| !s.durable.unacked.is_empty())
            .map(|(k, s)| {
                (
                    k.clone(),
                    first(s),
                    s.durable.unacked.len(),
                    s.link.location.map(|(n, _)| n),
                )
            })
            .collect()
    }

    /// Whether every message has been acknowledged.
    pub fn is_idle(&self) -> bool {
        self.unacked == 0
    }

    /// Whether `peer` may speak for the receiver `key` of one of these streams
    /// (ack, nack or redirect it): only the node the stream sends to, or last
    /// sent to, may. Anything about a receiver with no stream is ignored anyway.
    pub fn check_peer(&self, key: &DurableKey, peer: NodeId) -> Result<(), Refusal> {
        let Some(s) = self.streams.get(key) else {
            return Ok(());
        };
        if s.link.location.is_some_and(|(n, _)| n == peer) || s.link.peer == Some(peer) {
            Ok(())
        } else {
            Err(Refusal::NotStreamPeer { sender: peer })
        }
    }

    /// Whether `seq` could be a number of the stream to `key`: at most the last
    /// number given (`next` is the next number instead, for a nack's `expected`).
    pub fn check_seq(&self, key: &DurableKey, seq: u64, next: bool) -> Result<(), Refusal> {
        let Some(s) = self.streams.get(key) else {
            return Ok(());
        };
        let max = if next {
            s.durable.next_seq.max(1)
        } else {
            s.durable.next_seq.saturating_sub(1)
        };
        if seq > max {
            return Err(Refusal::CounterRange { got: seq, max });
        }
        Ok(())
    }

    /// The receiver acknowledged up to `up_to`.
    pub fn on_ack(
        &mut self,
        now: Time,
        from: &DurableKey,
        up_to: u64,
        ballot: Ballot,
        replies: Vec<(u64, Reply)>,
    ) {
        let Some(s) = self.streams.get_mut(from) else {
            return;
        };
        // A receiver's ballot is believed within a bounded step only: a peer's
        // `u64::MAX` must not become the ballot every later envelope claims.
        if crate::wire::ballot_step_ok(ballot, s.link.seen) {
            s.link.seen = s.link.seen.max(ballot);
        }
        let mut progressed = false;
        while s.durable.unacked.front().is_some_and(|m| m.seq <= up_to) {
            s.durable.unacked.pop_front();
            self.unacked -= 1;
            progressed = true;
        }
        if progressed {
            s.link.rto = self.config.rto_min;
            s.link.sent_up_to = s.link.sent_up_to.max(up_to);
            s.link.deadline = if s.durable.unacked.is_empty() || s.link.sent_up_to < first(s) {
                None
            } else {
                Some(now + s.link.rto)
            };
        }
        if progressed || !replies.is_empty() {
            self.events.push_back(StreamEvent::Acked {
                to: from.clone(),
                up_to,
                replies,
            });
        }
    }

    /// The receiver takes `expected` next: resend from there (after a pause if it
    /// asked for one).
    ///
    /// A receiver that expects a message this stream already had acknowledged is a
    /// stale activation (a newer one committed those messages): the stream forgets
    /// the location and asks the resolver again after a pause, as for a redirect
    /// to nowhere, instead of resending into it.
    pub fn on_nack(&mut self, now: Time, from: &DurableKey, expected: u64, retry_after: Duration) {
        let Some(s) = self.streams.get_mut(from) else {
            return;
        };
        if expected < first(s) {
            self.on_redirect(now, from, None);
            return;
        }
        let from_seq = expected.max(first(s));
        s.link.sent_up_to = from_seq.saturating_sub(1);
        s.link.hold_until = now + retry_after;
        s.link.deadline = None;
    }

    /// The receiver is at `node` under `ballot` (or unknown: look it up again).
    pub fn on_redirect(&mut self, now: Time, from: &DurableKey, node: Option<(NodeId, Ballot)>) {
        let Some(s) = self.streams.get_mut(from) else {
            return;
        };
        match node {
            Some((n, ballot)) => {
                if s.link.location.is_some_and(|(_, b)| b > ballot)
                    || s.link.seen > ballot
                    || !crate::wire::ballot_step_ok(ballot, s.link.seen)
                {
                    return;
                }
                s.link.seen = ballot;
                s.link.location = Some((n, ballot));
                s.link.hold_until = now;
            }
            None => {
                s.link.location = None;
                s.link.hold_until = now + self.config.rto_min / 4;
            }
        }
        s.link.sent_up_to = first(s).saturating_sub(1);
        s.link.deadline = None;
    }

    /// Retransmission timeouts: go back to the first unacknowledged message and ask
    /// the resolver again where the receiver is.
    pub fn handle_timeout(&mut self, now: Time) {
        let config = self.config;
        for s in self.streams.values_mut() {
            if s.link.deadline.is_some_and(|d| d <= now) {
                s.link.deadline = None;
                s.link.sent_up_to = first(s).saturating_sub(1);
                s.link.location = None;
                s.link.rto = (s.link.rto * 2).min(config.rto_max);
                self.retransmits += 1;
            }
        }
    }

    /// The earliest retransmission or hold deadline.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.streams
            .values()
            .filter_map(|s| {
                let hold = (s.link.sent_up_to < s.link.released_up_to.min(last(s)))
                    .then_some(s.link.hold_until);
                match (s.link.deadline, hold) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    /// Envelopes to transmit now. `resolve` says where a receiver is when the stream
    /// does not know; `reply_to` is where acks should come.
    pub fn poll_transmit(
        &mut self,
        now: Time,
        reply_to: NodeId,
        resolve: &mut dyn FnMut(&DurableKey) -> Option<(NodeId, Ballot)>,
        out: &mut Vec<(NodeId, Envelope)>,
    ) {
        let config = self.config;
        for (key, s) in self.streams.iter_mut() {
            let limit = s.link.released_up_to.min(last(s));
            if s.link.sent_up_to >= limit || s.link.hold_until > now {
                continue;
            }
            if s.link.location.is_none() {
                s.link.location = resolve(key);
            }
            let Some((node, _)) = s.link.location else {
                // Unknown for now: try again after a pause.
                s.link.hold_until = now + config.rto_min / 4;
                continue;
            };
            let base = first(s);
            let window_end = base.saturating_add(config.window as u64).saturating_sub(1);
            let from = s
                .link
                .sent_up_to
                .max(base.saturating_sub(1))
                .saturating_add(1);
            let to = limit.min(window_end);
            if from > to {
                continue;
            }
            let skip = (from - base) as usize;
            for m in s
                .durable
                .unacked
                .iter()
                .skip(skip)
                .take((to - from + 1) as usize)
            {
                out.push((
                    node,
                    Envelope {
                        to: key.clone(),
                        from: self.me.clone(),
                        reply_to,
                        seq: m.seq,
                        payload: m.payload.clone(),
                        trace: m.trace,
                        hops: 0,
                        ballot: s.link.seen,
                    },
                ));
            }
            s.link.sent_up_to = to;
            s.link.peer = Some(node);
            if s.link.deadline.is_none() {
                s.link.deadline = Some(now + s.link.rto);
            }
        }
    }

    /// What happened since the last call.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Drops every stream's transmission state (location, window): used when the
    /// owner moves to another node.
    pub fn reset_links(&mut self) {
        let config = self.config;
        for s in self.streams.values_mut() {
            let (released, seen) = (s.link.released_up_to, s.link.seen);
            s.link = Link::new(config, released);
            s.link.seen = seen;
        }
    }

    /// Removes streams with nothing in flight to receivers `keep` rejects (their
    /// numbering restarts from 1 if used again, which a receiver that forgot the
    /// sender accepts).
    pub fn retain(&mut self, mut keep: impl FnMut(&DurableKey) -> bool) {
        self.streams
            .retain(|k, s| !s.durable.unacked.is_empty() || keep(k));
    }
}

fn first(s: &Stream) -> u64 {
    s.durable
        .unacked
        .front()
        .map_or(s.durable.next_seq, |m| m.seq)
}

fn last(s: &Stream) -> u64 {
    s.durable.unacked.back().map_or(0, |m| m.seq)
}

impl Link {
    fn new(config: StreamConfig, released: u64) -> Self {
        Link {
            location: None,
            sent_up_to: 0,
            released_up_to: released,
            deadline: None,
            rto: config.rto_min,
            hold_until: Time::ZERO,
            seen: Ballot::ZERO,
            peer: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> DurableKey {
        DurableKey::new(s).unwrap()
    }

    fn node(i: u64) -> NodeId {
        NodeId::synthetic(i)
    }

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn send(s: &mut Streams, now: Time, loc: Option<(NodeId, Ballot)>) -> Vec<u64> {
        let mut out = Vec::new();
        s.poll_transmit(now, node(0), &mut |_| loc, &mut out);
        out.into_iter().map(|(_, e)| e.seq).collect()
    }

    #[test]
    fn only_released_messages_go_out_in_order_within_the_window() {
        let cfg = StreamConfig {
            window: 3,
            ..StreamConfig::default()
        };
        let mut s = Streams::new(SenderId::Client(1), cfg);
        let k = key("r");
        for i in 0..5u8 {
            assert_eq!(s.push(&k, vec![i], None), u64::from(i) + 1);
        }
        let loc = Some((node(2), Ballot::ZERO));
        assert!(send(&mut s, at(0), loc).is_empty(), "nothing released yet");
        let marks = s.marks();
        s.release(&marks);
        assert_eq!(send(&mut s, at(0), loc), vec![1, 2, 3]);
        assert!(send(&mut s, at(1), loc).is_empty(), "window full");
        s.on_ack(at(2), &k, 2, Ballot::ZERO, vec![]);
        assert_eq!(send(&mut s, at(2), loc), vec![4, 5]);
        assert_eq!(s.unacked(), 3);
        // A nack rewinds to the receiver's expectation.
        s.on_nack(at(3), &k, 4, Duration::ZERO);
        assert_eq!(send(&mut s, at(3), loc), vec![4, 5]);
        // Silence: after the timeout everything unacked goes again.
        s.handle_timeout(at(1_000));
        assert_eq!(send(&mut s, at(1_000), loc), vec![3, 4, 5]);
        assert!(s.retransmits >= 1);
        s.on_ack(at(1_001), &k, 5, Ballot::ZERO, vec![]);
        assert!(s.is_idle());
    }

    #[test]
    fn restored_streams_resend_their_committed_messages_under_the_same_numbers() {
        let mut s = Streams::new(SenderId::Client(1), StreamConfig::default());
        let k = key("r");
        s.push(&k, b"a".to_vec(), None);
        s.push(&k, b"b".to_vec(), None);
        let durable = s.durable();
        let mut r = Streams::restore(SenderId::Client(1), StreamConfig::default(), durable);
        assert_eq!(
            send(&mut r, at(0), Some((node(3), Ballot::ZERO))),
            vec![1, 2]
        );
        assert_eq!(r.push(&k, b"c".to_vec(), None), 3);
    }

    #[test]
    fn stale_redirects_are_ignored() {
        let mut s = Streams::new(SenderId::Client(1), StreamConfig::default());
        let k = key("r");
        s.push(&k, vec![], None);
        s.release_all();
        let hi = Ballot {
            round: 5,
            node: node(1),
        };
        let lo = Ballot {
            round: 4,
            node: node(2),
        };
        s.on_redirect(at(0), &k, Some((node(1), hi)));
        s.on_redirect(at(0), &k, Some((node(2), lo)));
        let mut out = Vec::new();
        s.poll_transmit(at(0), node(0), &mut |_| None, &mut out);
        assert_eq!(out[0].0, node(1));
    }

    #[test]
    fn a_nack_from_behind_the_acks_sends_the_stream_back_to_its_resolver() {
        let mut s = Streams::new(SenderId::Client(1), StreamConfig::default());
        let k = key("r");
        for i in 0..4u8 {
            s.push(&k, vec![i], None);
        }
        s.release_all();
        let newer = Ballot {
            round: 7,
            node: node(2),
        };
        assert_eq!(
            send(&mut s, at(0), Some((node(2), newer))),
            vec![1, 2, 3, 4]
        );
        s.on_ack(at(1), &k, 2, newer, vec![]);
        // Envelopes now carry the ballot the acks came under.
        s.on_nack(at(2), &k, 3, Duration::ZERO);
        let mut out = Vec::new();
        s.poll_transmit(at(2), node(0), &mut |_| None, &mut out);
        assert_eq!(
            out.iter().map(|(_, e)| e.seq).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(out.iter().all(|(_, e)| e.ballot == newer));
        // A receiver asking for 1 again forgot acknowledged messages: it is a stale
        // activation, so the stream does not resend into it but re-resolves.
        s.on_nack(at(3), &k, 1, Duration::ZERO);
        let mut asked = 0;
        let mut out = Vec::new();
        s.poll_transmit(
            at(3),
            node(0),
            &mut |_| {
                asked += 1;
                None
            },
            &mut out,
        );
        assert!(out.is_empty(), "held back after a stale nack");
        let later = at(3) + StreamConfig::default().rto_min;
        s.poll_transmit(
            later,
            node(0),
            &mut |_| {
                asked += 1;
                Some((node(5), Ballot::ZERO))
            },
            &mut out,
        );
        assert_eq!(asked, 1, "the location is looked up again");
        assert_eq!(
            out.iter().map(|(n, e)| (*n, e.seq)).collect::<Vec<_>>(),
            vec![(node(5), 3), (node(5), 4)]
        );
    }
}
