//! Seed inputs for the fuzz targets: valid encodings of each decoder's input, built
//! through the crates' own encoders, so the fuzzer starts from the accepted language
//! rather than from nothing. `cargo run --example seeds` writes them to
//! `corpus/<target>/`; after a wire format changes, rerun it (and fix this file where
//! the compiler says a type changed).

use std::sync::Arc;

use plexus_actors::codec;
use plexus_actors::envelope::{Failure, TraceContext};
use plexus_actors::migratable::Migratable;
use plexus_actors::{ActorId, NodeId};
use plexus_durable::activation::DurableState;
use plexus_durable::activation::Input as Delivery;
use plexus_durable::replica::{Slot, encode_slot};
use plexus_durable::wire::{Command, DurableMsg, Envelope};
use plexus_durable::{Ballot, DurableKey, Record, ReplicaSet, SenderId};
use plexus_mesh::allowlist::{Allowlist, SignedAllowlist, SubmitterEntry};
use plexus_mesh::membership::{MemberState, MemberUpdate, Probe};
use plexus_mesh::registry::Claim;
use plexus_mesh::wire::{
    AckFrame, CloseFrame, ControlPacket, DataBody, DataFrame, Frame, encode_frame,
};
use plexus_scheduler::app::{SchedulerApp, decode_response};
use plexus_scheduler::placement::NodeInfo;
use plexus_scheduler::protocol::{Input, Request, Response};
use plexus_scheduler::{ActorSpec, JobSpec, Signed, State, View};
use plexus_vocab::identity::NodeKey;
use plexus_vocab::resources::Resources;

/// A job spec using every section.
pub const JOB_TOML: &str = r#"
name = "wordcount"
priority = 10
placement = "pack"
constraints = "region in [eu, us] && kyc"
durability = 2

[resources]
cpu = 0.5
memory = "256MiB"

[[stage]]
name = "parse"
kind = "tokenize"
to = ["count"]
replicas = 2

[[stage]]
name = "count"
kind = "word-count"
config = { top = 5 }
constraints = "ssd || !region in [cn]"
resources = { cpu = "2", memory = "1GiB", gpu = 1 }
"#;

/// A pipeline spec in TOML.
pub const PIPELINE_TOML: &str = r#"
name = "word-stats"

[[stage]]
name = "lines"
kind = "text-source"
to = ["words"]
config = { repeat = 3, batch = 128, text = "a b c" }

[[stage]]
name = "words"
kind = "tokenize"
to = ["top-words", "lengths"]
config = { min_len = 3 }
capacity = 64

[[stage]]
name = "top-words"
kind = "word-count"
config = { top = 8, ratio = 0.5 }

[[stage]]
name = "lengths"
kind = "length-histogram"
"#;

/// The same pipeline in JSON.
pub const PIPELINE_JSON: &str = r#"{"name":"p","stages":[{"name":"a","kind":"k","to":["b"],"config":{"x":[1,2.5,null,true]}},{"name":"b","kind":"k","capacity":8}]}"#;

fn key(text: &str) -> DurableKey {
    DurableKey::new(text).expect("a valid sample key")
}

fn node(i: u64) -> NodeId {
    NodeId::synthetic(i)
}

fn signer() -> NodeKey {
    NodeKey::from_seed([7; 32])
}

