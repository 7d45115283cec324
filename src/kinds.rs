//! Actor kinds every node registers besides the stage kinds: small, real services
//! that operators and tests use to check a cluster end to end.
//!
//! | kind   | message   | what it does |
//! |--------|-----------|--------------|
//! | `echo` | `EchoMsg` | replies with its node, its id, the text and how many messages it has handled |

use plexus_actors::runtime::{Actor, ActorError, Context, Kinds, Message, Wire};
use serde::{Deserialize, Serialize};

/// A request to an `echo` actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoMsg {
    /// Echoed back.
    pub text: String,
}

/// What an `echo` actor answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoReply {
    /// The node that handled it.
    pub node: String,
    /// The actor that handled it.
    pub actor: String,
    /// The text sent.
    pub text: String,
    /// Messages this actor has handled, this one included.
    pub count: u64,
}

impl Message for EchoMsg {
    type Reply = EchoReply;
    const WIRE: Option<Wire<Self>> = Some(Wire::serde());
}

/// The `echo` actor.
pub struct Echo;

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = u64;
    type Args = ();

    async fn started(&self, _: &Context<EchoMsg>, _: ()) -> Result<u64, ActorError> {
        Ok(0)
    }

    async fn handle(
        &self,
        ctx: &Context<EchoMsg>,
        msg: EchoMsg,
        count: &mut u64,
    ) -> Result<EchoReply, ActorError> {
        *count += 1;
        Ok(EchoReply {
            node: ctx.system().node_id().to_string(),
            actor: ctx.id().to_string(),
            text: msg.text,
            count: *count,
        })
    }
}

/// Registers the service kinds.
pub fn register_all(kinds: &Kinds) {
    kinds.register_actor("echo", |_| Ok((Echo, ())));
}
