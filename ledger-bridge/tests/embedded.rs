//! The embedded ledger: the anchoring rules, reopening, and corruption caught.

mod common;

use std::path::Path;

use common::{Committee, network};
use plexus_epochs::checkpoint::SignedCheckpoint;
use plexus_epochs::threshold;
use plexus_ledger_bridge::embedded::{ENTRY_BYTES, GENESIS_ENTRY};
use plexus_ledger_bridge::{
    Anchor, AnchorError, AnchorOutcome, AnchorStatus, EmbeddedLedger, LedgerEntry, Location,
    OpenError,
};
use sha2::{Digest, Sha256};

const NET: &str = "ledger-test";

fn open(path: &Path, committee: &Committee) -> Result<EmbeddedLedger, OpenError> {
    EmbeddedLedger::open(path, network(NET), &committee.group_key())
}

/// The entry hash recomputed here from the documented formula, not the crate's.
fn entry_hash(e: &LedgerEntry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(e.epoch.to_be_bytes());
    h.update(e.checkpoint_hash);
    h.update(e.signature);
    h.update(e.previous);
    h.finalize().into()
}

/// Every entry read back, with each link checked by hand.
fn chain(ledger: &EmbeddedLedger) -> Vec<LedgerEntry> {
    let mut previous = GENESIS_ENTRY;
    let mut out = Vec::new();
    for seq in 0..ledger.len() {
        let e = ledger.entry_at(seq).unwrap().expect("entry present");
        assert_eq!(e.sequence, seq);
        assert_eq!(e.previous, previous, "entry {seq} links to its predecessor");
        assert_eq!(e.entry_hash, entry_hash(&e), "entry {seq} hash");
        previous = e.entry_hash;
        out.push(e);
    }
    assert_eq!(ledger.head(), previous);
    assert_eq!(ledger.entry_at(ledger.len()).unwrap(), None);
    out
}

#[tokio::test]
async fn anchors_are_verified_idempotent_and_one_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let committee = Committee::dealt(4, 1);
    // Through the trait object, as a node holds it.
    let ledger: Box<dyn Anchor> = Box::new(open(dir.path(), &committee).unwrap());
    assert_eq!(ledger.latest().await, Ok(None));
    assert_eq!(ledger.status(7).await, Ok(AnchorStatus::NotAnchored));

    let signed = committee.sign(&committee.checkpoint(network(NET), 7, 0));
    let hash = signed.hash().unwrap();
    let first = ledger.anchor(&signed).await.unwrap();
    let AnchorOutcome::Anchored {
        record,
        transaction: None,
    } = first
    else {
        panic!("expected a new anchor, got {first:?}");
    };
    assert_eq!(record.epoch, 7);
    assert_eq!(record.checkpoint_hash, hash);
    assert!(matches!(
        record.location,
        Location::Embedded { sequence: 0, .. }
    ));
    assert_eq!(ledger.status(7).await, Ok(AnchorStatus::Final));
    assert_eq!(ledger.anchored(7).await, Ok(Some(record)));
    assert_eq!(ledger.latest().await, Ok(Some(7)));

    // Again: the same record, nothing written.
    assert_eq!(
        ledger.anchor(&signed).await,
        Ok(AnchorOutcome::AlreadyAnchored(record))
    );
    // Another checkpoint for the epoch, properly signed: a conflict.
    let other = committee.sign(&committee.checkpoint(network(NET), 7, 1));
    let other_hash = other.hash().unwrap();
    assert_ne!(other_hash, hash);
    assert_eq!(
        ledger.anchor(&other).await,
        Err(AnchorError::Conflict {
            epoch: 7,
            anchored: hash,
            offered: other_hash
        })
    );
    // Earlier epochs and gaps are fine; latest is the highest.
    let three = committee.sign(&committee.checkpoint(network(NET), 3, 0));
    assert!(matches!(
        ledger.anchor(&three).await,
        Ok(AnchorOutcome::Anchored { .. })
    ));
    assert_eq!(ledger.latest().await, Ok(Some(7)));
    assert_eq!(ledger.anchored(7).await, Ok(Some(record)));
}

