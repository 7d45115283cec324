//! The swarm event loop: one task owns the libp2p `Swarm` and the [`Cluster`] core,
//! feeds the core what happens (swarm events, inbound frames, commands, its timer)
//! and carries out what it returns. Nothing here decides: every choice it acts on
//! comes out of the core's `poll_*` methods.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Swarm, allow_block_list, gossipsub, identify, noise, ping, tcp, yamux};
use plexus_actors::codec;
use plexus_actors::envelope::Failure;
use plexus_actors::fixed::FixedMap;
use plexus_actors::runtime::{ActorSystem, DeliverError, Outgoing, RemoteReply};
use plexus_actors::{NodeId, Time};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::handle::{MemberView, MeshConfig, MeshError, MeshEvent, node_id_of, peer_id_of};
use super::streams::{PeerOut, write_loop};
use super::{
    COMMANDS_PER_TURN, CONTROL_BUFFER_BYTES_MAX, Command, DIAL_RETRY, HELD_FRAMES_MAX,
    INBOUND_BATCHES_MAX, MirroredName, Shared,
};
use crate::allowlist::{AllowlistError, SignedAllowlist};
use crate::cluster::{AskRefused, AskRequest, Cluster, ClusterEvent};
use crate::delivery::DeliveryEvent;
use crate::membership::{MemberState, MembershipEvent};
use crate::registry::RegistryEvent;
use crate::wire::{DataBody, Frame, MESH_FRAME_BYTES_MAX};

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    limits: libp2p::connection_limits::Behaviour,
    per_ip: super::limits::PerIp,
    pub(super) allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    pub(super) gossipsub: gossipsub::Behaviour,
    pub(super) stream: libp2p_stream::Behaviour,
}

