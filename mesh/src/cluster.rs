//! [`Cluster`]: one node's complete mesh state machine, composing membership, the
//! registry and delivery. This is the object both drivers run: the libp2p driver in
//! production, the simulator in research and testing.
//!
//! It owns the glue that must not differ between them: membership messages carry
//! piggybacked member updates and registry claims; a sync carries the whole registry;
//! a member declared dead loses its registry entries and its delivery links (its
//! unacknowledged frames fail); claims from dead members are ignored.
//!
//! Inputs: `handle_timeout`, `handle_frame`, `handle_discovered`, `link_up`,
//! `link_down`, `send`, `complete`, `register`, `unregister`, `set_meta`, `leave`.
//! Outputs: `poll_transmit`, `poll_event`, `poll_timeout`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use plexus_actors::{ActorId, NodeId, Time};
use serde::{Deserialize, Serialize};

use crate::delivery::{Delivery, DeliveryConfig, DeliveryEvent, Inbound};
use crate::membership::{Membership, MembershipConfig, MembershipEvent, Probe};
use crate::registry::{Claim, Location, Registry, RegistryConfig, RegistryError, RegistryEvent};
use crate::wire::{ControlPacket, DataBody, Failure, Frame};
use plexus_vocab::resources::NodeMeta;

/// Everything tunable about one node's mesh cores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Membership and failure detection.
    pub membership: MembershipConfig,
    /// The registry.
    pub registry: RegistryConfig,
    /// Delivery links.
    pub delivery: DeliveryConfig,
}

/// Something the driver (or simulator) should know.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterEvent {
    /// Membership changed.
    Member(MembershipEvent),
    /// A name's resolution changed.
    Registry(RegistryEvent),
    /// Something happened to frames this node sent.
    Delivery(DeliveryEvent),
}

/// How often tombstones are collected.
const REGISTRY_GC_INTERVAL: Duration = Duration::from_secs(10);
/// Most registry claims piggybacked on one message.
const CLAIMS_PER_MESSAGE: usize = 8;

/// One node's mesh state.
pub struct Cluster {
    me: NodeId,
    membership: Membership,
    registry: Registry,
    delivery: Delivery,
    events: VecDeque<ClusterEvent>,
    next_registry_gc: Time,
}

