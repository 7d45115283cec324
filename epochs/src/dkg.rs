//! The committee's distributed key generation, with no trusted dealer.
//!
//! The cryptography is commonware's Joint-Feldman DKG
//! (`bls12381::dkg::feldman_desmedt`): every member deals a random polynomial of
//! degree `q − 1` (`q = n − f`), sends each player its evaluation privately, and
//! publishes a commitment; players check their evaluation against the commitment
//! and acknowledge; a dealer's signed log records an ack or a public *reveal* for
//! every player, so a dealer cannot silently withhold. Summing the chosen dealers'
//! polynomials gives the group key and every player's share; no party ever holds
//! the group secret.
//!
//! That library does not decide *which* dealer logs count, and players must agree
//! on that exactly. This module adds that agreement, as a sans-IO state machine
//! over our mesh:
//!
//! 1. `start`: deal (one private [`DkgMessage::Dealing`] per player).
//! 2. Players acknowledge each valid dealing ([`DkgMessage::Ack`]).
//! 3. At `deal_ms`, each dealer signs its log and sends it to all ([`DkgMessage::Log`]).
//! 4. At `deal_ms + log_ms`, the round's leader (`committee[round mod n]`) sends the
//!    set of valid logs it holds ([`DkgMessage::Selection`]); at least `q` are needed.
//! 5. Each member finalizes with exactly that set and signs the digest of the
//!    public output (group key and public polynomial) with its node key
//!    ([`DkgMessage::Confirm`]).
//! 6. The round is done for a member once `q` members confirmed the same digest
//!    (including itself). A member that never gets there by `round_ms` reports
//!    [`DkgOutput::Failed`]; the driver starts the next round, with the next leader.
//!
//! A Byzantine leader can at worst make its round fail (members that finalized
//! different sets confirm different digests, and no digest reaches `q`).
//!
//! # Transport requirements
//!
//! A [`DkgMessage::Dealing`] carries a secret evaluation. The driver must send it
//! only to its one recipient, over the mesh's direct, noise-encrypted connection,
//! and never by gossip or relay. Every message is attributed to the
//! transport-authenticated sender, and a message whose sender is not on the
//! committee is refused.
//!
//! # Key material
//!
//! Members sign DKG acknowledgements and logs with their node identity key (the
//! same ed25519 key the allowlist admits), through commonware's ed25519 type. Its
//! signatures are over `varint(len(ns)) ‖ ns ‖ msg` with commonware's DKG
//! namespace, which cannot collide with our own `domain ‖ 0x00 ‖ msg` framing
//! (our domains start with `p`, never the length byte `0x25`).

use std::collections::BTreeMap;

use commonware_codec::{Decode, DecodeExt, Encode};
use commonware_cryptography::bls12381::dkg::feldman_desmedt::{
    Dealer, DealerPrivMsg, DealerPubMsg, Info, Logs, Output as FdOutput, Player, PlayerAck, Reveal,
    SignedDealerLog,
};
use commonware_cryptography::bls12381::primitives::sharing::Mode;
use commonware_cryptography::bls12381::primitives::variant::MinSig;
use commonware_cryptography::ed25519;
use commonware_parallel::Sequential;
use commonware_utils::N3f1;
use commonware_utils::ordered::Set;
use plexus_actors::{NodeId, Time};
use plexus_vocab::identity::{self, NodeKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::threshold::{PublicSharing, SecretShare};

/// Signature domain for output confirmations.
const CONFIRM_DOMAIN: &[u8] = b"plexus/dkg-confirm/v1";

/// Most committee members a DKG accepts.
pub const DKG_COMMITTEE_MAX: usize = crate::checkpoint::COMMITTEE_MAX;

/// DKG messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DkgMessage {
    /// A dealer's commitment and the recipient's private evaluation (direct only).
    Dealing {
        /// Round.
        round: u64,
        /// The public commitment.
        #[serde(with = "serde_bytes")]
        public: Vec<u8>,
        /// The recipient's secret evaluation.
        #[serde(with = "serde_bytes")]
        private: Vec<u8>,
    },
    /// A player's acknowledgement of a dealing (to the dealer).
    Ack {
        /// Round.
        round: u64,
        /// The signed ack.
        #[serde(with = "serde_bytes")]
        ack: Vec<u8>,
    },
    /// A dealer's signed log (to all).
    Log {
        /// Round.
        round: u64,
        /// The signed log.
        #[serde(with = "serde_bytes")]
        log: Vec<u8>,
    },
    /// The leader's choice of logs (to all).
    Selection {
        /// Round.
        round: u64,
        /// Signed logs.
        logs: Vec<serde_bytes::ByteBuf>,
    },
    /// A member's signature over the output digest (to all).
    Confirm {
        /// Round.
        round: u64,
        /// SHA-256 of the public output.
        digest: [u8; 32],
        /// ed25519 signature by the sender.
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
}

impl DkgMessage {
    /// The round the message belongs to.
    pub fn round(&self) -> u64 {
        match self {
            DkgMessage::Dealing { round, .. }
            | DkgMessage::Ack { round, .. }
            | DkgMessage::Log { round, .. }
            | DkgMessage::Selection { round, .. }
            | DkgMessage::Confirm { round, .. } => *round,
        }
    }
}

/// Where a DKG message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DkgRecipient {
    /// One node, privately.
    Node(NodeId),
    /// Every other committee member.
    Committee,
}

