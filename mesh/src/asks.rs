//! Ask correlation, sans-IO: every ask this node sends gets exactly one answer.
//!
//! An ask is numbered (`corr`) when it is sent and stays pending until the first of:
//!
//! * a reply **from the peer it was sent to** — a reply naming a pending `corr` from
//!   any other peer is no answer: it is counted (`stray_replies`) and dropped, since a
//!   peer can only answer what it was asked (the driver passes the
//!   transport-authenticated sender);
//! * the peer's refusal of the ask's frame (the [`Failure`] it gave);
//! * delivery giving the frame up (the peer was declared dead, or restarted with the
//!   frame unacknowledged): [`Failure::Unreachable`];
//! * membership declaring the peer dead or departed: [`Failure::Unreachable`];
//! * its deadline: [`Failure::TimedOut`].
//!
//! Whichever comes first answers; the others find nothing pending and are ignored.
//! An ask that cannot be taken is refused at once, with the request handed back (see
//! [`crate::cluster::AskRefused`]), so a caller always learns the outcome: a refusal
//! now, or one [`Answer`] later.
//!
//! Numbers start at a seeded random point, so a reply a previous life of this node
//! was owed cannot plausibly match an ask of this life.
//!
//! **Bounds.** At most [`AskConfig::pending_max`] asks pending (beyond, asks are
//! refused); each has a deadline at most [`AskConfig::timeout_max`] after it was
//! sent, so a pending ask is answered within that time whatever the peer does.
//!
//! **Invariants** ([`Asks::check_invariants`]): pending within the bound; every
//! pending ask indexed once by deadline and once by peer, its deadline within
//! `timeout_max` of its start; `asked == answered + pending` (nothing answered twice,
//! nothing dropped unanswered).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use plexus_actors::{NodeId, Time};
use serde::{Deserialize, Serialize};

use crate::wire::Failure;

/// Ask tuning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AskConfig {
    /// Most asks pending at once on this node.
    pub pending_max: usize,
    /// Longest deadline an ask gets; longer timeouts are cut to this.
    pub timeout_max: Duration,
}

impl Default for AskConfig {
    fn default() -> Self {
        Self {
            pending_max: 65_536,
            timeout_max: Duration::from_secs(3600),
        }
    }
}

/// The one answer an ask gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The ask's number, as [`crate::cluster::Cluster::ask`] returned it.
    pub corr: u64,
    /// The peer that was asked.
    pub peer: NodeId,
    /// The encoded reply, or why there is none.
    pub result: Result<Vec<u8>, Failure>,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AskStats {
    /// Asks taken.
    pub asked: u64,
    /// Asks answered (replies, refusals, failures and timeouts).
    pub answered: u64,
    /// Of which timeouts.
    pub timed_out: u64,
    /// Replies that matched no pending ask of the peer that sent them (late, after a
    /// timeout; or naming another peer's ask).
    pub stray_replies: u64,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    peer: NodeId,
    asked_at: Time,
    deadline: Time,
}

/// Pending asks and their answers.
pub struct Asks {
    config: AskConfig,
    next_corr: u64,
    pending: BTreeMap<u64, Pending>,
    deadlines: BTreeSet<(Time, u64)>,
    by_peer: BTreeSet<(NodeId, u64)>,
    answers: VecDeque<Answer>,
    stats: AskStats,
}

impl Asks {
    /// No asks yet; numbers start at `first_corr`.
    pub fn new(config: AskConfig, first_corr: u64) -> Self {
        Self {
            config,
            next_corr: first_corr,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            by_peer: BTreeSet::new(),
            answers: VecDeque::new(),
            stats: AskStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> AskStats {
        self.stats
    }

    /// Asks waiting for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether `corr` is pending.
    pub fn is_pending(&self, corr: u64) -> bool {
        self.pending.contains_key(&corr)
    }

    /// The peers with asks pending, each once.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let mut last = None;
        self.by_peer
            .iter()
            .map(|(peer, _)| *peer)
            .filter(move |peer| last.replace(*peer) != Some(*peer))
    }

    /// Whether another ask would be refused for the bound.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.config.pending_max
    }

