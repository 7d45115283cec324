//! A durable kind of your own: a `histogram` actor whose state (counts per bucket)
//! is replicated, survives its node and moves with it, running on an embedded node
//! beside the standard kinds.
//!
//! The node is a one-node cluster on 127.0.0.1 with a fresh allowlist; the example
//! deploys a job naming the kind through the scheduler, sends it numbers exactly
//! once, waits until every one is acknowledged (its effect committed), and prints
//! the histogram.
//!
//! `cargo run --example durable_kind`

use std::collections::BTreeMap;
use std::error::Error;
use std::time::Duration;

use plexus::Node;
use plexus::actors::codec;
use plexus::actors::migratable::Snapshot;
use plexus::hosting::store::{RocksStore, store_dir};
use plexus::hosting::{DurableService, Local, ServiceMsg, ServiceStatus, ask_scheduler};
use plexus_durable::activation::{Applied, Input};
use plexus_durable::types::DurableKey;
use plexus_host::{CodeError, DurableCode, DurableKind};
use plexus_mesh::allowlist::{Allowlist, NodeEntry, SignedAllowlist, SubmitterEntry};
use plexus_mesh::driver::MeshConfig;
use plexus_scheduler::protocol::{ActorSpec, Request, Response, Signed};
use plexus_vocab::resources::{Resources, Tags};
use serde::{Deserialize, Serialize};

/// The kind: counts the numbers it is sent, in buckets of `width` (from the
/// stage's config, `{"width": 10}`).
struct Histogram;

/// Its state, which is also its snapshot.
#[derive(Default, Serialize, Deserialize)]
struct Buckets {
    width: u64,
    counts: BTreeMap<u64, u64>,
    rejected: u64,
}

struct HistogramCode(Buckets);

impl DurableKind for Histogram {
    fn name(&self) -> &str {
        "histogram"
    }

    fn build(
        &self,
        _key: &DurableKey,
        spec: &ActorSpec,
        state: &Snapshot,
    ) -> Result<Box<dyn DurableCode>, CodeError> {
        if !state.bytes.is_empty() {
            // Restored on this node, after a crash or a migration.
            let buckets = codec::decode_body(&state.bytes, 1 << 20).map_err(CodeError::State)?;
            return Ok(Box::new(HistogramCode(buckets)));
        }
        let config: serde_json::Value =
            serde_json::from_str(&spec.config).map_err(|e| CodeError::Config(e.to_string()))?;
        let width = config["width"].as_u64().unwrap_or(10);
        if width == 0 {
            return Err(CodeError::Config("width must be at least 1".into()));
        }
        Ok(Box::new(HistogramCode(Buckets {
            width,
            ..Buckets::default()
        })))
    }
}

impl DurableCode for HistogramCode {
    fn apply(&mut self, inputs: Vec<Input>, snapshot: bool) -> Result<Applied, CodeError> {
        let mut out = Applied::default();
        for input in inputs {
            match std::str::from_utf8(&input.payload)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
            {
                Some(n) => *self.0.counts.entry(n / self.0.width).or_insert(0) += 1,
                None => self.0.rejected += 1,
            }
            out.replies.push(None);
        }
        if snapshot {
            let bytes =
                codec::encode_body(&self.0).map_err(|e| CodeError::Failed(e.to_string()))?;
            out.snapshot = Some(Snapshot {
                schema_version: 1,
                bytes,
            });
        }
        Ok(out)
    }

    fn describe(&self) -> serde_json::Value {
        let w = self.0.width;
        let buckets: BTreeMap<String, u64> = self
            .0
            .counts
            .iter()
            .map(|(b, n)| (format!("{}-{}", b * w, b * w + w - 1), *n))
            .collect();
        serde_json::json!({ "buckets": buckets, "rejected": self.0.rejected })
    }

    fn check_invariants(&self) -> Result<(), String> {
        (self.0.width > 0)
            .then_some(())
            .ok_or_else(|| "a histogram with width 0".to_string())
    }
}

const JOB: &str = r#"
name = "numbers"
durability = 1          # one node: one snapshot replica
[resources]
cpu = "100m"
[[stage]]
name = "hist"
kind = "histogram"
config = '{"width": 10}'
"#;

async fn status(service: &plexus::ActorRef<ServiceMsg>) -> Result<ServiceStatus, Box<dyn Error>> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    service
        .tell(ServiceMsg::Local(Local::Status { reply }))
        .await?;
    Ok(answer.await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // A network of one: a governance key admits this node and a client key.
    let governance = plexus::node::ephemeral_key()?;
    let node_key = plexus::node::ephemeral_key()?;
    let client = plexus::node::ephemeral_key()?;
    let mut allowlist = Allowlist::new("example", governance.node_id());
    allowlist.nodes.insert(
        node_key.node_id(),
        NodeEntry {
            operator: "me".into(),
            tags: Tags::new(),
            declared: Resources::default(),
        },
    );
    allowlist.submitters.insert(
        client.node_id(),
        SubmitterEntry {
            name: "client".into(),
        },
    );
    let allowlist = SignedAllowlist::sign(allowlist, &governance)?;
    // The replica store opens before the node joins the mesh: a node whose store
    // cannot open never offers itself as a replica.
    let data_dir = std::env::temp_dir().join(format!("plexus-durable-kind-{}", std::process::id()));
    let store = RocksStore::open(&store_dir(&data_dir))?;
    let mut config = MeshConfig::new(node_key.clone(), allowlist);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    let node = Node::builder()
        .key(node_key.clone())
        .start_meshed(config)
        .await?;
    let mesh = node.mesh().ok_or("no mesh")?.clone();

    // The standard kinds, plus ours.
    let mut kinds = plexus::hosting::kinds::standard();
    kinds.register(Histogram)?;
    let resources = Resources {
        cpu_millis: 2_000,
        memory_bytes: 1 << 30,
        gpus: 0,
    };
    let service = DurableService::start(
        &node,
        mesh,
        node_key,
        store,
        (resources, Tags::new()),
        kinds,
        Default::default(),
    )
    .await?;

    // Deploy through the scheduler (it starts within a few seconds).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // A signed request names its network, a sequence number above the signer's
    // last, and an expiry (wall-clock milliseconds), so a copy cannot be replayed.
    #[allow(clippy::disallowed_methods)] // the embedding host is a driver
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let deploy = Signed::sign(
        Request::Deploy { spec: JOB.into() },
        "example",
        1,
        now_ms + 60_000,
        &client,
    )?;
    let answer = ask_scheduler(&service, &deploy, deadline).await?;
    let Response::Deployed { actors, .. } = answer else {
        return Err(format!("not deployed: {answer:?}").into());
    };
    println!("deployed: {actors:?}");
    let key = DurableKey::new("numbers/hist/0")?;
    while !status(&service).await?.actors.contains_key(key.as_str()) {
        if tokio::time::Instant::now() > deadline {
            return Err("the actor did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Exactly once: each number is applied once, even if acks are lost.
    let numbers = [
        3u64, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26, 43, 38, 32, 79,
    ];
    for n in numbers {
        let (reply, accepted) = tokio::sync::oneshot::channel();
        service
            .tell(ServiceMsg::Local(Local::Send {
                to: key.clone(),
                payload: n.to_string().into_bytes(),
                trace: None,
                reply,
            }))
            .await?;
        accepted.await??;
    }
    let summary = loop {
        let s = status(&service).await?;
        if s.acked >= numbers.len() as u64 {
            break s.actors.get(key.as_str()).cloned().unwrap_or_default();
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("only {} of {} acknowledged", s.acked, numbers.len()).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("histogram: {summary}");
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}
