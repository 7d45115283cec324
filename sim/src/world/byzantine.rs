//! Byzantine nodes: admitted nodes that lie at the mesh level.
//!
//! A scenario marks nodes Byzantine with `[[byzantine]]` sections, each naming a node
//! and its [`Behaviour`]s. A Byzantine node runs the honest cores (so it stays a
//! member others can reach), and on a Poisson clock of `rate` lies per second sends
//! one lie of each of its behaviours to a random honest node, as control frames
//! from itself (the transport authenticates the sender, so `from` is always the liar;
//! what it forges is what the frames *say*). The honest nodes run the production
//! cores unchanged; the checkers (`check_byzantine`) show they keep their guarantees:
//!
//! * `liar-killed`: no honest node is ever declared dead (or left) in an honest
//!   node's view while it is up: the run has no faults but the liars, so only a lie
//!   could cause it;
//! * `phantom-member`: no honest view lists a node that is not in the run (not
//!   allowlisted);
//! * `name-squatted`: every honest node's names resolve, in every honest view, to the
//!   actor it registered;
//! * `poisoned-member`: no honest view holds another honest node's address or meta
//!   other than what that node advertised (the simulator's nodes advertise none).
//!
//! A panic anywhere fails the run (the sweep test runs it).
//!
//! Extension point: [`Behaviour`] is the list of lies. Durable-protocol lies (forged
//! durable `from`, `u64::MAX` ballots) are to be added as variants, with their
//! crafting in [`World::lie`] and their checker here.

use std::collections::VecDeque;
use std::sync::Arc;

use plexus_actors::rng::DetRng;
use plexus_actors::{ActorId, NodeId};
use plexus_mesh::membership::{MemberState, MemberUpdate, Probe};
use plexus_mesh::registry::Claim;
use plexus_mesh::wire::{ControlPacket, Frame};
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::NodeMeta;
use serde::Deserialize;

use super::*;

/// Old frames a liar keeps to replay.
const REPLAY_MAX: usize = 64;

/// One kind of lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Behaviour {
    /// Statements and claims in another node's name: a poisoned address at a higher
    /// incarnation, a departure, a name moved to the liar's actor or withdrawn;
    /// unsigned, signed by the liar, or with a garbage signature.
    ForgedOrigin,
    /// Control frames the liar received earlier, sent again in random order.
    Replay,
    /// `u64::MAX` incarnations, versions, ranks and Lamport times.
    HugeCounters,
    /// "X is dead" (and suspect, and left) about honest nodes.
    FalseDeath,
    /// Members that are not on the allowlist, validly self-signed, and ping-reqs
    /// for them.
    Phantoms,
    /// Claims, in the liar's own name, on names held by others, at rank far above
    /// the holder's and at `u64::MAX`.
    Squat,
    /// Lies in its own meta: tags it was not given (`kyc`, `gpu`) and a huge
    /// capacity. Accepted as its own word; placement must not trust them.
    MetaLies,
    /// Durable-protocol lies (with `[durable]`): replica requests, drops, acks,
    /// redirects and commands that claim another node's name, ballot or authority;
    /// `u64::MAX` ballots; durable messages it overheard, replayed as they were or
    /// with their ballots pushed to `u64::MAX` (`workload::durable::durable_lies`).
    /// The durable checkers (nothing acknowledged lost, one activation per key,
    /// committed state never going back) must hold.
    DurableLies,
}

/// `[[byzantine]]`: one lying node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByzantineSpec {
    /// The node's index.
    pub node: usize,
    /// What it lies about.
    pub behaviours: Vec<Behaviour>,
    /// Lies (one of each behaviour) per second.
    #[serde(default = "two")]
    pub rate: f64,
}

fn two() -> f64 {
    2.0
}

/// The liars of a run.
#[derive(Default)]
pub(in crate::world) struct Liars {
    /// Node index -> its behaviours and state.
    by_node: BTreeMap<usize, Liar>,
    rng: DetRng,
}

struct Liar {
    behaviours: Vec<Behaviour>,
    rate: f64,
    heard: VecDeque<Frame>,
    /// Durable payloads it received, to replay.
    heard_durable: Vec<Vec<u8>>,
}

