//! The replicated key-value store: a last-writer-wins map with tombstones,
//! converged by anti-entropy over hashed buckets.
//!
//! **Entries.** Each write is an [`Entry`]: key, value (or `None`, a tombstone),
//! and a stamp `(time, node)` from the writing node's hybrid clock (never behind
//! its wall clock or behind any stamp it has merged, strictly increasing per
//! node). The entry is signed by the node that wrote it, so it can travel through
//! any number of replicas and still be checked; an API client's write is signed
//! by the node it asked. For one key, the entry with the greater
//! `(time, node, hash)` wins everywhere; that order is total, so the merge is a
//! join and replicas that have seen the same entries hold the same map, deletes
//! included.
//!
//! **Eager push.** A local write is sent at once to up to [`EAGER_PUSH_MAX`]
//! members, so it is usually everywhere after one hop.
//!
//! **Anti-entropy.** Keys fall into [`BUCKETS`] buckets by hash; each bucket's
//! digest is the XOR of its entries' hashes, kept up to date on every change.
//! Every `sync_every` a replica sends its digests to a few members
//! ([`KvConfig::fanout`], drawn from the caller's seeded generator). The peer
//! answers with the stamps of its keys in the buckets that differ; the first side
//! then pushes the entries the peer lacks or has older and asks for those it lacks
//! or has older itself. Any two replicas that sync converge in two round trips, and
//! one honest path between replicas is enough: no peer can make this replica skip
//! an entry, since nothing is taken on a peer's word but signed entries.
//!
//! **Tombstones** are kept for [`KvConfig::tombstone_for`] after their stamp, then
//! dropped. A replica cut off for longer than that could bring a deleted value
//! back; the driver therefore starts a replica empty when its last sync is older
//! than the horizon (Cassandra's `gc_grace_seconds` rule).
//!
//! **Trust.** A merged entry must be signed by its stamp's node, which must be an
//! admitted member; a stamp more than [`KvConfig::skew_max`] ahead of this
//! replica's clock is put off (not refused for good: the next sync offers it
//! again), which bounds how far ahead a faulty node can push its writes to win
//! them. Not prevented: an admitted node overwriting or deleting any key, in its
//! own signed (attributable) name. Authorising keys per writer is the caller's job.
//!
//! **Bounds.** Keys of at most [`KEY_BYTES_MAX`] bytes, values of
//! [`VALUE_BYTES_MAX`], at most [`KvConfig::keys_max`] keys (a put past it is
//! refused with [`KvError::Full`]; a peer's new key past it is put off and counted
//! in [`Kv::deferred`]); at most [`SUMMARY_KEYS_MAX`] stamps, [`PUSH_MAX`] entries
//! and [`WANT_MAX`] keys per message (the rest waits for the next sync); at most
//! [`CHANGES_MAX`] changes queued for watchers (older ones are dropped and counted).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use plexus_actors::rng::DetRng;
use plexus_actors::{NodeId, Time, codec};
use plexus_vocab::identity::{self, NodeKey};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Buckets of the anti-entropy digest.
pub const BUCKETS: usize = 256;
/// The longest key.
pub const KEY_BYTES_MAX: usize = 512;
/// The largest value.
pub const VALUE_BYTES_MAX: usize = 64 << 10;
/// Stamps per summary.
pub const SUMMARY_KEYS_MAX: usize = 4_096;
/// Entries per push.
pub const PUSH_MAX: usize = 256;
/// Keys per want.
pub const WANT_MAX: usize = 1_024;
/// Changes queued for watchers.
pub const CHANGES_MAX: usize = 4_096;
/// Members a local write is pushed to at once (the rest learn it by
/// anti-entropy).
pub const EAGER_PUSH_MAX: usize = 16;
/// The signature domain of entries.
pub const ENTRY_DOMAIN: &[u8] = b"plexus/kv/entry/v1";

/// The store's tuning.
#[derive(Clone, Debug)]
pub struct KvConfig {
    /// Peers synced with per round.
    pub fanout: usize,
    /// How long a tombstone is kept.
    pub tombstone_for: Duration,
    /// How far ahead of this replica's clock a stamp may be.
    pub skew_max: Duration,
    /// Keys held at most.
    pub keys_max: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            fanout: 3,
            tombstone_for: Duration::from_secs(24 * 3600),
            skew_max: Duration::from_secs(300),
            keys_max: 100_000,
        }
    }
}

