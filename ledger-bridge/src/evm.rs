//! The EVM ledger: the `CheckpointAnchor` contract (`contracts/CheckpointAnchor.sol`)
//! over JSON-RPC, through `alloy`.
//!
//! The contract verifies the threshold BLS signature itself with the EIP-2537
//! precompiles, so the chain needs Prague or later; this client only converts the
//! compressed points to the EIP-2537 forms ([`crate::eip2537`]), sends, and reads
//! state back. The ABI and creation code are the committed build output
//! `contracts/out/CheckpointAnchor.json`, compiled into this crate.
//!
//! # Anchoring, step by step ([`EvmAnchor::anchor_signature`])
//!
//! 1. Read `checkpointOf(epoch)`. The same hash: [`AnchorOutcome::AlreadyAnchored`],
//!    and no transaction is sent. Another hash: [`AnchorError::Conflict`].
//! 2. Simulate the call (`eth_call`, with the configured gas limit if there is one),
//!    so a refusal comes back as a typed error ([`AnchorError::InvalidSignature`],
//!    [`AnchorError::InsufficientGas`], …) decoded from the revert data, and no
//!    transaction that would fail is sent.
//! 3. Send, wait for the receipt (bounded by [`EvmConfig::receipt_timeout`]), and
//!    read `anchoredAt(epoch)` at the receipt's block: if that block anchored it, the
//!    outcome is [`AnchorOutcome::Anchored`] with the block, the transaction hash and
//!    the gas used; if another submitter's transaction got there first (ours was
//!    then a no-op, as the contract is idempotent), it is
//!    [`AnchorOutcome::AlreadyAnchored`].
//!
//! # Nonces and concurrency
//!
//! Each transaction's nonce is read from the node (`eth_getTransactionCount` at
//! `pending`), so a failed send leaves no gap and a restart needs no nonce state.
//! Anchors from one account should go one at a time (the node driver anchors an
//! epoch after the previous one settled): two concurrent sends from one account
//! can read the same nonce, and one of them is then refused.
//!
//! # Restarts
//!
//! The client keeps no state of its own: everything is read from the chain. A new
//! [`EvmAnchor::connect`] to the same contract address resumes where the last one
//! stopped, and resubmitting anything it is unsure of (say, after a receipt wait
//! timed out) is safe: either it is anchored already and nothing is sent, or it is
//! anchored now.
//!
//! # Finality
//!
//! [`EvmAnchor::finality`] counts confirmations from a consistent snapshot: the head
//! block number, then the contract's state *at that block*. An anchor is
//! [`AnchorStatus::Final`] once the including block has `k` confirmations (the
//! including block counts as the first), [`EvmConfig::confirmations`] by default. A
//! reorganisation that drops the anchor shows as [`AnchorStatus::NotAnchored`]
//! again. On Ethereum L1, `k` stands in for the chain's own finality (the
//! `finalized` block tag); choose it with the chain's reorg depth in mind.

use std::time::Duration;

use alloy::eips::BlockId;
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use plexus_epochs::checkpoint::{CheckpointHash, SignedCheckpoint, hex};

use crate::eip2537;
use crate::{
    Anchor, AnchorError, AnchorOutcome, AnchorRecord, AnchorStatus, EvmTransaction, Location,
};

mod bindings {
    //! Generated from the committed ABI and creation code.
    #![allow(missing_docs)]
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        CheckpointAnchor,
        "contracts/out/CheckpointAnchor.json"
    );
}

use bindings::CheckpointAnchor::{self, CheckpointAnchorErrors, CheckpointAnchorInstance};

/// How to reach the chain and who pays.
#[derive(Clone)]
pub struct EvmConfig {
    /// The JSON-RPC endpoint (`http://` or `https://`).
    pub rpc_url: String,
    /// The secp256k1 secret key of the account that sends (and pays for) anchor
    /// transactions. Anyone may submit: the group signature is the authority.
    pub secret_key: [u8; 32],
    /// Confirmations for [`AnchorStatus::Final`] (`k`; the including block is the
    /// first). 0 makes an anchor final once included.
    pub confirmations: u64,
    /// The gas limit for anchor transactions; `None` estimates each one. A new epoch
    /// costs about 200k gas (`contracts/out/gas.json`).
    pub gas_limit: Option<u64>,
    /// How long to wait for a sent transaction's receipt before giving up with
    /// [`AnchorError::Rpc`] (the transaction may still be mined: resubmit to find
    /// out, which is safe).
    pub receipt_timeout: Duration,
}

