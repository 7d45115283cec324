//! What a remote sender puts in the scheduler's mailbox: the input decodes or is
//! refused, never panics, round-trips; and the hosted scheduler applies it (as from a
//! client) without panicking, answering exactly one reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexus_actors::codec;
use plexus_durable::SenderId;
use plexus_durable::activation::Input as Delivery;
use plexus_scheduler::app::SchedulerApp;
use plexus_scheduler::protocol::Input;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = codec::decode_body::<Input>(data, codec::FRAME_BYTES_MAX) {
        let bytes = codec::encode_body(&input).expect("an input re-encodes");
        let again: Input = codec::decode_body(&bytes, codec::FRAME_BYTES_MAX).expect("decodes");
        assert_eq!(again, input);
    }
    let mut app = SchedulerApp::default();
    let applied = app
        .apply(
            vec![Delivery {
                from: Some(SenderId::Client(1)),
                seq: 1,
                payload: data.to_vec(),
                trace: None,
            }],
            true,
        )
        .expect("the scheduler applies a remote input");
    assert!(applied.replies.len() <= 1, "one input, several replies");
});
