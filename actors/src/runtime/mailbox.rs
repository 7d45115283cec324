//! Bounded mailboxes on top of ractor's unbounded ones.
//!
//! ractor queues without limit. Plexus counts what sits in each mailbox and refuses
//! to go past the actor's capacity:
//!
//! * `try_tell` fails at once with [`SendError::MailboxFull`], handing the message back;
//! * `tell` waits until the actor has taken a message out, then enqueues (backpressure);
//! * `ask` waits like `tell`, within its timeout.
//!
//! The count goes up (compare-and-swap, never past `capacity`) before a message is
//! handed to ractor and down when the actor starts handling it, so at most
//! `capacity` messages are ever queued. The counter never overshoots: a rollback
//! would have to wake waiters, and a waiter could then wake itself in a loop.
//!
//! Waiting senders register on a `Notify`; the actor wakes one per message it takes
//! out, and only when someone waits, so the uncontended path is two atomic updates.
//!
//! A node's mesh driver delivers a peer's frames in order and, when the mailbox is
//! full, holds that peer's later frames behind the one that waits. It waits for the
//! mailbox to drain to half its capacity ([`MailboxShared::drained`]), not for one
//! slot: the actor still has half a mailbox to work through, and the driver then
//! hands on hundreds of held frames in one turn instead of a few per wake-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};

use tokio::sync::{Notify, oneshot};

use super::errors::SendError;
use super::message::Message;

/// Default mailbox capacity when neither the spawn nor the node says otherwise.
pub const MAILBOX_CAPACITY_DEFAULT: usize = 1024;

/// How an actor ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// It stopped on request or by itself, after its `stopped` hook ran.
    Normal,
    /// Its code returned an error or panicked; the string says what happened.
    Failed(String),
}

/// Counters shared by an actor's refs and the actor itself.
pub(crate) struct MailboxShared {
    depth: AtomicUsize,
    capacity: usize,
    waiters: AtomicUsize,
    space: Notify,
    /// Waiters for the mailbox to drain to [`Self::low_water`], and their wake-up.
    drain_waiters: AtomicUsize,
    drained_space: Notify,
    closed: AtomicBool,
    pub(crate) handled: AtomicU64,
    pub(crate) failure: Mutex<Option<String>>,
    pub(crate) stopped_normally: AtomicBool,
    /// How the actor ended, set once by `close`; no channel is made per actor, so a
    /// spawn allocates nothing for it.
    exit: OnceLock<Exit>,
    /// Woken once, when `exit` is set.
    exited: Notify,
}