pub(super) fn build_swarm(
    keypair: libp2p::identity::Keypair,
    network: &str,
) -> Result<Swarm<Behaviour>, MeshError> {
    let transport_error = |e: &dyn std::fmt::Display| MeshError::Transport(e.to_string());
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport_error(&e))?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    let protocol = format!("/plexus/{network}/1.0.0");
    let swarm = builder
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .max_transmit_size(crate::allowlist::ALLOWLIST_BYTES_MAX + 4096)
                .build()
                .map_err(|e| {
                    Box::new(std::io::Error::other(e.to_string()))
                        as Box<dyn std::error::Error + Send + Sync>
                })?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )
            .map_err(|e| {
                Box::new(std::io::Error::other(e.to_string()))
                    as Box<dyn std::error::Error + Send + Sync>
            })?;
            Ok(Behaviour {
                limits: super::limits::global(),
                per_ip: super::limits::PerIp::new(super::limits::PER_IP_MAX),
                allow: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(identify::Config::new(
                    protocol.clone(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                gossipsub,
                stream: libp2p_stream::Behaviour::new(),
            })
        })
        .map_err(|e| transport_error(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

/// The loop's state: the swarm, the core, and the IO around them.
pub(super) struct Driver {
    shared: Arc<Shared>,
    system: ActorSystem,
    swarm: Swarm<Behaviour>,
    control: libp2p_stream::Control,
    cluster: Cluster,
    start: Instant,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    inbound_rx: mpsc::Receiver<(NodeId, Vec<Frame>)>,
    outs: FixedMap<NodeId, Arc<PeerOut>>,
    retry_at: FixedMap<NodeId, Instant>,
    writers: JoinSet<NodeId>,
    slow: JoinSet<(NodeId, u64, Result<(), Failure>)>,
    /// Peers with a delivery waiting on a full mailbox, and the frames held behind it.
    held: FixedMap<NodeId, VecDeque<Frame>>,
    /// The emptied queue of the last peer whose held frames were handed on, kept
    /// for the next peer to hold frames (a mailbox that fills under a stream of
    /// tells fills again and again; its queue need not grow from nothing each time).
    spare_held: VecDeque<Frame>,
    /// Where each pending ask's answer goes, by the number the core gave it. The
    /// core answers each exactly once, so this holds what the core holds pending.
    waiters: FixedMap<u64, oneshot::Sender<Result<Vec<u8>, Failure>>>,
    topic: gossipsub::IdentTopic,
    remote_enqueue_wait: Duration,
    _tasks: JoinSet<()>,
    leaving: Option<(Instant, oneshot::Sender<()>)>,
    pending_events: Vec<MeshEvent>,
    /// Bootstrap addresses, redialled while this node knows no member, with
    /// exponential backoff (a node the others refuse must not hammer them).
    bootstrap: Vec<Multiaddr>,
    /// The wait before the next bootstrap redial, doubling to `REDIAL_WAIT_MAX`.
    redial_wait: Duration,
    /// When the next bootstrap redial may happen.
    redial_at: Instant,
}

/// The first wait between bootstrap redials.
const REDIAL_WAIT_MIN: Duration = Duration::from_secs(1);
/// The longest wait between bootstrap redials.
const REDIAL_WAIT_MAX: Duration = Duration::from_secs(60);

enum Wake {
    Command(Option<Command>),
    Inbound(Option<(NodeId, Vec<Frame>)>),
    Slow((NodeId, u64, Result<(), Failure>)),
    WriterDone(NodeId),
    Swarm(Box<SwarmEvent<BehaviourEvent>>),
    Timer,
    Redial,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        shared: Arc<Shared>,
        system: ActorSystem,
        swarm: Swarm<Behaviour>,
        control: libp2p_stream::Control,
        cluster: Cluster,
        cmd_rx: mpsc::UnboundedReceiver<Command>,
        inbound_rx: mpsc::Receiver<(NodeId, Vec<Frame>)>,
        tasks: JoinSet<()>,
        topic: gossipsub::IdentTopic,
        config: &MeshConfig,
    ) -> Self {
        Self {
            shared,
            system,
            swarm,
            control,
            cluster,
            start: Instant::now(),
            cmd_rx,
            inbound_rx,
            outs: FixedMap::default(),
            retry_at: FixedMap::default(),
            writers: JoinSet::new(),
            slow: JoinSet::new(),
            held: FixedMap::default(),
            spare_held: VecDeque::new(),
            waiters: FixedMap::default(),
            topic,
            remote_enqueue_wait: config.remote_enqueue_wait,
            _tasks: tasks,
            leaving: None,
            pending_events: Vec::new(),
            bootstrap: config.bootstrap.clone(),
            redial_wait: REDIAL_WAIT_MIN,
            // The start-up dial just happened: the first redial waits a second.
            redial_at: Instant::now() + REDIAL_WAIT_MIN,
        }
    }

    fn now(&self) -> Time {
        Time::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn deadline(&self) -> tokio::time::Instant {
        let at = self.cluster.poll_timeout();
        let offset = Duration::from_micros(at.as_micros());
        tokio::time::Instant::from_std(self.start + offset.min(Duration::from_secs(86_400 * 365)))
    }

    pub(super) async fn run(mut self) {
        let mut redial = tokio::time::interval(Duration::from_secs(1));
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let timer = tokio::time::sleep_until(self.deadline());
        tokio::pin!(timer);
        loop {
            let wake = tokio::select! {
                biased;
                c = self.cmd_rx.recv() => Wake::Command(c),
                b = self.inbound_rx.recv() => Wake::Inbound(b),
                Some(Ok(done)) = self.slow.join_next(), if !self.slow.is_empty() => Wake::Slow(done),
                Some(Ok(node)) = self.writers.join_next(), if !self.writers.is_empty() => Wake::WriterDone(node),
                ev = self.swarm.select_next_some() => Wake::Swarm(Box::new(ev)),
                _ = &mut timer => Wake::Timer,
                _ = redial.tick() => Wake::Redial,
            };
            match wake {
                Wake::Command(None) | Wake::Inbound(None) => break,
                Wake::Command(Some(cmd)) => {
                    self.handle_command(cmd);
                    for _ in 0..COMMANDS_PER_TURN {
                        match self.cmd_rx.try_recv() {
                            Ok(cmd) => self.handle_command(cmd),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Inbound(Some((peer, frames))) => {
                    self.handle_inbound(peer, frames);
                    for _ in 0..INBOUND_BATCHES_MAX {
                        match self.inbound_rx.try_recv() {
                            Ok((peer, frames)) => self.handle_inbound(peer, frames),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Slow((peer, seq, outcome)) => self.slow_done(peer, seq, outcome),
                Wake::WriterDone(node) => self.writer_done(node),
                Wake::Swarm(event) => self.handle_swarm(*event),
                Wake::Timer => {
                    let now = self.now();
                    self.cluster.handle_timeout(now);
                }
                Wake::Redial => {
                    self.redial();
                    self.touch_names();
                }
            }
            self.flush();
            timer.as_mut().reset(self.deadline());
            if self
                .leaving
                .as_ref()
                .is_some_and(|(until, _)| Instant::now() >= *until)
                && let Some((_, done)) = self.leaving.take()
            {
                let _ = done.send(());
            }
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::Send { node, out, bytes } => self.send(now, node, out, bytes),
            #[cfg(feature = "evil")]
            Command::RawFrame { to, frame } => {
                if let Some(out) = self.out_for(to) {
                    let mut bytes = Vec::new();
                    if codec::encode_delimited_into(&frame, MESH_FRAME_BYTES_MAX, &mut bytes)
                        .is_ok()
                    {
                        out.append(bytes);
                    }
                }
            }
            Command::Reply { to, corr, result } => {
                if self.cluster.reply(now, to, corr, result).is_err() {
                    tracing::warn!(peer = %to, corr, "reply dropped: the reply window to the asker is full");
                }
            }
            Command::Register {
                name,
                actor,
                rank,
                reply,
            } => {
                let result = match rank {
                    None => self.cluster.register(now, &name, actor),
                    Some(rank) => self.cluster.register_ranked(now, &name, actor, rank),
                };
                let _ = reply.send(result.map(|_| ()));
            }
            Command::Unregister { name, reply } => {
                let _ = reply.send(self.cluster.unregister(now, &name));
            }
            Command::WantName(name) => {
                self.shared
                    .wanted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
                self.cluster.want_name(now, &name);
            }
            Command::SetFree(free) => {
                let mut meta = self.cluster.membership().meta().clone();
                meta.free = free;
                self.cluster.set_meta(meta);
            }
            Command::PublishAllowlist { signed, reply } => {
                let result = self.apply_allowlist(signed);
                if result.is_ok() {
                    self.cluster.publish_allowlist_soon(now);
                }
                let _ = reply.send(result);
            }
            Command::StreamReady(node) => self.cluster.link_up(now, node),
            Command::Leave(done) => {
                self.cluster.leave();
                let linger = self.shared.config.membership.probe_interval * 2;
                self.leaving = Some((Instant::now() + linger, done));
            }
        }
    }

    /// Hands a tell or an ask to the core. It holds `bytes` of `node`'s window copy,
    /// given back here if the core does not take the frame.
    fn send(&mut self, now: Time, node: NodeId, out: Outgoing, bytes: usize) {
        let Outgoing {
            target,
            message_type,
            payload,
            reply,
            timeout,
            trace,
        } = out;
        let Some(tx) = reply else {
            let body = Arc::new(DataBody::Tell {
                target,
                message_type: message_type.to_string(),
                payload,
                trace,
            });
            if self.cluster.send(now, node, body).is_err() {
                // The window copy admitted it, so the core's window cannot be full.
                self.shared.window(node).release(1, bytes);
                self.shared.counters.refused.fetch_add(1, Relaxed);
                tracing::error!(peer = %node, "the core refused a tell its window copy admitted");
            }
            return;
        };
        let request = AskRequest {
            target,
            message_type: message_type.to_string(),
            payload,
            trace,
        };
        let timeout = timeout.unwrap_or(self.shared.config.asks.timeout_max);
        match self.cluster.ask(now, node, request, timeout) {
            Ok(corr) => {
                self.waiters.insert(corr, tx);
            }
            Err(refused) => {
                self.shared.window(node).release(1, bytes);
                let failure = match refused {
                    AskRefused::PeerDown(_) | AskRefused::ToSelf(_) => Failure::Unreachable,
                    AskRefused::TooMany(_) => Failure::MailboxFull,
                    AskRefused::TooLarge(r) => Failure::Rejected(format!(
                        "the request is {} bytes, over the mesh's bound of {}",
                        crate::wire::request_size_bytes(&r.message_type, &r.payload),
                        self.shared.config.delivery.message_bytes_max
                    )),
                    other => {
                        tracing::error!(peer = %node, %other, "the core refused an ask its window copy admitted");
                        Failure::MailboxFull
                    }
                };
                let _ = tx.send(Err(failure));
            }
        }
    }

    fn handle_inbound(&mut self, peer: NodeId, frames: impl IntoIterator<Item = Frame>) {
        for frame in frames {
            // Most of the time no peer is held: no lookup then.
            if !self.held.is_empty()
                && let Some(held) = self.held.get_mut(&peer)
                && matches!(frame, Frame::Data(_))
            {
                if held.len() < HELD_FRAMES_MAX {
                    held.push_back(frame);
                }
                // Beyond the bound the frame is dropped; the sender retransmits it.
                continue;
            }
            self.handle_frame(peer, frame);
        }
    }

    /// A frame from `peer`, the sender the transport authenticated.
    fn handle_frame(&mut self, peer: NodeId, frame: Frame) {
        let now = self.now();
        let Some((seq, body)) = self.cluster.handle_frame(now, peer, frame) else {
            return;
        };
        let outcome = match &*body {
            DataBody::Tell {
                target,
                message_type,
                payload,
                ..
            } => self
                .system
                .try_deliver_remote(peer, *target, message_type, payload, None),
            DataBody::Ask {
                target,
                message_type,
                payload,
                corr,
                ..
            } => {
                let cmd = self.shared.cmd.clone();
                let corr = *corr;
                let reply = RemoteReply::new(move |result| {
                    let _ = cmd.send(Command::Reply {
                        to: peer,
                        corr,
                        result,
                    });
                });
                self.system
                    .try_deliver_remote(peer, *target, message_type, payload, Some(reply))
            }
            // The core answers replies itself and joins chunks; it never hands
            // either out.
            DataBody::Reply { .. } | DataBody::Chunk { .. } => Ok(()),
        };
        self.deliver_outcome(peer, seq, outcome);
    }

    fn deliver_outcome(&mut self, peer: NodeId, seq: u64, outcome: Result<(), DeliverError>) {
        let now = self.now();
        match outcome {
            Ok(()) => {
                self.shared.counters.delivered.fetch_add(1, Relaxed);
                self.cluster.complete(now, peer, seq, Ok(()));
            }
            Err(DeliverError::Refused(failure)) => {
                self.shared.counters.refused.fetch_add(1, Relaxed);
                self.cluster.complete(now, peer, seq, Err(failure));
            }
            Err(DeliverError::Full(pending)) => {
                let wait = self.remote_enqueue_wait;
                let queue = std::mem::take(&mut self.spare_held);
                self.held.insert(peer, queue);
                self.count_held();
                self.slow.spawn(async move {
                    // A wait that panicked (it never should) fails its delivery, so
                    // the frames held behind it go on and the peer is not held for
                    // good.
                    let outcome = AssertUnwindSafe(pending.wait(wait))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            tracing::error!(%peer, seq, "a delivery's wait for a full mailbox panicked");
                            Err(Failure::Failed("the delivery's wait failed".into()))
                        });
                    (peer, seq, outcome)
                });
            }
            Err(_) => {
                self.shared.counters.refused.fetch_add(1, Relaxed);
                self.cluster.complete(
                    now,
                    peer,
                    seq,
                    Err(Failure::Rejected("undeliverable".into())),
                );
            }
        }
    }

    /// Publishes how many peers are held now (`MeshStats::peers_held`).
    fn count_held(&self) {
        let held = u64::try_from(self.held.len()).unwrap_or(u64::MAX);
        self.shared.counters.peers_held.store(held, Relaxed);
    }

    fn slow_done(&mut self, peer: NodeId, seq: u64, outcome: Result<(), Failure>) {
        let now = self.now();
        match &outcome {
            Ok(()) => self.shared.counters.delivered.fetch_add(1, Relaxed),
            Err(_) => self.shared.counters.refused.fetch_add(1, Relaxed),
        };
        self.cluster.complete(now, peer, seq, outcome);
        let mut held = self.held.remove(&peer).unwrap_or_default();
        self.count_held();
        self.handle_inbound(peer, held.drain(..));
        if held.capacity() > self.spare_held.capacity() {
            self.spare_held = held;
        }
    }

    /// The outbound buffer for `node`, starting its writer if connected, or dialing it
    /// (at most every `DIAL_RETRY`) if not.
    fn out_for(&mut self, node: NodeId) -> Option<Arc<PeerOut>> {
        if let Some(out) = self.outs.get(&node)
            && !out.closed.load(SeqCst)
        {
            return Some(out.clone());
        }
        if node == self.shared.me || !self.shared.admitted(&node) {
            return None;
        }
        let peer = peer_id_of(&node).ok()?;
        if !self.swarm.is_connected(&peer) {
            if self
                .retry_at
                .get(&node)
                .is_none_or(|t| Instant::now() >= *t)
            {
                self.retry_at.insert(node, Instant::now() + DIAL_RETRY);
                let addrs: Vec<Multiaddr> = self
                    .cluster
                    .membership()
                    .member(&node)
                    .map(|m| {
                        m.meta()
                            .addrs
                            .iter()
                            .filter_map(|a| a.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                if !addrs.is_empty() {
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(addrs)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        tracing::debug!(peer = %node, %e, "dial failed");
                    }
                }
            }
            return None;
        }
        let out = Arc::new(PeerOut::new());
        self.outs.insert(node, out.clone());
        self.writers.spawn(write_loop(
            self.control.clone(),
            peer,
            node,
            out.clone(),
            self.shared.cmd.clone(),
        ));
        Some(out)
    }

    fn writer_done(&mut self, node: NodeId) {
        if self.outs.get(&node).is_some_and(|o| o.closed.load(SeqCst)) {
            self.outs.remove(&node);
            self.cluster.link_down(node);
        }
    }

    /// Sends everything the core wants sent and handles its events.
    fn flush(&mut self) {
        let now = self.now();
        // One batch per peer. A turn's frames mostly go to one peer after another
        // (the core drains a link at a time), so the last batch is tried first and
        // the map only when the peer changes.
        let mut batches: Vec<(NodeId, Arc<PeerOut>, Vec<u8>)> = Vec::new();
        let mut index: FixedMap<NodeId, usize> = FixedMap::default();
        let mut sent = 0u64;
        while let Some((to, frame)) = self.cluster.poll_transmit(now) {
            let is_data = matches!(frame, Frame::Data(_));
            let at = match batches.last() {
                Some((last, ..)) if *last == to => batches.len() - 1,
                _ => match index.get(&to) {
                    Some(&at) => at,
                    None => {
                        let Some(out) = self.out_for(to) else {
                            if is_data {
                                self.cluster.link_down(to);
                            }
                            continue;
                        };
                        index.insert(to, batches.len());
                        batches.push((to, out, Vec::new()));
                        batches.len() - 1
                    }
                },
            };
            let (_, out, batch) = &mut batches[at];
            if !out.ready.load(SeqCst) {
                if is_data {
                    // Held by the core until the stream is up (then resent).
                    self.cluster.link_down(to);
                    continue;
                }
                if out.buffered() + batch.len() > CONTROL_BUFFER_BYTES_MAX {
                    continue;
                }
            }
            if let Frame::Data(data) = &frame {
                // Room for a large body up front, so the batch is not grown (and
                // copied) while the body is written into it.
                batch.reserve(data.body.size_bytes());
            }
            match codec::encode_delimited_into(&frame, MESH_FRAME_BYTES_MAX, batch) {
                Ok(()) => sent += 1,
                // Data bodies are chunked well under the bound, so only a control
                // packet can get here (it is dropped; the protocol resends).
                Err(e) => {
                    tracing::error!(peer = %to, error = %e, "a frame over the frame bound was dropped")
                }
            }
        }
        for (_, out, bytes) in batches {
            if !bytes.is_empty() {
                out.append(bytes);
            }
        }
        self.shared.counters.frames_out.fetch_add(sent, Relaxed);
        self.shared
            .counters
            .retransmitted
            .store(self.cluster.delivery().stats().retransmitted, Relaxed);
        self.drain_events();
    }

    fn drain_events(&mut self) {
        let mut members_changed = false;
        while let Some(event) = self.cluster.poll_event() {
            match event {
                ClusterEvent::Member(e) => {
                    members_changed = true;
                    self.member_event(e);
                }
                ClusterEvent::Registry(e) => self.registry_event(e),
                ClusterEvent::Delivery(e) => self.delivery_event(e),
                ClusterEvent::Answer(answer) => {
                    if let Some(tx) = self.waiters.remove(&answer.corr) {
                        // The asker may have given up already: nobody to tell.
                        let _ = tx.send(answer.result);
                    }
                }
                ClusterEvent::PublishAllowlist => self.publish_allowlist(),
            }
        }
        self.shared
            .counters
            .asks_pending
            .store(self.cluster.asks().pending() as u64, Relaxed);
        self.shared
            .counters
            .local_health
            .store(u64::from(self.cluster.membership().local_health()), Relaxed);
        let refused = self.cluster.refusals();
        self.shared.counters.gossip_refused.store(
            refused.membership.total() + refused.registry.total(),
            Relaxed,
        );
        if members_changed {
            self.refresh_members();
        }
        // Published only now, so a subscriber that reads the snapshots on an event
        // sees the state the event announces.
        for event in self.pending_events.drain(..) {
            self.shared.emit(event);
        }
    }

    fn member_event(&mut self, event: MembershipEvent) {
        let mut emit = |e: MeshEvent| self.pending_events.push(e);
        match event {
            MembershipEvent::Joined(node) => {
                emit(MeshEvent::MemberJoined { node });
                if let (Ok(peer), Some(member)) =
                    (peer_id_of(&node), self.cluster.membership().member(&node))
                {
                    for addr in &member.meta().addrs {
                        if let Ok(addr) = addr.parse::<Multiaddr>() {
                            self.swarm.add_peer_address(peer, addr);
                        }
                    }
                }
            }
            MembershipEvent::Suspected(node) => {
                self.shared.counters.suspicions.fetch_add(1, Relaxed);
                emit(MeshEvent::MemberSuspected { node });
            }
            MembershipEvent::Recovered(node) => emit(MeshEvent::MemberRecovered { node }),
            MembershipEvent::Died(node) | MembershipEvent::Left(node) => {
                let died = self.cluster.membership().state_of(&node) == Some(MemberState::Dead);
                if died {
                    self.shared.counters.deaths.fetch_add(1, Relaxed);
                }
                emit(if died {
                    MeshEvent::MemberDied { node }
                } else {
                    MeshEvent::MemberLeft { node }
                });
            }
            MembershipEvent::Refuted { incarnation } => {
                tracing::info!(incarnation, "refuted a suspicion about this node");
            }
            MembershipEvent::Updated(_) => {}
        }
    }

    fn refresh_members(&mut self) {
        let view: BTreeMap<NodeId, MemberView> = self
            .cluster
            .membership()
            .members()
            .map(|m| {
                (
                    m.id(),
                    MemberView {
                        id: m.id(),
                        state: m.state,
                        incarnation: m.incarnation(),
                        addrs: m.meta().addrs.clone(),
                        total: m.meta().total,
                        free: m.meta().free,
                        tags: m.meta().tags.clone(),
                        software: shown(&m.meta().software),
                    },
                )
            })
            .collect();
        *self
            .shared
            .members
            .write()
            .unwrap_or_else(|p| p.into_inner()) = view;
    }

    /// Reports the names looked up since the last second to a sharded registry,
    /// which keeps asking the owners about them (lookups read the published copy,
    /// not the core).
    fn touch_names(&mut self) {
        if !self.shared.config.registry.sharded() {
            return;
        }
        let used: Vec<String> = self
            .shared
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, n)| n.used.swap(false, Relaxed))
            .map(|(name, _)| name.clone())
            .collect();
        for name in used {
            self.cluster.touch_name(&name);
        }
    }

    fn registry_event(&mut self, event: RegistryEvent) {
        let mut names = self.shared.names.write().unwrap_or_else(|p| p.into_inner());
        match event {
            RegistryEvent::Bound { name, location } => {
                names.insert(
                    name.clone(),
                    MirroredName {
                        location,
                        used: AtomicBool::new(false),
                    },
                );
                drop(names);
                self.shared.emit(MeshEvent::NameBound {
                    name,
                    actor: location.actor,
                });
            }
            RegistryEvent::Unbound { name } => {
                names.remove(&name);
                drop(names);
                self.shared.emit(MeshEvent::NameUnbound { name });
            }
            RegistryEvent::Forgotten { name } => {
                // Not unbound: a sharded registry stopped holding it here, and a
                // lookup asks its owners again.
                names.remove(&name);
            }
            RegistryEvent::ConflictLost {
                name,
                actor,
                winner,
            } => {
                // The core has withdrawn this node's claim already.
                tracing::warn!(%name, ?actor, ?winner, "lost a concurrent registration; unregistered");
            }
        }
    }

    fn delivery_event(&mut self, event: DeliveryEvent) {
        match event {
            DeliveryEvent::Released {
                peer,
                frames,
                bytes,
            } => self.shared.window(peer).release(frames, bytes),
            DeliveryEvent::Refused { peer, failure, .. } => {
                tracing::debug!(%peer, %failure, "a remote message was refused");
            }
            DeliveryEvent::Acked { .. } | DeliveryEvent::Unreachable { .. } => {}
        }
    }

    fn handle_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let now = self.now();
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .clone()
                    .with(libp2p::multiaddr::Protocol::P2p(self.shared.peer));
                self.shared
                    .listen
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(full.clone());
                self.shared.emit(MeshEvent::Listening {
                    addr: full.to_string(),
                });
                let mut meta = self.cluster.membership().meta().clone();
                meta.addrs.push(address.to_string());
                self.cluster.set_meta(meta);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if let Some(node) = node_id_of(&peer_id) {
                    self.retry_at.remove(&node);
                    self.cluster.handle_discovered(now, node);
                    self.out_for(node);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if let Some(node) = node_id_of(&peer_id) {
                    self.cluster.connection_lost(now, node);
                    if let Some(out) = self.outs.remove(&node) {
                        out.close();
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                error: libp2p::swarm::ListenError::Denied { .. },
                peer_id,
                ..
            }
            | SwarmEvent::OutgoingConnectionError {
                error: libp2p::swarm::DialError::Denied { .. },
                peer_id,
                ..
            } => {
                self.shared
                    .counters
                    .connections_refused
                    .fetch_add(1, Relaxed);
                self.shared.emit(MeshEvent::ConnectionRefused {
                    peer: peer_id.map(|p| p.to_string()),
                });
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } if dial_refused(&error) => {
                if let Some(node) = node_id_of(&peer_id) {
                    self.cluster.connection_refused(now, node);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                ..
            })) => match SignedAllowlist::decode(&message.data) {
                Ok(update) => {
                    let current = self
                        .shared
                        .admission
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .version();
                    if update.allowlist.version > current
                        && let Err(e) = self.apply_allowlist(update)
                    {
                        self.reject_allowlist(e.to_string());
                    }
                }
                Err(e) => self.reject_allowlist(e.to_string()),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                ..
            })) => {
                // A new gossip peer may have missed earlier publications.
                self.cluster.publish_allowlist_soon(now);
            }
            _ => {}
        }
    }

    fn reject_allowlist(&mut self, reason: String) {
        self.shared
            .counters
            .allowlist_rejected
            .fetch_add(1, Relaxed);
        tracing::warn!(%reason, "refused an allowlist update");
        self.shared.emit(MeshEvent::AllowlistRejected { reason });
    }

    fn apply_allowlist(&mut self, signed: SignedAllowlist) -> Result<(), AllowlistError> {
        let removed = {
            let mut admission = self
                .shared
                .admission
                .write()
                .unwrap_or_else(|p| p.into_inner());
            admission.apply_update(signed.clone())?
        };
        // Persist what was accepted, so a restart never re-admits a revoked peer.
        // A failed write is logged, not fatal: refusing a revocation because the
        // disk failed would be worse.
        if let Some(path) = &self.shared.allowlist_store {
            let written = signed
                .encode()
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    super::keystore::write_atomic(path, &bytes, 0o644).map_err(|e| e.to_string())
                });
            if let Err(error) = written {
                tracing::error!(path = %path.display(), %error, "cannot persist the accepted allowlist");
            }
        }
        for node in signed.allowlist.nodes.keys() {
            if let Ok(peer) = peer_id_of(node) {
                self.swarm.behaviour_mut().allow.allow_peer(peer);
            }
        }
        for node in removed {
            if let Ok(peer) = peer_id_of(&node) {
                self.swarm.behaviour_mut().allow.disallow_peer(peer);
            }
        }
        let now = self.now();
        self.cluster
            .set_admitted(now, Some(signed.allowlist.nodes.keys().copied().collect()));
        let mut meta = self.cluster.membership().meta().clone();
        meta.allowlist_version = signed.allowlist.version;
        self.cluster.set_meta(meta);
        tracing::info!(version = signed.allowlist.version, "allowlist updated");
        self.shared.emit(MeshEvent::AllowlistUpdated {
            version: signed.allowlist.version,
        });
        Ok(())
    }

    /// Gossips the allowlist in force, as the core asked, and reports back.
    fn publish_allowlist(&mut self) {
        let encoded = self
            .shared
            .admission
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current()
            .encode();
        let Ok(bytes) = encoded else {
            self.cluster.allowlist_published(false);
            return;
        };
        let sent = match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), bytes)
        {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => true,
            // No gossip peers yet: the core asks again later.
            Err(_) => false,
        };
        self.cluster.allowlist_published(sent);
    }

    fn redial(&mut self) {
        // Alone (the bootstrap dials failed, every peer left, or they refuse this
        // node): dial again, waiting twice as long each time, up to a minute.
        if self.cluster.membership().live_count() > 1 {
            self.redial_wait = REDIAL_WAIT_MIN;
            return;
        }
        let now = Instant::now();
        if self.shared.closed.load(SeqCst) || now < self.redial_at {
            return;
        }
        for addr in self.bootstrap.clone() {
            let _ = self.swarm.dial(addr);
        }
        self.redial_at = now + self.redial_wait;
        self.redial_wait = (self.redial_wait * 2).min(REDIAL_WAIT_MAX);
    }
}