#[test]
fn only_the_groups_signature_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let committee = Committee::dealt(4, 2);
    let outsider = Committee::dealt(4, 3);
    let ledger = open(dir.path(), &committee).unwrap();
    let net = network(NET);
    let c = committee.checkpoint(net, 5, 0);
    let message = c.signing_message().unwrap();

    let with_signature = |signature: Vec<u8>| SignedCheckpoint {
        checkpoint: c.clone(),
        signature,
        signers: committee.members[..3].to_vec(),
    };
    let refused = |signed: &SignedCheckpoint, want: AnchorError| {
        assert_eq!(ledger.anchor_signed(signed), Err(want));
        assert_eq!(ledger.len(), 0, "nothing written");
        assert_eq!(ledger.record(signed.checkpoint.epoch), None);
    };
    let invalid = AnchorError::InvalidSignature { epoch: 5 };
    // Another key's signature over the right message.
    refused(
        &with_signature(outsider.sign_message(&message)),
        invalid.clone(),
    );
    // t-1 members' partials, interpolated as if they were enough.
    refused(
        &with_signature(committee.sign_below_threshold(&message)),
        invalid.clone(),
    );
    // A valid G1 point that nobody signed.
    let random = threshold::encode_signature(&threshold::hash_to_g1(b"not a signature"));
    refused(&with_signature(random), invalid.clone());
    // Bytes that are not a point at all.
    refused(&with_signature(vec![0; 48]), invalid.clone());
    // The group's signature for epoch 4, on epoch 5's checkpoint.
    let four = committee.sign(&committee.checkpoint(net, 4, 0));
    refused(&with_signature(four.signature.clone()), invalid);
    // A checkpoint that names (and is properly signed by) another committee's key.
    let theirs = outsider.sign(&outsider.checkpoint(net, 5, 0));
    refused(&theirs, AnchorError::WrongGroupKey { epoch: 5 });
    // Our committee's signature, but for another network.
    let elsewhere = committee.sign(&committee.checkpoint(network("elsewhere"), 5, 0));
    refused(&elsewhere, AnchorError::WrongNetwork { epoch: 5 });

    // And the group's own signature is accepted (so the refusals above are not
    // refusals of everything).
    let good = with_signature(committee.sign_message(&message));
    assert_eq!(good.verify(Some(&committee.group_key())), Ok(()));
    assert!(matches!(
        ledger.anchor_signed(&good),
        Ok(AnchorOutcome::Anchored { .. })
    ));
    assert_eq!(ledger.len(), 1);
}

#[test]
fn the_ledger_survives_reopening_and_its_links_hold() {
    let dir = tempfile::tempdir().unwrap();
    let committee = Committee::dealt(4, 4);
    let net = network(NET);
    let signed: Vec<SignedCheckpoint> = [2u64, 1, 9]
        .iter()
        .map(|&e| committee.sign(&committee.checkpoint(net, e, 0)))
        .collect();
    let records: Vec<_> = {
        let ledger = open(dir.path(), &committee).unwrap();
        signed
            .iter()
            .map(|s| *ledger.anchor_signed(s).unwrap().record())
            .collect()
    }; // dropped: closed

    let ledger = open(dir.path(), &committee).unwrap();
    assert_eq!(ledger.len(), 3);
    assert_eq!(ledger.latest_epoch(), Some(9));
    let entries = chain(&ledger);
    for ((entry, s), record) in entries.iter().zip(&signed).zip(&records) {
        assert_eq!(entry.epoch, s.checkpoint.epoch);
        assert_eq!(entry.checkpoint_hash, s.hash().unwrap());
        assert_eq!(entry.signature.as_slice(), s.signature.as_slice());
        assert_eq!(entry.record(), *record);
        assert_eq!(ledger.record(entry.epoch), Some(*record));
        // The full checkpoint reads back, and still verifies.
        let back = ledger.checkpoint(entry.epoch).unwrap().expect("stored");
        assert_eq!(&back, s);
        assert_eq!(back.verify(Some(&committee.group_key())), Ok(()));
    }
    assert_eq!(ledger.audit(), Ok(3));

    // Anchoring again after the restart: a no-op, and a new epoch links on.
    assert_eq!(
        ledger.anchor_signed(&signed[1]),
        Ok(AnchorOutcome::AlreadyAnchored(records[1]))
    );
    assert_eq!(ledger.len(), 3);
    let head = ledger.head();
    let next = committee.sign(&committee.checkpoint(net, 10, 0));
    ledger.anchor_signed(&next).unwrap();
    let e = ledger.entry(10).unwrap().unwrap();
    assert_eq!((e.sequence, e.previous), (3, head));
    assert_eq!(chain(&ledger).len(), 4);
    drop(ledger);

    // The ledger belongs to its network and key.
    let other = Committee::dealt(4, 5);
    assert_eq!(
        open(dir.path(), &other).unwrap_err(),
        OpenError::Mismatch { what: "group key" }
    );
    assert_eq!(
        EmbeddedLedger::open(dir.path(), network("elsewhere"), &committee.group_key()).unwrap_err(),
        OpenError::Mismatch { what: "network" }
    );
    assert_eq!(
        EmbeddedLedger::open(dir.path(), net, &[0u8; 96]).unwrap_err(),
        OpenError::BadGroupKey
    );
    assert_eq!(open(dir.path(), &committee).unwrap().len(), 4);
}

/// A ledger with three entries (epochs 1, 2, 3), closed.
fn three_entries(path: &Path, committee: &Committee) {
    let ledger = open(path, committee).unwrap();
    for e in 1..=3 {
        let s = committee.sign(&committee.checkpoint(network(NET), e, 0));
        ledger.anchor_signed(&s).unwrap();
    }
}

