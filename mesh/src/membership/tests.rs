//! The membership core on a hand-driven clock: no tokio, no sockets. A tiny network
//! routes messages between cores with a fixed latency and can drop nodes and links.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::*;

const TICK: Duration = Duration::from_millis(10);
const LATENCY: Duration = Duration::from_millis(2);

fn config() -> MembershipConfig {
    MembershipConfig {
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(80),
        sync_interval: Duration::from_secs(2),
        ..MembershipConfig::default()
    }
}

struct Net {
    nodes: Vec<Membership>,
    ids: Vec<NodeId>,
    now: Time,
    in_flight: VecDeque<(Time, usize, usize, Probe, Vec<MemberUpdate>)>,
    crashed: BTreeSet<usize>,
    cut: BTreeSet<(usize, usize)>,
    events: Vec<(usize, MembershipEvent)>,
}

impl Net {
    fn new(n: usize) -> Self {
        let ids: Vec<NodeId> = (0..n as u64).map(NodeId::synthetic).collect();
        let nodes = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let meta = NodeMeta {
                    addrs: vec![format!("node-{i}")],
                    ..NodeMeta::default()
                };
                Membership::new(*id, 1, meta, config(), 100 + i as u64, Time::ZERO)
            })
            .collect();
        let mut net = Self {
            nodes,
            ids,
            now: Time::ZERO,
            in_flight: VecDeque::new(),
            crashed: BTreeSet::new(),
            cut: BTreeSet::new(),
            events: Vec::new(),
        };
        // Everyone discovers node 0 (a bootstrap peer).
        for i in 1..n {
            let id0 = net.ids[0];
            net.nodes[i].handle_discovered(Time::ZERO, id0);
        }
        net
    }

    fn index(&self, id: NodeId) -> usize {
        self.ids.iter().position(|x| *x == id).unwrap()
    }

    fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    fn run(&mut self, dur: Duration) {
        let end = self.now + dur;
        while self.now < end {
            self.now = self.now + TICK;
            while let Some((t, _, _, _, _)) = self.in_flight.front() {
                if *t > self.now {
                    break;
                }
                let (_, from, to, msg, gossip) = self.in_flight.pop_front().unwrap();
                if self.crashed.contains(&to) || self.cut.contains(&(from, to)) {
                    continue;
                }
                let now = self.now;
                for g in gossip {
                    self.nodes[to].apply(now, g);
                }
                self.nodes[to].handle_message(now, self.ids[from], msg);
            }
            for i in 0..self.nodes.len() {
                if self.crashed.contains(&i) {
                    // A crashed node's queued output is lost with it.
                    while self.nodes[i].poll_transmit().is_some() {}
                    continue;
                }
                let now = self.now;
                if self.nodes[i].poll_timeout() <= now {
                    self.nodes[i].handle_timeout(now);
                }
                while let Some((to, msg)) = self.nodes[i].poll_transmit() {
                    let gossip = self.nodes[i].take_gossip(8);
                    let to = self.index(to);
                    self.in_flight
                        .push_back((now + LATENCY, i, to, msg, gossip));
                }
                while let Some(ev) = self.nodes[i].poll_event() {
                    self.events.push((i, ev));
                }
                self.nodes[i].check_invariants().unwrap();
            }
        }
    }

    fn view(&self, observer: usize, subject: usize) -> Option<MemberState> {
        self.nodes[observer].state_of(&self.ids[subject])
    }

    fn all_see(&self, subject: usize, state: MemberState) -> bool {
        (0..self.nodes.len())
            .filter(|o| *o != subject && !self.crashed.contains(o))
            .all(|o| self.view(o, subject) == Some(state))
    }

    fn converged_alive(&self) -> bool {
        (0..self.nodes.len()).all(|s| self.all_see(s, MemberState::Alive))
    }

    /// Runs until `cond` holds, failing after `limit`. Returns the time it took.
    fn until(&mut self, limit: Duration, mut cond: impl FnMut(&Self) -> bool) -> Duration {
        let start = self.now;
        while !cond(self) {
            assert!(
                self.now.saturating_since(start) < limit,
                "condition not reached within {limit:?}"
            );
            self.run(TICK);
        }
        self.now.saturating_since(start)
    }
}

#[test]
fn nodes_join_through_one_bootstrap_peer() {
    let mut net = Net::new(8);
    net.until(Duration::from_secs(5), Net::converged_alive);
    for i in 0..8 {
        assert_eq!(net.nodes[i].members().count(), 7);
        assert_eq!(
            net.nodes[i]
                .member(&net.ids[(i + 1) % 8])
                .unwrap()
                .meta
                .addrs,
            vec![format!("node-{}", (i + 1) % 8)]
        );
    }
}

#[test]
fn a_crashed_node_is_declared_dead_by_all_within_the_bound() {
    let mut net = Net::new(6);
    net.until(Duration::from_secs(5), Net::converged_alive);
    net.crashed.insert(3);
    let bound = config().detection_bound(6);
    let took = net.until(bound, |n| n.all_see(3, MemberState::Dead));
    assert!(took <= bound, "{took:?} > {bound:?}");
    // Everyone went through Suspected (someone) and Died (everyone).
    let died: BTreeSet<usize> = net
        .events
        .iter()
        .filter(|(_, e)| *e == MembershipEvent::Died(net.ids[3]))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(died, [0, 1, 2, 4, 5].into_iter().collect());
    // Nobody else was harmed.
    for s in [0, 1, 2, 4, 5] {
        assert!(net.all_see(s, MemberState::Alive));
    }
}

