//! The membership core on a hand-driven clock: no tokio, no sockets. A tiny network
//! routes messages between cores with a fixed latency and can drop nodes and links.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::*;

const TICK: Duration = Duration::from_millis(10);
const LATENCY: Duration = Duration::from_millis(2);

/// Node `i`'s key (deterministic).
fn key(i: u64) -> NodeKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    NodeKey::from_seed(seed)
}

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
    in_flight: VecDeque<(Time, usize, usize, Probe, Vec<Statement>)>,
    crashed: BTreeSet<usize>,
    cut: BTreeSet<(usize, usize)>,
    events: Vec<(usize, MembershipEvent)>,
    /// Full views sent (`Sync` and `SyncReply`).
    full_syncs: u64,
    /// Piggybacked gossip off: only probes and syncs carry statements.
    no_gossip: bool,
}

impl Net {
    fn new(n: usize) -> Self {
        Self::with_config(n, config())
    }

    fn with_config(n: usize, config: MembershipConfig) -> Self {
        let keys: Vec<NodeKey> = (0..n as u64).map(key).collect();
        let ids: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                let meta = NodeMeta {
                    addrs: vec![format!("node-{i}")],
                    ..NodeMeta::default()
                };
                Membership::new(k, 1, meta, config.clone(), 100 + i as u64, Time::ZERO)
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
            full_syncs: 0,
            no_gossip: false,
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
                    self.nodes[to].apply(now, self.ids[from], g);
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
                    if matches!(msg, Probe::Sync { .. } | Probe::SyncReply { .. }) {
                        self.full_syncs += 1;
                    }
                    let gossip = if self.no_gossip {
                        Vec::new()
                    } else {
                        self.nodes[i].take_gossip(now, 8)
                    };
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
                .meta()
                .addrs,
            vec![format!("node-{}", (i + 1) % 8)]
        );
    }
}

