//! The EVM ledger against a real local chain: anvil (Prague, for EIP-2537), started
//! per test on a free port and killed when the test ends. No mocks.
//!
//! The harness installs anvil with `scripts/install-chain-tools.sh` (idempotent;
//! it needs the npm registry the first time only).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use common::{Committee, network};
use plexus_epochs::threshold;
use plexus_ledger_bridge::{
    Anchor, AnchorError, AnchorOutcome, AnchorStatus, EvmAnchor, EvmConfig, EvmSetupError,
    EvmTransaction, Location,
};

const NET: &str = "evm-test";

/// The test account's secret key; the harness funds it with `anvil_setBalance`.
const SUBMITTER_KEY: [u8; 32] = [0x5A; 32];

/// Polls of `eth_chainId` before giving up on a starting anvil, and the gap between.
const READY_TRIES: u32 = 200;
const READY_POLL: Duration = Duration::from_millis(50);

/// This crate's directory: where cargo runs the test from (the path compiled in
/// is stale if the checkout moved while the build cache stayed).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn workspace() -> PathBuf {
    manifest_dir().join("..")
}

/// The anvil binary, installed once per test process.
fn anvil_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(workspace().join("scripts/install-chain-tools.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs the installer");
        assert!(
            out.status.success(),
            "scripts/install-chain-tools.sh failed (it needs npm, and the npm registry the first time)"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().expect("the installer prints the anvil path");
        PathBuf::from(last.trim())
    })
}

