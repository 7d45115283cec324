//! One chunk's put: which nodes to ask, and when it is acknowledged.
//!
//! The gateway node tries the chunk's placement order ([`crate::placement::order`]
//! over live nodes): the first `r` at once, and the next one in the order for each
//! that refuses (full, a disk error, an invalid chunk) or times out. The put is
//! acknowledged once `quorum` nodes hold the chunk durably (`quorum = r` unless the
//! client chose fewer; the missing copies are then the repair's to make). It fails
//! when the order runs out before `quorum` is reached, with every refusal listed.

use std::collections::BTreeSet;

use plexus_actors::NodeId;

/// What a node answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Stored durably.
    Stored,
    /// Refused or not answered, and why.
    Refused(String),
}

impl From<crate::wire::StoreOutcome> for Answer {
    /// A node's answer to a store, as the plan counts it.
    fn from(outcome: crate::wire::StoreOutcome) -> Self {
        match outcome {
            crate::wire::StoreOutcome::Stored => Answer::Stored,
            other => Answer::Refused(format!("{other:?}")),
        }
    }
}

/// The put's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Held by these nodes (at least `quorum`).
    Stored(Vec<NodeId>),
    /// Fewer than `quorum` nodes could take it.
    Failed {
        /// Nodes that hold it anyway.
        stored: Vec<NodeId>,
        /// Each refusal.
        refusals: Vec<(NodeId, String)>,
    },
}

/// One chunk's put.
#[derive(Clone, Debug)]
pub struct PutPlan {
    order: Vec<NodeId>,
    next: usize,
    r: usize,
    quorum: usize,
    asked: BTreeSet<NodeId>,
    stored: Vec<NodeId>,
    refusals: Vec<(NodeId, String)>,
}

impl PutPlan {
    /// A put over `order` (the placement order), for `r` replicas, acknowledged
    /// at `quorum` (clamped to `1..=r`).
    pub fn new(order: Vec<NodeId>, r: u8, quorum: u8) -> Self {
        let r = usize::from(r.max(1));
        PutPlan {
            order,
            next: 0,
            r,
            quorum: usize::from(quorum).clamp(1, r),
            asked: BTreeSet::new(),
            stored: Vec::new(),
            refusals: Vec::new(),
        }
    }

    /// Nodes to send the chunk to now (each at most once per put).
    pub fn poll_targets(&mut self) -> Vec<NodeId> {
        let mut out = Vec::new();
        while self.asked.len() - self.refusals.len() < self.r && self.next < self.order.len() {
            let n = self.order[self.next];
            self.next += 1;
            if self.asked.insert(n) {
                out.push(n);
            }
        }
        out
    }

    /// `from` answered (answers from nodes not asked, or twice, are ignored).
    pub fn handle(&mut self, from: NodeId, answer: Answer) {
        if !self.asked.contains(&from)
            || self.stored.contains(&from)
            || self.refusals.iter().any(|(n, _)| *n == from)
        {
            return;
        }
        match answer {
            Answer::Stored => self.stored.push(from),
            Answer::Refused(why) => self.refusals.push((from, why)),
        }
    }

    /// Nodes asked that have not answered.
    pub fn waiting(&self) -> Vec<NodeId> {
        self.asked
            .iter()
            .filter(|n| !self.stored.contains(n) && !self.refusals.iter().any(|(m, _)| m == *n))
            .copied()
            .collect()
    }

    /// The outcome, once there is one.
    pub fn outcome(&self) -> Option<PutOutcome> {
        if self.stored.len() >= self.quorum {
            return Some(PutOutcome::Stored(self.stored.clone()));
        }
        let waiting = self.waiting().len();
        let untried = self.order.len() - self.next;
        if self.stored.len() + waiting + untried < self.quorum {
            return Some(PutOutcome::Failed {
                stored: self.stored.clone(),
                refusals: self.refusals.clone(),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u64) -> NodeId {
        NodeId::synthetic(i)
    }

    #[test]
    fn a_put_needs_r_acks_and_goes_past_full_nodes() {
        let mut p = PutPlan::new((0..5).map(n).collect(), 3, 3);
        assert_eq!(p.poll_targets(), vec![n(0), n(1), n(2)]);
        p.handle(n(0), Answer::Stored);
        p.handle(n(1), Answer::Refused("full".into()));
        assert_eq!(p.outcome(), None);
        assert_eq!(p.poll_targets(), vec![n(3)]);
        p.handle(n(2), Answer::Stored);
        p.handle(n(9), Answer::Stored); // never asked
        assert_eq!(p.outcome(), None);
        p.handle(n(3), Answer::Stored);
        assert_eq!(
            p.outcome(),
            Some(PutOutcome::Stored(vec![n(0), n(2), n(3)]))
        );
    }

    #[test]
    fn a_put_fails_when_the_order_runs_out_and_a_quorum_acks_early() {
        let mut p = PutPlan::new((0..3).map(n).collect(), 3, 3);
        p.poll_targets();
        p.handle(n(0), Answer::Refused("full".into()));
        assert!(p.poll_targets().is_empty());
        assert!(matches!(p.outcome(), Some(PutOutcome::Failed { .. })));

        let mut q = PutPlan::new((0..3).map(n).collect(), 3, 1);
        q.poll_targets();
        q.handle(n(1), Answer::Stored);
        assert_eq!(q.outcome(), Some(PutOutcome::Stored(vec![n(1)])));
        assert_eq!(q.waiting(), vec![n(0), n(2)]);
    }
}