impl Cluster {
    /// A node that knows only itself. `incarnation` doubles as the delivery session.
    pub fn new(
        me: NodeId,
        incarnation: u64,
        meta: NodeMeta,
        config: ClusterConfig,
        seed: u64,
        now: Time,
    ) -> Self {
        Self {
            me,
            membership: Membership::new(me, incarnation, meta, config.membership, seed, now),
            registry: Registry::new(me, config.registry),
            delivery: Delivery::new(incarnation, config.delivery),
            events: VecDeque::new(),
            next_registry_gc: now + REGISTRY_GC_INTERVAL,
        }
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The membership core (read-only).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The registry core (read-only).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The delivery core (read-only).
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// Where a name resolves.
    pub fn lookup(&self, name: &str) -> Option<Location> {
        self.registry.lookup(name)
    }

    /// Registers `name` for a local actor.
    pub fn register(
        &mut self,
        now: Time,
        name: &str,
        actor: ActorId,
    ) -> Result<Claim, RegistryError> {
        let claim = self.registry.register(now, name, actor);
        self.pump();
        claim
    }

    /// Registers `name` for a local actor with precedence `rank` (see
    /// [`crate::registry::Registry::register_ranked`]).
    pub fn register_ranked(
        &mut self,
        now: Time,
        name: &str,
        actor: ActorId,
        rank: u64,
    ) -> Result<Claim, RegistryError> {
        let claim = self.registry.register_ranked(now, name, actor, rank);
        self.pump();
        claim
    }

    /// Withdraws this node's claim on `name`.
    pub fn unregister(&mut self, now: Time, name: &str) -> bool {
        let done = self.registry.unregister(now, name);
        self.pump();
        done
    }

    /// Changes what this node advertises.
    pub fn set_meta(&mut self, meta: NodeMeta) {
        self.membership.set_meta(meta);
        self.pump();
    }

    /// Announces departure.
    pub fn leave(&mut self) {
        self.membership.leave();
        self.pump();
    }

    /// A transport connected to `peer`.
    pub fn handle_discovered(&mut self, now: Time, peer: NodeId) {
        self.membership.handle_discovered(now, peer);
        self.delivery.link_up(now, peer);
        self.pump();
    }

    /// The transport to `peer` came back.
    pub fn link_up(&mut self, now: Time, peer: NodeId) {
        self.delivery.link_up(now, peer);
    }

    /// The transport to `peer` went down.
    pub fn link_down(&mut self, peer: NodeId) {
        self.delivery.link_down(peer);
    }

    /// Queues actor traffic for `peer`; the body comes back if the window is full.
    pub fn send(
        &mut self,
        now: Time,
        peer: NodeId,
        body: Arc<DataBody>,
    ) -> Result<u64, Arc<DataBody>> {
        self.delivery.send(now, peer, body)
    }

    /// Whether `send` to `peer` would be accepted now.
    pub fn has_room(&self, peer: &NodeId) -> bool {
        self.delivery.has_room(peer)
    }

    /// The outcome of a frame returned by `handle_frame`.
    pub fn complete(&mut self, now: Time, from: NodeId, seq: u64, outcome: Result<(), Failure>) {
        self.delivery.complete(now, from, seq, outcome);
    }

    /// Advances every timer.
    pub fn handle_timeout(&mut self, now: Time) {
        // Each core only when its own deadline has come: most wake-ups are for one of
        // them (a delayed ack, say), and touching the others' state costs cache misses.
        if now >= self.membership.poll_timeout() {
            self.membership.handle_timeout(now);
        }
        if self.delivery.poll_timeout().is_some_and(|t| t <= now) {
            self.delivery.handle_timeout(now);
        }
        if now >= self.next_registry_gc {
            self.registry.handle_timeout(now);
            self.next_registry_gc = now + REGISTRY_GC_INTERVAL;
        }
        self.pump();
    }

    /// Handles a frame from `from`. Returns actor traffic to deliver: deliver it, then
    /// call [`Cluster::complete`] with its seq before handing in the next data frame
    /// from the same peer.
    pub fn handle_frame(
        &mut self,
        now: Time,
        from: NodeId,
        frame: Frame,
    ) -> Option<(u64, Arc<DataBody>)> {
        let out = match frame {
            Frame::Control(packet) => {
                for update in packet.members {
                    self.membership.apply(now, update);
                }
                // Apply membership first so claims from members now known dead are dropped.
                self.pump();
                // With a sync the claims are the partner's whole registry: only its own
                // claims are news to spread (see `Membership`'s sync handling).
                let full_state =
                    matches!(packet.probe, Probe::Sync { .. } | Probe::SyncReply { .. });
                for claim in packet.claims {
                    let down = self
                        .membership
                        .state_of(&claim.node)
                        .is_some_and(|s| s.is_down());
                    let rebroadcast = !full_state || claim.node == from;
                    self.registry.merge_with(now, claim, down, rebroadcast);
                }
                self.membership.handle_message(now, from, packet.probe);
                None
            }
            Frame::Data(data) => match self.delivery.handle_data(now, from, data) {
                Inbound::Deliver { seq, body } => Some((seq, body)),
                Inbound::Duplicate | Inbound::Dropped => None,
            },
            Frame::Ack(ack) => {
                self.delivery.handle_ack(now, from, ack);
                None
            }
        };
        self.pump();
        out
    }

    /// The next frame to send, with gossip piggybacked on membership messages.
    pub fn poll_transmit(&mut self, now: Time) -> Option<(NodeId, Frame)> {
        if let Some((to, probe)) = self.membership.poll_transmit() {
            let members = self.membership.take_gossip(usize::MAX);
            let claims = match probe {
                Probe::Sync { .. } | Probe::SyncReply { .. } => self.registry.snapshot(),
                _ => self
                    .registry
                    .take_gossip(CLAIMS_PER_MESSAGE, self.membership.live_count()),
            };
            return Some((
                to,
                Frame::Control(ControlPacket {
                    probe,
                    members,
                    claims,
                }),
            ));
        }
        self.delivery.poll_transmit(now)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClusterEvent> {
        crate::broadcast::pop_shrinking(&mut self.events)
    }

    /// When `handle_timeout` must next run.
    pub fn poll_timeout(&self) -> Time {
        let mut t = self.membership.poll_timeout().min(self.next_registry_gc);
        if let Some(d) = self.delivery.poll_timeout() {
            t = t.min(d);
        }
        t
    }

    /// Moves events between the cores and out to the driver.
    fn pump(&mut self) {
        while let Some(event) = self.membership.poll_event() {
            match &event {
                MembershipEvent::Died(node) | MembershipEvent::Left(node) => {
                    self.registry.remove_node(node);
                    self.delivery.peer_failed(*node);
                }
                MembershipEvent::Refuted { .. } => {
                    // Others may have dropped our claims while they thought us dead:
                    // spread them again.
                    self.registry.announce_mine();
                }
                _ => {}
            }
            self.events.push_back(ClusterEvent::Member(event));
        }
        while let Some(event) = self.registry.poll_event() {
            self.events.push_back(ClusterEvent::Registry(event));
        }
        while let Some(event) = self.delivery.poll_event() {
            self.events.push_back(ClusterEvent::Delivery(event));
        }
    }

    /// Checks every core's invariants and the glue between them.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.membership.check_invariants()?;
        self.registry.check_invariants()?;
        self.delivery.check_invariants()?;
        for (name, location) in self.registry.locations() {
            if location.node != self.me
                && self
                    .membership
                    .state_of(&location.node)
                    .is_some_and(|s| s.is_down())
            {
                return Err(format!(
                    "`{name}` resolves to down node {:?}",
                    location.node
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::membership::MemberState;
    use crate::registry::RegistryEvent;
    use crate::wire;

    fn config() -> ClusterConfig {
        let mut c = ClusterConfig::default();
        c.membership.probe_interval = Duration::from_millis(100);
        c.membership.probe_timeout = Duration::from_millis(40);
        c.membership.sync_interval = Duration::from_secs(1);
        c
    }

    struct Net {
        nodes: Vec<Cluster>,
        ids: Vec<NodeId>,
        now: Time,
        crashed: BTreeSet<usize>,
        delivered: Vec<(usize, NodeId, Vec<u8>)>,
    }

    impl Net {
        fn new(n: usize) -> Self {
            let ids: Vec<NodeId> = (0..n as u64).map(NodeId::synthetic).collect();
            let mut nodes: Vec<Cluster> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    Cluster::new(*id, 1, NodeMeta::default(), config(), i as u64, Time::ZERO)
                })
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
            }
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
                let to = self.ids.iter().position(|x| *x == to).unwrap();
                if self.crashed.contains(&to) {
                    continue;
                }
                let frame = wire::decode_frame(&bytes, wire::MESH_FRAME_BYTES_MAX).unwrap();
                if let Some((seq, body)) = self.nodes[to].handle_frame(now, self.ids[from], frame) {
                    if let DataBody::Tell { payload, .. } = &*body {
                        self.delivered.push((to, self.ids[from], payload.clone()));
                    }
                    self.nodes[to].complete(now, self.ids[from], seq, Ok(()));
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
    }

    #[test]
    fn names_resolve_everywhere_and_vanish_with_their_node() {
        let mut net = Net::new(5);
        net.until(Duration::from_secs(3), |n| {
            n.nodes.iter().all(|c| c.membership().live_count() == 5)
        });
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
        let unbound = net.nodes[0]
            .poll_event_all()
            .into_iter()
            .any(|e| matches!(e, ClusterEvent::Registry(RegistryEvent::Unbound { .. })));
        assert!(unbound);
    }

    #[test]
    fn data_flows_in_order_between_members() {
        let mut net = Net::new(3);
        net.until(Duration::from_secs(3), |n| {
            n.nodes.iter().all(|c| c.membership().live_count() == 3)
        });
        let target = ActorId::new(net.ids[2], 1);
        for i in 0..50u8 {
            let body = Arc::new(DataBody::Tell {
                target,
                message_type: "t".into(),
                payload: vec![i],
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

    impl Cluster {
        fn poll_event_all(&mut self) -> Vec<ClusterEvent> {
            std::iter::from_fn(|| self.poll_event()).collect()
        }
    }
}