#[test]
fn a_converged_cluster_syncs_by_digest_and_a_differing_view_still_gets_the_full_sync() {
    let mut net = Net::new(6);
    net.until(Duration::from_secs(5), Net::converged_alive);
    // Let the joins' syncs drain, then watch five sync periods.
    net.run(Duration::from_secs(4));
    let digest = net.nodes[0].view_digest();
    assert!(net.nodes.iter().all(|m| m.view_digest() == digest));
    let offers: u64 = net.nodes.iter().map(|m| m.stats().sync_offers).sum();
    net.full_syncs = 0;
    net.run(Duration::from_secs(10));
    let offered: u64 = net.nodes.iter().map(|m| m.stats().sync_offers).sum::<u64>() - offers;
    assert!(
        offered >= 6 * 4,
        "every node offered a sync each period: {offered}"
    );
    assert_eq!(net.full_syncs, 0, "equal views exchange digests only");

    // Node 5 changes what it advertises with gossip off: only syncs can spread its
    // new incarnation, and they do once the digests differ.
    net.no_gossip = true;
    net.nodes[5].set_meta(NodeMeta {
        addrs: vec!["node-5-moved".into()],
        ..NodeMeta::default()
    });
    let id5 = net.ids[5];
    net.until(Duration::from_secs(30), |net| {
        (0..5).all(|i| {
            net.nodes[i]
                .member(&id5)
                .is_some_and(|m| m.incarnation() == 2)
        })
    });
    assert!(net.full_syncs > 0);
    assert!(
        net.nodes
            .iter()
            .map(|m| m.stats().sync_offers_differ)
            .sum::<u64>()
            > 0
    );
    let digest = net.nodes[5].view_digest();
    assert!(net.nodes.iter().all(|m| m.view_digest() == digest));
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
                .is_some_and(|m| m.meta().free.cpu_millis == 1234)
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

fn alive_of(k: &NodeKey, inc: u64) -> MemberUpdate {
    MemberUpdate {
        id: k.node_id(),
        incarnation: inc,
        state: MemberState::Alive,
        meta: Some(Arc::new(NodeMeta::default())),
        sig: Default::default(),
    }
    .sign(k)
}

fn hearsay(id: NodeId, inc: u64, state: MemberState) -> MemberUpdate {
    MemberUpdate {
        id,
        incarnation: inc,
        state,
        meta: None,
        sig: Default::default(),
    }
}

#[test]
fn stale_and_older_updates_do_not_regress_state() {
    let (km, ko, liar) = (key(0), key(1), key(2).node_id());
    let me = km.node_id();
    let other = ko.node_id();
    let mut m = Membership::new(km, 1, NodeMeta::default(), config(), 1, Time::ZERO);
    assert!(
        m.apply(Time::ZERO, liar, alive_of(&ko, 5)),
        "relayed, signed"
    );
    assert!(
        !m.apply(Time::ZERO, liar, alive_of(&ko, 4)),
        "older alive ignored"
    );
    assert!(
        !m.apply(Time::ZERO, other, hearsay(other, 5, MemberState::Dead)),
        "death is never taken on anyone's word"
    );
    assert_eq!(m.state_of(&other), Some(MemberState::Alive));
    assert!(
        !m.apply(Time::ZERO, liar, alive_of(&ko, 5)),
        "a replay is no news"
    );
    assert!(
        m.apply(Time::ZERO, liar, alive_of(&ko, 6)),
        "a newer one is"
    );
    assert_eq!(m.member(&other).unwrap().incarnation(), 6);
    // Dead news about myself at my incarnation makes me refute, whoever says it.
    assert!(m.apply(Time::ZERO, liar, hearsay(me, 1, MemberState::Dead)));
    assert_eq!(m.incarnation(), 2);
    assert!(m.self_statement().verify());
    assert_eq!(m.stats().refused.total(), 0);
    m.check_invariants().unwrap();
}

/// One honest node `m` that knows `victim` alive at incarnation 5, and a liar.
fn with_victim() -> (Membership, NodeKey, NodeKey) {
    let (km, kv, kl) = (key(0), key(1), key(2));
    let mut m = Membership::new(km, 1, NodeMeta::default(), config(), 1, Time::ZERO);
    assert!(m.apply(Time::ZERO, kv.node_id(), alive_of(&kv, 5)));
    assert!(m.apply(Time::ZERO, kl.node_id(), alive_of(&kl, 1)));
    (m, kv, kl)
}

#[test]
fn a_liar_cannot_speak_for_another_node() {
    let (mut m, kv, kl) = with_victim();
    let (victim, liar) = (kv.node_id(), kl.node_id());
    // Unsigned: a poisoned address at a higher incarnation.
    let mut poisoned = alive_of(&kv, 6);
    poisoned.sig = Default::default();
    poisoned.meta = Some(Arc::new(NodeMeta {
        addrs: vec!["evil:1".into()],
        ..NodeMeta::default()
    }));
    assert_eq!(
        m.try_apply(Time::ZERO, liar, poisoned.clone()),
        Err(GossipRefused::Forged)
    );
    // Signed by the liar, or a victim's signature moved onto other meta.
    let mut resigned = poisoned.clone().sign(&kl);
    resigned.id = victim;
    assert_eq!(
        m.try_apply(Time::ZERO, liar, resigned),
        Err(GossipRefused::Forged)
    );
    let mut moved = alive_of(&kv, 6);
    moved.meta = poisoned.meta.clone();
    assert_eq!(
        m.try_apply(Time::ZERO, liar, moved),
        Err(GossipRefused::Forged)
    );
    // A forged departure.
    let mut left = hearsay(victim, 6, MemberState::Left);
    assert_eq!(
        m.try_apply(Time::ZERO, liar, left.clone()),
        Err(GossipRefused::Forged)
    );
    left.sig = vec![0; 64].into();
    assert_eq!(
        m.try_apply(Time::ZERO, liar, left),
        Err(GossipRefused::Forged)
    );
    let v = m.member(&victim).unwrap();
    assert_eq!((v.state, v.incarnation()), (MemberState::Alive, 5));
    assert!(v.meta().addrs.is_empty());
    assert_eq!(m.stats().refused.forged, 5);
    // The victim itself may say it unsigned (straight from it).
    let mut own = alive_of(&kv, 6);
    own.sig = Default::default();
    assert_eq!(m.try_apply(Time::ZERO, victim, own), Ok(true));
    m.check_invariants().unwrap();
}

#[test]
fn hearsay_of_death_only_prompts_a_probe() {
    let (mut m, kv, kl) = with_victim();
    let (victim, liar) = (kv.node_id(), kl.node_id());
    for state in [MemberState::Suspect, MemberState::Dead] {
        assert_eq!(
            m.try_apply(Time::ZERO, liar, hearsay(victim, 5, state)),
            Ok(false)
        );
    }
    assert_eq!(m.state_of(&victim), Some(MemberState::Alive));
    assert_eq!(m.stats().hints, 1, "one hint pending");
    // The hint makes the victim the next probe target.
    let (to, seq, t) = next_ping(&mut m);
    assert_eq!(to, victim);
    m.handle_message(t, victim, Probe::Ack { seq });
    // The victim answers: it stays alive however long we wait, whatever the liar says.
    let mut now = t;
    for _ in 0..100 {
        let _ = m.apply(now, liar, hearsay(victim, 5, MemberState::Dead));
        now = m.poll_timeout();
        m.handle_timeout(now);
        while let Some((to, p)) = m.poll_transmit() {
            if let Probe::Ping { seq } = p {
                m.handle_message(now, to, Probe::Ack { seq });
            }
        }
    }
    assert_eq!(m.state_of(&victim), Some(MemberState::Alive));
    m.check_invariants().unwrap();
}

#[test]
fn the_own_detector_still_kills_and_the_suspect_can_refute() {
    let (mut m, kv, kl) = with_victim();
    let victim = kv.node_id();
    // Nobody answers any probe: the node's own detector suspects and kills.
    let mut now = Time::ZERO;
    while m.state_of(&victim) != Some(MemberState::Dead) {
        now = m.poll_timeout();
        m.handle_timeout(now);
        while m.poll_transmit().is_some() {}
        assert!(now < Time::from_millis(60_000), "never declared dead");
    }
    // The victim refutes with a new incarnation, relayed by anyone.
    assert!(m.apply(now, kl.node_id(), alive_of(&kv, 6)));
    assert_eq!(m.state_of(&victim), Some(MemberState::Alive));
    m.check_invariants().unwrap();
}

#[test]
fn a_liar_cannot_ack_for_a_dead_member() {
    let (mut m, kv, kl) = with_victim();
    let (victim, liar) = (kv.node_id(), kl.node_id());
    // The victim is dead; the liar acks every ping (it sees their seqs: say it
    // guesses them) on its behalf, and every relayed ping too.
    while m.state_of(&victim) != Some(MemberState::Dead) {
        let now = m.poll_timeout();
        m.handle_timeout(now);
        while let Some((to, p)) = m.poll_transmit() {
            match p {
                Probe::Ping { seq } if to == victim => {
                    m.handle_message(now, liar, Probe::Ack { seq })
                }
                Probe::Ping { seq } => m.handle_message(now, to, Probe::Ack { seq }),
                _ => {}
            }
        }
        assert!(
            now < Time::from_millis(60_000),
            "the liar kept a dead member alive"
        );
    }
    assert_eq!(m.state_of(&liar), Some(MemberState::Alive));
}

#[test]
fn huge_incarnations_are_refused_and_never_overflow() {
    let (mut m, kv, kl) = with_victim();
    let (victim, liar, me) = (kv.node_id(), kl.node_id(), m.me());
    // Signed by the victim itself, but a jump past the bound: refused.
    assert_eq!(
        m.try_apply(Time::ZERO, liar, alive_of(&kv, u64::MAX)),
        Err(GossipRefused::IncarnationJump)
    );
    assert_eq!(m.member(&victim).unwrap().incarnation(), 5);
    // Within the bound it is fine.
    assert_eq!(
        m.try_apply(Time::ZERO, victim, alive_of(&kv, 5 + INCARNATION_STEP_MAX)),
        Ok(true)
    );
    // Accusations of me above my incarnation: a lie, refused; no refutation to MAX+1.
    assert_eq!(
        m.try_apply(Time::ZERO, liar, hearsay(me, u64::MAX, MemberState::Dead)),
        Err(GossipRefused::IncarnationJump)
    );
    assert_eq!(m.incarnation(), 1);
    // A new member at u64::MAX is refused too.
    let k9 = key(9);
    assert_eq!(
        m.try_apply(Time::ZERO, k9.node_id(), alive_of(&k9, u64::MAX)),
        Err(GossipRefused::IncarnationJump)
    );
    // A node at u64::MAX itself cannot overflow when it must refute or change.
    let mut top = Membership::new(
        key(3),
        u64::MAX,
        NodeMeta::default(),
        config(),
        1,
        Time::ZERO,
    );
    assert_eq!(
        top.try_apply(
            Time::ZERO,
            liar,
            hearsay(top.me(), u64::MAX, MemberState::Suspect)
        ),
        Err(GossipRefused::IncarnationJump)
    );
    top.set_meta(NodeMeta {
        addrs: vec!["x".into()],
        ..NodeMeta::default()
    });
    top.leave();
    assert_eq!(top.incarnation(), u64::MAX);
    assert_eq!(m.stats().refused.incarnation_jump, 3);
}

#[test]
fn non_admitted_nodes_are_ignored_everywhere() {
    let (mut m, kv, kl) = with_victim();
    let (victim, liar) = (kv.node_id(), kl.node_id());
    let phantom = key(8);
    m.set_admitted(Time::ZERO, Some([victim, liar].into_iter().collect()));
    // A phantom member, relayed or claiming itself.
    assert_eq!(
        m.try_apply(Time::ZERO, liar, alive_of(&phantom, 1)),
        Err(GossipRefused::NotAdmitted)
    );
    assert_eq!(
        m.try_apply(Time::ZERO, phantom.node_id(), alive_of(&phantom, 1)),
        Err(GossipRefused::NotAdmitted)
    );
    assert!(m.member(&phantom.node_id()).is_none());
    // A ping-req to a phantom target is not relayed; messages from it are dropped.
    m.handle_message(
        Time::ZERO,
        liar,
        Probe::PingReq {
            seq: 1,
            target: phantom.node_id(),
        },
    );
    m.handle_message(Time::ZERO, phantom.node_id(), Probe::Ping { seq: 2 });
    m.handle_discovered(Time::ZERO, phantom.node_id());
    while let Some((to, _)) = m.poll_transmit() {
        assert_ne!(to, phantom.node_id());
    }
    // A member dropped from the allowlist leaves the view.
    m.set_admitted(Time::ZERO, Some([liar].into_iter().collect()));
    assert!(m.member(&victim).is_none());
    assert!(m.stats().refused.not_admitted >= 3);
    m.check_invariants().unwrap();
}

#[test]
fn detection_bound_grows_slowly_with_size() {
    let c = MembershipConfig::default();
    assert!(c.detection_bound(4) < c.detection_bound(100));
    assert!(c.suspicion_timeout(1000) > c.suspicion_timeout(10));
}

/// Runs `m`'s timers until it sends a ping; returns its target, seq and time.
fn next_ping(m: &mut Membership) -> (NodeId, u32, Time) {
    for _ in 0..20 {
        let t = m.poll_timeout();
        m.handle_timeout(t);
        let pinged: Vec<(NodeId, u32)> = std::iter::from_fn(|| m.poll_transmit())
            .filter_map(|(to, p)| match p {
                Probe::Ping { seq } => Some((to, seq)),
                _ => None,
            })
            .collect();
        if let Some((to, seq)) = pinged.first() {
            assert_eq!(pinged.len(), 1);
            return (*to, *seq, t);
        }
    }
    panic!("no probe went out");
}

#[test]
fn a_lost_connection_makes_the_peer_the_next_probe_and_nothing_more() {
    let (mut m, kv, kl) = with_victim();
    let (lost, other) = (kv.node_id(), kl.node_id());
    let mut now = Time::ZERO;
    // Whichever the round-robin would pick, a lost link goes first, each time.
    for round in 0..4u32 {
        let target = if round % 2 == 0 { lost } else { other };
        m.link_lost(now, target);
        let (to, seq, t) = next_ping(&mut m);
        assert_eq!(to, target, "round {round}");
        m.handle_message(t, target, Probe::Ack { seq });
        now = t;
        // A lost link alone suspects no one.
        assert_eq!(m.state_of(&target), Some(MemberState::Alive));
    }
    assert_eq!(m.stats().link_hints, 4);
    // Not for strangers, and not twice while pending.
    m.link_lost(now, key(9).node_id());
    m.link_lost(now, lost);
    m.link_lost(now, lost);
    assert_eq!(m.stats().link_hints, 5);
    m.check_invariants().unwrap();
}

/// How long `victim` stays suspect after its probe fails, with or without a
/// refused connection first.
fn suspicion_length(refuse: bool) -> Duration {
    let (mut m, kv, _) = with_victim();
    let victim = kv.node_id();
    m.link_lost(Time::ZERO, victim);
    let (to, _, t) = next_ping(&mut m);
    assert_eq!(to, victim);
    if refuse {
        m.link_refused(t, victim);
    }
    // No ack: suspected at the end of the period, then dead at the deadline.
    let mut suspected = None;
    for _ in 0..200 {
        let t = m.poll_timeout();
        m.handle_timeout(t);
        while m.poll_transmit().is_some() {}
        match m.state_of(&victim) {
            Some(MemberState::Suspect) if suspected.is_none() => suspected = Some(t),
            Some(MemberState::Dead) => {
                return t.saturating_since(suspected.expect("suspected before dead"));
            }
            _ => {}
        }
    }
    panic!("never declared dead");
}

#[test]
fn a_refused_connection_shortens_a_suspicion_to_one_period_and_only_that() {
    let full = suspicion_length(false);
    let short = suspicion_length(true);
    let c = config();
    assert_eq!(full, c.suspicion_timeout(2), "no refusal: the full timeout");
    assert!(
        short <= c.probe_interval && short < full,
        "refused: one period ({short:?}, full {full:?})"
    );
    // A refusal alone suspects no one, and a member that talks again is cleared.
    let (mut m, kv, _) = with_victim();
    let victim = kv.node_id();
    m.link_refused(Time::ZERO, victim);
    assert_eq!(m.state_of(&victim), Some(MemberState::Alive));
    assert_eq!(m.stats().refused_dials, 1);
    let (to, seq, t) = next_ping(&mut m);
    assert_eq!(to, victim, "probed next");
    m.handle_message(t, victim, Probe::Ack { seq });
    assert_eq!(m.state_of(&victim), Some(MemberState::Alive));
    // Strangers and the dead are ignored.
    m.link_refused(t, key(9).node_id());
    assert_eq!(m.stats().refused_dials, 1);
    m.check_invariants().unwrap();
}

#[test]
fn confirmations_shorten_a_suspicion_on_a_log_scale_down_to_the_minimum() {
    let c = MembershipConfig::default();
    let n = 1000;
    let max = c.suspicion_timeout(n);
    let min = c.probe_interval * c.suspicion_min_mult;
    let at: Vec<Duration> = (0..6)
        .map(|k| c.suspicion_timeout_confirmed(n, k))
        .collect();
    assert_eq!(at[0], max, "no confirmation: the full timeout");
    assert!(at[1] < at[0] && at[2] < at[1] && at[3] < at[2], "{at:?}");
    assert_eq!(at[3], min, "all three: the minimum");
    assert_eq!(at[5], min, "more count as three");
    // The first confirmation cuts the most (a log scale).
    assert!(at[0] - at[1] > at[2] - at[3], "{at:?}");
    // Off, nothing is shortened; and the minimum never exceeds the full timeout.
    let off = MembershipConfig {
        suspicion_confirmations: 0,
        ..c.clone()
    };
    assert_eq!(off.suspicion_timeout_confirmed(n, 3), max);
    let long_min = MembershipConfig {
        suspicion_min_mult: 100,
        ..c.clone()
    };
    assert_eq!(long_min.suspicion_timeout_confirmed(n, 3), max);
    // The fastest detection is the probe period plus the shortest suspicion.
    assert_eq!(c.detection_min(), c.probe_interval + min);
    assert_eq!(
        off.detection_min(),
        off.probe_interval + off.suspicion_timeout(1)
    );
}

/// `m` knows `victim` alive at incarnation 5 and four other members; returns the
/// victim's key and the others' ids.
fn with_victim_and_witnesses() -> (Membership, NodeKey, Vec<NodeId>) {
    let (mut m, kv, kl) = with_victim();
    let mut others = vec![kl.node_id()];
    for i in 3..6 {
        let k = key(i);
        assert!(m.apply(Time::ZERO, k.node_id(), alive_of(&k, 1)));
        others.push(k.node_id());
    }
    (m, kv, others)
}

/// Drives `m` with no ack from anyone until `victim` is dead, after `accuse`
/// has run once the victim is suspected; returns how long the suspicion lasted.
fn suspicion_with(
    m: &mut Membership,
    victim: NodeId,
    mut accuse: impl FnMut(&mut Membership, Time),
) -> Duration {
    m.link_lost(Time::ZERO, victim);
    let (to, _, _) = next_ping(m);
    assert_eq!(to, victim);
    let mut suspected = None;
    for _ in 0..400 {
        let t = m.poll_timeout();
        m.handle_timeout(t);
        while m.poll_transmit().is_some() {}
        match m.state_of(&victim) {
            Some(MemberState::Suspect) if suspected.is_none() => {
                suspected = Some(t);
                accuse(m, t);
            }
            Some(MemberState::Dead) => {
                m.check_invariants().unwrap();
                return t.saturating_since(suspected.expect("suspected before dead"));
            }
            _ => {}
        }
        m.check_invariants().unwrap();
    }
    panic!("never declared dead");
}

#[test]
fn other_members_suspicions_shorten_this_nodes_own() {
    let c = config();
    let n = 6;
    // Alone: the full timeout.
    let (mut m, kv, _) = with_victim_and_witnesses();
    let victim = kv.node_id();
    let alone = suspicion_with(&mut m, victim, |_, _| {});
    assert_eq!(alone, c.suspicion_timeout(n));
    // One other suspects it too: shorter.
    let (mut m, _, others) = with_victim_and_witnesses();
    let one = suspicion_with(&mut m, victim, |m, t| {
        let _ = m.apply(t, others[0], hearsay(victim, 5, MemberState::Suspect));
    });
    assert_eq!(one, c.suspicion_timeout_confirmed(n, 1));
    assert!(one < alone);
    // The same accuser three times still counts once.
    let (mut m, _, others) = with_victim_and_witnesses();
    let same = suspicion_with(&mut m, victim, |m, t| {
        for state in [
            MemberState::Suspect,
            MemberState::Dead,
            MemberState::Suspect,
        ] {
            let _ = m.apply(t, others[0], hearsay(victim, 5, state));
        }
    });
    assert_eq!(same, one);
    assert_eq!(m.stats().accusations, 1);
    // Three distinct ones (a death declaration counts too): the minimum.
    let (mut m, _, others) = with_victim_and_witnesses();
    let three = suspicion_with(&mut m, victim, |m, t| {
        let _ = m.apply(t, others[0], hearsay(victim, 5, MemberState::Suspect));
        let _ = m.apply(t, others[1], hearsay(victim, 5, MemberState::Dead));
        let _ = m.apply(t, others[2], hearsay(victim, 5, MemberState::Suspect));
    });
    assert_eq!(three, c.probe_interval * c.suspicion_min_mult);
    // Accusations heard before this node's own probe failed count as well; ones
    // about an older incarnation, or from the victim itself, do not.
    let (mut m, _, others) = with_victim_and_witnesses();
    for &o in &others[..2] {
        let _ = m.apply(Time::ZERO, o, hearsay(victim, 5, MemberState::Suspect));
    }
    let _ = m.apply(
        Time::ZERO,
        others[2],
        hearsay(victim, 4, MemberState::Suspect),
    );
    let _ = m.apply(Time::ZERO, victim, hearsay(victim, 5, MemberState::Suspect));
    assert_eq!(
        m.state_of(&victim),
        Some(MemberState::Alive),
        "hearsay alone"
    );
    let early = suspicion_with(&mut m, victim, |_, _| {});
    // (The clock counts whole microseconds.)
    let want = c.suspicion_timeout_confirmed(n, 2);
    assert!(
        early.abs_diff(want) < Duration::from_micros(1),
        "{early:?} vs {want:?}"
    );
}

#[test]
fn accusations_never_kill_a_member_that_answers_and_die_with_its_incarnation() {
    let (mut m, kv, others) = with_victim_and_witnesses();
    let victim = kv.node_id();
    // Every other member accuses the victim, over and over: it answers every
    // probe, so it is never even suspected here.
    let mut now = Time::ZERO;
    for _ in 0..100 {
        for &o in &others {
            let _ = m.apply(now, o, hearsay(victim, 5, MemberState::Dead));
        }
        now = m.poll_timeout();
        m.handle_timeout(now);
        while let Some((to, p)) = m.poll_transmit() {
            if let Probe::Ping { seq } = p {
                m.handle_message(now, to, Probe::Ack { seq });
            }
        }
        m.check_invariants().unwrap();
    }
    assert_eq!(m.state_of(&victim), Some(MemberState::Alive));
    assert_eq!(m.stats().suspicions, 0);
    // The victim's next incarnation clears what was said of the last one: a
    // suspicion of it now lasts the full timeout.
    assert!(m.apply(now, victim, alive_of(&kv, 6)));
    m.check_invariants().unwrap();
    let fresh = suspicion_with(&mut m, victim, |_, _| {});
    assert_eq!(fresh, config().suspicion_timeout(6));
}

#[test]
fn a_crash_is_detected_sooner_when_others_confirm_it() {
    // Nine nodes, node 4 crashes: the time until the first node declares it dead,
    // with confirmations counted and without.
    let first_death = |config: MembershipConfig| {
        let mut net = Net::with_config(9, config);
        net.until(Duration::from_secs(5), Net::converged_alive);
        net.crashed.insert(4);
        net.events.clear();
        let dead = net.ids[4];
        let took = net.until(Duration::from_secs(30), |n| {
            n.events
                .iter()
                .any(|(_, e)| *e == MembershipEvent::Died(dead))
        });
        let all = net.until(Duration::from_secs(30), |n| n.all_see(4, MemberState::Dead));
        (took, all)
    };
    let (dogpile, _) = first_death(config());
    let (alone, _) = first_death(MembershipConfig {
        suspicion_confirmations: 0,
        ..config()
    });
    let c = config();
    assert!(
        dogpile < alone,
        "with confirmations {dogpile:?}, without {alone:?}"
    );
    assert!(
        alone >= c.probe_interval + c.suspicion_timeout(9),
        "without: {alone:?}"
    );
}

#[test]
fn signed_accusations_are_relayed_and_count_for_their_signer_once() {
    let (mut m, kv, others) = with_victim_and_witnesses();
    let victim = kv.node_id();
    let (b, c, d) = (key(3), others[2], others[3]);
    assert_eq!(b.node_id(), others[1]);
    let signed = MemberUpdate::accusation(victim, 5, MemberState::Suspect, &b);
    assert_eq!(
        signed.verify_accusation_with(&SigCheck::Direct),
        Some(b.node_id())
    );
    // Forged: B's id with C's signature; B's accusation with its incarnation or
    // state changed; a signature of the wrong length.
    let mut forged = MemberUpdate::accusation(victim, 5, MemberState::Suspect, &key(4));
    let mut bytes = forged.sig.to_vec();
    bytes[..32].copy_from_slice(&b.node_id().to_bytes());
    forged.sig = bytes.into();
    let mut bumped = signed.clone();
    bumped.incarnation = 6;
    let mut promoted = signed.clone();
    promoted.state = MemberState::Dead;
    let mut short = signed.clone();
    short.sig = short.sig.slice(..40);
    for bad in [forged, bumped, promoted, short] {
        assert_eq!(m.try_apply(Time::ZERO, c, bad), Err(GossipRefused::Forged));
    }
    assert_eq!(m.stats().accusations, 0, "nothing forged is counted");
    while !m.take_gossip(Time::ZERO, 8).is_empty() {}
    // Relayed by C, it counts for B (not C), and this node relays it on.
    assert_eq!(m.try_apply(Time::ZERO, c, signed.clone()), Ok(false));
    assert_eq!(m.stats().accusations, 1);
    let relayed: Vec<Statement> = m.take_gossip(Time::ZERO, 8);
    assert!(relayed.iter().any(|u| **u == signed), "{relayed:?}");
    // Relayed again by D, or sent by B itself: still one.
    assert_eq!(m.try_apply(Time::ZERO, d, signed.clone()), Ok(false));
    assert_eq!(
        m.try_apply(Time::ZERO, b.node_id(), signed.clone()),
        Ok(false)
    );
    assert_eq!(m.stats().accusations, 1);
    // C's own, unsigned, counts for C.
    let _ = m.apply(Time::ZERO, c, hearsay(victim, 5, MemberState::Suspect));
    assert_eq!(m.stats().accusations, 2);
    assert_eq!(
        m.state_of(&victim),
        Some(MemberState::Alive),
        "still only hearsay"
    );
    m.check_invariants().unwrap();
    // This node's own verdict goes out signed as its accusation.
    let mine = m.me();
    let n = 6;
    let c_conf = config();
    let took = suspicion_with(&mut m, victim, |_, _| {});
    assert!(took <= c_conf.suspicion_timeout_confirmed(n, 2), "{took:?}");
    let out: Vec<Statement> = std::iter::from_fn(|| {
        let g = m.take_gossip(Time::ZERO, 8);
        (!g.is_empty()).then_some(g)
    })
    .flatten()
    .collect();
    let own = out
        .iter()
        .find(|u| u.id == victim && u.state == MemberState::Dead)
        .expect("the death is gossiped");
    assert_eq!(own.verify_accusation_with(&SigCheck::Direct), Some(mine));
}

#[test]
fn members_that_join_together_are_probed_in_a_random_order_each_once_a_round() {
    let keys: Vec<NodeKey> = (1..=40).map(key).collect();
    let joined: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
    let first_round = |seed: u64| {
        let mut m = Membership::new(key(0), 1, NodeMeta::default(), config(), seed, Time::ZERO);
        for k in &keys {
            assert!(m.apply(Time::ZERO, k.node_id(), alive_of(k, 1)));
        }
        let mut order = Vec::new();
        for _ in 0..keys.len() {
            let (to, seq, t) = next_ping(&mut m);
            m.handle_message(t, to, Probe::Ack { seq });
            order.push(to);
        }
        m.check_invariants().unwrap();
        order
    };
    let (a, b) = (first_round(1), first_round(2));
    for order in [&a, &b] {
        let probed: BTreeSet<NodeId> = order.iter().copied().collect();
        assert_eq!(probed.len(), joined.len(), "each member once in the round");
        assert_ne!(*order, joined, "not in join order");
    }
    assert_ne!(a, b, "two nodes do not probe in step");
}

#[test]
fn a_new_suspicion_is_sent_straight_to_the_members_already_suspecting() {
    let (mut m, kv, others) = with_victim_and_witnesses();
    let victim = kv.node_id();
    let b = key(3);
    let _ = m.apply(
        Time::ZERO,
        others[0],
        hearsay(victim, 5, MemberState::Suspect),
    );
    let signed = MemberUpdate::accusation(victim, 5, MemberState::Suspect, &b);
    let _ = m.apply(Time::ZERO, others[2], signed);
    assert_eq!(m.stats().accusations, 2);
    let (to, _, _) = next_ping(&mut m);
    assert_eq!(to, victim, "hinted");
    // No ack: at the end of the period it suspects the victim and tells both
    // accusers (not the relay) at once.
    let mut told = BTreeSet::new();
    while m.state_of(&victim) != Some(MemberState::Suspect) {
        let t = m.poll_timeout();
        m.handle_timeout(t);
        while let Some((to, p)) = m.poll_transmit() {
            if p == Probe::Gossip {
                told.insert(to);
            }
        }
    }
    assert_eq!(told, [others[0], b.node_id()].into_iter().collect());
}

/// Drives `m` for `periods` probe periods: each ping is answered per `ack`, and
/// each ping-req's helper nacks when `nack`. Returns the probe periods seen
/// (the time between successive pings).
fn drive_probes(m: &mut Membership, periods: usize, ack: bool, nack: bool) -> Vec<Duration> {
    let mut last = None;
    let mut gaps = Vec::new();
    let mut pings = 0;
    let mut guard = 0;
    while pings < periods {
        guard += 1;
        assert!(guard < 10_000, "no progress");
        let now = m.poll_timeout();
        m.handle_timeout(now);
        while let Some((to, p)) = m.poll_transmit() {
            match p {
                Probe::Ping { seq } => {
                    pings += 1;
                    if let Some(prev) = last {
                        gaps.push(now.saturating_since(prev));
                    }
                    last = Some(now);
                    if ack {
                        m.handle_message(now, to, Probe::Ack { seq });
                    }
                }
                Probe::PingReq { seq, .. } if nack => {
                    m.handle_message(now, to, Probe::Nack { seq });
                }
                _ => {}
            }
        }
        m.check_invariants().unwrap();
    }
    gaps
}

/// A node that knows `n` alive members (enough that failed probes do not run
/// out of members to probe).
fn with_members(n: u64) -> Membership {
    let mut m = Membership::new(key(0), 1, NodeMeta::default(), config(), 1, Time::ZERO);
    for i in 1..=n {
        let k = key(i);
        assert!(m.apply(Time::ZERO, k.node_id(), alive_of(&k, 1)));
    }
    m
}

#[test]
fn unexplained_failed_probes_slow_this_node_down_and_acks_bring_it_back() {
    let c = config();
    let mut m = with_members(60);
    // Nobody answers and no helper nacks: this node may be the one cut off.
    let gaps = drive_probes(&mut m, 12, false, false);
    assert_eq!(m.local_health(), c.health_max - 1, "at the cap");
    assert!(m.stats().health_raised > 0);
    let longest = gaps.iter().max().copied().unwrap_or_default();
    assert_eq!(longest, c.probe_interval * c.health_max, "{gaps:?}");
    // Answers come back: each acked probe lowers the score by one (the probe in
    // flight fails first, at the cap already).
    let before = m.local_health();
    drive_probes(&mut m, 3, true, false);
    assert_eq!(
        m.local_health(),
        before - 2,
        "three pings, two acked periods ended"
    );
    drive_probes(&mut m, 20, true, false);
    assert_eq!(m.local_health(), 0);
    let gaps = drive_probes(&mut m, 3, true, false);
    assert!(gaps.iter().all(|g| *g == c.probe_interval), "{gaps:?}");
}

#[test]
fn failed_probes_the_helpers_nacked_cost_no_health() {
    // Every target is silent, but every helper says so: the targets are at
    // fault, not this node.
    let mut m = with_members(20);
    drive_probes(&mut m, 4, false, true);
    assert_eq!(m.local_health(), 0);
    assert_eq!(m.stats().health_raised, 0);
    assert!(m.stats().nacks_received > 0);
    // A nack from someone not asked, or for another probe, counts for nothing.
    let (mut m, _, _) = with_victim_and_witnesses();
    m.handle_message(Time::ZERO, key(9).node_id(), Probe::Nack { seq: 1 });
    assert_eq!(m.stats().nacks_received, 0);
    // Off (`health_max` 1): never raised.
    let mut off = Membership::new(
        key(0),
        1,
        NodeMeta::default(),
        MembershipConfig {
            health_max: 1,
            ..config()
        },
        1,
        Time::ZERO,
    );
    for i in 1..=20 {
        let k = key(i);
        assert!(off.apply(Time::ZERO, k.node_id(), alive_of(&k, 1)));
    }
    drive_probes(&mut off, 6, false, false);
    assert_eq!(off.local_health(), 0);
}

#[test]
fn a_helper_nacks_a_silent_target_and_not_one_that_answers() {
    let (mut m, kv, kl) = with_victim();
    let (target, origin) = (kv.node_id(), kl.node_id());
    let c = config();
    for answers in [false, true] {
        let now = Time::ZERO + c.probe_interval * 10 * (1 + u32::from(answers));
        m.handle_message(now, origin, Probe::PingReq { seq: 77, target });
        let mine = std::iter::from_fn(|| m.poll_transmit())
            .find_map(|(to, p)| match p {
                Probe::Ping { seq } if to == target => Some(seq),
                _ => None,
            })
            .expect("the helper pings the target");
        if answers {
            m.handle_message(now, target, Probe::Ack { seq: mine });
        }
        let mut nacked = false;
        let mut acked = false;
        let end = now + c.probe_interval;
        let mut t = now;
        while t < end {
            t = m.poll_timeout().min(end).max(t + Duration::from_millis(1));
            m.handle_timeout(t);
            while let Some((to, p)) = m.poll_transmit() {
                match p {
                    Probe::Nack { seq: 77 } if to == origin => {
                        assert!(
                            t.saturating_since(now) < c.probe_interval - c.probe_timeout,
                            "in time for the origin"
                        );
                        nacked = true;
                    }
                    Probe::Ack { seq: 77 } if to == origin => acked = true,
                    _ => {}
                }
            }
        }
        assert_eq!(nacked, !answers, "answers: {answers}");
        assert_eq!(acked, answers, "the target's ack is relayed instead");
    }
    assert_eq!(m.stats().nacks_sent, 1);
}

#[test]
fn refuting_a_suspicion_of_itself_costs_this_node_health() {
    let (mut m, _, kl) = with_victim();
    let me = m.me();
    assert!(m.apply(
        Time::ZERO,
        kl.node_id(),
        hearsay(me, 1, MemberState::Suspect)
    ));
    assert_eq!(m.local_health(), 1);
    m.check_invariants().unwrap();
}

/// The syncs `m` has queued: to whom, and how many statements each carries.
fn syncs_out(m: &mut Membership) -> Vec<(NodeId, usize)> {
    std::iter::from_fn(|| m.poll_transmit())
        .filter_map(|(to, p)| match p {
            Probe::Sync { members } => Some((to, members.len())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_joiner_handed_its_seeds_at_once_asks_one_then_those_its_answer_lacked() {
    let seeds: Vec<NodeKey> = (1..4).map(key).collect();
    let ids: Vec<NodeId> = seeds.iter().map(NodeKey::node_id).collect();
    let fresh = || Membership::new(key(0), 1, NodeMeta::default(), config(), 1, Time::ZERO);
    let mut m = fresh();
    for id in &ids {
        m.handle_discovered(Time::ZERO, *id);
    }
    let first = syncs_out(&mut m);
    assert_eq!(first.len(), 1, "one view asked for, not three: {first:?}");
    let asked = first[0].0;
    // The answer brings one other seed; the next tick syncs only the third.
    let brought = ids.iter().copied().find(|id| *id != asked).unwrap();
    let lacking = ids
        .iter()
        .copied()
        .find(|id| *id != asked && *id != brought)
        .unwrap();
    let statement = |id: NodeId| {
        Arc::new(alive_of(
            &seeds[ids.iter().position(|x| *x == id).unwrap()],
            1,
        ))
    };
    m.handle_message(
        Time::ZERO,
        asked,
        Probe::SyncReply {
            members: vec![statement(asked), statement(brought)],
        },
    );
    let t = m.poll_timeout();
    m.handle_timeout(t);
    assert_eq!(syncs_out(&mut m), vec![(lacking, 3)]);
    m.check_invariants().unwrap();

    // Unanswered: at the next tick the other seeds are asked, and while the node
    // stays alone, a seed again each period.
    let mut m = fresh();
    for id in &ids {
        m.handle_discovered(Time::ZERO, *id);
    }
    let mut asked = BTreeSet::new();
    let mut now = Time::ZERO;
    while now < Time::ZERO + config().probe_interval * 5 {
        for (to, _) in syncs_out(&mut m) {
            asked.insert(to);
        }
        now = m.poll_timeout();
        m.handle_timeout(now);
    }
    assert_eq!(asked.len(), 3, "every seed tried: {asked:?}");
    // Not alone, a newly connected peer that is not a member gets the full view.
    let k = &seeds[0];
    assert!(m.apply(now, k.node_id(), alive_of(k, 1)));
    while m.poll_transmit().is_some() {}
    let newcomer = key(7).node_id();
    m.handle_discovered(now, newcomer);
    assert_eq!(syncs_out(&mut m), vec![(newcomer, 2)]);
    m.check_invariants().unwrap();
}

#[test]
fn a_stranger_is_asked_for_its_view_and_a_member_back_from_the_dead_gets_ours() {
    let (mut m, kv, _) = with_victim();
    let stranger = key(7);
    // A ping from a stranger: its view is asked for with this node's statement
    // alone, once per probe interval.
    m.handle_message(Time::ZERO, stranger.node_id(), Probe::Ping { seq: 1 });
    m.handle_message(Time::ZERO, stranger.node_id(), Probe::Ping { seq: 2 });
    assert_eq!(syncs_out(&mut m), vec![(stranger.node_id(), 1)]);
    assert_eq!(m.stats().pulls, 1);
    // Its answer brings it and what it knows.
    let other = key(8);
    m.handle_message(
        Time::ZERO,
        stranger.node_id(),
        Probe::SyncReply {
            members: vec![
                Arc::new(alive_of(&stranger, 1)),
                Arc::new(alive_of(&other, 1)),
            ],
        },
    );
    assert_eq!(m.state_of(&stranger.node_id()), Some(MemberState::Alive));
    assert_eq!(m.state_of(&other.node_id()), Some(MemberState::Alive));
    // A member this node holds dead that talks again gets the full view (the
    // two may be the sides of a healed partition).
    let victim = kv.node_id();
    suspicion_with(&mut m, victim, |_, _| {});
    assert_eq!(m.state_of(&victim), Some(MemberState::Dead));
    while m.poll_transmit().is_some() {}
    let t = m.poll_timeout();
    m.handle_message(t, victim, Probe::Ping { seq: 3 });
    let out = syncs_out(&mut m);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, victim);
    assert!(out[0].1 >= 4, "the full view: {out:?}");
    assert_eq!(m.stats().pulls, 1);
    m.check_invariants().unwrap();
}

#[test]
fn gossip_older_than_its_age_limit_is_dropped_unsent_and_counted() {
    let (mut m, kv, kl) = with_victim();
    let n = m.live_count();
    let limit = config().gossip_max_age(n);
    assert_eq!(
        limit,
        config().probe_interval * 4 * 2,
        "4 x ceil(log2(3)) periods"
    );
    // The two statements were queued at 0; this node's own announcement was
    // queued without a time and ages from its first sending.
    let late = Time::ZERO + limit + Duration::from_millis(1);
    let sent = m.take_gossip(late, 8);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].id, m.me());
    assert_eq!(m.stats().gossip_expired, 2);
    // Within the limit, statements are sent.
    let (mut fresh, _, _) = with_victim();
    let sent = fresh.take_gossip(Time::ZERO + limit, 8);
    let ids: BTreeSet<NodeId> = sent.iter().map(|s| s.id).collect();
    assert!(
        ids.contains(&kv.node_id()) && ids.contains(&kl.node_id()),
        "{sent:?}"
    );
    assert_eq!(fresh.stats().gossip_expired, 0);
}

/// Runs `m` alone from `from` to `to`, every probe answered by its target at once;
/// returns when it offered periodic syncs.
fn offers_between(m: &mut Membership, from: Time, to: Time) -> Vec<Time> {
    let mut offers = Vec::new();
    let mut now = from;
    while now < to {
        m.handle_timeout(now);
        while let Some((peer, probe)) = m.poll_transmit() {
            match probe {
                Probe::Ping { seq } => m.handle_message(now, peer, Probe::Ack { seq }),
                Probe::SyncOffer { .. } => offers.push(now),
                _ => {}
            }
        }
        now = now + TICK;
    }
    offers
}

#[test]
fn after_views_were_exchanged_the_next_sync_comes_at_the_base_interval() {
    // 40 members: the period stretched for the cluster's size is twice the base.
    let keys: Vec<NodeKey> = (1..=40).map(key).collect();
    let mut m = Membership::new(key(0), 1, NodeMeta::default(), config(), 1, Time::ZERO);
    for k in &keys {
        assert!(m.apply(Time::ZERO, k.node_id(), alive_of(k, 1)));
    }
    let base = config().sync_interval;
    assert_eq!(m.config().sync_period(m.live_count()), base * 2);
    let at = |secs: u64| Time::ZERO + Duration::from_secs(secs);

    // Views agree (no answer but the digests'): offers come every stretched period.
    let offers = offers_between(&mut m, Time::ZERO, at(11));
    assert_eq!(offers, vec![at(2), at(6), at(10)], "{offers:?}");

    // A full exchange at 11 s (a partner's view differed): the next offer is due
    // within the base interval, at 13 s rather than 14 s; with no exchange after
    // it, the one after comes a stretched period later.
    let partner = keys[0].node_id();
    m.handle_message(
        at(11),
        partner,
        Probe::SyncReply {
            members: vec![Arc::new(alive_of(&keys[0], 1))],
        },
    );
    let offers = offers_between(&mut m, at(11), at(18));
    assert_eq!(offers, vec![at(13), at(17)], "{offers:?}");

    // A full sync pushed by a peer counts the same: due at 20 s, not 21 s.
    m.handle_message(
        at(18),
        partner,
        Probe::Sync {
            members: vec![Arc::new(alive_of(&keys[0], 1))],
        },
    );
    let offers = offers_between(&mut m, at(18), at(22));
    assert_eq!(offers, vec![at(20)], "{offers:?}");
    m.check_invariants().unwrap();
}

#[test]
fn members_that_join_mid_round_are_probed_within_two_rounds() {
    let probe = |m: &mut Membership| {
        let (to, seq, t) = next_ping(m);
        m.handle_message(t, to, Probe::Ack { seq });
        to
    };
    let join = |m: &mut Membership, keys: &[NodeKey]| {
        let now = m.poll_timeout();
        for k in keys {
            assert!(m.apply(now, k.node_id(), alive_of(k, 1)));
        }
    };
    for seed in 1..=20 {
        // 40 members (a round of 64 places), ten more join halfway through it.
        let (keys, late): (Vec<NodeKey>, Vec<NodeKey>) =
            ((1..=40).map(key).collect(), (41..=50).map(key).collect());
        let old: BTreeSet<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        let mut m = Membership::new(key(0), 1, NodeMeta::default(), config(), seed, Time::ZERO);
        join(&mut m, &keys);
        let mut seen: Vec<NodeId> = (0..20).map(|_| probe(&mut m)).collect();
        join(&mut m, &late);
        // Until every old member was probed, none twice: the round goes on.
        while !old.iter().all(|id| seen.contains(id)) {
            let to = probe(&mut m);
            assert!(!(old.contains(&to) && seen.contains(&to)), "seed {seed}");
            seen.push(to);
        }
        // The late ones by the end of the next round: at most the first round's
        // 64 places, then 50 probes.
        while !late.iter().all(|k| seen.contains(&k.node_id())) {
            seen.push(probe(&mut m));
            assert!(seen.len() <= 64 + 50, "seed {seed}: late members unprobed");
        }
        m.check_invariants().unwrap();
    }
    // A table that outgrows its round's range starts a new round at once.
    let mut m = Membership::new(key(0), 1, NodeMeta::default(), config(), 1, Time::ZERO);
    let (few, many): (Vec<NodeKey>, Vec<NodeKey>) =
        ((1..=3).map(key).collect(), (4..=30).map(key).collect());
    join(&mut m, &few);
    let _ = probe(&mut m);
    join(&mut m, &many);
    let next: BTreeSet<NodeId> = (0..30).map(|_| probe(&mut m)).collect();
    assert_eq!(next.len(), 30, "a new round: every member once");
}

#[test]
fn statements_without_meta_are_refused_and_a_leaver_keeps_its_meta() {
    let mut m = Membership::new(key(0), 1, NodeMeta::default(), config(), 1, Time::ZERO);
    let k = key(1);
    let meta = NodeMeta {
        addrs: vec!["/ip4/10.0.0.1/tcp/7000".into()],
        ..NodeMeta::default()
    };
    let with_meta = |state, inc, meta: Option<NodeMeta>| {
        MemberUpdate {
            id: k.node_id(),
            incarnation: inc,
            state,
            meta: meta.map(Arc::new),
            sig: Default::default(),
        }
        .sign(&k)
    };
    // Signed by the member itself, but without its meta: new or known, refused.
    assert_eq!(
        m.try_apply(
            Time::ZERO,
            k.node_id(),
            with_meta(MemberState::Alive, 1, None)
        ),
        Err(GossipRefused::NoMeta)
    );
    assert!(m.member(&k.node_id()).is_none());
    let alive = with_meta(MemberState::Alive, 1, Some(meta.clone()));
    assert_eq!(m.try_apply(Time::ZERO, k.node_id(), alive), Ok(true));
    for state in [MemberState::Alive, MemberState::Left] {
        assert_eq!(
            m.try_apply(Time::ZERO, k.node_id(), with_meta(state, 2, None)),
            Err(GossipRefused::NoMeta)
        );
    }
    assert_eq!(m.stats().refused.no_meta, 3);
    let known = m.member(&k.node_id()).unwrap();
    assert_eq!((known.incarnation(), known.meta()), (1, &meta));
    // A member that leaves says so with its meta, which stays readable.
    let mut leaver = Membership::new(k.clone(), 1, meta.clone(), config(), 2, Time::ZERO);
    leaver.leave();
    let left = leaver.self_statement().clone();
    assert_eq!(left.state, MemberState::Left);
    assert_eq!(
        m.try_apply(Time::from_millis(2_500), k.node_id(), left),
        Ok(true)
    );
    let gone = m.member(&k.node_id()).unwrap();
    assert_eq!((gone.state, gone.meta()), (MemberState::Left, &meta));
    assert_eq!(gone.since(), Time::from_millis(2_000), "to the second");
    m.check_invariants().unwrap();
}

#[test]
fn a_member_entry_is_a_statement_and_8_bytes() {
    // 100 million of these in a simulated world of 10,000 full views: a field
    // added here costs 0.8 GB there (docs/benchmarks.md).
    assert_eq!(std::mem::size_of::<Member>(), 16);
}

/// Nodes cut off from their bootstrap peer from the start join each other and
/// form a view of their own; neither side knows the other, even as a dead
/// member to reach it through. Once the cut heals, the island's nodes sync with
/// the seed they never knew (every sync period), and the views merge. Before,
/// a node synced its seeds again only while alone, and the two views stayed
/// apart for good (the simulator's `faulty-sharded.toml` seed 125, where a
/// partition at start cut nodes 8 and 17 off).
#[test]
fn an_island_formed_at_start_finds_its_seed_once_the_cut_heals() {
    let mut net = Net::new(6);
    let (main, island) = ([0, 1, 2, 3], [4, 5]);
    net.partition(&main, &island);
    let id4 = net.ids[4];
    net.nodes[5].handle_discovered(Time::ZERO, id4);
    net.run(Duration::from_secs(10));
    assert_eq!(net.view(5, 4), Some(MemberState::Alive));
    assert_eq!(net.view(4, 5), Some(MemberState::Alive));
    for m in main {
        for i in island {
            assert_eq!(net.view(m, i), None, "the main view never saw the island");
            assert_eq!(net.view(i, m), None, "nor the island the main view");
        }
    }
    net.cut.clear();
    net.until(Duration::from_secs(3) * 3, Net::converged_alive);
    assert!(net.nodes[4].stats().seeds_resynced > 0);
    // Known, the seed is not synced out of turn any more.
    let before: u64 = net.nodes.iter().map(|n| n.stats().seeds_resynced).sum();
    net.run(Duration::from_secs(10));
    let after: u64 = net.nodes.iter().map(|n| n.stats().seeds_resynced).sum();
    assert_eq!(before, after);
}