/// A peer's software string as shown: at most `SOFTWARE_SHOWN_MAX` bytes, cut at a
/// character boundary.
fn shown(software: &str) -> String {
    plexus_vocab::text::cut(software, plexus_vocab::resources::SOFTWARE_SHOWN_MAX).to_string()
}

#[cfg(test)]
mod shown_tests {
    use super::shown;
    use plexus_vocab::resources::SOFTWARE_SHOWN_MAX;

    #[test]
    fn a_peers_software_string_is_cut_to_the_bound_at_a_character_boundary() {
        assert_eq!(shown("0.1.0 (abc)"), "0.1.0 (abc)");
        let long = "é".repeat(SOFTWARE_SHOWN_MAX);
        let cut = shown(&long);
        assert!(cut.len() <= SOFTWARE_SHOWN_MAX && cut.len() >= SOFTWARE_SHOWN_MAX - 1);
        assert!(long.starts_with(&cut));
    }
}

/// Whether every address of a failed dial refused the connection (its host
/// answered that nothing listens there), as opposed to timing out or failing the
/// handshake.
///
/// The socket's error sits under the transport's layers, and one of them
/// (`Either`) hides it from `Error::source`, so the error's debug form is read
/// for the socket error's kind (`ConnectionRefused`, the same word on every
/// platform). A miss only costs the shortened suspicion, never correctness.
fn dial_refused(error: &libp2p::swarm::DialError) -> bool {
    let libp2p::swarm::DialError::Transport(attempts) = error else {
        return false;
    };
    !attempts.is_empty()
        && attempts
            .iter()
            .all(|(_, e)| format!("{e:?}").contains("ConnectionRefused"))
}