/// A write's place in the last-writer-wins order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    /// The writer's hybrid clock, microseconds.
    pub time_us: u64,
    /// The writer.
    pub node: NodeId,
    /// The entry's hash (breaks ties between two entries a faulty node signed
    /// with one stamp, so replicas still agree).
    pub hash: [u8; 32],
}

/// One signed write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value; `None` deletes.
    pub value: Option<ByteBuf>,
    /// The writer's clock.
    pub time_us: u64,
    /// The writer.
    pub node: NodeId,
    /// The writer's signature over the rest.
    pub signature: ByteBuf,
}

#[derive(Serialize)]
struct Signed<'a> {
    key: &'a str,
    value: Option<&'a [u8]>,
    time_us: u64,
    node: NodeId,
}

impl Entry {
    fn signed_bytes(&self) -> Result<Vec<u8>, KvError> {
        codec::encode_body(&Signed {
            key: &self.key,
            value: self.value.as_deref().map(|v| &v[..]),
            time_us: self.time_us,
            node: self.node,
        })
        .map_err(|e| KvError::Encode(e.to_string()))
    }

    /// The entry's hash (over the signed bytes and the signature).
    pub fn hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&self.signed_bytes().unwrap_or_default());
        h.update(&self.signature);
        *h.finalize().as_bytes()
    }

    /// The entry's stamp.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            time_us: self.time_us,
            node: self.node,
            hash: self.hash(),
        }
    }

    fn check(&self) -> Result<(), KvError> {
        check_key(&self.key)?;
        if let Some(v) = &self.value
            && v.len() > VALUE_BYTES_MAX
        {
            return Err(KvError::ValueTooLong(v.len()));
        }
        identity::verify(
            &self.node,
            ENTRY_DOMAIN,
            &self.signed_bytes()?,
            &self.signature,
        )
        .map_err(|e| KvError::Signature(e.to_string()))
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(KvError::Key(key.chars().take(40).collect()));
    }
    if key.chars().any(char::is_control) {
        return Err(KvError::Key(key.chars().take(40).collect()));
    }
    Ok(())
}

fn bucket_of(key: &str) -> u8 {
    blake3::hash(key.as_bytes()).as_bytes()[0]
}

/// Messages between replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KvMsg {
    /// The sender's bucket digests (exactly [`BUCKETS`]).
    Digest {
        /// Per bucket, the XOR of its entries' hashes.
        buckets: Vec<[u8; 32]>,
    },
    /// The sender's stamps for every key in `buckets` (the ones that differed).
    Summary {
        /// The buckets covered, whole.
        buckets: Vec<u8>,
        /// Key and stamp of each of the sender's entries in them.
        stamps: Vec<(String, Stamp)>,
    },
    /// Entries for the receiver to merge.
    Push {
        /// Signed entries.
        entries: Vec<Entry>,
    },
    /// Keys the sender wants the receiver's entries for.
    Want {
        /// The keys.
        keys: Vec<String>,
    },
}

/// Why a write or a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The caller's key is empty, too long or has control characters.
    #[error("bad key `{0}`: 1..={KEY_BYTES_MAX} bytes, no control characters")]
    Key(String),
    /// The caller's value is too long.
    #[error("a value of {0} bytes is over the bound of {VALUE_BYTES_MAX}")]
    ValueTooLong(usize),
    /// The store holds `keys_max` keys.
    #[error("the store is full ({0} keys)")]
    Full(usize),
    /// A peer's entry is not signed by its writer.
    #[error("an entry's signature does not verify: {0}")]
    Signature(String),
    /// The peer or the entry's writer is not an admitted member.
    #[error("{0} is not a member")]
    NotMember(NodeId),
    /// A peer's message breaks a bound.
    #[error("a malformed message: {0}")]
    Malformed(&'static str),
    /// Encoding failed.
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// A change a watcher sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The key.
    pub key: String,
    /// The new value; `None`: deleted.
    pub value: Option<ByteBuf>,
    /// The winning write's clock and writer.
    pub time_us: u64,
    /// The writer.
    pub node: NodeId,
}

