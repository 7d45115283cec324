//! The ask workload and its checker: workload actors ask each other, through the
//! same `Cluster::ask` the libp2p driver calls, and the checker holds the mesh to
//! its promise that every ask gets exactly one answer or a typed error.
//!
//! An ask carries a token; the receiving actor echoes it back, except every tenth
//! token, which it never answers (so timeouts happen). The checker keeps a ledger of
//! the asks each node's core took (by asker, its incarnation and the ask's number)
//! and reports:
//!
//! * `ask-answered-twice`: an answer for an ask already answered, or never taken;
//! * `ask-wrong-reply`: a reply that is not the echo of the ask's own token, or an
//!   answer naming another peer;
//! * `ask-unanswered`: an ask the core no longer holds pending whose answer never
//!   reached the asker;
//! * `ask-overdue`: an ask still pending `OVERDUE_GRACE` past its deadline on a
//!   running node.
//!
//! An ask whose asker crashed is forgotten with it. Refusals (`AskRefused`) are the
//! typed outcome of an ask the core did not take, and are only counted.

use std::collections::BTreeMap;

use plexus_mesh::asks::Answer;
use plexus_mesh::cluster::AskRequest;
use plexus_mesh::wire::Failure;

use crate::world::*;

/// How long past its deadline an ask may stay pending before it counts as overdue:
/// clock drift and a node's timer granularity stay far below this.
const OVERDUE_GRACE_US: u64 = 5_000_000;
/// Every this many tokens the receiving actor withholds its reply.
const UNANSWERED_EVERY: u64 = 10;

/// One ask the core took.
struct Asked {
    peer: usize,
    token: u64,
    /// Virtual µs.
    deadline: u64,
}

/// The ask workload's state.
#[derive(Default)]
pub(in crate::world) struct AskWorld {
    /// Taken and not yet answered: (asker, its incarnation, corr).
    ledger: BTreeMap<(usize, u64, u64), Asked>,
    next_token: u64,
    /// Answers seen, for the injected bugs.
    answers_seen: u64,
}

impl World {
    /// Node `i` (if still in incarnation `incarnation`) asks an actor elsewhere.
    pub(in crate::world) fn ask(&mut self, i: usize, incarnation: u64) {
        if self.nodes[i].incarnation != incarnation || self.nodes[i].core.is_none() {
            return; // crashed: the chain ends; a restart starts a new one
        }
        let n = self.scenario.nodes;
        if n > 1 {
            let mut to = self.nodes[i].rng.index(n - 1);
            if to >= i {
                to += 1;
            }
            let actor = self.nodes[i]
                .rng
                .below(self.scenario.workload.actors_per_node as u64);
            self.asks.next_token += 1;
            let token = self.asks.next_token;
            let peer = self.nodes[to].id;
            let request = AskRequest {
                target: ActorId::new(peer, ACTOR_BASE + actor),
                message_type: "ask".into(),
                payload: token.to_le_bytes().to_vec().into(),
                trace: None,
            };
            let timeout = self.scenario.workload.ask_timeout;
            let now = self.local(i, self.now);
            let taken = self.nodes[i]
                .core
                .as_mut()
                .map(|core| core.ask(now, peer, request, timeout).ok());
            match taken {
                Some(Some(corr)) => {
                    self.report.asks_sent += 1;
                    let deadline = self.now + us(timeout);
                    self.asks.ledger.insert(
                        (i, incarnation, corr),
                        Asked {
                            peer: to,
                            token,
                            deadline,
                        },
                    );
                    self.record(i, 50, to as u64, corr);
                }
                Some(None) => self.report.asks_refused += 1,
                None => {}
            }
            self.pump(i);
        }
        let at = self.now + self.exp(i, self.scenario.workload.ask_rate);
        self.push(at, Ev::Ask(i, incarnation));
    }

    /// A workload actor on node `to` gets an ask from `from`: it echoes the token,
    /// except every `UNANSWERED_EVERY`th.
    pub(in crate::world) fn on_ask(&mut self, to: usize, from: usize, corr: u64, payload: &[u8]) {
        let token = <[u8; 8]>::try_from(payload).map(u64::from_le_bytes);
        if token.is_ok_and(|t| t % UNANSWERED_EVERY == 0) {
            return;
        }
        let now = self.local(to, self.now);
        let asker = self.nodes[from].id;
        if let Some(core) = self.nodes[to].core.as_mut() {
            // A full reply window drops the reply: the asker times out.
            let _ = core.reply(now, asker, corr, Ok(payload.to_vec()));
        }
    }

    /// An answer came out of node `i`'s core: hand it to its asker (the ledger), as
    /// a driver hands it to the waiting actor.
    pub(in crate::world) fn on_answer(&mut self, i: usize, answer: Answer) {
        self.asks.answers_seen += 1;
        let nth = self.asks.answers_seen.is_multiple_of(UNANSWERED_EVERY);
        let times = match self.options.bug {
            Some(Bug::DropAnswers) if nth => 0,
            Some(Bug::AnswerAsksTwice) if nth => 2,
            _ => 1,
        };
        for _ in 0..times {
            self.answered(i, &answer);
        }
    }

    fn answered(&mut self, i: usize, answer: &Answer) {
        self.record(i, 51, answer.corr, u64::from(answer.result.is_ok()));
        let key = (i, self.nodes[i].incarnation, answer.corr);
        let Some(asked) = self.asks.ledger.remove(&key) else {
            self.violate(
                "ask-answered-twice",
                format!(
                    "node {i} got a second answer (or one for no ask) to ask {}",
                    answer.corr
                ),
            );
            return;
        };
        if answer.peer != self.nodes[asked.peer].id {
            self.violate(
                "ask-wrong-reply",
                format!(
                    "node {i}'s ask {} of node {} was answered for {:?}",
                    answer.corr, asked.peer, answer.peer
                ),
            );
        }
        match &answer.result {
            Ok(bytes) => {
                self.report.asks_replied += 1;
                if bytes[..] != asked.token.to_le_bytes()[..] {
                    self.violate(
                        "ask-wrong-reply",
                        format!(
                            "node {i}'s ask {} (token {}) got {bytes:?}",
                            answer.corr, asked.token
                        ),
                    );
                }
            }
            Err(Failure::TimedOut) => self.report.asks_timed_out += 1,
            Err(_) => self.report.asks_failed += 1,
        }
    }

    /// Asks that never got their answer (see the module docs).
    pub(in crate::world) fn check_asks(&mut self) {
        let mut found = Vec::new();
        let now = self.now;
        let nodes = &self.nodes;
        self.asks.ledger.retain(|&(i, incarnation, corr), asked| {
            let node = &nodes[i];
            let Some(core) = node
                .core
                .as_ref()
                .filter(|_| node.incarnation == incarnation)
            else {
                return false; // the asker crashed: nobody waits
            };
            if !core.asks().is_pending(corr) {
                found.push((
                    "ask-unanswered",
                    format!(
                        "node {i}'s ask {corr} of node {} was never answered",
                        asked.peer
                    ),
                ));
                return false;
            }
            if !node.paused && now > asked.deadline.saturating_add(OVERDUE_GRACE_US) {
                found.push((
                    "ask-overdue",
                    format!(
                        "node {i}'s ask {corr} of node {} is pending {} ms past its deadline",
                        asked.peer,
                        (now - asked.deadline) / 1_000
                    ),
                ));
                return false;
            }
            true
        });
        for (check, detail) in found {
            self.violate(check, detail);
        }
    }
}
