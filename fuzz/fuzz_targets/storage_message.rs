//! Storage messages from a peer (stores, fetches, offers, queries, hand-off
//! confirmations, their answers, and the key-value store's anti-entropy):
//! decoding never panics and keeps its bounds, a decoded message round-trips, a
//! repair core handed an offer, a confirmation or its answer, and a key-value
//! replica handed the anti-entropy part only ever answer, and both keep their
//! invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::Time;
use plexus_storage::kv::{Kv, KvConfig};
use plexus_storage::placement::Candidate;
use plexus_storage::repair::{Repair, RepairConfig};
use plexus_storage::wire::{Bytes, StorageWire};
use plexus_vocab::identity::NodeKey;

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = StorageWire::decode(&Bytes::copy_from_slice(data)) else {
        return;
    };
    let bytes = wire.encode().expect("a message re-encodes");
    assert_eq!(StorageWire::decode(&bytes.into()).expect("re-decodes"), wire);
    let me = NodeKey::from_seed([1; 32]);
    let peer = NodeKey::from_seed([2; 32]).node_id();
    let now = Time::from_millis(1_000);
    match wire {
        StorageWire::Offer { chunks } => {
            let mut repair = Repair::new(me.node_id(), RepairConfig::default());
            repair.set_live(vec![Candidate::plain(me.node_id()), Candidate::plain(peer)]);
            repair.handle_offer(now, peer, &chunks);
            repair.tick(now);
            while repair.poll_action().is_some() {}
            repair.check_invariants().expect("repair invariants");
        }
        StorageWire::Confirm { chunks, .. } => {
            let mut repair = Repair::new(me.node_id(), RepairConfig::default());
            repair.set_live(vec![Candidate::plain(me.node_id()), Candidate::plain(peer)]);
            for c in chunks.iter().take(4) {
                repair.stored(*c, 1);
            }
            let answers = repair.answer_confirm(now, &chunks);
            assert_eq!(answers.len(), chunks.len());
            repair.check_invariants().expect("repair invariants");
        }
        StorageWire::Holding { held, .. } => {
            // An answer to a confirmation: it may drop only chunks asked about.
            let mut repair = Repair::new(me.node_id(), RepairConfig::default());
            repair.set_live(vec![Candidate::plain(me.node_id()), Candidate::plain(peer)]);
            let chunks: Vec<_> = (0u8..4)
                .map(|i| plexus_storage::ChunkId::of(&[i]))
                .collect();
            for c in &chunks {
                repair.stored(*c, 1);
            }
            let answers: Vec<_> = chunks.iter().copied().zip(held).collect();
            repair.handle_holding(peer, &answers);
            repair.check_invariants().expect("repair invariants");
            assert_eq!(repair.held().len(), chunks.len(), "nothing was asked");
        }
        StorageWire::Kv(msg) => {
            let mut kv = Kv::new(me, KvConfig::default());
            kv.set_members([peer]);
            kv.put(now, "k", b"v".to_vec()).expect("a local put");
            let _ = kv.handle(now, peer, msg);
            while kv.poll_transmit().is_some() {}
            kv.check_invariants().expect("kv invariants");
        }
        _ => {}
    }
});
