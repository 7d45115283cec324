//! What the durable protocol's test harnesses share: the toy actor and the warm
//! standbys a host keeps for migrations to it.

// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use plexus_actors::NodeId;
use plexus_actors::codec;
use plexus_actors::migratable::Snapshot;
use plexus_durable::{Ballot, DurableKey, ReplicaSet};
use serde::{Deserialize, Serialize};

/// The toy actor: counts inputs, checks per-sender order, forwards to `next`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct App {
    pub last: BTreeMap<String, u64>,
    pub count: u64,
    pub violations: Vec<String>,
}

/// The app a snapshot holds (a fresh one for an empty snapshot).
pub fn restore(user: &Snapshot) -> App {
    if user.bytes.is_empty() {
        App::default()
    } else {
        codec::decode_body(&user.bytes, 1 << 20).unwrap()
    }
}

pub fn key(s: &str) -> DurableKey {
    DurableKey::new(s).unwrap()
}

pub fn n(i: u64) -> NodeId {
    NodeId::synthetic(i)
}

pub fn set(ids: &[u64]) -> ReplicaSet {
    ReplicaSet::new(ids.iter().map(|i| n(*i)).collect()).unwrap()
}

/// Apps built ahead of a handoff (warm standbys), as a host keeps them: per node
/// and key, with the order of the record each was built from.
#[derive(Default)]
pub struct Standbys {
    built: BTreeMap<(NodeId, DurableKey), ((Ballot, u64), App)>,
    /// The nodes whose restores took a standby, in order.
    pub warm_restores: Vec<NodeId>,
}

impl Standbys {
    /// `NodeEvent::Prepare` at `id`: builds the app from `user`.
    pub fn build(&mut self, id: NodeId, key: &DurableKey, order: (Ballot, u64), user: &Snapshot) {
        self.built.insert((id, key.clone()), (order, restore(user)));
    }

    /// `NodeEvent::Unprepared`, or the actor ended at `id`.
    pub fn drop_key(&mut self, id: NodeId, key: &DurableKey) {
        self.built.remove(&(id, key.clone()));
    }

    /// Node `id` crashed.
    pub fn drop_node(&mut self, id: NodeId) {
        self.built.retain(|(node, _), _| *node != id);
    }

    /// `ActivationEvent::Restore` at `id`: the standby of record `warm`, which must
    /// be there, or the app `user` holds.
    pub fn restore(
        &mut self,
        id: NodeId,
        key: &DurableKey,
        user: &Snapshot,
        warm: Option<(Ballot, u64)>,
    ) -> App {
        let standby = self.built.remove(&(id, key.clone()));
        match warm {
            Some(order) => {
                let (built, app) = standby.expect("a warm restore has its standby");
                assert_eq!(built, order, "the standby of the record restored");
                self.warm_restores.push(id);
                app
            }
            None => restore(user),
        }
    }

    /// Whether `id` holds a standby of `key`.
    pub fn holds(&self, id: NodeId, key: &DurableKey) -> bool {
        self.built.contains_key(&(id, key.clone()))
    }

    /// Whether no node holds any.
    pub fn is_empty(&self) -> bool {
        self.built.is_empty()
    }
}