impl EvmConfig {
    /// A config with defaults: 12 confirmations, estimated gas, a two-minute receipt
    /// timeout.
    pub fn new(rpc_url: impl Into<String>, secret_key: [u8; 32]) -> Self {
        Self {
            rpc_url: rpc_url.into(),
            secret_key,
            confirmations: 12,
            gas_limit: None,
            receipt_timeout: Duration::from_secs(120),
        }
    }
}

impl std::fmt::Debug for EvmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmConfig")
            .field("rpc_url", &self.rpc_url)
            .field("secret_key", &"<redacted>")
            .field("confirmations", &self.confirmations)
            .field("gas_limit", &self.gas_limit)
            .field("receipt_timeout", &self.receipt_timeout)
            .finish()
    }
}

/// Why the contract could not be deployed or connected to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvmSetupError {
    // --- The caller is at fault. ---
    /// The RPC URL does not parse.
    #[error("bad rpc url: {0}")]
    BadUrl(String),
    /// The secret key is not a valid secp256k1 scalar.
    #[error("the secret key is not a valid secp256k1 key")]
    BadSecretKey,
    /// The group key is not a valid compressed G2 point.
    #[error("the group key is not a valid compressed G2 point")]
    BadGroupKey,
    /// There is no contract at the address.
    #[error("no contract at {0}")]
    NotAContract(String),
    /// The contract at the address anchors for another network or group key.
    #[error("the contract at the address has another {what}")]
    WrongContract {
        /// `"network"` or `"group key"`.
        what: &'static str,
    },

    // --- The chain or the way to it is at fault. ---
    /// The deployment failed (reverted, or no address in the receipt).
    #[error("deployment failed: {0}")]
    DeployFailed(String),
    /// The RPC endpoint failed or answered nonsense.
    #[error("rpc: {0}")]
    Rpc(String),
}

fn setup_rpc(e: impl std::fmt::Display) -> EvmSetupError {
    EvmSetupError::Rpc(e.to_string())
}

fn rpc(e: impl std::fmt::Display) -> AnchorError {
    AnchorError::Rpc(e.to_string())
}

/// A client of one `CheckpointAnchor` contract (module docs).
#[derive(Clone)]
pub struct EvmAnchor {
    provider: DynProvider,
    contract: CheckpointAnchorInstance<DynProvider>,
    sender: Address,
    confirmations: u64,
    gas_limit: Option<u64>,
    receipt_timeout: Duration,
}

impl std::fmt::Debug for EvmAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmAnchor")
            .field("contract", self.contract.address())
            .field("sender", &self.sender)
            .field("confirmations", &self.confirmations)
            .finish()
    }
}

impl EvmAnchor {
    async fn provider(config: &EvmConfig) -> Result<(DynProvider, Address), EvmSetupError> {
        let signer = PrivateKeySigner::from_bytes(&B256::from(config.secret_key))
            .map_err(|_| EvmSetupError::BadSecretKey)?;
        let sender = signer.address();
        let url: alloy::transports::http::reqwest::Url = config
            .rpc_url
            .parse()
            .map_err(|e| EvmSetupError::BadUrl(format!("{}: {e}", config.rpc_url)))?;
        // Nonces come from the node (`pending`) for every transaction, not from a
        // local counter, so a send that fails leaves no gap behind it.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(signer)
            .connect_http(url)
            .erased();
        Ok((provider, sender))
    }

    fn with(config: &EvmConfig, provider: DynProvider, sender: Address, at: Address) -> Self {
        Self {
            contract: CheckpointAnchor::new(at, provider.clone()),
            provider,
            sender,
            confirmations: config.confirmations,
            gas_limit: config.gas_limit,
            receipt_timeout: config.receipt_timeout,
        }
    }

