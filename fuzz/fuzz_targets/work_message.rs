//! Work messages from a peer (receipts, verifications, input fetches and their
//! answers): decoding never panics and bounds a batch, a decoded message
//! round-trips, and an auditor handed the audit part, from the worker or anyone
//! else, only ever answers; sampling it with a beacon afterwards answers too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_poai::wire::WorkWire;
use plexus_poai::{AuditConfig, AuditMessage, Auditor};
use plexus_vocab::identity::NodeKey;

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = WorkWire::decode(data) else {
        return;
    };
    let bytes = wire.encode().expect("a message re-encodes");
    assert_eq!(WorkWire::decode(&bytes).expect("re-decodes"), wire);
    if let WorkWire::Audit(msg) = wire {
        let msg = *msg;
        let (from, class) = match &msg {
            AuditMessage::Receipt(r) => (r.receipt.worker, r.receipt.backend.class()),
            AuditMessage::Verification {
                receipt,
                verification,
            } => (
                verification.verification.verifier,
                receipt.receipt.backend.class(),
            ),
        };
        let key = NodeKey::from_seed([1; 32]);
        let mut auditor = Auditor::new(AuditConfig::new([0; 32]), key, 1);
        // The sender and another node on the message's backend; this node on
        // another one (it must then neither verify nor judge).
        auditor.set_eligible(vec![
            (from, class),
            (NodeKey::from_seed([2; 32]).node_id(), class),
            (NodeKey::from_seed([1; 32]).node_id(), [0xFF; 8]),
        ]);
        let _ = auditor.handle(from, msg.clone());
        let _ = auditor.handle(NodeKey::from_seed([3; 32]).node_id(), msg);
        auditor.beacon(0, b"beacon");
        auditor.beacon(1, b"beacon");
        while auditor.poll_effect().is_some() {}
        let _ = auditor.tally(1);
    }
});
