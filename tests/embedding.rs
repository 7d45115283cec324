//! The embedding API: nodes in one process are independent.
// Driver-level tests: they run on tokio like the drivers they test.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use plexus::supervisor::driver::{Child, SupervisorSpec};
use plexus::supervisor::{Intensity, Restart, Strategy};
use plexus::{Actor, ActorError, Context, Message, Node, SpawnOptions};

struct Echo(&'static str);
struct Ping;
impl Message for Ping {
    type Reply = &'static str;
}
impl Actor for Echo {
    type Msg = Ping;
    type State = ();
    type Args = ();
    async fn started(&self, _: &Context<Ping>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(
        &self,
        _: &Context<Ping>,
        _: Ping,
        _: &mut (),
    ) -> Result<&'static str, ActorError> {
        Ok(self.0)
    }
}

#[tokio::test]
async fn two_nodes_in_one_process_do_not_interfere() {
    let a = Node::builder().build();
    let b = Node::builder().build();
    assert_ne!(a.id(), b.id());
    let ea = a
        .spawn_with(Echo("a"), (), SpawnOptions::named("echo"))
        .await
        .unwrap();
    let eb = b
        .spawn_with(Echo("b"), (), SpawnOptions::named("echo"))
        .await
        .unwrap();
    assert_eq!(ea.id().origin, a.id());
    assert_eq!(eb.id().origin, b.id());
    // Same name, different nodes, different actors.
    assert_eq!(
        a.system()
            .whereis_typed::<Ping>("echo")
            .unwrap()
            .ask(Ping)
            .await
            .unwrap(),
        "a"
    );
    assert_eq!(
        b.system()
            .whereis_typed::<Ping>("echo")
            .unwrap()
            .ask(Ping)
            .await
            .unwrap(),
        "b"
    );
    // One node cannot see the other's actors.
    assert!(a.system().lookup::<Ping>(eb.id()).is_err());
    // Kinds registered on one node are not on the other.
    a.kinds()
        .register_actor("embedding-test-echo", |_| Ok((Echo("kind"), ())));
    assert!(a.kinds().contains("embedding-test-echo"));
    assert!(!b.kinds().contains("embedding-test-echo"));
    // Shutting one down leaves the other running.
    a.shutdown().await;
    assert_eq!(a.system().actor_count(), 0);
    assert_eq!(eb.ask(Ping).await.unwrap(), "b");
    b.shutdown().await;
}

#[tokio::test]
async fn node_shutdown_stops_supervision_trees_and_pipelines_run() {
    let node = Node::builder().build();
    let sup = node
        .supervise(
            SupervisorSpec::new(Strategy::OneForOne, Intensity::default()).child(Child::actor(
                "echo",
                Restart::Permanent,
                || (Echo("sup"), ()),
            )),
        )
        .await
        .unwrap();
    let child = sup.children().await.unwrap()[0].actor;
    assert_eq!(
        node.system()
            .lookup::<Ping>(child)
            .unwrap()
            .ask(Ping)
            .await
            .unwrap(),
        "sup"
    );
    let spec = plexus::actors::pipeline::spec::PipelineSpec::from_toml(
        "name = \"n\"\n[[stage]]\nname = \"src\"\nkind = \"text-source\"\nto = [\"n\"]\nconfig = { lines = [\"a b c\"], repeat = 4 }\n[[stage]]\nname = \"n\"\nkind = \"count\"\n",
    )
    .unwrap();
    let report = node.run_pipeline(spec).await.unwrap();
    assert_eq!(
        report.results[0].get("count").and_then(|c| c.as_int()),
        Some(4)
    );
    node.shutdown().await;
    assert_eq!(node.system().actor_count(), 0);
    assert!(matches!(
        sup.wait_exit().await,
        plexus::actors::runtime::Exit::Normal
    ));
}
