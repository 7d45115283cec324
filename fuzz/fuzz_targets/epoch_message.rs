//! Epoch agreement messages from a peer (observations, proposals, votes,
//! certificates, evidence) and exported signed checkpoints: decoding never panics,
//! the structural checks never panic, a decoded message round-trips, and a
//! certificate's verification, and a follower's judgement of it, only ever answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_epochs::agreement::EpochMessage;
use plexus_epochs::checkpoint::SignedCheckpoint;
use plexus_epochs::follower::Follower;

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
                // A follower of the committee the certificate names, told by its
                // first member: it must answer, and one voice never pins a key of a
                // committee larger than three.
                let committee = c.checkpoint.committee.clone();
                if let Some(first) = committee.first() {
                    let mut f = Follower::new(c.checkpoint.network, &committee);
                    let _ = f.handle(*first, (**c).clone(), c.checkpoint.epoch);
                    if f.vouches_needed() > 1 {
                        assert!(f.group_key().is_none());
                    }
                }
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