    /// Deploys a new `CheckpointAnchor` for `network` and the compressed 96-byte
    /// `group_key`, and returns a client of it.
    pub async fn deploy(
        config: &EvmConfig,
        network: [u8; 32],
        group_key: &[u8],
    ) -> Result<Self, EvmSetupError> {
        let key =
            eip2537::group_key_to_eip2537(group_key).map_err(|_| EvmSetupError::BadGroupKey)?;
        let (provider, sender) = Self::provider(config).await?;
        let deployed = CheckpointAnchor::deploy(
            provider.clone(),
            B256::from(network),
            Bytes::from(key.to_vec()),
        )
        .await
        .map_err(|e| match e.as_revert_data() {
            Some(data) => EvmSetupError::DeployFailed(format!("reverted 0x{}", hex(&data))),
            None => setup_rpc(e),
        })?;
        Ok(Self::with(config, provider, sender, *deployed.address()))
    }

    /// A client of the contract already at `address`, after checking that it anchors
    /// for `network` and the compressed `group_key`. This is how a restarted node
    /// resumes: all state is on chain.
    pub async fn connect(
        config: &EvmConfig,
        address: [u8; 20],
        network: [u8; 32],
        group_key: &[u8],
    ) -> Result<Self, EvmSetupError> {
        let key =
            eip2537::group_key_to_eip2537(group_key).map_err(|_| EvmSetupError::BadGroupKey)?;
        let (provider, sender) = Self::provider(config).await?;
        let at = Address::from(address);
        if provider
            .get_code_at(at)
            .await
            .map_err(setup_rpc)?
            .is_empty()
        {
            return Err(EvmSetupError::NotAContract(at.to_string()));
        }
        let client = Self::with(config, provider, sender, at);
        let on_chain_network = client
            .contract
            .networkId()
            .call()
            .await
            .map_err(setup_rpc)?;
        if on_chain_network != B256::from(network) {
            return Err(EvmSetupError::WrongContract { what: "network" });
        }
        let on_chain_key = client.contract.groupKey().call().await.map_err(setup_rpc)?;
        if on_chain_key.as_ref() != key.as_slice() {
            return Err(EvmSetupError::WrongContract { what: "group key" });
        }
        Ok(client)
    }

    /// The contract's address.
    pub fn address(&self) -> [u8; 20] {
        self.contract.address().0.0
    }

    /// The account that sends anchor transactions.
    pub fn sender(&self) -> [u8; 20] {
        self.sender.0.0
    }

    /// Anchors `checkpoint_hash` for `epoch` with the compressed 48-byte group
    /// `signature` over the epoch's signing message (module docs, step by step).
    pub async fn anchor_signature(
        &self,
        epoch: u64,
        checkpoint_hash: &CheckpointHash,
        signature: &[u8],
    ) -> Result<AnchorOutcome, AnchorError> {
        let malformed = |why: &str| AnchorError::Malformed {
            epoch,
            why: why.to_string(),
        };
        if *checkpoint_hash == [0; 32] {
            return Err(malformed("the zero checkpoint hash is reserved"));
        }
        // As on chain: a signature that is not even a point is not the group's.
        let sig = eip2537::signature_to_eip2537(signature)
            .map_err(|_| AnchorError::InvalidSignature { epoch })?;

        if let Some(record) = self.record(epoch).await? {
            return if record.checkpoint_hash == *checkpoint_hash {
                Ok(AnchorOutcome::AlreadyAnchored(record))
            } else {
                Err(AnchorError::Conflict {
                    epoch,
                    anchored: record.checkpoint_hash,
                    offered: *checkpoint_hash,
                })
            };
        }

        let mut call = self.contract.anchor(
            epoch,
            B256::from(*checkpoint_hash),
            Bytes::from(sig.to_vec()),
        );
        call = call.from(self.sender);
        if let Some(gas) = self.gas_limit {
            call = call.gas(gas);
        }
        call.call()
            .await
            .map_err(|e| refusal(epoch, checkpoint_hash, &e))?;
        let pending = call
            .send()
            .await
            .map_err(|e| refusal(epoch, checkpoint_hash, &e))?;
        let receipt = pending
            .with_timeout(Some(self.receipt_timeout))
            .get_receipt()
            .await
            .map_err(rpc)?;
        let tx = receipt.transaction_hash;
        let block = receipt
            .block_number
            .ok_or_else(|| rpc(format!("receipt of {tx} has no block number")))?;
        if !receipt.status() {
            return Err(AnchorError::Reverted {
                epoch,
                reason: format!("transaction {tx} failed in block {block}"),
            });
        }
        let at = BlockId::number(block);
        let anchored_at = self
            .contract
            .anchoredAt(epoch)
            .block(at)
            .call()
            .await
            .map_err(rpc)?;
        let anchored = self
            .contract
            .checkpointOf(epoch)
            .block(at)
            .call()
            .await
            .map_err(rpc)?;
        if anchored != B256::from(*checkpoint_hash) {
            return Err(AnchorError::Reverted {
                epoch,
                reason: format!(
                    "transaction {tx} succeeded but the contract holds 0x{} for the epoch",
                    hex(anchored.as_slice())
                ),
            });
        }
        let record = AnchorRecord {
            epoch,
            checkpoint_hash: *checkpoint_hash,
            location: Location::Evm { block: anchored_at },
        };
        if anchored_at != block {
            // Another submitter's transaction anchored it first; ours was a no-op.
            return Ok(AnchorOutcome::AlreadyAnchored(record));
        }
        Ok(AnchorOutcome::Anchored {
            record,
            transaction: Some(EvmTransaction {
                hash: tx.0,
                block,
                gas_used: receipt.gas_used,
            }),
        })
    }

