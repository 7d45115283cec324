//! The supervision driver on real actors. Every wait is on an event the children
//! emit from their lifecycle hooks; nothing sleeps.
// Driver-level tests: they run on tokio like the drivers they test.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use plexus_actors::NodeId;
use plexus_actors::runtime::{
    Actor, ActorError, ActorSystem, Context, Exit, Message, SystemConfig,
};
use plexus_supervisor::driver::{Child, SupervisorSpec, start_supervisor};
use plexus_supervisor::{ChildStatus, Intensity, Restart, Strategy};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Started(&'static str),
    Stopped(&'static str),
}

struct Probe {
    name: &'static str,
    events: mpsc::UnboundedSender<Ev>,
}

#[derive(Debug)]
enum P {
    Bump,
    Get,
    Panic,
}
impl Message for P {
    type Reply = u32;
}

impl Actor for Probe {
    type Msg = P;
    type State = u32;
    type Args = ();
    async fn started(&self, _: &Context<P>, _: ()) -> Result<u32, ActorError> {
        let _ = self.events.send(Ev::Started(self.name));
        Ok(0)
    }
    async fn handle(&self, _: &Context<P>, msg: P, n: &mut u32) -> Result<u32, ActorError> {
        match msg {
            P::Bump => *n += 1,
            P::Get => {}
            P::Panic => panic!("probe {} told to panic", self.name),
        }
        Ok(*n)
    }
    async fn stopped(&self, _: &Context<P>, _: &mut u32) {
        let _ = self.events.send(Ev::Stopped(self.name));
    }
}

fn probe(name: &'static str, restart: Restart, tx: &mpsc::UnboundedSender<Ev>) -> Child {
    let tx = tx.clone();
    Child::actor(name, restart, move || {
        (
            Probe {
                name,
                events: tx.clone(),
            },
            (),
        )
    })
}

fn system() -> ActorSystem {
    ActorSystem::new(SystemConfig::new(NodeId::synthetic(1)))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Ev>) -> Ev {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("event within 10 s")
        .expect("channel open")
}

async fn expect(rx: &mut mpsc::UnboundedReceiver<Ev>, want: &[Ev]) {
    for w in want {
        assert_eq!(&next(rx).await, w);
    }
}

fn lenient() -> Intensity {
    Intensity {
        max_restarts: 10,
        period: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn a_panicking_child_is_restarted_with_fresh_state_under_the_same_id() {
    let sys = system();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sup = start_supervisor(
        &sys,
        SupervisorSpec::new(Strategy::OneForOne, lenient()).child(probe(
            "a",
            Restart::Permanent,
            &tx,
        )),
    )
    .await
    .unwrap();
    expect(&mut rx, &[Ev::Started("a")]).await;
    let id = sup.children().await.unwrap()[0].actor;
    let a = sys.lookup::<P>(id).unwrap();
    a.ask(P::Bump).await.unwrap();
    assert_eq!(a.ask(P::Bump).await.unwrap(), 2);
    assert!(a.ask(P::Panic).await.is_err());
    expect(&mut rx, &[Ev::Started("a")]).await; // no Stopped: a panic skips `stopped`
    // The old ref reaches the new incarnation, whose state is fresh.
    assert_eq!(a.ask(P::Get).await.unwrap(), 0);
    assert_eq!(sup.children().await.unwrap()[0].actor, id);
    assert_eq!(sup.shutdown().await, Exit::Normal);
    expect(&mut rx, &[Ev::Stopped("a")]).await;
}

#[tokio::test]
async fn a_child_with_a_well_known_id_keeps_it_across_restarts() {
    let sys = system();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fixed = plexus_actors::ActorId::new(sys.node_id(), 3);
    let sup = start_supervisor(
        &sys,
        SupervisorSpec::new(Strategy::OneForOne, lenient())
            .child(probe("well-known", Restart::Permanent, &tx).with_id(fixed)),
    )
    .await
    .unwrap();
    expect(&mut rx, &[Ev::Started("well-known")]).await;
    assert_eq!(sup.children().await.unwrap()[0].actor, fixed);
    let a = sys.lookup::<P>(fixed).unwrap();
    assert_eq!(a.ask(P::Bump).await.unwrap(), 1);
    assert!(a.ask(P::Panic).await.is_err());
    expect(&mut rx, &[Ev::Started("well-known")]).await;
    assert_eq!(sup.children().await.unwrap()[0].actor, fixed);
    assert_eq!(
        sys.lookup::<P>(fixed).unwrap().ask(P::Get).await.unwrap(),
        0
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn rest_for_one_restarts_exactly_the_later_siblings_in_order() {
    let sys = system();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut spec = SupervisorSpec::new(Strategy::RestForOne, lenient());
    for name in ["a", "b", "c", "d"] {
        spec = spec.child(probe(name, Restart::Permanent, &tx));
    }
    let sup = start_supervisor(&sys, spec).await.unwrap();
    expect(
        &mut rx,
        &[
            Ev::Started("a"),
            Ev::Started("b"),
            Ev::Started("c"),
            Ev::Started("d"),
        ],
    )
    .await;
    let children = sup.children().await.unwrap();
    let a = sys.lookup::<P>(children[0].actor).unwrap();
    a.ask(P::Bump).await.unwrap();
    let b = sys.lookup::<P>(children[1].actor).unwrap();
    let _ = b.ask(P::Panic).await;
    // Later siblings stop newest first, then b, c, d start in order; a is untouched.
    expect(
        &mut rx,
        &[
            Ev::Stopped("d"),
            Ev::Stopped("c"),
            Ev::Started("b"),
            Ev::Started("c"),
            Ev::Started("d"),
        ],
    )
    .await;
    assert_eq!(a.ask(P::Get).await.unwrap(), 1, "a kept its state");
    sup.shutdown().await;
    expect(
        &mut rx,
        &[
            Ev::Stopped("d"),
            Ev::Stopped("c"),
            Ev::Stopped("b"),
            Ev::Stopped("a"),
        ],
    )
    .await;
}

#[tokio::test]
async fn one_for_all_restarts_everyone() {
    let sys = system();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let spec = SupervisorSpec::new(Strategy::OneForAll, lenient())
        .child(probe("a", Restart::Permanent, &tx))
        .child(probe("b", Restart::Permanent, &tx));
    let sup = start_supervisor(&sys, spec).await.unwrap();
    expect(&mut rx, &[Ev::Started("a"), Ev::Started("b")]).await;
    let a = sys
        .lookup::<P>(sup.children().await.unwrap()[0].actor)
        .unwrap();
    let _ = a.ask(P::Panic).await;
    expect(
        &mut rx,
        &[Ev::Stopped("b"), Ev::Started("a"), Ev::Started("b")],
    )
    .await;
    sup.shutdown().await;
}

#[tokio::test]
async fn temporary_children_are_not_restarted_and_transient_ones_only_on_failure() {
    let sys = system();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let spec = SupervisorSpec::new(Strategy::OneForOne, lenient())
        .child(probe("temp", Restart::Temporary, &tx))
        .child(probe("trans", Restart::Transient, &tx));
    let sup = start_supervisor(&sys, spec).await.unwrap();
    expect(&mut rx, &[Ev::Started("temp"), Ev::Started("trans")]).await;
    let children = sup.children().await.unwrap();
    let temp = sys.lookup::<P>(children[0].actor).unwrap();
    let trans = sys.lookup::<P>(children[1].actor).unwrap();
    let _ = temp.ask(P::Panic).await;
    temp.wait_exit().await;
    // The temporary child is gone from the supervisor, not restarted.
    let children = sup.children().await.unwrap();
    assert_eq!(
        children.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["trans"]
    );
    // A transient child that fails is restarted...
    let _ = trans.ask(P::Panic).await;
    expect(&mut rx, &[Ev::Started("trans")]).await;
    // ...one that stops normally is not.
    let trans = sys.lookup::<P>(children[0].actor).unwrap();
    trans.stop();
    expect(&mut rx, &[Ev::Stopped("trans")]).await;
    trans.wait_exit().await;
    let children = sup.children().await.unwrap();
    assert_eq!(children[0].status, ChildStatus::Stopped);
    sup.shutdown().await;
    assert!(rx.try_recv().is_err(), "nothing was restarted");
}

#[tokio::test]
async fn exceeding_the_intensity_escalates_to_the_parent_supervisor() {
    let sys = system();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let inner = SupervisorSpec::new(
        Strategy::OneForOne,
        Intensity {
            max_restarts: 1,
            period: Duration::from_secs(60),
        },
    )
    .child(probe("leaf", Restart::Permanent, &tx))
    .child(probe("sibling", Restart::Permanent, &tx));
    let outer = SupervisorSpec::new(
        Strategy::OneForOne,
        Intensity {
            max_restarts: 1,
            period: Duration::from_secs(60),
        },
    )
    .child(Child::supervisor("inner", Restart::Permanent, inner));
    let top = start_supervisor(&sys, outer).await.unwrap();
    expect(&mut rx, &[Ev::Started("leaf"), Ev::Started("sibling")]).await;
    let leaf_id = {
        let inner_id = top.children().await.unwrap()[0].actor;
        assert!(
            sys.lookup::<P>(inner_id).is_err(),
            "the inner supervisor is not a probe"
        );
        // The leaf is the first probe spawned; find it through the system listing.
        sys.actors()
            .into_iter()
            .find(|a| a.message_type.ends_with("::P"))
            .unwrap()
            .id
    };
    let leaf = sys.lookup::<P>(leaf_id).unwrap();
    let _ = leaf.ask(P::Panic).await; // restart 1 of 1: tolerated
    expect(&mut rx, &[Ev::Started("leaf")]).await;
    let _ = leaf.ask(P::Panic).await; // restart 2: the inner supervisor gives up
    // The inner supervisor stops the sibling and fails; the outer one restarts it,
    // which starts both children afresh.
    expect(
        &mut rx,
        &[
            Ev::Stopped("sibling"),
            Ev::Started("leaf"),
            Ev::Started("sibling"),
        ],
    )
    .await;
    assert_eq!(leaf.ask(P::Get).await.unwrap(), 0);
    // A top-level supervisor that escalates ends with a failure.
    let _ = leaf.ask(P::Panic).await;
    expect(&mut rx, &[Ev::Started("leaf")]).await;
    let _ = leaf.ask(P::Panic).await;
    expect(&mut rx, &[Ev::Stopped("sibling")]).await;
    // The outer supervisor has now used its one restart: it escalates and fails.
    assert!(matches!(top.wait_exit().await, Exit::Failed(_)));
}

#[tokio::test]
async fn dynamic_children_and_ordered_shutdown() {
    let sys = system();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sup = start_supervisor(
        &sys,
        SupervisorSpec::new(Strategy::OneForOne, lenient()).child(probe(
            "a",
            Restart::Permanent,
            &tx,
        )),
    )
    .await
    .unwrap();
    expect(&mut rx, &[Ev::Started("a")]).await;
    sup.add_child(probe("b", Restart::Permanent, &tx))
        .await
        .unwrap();
    sup.add_child(probe("c", Restart::Transient, &tx))
        .await
        .unwrap();
    expect(&mut rx, &[Ev::Started("b"), Ev::Started("c")]).await;
    assert!(
        sup.add_child(probe("b", Restart::Permanent, &tx))
            .await
            .is_err(),
        "duplicate names are refused"
    );
    sup.terminate_child("b").await.unwrap();
    expect(&mut rx, &[Ev::Stopped("b")]).await;
    sup.restart_child("b").await.unwrap();
    expect(&mut rx, &[Ev::Started("b")]).await;
    // b restarted, but start order is still a, b, c: shutdown goes c, b, a.
    assert_eq!(sup.shutdown().await, Exit::Normal);
    expect(
        &mut rx,
        &[Ev::Stopped("c"), Ev::Stopped("b"), Ev::Stopped("a")],
    )
    .await;
    assert_eq!(sys.actor_count(), 0);
}
