//! Clusters on a hand-driven clock: every frame crosses the real codec, nodes crash
//! by being skipped, and invariants are checked after every step.

use std::collections::{BTreeMap, BTreeSet};

use plexus_actors::rng::DetRng;
use proptest::prelude::*;

use super::*;
use crate::membership::{MemberState, MemberUpdate};
use crate::registry::RegistryEvent;
use crate::wire;
use crate::wire::ControlPacket;

fn config() -> ClusterConfig {
    let mut c = ClusterConfig::default();
    c.membership.probe_interval = Duration::from_millis(100);
    c.membership.probe_timeout = Duration::from_millis(40);
    c.membership.sync_interval = Duration::from_secs(1);
    c
}

/// An ask handed to a receiving node's "actor".
#[derive(Clone, Debug)]
struct AskIn {
    to: usize,
    from: NodeId,
    corr: u64,
    payload: Vec<u8>,
}

/// Node `i`'s key (deterministic).
fn key(i: u64) -> NodeKey {
    let mut seed = [9u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    NodeKey::from_seed(seed)
}

struct Net {
    nodes: Vec<Cluster>,
    ids: Vec<NodeId>,
    now: Time,
    crashed: BTreeSet<usize>,
    delivered: Vec<(usize, NodeId, Vec<u8>)>,
    asks_in: Vec<AskIn>,
    events: Vec<(usize, ClusterEvent)>,
    /// When each answer came, by (asker, corr).
    answered_at: BTreeMap<(usize, u64), Time>,
    /// Drops each frame with probability `loss`, from `rng`.
    loss: f64,
    rng: DetRng,
    /// Strips the claims piggybacked on every control frame but full syncs, as if
    /// all registry gossip were lost.
    no_claim_gossip: bool,
    /// Full syncs (`Sync`, `SyncReply`) delivered.
    full_syncs: u64,
}

impl Net {
    fn new(n: usize) -> Self {
        Self::with(n, config(), |_| NodeMeta::default())
    }

    fn with(n: usize, config: ClusterConfig, meta: impl Fn(usize) -> NodeMeta) -> Self {
        let keys: Vec<NodeKey> = (0..n as u64).map(key).collect();
        let ids: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        let mut nodes: Vec<Cluster> = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| Cluster::new(k, 1, meta(i), config.clone(), i as u64, Time::ZERO))
            .collect();
        for node in nodes.iter_mut().skip(1) {
            node.handle_discovered(Time::ZERO, ids[0]);
        }
        Self {
            nodes,
            ids,
            now: Time::ZERO,
            crashed: BTreeSet::new(),
            delivered: Vec::new(),
            asks_in: Vec::new(),
            events: Vec::new(),
            answered_at: BTreeMap::new(),
            loss: 0.0,
            rng: DetRng::new(0),
            no_claim_gossip: false,
            full_syncs: 0,
        }
    }

    fn index(&self, id: NodeId) -> usize {
        self.ids.iter().position(|x| *x == id).unwrap()
    }

    fn step(&mut self) {
        self.now = self.now + Duration::from_millis(5);
        let now = self.now;
        let mut frames = Vec::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if self.crashed.contains(&i) {
                continue;
            }
            if node.poll_timeout() <= now {
                node.handle_timeout(now);
            }
            while let Some((to, frame)) = node.poll_transmit(now) {
                // Every frame crosses the real codec, as on the wire.
                let bytes = wire::encode_frame(&frame).unwrap();
                frames.push((i, to, bytes));
            }
            node.check_invariants().unwrap();
        }
        for (from, to, bytes) in frames {
            let to = self.index(to);
            if self.crashed.contains(&to) || (self.loss > 0.0 && self.rng.chance(self.loss)) {
                continue;
            }
            let mut frame = wire::decode_frame(&bytes.into(), wire::MESH_FRAME_BYTES_MAX).unwrap();
            if let Frame::Control(packet) = &mut frame {
                let full = matches!(packet.probe, Probe::Sync { .. } | Probe::SyncReply { .. });
                self.full_syncs += u64::from(full);
                if self.no_claim_gossip && !full {
                    packet.claims.clear();
                }
            }
            let from_id = self.ids[from];
            if let Some((seq, body)) = self.nodes[to].handle_frame(now, from_id, frame) {
                match &*body {
                    DataBody::Tell { payload, .. } => {
                        self.delivered.push((to, from_id, payload.to_vec()))
                    }
                    DataBody::Ask { corr, payload, .. } => self.asks_in.push(AskIn {
                        to,
                        from: from_id,
                        corr: *corr,
                        payload: payload.to_vec(),
                    }),
                    DataBody::Reply { .. } => panic!("the core handed out a reply"),
                    DataBody::Chunk { .. } => panic!("the core handed out a chunk"),
                }
                self.nodes[to].complete(now, from_id, seq, Ok(()));
            }
        }
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if !self.crashed.contains(&i) {
                while let Some(event) = node.poll_event() {
                    if let ClusterEvent::Answer(a) = &event {
                        self.answered_at.insert((i, a.corr), now);
                    }
                    self.events.push((i, event));
                }
                node.check_invariants().unwrap();
            }
        }
    }

    fn until(&mut self, limit: Duration, mut cond: impl FnMut(&Self) -> bool) {
        let start = self.now;
        while !cond(self) {
            assert!(
                self.now.saturating_since(start) < limit,
                "not reached within {limit:?}"
            );
            self.step();
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn converge(&mut self) {
        let n = self.nodes.len();
        self.until(Duration::from_secs(3), |net| {
            net.nodes.iter().all(|c| c.membership().live_count() == n)
        });
    }

    /// Answers node `i` received, in order.
    fn answers(&self, i: usize) -> Vec<Answer> {
        self.events
            .iter()
            .filter(|(at, _)| *at == i)
            .filter_map(|(_, e)| match e {
                ClusterEvent::Answer(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    fn ask(&mut self, from: usize, to: usize, payload: &[u8], timeout: Duration) -> u64 {
        let now = self.now;
        let peer = self.ids[to];
        self.nodes[from]
            .ask(now, peer, request(peer, payload), timeout)
            .unwrap()
    }
}

fn request(peer: NodeId, payload: &[u8]) -> AskRequest {
    AskRequest {
        target: ActorId::new(peer, 1),
        message_type: "q".into(),
        payload: bytes::Bytes::copy_from_slice(payload),
        trace: None,
    }
}

#[test]
fn names_resolve_everywhere_and_vanish_with_their_node() {
    let mut net = Net::new(5);
    net.converge();
    let actor = ActorId::new(net.ids[3], 42);
    net.nodes[3].register(net.now, "svc", actor).unwrap();
    net.until(Duration::from_secs(3), |n| {
        n.nodes
            .iter()
            .all(|c| c.lookup("svc").map(|l| l.actor) == Some(actor))
    });
    net.crashed.insert(3);
    let bound = config().membership.detection_bound(5);
    net.until(bound, |n| {
        (0..5).filter(|i| *i != 3).all(|i| {
            n.nodes[i].membership().state_of(&n.ids[3]) == Some(MemberState::Dead)
                && n.nodes[i].lookup("svc").is_none()
        })
    });
    let unbound = net.events.iter().any(|(i, e)| {
        *i == 0 && matches!(e, ClusterEvent::Registry(RegistryEvent::Unbound { .. }))
    });
    assert!(unbound);
}

#[test]
fn a_claim_gossip_missed_reaches_every_node_through_the_registry_digest_of_a_sync_offer() {
    let mut net = Net::new(4);
    net.converge();
    net.run(Duration::from_secs(3));
    // All registry gossip is lost from here on: the claim below can only travel in a
    // full sync, and the members' views are equal, so only the registry digest of a
    // periodic offer can tell that one is needed.
    net.no_claim_gossip = true;
    net.full_syncs = 0;
    let actor = ActorId::new(net.ids[2], 7);
    net.nodes[2].register(net.now, "lonely", actor).unwrap();
    let digests: BTreeSet<[u8; 32]> = net
        .nodes
        .iter()
        .map(|c| c.membership().view_digest())
        .collect();
    assert_eq!(digests.len(), 1, "the views agree");
    net.until(Duration::from_secs(20), |n| {
        n.nodes
            .iter()
            .all(|c| c.lookup("lonely").map(|l| l.actor) == Some(actor))
    });
    assert!(net.full_syncs > 0, "full syncs carried the claim");
    // Once the registries agree again, the offers find nothing to exchange.
    net.run(Duration::from_secs(2));
    net.full_syncs = 0;
    net.run(Duration::from_secs(5));
    assert_eq!(net.full_syncs, 0);
}

#[test]
fn data_flows_in_order_between_members() {
    let mut net = Net::new(3);
    net.converge();
    let target = ActorId::new(net.ids[2], 1);
    for i in 0..50u8 {
        let body = Arc::new(DataBody::Tell {
            target,
            message_type: "t".into(),
            payload: vec![i].into(),
            trace: None,
        });
        net.nodes[0].send(net.now, net.ids[2], body).unwrap();
    }
    net.until(Duration::from_secs(2), |n| n.delivered.len() == 50);
    let got: Vec<u8> = net.delivered.iter().map(|(_, _, p)| p[0]).collect();
    assert_eq!(got, (0..50).collect::<Vec<u8>>());
    net.until(Duration::from_secs(1), |n| {
        n.nodes[0].delivery().in_flight(&n.ids[2]) == 0
    });
}

/// A tell twice the frame bound crosses the real codec (every frame decoded with
/// the frame bound) as chunks, joined intact and in order with the small tells
/// around it; an ask over the mesh's own bound is refused with the request handed
/// back, and so is a tell.
#[test]
fn a_body_over_the_frame_bound_crosses_in_chunks() {
    let mut net = Net::new(2);
    net.converge();
    let target = ActorId::new(net.ids[1], 1);
    let tell = |payload: Vec<u8>| {
        Arc::new(DataBody::Tell {
            target,
            message_type: "t".into(),
            payload: payload.into(),
            trace: None,
        })
    };
    let big: Vec<u8> = (0..2 * wire::MESH_FRAME_BYTES_MAX)
        .map(|i| (i % 251) as u8)
        .collect();
    net.nodes[0]
        .send(net.now, net.ids[1], tell(vec![1]))
        .unwrap();
    net.nodes[0]
        .send(net.now, net.ids[1], tell(big.clone()))
        .unwrap();
    net.nodes[0]
        .send(net.now, net.ids[1], tell(vec![2]))
        .unwrap();
    net.until(Duration::from_secs(2), |n| n.delivered.len() == 3);
    let got: Vec<&Vec<u8>> = net.delivered.iter().map(|(_, _, p)| p).collect();
    assert_eq!(got, vec![&vec![1], &big, &vec![2]]);
    let stats = net.nodes[0].delivery().stats();
    assert_eq!(stats.chunked_sent, 1);
    assert!(
        stats.frames_sent >= 2 + 5,
        "16 MiB in 4 MiB chunks: {stats:?}"
    );
    assert_eq!(net.nodes[1].delivery().stats().chunked_received, 1);
    net.until(Duration::from_secs(1), |n| {
        n.nodes[0].delivery().in_flight(&n.ids[1]) == 0
    });
    let max = net.nodes[0].delivery().config().message_bytes_max;
    let peer = net.ids[1];
    match net.nodes[0].ask(
        net.now,
        peer,
        request(peer, &vec![0; max]),
        Duration::from_secs(1),
    ) {
        Err(e @ AskRefused::TooLarge(_)) => assert_eq!(e.into_request().payload.len(), max),
        other => panic!("{other:?}"),
    }
    assert!(
        net.nodes[0]
            .send(net.now, peer, tell(vec![0; max]))
            .is_err()
    );
    assert_eq!(net.nodes[0].delivery().stats().too_large, 1);
    assert_eq!(net.nodes[0].delivery().in_flight(&peer), 0);
}

#[test]
fn send_takes_only_tells() {
    let mut net = Net::new(2);
    let reply = Arc::new(DataBody::Reply {
        corr: 1,
        result: Ok(vec![]),
    });
    let back = net.nodes[0].send(Time::ZERO, net.ids[1], reply.clone());
    assert_eq!(back, Err(reply), "replies go through `reply`");
    assert_eq!(net.nodes[0].delivery().in_flight(&net.ids[1]), 0);
}

/// A reply answers an ask only when it comes from the peer that was asked: another
/// member naming the same number is ignored, and so is a second reply.
#[test]
fn an_ask_is_answered_once_and_only_by_the_peer_asked() {
    let mut net = Net::new(3);
    net.converge();
    let corr = net.ask(0, 1, b"question", Duration::from_secs(5));
    net.until(Duration::from_secs(1), |n| !n.asks_in.is_empty());
    let ask = net.asks_in[0].clone();
    assert_eq!((ask.to, ask.from, ask.corr), (1, net.ids[0], corr));
    assert_eq!(ask.payload, b"question");
    // Node 2 forges a reply to node 0's ask.
    let now = net.now;
    let to = net.ids[0];
    net.nodes[2]
        .reply(now, to, corr, Ok(b"forged".to_vec()))
        .unwrap();
    net.run(Duration::from_millis(100));
    assert!(net.answers(0).is_empty(), "a forged reply answered an ask");
    assert_eq!(net.nodes[0].asks().stats().stray_replies, 1);
    assert!(net.nodes[0].asks().is_pending(corr));
    // The real reply answers.
    net.nodes[1]
        .reply(now, to, corr, Ok(b"answer".to_vec()))
        .unwrap();
    net.until(Duration::from_secs(1), |n| !n.answers(0).is_empty());
    assert_eq!(
        net.answers(0),
        vec![Answer {
            corr,
            peer: net.ids[1],
            result: Ok(b"answer".to_vec())
        }]
    );
    // A duplicate reply finds nothing pending.
    let now = net.now;
    net.nodes[1]
        .reply(now, to, corr, Ok(b"again".to_vec()))
        .unwrap();
    net.run(Duration::from_millis(100));
    assert_eq!(net.answers(0).len(), 1);
    assert_eq!(net.nodes[0].asks().pending(), 0);
    assert_eq!(net.nodes[0].asks().stats().stray_replies, 2);
}

#[test]
fn an_unanswered_ask_times_out_at_its_deadline_and_not_before() {
    let mut net = Net::new(2);
    net.converge();
    let asked_at = net.now;
    let corr = net.ask(0, 1, b"?", Duration::from_millis(300));
    net.until(Duration::from_secs(1), |n| !n.answers(0).is_empty());
    let answered_after = net.now.saturating_since(asked_at);
    assert!(
        answered_after >= Duration::from_millis(300) && answered_after < Duration::from_millis(310),
        "{answered_after:?}"
    );
    assert_eq!(net.answers(0)[0].result, Err(Failure::TimedOut));
    assert_eq!(net.answers(0)[0].corr, corr);
    // The late reply is no second answer.
    let now = net.now;
    let to = net.ids[0];
    net.nodes[1].reply(now, to, corr, Ok(vec![1])).unwrap();
    net.run(Duration::from_millis(100));
    assert_eq!(net.answers(0).len(), 1);
}

#[test]
fn asks_on_a_dead_peer_are_answered_unreachable() {
    let mut net = Net::new(3);
    net.converge();
    let pending = net.ask(0, 1, b"a", Duration::from_secs(60));
    net.until(Duration::from_secs(1), |n| !n.asks_in.is_empty());
    net.crashed.insert(1);
    // Asked after the crash, before anyone noticed: its frame is never acked.
    let unacked = net.ask(0, 1, b"b", Duration::from_secs(60));
    let bound = config().membership.detection_bound(3);
    net.until(bound, |n| n.answers(0).len() == 2);
    let answers: BTreeMap<u64, Result<Vec<u8>, Failure>> = net
        .answers(0)
        .into_iter()
        .map(|a| (a.corr, a.result))
        .collect();
    assert_eq!(answers[&pending], Err(Failure::Unreachable));
    assert_eq!(answers[&unacked], Err(Failure::Unreachable));
    // Now the peer is known dead, asks are refused at once, the request back.
    let now = net.now;
    let peer = net.ids[1];
    match net.nodes[0].ask(now, peer, request(peer, b"c"), Duration::from_secs(1)) {
        Err(AskRefused::PeerDown(r)) => assert_eq!(r.payload, &b"c"[..]),
        other => panic!("{other:?}"),
    }
    net.run(Duration::from_secs(1));
    assert_eq!(net.answers(0).len(), 2, "no answer for a refused ask");
}

#[test]
fn refused_asks_hand_the_request_back() {
    let mut c = config();
    c.asks.pending_max = 1;
    c.delivery.window_frames = 1;
    let mut net = Net::with(3, c, |_| NodeMeta::default());
    let (me, a, b) = (net.ids[0], net.ids[1], net.ids[2]);
    let node = &mut net.nodes[0];
    match node.ask(Time::ZERO, me, request(me, b"self"), Duration::from_secs(1)) {
        Err(AskRefused::ToSelf(r)) => assert_eq!(r.payload, &b"self"[..]),
        other => panic!("{other:?}"),
    }
    // A tell fills the window to `a` (its link is not up, so it stays).
    let tell = Arc::new(DataBody::Tell {
        target: ActorId::new(a, 1),
        message_type: "t".into(),
        payload: bytes::Bytes::new(),
        trace: None,
    });
    node.send(Time::ZERO, a, tell).unwrap();
    match node.ask(Time::ZERO, a, request(a, b"full"), Duration::from_secs(1)) {
        Err(e @ AskRefused::WindowFull(_)) => assert_eq!(e.into_request().payload, &b"full"[..]),
        other => panic!("{other:?}"),
    }
    node.ask(Time::ZERO, b, request(b, b"one"), Duration::from_secs(1))
        .unwrap();
    match node.ask(Time::ZERO, b, request(b, b"two"), Duration::from_secs(1)) {
        Err(AskRefused::TooMany(r)) => assert_eq!(r.payload, &b"two"[..]),
        other => panic!("{other:?}"),
    }
    node.check_invariants().unwrap();
}

/// Two nodes claim a name concurrently; the loser withdraws its claim itself (the
/// core, not a driver), so when the winner dies the name is gone, not handed back.
#[test]
fn the_loser_of_a_concurrent_claim_withdraws_it() {
    let mut net = Net::new(3);
    net.converge();
    let now = net.now;
    // Equal Lamport times: the lower node id wins.
    let (w, l) = if net.ids[0] < net.ids[1] {
        (0, 1)
    } else {
        (1, 0)
    };
    let (a0, a1) = (ActorId::new(net.ids[w], 5), ActorId::new(net.ids[l], 5));
    net.nodes[w].register(now, "leader", a0).unwrap();
    net.nodes[l].register(now, "leader", a1).unwrap();
    net.until(Duration::from_secs(3), |n| {
        n.nodes
            .iter()
            .all(|c| c.lookup("leader").map(|l| l.actor) == Some(a0))
    });
    let lost = net.events.iter().any(|(i, e)| {
        *i == l
            && matches!(
                e,
                ClusterEvent::Registry(RegistryEvent::ConflictLost { .. })
            )
    });
    assert!(lost, "the loser is told it lost");
    assert!(
        net.nodes[l]
            .registry()
            .my_claims()
            .iter()
            .all(|c| &*c.name != "leader" || c.removed),
        "the loser withdrew its claim"
    );
    net.crashed.insert(w);
    let bound = config().membership.detection_bound(3);
    net.until(bound + Duration::from_secs(1), |n| {
        n.nodes[l].membership().state_of(&n.ids[w]) == Some(MemberState::Dead)
            && n.nodes[2].membership().state_of(&n.ids[w]) == Some(MemberState::Dead)
    });
    net.run(Duration::from_secs(1));
    assert_eq!(net.nodes[l].lookup("leader"), None);
    assert_eq!(net.nodes[2].lookup("leader"), None);
}

#[test]
fn an_older_allowlist_on_a_member_makes_a_publication_due() {
    let meta = |i: usize| NodeMeta {
        allowlist_version: if i == 0 { 2 } else { 1 },
        ..NodeMeta::default()
    };
    let mut net = Net::with(3, config(), meta);
    net.converge();
    let publications = |net: &Net, i: usize| {
        net.events
            .iter()
            .filter(|(at, e)| *at == i && matches!(e, ClusterEvent::PublishAllowlist))
            .count()
    };
    assert!(publications(&net, 0) >= 1, "node 0 has the newer version");
    assert_eq!(publications(&net, 1), 0, "nobody is behind node 1");
    // Not confirmed: asked again every PUBLISH_SPACING.
    let spacing = crate::allowlist::PUBLISH_SPACING;
    let before = publications(&net, 0);
    net.until(spacing + Duration::from_millis(10), |n| {
        publications(n, 0) == before + 1
    });
    net.run(spacing - Duration::from_millis(10));
    assert_eq!(publications(&net, 0), before + 1, "spaced");
    net.run(Duration::from_millis(20));
    assert_eq!(publications(&net, 0), before + 2, "retried");
    let before = before + 1;
    // Confirmed: no more.
    net.nodes[0].allowlist_published(true);
    net.run(crate::allowlist::PUBLISH_SPACING * 3);
    assert_eq!(publications(&net, 0), before + 1);
    // A local publication makes one due at once.
    let now = net.now;
    net.nodes[1].publish_allowlist_soon(now);
    net.step();
    assert_eq!(publications(&net, 1), 1);
}

/// Random asks between three nodes over a lossy network, replies given or withheld,
/// and a crash: every ask taken gets exactly one answer, the right one, within its
/// timeout (or the failure detector's bound); invariants hold after every step.
fn asks_get_exactly_one_answer(seed: u64) {
    let mut net = Net::new(3);
    net.converge();
    net.rng = DetRng::new(seed);
    net.loss = 0.05;
    let mut rng = DetRng::split(seed, 1);
    // What each taken ask was: (asker, corr) -> (peer, payload, deadline).
    let mut taken: BTreeMap<(usize, u64), (usize, Vec<u8>, Time)> = BTreeMap::new();
    let mut handled = 0;
    let crash_at = rng.below(400);
    for round in 0..400u64 {
        if round == crash_at {
            net.crashed.insert(2);
        }
        let from = rng.index(3);
        let to = (from + 1 + rng.index(2)) % 3;
        if !net.crashed.contains(&from) && rng.chance(0.3) {
            let payload = round.to_le_bytes().to_vec();
            let timeout = Duration::from_millis(20 + rng.below(500));
            let now = net.now;
            let peer = net.ids[to];
            if let Ok(corr) = net.nodes[from].ask(now, peer, request(peer, &payload), timeout) {
                taken.insert((from, corr), (to, payload, now + timeout));
            }
        }
        // Receivers answer most asks by echoing them, some twice, some never.
        for ask in net.asks_in[handled..].iter().cloned() {
            if net.crashed.contains(&ask.to) || rng.chance(0.2) {
                continue;
            }
            let now = net.now;
            for _ in 0..(1 + u32::from(rng.chance(0.1))) {
                let _ = net.nodes[ask.to].reply(now, ask.from, ask.corr, Ok(ask.payload.clone()));
            }
        }
        handled = net.asks_in.len();
        net.step();
    }
    net.loss = 0.0;
    net.run(Duration::from_millis(600) + config().membership.detection_bound(3));
    let mut answered: BTreeMap<(usize, u64), Answer> = BTreeMap::new();
    for (i, event) in &net.events {
        if let ClusterEvent::Answer(a) = event {
            let key = (*i, a.corr);
            assert!(taken.contains_key(&key), "an answer for no ask: {a:?}");
            assert!(
                answered.insert(key, a.clone()).is_none(),
                "ask {key:?} answered twice"
            );
        }
    }
    for (key, (to, payload, deadline)) in &taken {
        if net.crashed.contains(&key.0) {
            continue; // the asker itself crashed: nobody to answer
        }
        let Some(a) = answered.get(key) else {
            panic!("ask {key:?} never answered");
        };
        let at = net.answered_at[key];
        assert!(
            at <= *deadline + Duration::from_millis(5),
            "ask {key:?} answered at {at:?}, after its deadline {deadline:?}"
        );
        assert_eq!(a.peer, net.ids[*to]);
        match &a.result {
            Ok(bytes) => assert_eq!(bytes, payload, "a reply to another ask"),
            Err(Failure::TimedOut | Failure::Unreachable) => {}
            Err(other) => panic!("unexpected failure {other}"),
        }
    }
    for (i, node) in net.nodes.iter().enumerate() {
        if !net.crashed.contains(&i) {
            assert_eq!(node.asks().pending(), 0);
        }
    }
}

#[test]
fn asks_get_exactly_one_answer_seed_zero() {
    asks_get_exactly_one_answer(0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn asks_get_exactly_one_answer_any_seed(seed in any::<u64>()) {
        asks_get_exactly_one_answer(seed);
    }
}

/// Hands node `to` a control frame from `from` carrying `members` and `claims`.
fn lie(net: &mut Net, from: usize, to: usize, members: Vec<MemberUpdate>, claims: Vec<Claim>) {
    let now = net.now;
    let from_id = net.ids[from];
    let frame = Frame::Control(ControlPacket {
        probe: Probe::Gossip,
        members: members.into_iter().map(Arc::new).collect(),
        claims,
    });
    // Across the real codec, as a liar's bytes would come.
    let bytes = wire::encode_frame(&frame).unwrap();
    let frame = wire::decode_frame(&bytes.into(), wire::MESH_FRAME_BYTES_MAX).unwrap();
    assert!(net.nodes[to].handle_frame(now, from_id, frame).is_none());
}

#[test]
fn a_liar_cannot_take_move_or_withdraw_another_nodes_name() {
    let mut net = Net::new(3);
    net.converge();
    let now = net.now;
    let honest = ActorId::new(net.ids[0], 7);
    let claim = net.nodes[0].register(now, "svc", honest).unwrap();
    assert!(claim.verify(), "own claims are signed");
    net.until(Duration::from_secs(3), |n| {
        n.nodes
            .iter()
            .all(|c| c.lookup("svc").map(|l| l.actor) == Some(honest))
    });
    let liar_key = key(2);
    let theirs = ActorId::new(net.ids[2], 9);
    let mut lies = Vec::new();
    // Node 0's claim moved to the liar's actor: unsigned, then signed by the liar.
    let moved = Claim {
        actor: theirs,
        version: claim.version + 1,
        sig: Default::default(),
        ..claim.clone()
    };
    lies.push(moved.clone());
    lies.push(moved.clone().sign(&liar_key));
    // Node 0's claim withdrawn on its behalf.
    lies.push(Claim {
        removed: true,
        version: claim.version + 1,
        sig: vec![0; 64].into(),
        ..claim.clone()
    });
    // The liar's own claims at u64::MAX rank and version, and a Lamport time of MAX.
    let own = |rank, version, lamport| {
        Claim {
            name: "svc".into(),
            node: net.ids[2],
            actor: theirs,
            lamport,
            rank,
            version,
            removed: false,
            sig: Default::default(),
        }
        .sign(&liar_key)
    };
    lies.push(own(u64::MAX, 1, 1));
    lies.push(own(0, u64::MAX, 1));
    lies.push(own(0, 1, u64::MAX));
    lie(&mut net, 2, 1, Vec::new(), lies);
    let r = net.nodes[1].refusals().registry;
    assert_eq!((r.forged, r.rank_jump, r.version_jump), (3, 1, 2), "{r:?}");
    assert_eq!(
        net.nodes[1].lookup("svc").map(|l| l.actor),
        Some(honest),
        "the name stays where its holder put it"
    );
    // A replay of an old claim of node 0 changes nothing either.
    net.nodes[0].unregister(net.now, "svc");
    net.until(Duration::from_secs(3), |n| {
        n.nodes.iter().all(|c| c.lookup("svc").is_none())
    });
    lie(&mut net, 2, 1, Vec::new(), vec![claim]);
    assert_eq!(net.nodes[1].lookup("svc"), None);
    net.run(Duration::from_secs(1));
    for c in &net.nodes {
        c.check_invariants().unwrap();
    }
}

#[test]
fn a_liar_cannot_kill_poison_or_invent_members() {
    let mut net = Net::new(3);
    net.converge();
    let victim = net.ids[0];
    let inc = net.nodes[1]
        .membership()
        .member(&victim)
        .unwrap()
        .incarnation();
    let dead = |state| MemberUpdate {
        id: victim,
        incarnation: inc,
        state,
        meta: None,
        sig: Default::default(),
    };
    // Node 2 tells node 1, over and over, that node 0 is dead, and offers a poisoned
    // address for it and a phantom member.
    let poisoned = MemberUpdate {
        id: victim,
        incarnation: inc + 1,
        state: MemberState::Alive,
        meta: Some(Arc::new(NodeMeta {
            addrs: vec!["evil:1".into()],
            ..NodeMeta::default()
        })),
        sig: Default::default(),
    };
    let phantom_key = key(77);
    let phantom = MemberUpdate {
        id: phantom_key.node_id(),
        incarnation: 1,
        state: MemberState::Alive,
        meta: Some(Arc::new(NodeMeta::default())),
        sig: Default::default(),
    }
    .sign(&phantom_key);
    let admitted: crate::admitted::Admitted = net.ids.iter().copied().collect();
    for c in &mut net.nodes {
        c.set_admitted(Time::ZERO, Some(admitted.clone()));
    }
    for _ in 0..50 {
        lie(
            &mut net,
            2,
            1,
            vec![
                dead(MemberState::Dead),
                dead(MemberState::Left),
                poisoned.clone(),
                phantom.clone(),
            ],
            Vec::new(),
        );
        net.run(Duration::from_millis(100));
    }
    let m = net.nodes[1].membership();
    assert_eq!(m.state_of(&victim), Some(MemberState::Alive));
    assert!(
        m.member(&victim)
            .unwrap()
            .meta()
            .addrs
            .iter()
            .all(|a| a != "evil:1")
    );
    assert!(m.member(&phantom_key.node_id()).is_none());
    let r = net.nodes[1].refusals().membership;
    assert!(r.forged >= 50 && r.not_admitted >= 50, "{r:?}");
    assert!(m.stats().hints > 0, "hearsay prompts probes");
}

// ----- the sharded registry -----

fn sharded_config() -> ClusterConfig {
    let mut c = config();
    c.registry.owners = 3;
    c.registry.watch_refresh = Duration::from_secs(2);
    c.registry.watch_idle = Duration::from_secs(6);
    c
}

fn sharded(n: usize) -> Net {
    let mut net = Net::with(n, sharded_config(), |_| NodeMeta::default());
    net.converge();
    net
}

impl Net {
    /// The indices of `name`'s owners, as node `at` computes them.
    fn owners(&self, at: usize, name: &str) -> Vec<usize> {
        self.nodes[at]
            .name_owners(name)
            .into_iter()
            .map(|id| self.index(id))
            .collect()
    }

    /// A live node that is neither an owner of `name` nor in `not`.
    fn outsider(&self, name: &str, not: &[usize]) -> usize {
        let owners = self.owners(0, name);
        (0..self.nodes.len())
            .find(|i| !owners.contains(i) && !not.contains(i) && !self.crashed.contains(i))
            .expect("an outsider")
    }

    /// Whether each of `nodes` holds `name` resolving to `want`, reading their
    /// replicas as they are (a lookup through the cluster would make a node ask).
    fn replicas_resolve(&self, nodes: &[usize], name: &str, want: Option<ActorId>) -> bool {
        nodes
            .iter()
            .all(|&o| self.nodes[o].registry().lookup(name).map(|l| l.actor) == want)
    }

    /// Looks `name` up at `at` until it resolves to `want` (each lookup that misses
    /// is what makes the node ask).
    fn resolve(&mut self, at: usize, name: &str, want: Option<ActorId>, limit: Duration) {
        let start = self.now;
        while self.nodes[at].lookup(name).map(|l| l.actor) != want {
            assert!(
                self.now.saturating_since(start) < limit,
                "node {at} resolves `{name}` to {:?}, not {want:?}, after {limit:?}; owners {:?}; held by owners: {:?}",
                self.nodes[at].lookup(name),
                self.owners(at, name),
                self.owners(at, name)
                    .iter()
                    .map(|&o| self.nodes[o].registry().claims_on(name))
                    .collect::<Vec<_>>(),
            );
            self.step();
        }
    }
}

/// A claim lives at its claimant and the name's owners only; a node that looks it
/// up asks the owners, and then holds it while it keeps looking.
#[test]
fn a_sharded_name_is_held_by_its_owners_and_found_by_asking_them() {
    let mut net = sharded(8);
    let actor = ActorId::new(net.ids[5], 42);
    net.nodes[5].register(net.now, "svc", actor).unwrap();
    let owners = net.owners(0, "svc");
    assert_eq!(owners.len(), 3);
    for i in 0..8 {
        assert_eq!(
            net.owners(i, "svc"),
            owners,
            "every node computes the same owners"
        );
    }
    net.until(Duration::from_secs(2), |n| {
        n.replicas_resolve(&owners, "svc", Some(actor))
    });
    net.run(Duration::from_secs(1));
    for i in (0..8).filter(|i| !owners.contains(i) && *i != 5) {
        assert!(
            !net.nodes[i].registry().holds("svc"),
            "node {i} holds a name it has no reason to"
        );
    }
    let asker = net.outsider("svc", &[5]);
    assert_eq!(
        net.nodes[asker].lookup("svc"),
        None,
        "the first lookup misses"
    );
    net.resolve(asker, "svc", Some(actor), Duration::from_secs(1));
    assert!(net.nodes[asker].watches("svc"));
    assert!(
        net.nodes[asker].shard_stats().resolves_sent >= 3,
        "it asked every owner"
    );
}

/// An owner pushes a change to the nodes watching the name, well before they
/// would ask again; a watch stays while the name is looked up, and one nobody
/// uses lapses, and the name is forgotten.
#[test]
fn a_change_reaches_the_watchers_at_once_and_an_unused_watch_lapses() {
    let mut net = sharded(8);
    let (a, b) = (ActorId::new(net.ids[5], 1), ActorId::new(net.ids[5], 2));
    net.nodes[5].register(net.now, "svc", a).unwrap();
    let asker = net.outsider("svc", &[5]);
    net.resolve(asker, "svc", Some(a), Duration::from_secs(2));
    net.run(Duration::from_millis(200));
    let now = net.now;
    assert!(net.nodes[5].unregister(now, "svc"));
    net.nodes[5].register(now, "svc", b).unwrap();
    // Within a fraction of `watch_refresh` (2 s), reading the replica only (a
    // lookup through the cluster would count as use and ask).
    net.until(Duration::from_millis(500), |n| {
        n.nodes[asker].registry().lookup("svc").map(|l| l.actor) == Some(b)
    });
    let forgotten = |n: &Net| {
        n.events.iter().any(|(i, e)| {
            *i == asker && matches!(e, ClusterEvent::Registry(RegistryEvent::Forgotten { .. }))
        })
    };
    assert!(!forgotten(&net));
    // Looked up (through the core, or reported by a driver) past `watch_idle`
    // (6 s), the watch stays.
    let end = net.now + Duration::from_secs(8);
    while net.now < end {
        assert_eq!(net.nodes[asker].lookup("svc").map(|l| l.actor), Some(b));
        net.run(Duration::from_millis(500));
    }
    let end = net.now + Duration::from_secs(8);
    while net.now < end {
        net.nodes[asker].touch_name("svc");
        net.run(Duration::from_millis(500));
    }
    assert!(net.nodes[asker].watches("svc"));
    assert!(!forgotten(&net));
    net.until(Duration::from_secs(9), |n| {
        !n.nodes[asker].registry().holds("svc")
    });
    assert!(!net.nodes[asker].watches("svc"));
    assert!(
        forgotten(&net),
        "the driver is told the name is no longer held"
    );
}

/// A node that holds a name only for its own claim (its tombstone, once its
/// actor moved away) does not take that for all there is: a lookup asks the
/// owners, and finds where the actor went. Before, the lookup answered "unbound"
/// from the tombstone for as long as it was kept, and a durable actor's sender on
/// the node it had left could not reach it.
#[test]
fn a_node_holding_only_its_own_withdrawn_claim_still_finds_the_name_elsewhere() {
    let mut net = sharded(8);
    let name = "moved";
    let owners = net.owners(0, name);
    let first = net.outsider(name, &[]);
    let second = net.outsider(name, &[first]);
    let (a, b) = (
        ActorId::new(net.ids[first], 1),
        ActorId::new(net.ids[second], 2),
    );
    net.nodes[first].register(net.now, name, a).unwrap();
    net.until(Duration::from_secs(2), |n| {
        n.replicas_resolve(&owners, name, Some(a))
    });
    // The actor moves: its old node withdraws its claim (and keeps the
    // tombstone), the new one claims the name.
    let now = net.now;
    assert!(net.nodes[first].unregister(now, name));
    net.nodes[second].register(now, name, b).unwrap();
    net.until(Duration::from_secs(2), |n| {
        n.replicas_resolve(&owners, name, Some(b))
    });
    assert!(net.nodes[first].registry().holds(name), "its tombstone");
    assert!(!net.nodes[first].watches(name));
    net.resolve(first, name, Some(b), Duration::from_secs(1));
    assert!(net.nodes[first].watches(name));
}

/// A lookup borrows the cluster shared, so it only notes a name it does not hold;
/// `send_wanted` asks the name's owners at once instead of at the next input.
#[test]
fn send_wanted_asks_the_owners_of_a_name_looked_up() {
    let mut net = sharded(8);
    let name = "wanted";
    let owners = net.owners(0, name);
    let holder = net.outsider(name, &[]);
    let asker = net.outsider(name, &[holder]);
    let actor = ActorId::new(net.ids[holder], 1);
    net.nodes[holder].register(net.now, name, actor).unwrap();
    net.until(Duration::from_secs(2), |n| {
        n.replicas_resolve(&owners, name, Some(actor))
    });
    let before = net.nodes[asker].shard_stats().resolves_sent;
    assert_eq!(net.nodes[asker].lookup(name), None);
    assert_eq!(
        net.nodes[asker].shard_stats().resolves_sent,
        before,
        "a lookup only notes the name"
    );
    let now = net.now;
    net.nodes[asker].send_wanted(now);
    assert_eq!(
        net.nodes[asker].shard_stats().resolves_sent,
        before + owners.len() as u64
    );
    net.resolve(asker, name, Some(actor), Duration::from_secs(1));
}

/// When an owner dies, the next node by weight takes the name over from the
/// survivors and the claimant, and lookups keep working; when the claimant dies,
/// every node that held the name drops it.
#[test]
fn owners_hand_over_when_one_dies_and_names_go_with_their_claimant() {
    let mut net = sharded(9);
    let actor = ActorId::new(net.ids[4], 7);
    net.nodes[4].register(net.now, "svc", actor).unwrap();
    let owners = net.owners(0, "svc");
    let gone = *owners
        .iter()
        .find(|&&o| o != 4 && o != 0)
        .expect("an owner to kill");
    let asker = net.outsider("svc", &[4, 0]);
    net.resolve(asker, "svc", Some(actor), Duration::from_secs(2));
    net.crashed.insert(gone);
    let bound = config().membership.detection_bound(9);
    net.until(bound + Duration::from_secs(1), |n| {
        (0..9)
            .filter(|i| !n.crashed.contains(i))
            .all(|i| n.nodes[i].membership().state_of(&n.ids[gone]) == Some(MemberState::Dead))
    });
    let after = net.owners(0, "svc");
    assert!(!after.contains(&gone));
    assert_eq!(after.len(), 3);
    let fresh: Vec<usize> = after
        .iter()
        .copied()
        .filter(|o| !owners.contains(o))
        .collect();
    assert_eq!(fresh.len(), 1, "one new owner: {owners:?} -> {after:?}");
    net.until(Duration::from_secs(1), |n| {
        n.replicas_resolve(&after, "svc", Some(actor))
    });
    let late = (0..9)
        .find(|i| !after.contains(i) && ![4, gone, asker].contains(i))
        .expect("another outsider");
    net.resolve(late, "svc", Some(actor), Duration::from_secs(2));
    // The claimant dies: no node resolves the name any more.
    net.crashed.insert(4);
    net.until(bound + Duration::from_secs(1), |n| {
        (0..9).filter(|i| !n.crashed.contains(i)).all(|i| {
            n.nodes[i].membership().state_of(&n.ids[4]) == Some(MemberState::Dead)
                && n.nodes[i].registry().lookup("svc").is_none()
        })
    });
}

/// A claimant restarted before its death was noticed counts its versions from 1
/// again: the owners show it what its last life left, and it restates its name
/// above that (a new actor under the same name) or buries a name it no longer
/// claims.
#[test]
fn a_claimant_restarted_in_a_hurry_restates_or_buries_its_last_lifes_names() {
    let mut net = sharded(8);
    let c = 5;
    let now = net.now;
    for k in 1..=4 {
        let _ = net.nodes[c].unregister(now, "svc");
        net.nodes[c]
            .register(now, "svc", ActorId::new(net.ids[c], k))
            .unwrap();
    }
    net.nodes[c]
        .register(now, "gone", ActorId::new(net.ids[c], 7))
        .unwrap();
    let (svc, gone) = (net.owners(0, "svc"), net.owners(0, "gone"));
    let last = ActorId::new(net.ids[c], 4);
    net.until(Duration::from_secs(2), |n| {
        n.replicas_resolve(&svc, "svc", Some(last))
            && gone
                .iter()
                .all(|&o| n.nodes[o].registry().lookup("gone").is_some())
    });
    // The restart: the same key, the next incarnation, nothing held; faster than
    // any detector.
    let now = net.now;
    net.nodes[c] = Cluster::new(
        key(c as u64),
        2,
        NodeMeta::default(),
        sharded_config(),
        99,
        now,
    );
    net.nodes[c].handle_discovered(now, net.ids[0]);
    let fresh = ActorId::new(net.ids[c], 9);
    net.nodes[c].register(now, "svc", fresh).unwrap();
    let refresh = sharded_config().registry.watch_refresh;
    net.until(refresh * 2 + Duration::from_secs(1), |n| {
        n.replicas_resolve(&svc, "svc", Some(fresh)) && n.replicas_resolve(&gone, "gone", None)
    });
    assert!(
        (0..8).all(|i| i == c || n_state(&net, i, c) == Some(MemberState::Alive)),
        "no one noticed a death"
    );
}

fn n_state(net: &Net, at: usize, of: usize) -> Option<MemberState> {
    net.nodes[at].membership().state_of(&net.ids[of])
}

/// Two nodes claim one name at once: the owners pick one winner, the loser hears
/// of it from them and withdraws, and a node asking later finds the winner.
#[test]
fn the_owners_settle_a_concurrent_claim() {
    let mut net = sharded(8);
    let owners = net.owners(0, "leader");
    let mut claimants = (0..8).filter(|i| !owners.contains(i));
    let (x, y) = (claimants.next().unwrap(), claimants.next().unwrap());
    let (w, l) = if net.ids[x] < net.ids[y] {
        (x, y)
    } else {
        (y, x)
    };
    let (aw, al) = (ActorId::new(net.ids[w], 5), ActorId::new(net.ids[l], 5));
    let now = net.now;
    net.nodes[w].register(now, "leader", aw).unwrap();
    net.nodes[l].register(now, "leader", al).unwrap();
    net.until(Duration::from_secs(2), |n| {
        n.events.iter().any(|(i, e)| {
            *i == l
                && matches!(
                    e,
                    ClusterEvent::Registry(RegistryEvent::ConflictLost { .. })
                )
        })
    });
    net.until(Duration::from_secs(1), |n| {
        n.replicas_resolve(&owners, "leader", Some(aw))
            && n.replicas_resolve(&[l], "leader", Some(aw))
    });
    let asker = net.outsider("leader", &[w, l]);
    net.resolve(asker, "leader", Some(aw), Duration::from_secs(2));
}

/// Each node holds its own names, about `r / n` of the others and what it looks
/// up: not every name, as a full replica does.
#[test]
fn a_sharded_node_holds_a_share_of_the_names() {
    let n = 12;
    let mut net = sharded(n);
    for i in 0..n {
        let now = net.now;
        for k in 0..4 {
            let actor = ActorId::new(net.ids[i], k);
            net.nodes[i]
                .register(now, &format!("n{i}-{k}"), actor)
                .unwrap();
        }
    }
    net.run(Duration::from_secs(3));
    let total = 4 * n;
    for i in 0..n {
        let held = net.nodes[i].registry().names().count();
        let owned = (0..n)
            .flat_map(|j| (0..4).map(move |k| format!("n{j}-{k}")))
            .filter(|name| net.owners(i, name).contains(&i))
            .count();
        let own = 4;
        assert!(held <= own + owned, "node {i} holds {held}, owns {owned}");
        assert!(held < total / 2, "node {i} holds {held} of {total}");
    }
    // Every name still resolves from anywhere.
    for name in ["n0-0", "n7-3", "n11-2"] {
        let asker = net.outsider(name, &[]);
        let want = net.nodes[net.owners(0, name)[0]]
            .registry()
            .lookup(name)
            .map(|l| l.actor);
        assert!(want.is_some());
        net.resolve(asker, name, want, Duration::from_secs(2));
    }
}

/// The sharded registry answers what a full replica does, for any history of
/// claims, withdrawals and crashes with frames lost: once the network settles,
/// every live node's lookup of every name is what a full replica holding every
/// live node's own claims resolves (the full registry's merge is the oracle), and
/// the losers of concurrent claims have withdrawn.
fn sharded_resolves_what_a_full_replica_does(seed: u64) {
    let n = 7;
    let mut net = sharded(n);
    let mut rng = DetRng::new(seed);
    net.loss = 0.05;
    net.rng = DetRng::new(seed ^ 1);
    let names = ["a", "b", "c", "d"];
    for _ in 0..12 {
        let i = rng.index(n);
        let name = names[rng.index(names.len())];
        let actor = ActorId::new(net.ids[i], rng.below(3));
        let crash = rng.chance(0.08) && net.crashed.len() < 2 && i != 0;
        let withdraw = rng.chance(0.3);
        if !net.crashed.contains(&i) {
            let now = net.now;
            if crash {
                net.crashed.insert(i);
            } else if withdraw {
                net.nodes[i].unregister(now, name);
            } else {
                let _ = net.nodes[i].register(now, name, actor);
            }
        }
        net.run(Duration::from_millis(rng.below(400)));
    }
    net.loss = 0.0;
    net.run(config().membership.detection_bound(n) + Duration::from_secs(5));
    let live: Vec<usize> = (0..n).filter(|i| !net.crashed.contains(i)).collect();
    for name in names {
        let mut oracle = Registry::new(NodeId::synthetic(999), RegistryConfig::default());
        for &c in &live {
            if let Some(claim) = net.nodes[c].registry().own_claim(name) {
                oracle.merge(net.now, claim, false);
            }
        }
        let want = oracle.lookup(name);
        let holders = live
            .iter()
            .filter(|&&c| {
                net.nodes[c]
                    .registry()
                    .own_claim(name)
                    .is_some_and(|c| !c.removed)
            })
            .count();
        assert!(holders <= 1, "`{name}`: {holders} live claims, seed {seed}");
        for &i in &live {
            net.resolve(i, name, want.map(|l| l.actor), Duration::from_secs(3));
            assert_eq!(
                net.nodes[i].lookup(name),
                want,
                "node {i}, `{name}`, seed {seed}"
            );
        }
    }
}

#[test]
fn sharded_resolves_what_a_full_replica_does_seed_zero() {
    sharded_resolves_what_a_full_replica_does(0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn sharded_resolves_what_a_full_replica_does_any_seed(seed in any::<u64>()) {
        sharded_resolves_what_a_full_replica_does(seed);
    }
}

/// A lone node probing every `probe_interval` that holds a tombstone for "gone",
/// kept 5 s.
fn with_a_tombstone(probe_interval: Duration) -> Cluster {
    let mut config = ClusterConfig::default();
    config.registry.tombstone_retention = Duration::from_secs(5);
    config.membership.probe_interval = probe_interval;
    let mut node = Cluster::new(key(0), 1, NodeMeta::default(), config, 0, Time::ZERO);
    let me = node.me();
    node.register(Time::ZERO, "gone", ActorId::new(me, 1))
        .unwrap();
    assert!(node.unregister(Time::ZERO, "gone"));
    assert!(node.registry().holds("gone"), "a tombstone");
    node
}

/// Tombstone collection rides the node's next wake-up (a probe tick) when one
/// comes within `REGISTRY_GC_SLACK` of its due time, as every tick does here, and
/// still runs.
#[test]
fn registry_collection_rides_the_probe_ticks() {
    // Ticks that never fall on a whole ten seconds, when collections are due.
    let mut node = with_a_tombstone(Duration::from_millis(700));
    let mut now = Time::ZERO;
    let mut wakes = 0;
    while now < Time::ZERO + Duration::from_secs(60) {
        let next = node.poll_timeout();
        assert!(next > now, "the deadline moves on");
        assert_eq!(
            next,
            node.membership().poll_timeout(),
            "woken at {next:?} for anything but membership"
        );
        now = next;
        node.handle_timeout(now);
        wakes += 1;
    }
    assert!(wakes >= 80, "a probe tick every 0.7 s: {wakes}");
    assert!(
        !node.registry().holds("gone"),
        "the tombstone was collected"
    );
}

/// With no wake-up within `REGISTRY_GC_SLACK` of a collection's due time (probe
/// ticks 30 s apart), the collection wakes the node itself, at that slack past
/// its due time, and collects.
#[test]
fn registry_collection_wakes_the_node_when_no_tick_comes() {
    let mut node = with_a_tombstone(Duration::from_secs(30));
    let mut now = Time::ZERO;
    let mut own_wakes = 0;
    while now < Time::ZERO + Duration::from_secs(60) {
        let due = node.next_registry_gc;
        let next = node.poll_timeout();
        assert!(next > now, "the deadline moves on");
        if next < node.membership().poll_timeout() {
            assert_eq!(next, due + REGISTRY_GC_SLACK, "woken for a collection");
            own_wakes += 1;
        }
        now = next;
        node.handle_timeout(now);
        if own_wakes == 1 {
            assert!(!node.registry().holds("gone"), "collected at {now:?}");
        }
    }
    assert!(own_wakes >= 2, "{own_wakes} wake-ups of its own");
}