    /// The head block number, and the epoch's anchor in the state at that block.
    async fn snapshot(&self, epoch: u64) -> Result<(u64, Option<AnchorRecord>), AnchorError> {
        let head = self.provider.get_block_number().await.map_err(rpc)?;
        let at = BlockId::number(head);
        let hash = self
            .contract
            .checkpointOf(epoch)
            .block(at)
            .call()
            .await
            .map_err(rpc)?;
        if hash.is_zero() {
            return Ok((head, None));
        }
        let block = self
            .contract
            .anchoredAt(epoch)
            .block(at)
            .call()
            .await
            .map_err(rpc)?;
        Ok((
            head,
            Some(AnchorRecord {
                epoch,
                checkpoint_hash: hash.0,
                location: Location::Evm { block },
            }),
        ))
    }

    /// The anchor of `epoch` in the head block's state.
    pub async fn record(&self, epoch: u64) -> Result<Option<AnchorRecord>, AnchorError> {
        Ok(self.snapshot(epoch).await?.1)
    }

    /// How settled `epoch`'s anchor is with `k` confirmations required (module docs).
    pub async fn finality(&self, epoch: u64, k: u64) -> Result<AnchorStatus, AnchorError> {
        let (head, record) = self.snapshot(epoch).await?;
        let Some(AnchorRecord {
            location: Location::Evm { block },
            ..
        }) = record
        else {
            return Ok(AnchorStatus::NotAnchored);
        };
        let confirmations = head.saturating_sub(block).saturating_add(1);
        Ok(if confirmations >= k {
            AnchorStatus::Final
        } else {
            AnchorStatus::Included { confirmations }
        })
    }

    /// The highest epoch anchored, in the head block's state.
    pub async fn latest_epoch(&self) -> Result<Option<u64>, AnchorError> {
        let head = self.provider.get_block_number().await.map_err(rpc)?;
        let at = BlockId::number(head);
        let latest = self
            .contract
            .latestEpoch()
            .block(at)
            .call()
            .await
            .map_err(rpc)?;
        // `latestEpoch` is 0 both before any anchor and after epoch 0's.
        let hash = self
            .contract
            .checkpointOf(latest)
            .block(at)
            .call()
            .await
            .map_err(rpc)?;
        Ok((!hash.is_zero()).then_some(latest))
    }
}