/// The result of a successful round, for one member.
#[derive(Clone, Debug)]
pub struct DkgOutcome {
    /// The round.
    pub round: u64,
    /// The committee, sorted (position = share index).
    pub committee: Vec<NodeId>,
    /// The public sharing: group key and per-share public keys.
    pub sharing: PublicSharing,
    /// This member's secret share.
    pub share: SecretShare,
    /// SHA-256 of the public output that `q` members confirmed.
    pub digest: [u8; 32],
}

/// What the DKG asks its driver to do.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DkgOutput {
    /// Send a message.
    Send {
        /// To whom.
        to: DkgRecipient,
        /// What.
        message: DkgMessage,
    },
    /// This member holds its share and `q` members confirmed the same output.
    Done(Box<DkgOutcome>),
    /// The round did not finish; start `round + 1`.
    Failed {
        /// The round.
        round: u64,
        /// Why.
        why: String,
    },
}

/// Why a DKG could not start or a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DkgError {
    /// This node or the committee is not usable (the config is at fault).
    #[error("dkg config: {0}")]
    Config(String),
    /// A message from outside the committee.
    #[error("{0} is not on the DKG committee")]
    NotOnCommittee(NodeId),
    /// For another round.
    #[error("message for round {found}, this is round {round}")]
    WrongRound {
        /// Ours.
        round: u64,
        /// Theirs.
        found: u64,
    },
    /// Malformed or invalid content (the sender is at fault).
    #[error("invalid {what} from {from}: {why}")]
    Invalid {
        /// Sender.
        from: NodeId,
        /// Message kind.
        what: &'static str,
        /// Why.
        why: String,
    },
}

type Pk = ed25519::PublicKey;
type Sk = ed25519::PrivateKey;

/// Phase timings of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkgTimings {
    /// From start until dealers finalize their logs.
    pub deal_ms: u64,
    /// From then until the leader selects logs.
    pub log_ms: u64,
    /// From start until the round gives up.
    pub round_ms: u64,
}

impl Default for DkgTimings {
    fn default() -> Self {
        Self {
            deal_ms: 3_000,
            log_ms: 2_000,
            round_ms: 20_000,
        }
    }
}

/// One member's state in one DKG round.
pub struct DkgRound {
    round: u64,
    me: NodeId,
    key: NodeKey,
    committee: Vec<NodeId>,
    pks: Vec<Pk>,
    info: Info<MinSig, Pk>,
    timings: DkgTimings,
    start: Time,
    rng: ChaCha20Rng,
    dealer: Option<Dealer<MinSig, Sk>>,
    player: Option<Player<MinSig, Sk>>,
    logs: BTreeMap<NodeId, Vec<u8>>,
    selected: bool,
    result: Option<(FdOutput<MinSig, Pk>, SecretShare, [u8; 32])>,
    confirms: BTreeMap<NodeId, [u8; 32]>,
    finished: bool,
    outbox: std::collections::VecDeque<DkgOutput>,
}