    /// The number the next ask gets.
    pub fn allocate(&mut self) -> u64 {
        let corr = self.next_corr;
        self.next_corr = self.next_corr.wrapping_add(1);
        corr
    }

    /// Records an ask sent to `peer` under `corr` (from [`Asks::allocate`]). The
    /// caller checked [`Asks::is_full`].
    pub fn insert(&mut self, now: Time, corr: u64, peer: NodeId, timeout: Duration) {
        let deadline = now + timeout.min(self.config.timeout_max);
        if let Some(old) = self.pending.insert(
            corr,
            Pending {
                peer,
                asked_at: now,
                deadline,
            },
        ) {
            // Only after 2^64 asks: answer the old one rather than lose it.
            self.deadlines.remove(&(old.deadline, corr));
            self.by_peer.remove(&(old.peer, corr));
            self.stats.answered += 1;
            self.answers.push_back(Answer {
                corr,
                peer: old.peer,
                result: Err(Failure::TimedOut),
            });
        }
        self.deadlines.insert((deadline, corr));
        self.by_peer.insert((peer, corr));
        self.stats.asked += 1;
    }

    fn answer(&mut self, corr: u64, result: Result<Vec<u8>, Failure>) {
        let Some(p) = self.pending.remove(&corr) else {
            return;
        };
        self.deadlines.remove(&(p.deadline, corr));
        self.by_peer.remove(&(p.peer, corr));
        self.stats.answered += 1;
        if result == Err(Failure::TimedOut) {
            self.stats.timed_out += 1;
        }
        self.answers.push_back(Answer {
            corr,
            peer: p.peer,
            result,
        });
    }

    /// A reply from `from`. It answers `corr` only if `corr` was asked of `from`.
    pub fn handle_reply(&mut self, from: NodeId, corr: u64, result: Result<Vec<u8>, Failure>) {
        match self.pending.get(&corr) {
            Some(p) if p.peer == from => self.answer(corr, result),
            _ => self.stats.stray_replies += 1,
        }
    }

    /// Delivery's outcome for the frame of ask `corr` sent to `peer`: refused by the
    /// peer, or given up.
    pub fn handle_failure(&mut self, peer: NodeId, corr: u64, failure: Failure) {
        if self.pending.get(&corr).is_some_and(|p| p.peer == peer) {
            self.answer(corr, Err(failure));
        }
    }

    /// `peer` was declared dead or left: its pending asks are answered `Unreachable`.
    pub fn peer_down(&mut self, peer: NodeId) {
        let lost: Vec<u64> = self
            .by_peer
            .range((peer, 0)..=(peer, u64::MAX))
            .map(|(_, corr)| *corr)
            .collect();
        for corr in lost {
            self.answer(corr, Err(Failure::Unreachable));
        }
    }