fn frames() -> Vec<Frame> {
    let actor = ActorId::new(node(1), 2);
    let trace = TraceContext {
        trace_id: [1; 16],
        span_id: [2; 8],
        flags: 1,
    };
    let data = |body: DataBody| {
        Frame::Data(DataFrame {
            session: 5,
            epoch: 1,
            seq: 77,
            body: Arc::new(body),
        })
    };
    vec![
        Frame::Control(ControlPacket {
            probe: Probe::PingReq {
                seq: 3,
                target: node(4),
            },
            members: vec![Arc::new(MemberUpdate {
                id: node(2),
                incarnation: 9,
                state: MemberState::Suspect,
                meta: None,
                sig: vec![3; 64].into(),
            })],
            claims: vec![Claim {
                name: "n".into(),
                node: node(2),
                actor,
                lamport: 1,
                rank: 0,
                version: 2,
                removed: false,
                sig: vec![4; 64].into(),
            }],
        }),
        Frame::Control(ControlPacket {
            probe: Probe::Ping { seq: 1 },
            members: vec![],
            claims: vec![],
        }),
        data(DataBody::Tell {
            target: actor,
            message_type: "m".into(),
            payload: vec![1, 2, 3].into(),
            trace: None,
        }),
        data(DataBody::Ask {
            target: actor,
            message_type: "plexus.durable".into(),
            payload: vec![4; 8].into(),
            corr: 8,
            trace: Some(trace),
        }),
        data(DataBody::Reply {
            corr: 8,
            result: Ok(vec![9]),
        }),
        data(DataBody::Reply {
            corr: 9,
            result: Err(Failure::MailboxFull),
        }),
        data(DataBody::Chunk {
            bytes: vec![5; 16].into(),
            last: false,
        }),
        Frame::Ack(AckFrame {
            session: 5,
            epoch: 1,
            up_to: 77,
            refused: vec![(70, Failure::MailboxFull)],
            receiver: 9,
        }),
        Frame::Close(CloseFrame {
            session: 5,
            epoch: 2,
            up_to: 77,
        }),
    ]
}

fn ballot() -> Ballot {
    Ballot {
        round: 3,
        node: node(1),
    }
}

fn set() -> ReplicaSet {
    ReplicaSet::new(vec![node(1), node(2), node(3)]).expect("a valid sample set")
}

fn record() -> Record {
    Record {
        ballot: ballot(),
        version: 5,
        set: set(),
        body: codec::encode_body(&DurableState::empty()).expect("a state encodes")
            .into(),
    }
}

fn durable_msgs() -> Vec<DurableMsg> {
    let env = Envelope {
        to: key("j/s/0"),
        from: SenderId::Client(7),
        reply_to: node(1),
        seq: 9,
        payload: vec![1, 2, 3],
        trace: None,
        hops: 0,
        ballot: ballot(),
    };
    vec![
        DurableMsg::Envelope(env.clone()),
        DurableMsg::Envelope(Envelope {
            from: SenderId::Actor(key("j/t/1")),
            ..env
        }),
        DurableMsg::Command(Command::Activate {
            key: key("a"),
            sets: vec![set()],
            spec: actor_spec().encode().expect("a spec encodes"),
        }),
    ]
}

fn actor_spec() -> ActorSpec {
    ActorSpec {
        job: "wordcount".into(),
        stage: "parse".into(),
        index: 1,
        kind: "tokenize".into(),
        config: r#"{"top":5}"#.into(),
        outputs: vec![("count".into(), 2)],
    }
}

/// The network the samples' requests name.
pub const NETWORK: &str = "fuzz-net";
/// The time the samples' requests are submitted at (Unix ms).
pub const NOW_MS: u64 = 1_000_000;

/// A request signed by [`client`] for [`NETWORK`] with sequence `seq`.
fn sign(request: Request, seq: u64) -> Input {
    Input::Signed {
        signed: Signed::sign(request, NETWORK, seq, NOW_MS + 60_000, &client()).expect("signs"),
        now_ms: NOW_MS,
    }
}

/// The key the sample view admits as a submitter.
fn client() -> NodeKey {
    NodeKey::from_seed([9; 32])
}

