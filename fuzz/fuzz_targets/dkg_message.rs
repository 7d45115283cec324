//! DKG messages from a committee member, into a live DKG round: decoding (ours and
//! commonware's, for dealings, acks, logs and selections) never panics, and a bad
//! message is refused with a typed error.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plexus_actors::{NodeId, Time, codec};
use plexus_epochs::dkg::{DkgMessage, DkgRound, DkgTimings};
use plexus_vocab::identity::NodeKey;

fn committee() -> &'static (Vec<NodeKey>, Vec<NodeId>) {
    static C: OnceLock<(Vec<NodeKey>, Vec<NodeId>)> = OnceLock::new();
    C.get_or_init(|| {
        let keys: Vec<NodeKey> = (1..=4u8).map(|i| NodeKey::from_seed([i; 32])).collect();
        let ids = keys.iter().map(NodeKey::node_id).collect();
        (keys, ids)
    })
}

fuzz_target!(|data: &[u8]| {
    let (keys, ids) = committee();
    let Ok(message) = codec::decode_with_limit::<DkgMessage>(data, 1 << 20) else {
        return;
    };
    let Ok(mut round) = DkgRound::start(b"fuzz", message.round(), keys[0].clone(), ids, DkgTimings::default(), Time::ZERO, [7; 32]) else {
        return;
    };
    let _ = round.handle_message(Time::from_millis(1), ids[1], message);
    while round.poll_output().is_some() {}
});
