//! The one ticker every daemon service uses: a task that tells an actor `tick()`
//! every `period`, skipping ticks the actor has no mailbox room for (it has work
//! queued anyway) and ending when the actor is gone.

#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use plexus_actors::runtime::{ActorRef, Message, SendError};

/// Starts the ticker; the caller owns (and aborts) the task.
pub fn spawn<M: Message>(
    target: ActorRef<M>,
    period: Duration,
    tick: fn() -> M,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            match target.try_tell(tick()) {
                Ok(()) | Err(SendError::MailboxFull(_)) => {}
                Err(_) => break,
            }
        }
    })
}