/// A view of five live nodes, with [`client`] a submitter.
pub fn sample_view() -> View {
    View {
        me: Some(node(1)),
        nodes: (1..=5)
            .map(|i| NodeInfo {
                id: node(i),
                tags: [("kyc", ""), ("region", "eu"), ("ssd", "")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                capacity: Resources {
                    cpu_millis: 8000,
                    memory_bytes: 16 << 30,
                    gpus: 1,
                },
                alive: i != 5,
                draining: false,
            })
            .collect(),
        locations: Default::default(),
        submitters: [client().node_id()].into(),
        members: (1..=5).map(node).collect(),
        network: NETWORK.into(),
        kinds: ["tokenize", "word-count"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        partial: false,
    }
}

fn delivery(from: Option<SenderId>, input: &Input) -> Delivery {
    Delivery {
        from,
        seq: 1,
        payload: codec::encode_body(input).expect("an input encodes"),
        trace: None,
    }
}

/// What the `scheduler_snapshot` target runs a restored scheduler through: a local
/// tick with [`sample_view`], then a status request from a submitter.
pub fn scheduler_run_inputs() -> Vec<Delivery> {
    vec![
        delivery(None, &Input::Tick(sample_view())),
        delivery(
            Some(SenderId::Client(2)),
            &sign(Request::Status, 2),
        ),
    ]
}

/// Snapshots of a scheduler with a deployed job, after a migration and a drain.
fn busy_scheduler_snapshots() -> Vec<Vec<u8>> {
    let mut app = SchedulerApp::default();
    let mut out = Vec::new();
    let steps = [
        Input::Tick(sample_view()),
        sign(
            Request::Deploy {
                spec: JOB_TOML.into(),
            },
            1,
        ),
        Input::Tick(sample_view()),
        sign(
            Request::Migrate {
                actor: "wordcount/parse/0".into(),
                to: node(3),
            },
            2,
        ),
        Input::Tick(sample_view()),
    ];
    let drains = (1..=4).map(|i| {
        let request = Request::Drain { node: node(i) };
        sign(request, 2 + i)
    });
    let steps: Vec<Input> = steps.into_iter().chain(drains).collect();
    for (i, step) in steps.iter().enumerate() {
        let from = match step {
            Input::Tick(_) => None,
            Input::Signed { .. } => Some(SenderId::Client(i as u64)),
        };
        let applied = app
            .apply(vec![delivery(from, step)], true)
            .expect("applies");
        if matches!(
            step,
            Input::Signed {
                signed: Signed {
                    request: Request::Deploy { .. },
                    ..
                },
                ..
            }
        ) {
            let reply = applied.replies.first().cloned().flatten();
            let response = reply.and_then(|r| r.ok()).map(|b| decode_response(&b));
            assert!(
                matches!(response, Some(Ok(Response::Deployed { .. }))),
                "the sample job no longer deploys: {response:?}"
            );
        }
        if let Some(snapshot) = applied.snapshot {
            let mut bytes = snapshot.schema_version.to_le_bytes().to_vec();
            bytes.extend_from_slice(&snapshot.bytes);
            out.push(bytes);
        }
    }
    out
}

fn signed(request: Request) -> Signed {
    Signed::sign(request, NETWORK, 42, NOW_MS + 60_000, &signer()).expect("a request signs")
}

fn requests() -> Vec<Request> {
    vec![
        Request::Deploy {
            spec: JOB_TOML.into(),
        },
        Request::Stop {
            job: "wordcount".into(),
        },
        Request::Migrate {
            actor: "wordcount/parse/0".into(),
            to: node(2),
        },
        Request::Drain { node: node(3) },
        Request::Status,
    ]
}

fn allowlist() -> SignedAllowlist {
    let key = signer();
    let mut list = Allowlist::new("fuzz", key.node_id());
    list.version = 3;
    list.submitters
        .insert(node(9), SubmitterEntry { name: "ci".into() });
    SignedAllowlist::sign(list, &key).expect("an allowlist signs")
}

/// Every target's seeds: `(target, inputs)`.
/// A 4-member DKG run to completion in memory: every DKG message sent (encoded),
/// and each member's outcome.
fn dkg_run() -> (Vec<Vec<u8>>, Vec<plexus_epochs::dkg::DkgOutcome>) {
    use plexus_actors::Time;
    use plexus_epochs::dkg::{DkgOutput, DkgRecipient, DkgRound, DkgTimings};
    let keys: Vec<NodeKey> = (1..=4u8).map(|i| NodeKey::from_seed([i; 32])).collect();
    let ids: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
    let mut rounds: Vec<DkgRound> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            DkgRound::start(b"fuzz", 0, k.clone(), &ids, DkgTimings::default(), Time::ZERO, [i as u8; 32])
                .expect("a dkg round starts")
        })
        .collect();
    let mut sent = Vec::new();
    let mut done = Vec::new();
    let mut now = Time::ZERO;
    for _ in 0..1000 {
        let mut queue = Vec::new();
        for (i, r) in rounds.iter_mut().enumerate() {
            while let Some(o) = r.poll_output() {
                match o {
                    DkgOutput::Send { to, message } => queue.push((i, to, message)),
                    DkgOutput::Done(d) => done.push(*d),
                    _ => {}
                }
            }
        }
        if queue.is_empty() {
            match rounds.iter().filter_map(DkgRound::poll_timeout).min() {
                Some(t) => {
                    now = now.max(t);
                    rounds.iter_mut().for_each(|r| r.handle_timeout(now));
                    continue;
                }
                None => break,
            }
        }
        for (i, to, m) in queue {
            sent.push(codec::encode(&m).expect("a dkg message encodes"));
            for (j, r) in rounds.iter_mut().enumerate() {
                let deliver = match &to {
                    DkgRecipient::Node(n) => *n == ids[j],
                    _ => j != i,
                };
                if deliver {
                    let _ = r.handle_message(now, ids[i], m.clone());
                }
            }
        }
    }
    (sent, done)
}

