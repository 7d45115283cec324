//! Where a network's `CheckpointAnchor` lives, without anyone coordinating it.
//!
//! The contract is deployed through the deterministic-deployment proxy
//! ([`CREATE2_FACTORY`], predeployed on anvil and on most EVM chains) with the
//! network id as salt, so its address depends only on the network id, the group
//! key and the contract's bytecode: every committee member computes the same
//! address from the DKG's output. Each member checks for code there and deploys
//! if there is none; when several race, one deployment lands and the others
//! revert harmlessly, and everyone then connects to the one contract (which
//! [`EvmAnchor::connect`] checks names this network and this group key).
//!
//! [`anchored_hash`] reads what the contract holds for an epoch, with no key: what
//! `plexus checkpoint verify --chain` and the demo use.

use alloy::primitives::{Address, B256, Bytes, keccak256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use plexus_epochs::checkpoint::CheckpointHash;

use crate::AnchorError;
use crate::eip2537;
use crate::evm::{EvmAnchor, EvmConfig, EvmSetupError};

/// The deterministic-deployment proxy: `salt ‖ init code` in, `CREATE2` out.
pub const CREATE2_FACTORY: [u8; 20] = [
    0x4e, 0x59, 0xb4, 0x48, 0x47, 0xb3, 0x79, 0x57, 0x85, 0x88, 0x92, 0x0c, 0xa7, 0x8f, 0xbf, 0x26,
    0xc0, 0xb4, 0x95, 0x6c,
];

const ARTIFACT: &str = include_str!("../contracts/out/CheckpointAnchor.json");

fn creation_code() -> Result<Vec<u8>, EvmSetupError> {
    let v: serde_json::Value = serde_json::from_str(ARTIFACT)
        .map_err(|e| EvmSetupError::DeployFailed(format!("the contract artifact: {e}")))?;
    let hex = v["bytecode"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("0x");
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| EvmSetupError::DeployFailed("the contract artifact has no bytecode".into()))
}

/// The init code (creation code and constructor arguments) for a network and a
/// compressed group key.
pub fn init_code(network: [u8; 32], group_key: &[u8]) -> Result<Vec<u8>, EvmSetupError> {
    let key = eip2537::group_key_to_eip2537(group_key).map_err(|_| EvmSetupError::BadGroupKey)?;
    let mut code = creation_code()?;
    code.extend_from_slice(&(B256::from(network), Bytes::from(key.to_vec())).abi_encode_params());
    Ok(code)
}

/// The address the network's contract has (or will have) on any chain with the proxy.
pub fn address(network: [u8; 32], group_key: &[u8]) -> Result<[u8; 20], EvmSetupError> {
    let init = init_code(network, group_key)?;
    Ok(Address::from(CREATE2_FACTORY)
        .create2(B256::from(network), keccak256(&init))
        .0
        .0)
}

/// Deploys the network's contract at its deterministic address unless it is
/// there already, then connects to it.
pub async fn deterministic(
    config: EvmConfig,
    network: [u8; 32],
    group_key: &[u8],
) -> Result<EvmAnchor, EvmSetupError> {
    let init = init_code(network, group_key)?;
    let at = Address::from(address(network, group_key)?);
    let signer = PrivateKeySigner::from_bytes(&B256::from(config.secret_key))
        .map_err(|_| EvmSetupError::BadSecretKey)?;
    let url = config
        .rpc_url
        .parse()
        .map_err(|e| EvmSetupError::BadUrl(format!("{}: {e}", config.rpc_url)))?;
    let provider = ProviderBuilder::new().wallet(signer).connect_http(url);
    let rpc = |e: &dyn std::fmt::Display| EvmSetupError::Rpc(e.to_string());
    if provider
        .get_code_at(at)
        .await
        .map_err(|e| rpc(&e))?
        .is_empty()
    {
        if provider
            .get_code_at(Address::from(CREATE2_FACTORY))
            .await
            .map_err(|e| rpc(&e))?
            .is_empty()
        {
            return Err(EvmSetupError::DeployFailed(
                "the chain has no deterministic-deployment proxy at 0x4e59b448…956c".into(),
            ));
        }
        let mut data = network.to_vec();
        data.extend_from_slice(&init);
        let tx = TransactionRequest::default()
            .to(Address::from(CREATE2_FACTORY))
            .input(Bytes::from(data).into());
        // Another member's deployment may land first: ours then fails (at gas
        // estimation or on chain), which is fine as long as the code is there.
        if let Ok(pending) = provider.send_transaction(tx).await {
            let _ = pending.get_receipt().await;
        }
        if provider
            .get_code_at(at)
            .await
            .map_err(|e| rpc(&e))?
            .is_empty()
        {
            return Err(EvmSetupError::DeployFailed(format!(
                "no contract at {at} after deploying through the proxy"
            )));
        }
    }
    EvmAnchor::connect(&config, at.0.0, network, group_key).await
}

alloy::sol! {
    #[sol(rpc)]
    interface IAnchored {
        function checkpointOf(uint64 epoch) external view returns (bytes32);
    }
}

/// The checkpoint hash the contract at `address` holds for `epoch` (none if it
/// holds nothing). Read-only: no key.
pub async fn anchored_hash(
    url: &str,
    address: [u8; 20],
    epoch: u64,
) -> Result<Option<CheckpointHash>, AnchorError> {
    let url = url
        .parse()
        .map_err(|e| AnchorError::Rpc(format!("bad url {url}: {e}")))?;
    let provider = ProviderBuilder::new().connect_http(url);
    let contract = IAnchored::new(Address::from(address), provider);
    let h = contract
        .checkpointOf(epoch)
        .call()
        .await
        .map_err(|e| AnchorError::Rpc(e.to_string()))?;
    Ok((h != B256::ZERO).then_some(h.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_depends_on_the_network_and_the_key() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../contracts/out/vector.json")).unwrap();
        let hex = |k: &str| -> Vec<u8> {
            let t = v[k].as_str().unwrap().trim_start_matches("0x");
            (0..t.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap())
                .collect()
        };
        let key = hex("groupKeyCompressed");
        let network: [u8; 32] = hex("networkId").try_into().unwrap();
        let a = address(network, &key).unwrap();
        assert_eq!(a, address(network, &key).unwrap());
        let mut other = network;
        other[0] ^= 1;
        assert_ne!(a, address(other, &key).unwrap());
        assert!(address(network, &[0u8; 96]).is_err());
    }
}
