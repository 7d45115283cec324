//! Runtime tests: bounded mailboxes, ask/tell, registry, groups, two systems in one
//! process, and pipelines. No sleeps: every wait is on an event.
// Driver-level tests: they run on tokio like the drivers they test.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::sync::Arc;
use std::time::Duration;

use plexus_actors::pipeline::{
    Outbox, Pipeline, PipelineError, Produce, Stage, StageError, register_stage,
};
use plexus_actors::runtime::{
    Actor, ActorError, ActorSystem, AskError, Context, Exit, KindArgs, Message, RegistryError,
    SendError, SpawnError, SpawnOptions, SystemConfig,
};
use plexus_actors::{Datum, NodeId};
use tokio::sync::{Semaphore, mpsc};

fn system(n: u64) -> ActorSystem {
    ActorSystem::new(SystemConfig::new(NodeId::synthetic(n)))
}

/// Blocks in `handle` until the test releases a permit; reports each entry.
struct Gate {
    permits: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<u32>,
}

struct Hold(u32);
impl Message for Hold {
    type Reply = u32;
}

impl Actor for Gate {
    type Msg = Hold;
    type State = ();
    type Args = ();

    async fn started(&self, _: &Context<Hold>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(
        &self,
        _: &Context<Hold>,
        Hold(n): Hold,
        _: &mut (),
    ) -> Result<u32, ActorError> {
        let _ = self.entered.send(n);
        self.permits.acquire().await?.forget();
        Ok(n * 10)
    }
}

#[tokio::test]
async fn a_full_mailbox_hands_the_message_back_and_tell_waits_for_space() {
    let sys = system(1);
    let permits = Arc::new(Semaphore::new(0));
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let gate = sys
        .spawn_with(
            Gate {
                permits: permits.clone(),
                entered: entered_tx,
            },
            (),
            SpawnOptions::default().capacity(2),
        )
        .await
        .unwrap();
    gate.try_tell(Hold(0)).unwrap();
    assert_eq!(entered.recv().await, Some(0)); // #0 is being handled, the mailbox is empty
    gate.try_tell(Hold(1)).unwrap();
    gate.try_tell(Hold(2)).unwrap();
    assert_eq!(gate.mailbox_depth(), Some(2));
    match gate.try_tell(Hold(3)) {
        Err(SendError::MailboxFull(Hold(3))) => {}
        other => panic!("expected MailboxFull with the message back, got {other:?}"),
    }
    // `tell` waits for space: it cannot finish until the actor takes #1 out.
    let waiting = tokio::spawn({
        let gate = gate.clone();
        async move { gate.tell(Hold(3)).await.is_ok() }
    });
    assert!(!waiting.is_finished());
    permits.add_permits(1); // finish #0; the actor takes #1 out, freeing a slot
    assert_eq!(entered.recv().await, Some(1));
    assert!(waiting.await.unwrap());
    permits.add_permits(3);
    assert_eq!(entered.recv().await, Some(2));
    assert_eq!(entered.recv().await, Some(3));
    sys.shutdown().await;
}

#[tokio::test]
async fn ask_replies_and_times_out() {
    let sys = system(1);
    let permits = Arc::new(Semaphore::new(1));
    let (entered_tx, _entered) = mpsc::unbounded_channel();
    let gate = sys
        .spawn(
            Gate {
                permits: permits.clone(),
                entered: entered_tx,
            },
            (),
        )
        .await
        .unwrap();
    assert_eq!(gate.ask(Hold(4)).await.unwrap(), 40);
    // No permit left: the next ask blocks inside the actor and times out.
    match gate.ask_timeout(Hold(5), Duration::from_millis(50)).await {
        Err(AskError::Timeout) => {}
        other => panic!("expected timeout, got {other:?}"),
    }
    permits.add_permits(1);
    sys.shutdown().await;
}

struct Counter;
#[derive(Debug)]
enum Count {
    Add(u64),
    Get,
    Crash,
}
impl Message for Count {
    type Reply = u64;
}
impl Actor for Counter {
    type Msg = Count;
    type State = u64;
    type Args = u64;
    async fn started(&self, _: &Context<Count>, start: u64) -> Result<u64, ActorError> {
        Ok(start)
    }
    async fn handle(&self, _: &Context<Count>, msg: Count, n: &mut u64) -> Result<u64, ActorError> {
        match msg {
            Count::Add(k) => *n += k,
            Count::Get => {}
            Count::Crash => return Err("asked to crash".into()),
        }
        Ok(*n)
    }
}

#[tokio::test]
async fn a_failing_actor_fails_the_ask_and_reports_its_exit() {
    let sys = system(1);
    let c = sys.spawn(Counter, 0).await.unwrap();
    assert_eq!(c.ask(Count::Add(2)).await.unwrap(), 2);
    match c.ask(Count::Crash).await {
        Err(AskError::Failed(why)) => assert!(why.contains("asked to crash")),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(c.wait_exit().await, Exit::Failed("asked to crash".into()));
    assert!(matches!(
        c.try_tell(Count::Get),
        Err(SendError::Stopped(Count::Get))
    ));
    assert!(!sys.contains(c.id()));
}

#[tokio::test]
async fn a_respawn_under_the_same_id_is_found_through_old_refs() {
    let sys = system(1);
    let first = sys.spawn(Counter, 0).await.unwrap();
    let id = first.id();
    first.stop();
    assert_eq!(first.wait_exit().await, Exit::Normal);
    let _second = sys
        .spawn_with(
            Counter,
            100,
            SpawnOptions {
                id: Some(id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The old ref finds the new incarnation, which started with fresh state.
    assert_eq!(first.ask(Count::Get).await.unwrap(), 100);
    // A second live actor under the same id is refused.
    let dup = sys
        .spawn_with(
            Counter,
            0,
            SpawnOptions {
                id: Some(id),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(dup, Err(SpawnError::AlreadyRunning(d)) if d == id));
    sys.shutdown().await;
}

#[tokio::test]
async fn names_and_groups_are_per_system_and_cleaned_on_exit() {
    let a = system(1);
    let b = system(2);
    let ca = a
        .spawn_with(Counter, 1, SpawnOptions::named("counter"))
        .await
        .unwrap();
    // The same name in another system in the same process does not collide.
    let cb = b
        .spawn_with(Counter, 2, SpawnOptions::named("counter"))
        .await
        .unwrap();
    assert_eq!(a.whereis("counter"), Some(ca.id()));
    assert_eq!(b.whereis("counter"), Some(cb.id()));
    assert_ne!(ca.id(), cb.id());
    assert_eq!(
        a.whereis_typed::<Count>("counter")
            .unwrap()
            .ask(Count::Get)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.whereis_typed::<Count>("counter")
            .unwrap()
            .ask(Count::Get)
            .await
            .unwrap(),
        2
    );
    // Taken names are refused with the holder named.
    let clash = a
        .spawn_with(Counter, 0, SpawnOptions::named("counter"))
        .await;
    assert!(
        matches!(clash, Err(SpawnError::Registry(RegistryError::NameTaken { holder, .. })) if holder == ca.id())
    );
    // Groups.
    let extra = a.spawn(Counter, 5).await.unwrap();
    a.join_group("workers", ca.id()).unwrap();
    a.join_group("workers", extra.id()).unwrap();
    assert_eq!(a.group_members("workers"), vec![ca.id(), extra.id()]);
    assert!(b.group_members("workers").is_empty());
    a.leave_group("workers", extra.id());
    assert_eq!(a.group_members("workers"), vec![ca.id()]);
    // A stopped actor leaves the registry and its groups.
    ca.stop();
    ca.wait_exit().await;
    assert_eq!(a.whereis("counter"), None);
    assert!(a.group_members("workers").is_empty());
    assert_eq!(b.whereis("counter"), Some(cb.id()));
    a.shutdown().await;
    assert_eq!(a.actor_count(), 0);
    assert_eq!(b.actor_count(), 1);
    assert!(matches!(
        a.spawn(Counter, 0).await,
        Err(SpawnError::ShuttingDown)
    ));
    b.shutdown().await;
}

#[tokio::test]
async fn kinds_spawn_by_name_and_refuse_bad_config() {
    let sys = system(1);
    sys.kinds().register_actor("counter", |args: &KindArgs| {
        let start = args
            .config
            .get("start")
            .and_then(|v| v.as_u64())
            .ok_or("config needs `start`")?;
        Ok((Counter, start))
    });
    let id = sys
        .spawn_kind(
            "counter",
            KindArgs::config(serde_json::json!({"start": 7})),
            SpawnOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        sys.lookup::<Count>(id)
            .unwrap()
            .ask(Count::Get)
            .await
            .unwrap(),
        7
    );
    assert!(
        sys.lookup::<Hold>(id).is_err(),
        "wrong message type must be refused"
    );
    let bad = sys
        .spawn_kind(
            "counter",
            KindArgs::config(serde_json::json!({})),
            SpawnOptions::default(),
        )
        .await;
    assert!(matches!(bad, Err(SpawnError::InvalidConfig { .. })));
    let unknown = sys
        .spawn_kind("nope", KindArgs::default(), SpawnOptions::default())
        .await;
    assert!(
        matches!(unknown, Err(SpawnError::UnknownKind { ref known, .. }) if known == "counter")
    );
    let info = sys.actors();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].kind.as_deref(), Some("counter"));
    sys.shutdown().await;
}

struct Numbers {
    next: i64,
    end: i64,
}
impl Stage for Numbers {
    fn produce(&mut self, out: &mut Outbox) -> Result<Produce, StageError> {
        for _ in 0..7 {
            if self.next >= self.end {
                return Ok(Produce::Done);
            }
            out.emit(self.next);
            self.next += 1;
        }
        Ok(Produce::More)
    }
    fn process(&mut self, _: Datum, _: &mut Outbox) -> Result<(), StageError> {
        Err("a source takes no input".into())
    }
}

struct Scale(i64);
impl Stage for Scale {
    fn process(&mut self, item: Datum, out: &mut Outbox) -> Result<(), StageError> {
        let n = item.as_int().ok_or("expected an integer")?;
        if n == -1 {
            return Err("poisoned item".into());
        }
        out.emit(n * self.0);
        Ok(())
    }
}

struct Sum(i64);
impl Stage for Sum {
    fn process(&mut self, item: Datum, _: &mut Outbox) -> Result<(), StageError> {
        self.0 += item.as_int().ok_or("expected an integer")?;
        Ok(())
    }
    fn finish(&mut self, out: &mut Outbox) -> Result<(), StageError> {
        out.emit(self.0);
        Ok(())
    }
}

#[tokio::test]
async fn a_diamond_pipeline_runs_to_completion_with_backpressure() {
    let sys = ActorSystem::new(SystemConfig {
        mailbox_capacity: 4,
        ..SystemConfig::new(NodeId::synthetic(1))
    });
    register_stage(sys.kinds(), "scale", |cfg| {
        Ok(Box::new(Scale(
            cfg.get("by")
                .and_then(|v| v.as_i64())
                .ok_or("scale needs `by`")?,
        )))
    });
    let pipeline = Pipeline::builder("diamond")
        .custom(
            "numbers",
            Numbers { next: 0, end: 100 },
            &["double", "triple"],
        )
        .kind("double", "scale", serde_json::json!({"by": 2}), &["sum"])
        .kind("triple", "scale", serde_json::json!({"by": 3}), &["sum"])
        .custom("sum", Sum(0), &[])
        .build(sys.kinds())
        .unwrap();
    let report = pipeline.run(&sys).await.unwrap();
    let expected: i64 = (0..100).map(|n| 2 * n + 3 * n).sum();
    assert_eq!(report.results, vec![Datum::Int(expected)]);
    let by_name = |n: &str| report.stages.iter().find(|s| s.stage == n).unwrap().clone();
    assert_eq!(by_name("numbers").items_out, 100);
    assert_eq!(by_name("double").items_in, 100);
    assert_eq!(by_name("sum").items_in, 200);
    assert_eq!(
        sys.actor_count(),
        0,
        "every stage and the collector stopped"
    );
}

#[tokio::test]
async fn a_failing_stage_fails_the_run_with_its_name() {
    let sys = system(1);
    let pipeline = Pipeline::builder("bad")
        .custom("numbers", Numbers { next: -3, end: 3 }, &["scale"])
        .custom("scale", Scale(1), &["sum"])
        .custom("sum", Sum(0), &[])
        .build(sys.kinds())
        .unwrap();
    match pipeline.run(&sys).await {
        Err(PipelineError::StageFailed { stage, reason }) => {
            assert_eq!(stage, "scale");
            assert!(reason.contains("poisoned"), "{reason}");
        }
        other => panic!("expected StageFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_kinds_are_refused_before_anything_starts() {
    let sys = system(1);
    let err = Pipeline::builder("p")
        .kind("a", "missing", serde_json::json!({}), &[])
        .build(sys.kinds());
    assert!(matches!(err, Err(PipelineError::Spec(_))));
    assert_eq!(sys.actor_count(), 0);
}