    /// Answers every ask whose deadline has come with `TimedOut`.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(&(at, corr)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.answer(corr, Err(Failure::TimedOut));
        }
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// The next answer.
    pub fn poll_answer(&mut self) -> Option<Answer> {
        crate::broadcast::pop_shrinking(&mut self.answers)
    }

    /// Checks the bounds and the bookkeeping (see the module docs).
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.pending.len() > self.config.pending_max {
            return Err(format!(
                "{} asks pending, bound {}",
                self.pending.len(),
                self.config.pending_max
            ));
        }
        if self.deadlines.len() != self.pending.len() || self.by_peer.len() != self.pending.len() {
            return Err(format!(
                "ask indexes out of step: {} pending, {} deadlines, {} by peer",
                self.pending.len(),
                self.deadlines.len(),
                self.by_peer.len()
            ));
        }
        for (corr, p) in &self.pending {
            if !self.deadlines.contains(&(p.deadline, *corr))
                || !self.by_peer.contains(&(p.peer, *corr))
            {
                return Err(format!("ask {corr} missing from an index"));
            }
            if p.deadline > p.asked_at + self.config.timeout_max {
                return Err(format!("ask {corr} has a deadline past timeout_max"));
            }
        }
        if self.stats.asked != self.stats.answered + self.pending.len() as u64 {
            return Err(format!(
                "{} asks taken but {} answered and {} pending",
                self.stats.asked,
                self.stats.answered,
                self.pending.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u64) -> NodeId {
        NodeId::synthetic(i)
    }

    fn drain(a: &mut Asks) -> Vec<Answer> {
        std::iter::from_fn(|| a.poll_answer()).collect()
    }

    #[test]
    fn a_reply_answers_only_an_ask_of_its_sender() {
        let mut a = Asks::new(AskConfig::default(), 7);
        let corr = a.allocate();
        assert_eq!(corr, 7);
        a.insert(Time::ZERO, corr, node(1), Duration::from_secs(1));
        // Node 2 names node 1's ask: no answer.
        a.handle_reply(node(2), corr, Ok(vec![9]));
        assert!(drain(&mut a).is_empty());
        assert!(a.is_pending(corr));
        assert_eq!(a.stats().stray_replies, 1);
        a.handle_reply(node(1), corr, Ok(vec![1]));
        assert_eq!(
            drain(&mut a),
            vec![Answer {
                corr,
                peer: node(1),
                result: Ok(vec![1])
            }]
        );
        // A second reply finds nothing.
        a.handle_reply(node(1), corr, Ok(vec![2]));
        assert!(drain(&mut a).is_empty());
        assert_eq!(a.stats().stray_replies, 2);
        a.check_invariants().unwrap();
    }

    #[test]
    fn deadlines_and_deaths_answer_once() {
        let config = AskConfig {
            pending_max: 3,
            timeout_max: Duration::from_secs(10),
        };
        let mut a = Asks::new(config, u64::MAX);
        let (c1, c2, c3) = (a.allocate(), a.allocate(), a.allocate());
        assert_eq!((c1, c2, c3), (u64::MAX, 0, 1), "numbers wrap");
        a.insert(Time::ZERO, c1, node(1), Duration::from_secs(1));
        a.insert(Time::ZERO, c2, node(2), Duration::from_secs(100));
        a.insert(Time::ZERO, c3, node(2), Duration::from_secs(5));
        assert!(a.is_full());
        a.check_invariants().unwrap();
        assert_eq!(a.peers().collect::<Vec<_>>(), vec![node(1), node(2)]);
        // The long timeout is cut to timeout_max.
        assert_eq!(a.poll_timeout(), Some(Time::ZERO + Duration::from_secs(1)));
        a.handle_timeout(Time::ZERO + Duration::from_millis(999));
        assert!(drain(&mut a).is_empty());
        a.handle_timeout(Time::ZERO + Duration::from_secs(1));
        let got = drain(&mut a);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].result, Err(Failure::TimedOut));
        a.peer_down(node(2));
        let got = drain(&mut a);
        assert_eq!(got.iter().map(|a| a.corr).collect::<Vec<_>>(), vec![c2, c3]);
        assert!(got.iter().all(|a| a.result == Err(Failure::Unreachable)));
        // Late failures find nothing pending.
        a.handle_failure(node(2), c2, Failure::NoSuchActor);
        a.handle_timeout(Time::ZERO + Duration::from_secs(100));
        assert!(drain(&mut a).is_empty());
        assert_eq!(a.stats().asked, 3);
        assert_eq!(a.stats().answered, 3);
        assert_eq!(a.stats().timed_out, 1);
        a.check_invariants().unwrap();
    }

    #[test]
    fn a_failure_for_another_peer_does_not_answer() {
        let mut a = Asks::new(AskConfig::default(), 1);
        let c = a.allocate();
        a.insert(Time::ZERO, c, node(1), Duration::from_secs(1));
        a.handle_failure(node(2), c, Failure::NoSuchActor);
        assert!(a.is_pending(c));
        a.handle_failure(node(1), c, Failure::NoSuchActor);
        assert_eq!(drain(&mut a)[0].result, Err(Failure::NoSuchActor));
    }

    #[test]
    fn the_invariant_catches_an_ask_dropped_unanswered() {
        let mut a = Asks::new(AskConfig::default(), 1);
        let c = a.allocate();
        a.insert(Time::ZERO, c, node(1), Duration::from_secs(1));
        // Simulate a bug: the ask vanishes without an answer.
        a.pending.remove(&c);
        a.deadlines.clear();
        a.by_peer.clear();
        assert!(a.check_invariants().is_err());
    }
}