/// Work messages of every kind: a worker's signed receipt, a verifier's signed
/// re-execution of it, a fetch of its inputs and the answer.
/// Storage messages of every kind, and the key-value store's anti-entropy
/// between two real replicas.
fn storage_messages() -> Vec<Vec<u8>> {
    use plexus_actors::Time;
    use plexus_storage::ChunkId;
    use plexus_storage::kv::{Kv, KvConfig};
    use plexus_storage::wire::{StorageWire, StoreOutcome};
    let chunk = ChunkId::of(b"chunk");
    let mut msgs = vec![
        StorageWire::Store {
            req: 1,
            chunk,
            replicas: 3,
            bytes: plexus_storage::wire::Bytes::from_static(b"chunk"),
        },
        StorageWire::Stored {
            req: 1,
            chunk,
            outcome: StoreOutcome::Full { free_bytes: 9 },
        },
        StorageWire::Fetch { req: 2, chunk },
        StorageWire::Chunk {
            req: 2,
            chunk,
            bytes: Some(plexus_storage::wire::Bytes::from_static(b"chunk")),
        },
        StorageWire::Offer {
            chunks: vec![(chunk, 3), (ChunkId::of(b"other"), 1)],
        },
        StorageWire::Query {
            req: 3,
            chunks: vec![chunk],
        },
        StorageWire::Holding {
            req: 3,
            held: vec![true],
        },
        StorageWire::Confirm {
            req: 4,
            chunks: vec![chunk, ChunkId::of(b"other")],
        },
    ];
    let a = NodeKey::from_seed([2; 32]);
    let b = NodeKey::from_seed([1; 32]);
    let ids = [a.node_id(), b.node_id()];
    let mut ka = Kv::new(a, KvConfig::default());
    let mut kb = Kv::new(b, KvConfig::default());
    ka.set_members(ids);
    kb.set_members(ids);
    let now = Time::from_millis(1_000);
    ka.put(now, "models/digits", b"v1".to_vec()).expect("a put");
    ka.delete(now, "gone").expect("a delete");
    kb.put(now, "k", b"v".to_vec()).expect("a put");
    let mut rng = plexus_actors::rng::DetRng::new(1);
    ka.tick(now, &mut rng);
    for _ in 0..4 {
        let mut moved = Vec::new();
        while let Some((_, m)) = ka.poll_transmit() {
            moved.push((true, m));
        }
        while let Some((_, m)) = kb.poll_transmit() {
            moved.push((false, m));
        }
        for (from_a, m) in moved {
            msgs.push(StorageWire::Kv(m.clone()));
            let _ = if from_a {
                kb.handle(now, ids[0], m)
            } else {
                ka.handle(now, ids[1], m)
            };
        }
    }
    msgs.iter()
        .map(|m| m.encode().expect("a sample encodes"))
        .collect()
}

/// Manifests, public and sealed, and content id texts.
fn storage_manifests() -> Vec<Vec<u8>> {
    use plexus_storage::{ChunkId, Manifest, Sealing};
    let chunks: Vec<ChunkId> = (0u8..3).map(|i| ChunkId::of(&[i])).collect();
    let mut out: Vec<Vec<u8>> = [
        Manifest::new((2 << 20) + 7, 1 << 20, Sealing::Public, chunks.clone()),
        Manifest::new(
            (2 << 20) + 7,
            1 << 20,
            Sealing::XChaCha20Poly1305 {
                nonce_prefix: [9; 16],
            },
            chunks.clone(),
        ),
        Manifest::new(0, 1 << 20, Sealing::Public, vec![]),
    ]
    .into_iter()
    .map(|m| m.expect("a sample manifest").encode().expect("encodes"))
    .collect();
    out.push(chunks[0].to_string().into_bytes());
    out.push(chunks[1].to_hex().into_bytes());
    out
}