#[cfg(test)]
mod dial_tests {
    use super::*;
    use libp2p::TransportError;
    use std::io;

    /// A layer that, like `Either`, does not give its inner error as a source.
    #[derive(Debug)]
    struct Layer(io::Error);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }

    impl std::error::Error for Layer {}

    fn attempt(inner: io::Error) -> (Multiaddr, TransportError<io::Error>) {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        // As the boxed transport wraps it: an io error around the layers' errors.
        let layered = TransportError::Other(Layer(inner));
        (addr, TransportError::Other(io::Error::other(layered)))
    }

    #[test]
    fn only_a_dial_refused_at_every_address_counts_as_refused() {
        let refused = || attempt(io::Error::from(io::ErrorKind::ConnectionRefused));
        let timed_out = || attempt(io::Error::from(io::ErrorKind::TimedOut));
        assert!(dial_refused(&libp2p::swarm::DialError::Transport(vec![
            refused()
        ])));
        assert!(dial_refused(&libp2p::swarm::DialError::Transport(vec![
            refused(),
            refused()
        ])));
        assert!(!dial_refused(&libp2p::swarm::DialError::Transport(vec![
            timed_out()
        ])));
        assert!(!dial_refused(&libp2p::swarm::DialError::Transport(vec![
            refused(),
            timed_out()
        ])));
        assert!(!dial_refused(&libp2p::swarm::DialError::Transport(vec![])));
    }
}