/// Changes the raw store (layout in the `embedded` module docs).
fn tamper(path: &Path, f: impl FnOnce(&rocksdb::DB)) {
    let db = rocksdb::DB::open_default(path).unwrap();
    f(&db);
}

fn entry_key(seq: u64) -> Vec<u8> {
    let mut k = vec![b'e'];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn body_key(seq: u64) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[test]
fn a_flipped_byte_in_an_entry_is_caught_on_open() {
    let committee = Committee::dealt(4, 6);
    // Each byte region of entry 1: version, epoch, checkpoint hash, signature,
    // previous, entry hash.
    for offset in [
        0,
        3,
        1 + 8 + 5,
        1 + 8 + 32 + 7,
        1 + 8 + 32 + 48 + 1,
        ENTRY_BYTES - 1,
    ] {
        let dir = tempfile::tempdir().unwrap();
        three_entries(dir.path(), &committee);
        tamper(dir.path(), |db| {
            let mut v = db.get(entry_key(1)).unwrap().unwrap();
            assert_eq!(v.len(), ENTRY_BYTES);
            v[offset] ^= 0x20;
            db.put(entry_key(1), v).unwrap();
        });
        let err = open(dir.path(), &committee).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::Corrupt {
                    sequence: Some(1),
                    ..
                }
            ),
            "offset {offset}: {err:?}"
        );
    }
}

#[test]
fn a_consistently_rewritten_or_dropped_entry_is_caught_on_open() {
    let committee = Committee::dealt(4, 7);

    // Entry 1 rewritten with another checkpoint hash and its own hash recomputed:
    // entry 2 no longer links to it.
    let dir = tempfile::tempdir().unwrap();
    three_entries(dir.path(), &committee);
    tamper(dir.path(), |db| {
        let mut v = db.get(entry_key(1)).unwrap().unwrap();
        v[1 + 8] ^= 0xFF;
        let fresh: [u8; 32] = Sha256::digest(&v[1..1 + 8 + 32 + 48 + 32]).into();
        v[ENTRY_BYTES - 32..].copy_from_slice(&fresh);
        db.put(entry_key(1), v).unwrap();
    });
    let err = open(dir.path(), &committee).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::Corrupt {
                sequence: Some(2),
                ..
            }
        ),
        "{err:?}"
    );

    // The last entry deleted (with its checkpoint): the head record disagrees.
    let dir = tempfile::tempdir().unwrap();
    three_entries(dir.path(), &committee);
    tamper(dir.path(), |db| {
        db.delete(entry_key(2)).unwrap();
        db.delete(body_key(2)).unwrap();
    });
    let err = open(dir.path(), &committee).unwrap_err();
    assert!(
        matches!(err, OpenError::Corrupt { sequence: None, .. }),
        "{err:?}"
    );

    // A middle entry deleted: a gap.
    let dir = tempfile::tempdir().unwrap();
    three_entries(dir.path(), &committee);
    tamper(dir.path(), |db| db.delete(entry_key(1)).unwrap());
    let err = open(dir.path(), &committee).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::Corrupt {
                sequence: Some(1),
                ..
            }
        ),
        "{err:?}"
    );

    // Untouched, the same ledger opens (the cases above are not refusals of all).
    let dir = tempfile::tempdir().unwrap();
    three_entries(dir.path(), &committee);
    assert_eq!(open(dir.path(), &committee).unwrap().len(), 3);
}

#[test]
fn a_flipped_byte_in_a_stored_checkpoint_is_caught_on_read() {
    let committee = Committee::dealt(4, 8);
    // The checksum, the checkpoint itself, and the informational signer list at the
    // end (which no hash in the entry covers).
    for at in [Where::First, Where::Middle, Where::Last] {
        let dir = tempfile::tempdir().unwrap();
        three_entries(dir.path(), &committee);
        tamper(dir.path(), |db| {
            let mut v = db.get(body_key(0)).unwrap().unwrap();
            let i = match at {
                Where::First => 0,
                Where::Middle => v.len() / 2,
                Where::Last => v.len() - 1,
            };
            v[i] ^= 0x01;
            db.put(body_key(0), v).unwrap();
        });
        // Opening checks entries, not checkpoints (module docs): it opens.
        let ledger = open(dir.path(), &committee).unwrap();
        assert!(
            matches!(ledger.checkpoint(1), Err(AnchorError::Corrupt(_))),
            "{at:?}"
        );
        assert!(ledger.checkpoint(2).unwrap().is_some(), "others read fine");
        assert!(matches!(ledger.audit(), Err(AnchorError::Corrupt(_))));
    }
}

#[derive(Debug, Clone, Copy)]
enum Where {
    First,
    Middle,
    Last,
}