/// A refused call or send as a typed error, from the revert data where there is any.
fn refusal(epoch: u64, offered: &CheckpointHash, e: &alloy::contract::Error) -> AnchorError {
    use CheckpointAnchorErrors as E;
    match e.as_decoded_interface_error::<CheckpointAnchorErrors>() {
        Some(E::InvalidSignature(_)) => AnchorError::InvalidSignature { epoch },
        Some(E::ConflictingAnchor(c)) => AnchorError::Conflict {
            epoch: c.epoch,
            anchored: c.existing.0,
            offered: *offered,
        },
        Some(E::InsufficientGas(_)) => AnchorError::InsufficientGas { epoch },
        Some(E::PrecompileFailed(_)) => AnchorError::PrecompileFailed,
        Some(E::BadSignatureLength(_)) => AnchorError::Malformed {
            epoch,
            why: "signature is not 128 bytes".into(),
        },
        Some(E::ZeroCheckpointHash(_)) => AnchorError::Malformed {
            epoch,
            why: "the zero checkpoint hash is reserved".into(),
        },
        Some(other) => AnchorError::Reverted {
            epoch,
            reason: format!("{other:?}"),
        },
        None => match e.as_revert_data() {
            Some(data) => AnchorError::Reverted {
                epoch,
                reason: format!("revert data 0x{}", hex(&data)),
            },
            None => rpc(e),
        },
    }
}

#[async_trait]
impl Anchor for EvmAnchor {
    /// Anchors the signed checkpoint's hash and signature; the contract checks the
    /// signature against its own group key and network.
    async fn anchor(&self, signed: &SignedCheckpoint) -> Result<AnchorOutcome, AnchorError> {
        let epoch = signed.checkpoint.epoch;
        let hash = signed.hash().map_err(|e| AnchorError::Malformed {
            epoch,
            why: e.to_string(),
        })?;
        self.anchor_signature(epoch, &hash, &signed.signature).await
    }

    async fn anchored(&self, epoch: u64) -> Result<Option<AnchorRecord>, AnchorError> {
        self.record(epoch).await
    }

    async fn status(&self, epoch: u64) -> Result<AnchorStatus, AnchorError> {
        self.finality(epoch, self.confirmations).await
    }

    async fn latest(&self) -> Result<Option<u64>, AnchorError> {
        self.latest_epoch().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_KEY: &str = "9772c16106e9c70b2073dfe17989225dd10f3adb675365fc6d833587ad4cbd3ae692ad1e20679003f676b0b089e83feb058b3e8b9fc9552e30787cb4a541a1c3bf67a02e91fc648b2c19f4bb333e14c5c73b9bfbc5ec56dadabb07ff15d45124";

    fn vector_key() -> Vec<u8> {
        (0..VECTOR_KEY.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&VECTOR_KEY[i..i + 2], 16).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn bad_setup_is_refused_before_any_rpc() {
        // Port 1 on loopback: nothing answers, so getting past the checks would
        // fail with Rpc, not with the errors expected here.
        let good = EvmConfig::new("http://127.0.0.1:1", [0x11; 32]);
        let key = vector_key();
        assert_eq!(
            EvmAnchor::deploy(&good, [0; 32], &key[..95])
                .await
                .unwrap_err(),
            EvmSetupError::BadGroupKey
        );
        let zero_key = EvmConfig::new("http://127.0.0.1:1", [0; 32]);
        assert_eq!(
            EvmAnchor::deploy(&zero_key, [0; 32], &key)
                .await
                .unwrap_err(),
            EvmSetupError::BadSecretKey
        );
        let bad_url = EvmConfig::new("not a url", [0x11; 32]);
        assert!(matches!(
            EvmAnchor::connect(&bad_url, [0; 20], [0; 32], &key)
                .await
                .unwrap_err(),
            EvmSetupError::BadUrl(_)
        ));
        assert!(matches!(
            EvmAnchor::connect(&good, [0; 20], [0; 32], &key)
                .await
                .unwrap_err(),
            EvmSetupError::Rpc(_)
        ));
    }

    #[test]
    fn the_config_does_not_print_its_key() {
        let c = EvmConfig::new("http://127.0.0.1:1", [0xAB; 32]);
        let shown = format!("{c:?}");
        // Derived Debug would print the bytes in decimal.
        assert!(!shown.contains("171"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