/// A running anvil, killed on drop.
struct Anvil {
    child: Child,
    url: String,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Anvil {
    async fn start() -> Anvil {
        // A port freed just before anvil binds it can be taken meanwhile: anvil then
        // exits, and the next try picks another.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new(anvil_binary())
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--hardfork", "prague"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("anvil starts");
            let mut anvil = Anvil {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            if anvil.ready().await {
                anvil.fund().await;
                return anvil;
            }
        }
        panic!("anvil did not come up");
    }

    /// Polls `eth_chainId` until anvil answers, it exits, or the tries run out.
    async fn ready(&mut self) -> bool {
        let provider = ProviderBuilder::new().connect_http(self.url.parse().unwrap());
        for _ in 0..READY_TRIES {
            if provider.get_chain_id().await.is_ok() {
                return true;
            }
            if self.child.try_wait().expect("child status").is_some() {
                return false;
            }
            tokio::time::sleep(READY_POLL).await;
        }
        false
    }

    /// Gives the test account 1000 ether.
    async fn fund(&self) {
        let who = PrivateKeySigner::from_bytes(&B256::from(SUBMITTER_KEY))
            .unwrap()
            .address();
        let wei = U256::from(1000u64) * U256::from(10u64).pow(U256::from(18u64));
        let _: serde_json::Value = self
            .provider()
            .raw_request("anvil_setBalance".into(), (who, wei))
            .await
            .expect("anvil_setBalance");
    }

    fn config(&self, confirmations: u64) -> EvmConfig {
        let mut c = EvmConfig::new(&self.url, SUBMITTER_KEY);
        c.confirmations = confirmations;
        c.receipt_timeout = Duration::from_secs(30);
        c
    }

    fn provider(&self) -> DynProvider {
        ProviderBuilder::new()
            .wallet(PrivateKeySigner::from_bytes(&B256::from(SUBMITTER_KEY)).unwrap())
            .connect_http(self.url.parse().unwrap())
            .erased()
    }

    /// Mines `n` empty blocks.
    async fn mine(&self, n: u64) {
        let _: serde_json::Value = self
            .provider()
            .raw_request("anvil_mine".into(), (format!("{n:#x}"),))
            .await
            .expect("anvil_mine");
    }

    /// Transactions sent so far by `who` (to prove none was sent).
    async fn nonce(&self, who: [u8; 20]) -> u64 {
        self.provider()
            .get_transaction_count(Address::from(who))
            .await
            .unwrap()
    }
}

fn new_anchor(outcome: &AnchorOutcome) -> EvmTransaction {
    match outcome {
        AnchorOutcome::Anchored {
            transaction: Some(tx),
            ..
        } => *tx,
        other => panic!("expected a new anchor with a transaction, got {other:?}"),
    }
}

#[tokio::test]
async fn deploy_anchor_and_read_back() {
    let anvil = Anvil::start().await;
    let committee = Committee::dealt(4, 11);
    let net = network(NET);
    let client = EvmAnchor::deploy(&anvil.config(1), net, &committee.group_key())
        .await
        .unwrap();
    assert_eq!(client.latest().await, Ok(None));
    assert_eq!(client.anchored(7).await, Ok(None));

    let signed = committee.sign(&committee.checkpoint(net, 7, 0));
    assert_eq!(signed.verify(Some(&committee.group_key())), Ok(()));
    let hash = signed.hash().unwrap();
    let outcome = client.anchor(&signed).await.unwrap();
    let tx = new_anchor(&outcome);
    let record = *outcome.record();
    assert_eq!(record.epoch, 7);
    assert_eq!(record.checkpoint_hash, hash);
    assert_eq!(record.location, Location::Evm { block: tx.block });
    assert!(
        (150_000..300_000).contains(&tx.gas_used),
        "gas used {}",
        tx.gas_used
    );
    println!("gas: CheckpointAnchor.anchor, first epoch: {}", tx.gas_used);

    // Read back from the chain, through a second client of the same contract.
    let reader = EvmAnchor::connect(
        &anvil.config(1),
        client.address(),
        net,
        &committee.group_key(),
    )
    .await
    .unwrap();
    assert_eq!(reader.anchored(7).await, Ok(Some(record)));
    assert_eq!(reader.latest().await, Ok(Some(7)));
    assert_eq!(reader.status(7).await, Ok(AnchorStatus::Final));
    assert_eq!(reader.status(8).await, Ok(AnchorStatus::NotAnchored));

    let next = committee.sign(&committee.checkpoint(net, 8, 0));
    let tx8 = new_anchor(&client.anchor(&next).await.unwrap());
    println!("gas: CheckpointAnchor.anchor, next epoch: {}", tx8.gas_used);
    assert!(
        tx8.gas_used < tx.gas_used,
        "the first anchor also sets latestEpoch from zero"
    );
    assert_eq!(reader.latest().await, Ok(Some(8)));
}

#[tokio::test]
async fn resubmitting_is_a_no_op_and_a_restarted_client_resumes() {
    let anvil = Anvil::start().await;
    let committee = Committee::dealt(4, 12);
    let net = network(NET);
    let config = anvil.config(1);
    let client = EvmAnchor::deploy(&config, net, &committee.group_key())
        .await
        .unwrap();
    let signed = committee.sign(&committee.checkpoint(net, 3, 0));
    let record = *client.anchor(&signed).await.unwrap().record();

    let sent = anvil.nonce(client.sender()).await;
    assert_eq!(
        client.anchor(&signed).await,
        Ok(AnchorOutcome::AlreadyAnchored(record))
    );
    assert_eq!(
        anvil.nonce(client.sender()).await,
        sent,
        "no transaction sent"
    );

    // A restart: a new client of the same contract, nothing carried over but the
    // address.
    let address = client.address();
    drop(client);
    let restarted = EvmAnchor::connect(&config, address, net, &committee.group_key())
        .await
        .unwrap();
    assert_eq!(restarted.anchored(3).await, Ok(Some(record)));
    assert_eq!(
        restarted.anchor(&signed).await,
        Ok(AnchorOutcome::AlreadyAnchored(record))
    );
    assert_eq!(
        anvil.nonce(restarted.sender()).await,
        sent,
        "no transaction sent"
    );

    // Another checkpoint for the anchored epoch, properly signed: a conflict, unsent.
    let other = committee.sign(&committee.checkpoint(net, 3, 1));
    assert_eq!(
        restarted.anchor(&other).await,
        Err(AnchorError::Conflict {
            epoch: 3,
            anchored: record.checkpoint_hash,
            offered: other.hash().unwrap()
        })
    );
    assert_eq!(anvil.nonce(restarted.sender()).await, sent);

    // It goes on anchoring.
    let four = committee.sign(&committee.checkpoint(net, 4, 0));
    new_anchor(&restarted.anchor(&four).await.unwrap());
    assert_eq!(restarted.latest().await, Ok(Some(4)));
    assert_eq!(anvil.nonce(restarted.sender()).await, sent + 1);

    // Connecting checks that the contract is the one expected.
    let stranger = Committee::dealt(4, 13);
    assert_eq!(
        EvmAnchor::connect(&config, address, net, &stranger.group_key())
            .await
            .unwrap_err(),
        EvmSetupError::WrongContract { what: "group key" }
    );
    assert_eq!(
        EvmAnchor::connect(
            &config,
            address,
            network("elsewhere"),
            &committee.group_key()
        )
        .await
        .unwrap_err(),
        EvmSetupError::WrongContract { what: "network" }
    );
    assert!(matches!(
        EvmAnchor::connect(&config, [0x42; 20], net, &committee.group_key())
            .await
            .unwrap_err(),
        EvmSetupError::NotAContract(_)
    ));
}

#[tokio::test]
async fn an_anchor_is_final_after_k_confirmations() {
    let anvil = Anvil::start().await;
    let committee = Committee::dealt(4, 14);
    let net = network(NET);
    let client = EvmAnchor::deploy(&anvil.config(3), net, &committee.group_key())
        .await
        .unwrap();
    let signed = committee.sign(&committee.checkpoint(net, 1, 0));
    new_anchor(&client.anchor(&signed).await.unwrap());

    assert_eq!(
        client.status(1).await,
        Ok(AnchorStatus::Included { confirmations: 1 })
    );
    anvil.mine(1).await;
    assert_eq!(
        client.status(1).await,
        Ok(AnchorStatus::Included { confirmations: 2 })
    );
    anvil.mine(1).await;
    assert_eq!(client.status(1).await, Ok(AnchorStatus::Final));
    // k is per query too.
    assert_eq!(
        client.finality(1, 10).await,
        Ok(AnchorStatus::Included { confirmations: 3 })
    );
    anvil.mine(7).await;
    assert_eq!(client.finality(1, 10).await, Ok(AnchorStatus::Final));
    assert_eq!(client.finality(1, 0).await, Ok(AnchorStatus::Final));
    assert_eq!(client.finality(2, 0).await, Ok(AnchorStatus::NotAnchored));
}

#[tokio::test]
async fn the_contract_refuses_signatures_that_are_not_the_groups() {
    let anvil = Anvil::start().await;
    let committee = Committee::dealt(4, 15);
    let outsider = Committee::dealt(4, 16);
    let net = network(NET);
    let client = EvmAnchor::deploy(&anvil.config(1), net, &committee.group_key())
        .await
        .unwrap();
    let c = committee.checkpoint(net, 5, 0);
    let hash = c.hash().unwrap();
    let message = c.signing_message().unwrap();
    let sent = anvil.nonce(client.sender()).await;

    let refused = async |epoch: u64, signature: &[u8], want: AnchorError| {
        assert_eq!(
            client.anchor_signature(epoch, &hash, signature).await,
            Err(want)
        );
        assert_eq!(client.anchored(epoch).await, Ok(None), "state unchanged");
        assert_eq!(client.latest().await, Ok(None));
        assert_eq!(anvil.nonce(client.sender()).await, sent, "nothing sent");
    };
    let invalid = AnchorError::InvalidSignature { epoch: 5 };
    // Another key's signature over the right message.
    refused(5, &outsider.sign_message(&message), invalid.clone()).await;
    // A random valid G1 point.
    let random = threshold::encode_signature(&threshold::hash_to_g1(b"not a signature"));
    refused(5, &random, invalid.clone()).await;
    // t-1 members' partials interpolated as if they were enough.
    refused(
        5,
        &committee.sign_below_threshold(&message),
        invalid.clone(),
    )
    .await;
    // The right signature, submitted for another epoch.
    let right = committee.sign_message(&message);
    refused(6, &right, AnchorError::InvalidSignature { epoch: 6 }).await;

    // The right signature with too low a gas limit: the contract says so rather
    // than call it invalid.
    let mut starved = anvil.config(1);
    starved.gas_limit = Some(120_000);
    let starved = EvmAnchor::connect(&starved, client.address(), net, &committee.group_key())
        .await
        .unwrap();
    assert_eq!(
        starved.anchor_signature(5, &hash, &right).await,
        Err(AnchorError::InsufficientGas { epoch: 5 })
    );
    assert_eq!(client.anchored(5).await, Ok(None));
    assert_eq!(anvil.nonce(client.sender()).await, sent);

    // And with enough gas the same signature is accepted, so the refusals above
    // were about the signatures.
    let tx = new_anchor(&client.anchor_signature(5, &hash, &right).await.unwrap());
    assert_eq!(
        client.anchored(5).await.unwrap().map(|r| r.location),
        Some(Location::Evm { block: tx.block })
    );
}

mod ecdsa {
    #![allow(missing_docs)]
    alloy::sol!(
        #[sol(rpc)]
        EcdsaAnchor,
        "contracts/out/EcdsaAnchor.json"
    );
}

/// Gas of `EcdsaAnchor.anchor` (first and next epoch) with `m` of `m` oracles.
async fn ecdsa_gas(anvil: &Anvil, m: usize) -> (u64, u64) {
    let net = network(NET);
    let mut oracles: Vec<PrivateKeySigner> = (0..m)
        .map(|i| PrivateKeySigner::from_bytes(&B256::from([i as u8 + 1; 32])).unwrap())
        .collect();
    oracles.sort_by_key(|o| o.address());
    let addresses: Vec<Address> = oracles.iter().map(|o| o.address()).collect();
    let provider = anvil.provider();
    let contract = ecdsa::EcdsaAnchor::deploy(provider, B256::from(net), addresses, U256::from(m))
        .await
        .unwrap();
    let mut gas = Vec::new();
    for epoch in [1u64, 2] {
        let hash = [epoch as u8 + 0x10; 32];
        let message = threshold::signing_message(&net, epoch, &hash);
        let signatures: Vec<Bytes> = oracles
            .iter()
            .map(|o| Bytes::from(o.sign_message_sync(&message).unwrap().as_bytes().to_vec()))
            .collect();
        let receipt = contract
            .anchor(epoch, B256::from(hash), signatures)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status(), "EcdsaAnchor accepted epoch {epoch}");
        gas.push(receipt.gas_used);
    }
    (gas[0], gas[1])
}