#[test]
fn a_falsely_suspected_node_refutes_and_stays_alive() {
    let mut net = Net::new(5);
    net.until(Duration::from_secs(5), Net::converged_alive);
    net.events.clear();
    // Node 2's inbound links break briefly: it misses probes, gets suspected, but
    // hears the suspicion (its outbound links still work and replies carry gossip
    // once the cut heals) and refutes before the suspicion times out.
    let others = [0, 1, 3, 4];
    for &o in &others {
        net.cut.insert((o, 2));
    }
    net.until(Duration::from_secs(5), |n| {
        others
            .iter()
            .any(|&o| n.view(o, 2) == Some(MemberState::Suspect))
    });
    for &o in &others {
        net.cut.remove(&(o, 2));
    }
    net.until(Duration::from_secs(5), |n| n.all_see(2, MemberState::Alive));
    let refuted = net
        .events
        .iter()
        .any(|(i, e)| *i == 2 && matches!(e, MembershipEvent::Refuted { .. }));
    assert!(refuted, "node 2 refuted: {:?}", net.events);
    assert!(net.nodes[2].incarnation() > 1);
    assert!(
        !net.events
            .iter()
            .any(|(_, e)| *e == MembershipEvent::Died(net.ids[2])),
        "never declared dead"
    );
}

#[test]
fn a_partition_splits_the_view_and_heals() {
    let mut net = Net::new(6);
    net.until(Duration::from_secs(5), Net::converged_alive);
    net.partition(&[0, 1, 2], &[3, 4, 5]);
    let bound = config().detection_bound(6);
    net.until(bound * 2, |n| {
        [0, 1, 2].iter().all(|&a| {
            [3, 4, 5].iter().all(|&b| {
                n.view(a, b) == Some(MemberState::Dead) && n.view(b, a) == Some(MemberState::Dead)
            })
        })
    });
    // Each side still sees its own half alive.
    assert_eq!(net.view(0, 1), Some(MemberState::Alive));
    assert_eq!(net.view(4, 5), Some(MemberState::Alive));
    net.cut.clear();
    // Healing needs a sync to cross (one sync interval, half of them to the dead),
    // then refutation and dissemination.
    let heal_bound = config().sync_interval * 4 + bound;
    let took = net.until(heal_bound, Net::converged_alive);
    assert!(took <= heal_bound);
}

#[test]
fn meta_changes_spread_with_a_higher_incarnation() {
    let mut net = Net::new(4);
    net.until(Duration::from_secs(5), Net::converged_alive);
    let before = net.nodes[1].incarnation();
    let mut meta = net.nodes[1].meta().clone();
    meta.free.cpu_millis = 1234;
    net.nodes[1].set_meta(meta);
    assert_eq!(net.nodes[1].incarnation(), before + 1);
    net.until(Duration::from_secs(3), |n| {
        [0, 2, 3].iter().all(|&o| {
            n.nodes[o]
                .member(&n.ids[1])
                .is_some_and(|m| m.meta.free.cpu_millis == 1234)
        })
    });
    assert!(
        net.events
            .iter()
            .any(|(_, e)| *e == MembershipEvent::Updated(net.ids[1]))
    );
}

#[test]
fn a_leaving_node_is_marked_left_not_dead() {
    let mut net = Net::new(4);
    net.until(Duration::from_secs(5), Net::converged_alive);
    net.nodes[2].leave();
    net.run(Duration::from_millis(300));
    net.crashed.insert(2);
    net.until(Duration::from_secs(3), |n| n.all_see(2, MemberState::Left));
    assert!(
        !net.events
            .iter()
            .any(|(_, e)| *e == MembershipEvent::Died(net.ids[2]))
    );
}

#[test]
fn stale_and_older_updates_do_not_regress_state() {
    let me = NodeId::synthetic(0);
    let other = NodeId::synthetic(1);
    let mut m = Membership::new(me, 1, NodeMeta::default(), config(), 1, Time::ZERO);
    let alive = |inc| MemberUpdate {
        id: other,
        incarnation: inc,
        state: MemberState::Alive,
        meta: Some(Arc::new(NodeMeta::default())),
    };
    let dead = |inc| MemberUpdate {
        id: other,
        incarnation: inc,
        state: MemberState::Dead,
        meta: None,
    };
    assert!(m.apply(Time::ZERO, alive(5)));
    assert!(!m.apply(Time::ZERO, alive(4)), "older alive ignored");
    assert!(!m.apply(Time::ZERO, dead(4)), "older death ignored");
    assert!(m.apply(Time::ZERO, dead(5)), "same-incarnation death wins");
    assert!(
        !m.apply(Time::ZERO, alive(5)),
        "same-incarnation alive cannot resurrect"
    );
    assert!(m.apply(Time::ZERO, alive(6)), "a refutation can");
    assert_eq!(m.state_of(&other), Some(MemberState::Alive));
    // Dead news about myself at my incarnation makes me refute.
    assert!(m.apply(
        Time::ZERO,
        MemberUpdate {
            id: me,
            incarnation: 1,
            state: MemberState::Dead,
            meta: None
        }
    ));
    assert_eq!(m.incarnation(), 2);
    m.check_invariants().unwrap();
}

#[test]
fn detection_bound_grows_slowly_with_size() {
    let c = MembershipConfig::default();
    assert!(c.detection_bound(4) < c.detection_bound(100));
    assert!(c.suspicion_timeout(1000) > c.suspicion_timeout(10));
}