/// One replica.
pub struct Kv {
    key: NodeKey,
    me: NodeId,
    config: KvConfig,
    entries: BTreeMap<String, (Entry, Stamp)>,
    buckets: Vec<[u8; 32]>,
    members: BTreeSet<NodeId>,
    clock_us: u64,
    live_keys: usize,
    out: VecDeque<(NodeId, KvMsg)>,
    changes: VecDeque<Change>,
    changes_dropped: u64,
    collected: VecDeque<String>,
    deferred: u64,
    refused: u64,
}

impl Kv {
    /// A replica that signs with `key`.
    pub fn new(key: NodeKey, config: KvConfig) -> Self {
        let me = key.node_id();
        Kv {
            key,
            me,
            config,
            entries: BTreeMap::new(),
            buckets: vec![[0; 32]; BUCKETS],
            members: BTreeSet::new(),
            clock_us: 0,
            live_keys: 0,
            out: VecDeque::new(),
            changes: VecDeque::new(),
            changes_dropped: 0,
            collected: VecDeque::new(),
            deferred: 0,
            refused: 0,
        }
    }

    // ----- getters -----

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .get(key)
            .and_then(|(e, _)| e.value.as_deref().map(|v| &v[..]))
    }

    /// The entry of `key`, tombstone included.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key).map(|(e, _)| e)
    }

    /// Up to `limit` live keys and values from `prefix`, in key order.
    pub fn list(&self, prefix: &str, limit: usize) -> Vec<(String, Vec<u8>)> {
        self.entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, (e, _))| e.value.as_ref().map(|v| (k.clone(), v.to_vec())))
            .take(limit)
            .collect()
    }

    /// Live keys.
    pub fn len(&self) -> usize {
        self.live_keys
    }

    /// Whether no live key is held.
    pub fn is_empty(&self) -> bool {
        self.live_keys == 0
    }

    /// Entries held, tombstones included.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().map(|(e, _)| e)
    }

    /// A digest of the whole map (equal on replicas that hold the same entries).
    pub fn root(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for b in &self.buckets {
            h.update(b);
        }
        *h.finalize().as_bytes()
    }

    /// Peer entries put off (too far ahead, or past the key bound).
    pub fn deferred(&self) -> u64 {
        self.deferred
    }

    /// Peer messages or entries refused.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Changes dropped at [`CHANGES_MAX`] before a watcher took them.
    pub fn changes_dropped(&self) -> u64 {
        self.changes_dropped
    }

    // ----- writes -----

    fn stamp_now(&mut self, now: Time) -> u64 {
        self.clock_us = now.as_micros().max(self.clock_us.saturating_add(1));
        self.clock_us
    }

    fn write(&mut self, now: Time, key: &str, value: Option<Vec<u8>>) -> Result<Entry, KvError> {
        check_key(key)?;
        if let Some(v) = &value
            && v.len() > VALUE_BYTES_MAX
        {
            return Err(KvError::ValueTooLong(v.len()));
        }
        let new_key = self.get(key).is_none();
        if value.is_some() && new_key && self.live_keys >= self.config.keys_max {
            return Err(KvError::Full(self.live_keys));
        }
        let time_us = self.stamp_now(now);
        let mut entry = Entry {
            key: key.to_string(),
            value: value.map(ByteBuf::from),
            time_us,
            node: self.me,
            signature: ByteBuf::new(),
        };
        let sig = self.key.sign(ENTRY_DOMAIN, &entry.signed_bytes()?);
        entry.signature = ByteBuf::from(sig.to_vec());
        self.merge(entry.clone());
        // Pushed at once to up to `EAGER_PUSH_MAX` members, so a write is seen
        // elsewhere after one hop; anti-entropy covers whatever this misses.
        for peer in self
            .members
            .iter()
            .filter(|n| **n != self.me)
            .take(EAGER_PUSH_MAX)
        {
            self.out.push_back((
                *peer,
                KvMsg::Push {
                    entries: vec![entry.clone()],
                },
            ));
        }
        Ok(entry)
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, now: Time, key: &str, value: Vec<u8>) -> Result<Entry, KvError> {
        self.write(now, key, Some(value))
    }

    /// Deletes `key` (a tombstone, so the delete wins over older writes).
    pub fn delete(&mut self, now: Time, key: &str) -> Result<Entry, KvError> {
        self.write(now, key, None)
    }

    /// Loads an entry from this replica's own disk (no checks but the signature).
    pub fn restore(&mut self, entry: Entry) -> Result<(), KvError> {
        entry.check()?;
        self.clock_us = self.clock_us.max(entry.time_us);
        self.merge(entry);
        self.changes.clear();
        Ok(())
    }

    /// Merges `entry`; whether it won.
    fn merge(&mut self, entry: Entry) -> bool {
        let stamp = entry.stamp();
        let b = usize::from(bucket_of(&entry.key));
        if let Some((old, old_stamp)) = self.entries.get(&entry.key) {
            if *old_stamp >= stamp {
                return false;
            }
            if old.value.is_some() {
                self.live_keys -= 1;
            }
            xor(&mut self.buckets[b], &old_stamp.hash);
        }
        if entry.value.is_some() {
            self.live_keys += 1;
        }
        xor(&mut self.buckets[b], &stamp.hash);
        if self.changes.len() >= CHANGES_MAX {
            self.changes.pop_front();
            self.changes_dropped += 1;
        }
        self.changes.push_back(Change {
            key: entry.key.clone(),
            value: entry.value.clone(),
            time_us: entry.time_us,
            node: entry.node,
        });
        self.entries.insert(entry.key.clone(), (entry, stamp));
        true
    }

    // ----- membership and time -----

    /// The admitted members (this node included or not; it is added).
    pub fn set_members(&mut self, members: impl IntoIterator<Item = NodeId>) {
        self.members = members.into_iter().collect();
        self.members.insert(self.me);
    }

    /// A sync round: digests to up to `fanout` members drawn from `rng`, and
    /// tombstones past their time dropped.
    pub fn tick(&mut self, now: Time, rng: &mut DetRng) {
        let mut peers: Vec<NodeId> = self
            .members
            .iter()
            .filter(|n| **n != self.me)
            .copied()
            .collect();
        rng.shuffle(&mut peers);
        peers.truncate(self.config.fanout);
        for p in peers {
            self.out.push_back((
                p,
                KvMsg::Digest {
                    buckets: self.buckets.clone(),
                },
            ));
        }
        self.gc(now);
    }

    fn gc(&mut self, now: Time) {
        let horizon = now.as_micros().saturating_sub(
            u64::try_from(self.config.tombstone_for.as_micros()).unwrap_or(u64::MAX),
        );
        let old: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, (e, _))| e.value.is_none() && e.time_us < horizon)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            if let Some((_, stamp)) = self.entries.remove(&k) {
                xor(&mut self.buckets[usize::from(bucket_of(&k))], &stamp.hash);
                self.collected.push_back(k);
            }
        }
    }

    // ----- peers -----

    /// A message from `from` (authenticated by the transport).
    pub fn handle(&mut self, now: Time, from: NodeId, msg: KvMsg) -> Result<(), KvError> {
        if !self.members.contains(&from) || from == self.me {
            self.refused += 1;
            return Err(KvError::NotMember(from));
        }
        match msg {
            KvMsg::Digest { buckets } => {
                if buckets.len() != BUCKETS {
                    self.refused += 1;
                    return Err(KvError::Malformed("a digest of the wrong length"));
                }
                let mut covered = Vec::new();
                let mut stamps = Vec::new();
                for (b, theirs) in buckets.iter().enumerate() {
                    if *theirs == self.buckets[b] {
                        continue;
                    }
                    let Ok(b8) = u8::try_from(b) else { continue };
                    let mine: Vec<(String, Stamp)> = self
                        .entries
                        .iter()
                        .filter(|(k, _)| bucket_of(k) == b8)
                        .map(|(k, (_, s))| (k.clone(), *s))
                        .collect();
                    if !covered.is_empty() && stamps.len() + mine.len() > SUMMARY_KEYS_MAX {
                        break;
                    }
                    covered.push(b8);
                    stamps.extend(mine.into_iter().take(SUMMARY_KEYS_MAX));
                }
                if !covered.is_empty() {
                    self.out.push_back((
                        from,
                        KvMsg::Summary {
                            buckets: covered,
                            stamps,
                        },
                    ));
                }
            }
            KvMsg::Summary { buckets, stamps } => {
                if stamps.len() > SUMMARY_KEYS_MAX || buckets.len() > BUCKETS {
                    self.refused += 1;
                    return Err(KvError::Malformed("a summary over its bounds"));
                }
                let covered: BTreeSet<u8> = buckets.into_iter().collect();
                let theirs: BTreeMap<&str, &Stamp> =
                    stamps.iter().map(|(k, s)| (k.as_str(), s)).collect();
                let mut push = Vec::new();
                let mut want = Vec::new();
                for (k, (e, s)) in &self.entries {
                    if !covered.contains(&bucket_of(k)) {
                        continue;
                    }
                    if theirs.get(k.as_str()).is_none_or(|t| **t < *s) {
                        push.push(e.clone());
                    }
                }
                for (k, t) in &stamps {
                    if !covered.contains(&bucket_of(k)) {
                        continue;
                    }
                    if self.entries.get(k).is_none_or(|(_, s)| s < t) {
                        want.push(k.clone());
                    }
                }
                for part in push.chunks(PUSH_MAX) {
                    self.out.push_back((
                        from,
                        KvMsg::Push {
                            entries: part.to_vec(),
                        },
                    ));
                }
                want.truncate(WANT_MAX);
                if !want.is_empty() {
                    self.out.push_back((from, KvMsg::Want { keys: want }));
                }
            }
            KvMsg::Push { entries } => {
                if entries.len() > PUSH_MAX {
                    self.refused += 1;
                    return Err(KvError::Malformed("a push over its bound"));
                }
                let ahead = now
                    .as_micros()
                    .max(self.clock_us)
                    .saturating_add(u64::try_from(self.config.skew_max.as_micros()).unwrap_or(0));
                for e in entries {
                    if e.check().is_err() {
                        self.refused += 1;
                        continue;
                    }
                    if !self.members.contains(&e.node) {
                        self.refused += 1;
                        continue;
                    }
                    if e.time_us > ahead {
                        self.deferred += 1;
                        continue;
                    }
                    let new_live = e.value.is_some() && self.get(&e.key).is_none();
                    if new_live && self.live_keys >= self.config.keys_max {
                        self.deferred += 1;
                        continue;
                    }
                    self.clock_us = self.clock_us.max(e.time_us);
                    self.merge(e);
                }
            }
            KvMsg::Want { keys } => {
                if keys.len() > WANT_MAX {
                    self.refused += 1;
                    return Err(KvError::Malformed("a want over its bound"));
                }
                let entries: Vec<Entry> = keys
                    .iter()
                    .filter_map(|k| self.entries.get(k).map(|(e, _)| e.clone()))
                    .collect();
                for part in entries.chunks(PUSH_MAX) {
                    self.out.push_back((
                        from,
                        KvMsg::Push {
                            entries: part.to_vec(),
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    // ----- outputs -----

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, KvMsg)> {
        self.out.pop_front()
    }

    /// The next change for watchers (every change, local or merged, in order).
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// The next tombstone dropped after its time (for the driver to forget it
    /// on disk too).
    pub fn poll_collected(&mut self) -> Option<String> {
        self.collected.pop_front()
    }

    /// The invariants, for tests and the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut buckets = vec![[0u8; 32]; BUCKETS];
        let mut live = 0;
        for (k, (e, s)) in &self.entries {
            if *k != e.key {
                return Err(format!("{k} filed under another key"));
            }
            if e.stamp() != *s {
                return Err(format!("{k}'s stamp is stale"));
            }
            xor(&mut buckets[usize::from(bucket_of(k))], &s.hash);
            live += usize::from(e.value.is_some());
        }
        if buckets != self.buckets {
            return Err("bucket digests out of date".into());
        }
        if live != self.live_keys {
            return Err(format!("{live} live keys, counted {}", self.live_keys));
        }
        Ok(())
    }
}

fn xor(acc: &mut [u8; 32], h: &[u8; 32]) {
    for (a, b) in acc.iter_mut().zip(h) {
        *a ^= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn replicas(n: u8) -> Vec<Kv> {
        let keys: Vec<NodeKey> = (0..n).map(|i| NodeKey::from_seed([i + 1; 32])).collect();
        let ids: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        keys.into_iter()
            .map(|k| {
                let mut kv = Kv::new(k, KvConfig::default());
                kv.set_members(ids.clone());
                kv
            })
            .collect()
    }

    /// Delivers every queued message among `reachable` replicas until quiet;
    /// messages to unreachable replicas are lost.
    fn pump(kvs: &mut [Kv], now: Time, reachable: &dyn Fn(usize, usize) -> bool) {
        let index: BTreeMap<NodeId, usize> =
            kvs.iter().enumerate().map(|(i, k)| (k.me, i)).collect();
        for _ in 0..100 {
            let mut moved = false;
            for i in 0..kvs.len() {
                while let Some((to, msg)) = kvs[i].poll_transmit() {
                    let j = index[&to];
                    if reachable(i, j) {
                        moved = true;
                        let from = kvs[i].me;
                        kvs[j].handle(now, from, msg).unwrap();
                    }
                }
            }
            for k in kvs.iter() {
                k.check_invariants().unwrap();
            }
            if !moved {
                return;
            }
        }
        panic!("sync never went quiet");
    }

    fn sync_all(kvs: &mut [Kv], now: Time, seed: u64, reachable: &dyn Fn(usize, usize) -> bool) {
        let mut rng = DetRng::new(seed);
        for _ in 0..3 {
            for k in kvs.iter_mut() {
                k.tick(now, &mut rng);
            }
            pump(kvs, now, reachable);
        }
    }

    #[test]
    fn writes_and_deletes_converge() {
        let mut kvs = replicas(3);
        let t = Time::from_millis(1_000);
        kvs[0].put(t, "a", b"1".to_vec()).unwrap();
        kvs[1].put(t, "b", b"2".to_vec()).unwrap();
        kvs[2].put(t, "a", b"3".to_vec()).unwrap();
        sync_all(&mut kvs, t, 1, &|_, _| true);
        let root = kvs[0].root();
        assert!(kvs.iter().all(|k| k.root() == root));
        assert_eq!(kvs[1].get("b"), Some(&b"2"[..]));
        // Same time: the greater node id wins, everywhere.
        let a = kvs[0].get("a").map(<[u8]>::to_vec);
        assert!(kvs.iter().all(|k| k.get("a").map(<[u8]>::to_vec) == a));
        // A delete wins over the write it follows.
        let later = Time::from_millis(2_000);
        kvs[1].delete(later, "a").unwrap();
        sync_all(&mut kvs, later, 2, &|_, _| true);
        assert!(kvs.iter().all(|k| k.get("a").is_none() && k.len() == 1));
        assert_eq!(kvs[0].list("", 10), vec![("b".to_string(), b"2".to_vec())]);
    }

    #[test]
    fn a_write_reaches_the_others_in_one_hop() {
        let mut kvs = replicas(3);
        let t = Time::from_millis(1_000);
        kvs[0].put(t, "k", b"v".to_vec()).unwrap();
        // No sync round: only the eager push.
        pump(&mut kvs, t, &|_, _| true);
        assert!(kvs.iter().all(|k| k.get("k") == Some(&b"v"[..])));
    }

    #[test]
    fn forged_and_foreign_entries_are_refused() {
        let mut kvs = replicas(2);
        let t = Time::from_millis(1_000);
        let mut e = kvs[0].put(t, "k", b"v".to_vec()).unwrap();
        e.value = Some(ByteBuf::from(b"forged".to_vec()));
        let from = kvs[0].me;
        kvs[1]
            .handle(t, from, KvMsg::Push { entries: vec![e] })
            .unwrap();
        assert_eq!(kvs[1].get("k"), None);
        assert_eq!(kvs[1].refused(), 1);
        // A stranger is refused outright.
        let stranger = NodeKey::from_seed([99; 32]).node_id();
        assert!(matches!(
            kvs[1].handle(t, stranger, KvMsg::Want { keys: vec![] }),
            Err(KvError::NotMember(_))
        ));
        // A write far in the future is put off, and merged once its time comes.
        let future = kvs[0]
            .put(Time::from_millis(10_000_000), "f", b"x".to_vec())
            .unwrap();
        kvs[1]
            .handle(
                t,
                from,
                KvMsg::Push {
                    entries: vec![future.clone()],
                },
            )
            .unwrap();
        assert_eq!((kvs[1].get("f"), kvs[1].deferred()), (None, 1));
        kvs[1]
            .handle(
                Time::from_millis(10_000_000),
                from,
                KvMsg::Push {
                    entries: vec![future],
                },
            )
            .unwrap();
        assert_eq!(kvs[1].get("f"), Some(&b"x"[..]));
    }

    #[test]
    fn tombstones_go_after_their_time() {
        let mut kvs = replicas(1);
        let t = Time::from_millis(1_000);
        kvs[0].put(t, "k", b"v".to_vec()).unwrap();
        kvs[0].delete(t, "k").unwrap();
        assert!(kvs[0].entry("k").is_some());
        let mut rng = DetRng::new(1);
        kvs[0].tick(t + Duration::from_secs(3600), &mut rng);
        assert!(kvs[0].entry("k").is_some());
        kvs[0].tick(t + Duration::from_secs(25 * 3600), &mut rng);
        assert!(kvs[0].entry("k").is_none());
        assert_eq!(kvs[0].poll_collected().as_deref(), Some("k"));
        assert_eq!(kvs[0].root(), replicas(1)[0].root());
        kvs[0].check_invariants().unwrap();
    }

    #[test]
    fn bad_keys_and_values_get_typed_errors() {
        let mut kvs = replicas(1);
        let t = Time::from_millis(1);
        assert!(matches!(kvs[0].put(t, "", vec![]), Err(KvError::Key(_))));
        assert!(matches!(
            kvs[0].put(t, "a\nb", vec![]),
            Err(KvError::Key(_))
        ));
        assert!(matches!(
            kvs[0].put(t, "k", vec![0; VALUE_BYTES_MAX + 1]),
            Err(KvError::ValueTooLong(_))
        ));
        let mut small = Kv::new(
            NodeKey::from_seed([1; 32]),
            KvConfig {
                keys_max: 1,
                ..KvConfig::default()
            },
        );
        small.put(t, "a", vec![]).unwrap();
        assert!(matches!(small.put(t, "b", vec![]), Err(KvError::Full(1))));
        small.put(t, "a", vec![1]).unwrap();
    }

    proptest! {
        /// Random writes and deletes on random replicas, with a partition for part
        /// of the run: once healed and synced, every replica holds the same map,
        /// and it is the map of the last write per key.
        #[test]
        fn replicas_converge_under_partitions(
            ops in proptest::collection::vec((0usize..4, 0u8..6, any::<bool>(), 0u64..5), 1..60),
            cut in 1usize..4,
            seed in any::<u64>(),
        ) {
            let mut kvs = replicas(4);
            let mut last: BTreeMap<String, (Stamp, Option<Vec<u8>>)> = BTreeMap::new();
            let mut now = Time::from_millis(1_000);
            let side = |i: usize| i < cut;
            for (step, (who, key, del, dt)) in ops.iter().enumerate() {
                now = now + Duration::from_millis(*dt);
                let key = format!("k{key}");
                let e = if *del {
                    kvs[*who].delete(now, &key).unwrap()
                } else {
                    kvs[*who].put(now, &key, vec![*who as u8, step as u8]).unwrap()
                };
                let s = e.stamp();
                if last.get(&key).is_none_or(|(old, _)| *old < s) {
                    last.insert(key, (s, e.value.map(|v| v.into_vec())));
                }
                if step % 5 == 0 {
                    sync_all(&mut kvs, now, seed ^ step as u64, &|i, j| side(i) == side(j));
                }
            }
            sync_all(&mut kvs, now, seed, &|_, _| true);
            let root = kvs[0].root();
            for k in &kvs {
                prop_assert_eq!(k.root(), root);
                for (key, (_, v)) in &last {
                    prop_assert_eq!(k.get(key).map(<[u8]>::to_vec), v.clone());
                }
            }
        }
    }
}