impl MailboxShared {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            depth: AtomicUsize::new(0),
            capacity: capacity.max(1),
            waiters: AtomicUsize::new(0),
            space: Notify::new(),
            drain_waiters: AtomicUsize::new(0),
            drained_space: Notify::new(),
            closed: AtomicBool::new(false),
            handled: AtomicU64::new(0),
            failure: Mutex::new(None),
            stopped_normally: AtomicBool::new(false),
            exit: OnceLock::new(),
            exited: Notify::new(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth.load(SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Takes a slot if one is free.
    #[inline]
    fn try_reserve(&self) -> bool {
        let mut current = self.depth.load(SeqCst);
        loop {
            if current >= self.capacity {
                return false;
            }
            match self
                .depth
                .compare_exchange_weak(current, current + 1, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    #[inline]
    fn release_slot(&self) {
        let before = self.depth.fetch_sub(1, SeqCst);
        if self.waiters.load(SeqCst) > 0 {
            self.space.notify_one();
        }
        if before == self.low_water() + 1 && self.drain_waiters.load(SeqCst) > 0 {
            self.drained_space.notify_waiters();
        }
    }

    /// The depth [`drained`](Self::drained) waits for: half the capacity.
    #[inline]
    fn low_water(&self) -> usize {
        self.capacity / 2
    }

    /// Waits until at most half the capacity is queued, or the actor is gone.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained_space.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drain in between is not missed.
            notified.as_mut().enable();
            let _counted = Counted::new(&self.drain_waiters);
            if self.depth() <= self.low_water() || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Called by the actor as it takes a message out.
    #[inline]
    pub(crate) fn dequeued(&self) {
        self.release_slot();
        self.handled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Called once when the actor is gone: fail waiting senders, publish the exit.
    pub(crate) fn close(&self) {
        self.closed.store(true, SeqCst);
        self.space.notify_waiters();
        self.drained_space.notify_waiters();
        let exit = if self.stopped_normally.load(SeqCst) {
            Exit::Normal
        } else {
            let why = self.failure.lock().map(|g| g.clone()).unwrap_or(None);
            Exit::Failed(why.unwrap_or_else(|| "panicked or was killed".to_string()))
        };
        // `close` runs once per actor (its host's drop); a second call keeps
        // the first answer.
        let _ = self.exit.set(exit);
        self.exited.notify_waiters();
    }

    /// Waits until the actor has ended, and says how.
    pub(crate) async fn exited(&self) -> Exit {
        loop {
            let notified = self.exited.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `close` in between is not missed.
            notified.as_mut().enable();
            if let Some(exit) = self.exit.get() {
                return exit.clone();
            }
            notified.await;
        }
    }
}

/// How a reply gets back to an asker.
pub(crate) enum ReplyTo<R> {
    /// An asker in this process.
    Local(oneshot::Sender<Result<R, String>>),
    /// An asker on another node; the closure encodes the reply and routes it back.
    Remote(Box<dyn FnOnce(Result<R, String>) + Send>),
}

impl<R> ReplyTo<R> {
    pub(crate) fn send(self, result: Result<R, String>) {
        match self {
            ReplyTo::Local(tx) => {
                let _ = tx.send(result);
            }
            ReplyTo::Remote(f) => f(result),
        }
    }
}

/// What travels through ractor's queue: the message and, for an ask, where the reply goes.
pub(crate) struct Envelope<M: Message> {
    pub(crate) msg: M,
    pub(crate) reply: Option<ReplyTo<M::Reply>>,
}

/// The sending half of a local actor's bounded mailbox.
pub(crate) struct LocalMailbox<M: Message> {
    pub(crate) inner: ractor::ActorRef<Envelope<M>>,
    pub(crate) shared: Arc<MailboxShared>,
}

impl<M: Message> Clone for LocalMailbox<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<M: Message> LocalMailbox<M> {
    /// Enqueues after a slot was reserved; gives the slot back on failure.
    #[inline]
    fn enqueue(&self, env: Envelope<M>) -> Result<(), SendError<Envelope<M>>> {
        match self.inner.send_message(env) {
            Ok(()) => Ok(()),
            Err(err) => {
                self.shared.release_slot();
                match err {
                    ractor::MessagingErr::SendErr(env) => Err(SendError::Stopped(env)),
                    // Neither variant returns the message; ractor only produces them
                    // for receive-side or typed-cell misuse, which this module never does.
                    _ => unreachable_send(),
                }
            }
        }
    }

    #[inline]
    pub(crate) fn try_send(&self, env: Envelope<M>) -> Result<(), SendError<Envelope<M>>> {
        if self.shared.is_closed() {
            return Err(SendError::Stopped(env));
        }
        if !self.shared.try_reserve() {
            return Err(SendError::MailboxFull(env));
        }
        self.enqueue(env)
    }

    /// Waits for a free slot, then enqueues. Fails only if the actor stops.
    pub(crate) async fn send(&self, env: Envelope<M>) -> Result<(), SendError<Envelope<M>>> {
        loop {
            if self.shared.is_closed() {
                return Err(SendError::Stopped(env));
            }
            if self.shared.try_reserve() {
                return self.enqueue(env);
            }
            let notified = self.shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Counted out again however this iteration ends, cancellation included.
            let _counted = Counted::new(&self.shared.waiters);
            if self.shared.try_reserve() {
                return self.enqueue(env);
            }
            if self.shared.is_closed() {
                return Err(SendError::Stopped(env));
            }
            notified.await;
        }
    }
}

/// One waiter, counted in while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, SeqCst);
        Self(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

#[cold]
fn unreachable_send<T>() -> T {
    // ractor's `ActorRef::send_message` returns `SendErr` with the message for a
    // closed mailbox; the other variants cannot occur on a typed `ActorRef`.
    panic!("ractor returned a send error without the message")
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    use super::*;

    fn poll(f: std::pin::Pin<&mut impl Future<Output = ()>>) -> Poll<()> {
        let waker = futures::task::noop_waker();
        f.poll(&mut Context::from_waker(&waker))
    }

    fn full(capacity: usize) -> MailboxShared {
        let shared = MailboxShared::new(capacity);
        for _ in 0..capacity {
            assert!(shared.try_reserve());
        }
        assert!(!shared.try_reserve());
        shared
    }

    #[test]
    fn drained_waits_for_half_the_capacity_or_the_end() {
        let shared = full(4);
        let mut drained = pin!(shared.drained());
        assert!(poll(drained.as_mut()).is_pending());
        shared.dequeued();
        assert!(poll(drained.as_mut()).is_pending(), "three of four queued");
        shared.dequeued();
        assert!(poll(drained.as_mut()).is_ready(), "two of four queued");
        // Already drained: ready at once.
        assert!(poll(pin!(shared.drained())).is_ready());

        let ending = full(4);
        let mut drained = pin!(ending.drained());
        assert!(poll(drained.as_mut()).is_pending());
        ending.close();
        assert!(poll(drained.as_mut()).is_ready(), "the actor is gone");
    }
}
