//! Epochs in the daemon: the epoch service (the driver of the `plexus-epochs`
//! cores: DKG, agreement, anchoring), its store, and the JSON and metrics the API
//! shows.

mod service;
pub mod store;

use std::fmt::Write as _;

pub use service::{
    EPOCH_LOCAL_ID, EpochMsg, EpochRow, EpochService, EpochSettings, EpochState, EpochStatus,
    EpochWire, LedgerChoice, VALIDATOR_TAG, committee_of, network_id,
};

use plexus_epochs::checkpoint::{SignedCheckpoint, hex};
use serde_json::{Value, json};

/// A signed checkpoint as the API and `plexus checkpoint show` print it; `export`
/// is the hex of its codec frame, which `plexus checkpoint verify` reads.
pub fn checkpoint_json(signed: &SignedCheckpoint) -> Value {
    let c = &signed.checkpoint;
    json!({
        "epoch": c.epoch,
        "hash": signed.hash().map(|h| hex(&h)).unwrap_or_default(),
        "version": c.version,
        "network": hex(&c.network),
        "previous": hex(&c.previous),
        "allowlist_version": c.allowlist_version,
        "allowlist_hash": hex(&c.allowlist_hash),
        "members": c.members.iter().map(|r| json!({
            "node": r.node.to_string(),
            "availability_ppm": r.availability_ppm,
            "work_units": r.work_units,
            "reward_units": r.reward_units,
        })).collect::<Vec<_>>(),
        "observers": c.observers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "observations_root": hex(&c.observations_root),
        "work_root": hex(&c.work_root),
        "reward_policy": {
            "base_units": c.reward_policy.base_units,
            "min_availability_ppm": c.reward_policy.min_availability_ppm,
            "units_per_work": c.reward_policy.units_per_work,
        },
        "evidence": c.evidence.iter().map(|e| json!({
            "epoch": e.epoch,
            "signer": e.signer.to_string(),
            "first": hex(&e.first.hash),
            "second": hex(&e.second.hash),
        })).collect::<Vec<_>>(),
        "committee": c.committee.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "group_key": hex(&c.group_key),
        "signature": hex(&signed.signature),
        "signers": signed.signers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "export": signed.encode().map(|b| hex(&b)).unwrap_or_default(),
    })
}

/// Prometheus text for epoch progress.
pub fn write_metrics(out: &mut String, status: &EpochStatus) {
    let latest = |state: &[EpochState]| {
        status
            .epochs
            .iter()
            .filter(|r| state.contains(&r.state))
            .map(|r| r.epoch as i64)
            .max()
            .unwrap_or(-1)
    };
    let count = |state: EpochState| status.epochs.iter().filter(|r| r.state == state).count();
    let _ = writeln!(
        out,
        "# TYPE plexus_epoch_current gauge\nplexus_epoch_current {}",
        status.current.map_or(-1, |e| e as i64)
    );
    let _ = writeln!(
        out,
        "# TYPE plexus_epoch_dkg_done gauge\nplexus_epoch_dkg_done {}",
        u8::from(status.dkg == "done")
    );
    let signed = [EpochState::Signed, EpochState::Anchored, EpochState::Final];
    let _ = writeln!(
        out,
        "# TYPE plexus_epoch_latest_signed gauge\nplexus_epoch_latest_signed {}",
        latest(&signed)
    );
    let _ = writeln!(
        out,
        "# TYPE plexus_epoch_latest_final gauge\nplexus_epoch_latest_final {}",
        latest(&[EpochState::Final])
    );
    let _ = writeln!(out, "# TYPE plexus_epochs gauge");
    for (name, state) in [
        ("collecting", EpochState::Collecting),
        ("signed", EpochState::Signed),
        ("anchored", EpochState::Anchored),
        ("final", EpochState::Final),
        ("failed", EpochState::Failed),
    ] {
        let _ = writeln!(out, "plexus_epochs{{state=\"{name}\"}} {}", count(state));
    }
    for (name, value) in [
        ("equivocations_total", status.equivocations),
        ("bad_partials_total", status.bad_partials),
        ("refused_total", status.refused),
    ] {
        let _ = writeln!(
            out,
            "# TYPE plexus_epoch_{name} counter\nplexus_epoch_{name} {value}"
        );
    }
}
