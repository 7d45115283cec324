//! Epoch agreement messages from a peer (observations, proposals, votes,
//! certificates, evidence) and exported signed checkpoints: decoding never panics,
//! the structural checks never panic, a decoded message round-trips, and a
//! certificate's verification only ever answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_epochs::agreement::EpochMessage;
use plexus_epochs::checkpoint::SignedCheckpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = EpochMessage::decode(data) {
        match &message {
            EpochMessage::Observation(o) => {
                let _ = o.verify();
            }
            EpochMessage::Proposal(p) => {
                let _ = p.checkpoint.check();
                let _ = p.checkpoint.hash();
            }
            EpochMessage::Certificate(c) => {
                let _ = c.verify(None);
            }
            _ => {}
        }
        let bytes = message.encode().expect("a message re-encodes");
        assert_eq!(EpochMessage::decode(&bytes).expect("re-decodes"), message);
    }
    if let Ok(signed) = SignedCheckpoint::decode(data) {
        let _ = signed.verify(None);
    }
});