impl Liars {
    pub(in crate::world) fn new(specs: &[ByzantineSpec], seed: u64) -> Self {
        let mut by_node = BTreeMap::new();
        for s in specs {
            by_node.insert(
                s.node,
                Liar {
                    behaviours: s.behaviours.clone(),
                    rate: s.rate,
                    heard: VecDeque::new(),
                    heard_durable: Vec::new(),
                },
            );
        }
        Self {
            by_node,
            rng: DetRng::split(seed, 7),
        }
    }

    pub(in crate::world) fn is_liar(&self, i: usize) -> bool {
        self.by_node.contains_key(&i)
    }

    fn has(&self, i: usize, b: Behaviour) -> bool {
        self.by_node
            .get(&i)
            .is_some_and(|l| l.behaviours.contains(&b))
    }
}

/// The meta a [`Behaviour::MetaLies`] liar advertises.
pub(in crate::world) fn lying_meta() -> NodeMeta {
    let huge = plexus_vocab::resources::Resources {
        cpu_millis: u64::MAX,
        memory_bytes: u64::MAX,
        gpus: u32::MAX,
    };
    NodeMeta {
        tags: [("kyc", "yes"), ("gpu", "h200")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        addrs: vec!["lie:1".into()],
        total: huge,
        free: huge,
        ..NodeMeta::default()
    }
}

fn phantom_key(k: u64) -> NodeKey {
    let mut seed = [0xee; 32];
    seed[..8].copy_from_slice(&k.to_le_bytes());
    NodeKey::from_seed(seed)
}

impl World {
    /// Schedules each liar's first lie.
    pub(in crate::world) fn schedule_lies(&mut self) {
        let liars: Vec<(usize, f64)> = self.byz.by_node.iter().map(|(i, l)| (*i, l.rate)).collect();
        for (i, rate) in liars {
            if rate > 0.0 {
                let at = self.now + self.lie_delay(rate);
                self.push(at, Ev::Lie(i));
            }
        }
    }

    fn lie_delay(&mut self, rate: f64) -> u64 {
        let u = self.byz.rng.unit();
        ((-(1.0 - u).ln() / rate) * 1e6) as u64 + 1
    }

    /// The start of node `i`'s core: every node knows the allowlist (the run's
    /// nodes); a meta liar advertises its lies.
    pub(in crate::world) fn byzantine_start(&mut self, i: usize, now: Time) {
        let admitted = self.admitted.clone();
        let meta_lies = self.byz.has(i, Behaviour::MetaLies);
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.set_admitted(now, Some(admitted));
            if meta_lies {
                core.set_meta(lying_meta());
            }
        }
    }

    /// A frame for node `to` arrives: a liar keeps control frames to replay.
    pub(in crate::world) fn byzantine_heard(&mut self, to: usize, frame: &Frame) {
        if let Some(l) = self.byz.by_node.get_mut(&to)
            && l.behaviours.contains(&Behaviour::Replay)
            && matches!(frame, Frame::Control(_))
        {
            if l.heard.len() >= REPLAY_MAX {
                l.heard.pop_front();
            }
            l.heard.push_back(frame.clone());
        }
    }

    /// A durable payload for node `to` arrives: a durable liar keeps it to replay
    /// (the last `REPLAY_MAX`).
    pub(in crate::world) fn byzantine_heard_durable(&mut self, to: usize, payload: &[u8]) {
        if let Some(l) = self.byz.by_node.get_mut(&to)
            && l.behaviours.contains(&Behaviour::DurableLies)
        {
            if l.heard_durable.len() >= REPLAY_MAX {
                l.heard_durable.remove(0);
            }
            l.heard_durable.push(payload.to_vec());
        }
    }

    /// Liar `i` sends its durable lies from its own mesh core, as tells to the
    /// honest nodes' durable services.
    fn durable_lie(&mut self, i: usize) {
        let honest: Vec<NodeId> = (0..self.nodes.len())
            .filter(|j| !self.byz.is_liar(*j))
            .map(|j| self.nodes[j].id)
            .collect();
        let keys = self.durable.lie_keys();
        let liar = self.nodes[i].id;
        let heard = self
            .byz
            .by_node
            .get(&i)
            .map(|l| l.heard_durable.clone())
            .unwrap_or_default();
        let commander = self.nodes[i]
            .host
            .as_ref()
            .is_some_and(|h| h.hosted_scheduler());
        let lies = workload::durable::durable_lies(
            &mut self.byz.rng,
            liar,
            &honest,
            &keys,
            &heard,
            commander,
        );
        let now = self.local(i, self.now);
        for (to, bytes) in lies {
            let body = Arc::new(plexus_mesh::wire::DataBody::Tell {
                target: ActorId::new(to, plexus_durable::SERVICE_LOCAL_ID),
                message_type: plexus_durable::MESSAGE_TYPE.to_string(),
                payload: bytes.into(),
                trace: None,
            });
            if let Some(core) = self.nodes[i].core.as_mut() {
                let _ = core.send(now, to, body);
            }
        }
        // Out now, as a daemon's driver sends after every input (left queued, the
        // lies went out at the liar's next event, whatever it was).
        self.pump(i);
    }

    /// Liar `i` tells one lie of each of its behaviours to a random honest node.
    pub(in crate::world) fn lie(&mut self, i: usize) {
        let Some(liar) = self.byz.by_node.get(&i) else {
            return;
        };
        let (behaviours, rate) = (liar.behaviours.clone(), liar.rate);
        let at = self.now + self.lie_delay(rate);
        self.push(at, Ev::Lie(i));
        let Some(core) = self.nodes[i].core.as_ref() else {
            return;
        };
        let n = self.nodes.len();
        let honest: Vec<usize> = (0..n).filter(|j| !self.byz.is_liar(*j)).collect();
        if honest.is_empty() {
            return;
        }
        let to = honest[self.byz.rng.index(honest.len())];
        let victim = honest[self.byz.rng.index(honest.len())];
        let victim_id = self.nodes[victim].id;
        let victim_inc = core
            .membership()
            .member(&victim_id)
            .map_or(1, |m| m.incarnation());
        let my_key = self.nodes[i].key.clone();
        let my_actor = ActorId::new(self.nodes[i].id, 999);
        let victim_claim = core
            .registry()
            .snapshot()
            .into_iter()
            .find(|c| c.node == victim_id);
        let victim_name = self.names[victim].first().map(|(n, _)| n.clone());
        let mut frames = Vec::new();
        let packet = |members: Vec<MemberUpdate>, claims: Vec<Claim>| {
            Frame::Control(ControlPacket {
                probe: Probe::Gossip,
                members: members.into_iter().map(std::sync::Arc::new).collect(),
                claims,
            })
        };
        let hearsay = |id, incarnation, state| MemberUpdate {
            id,
            incarnation,
            state,
            meta: None,
            sig: Default::default(),
        };
        for b in behaviours {
            match b {
                Behaviour::ForgedOrigin => {
                    let poisoned = MemberUpdate {
                        id: victim_id,
                        incarnation: victim_inc + 1,
                        state: MemberState::Alive,
                        meta: Some(Arc::new(NodeMeta {
                            addrs: vec!["evil:1".into()],
                            ..NodeMeta::default()
                        })),
                        sig: Default::default(),
                    };
                    let mut resigned = poisoned.clone().sign(&my_key);
                    resigned.id = victim_id;
                    let mut left = hearsay(victim_id, victim_inc + 1, MemberState::Left);
                    left.sig = vec![7; 64].into();
                    let mut claims = Vec::new();
                    if let Some(c) = &victim_claim {
                        let moved = Claim {
                            actor: my_actor,
                            version: c.version + 1,
                            sig: Default::default(),
                            ..c.clone()
                        };
                        claims.push(moved.clone().sign(&my_key));
                        claims.push(moved);
                        claims.push(Claim {
                            removed: true,
                            version: c.version + 1,
                            sig: vec![7; 64].into(),
                            ..c.clone()
                        });
                    }
                    frames.push(packet(vec![poisoned, resigned, left], claims));
                }
                Behaviour::Replay => {
                    let mut heard: Vec<Frame> = self
                        .byz
                        .by_node
                        .get(&i)
                        .map(|l| l.heard.iter().cloned().collect())
                        .unwrap_or_default();
                    self.byz.rng.shuffle(&mut heard);
                    frames.extend(heard.into_iter().take(4));
                }
                Behaviour::HugeCounters => {
                    let me = MemberUpdate {
                        id: self.nodes[i].id,
                        incarnation: u64::MAX,
                        state: MemberState::Alive,
                        meta: Some(Arc::new(NodeMeta::default())),
                        sig: Default::default(),
                    }
                    .sign(&my_key);
                    let accuse = hearsay(victim_id, u64::MAX, MemberState::Dead);
                    let about_to = hearsay(self.nodes[to].id, u64::MAX, MemberState::Suspect);
                    let mut claims = Vec::new();
                    if let Some(name) = &victim_name {
                        for (rank, version, lamport) in
                            [(u64::MAX, 1, 1), (0, u64::MAX, 1), (0, 1, u64::MAX)]
                        {
                            claims.push(
                                Claim {
                                    name: name.as_str().into(),
                                    node: self.nodes[i].id,
                                    actor: my_actor,
                                    lamport,
                                    rank,
                                    version,
                                    removed: false,
                                    sig: Default::default(),
                                }
                                .sign(&my_key),
                            );
                        }
                    }
                    frames.push(packet(vec![me, accuse, about_to], claims));
                }
                Behaviour::FalseDeath => {
                    let lies = [MemberState::Dead, MemberState::Suspect, MemberState::Left]
                        .into_iter()
                        .map(|s| hearsay(victim_id, victim_inc, s))
                        .collect();
                    frames.push(packet(lies, Vec::new()));
                }
                Behaviour::Phantoms => {
                    let k = phantom_key(self.byz.rng.below(4));
                    let phantom = MemberUpdate {
                        id: k.node_id(),
                        incarnation: 1,
                        state: MemberState::Alive,
                        meta: Some(Arc::new(NodeMeta::default())),
                        sig: Default::default(),
                    }
                    .sign(&k);
                    let claim = Claim {
                        name: "phantom".into(),
                        node: k.node_id(),
                        actor: ActorId::new(k.node_id(), 1),
                        lamport: 1,
                        rank: 0,
                        version: 1,
                        removed: false,
                        sig: Default::default(),
                    }
                    .sign(&k);
                    frames.push(packet(vec![phantom], vec![claim]));
                    frames.push(Frame::Control(ControlPacket {
                        probe: Probe::PingReq {
                            seq: 1,
                            target: k.node_id(),
                        },
                        members: Vec::new(),
                        claims: Vec::new(),
                    }));
                }
                Behaviour::Squat => {
                    if let Some(c) = &victim_claim {
                        let squat = Claim {
                            node: self.nodes[i].id,
                            actor: my_actor,
                            lamport: 0,
                            rank: c.rank.saturating_add(1 << 40),
                            version: 1,
                            removed: false,
                            sig: Default::default(),
                            ..c.clone()
                        }
                        .sign(&my_key);
                        frames.push(packet(Vec::new(), vec![squat]));
                    }
                }
                Behaviour::MetaLies | Behaviour::DurableLies => {}
            }
        }
        for frame in frames {
            self.send(i, to, frame);
        }
        if self.byz.has(i, Behaviour::DurableLies) {
            self.durable_lie(i);
        }
    }

    /// The Byzantine checks (see the module docs); cheap enough for every deep check.
    pub(in crate::world) fn check_byzantine(&mut self) {
        if self.byz.by_node.is_empty() {
            return;
        }
        let n = self.nodes.len();
        let mut found = Vec::new();
        for o in (0..n).filter(|o| !self.byz.is_liar(*o)) {
            let Some(core) = &self.nodes[o].core else {
                continue;
            };
            let m = core.membership();
            for member in m.members() {
                let Some(&s) = self.index.get(&member.id()) else {
                    found.push((
                        "phantom-member",
                        format!("node {o} lists {} , not in the run", member.id()),
                    ));
                    continue;
                };
                if self.byz.is_liar(s) {
                    continue;
                }
                if member.state.is_down() && self.up(s) {
                    found.push((
                        "liar-killed",
                        format!(
                            "node {o} has honest node {s} {:?} while it is up",
                            member.state
                        ),
                    ));
                }
                if !member.meta().addrs.is_empty() || !member.meta().tags.is_empty() {
                    found.push((
                        "poisoned-member",
                        format!("node {o} holds meta {:?} for node {s}", member.meta()),
                    ));
                }
            }
            for (j, names) in self.names.iter().enumerate() {
                if self.byz.is_liar(j) || !self.up(j) {
                    continue;
                }
                for (name, actor) in names {
                    // The replica as it is (a sharded cluster's lookup would ask).
                    match core.registry().lookup(name) {
                        Some(l) if l.actor == *actor => {}
                        // Not yet heard of it: convergence is checked elsewhere.
                        None => {}
                        Some(l) => found.push((
                            "name-squatted",
                            format!("node {o} resolves {name} to {:?}, not node {j}'s", l.actor),
                        )),
                    }
                }
            }
        }
        for (check, detail) in found {
            self.violate(check, detail);
        }
    }
}
