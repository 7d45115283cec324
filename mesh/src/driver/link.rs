//! The [`RemoteLink`] the actor runtime sends through, and the driver's concurrent
//! copy of each peer's user window.
//!
//! `try_tell` must answer on the caller's thread, but the delivery core lives in the
//! loop's task. So each peer's user window is mirrored here ([`PeerWindow`]): a send
//! takes room in the copy under the core's own rule ([`Window::admits`]) before its
//! command is queued, and the loop gives room back only when the core's
//! [`Released`](crate::delivery::DeliveryEvent::Released) event says the core did
//! (or when the core never took the frame). The copy therefore always holds at
//! least what the core's window holds (commands in flight included), and since the
//! rule is monotone the core never refuses a frame the copy admitted. There is no
//! second window: the numbers are the core's (`cluster.delivery`).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use plexus_actors::runtime::{LinkError, Outgoing, RemoteLink};
use plexus_actors::{ActorId, NodeId};
use tokio::sync::Notify;

use super::{Command, Shared};
use crate::delivery::{DeliveryConfig, Window};
use crate::wire::request_size_bytes;

/// The driver's copy of one peer's user window (see the module docs).
#[derive(Default)]
pub(super) struct PeerWindow {
    used: Mutex<Window>,
    space: Notify,
    waiters: AtomicUsize,
}

impl PeerWindow {
    /// Takes room for a frame of `bytes`, if the core's rule admits it.
    fn try_take(&self, bytes: usize, config: &DeliveryConfig) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if !used.admits(bytes, config) {
            return false;
        }
        used.take(bytes);
        true
    }

    /// Gives room back and wakes the senders waiting for it.
    pub(super) fn release(&self, frames: usize, bytes: usize) {
        if frames == 0 {
            return;
        }
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(frames, bytes);
        if self.waiters.load(SeqCst) > 0 {
            self.space.notify_waiters();
        }
    }

    /// What the copy holds.
    #[cfg(test)]
    fn used(&self) -> Window {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) struct Link {
    pub(super) shared: Arc<Shared>,
}

impl Link {
    fn admit(&self, node: NodeId) -> Result<(), LinkError> {
        if self.shared.closed.load(SeqCst) || !self.shared.admitted(&node) {
            return Err(LinkError::Unreachable);
        }
        Ok(())
    }

    /// Refuses, under the core's own rule ([`DeliveryConfig::fits`]), a message the
    /// core would refuse for its size (it would wait for a window forever
    /// otherwise, were it over the window too).
    fn within_bound(&self, bytes: usize) -> Result<(), LinkError> {
        if !self.shared.config.delivery.fits(bytes) {
            return Err(LinkError::TooLarge);
        }
        Ok(())
    }

    /// Takes `bytes` of room in `node`'s window if there is that much now (no wake-up
    /// registered: most sends find room).
    fn take_room(&self, node: NodeId, bytes: usize) -> Result<bool, LinkError> {
        self.admit(node)?;
        Ok(self
            .shared
            .window(node)
            .try_take(bytes, &self.shared.config.delivery))
    }

    /// Queues a send holding `bytes` of `node`'s window; gives them back if the loop
    /// is gone.
    fn push(&self, node: NodeId, out: Outgoing, bytes: usize) -> Result<(), LinkError> {
        self.shared
            .cmd
            .send(Command::Send { node, out, bytes })
            .map_err(|_| {
                self.shared.window(node).release(1, bytes);
                LinkError::Unreachable
            })
    }
}

fn size_of(out: &Outgoing) -> usize {
    request_size_bytes(out.message_type, &out.payload)
}

impl RemoteLink for Link {
    fn locate(&self, id: ActorId) -> NodeId {
        id.origin
    }

    fn lookup_name(&self, name: &str) -> Option<(NodeId, ActorId)> {
        self.shared.lookup_name(name).map(|l| (l.node, l.actor))
    }

    fn try_send(&self, node: NodeId, out: Outgoing) -> Result<(), LinkError> {
        let bytes = size_of(&out);
        self.within_bound(bytes)?;
        if !self.take_room(node, bytes)? {
            return Err(LinkError::WindowFull);
        }
        self.push(node, out, bytes)
    }

    fn send(
        self: Arc<Self>,
        node: NodeId,
        out: Outgoing,
    ) -> BoxFuture<'static, Result<(), LinkError>> {
        Box::pin(async move {
            let bytes = size_of(&out);
            self.within_bound(bytes)?;
            // Registering for a wake-up locks the window's waiter list twice: only
            // a send that found no room does it.
            if self.take_room(node, bytes)? {
                return self.push(node, out, bytes);
            }
            loop {
                self.admit(node)?;
                let window = self.shared.window(node);
                // Register for the wake-up before trying, so a release between the
                // try and the wait is not missed.
                let notified = window.space.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                window.waiters.fetch_add(1, SeqCst);
                let taken = window.try_take(bytes, &self.shared.config.delivery);
                if taken {
                    window.waiters.fetch_sub(1, SeqCst);
                    return self.push(node, out, bytes);
                }
                notified.await;
                window.waiters.fetch_sub(1, SeqCst);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_applies_the_core_rule_and_wakes_on_release() {
        let config = DeliveryConfig {
            window_frames: 2,
            window_bytes: 1000,
            ..DeliveryConfig::default()
        };
        let w = PeerWindow::default();
        assert!(w.try_take(600, &config));
        assert!(!w.try_take(600, &config), "bytes bound, as the core's");
        assert!(w.try_take(400, &config));
        assert!(!w.try_take(1, &config), "frames bound");
        assert_eq!(
            w.used(),
            Window {
                frames: 2,
                bytes: 1000
            }
        );
        let notified = w.space.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        w.waiters.fetch_add(1, SeqCst);
        w.release(1, 600);
        // The waiter registered before the release is woken: polling completes.
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(notified.as_mut().poll(&mut cx).is_ready());
        assert!(w.try_take(600, &config));
    }
}
