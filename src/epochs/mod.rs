//! Epochs in the daemon: the epoch service (the driver of the `plexus-epochs`
//! cores: DKG, agreement, anchoring), its store, and the JSON and metrics the API
//! shows.

mod service;
pub mod store;

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

/// Epoch progress, for a metrics scrape.
pub fn metrics(s: &mut crate::metrics::Scrape, status: &EpochStatus) {
    let latest = |state: &[EpochState]| {
        status
            .epochs
            .iter()
            .filter(|r| state.contains(&r.state))
            .map(|r| i64::try_from(r.epoch).unwrap_or(i64::MAX))
            .max()
            .unwrap_or(-1)
    };
    let count = |state: EpochState| status.epochs.iter().filter(|r| r.state == state).count();
    s.gauge(
        "epoch_current",
        "The epoch this node is in (-1 before the first)",
        status
            .current
            .map_or(-1, |e| i64::try_from(e).unwrap_or(i64::MAX)),
    );
    s.gauge(
        "epoch_dkg_done",
        "1 once the committee's distributed key generation finished",
        i64::from(status.dkg == "done"),
    );
    let signed = [EpochState::Signed, EpochState::Anchored, EpochState::Final];
    s.gauge(
        "epoch_latest_signed",
        "The newest epoch with a threshold-signed checkpoint (-1: none)",
        latest(&signed),
    );
    s.gauge(
        "epoch_latest_final",
        "The newest epoch whose checkpoint is final on the chain (-1: none)",
        latest(&[EpochState::Final]),
    );
    s.gauge_by(
        "epochs",
        "Epochs this node keeps, by state",
        "state",
        [
            ("collecting", EpochState::Collecting),
            ("signed", EpochState::Signed),
            ("anchored", EpochState::Anchored),
            ("final", EpochState::Final),
            ("failed", EpochState::Failed),
        ]
        .into_iter()
        .map(|(name, state)| (name.to_string(), count(state) as i64)),
    );
    for (name, help, value) in [
        (
            "epoch_equivocations",
            "Committee members caught signing two observations or partials for one epoch",
            status.equivocations,
        ),
        (
            "epoch_bad_partials",
            "Partial signatures that did not verify",
            status.bad_partials,
        ),
        (
            "epoch_refused",
            "Epoch messages refused (undecodable, or a sender that may not say them)",
            status.refused,
        ),
    ] {
        s.counter(name, help, value);
    }
}