/// The committed `contracts/out/gas.json` (written by the JS test).
fn recorded_gas(name: &str) -> u64 {
    let text = std::fs::read_to_string(manifest_dir().join("contracts/out/gas.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[name].as_u64().unwrap()
}

/// Within 1% of the committed figure (calldata bytes differ a little between runs).
fn close_to(measured: u64, name: &str) {
    let want = recorded_gas(name);
    assert!(
        measured.abs_diff(want) * 100 <= want,
        "{name}: measured {measured}, gas.json has {want}"
    );
}

#[tokio::test]
async fn gas_against_the_ecdsa_baseline() {
    let anvil = Anvil::start().await;
    let committee = Committee::dealt(4, 17);
    let net = network(NET);
    let client = EvmAnchor::deploy(&anvil.config(1), net, &committee.group_key())
        .await
        .unwrap();
    let mut bls = Vec::new();
    for epoch in [1u64, 2] {
        let signed = committee.sign(&committee.checkpoint(net, epoch, 0));
        bls.push(new_anchor(&client.anchor(&signed).await.unwrap()).gas_used);
    }
    let (m1_first, m1_next) = ecdsa_gas(&anvil, 1).await;
    let (m15_first, m15_next) = ecdsa_gas(&anvil, 15).await;
    println!("gas per anchor (first epoch / next epoch):");
    println!(
        "  CheckpointAnchor (threshold BLS, any t-of-n): {} / {}",
        bls[0], bls[1]
    );
    println!("  EcdsaAnchor m=1:  {m1_first} / {m1_next}");
    println!("  EcdsaAnchor m=15: {m15_first} / {m15_next}");
    close_to(bls[0], "checkpointAnchorFirst");
    close_to(bls[1], "checkpointAnchorNext");
    close_to(m1_first, "ecdsaAnchorM1First");
    close_to(m1_next, "ecdsaAnchorM1Next");
    close_to(m15_first, "ecdsaAnchorM15First");
    close_to(m15_next, "ecdsaAnchorM15Next");
}