fn work_messages() -> Vec<Vec<u8>> {
    use plexus_poai::receipt::{RECEIPT_VERSION, items_digest};
    use plexus_poai::wire::WorkWire;
    use plexus_poai::{AuditMessage, Backend, Receipt, Verification};
    let worker = NodeKey::from_seed([1; 32]);
    let verifier = NodeKey::from_seed([2; 32]);
    let inputs = vec![vec![3u8; 64], vec![4u8; 64]];
    let receipt = Receipt {
        version: RECEIPT_VERSION,
        network: [0; 32],
        epoch: 1,
        worker: worker.node_id(),
        seq: 0,
        job: "digits".into(),
        executor: "digits/classify/0".into(),
        model: [5; 32],
        inputs: items_digest(&inputs),
        outputs: [6; 32],
        batch: 2,
        backend: Backend {
            name: "flex".into(),
            version: "burn 0.22.0, burn-flex 0.22.1".into(),
        },
        started_us: 1,
        took_us: 2,
    }
    .sign(&worker)
    .expect("a receipt signs");
    let hash = receipt.hash().expect("a receipt hashes");
    let verification = Verification {
        network: [0; 32],
        epoch: 1,
        receipt: hash,
        worker: worker.node_id(),
        verifier: verifier.node_id(),
        outputs: Some([7; 32]),
    }
    .sign(&verifier)
    .expect("a verification signs");
    [
        WorkWire::Audit(Box::new(AuditMessage::Receipt(receipt.clone()))),
        WorkWire::Audit(Box::new(AuditMessage::Verification {
            receipt,
            verification,
        })),
        WorkWire::Fetch {
            epoch: 1,
            receipt: hash,
        },
        WorkWire::Inputs {
            receipt: hash,
            items: Some(inputs.into_iter().map(serde_bytes::ByteBuf::from).collect()),
        },
        WorkWire::Inputs {
            receipt: hash,
            items: None,
        },
    ]
    .iter()
    .map(|m| m.encode().expect("a work message encodes"))
    .collect()
}

/// Epoch messages of every kind, from a real DKG's shares.
fn epoch_messages(done: &[plexus_epochs::dkg::DkgOutcome]) -> Vec<Vec<u8>> {
    use plexus_epochs::agreement::EpochMessage;
    use plexus_epochs::availability::Observation;
    use plexus_epochs::checkpoint::{CHECKPOINT_VERSION, Checkpoint, MemberRow, SignedCheckpoint, Vote};
    use plexus_epochs::rewards::RewardPolicy;
    use plexus_epochs::threshold;
    let Some(first) = done.first() else {
        return Vec::new();
    };
    let key = NodeKey::from_seed([1; 32]);
    let policy = RewardPolicy::default();
    let checkpoint = Checkpoint {
        version: CHECKPOINT_VERSION,
        network: [1; 32],
        epoch: 3,
        previous: [2; 32],
        allowlist_version: 1,
        allowlist_hash: [3; 32],
        members: first
            .committee
            .iter()
            .map(|n| MemberRow {
                node: *n,
                availability_ppm: 500_000,
                work_units: 0,
                reward_units: policy.units(500_000, 0),
            })
            .collect(),
        observers: first.committee[..3].to_vec(),
        observations_root: [4; 32],
        work_root: [0; 32],
        reward_policy: policy,
        evidence: Vec::new(),
        committee: first.committee.clone(),
        group_key: threshold::encode_group_key(first.sharing.public()),
    };
    let msg = checkpoint.signing_message().expect("a checkpoint hashes");
    let partials: Vec<_> = done[..3]
        .iter()
        .map(|d| {
            let (i, b) = threshold::sign_partial(&d.share, &msg);
            threshold::partial(i, &b).expect("a partial decodes")
        })
        .collect();
    let sig = threshold::combine(&first.sharing, &msg, &partials).expect("t partials combine");
    let signed = SignedCheckpoint {
        checkpoint: checkpoint.clone(),
        signature: threshold::encode_signature(&sig),
        signers: first.committee[..3].to_vec(),
    };
    let (index, partial) = threshold::sign_partial(&first.share, &msg);
    let observation = Observation {
        network: [1; 32],
        epoch: 3,
        observer: key.node_id(),
        uptime: vec![(first.committee[0], 1_000_000)],
        work: Some(plexus_epochs::work::ObservedWork::new(
            1,
            [4; 32],
            [(first.committee[1], 32)],
        )),
    }
    .sign(&key)
    .expect("an observation signs");
    let messages = vec![
        EpochMessage::Observation(observation),
        EpochMessage::Vote {
            epoch: 3,
            index,
            vote: Vote {
                hash: checkpoint.hash().expect("hashes"),
                partial,
            },
        },
        EpochMessage::Certificate(Box::new(signed.clone())),
    ];
    let mut out: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| m.encode().expect("a message encodes"))
        .collect();
    out.push(signed.encode().expect("a signed checkpoint encodes"));
    out
}

pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let (dkg_messages, dkg_done) = dkg_run();
    let enc = |r: Result<Vec<u8>, codec::CodecError>| r.expect("a sample encodes");
    let slot = Slot {
        promised: ballot(),
        record: Some(record()),
        digest: None,
    };
    let empty_slot = Slot {
        promised: ballot(),
        record: None,
        digest: None,
    };
    let job = JobSpec::from_toml(JOB_TOML).expect("the sample job parses");
    let state = State::default();
    let snapshot = state.snapshot().expect("a state snapshots");
    let mut snap_bytes = snapshot.schema_version.to_le_bytes().to_vec();
    snap_bytes.extend_from_slice(&snapshot.bytes);
    let mut stream = Vec::new();
    for frame in frames() {
        codec::write_delimited(&enc(encode_frame(&frame)), usize::MAX, &mut stream)
            .expect("a frame delimits");
    }
    let mut stream_seed = vec![3u8];
    stream_seed.extend_from_slice(&stream);
    vec![
        ("dkg_message", dkg_messages),
        ("epoch_message", epoch_messages(&dkg_done)),
        ("work_message", work_messages()),
        ("storage_message", storage_messages()),
        ("storage_manifest", storage_manifests()),
        (
            "mesh_frame",
            frames().iter().map(|f| enc(encode_frame(f))).collect(),
        ),
        ("mesh_stream", vec![stream_seed]),
        (
            "durable_wire",
            durable_msgs()
                .iter()
                .map(|m| enc(plexus_durable::wire::encode(m)))
                .collect(),
        ),
        (
            "allowlist",
            vec![allowlist().encode().expect("an allowlist encodes")],
        ),
        ("job_spec", vec![JOB_TOML.as_bytes().to_vec()]),
        (
            "pipeline_spec",
            vec![
                PIPELINE_TOML.as_bytes().to_vec(),
                PIPELINE_JSON.as_bytes().to_vec(),
            ],
        ),
        (
            "stored_slot",
            vec![
                enc(encode_slot(&slot)),
                enc(encode_slot(&empty_slot)),
                enc(codec::encode(&ballot())),
            ],
        ),
        (
            "durable_state",
            vec![codec::encode_body(&DurableState::empty()).expect("a state encodes")],
        ),
        (
            "scheduler_input",
            requests()
                .into_iter()
                .map(|r| {
                    enc(codec::encode_body(&Input::Signed {
                        signed: signed(r),
                        now_ms: NOW_MS,
                    }))
                })
                .chain([enc(codec::encode_body(&Input::Tick(View::default())))])
                .collect(),
        ),
        (
            "scheduler_signed",
            requests()
                .into_iter()
                .map(|r| enc(signed(r).encode()))
                .collect(),
        ),
        (
            "scheduler_response",
            vec![enc(codec::encode_body(&Response::Deployed {
                job: job.name.clone(),
                actors: vec![],
            }))],
        ),
        ("actor_spec", vec![enc(actor_spec().encode())]),
        (
            "scheduler_snapshot",
            std::iter::once(snap_bytes)
                .chain(busy_scheduler_snapshots())
                .collect(),
        ),
    ]
}