impl std::fmt::Debug for DkgRound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkgRound")
            .field("round", &self.round)
            .field("me", &self.me)
            .field("logs", &self.logs.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// commonware's ed25519 key for a node key (the same secret).
fn signer_of(key: &NodeKey) -> Result<Sk, DkgError> {
    Sk::decode(key.seed().to_vec()).map_err(|e| DkgError::Config(format!("node key: {e}")))
}

fn node_of(pk: &Pk) -> Result<NodeId, DkgError> {
    let bytes: [u8; 32] = pk
        .encode()
        .as_ref()
        .try_into()
        .map_err(|_| DkgError::Config("ed25519 key is not 32 bytes".into()))?;
    Ok(NodeId::from_public_key(bytes))
}

fn pk_of(node: &NodeId) -> Result<Pk, DkgError> {
    Pk::decode(node.to_bytes().to_vec())
        .map_err(|e| DkgError::Config(format!("{node} is not an ed25519 key: {e}")))
}

fn confirm_bytes(round: u64, digest: &[u8; 32]) -> Vec<u8> {
    let mut m = round.to_be_bytes().to_vec();
    m.extend_from_slice(digest);
    m
}

impl DkgRound {
    /// Starts round `round` among `committee` (every member deals and plays) at
    /// `now`. `namespace` binds the round to the network. `seed` must be secret
    /// randomness (the dealt polynomial comes from it): the OS in production.
    pub fn start(
        namespace: &[u8],
        round: u64,
        key: NodeKey,
        committee: &[NodeId],
        timings: DkgTimings,
        now: Time,
        seed: [u8; 32],
    ) -> Result<Self, DkgError> {
        let mut committee = committee.to_vec();
        committee.sort();
        committee.dedup();
        if committee.is_empty() || committee.len() > DKG_COMMITTEE_MAX {
            return Err(DkgError::Config(format!(
                "committee of {} (1..={DKG_COMMITTEE_MAX})",
                committee.len()
            )));
        }
        let me = key.node_id();
        if committee.binary_search(&me).is_err() {
            return Err(DkgError::Config(format!("{me} is not on the committee")));
        }
        let pks = committee.iter().map(pk_of).collect::<Result<Vec<_>, _>>()?;
        let set = Set::from_iter_dedup(pks.iter().cloned());
        let info = Info::<MinSig, Pk>::new::<N3f1>(
            namespace,
            round,
            None,
            Mode::NonZeroCounter,
            Reveal::V1,
            set.clone(),
            set,
        )
        .map_err(|e| DkgError::Config(format!("{e:?}")))?;
        let signer = signer_of(&key)?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let (dealer, public, privates) =
            Dealer::start::<N3f1>(&mut rng, info.clone(), signer.clone(), None)
                .map_err(|e| DkgError::Config(format!("{e:?}")))?;
        let player =
            Player::new(info.clone(), signer).map_err(|e| DkgError::Config(format!("{e:?}")))?;
        let mut this = Self {
            round,
            me,
            key,
            committee,
            pks,
            info,
            timings,
            start: now,
            rng,
            dealer: Some(dealer),
            player: Some(player),
            logs: BTreeMap::new(),
            selected: false,
            result: None,
            confirms: BTreeMap::new(),
            finished: false,
            outbox: Default::default(),
        };
        let public_bytes = public.encode().to_vec();
        for (pk, private) in privates {
            let to = node_of(&pk)?;
            let message = DkgMessage::Dealing {
                round,
                public: public_bytes.clone(),
                private: private.encode().to_vec(),
            };
            if to == me {
                let _ = this.on_dealing(me, &public_bytes, &private.encode());
            } else {
                this.outbox.push_back(DkgOutput::Send {
                    to: DkgRecipient::Node(to),
                    message,
                });
            }
        }
        Ok(this)
    }

    /// The round number.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The leader of this round.
    pub fn leader(&self) -> NodeId {
        self.committee[(self.round % self.committee.len() as u64) as usize]
    }

    /// The committee's quorum `q = n − f`.
    pub fn quorum(&self) -> usize {
        let n = self.committee.len();
        n - (n - 1) / 3
    }

    fn max_n(&self) -> std::num::NonZeroU32 {
        std::num::NonZeroU32::new(self.committee.len() as u32).unwrap_or(std::num::NonZeroU32::MIN)
    }

    /// A message from `from`.
    pub fn handle_message(
        &mut self,
        now: Time,
        from: NodeId,
        message: DkgMessage,
    ) -> Result<(), DkgError> {
        if self.committee.binary_search(&from).is_err() {
            return Err(DkgError::NotOnCommittee(from));
        }
        let round = message.round();
        if round != self.round {
            return Err(DkgError::WrongRound {
                round: self.round,
                found: round,
            });
        }
        let result = match message {
            DkgMessage::Dealing {
                public, private, ..
            } => self.on_dealing(from, &public, &private),
            DkgMessage::Ack { ack, .. } => self.on_ack(from, &ack),
            DkgMessage::Log { log, .. } => self.on_log(from, &log),
            DkgMessage::Selection { logs, .. } => self.on_selection(from, logs),
            DkgMessage::Confirm {
                digest, signature, ..
            } => self.on_confirm(from, digest, &signature),
        };
        self.handle_timeout(now);
        result
    }

    fn invalid(from: NodeId, what: &'static str, why: impl std::fmt::Debug) -> DkgError {
        DkgError::Invalid {
            from,
            what,
            why: format!("{why:?}"),
        }
    }

    fn on_dealing(&mut self, from: NodeId, public: &[u8], private: &[u8]) -> Result<(), DkgError> {
        let pub_msg = DealerPubMsg::<MinSig>::decode_cfg(public.to_vec(), &self.max_n())
            .map_err(|e| Self::invalid(from, "dealing", e))?;
        let priv_msg = DealerPrivMsg::decode(private.to_vec())
            .map_err(|e| Self::invalid(from, "dealing", e))?;
        let Some(player) = self.player.as_mut() else {
            return Ok(()); // already finalized: late dealings are moot
        };
        let dealer_pk = pk_of(&from)?;
        match player
            .dealer_message::<N3f1>(dealer_pk, pub_msg, priv_msg)
            .map_err(|e| Self::invalid(from, "dealing", e))?
        {
            None => Ok(()),
            Some(ack) => {
                let ack = ack.encode().to_vec();
                if from == self.me {
                    self.on_ack(from, &ack)
                } else {
                    self.outbox.push_back(DkgOutput::Send {
                        to: DkgRecipient::Node(from),
                        message: DkgMessage::Ack {
                            round: self.round,
                            ack,
                        },
                    });
                    Ok(())
                }
            }
        }
    }

    fn on_ack(&mut self, from: NodeId, ack: &[u8]) -> Result<(), DkgError> {
        let ack =
            PlayerAck::<Pk>::decode(ack.to_vec()).map_err(|e| Self::invalid(from, "ack", e))?;
        let Some(dealer) = self.dealer.as_mut() else {
            return Ok(()); // log already signed
        };
        dealer
            .receive_player_ack(pk_of(&from)?, ack)
            .map_err(|e| Self::invalid(from, "ack", e))
    }

    fn on_log(&mut self, from: NodeId, log: &[u8]) -> Result<(), DkgError> {
        if self.logs.contains_key(&from) {
            return Ok(());
        }
        let signed = SignedDealerLog::<MinSig, Pk>::decode_cfg(log.to_vec(), &self.max_n())
            .map_err(|e| Self::invalid(from, "log", e))?;
        match signed.check(&self.info) {
            Some((pk, _)) if node_of(&pk)? == from => {
                self.logs.insert(from, log.to_vec());
                Ok(())
            }
            _ => Err(Self::invalid(from, "log", "signature or content")),
        }
    }

    fn on_selection(
        &mut self,
        from: NodeId,
        logs: Vec<serde_bytes::ByteBuf>,
    ) -> Result<(), DkgError> {
        if from != self.leader() {
            return Err(Self::invalid(from, "selection", "not this round's leader"));
        }
        if self.selected {
            return Ok(());
        }
        if logs.len() < self.quorum() || logs.len() > self.committee.len() {
            return Err(Self::invalid(from, "selection", "not a quorum of logs"));
        }
        let mut chosen = Logs::<MinSig, Pk, N3f1>::new(self.info.clone());
        let mut dealers = Vec::new();
        for bytes in &logs {
            let signed = SignedDealerLog::<MinSig, Pk>::decode_cfg(bytes.to_vec(), &self.max_n())
                .map_err(|e| Self::invalid(from, "selection", e))?;
            let (pk, log) = signed
                .check(&self.info)
                .ok_or_else(|| Self::invalid(from, "selection", "a log does not verify"))?;
            let dealer = node_of(&pk)?;
            if dealers.contains(&dealer) {
                return Err(Self::invalid(from, "selection", "a dealer twice"));
            }
            dealers.push(dealer);
            chosen.record(pk, log);
        }
        self.selected = true;
        let Some(player) = self.player.take() else {
            return Ok(());
        };
        match player.finalize::<N3f1>(&mut self.rng, chosen, &Sequential) {
            Ok((output, share)) => {
                let digest: [u8; 32] = Sha256::digest(output.encode()).into();
                let signature = self
                    .key
                    .sign(CONFIRM_DOMAIN, &confirm_bytes(self.round, &digest))
                    .to_vec();
                self.result = Some((output, share, digest));
                self.confirms.insert(self.me, digest);
                self.outbox.push_back(DkgOutput::Send {
                    to: DkgRecipient::Committee,
                    message: DkgMessage::Confirm {
                        round: self.round,
                        digest,
                        signature,
                    },
                });
                self.maybe_done();
                Ok(())
            }
            Err(e) => {
                self.fail(format!("finalize: {e:?}"));
                Ok(())
            }
        }
    }

    fn on_confirm(
        &mut self,
        from: NodeId,
        digest: [u8; 32],
        signature: &[u8],
    ) -> Result<(), DkgError> {
        identity::verify(
            &from,
            CONFIRM_DOMAIN,
            &confirm_bytes(self.round, &digest),
            signature,
        )
        .map_err(|e| Self::invalid(from, "confirm", e))?;
        self.confirms.entry(from).or_insert(digest);
        self.maybe_done();
        Ok(())
    }

    fn maybe_done(&mut self) {
        if self.finished {
            return;
        }
        let Some((output, share, digest)) = &self.result else {
            return;
        };
        let agreeing = self.confirms.values().filter(|d| *d == digest).count();
        if agreeing < self.quorum() {
            return;
        }
        self.finished = true;
        self.outbox.push_back(DkgOutput::Done(Box::new(DkgOutcome {
            round: self.round,
            committee: self.committee.clone(),
            sharing: output.public().clone(),
            share: share.clone(),
            digest: *digest,
        })));
    }

    fn fail(&mut self, why: String) {
        if !self.finished {
            self.finished = true;
            self.outbox.push_back(DkgOutput::Failed {
                round: self.round,
                why,
            });
        }
    }

    /// Time passed: sign the log, select, give up.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.finished {
            return;
        }
        let since_ms = now.as_micros().saturating_sub(self.start.as_micros()) / 1000;
        if since_ms >= self.timings.deal_ms
            && let Some(dealer) = self.dealer.take()
        {
            let log = dealer.finalize::<N3f1>().encode().to_vec();
            let _ = self.on_log(self.me, &log);
            self.outbox.push_back(DkgOutput::Send {
                to: DkgRecipient::Committee,
                message: DkgMessage::Log {
                    round: self.round,
                    log,
                },
            });
        }
        if since_ms >= self.timings.deal_ms.saturating_add(self.timings.log_ms)
            && self.leader() == self.me
            && !self.selected
            && self.logs.len() >= self.quorum()
        {
            let logs: Vec<serde_bytes::ByteBuf> = self
                .logs
                .values()
                .map(|l| serde_bytes::ByteBuf::from(l.clone()))
                .collect();
            self.outbox.push_back(DkgOutput::Send {
                to: DkgRecipient::Committee,
                message: DkgMessage::Selection {
                    round: self.round,
                    logs: logs.clone(),
                },
            });
            let me = self.me;
            let _ = self.on_selection(me, logs);
        }
        if since_ms >= self.timings.round_ms {
            self.fail("timed out".into());
        }
    }

    /// The next instant with work for [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.finished {
            return None;
        }
        let at = |ms: u64| {
            Time::from_micros(
                self.start
                    .as_micros()
                    .saturating_add(ms.saturating_mul(1000)),
            )
        };
        let mut steps = vec![self.timings.round_ms];
        if self.dealer.is_some() {
            steps.push(self.timings.deal_ms);
        }
        if !self.selected && self.leader() == self.me {
            steps.push(self.timings.deal_ms.saturating_add(self.timings.log_ms));
        }
        steps.into_iter().map(at).min()
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<DkgOutput> {
        self.outbox.pop_front()
    }

    /// The ed25519 public keys of the committee (for diagnostics).
    pub fn committee(&self) -> &[NodeId] {
        let _ = &self.pks;
        &self.committee
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold;

    /// Drives `n` members to completion with instant delivery; returns outcomes.
    fn run(n: u8, silent: &[u8]) -> Vec<Option<DkgOutcome>> {
        let keys: Vec<NodeKey> = (1..=n).map(|i| NodeKey::from_seed([i; 32])).collect();
        let committee: Vec<NodeId> = keys.iter().map(|k| k.node_id()).collect();
        let t0 = Time::from_millis(1_000);
        let mut members: Vec<Option<DkgRound>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                if silent.contains(&(i as u8)) {
                    return None;
                }
                Some(
                    DkgRound::start(
                        b"test",
                        0,
                        k.clone(),
                        &committee,
                        DkgTimings::default(),
                        t0,
                        [i as u8; 32],
                    )
                    .unwrap(),
                )
            })
            .collect();
        let mut outcomes: Vec<Option<DkgOutcome>> = vec![None; n as usize];
        let mut now = t0;
        for _step in 0..200 {
            let mut queue = Vec::new();
            for (i, m) in members.iter_mut().enumerate() {
                let Some(m) = m else { continue };
                while let Some(o) = m.poll_output() {
                    match o {
                        DkgOutput::Send { to, message } => queue.push((i, to, message)),
                        DkgOutput::Done(d) => outcomes[i] = Some(*d),
                        DkgOutput::Failed { why, .. } => panic!("member {i} failed: {why}"),
                    }
                }
            }
            if queue.is_empty() {
                let next = members
                    .iter()
                    .flatten()
                    .filter_map(|m| m.poll_timeout())
                    .min();
                match next {
                    Some(t) => {
                        now = now.max(t);
                        for m in members.iter_mut().flatten() {
                            m.handle_timeout(now);
                        }
                    }
                    None => break,
                }
                continue;
            }
            for (i, to, message) in queue {
                let from = committee[i];
                for (j, m) in members.iter_mut().enumerate() {
                    let Some(m) = m else { continue };
                    let deliver = match &to {
                        DkgRecipient::Node(n) => *n == committee[j],
                        DkgRecipient::Committee => j != i,
                    };
                    if deliver {
                        m.handle_message(now, from, message.clone()).unwrap();
                    }
                }
            }
        }
        outcomes
    }

    #[test]
    fn four_members_agree_on_a_key_and_their_shares_sign_under_it() {
        let out = run(4, &[]);
        let done: Vec<&DkgOutcome> = out.iter().flatten().collect();
        assert_eq!(done.len(), 4, "every member finished");
        let key = done[0].sharing.public();
        assert!(
            done.iter()
                .all(|d| d.sharing.public() == key && d.digest == done[0].digest)
        );
        // Any t = 3 shares sign under the group key.
        let msg = threshold::signing_message(&[0; 32], 1, &[1; 32]);
        let partials: Vec<_> = done[1..]
            .iter()
            .map(|d| {
                let (i, b) = threshold::sign_partial(&d.share, &msg);
                threshold::partial(i, &b).unwrap()
            })
            .collect();
        let sig = threshold::combine(&done[0].sharing, &msg, &partials).unwrap();
        assert_eq!(threshold::verify(key, &msg, &sig), Ok(()));
    }

    #[test]
    fn a_silent_member_does_not_stop_the_rest() {
        // Member 3 never starts (crashed): the other three still reach q = 3.
        let out = run(4, &[3]);
        let done: Vec<&DkgOutcome> = out.iter().flatten().collect();
        assert_eq!(done.len(), 3);
        assert!(out[3].is_none());
    }

    #[test]
    fn outsiders_and_other_rounds_are_refused() {
        let keys: Vec<NodeKey> = (1..=4).map(|i| NodeKey::from_seed([i; 32])).collect();
        let committee: Vec<NodeId> = keys.iter().map(|k| k.node_id()).collect();
        let mut m = DkgRound::start(
            b"t",
            5,
            keys[0].clone(),
            &committee,
            DkgTimings::default(),
            Time::ZERO,
            [0; 32],
        )
        .unwrap();
        let outsider = NodeKey::from_seed([99; 32]).node_id();
        let msg = DkgMessage::Ack {
            round: 5,
            ack: vec![],
        };
        assert_eq!(
            m.handle_message(Time::ZERO, outsider, msg),
            Err(DkgError::NotOnCommittee(outsider))
        );
        let msg = DkgMessage::Ack {
            round: 4,
            ack: vec![],
        };
        assert!(matches!(
            m.handle_message(Time::ZERO, committee[1], msg),
            Err(DkgError::WrongRound { .. })
        ));
        let garbage = DkgMessage::Log {
            round: 5,
            log: vec![1, 2, 3],
        };
        assert!(matches!(
            m.handle_message(Time::ZERO, committee[1], garbage),
            Err(DkgError::Invalid { .. })
        ));
    }
}
