//! Per-peer streams and framing: the tasks that move bytes between libp2p streams and
//! the loop.
//!
//! * One writer per peer ([`write_loop`]) holds the one outbound stream and writes
//!   whatever the loop appended to the peer's [`PeerOut`] buffer, in batches.
//! * The acceptor ([`accept_loop`]) takes inbound streams from admitted peers and
//!   owns one reader per stream ([`read_loop`]), which reassembles length-delimited
//!   frames, decodes them (bounded by `MESH_FRAME_BYTES_MAX`; a malformed frame is
//!   counted and dropped, a bad length closes the stream) and hands them to the loop
//!   in batches tagged with the peer the transport authenticated.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use plexus_actors::NodeId;
use plexus_actors::codec::FrameReader;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use super::{Command, Shared, node_id_of};
use crate::wire::{self, Frame, MESH_FRAME_BYTES_MAX};

/// The stream protocol actor and membership traffic runs on.
pub const PROTOCOL_NAME: &str = "/plexus/mesh/1";
pub(super) const PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL_NAME);
/// Bytes read from a stream at a time (more when the rest of a large frame is due).
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Queued batches up to this size are joined into one write.
const JOIN_BYTES_MAX: usize = 64 * 1024;

/// Outbound bytes for one peer, drained by its writer task: batches of encoded
/// frames, queued as the loop made them (only small ones are joined; a large
/// batch is never copied into another).
pub(super) struct PeerOut {
    pub(super) buf: Mutex<VecDeque<Vec<u8>>>,
    pub(super) wake: Notify,
    /// The stream is open: data frames may be written.
    pub(super) ready: AtomicBool,
    /// The writer has ended (or is asked to).
    pub(super) closed: AtomicBool,
}

impl PeerOut {
    pub(super) fn new() -> Self {
        Self {
            buf: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            ready: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// Bytes waiting to be written.
    pub(super) fn buffered(&self) -> usize {
        self.buf
            .lock()
            .map(|b| b.iter().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Queues a batch of encoded frames and wakes the writer. Small batches are
    /// joined (one write for many frames); a large one is queued as it is.
    pub(super) fn append(&self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        match buf.back_mut() {
            Some(last) if last.len() + bytes.len() <= JOIN_BYTES_MAX => {
                last.extend_from_slice(&bytes)
            }
            _ => buf.push_back(bytes),
        }
        drop(buf);
        self.wake.notify_one();
    }

    /// Asks the writer to end once it has written what it has.
    pub(super) fn close(&self) {
        self.closed.store(true, SeqCst);
        self.wake.notify_one();
    }
}

/// Accepts inbound mesh streams and runs a reader for each. Owns the readers.
pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    mut incoming: libp2p_stream::IncomingStreams,
    inbound: mpsc::Sender<(NodeId, Vec<Frame>)>,
) {
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                match node_id_of(&peer) {
                    Some(node) if shared.admitted(&node) => {
                        readers.spawn(read_loop(shared.clone(), node, stream, inbound.clone()));
                    }
                    _ => {
                        shared.counters.unadmitted_dropped.fetch_add(1, Relaxed);
                    }
                }
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}

/// Reads one inbound stream from `node` (the peer the transport authenticated).
async fn read_loop(
    shared: Arc<Shared>,
    node: NodeId,
    mut stream: libp2p::Stream,
    inbound: mpsc::Sender<(NodeId, Vec<Frame>)>,
) {
    let mut reader = FrameReader::new(MESH_FRAME_BYTES_MAX);
    loop {
        // Read straight into the reader's buffer: frames and the payloads in them
        // are slices of it from here to the actor that decodes them.
        let n = match stream.read(reader.room(READ_CHUNK_BYTES)).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        reader.advance(n);
        let mut batch = Vec::new();
        loop {
            match reader.next_frame() {
                Ok(Some(bytes)) => match wire::decode_frame(&bytes, MESH_FRAME_BYTES_MAX) {
                    Ok(frame) => batch.push(frame),
                    Err(e) => {
                        shared.counters.malformed_frames.fetch_add(1, Relaxed);
                        tracing::debug!(peer = %node, %e, "dropped a malformed frame");
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    // The stream is out of sync: close it; the sender reconnects.
                    shared.counters.malformed_frames.fetch_add(1, Relaxed);
                    tracing::warn!(peer = %node, %e, "closing a stream with a bad frame length");
                    return;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        // Admission can be revoked by an allowlist update while the stream is open.
        if !shared.admitted(&node) {
            shared
                .counters
                .unadmitted_dropped
                .fetch_add(batch.len() as u64, Relaxed);
            return;
        }
        shared
            .counters
            .frames_in
            .fetch_add(batch.len() as u64, Relaxed);
        if inbound.send((node, batch)).await.is_err() {
            return;
        }
    }
}

/// Opens the outbound stream to `peer` and writes what the loop appends to `out`
/// until the stream fails or `out` is closed. Returns the node, for the loop to
/// mark its link down.
pub(super) async fn write_loop(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    node: NodeId,
    out: Arc<PeerOut>,
    cmd: mpsc::UnboundedSender<Command>,
) -> NodeId {
    let result: Result<(), String> = async {
        let mut stream = control
            .open_stream(peer, PROTOCOL)
            .await
            .map_err(|e| e.to_string())?;
        out.ready.store(true, SeqCst);
        let _ = cmd.send(Command::StreamReady(node));
        let mut batches = VecDeque::new();
        loop {
            let notified = out.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut buf = out.buf.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::swap(&mut *buf, &mut batches);
            }
            if batches.is_empty() {
                if out.closed.load(SeqCst) {
                    return Ok(());
                }
                notified.await;
                continue;
            }
            for batch in batches.drain(..) {
                stream.write_all(&batch).await.map_err(|e| e.to_string())?;
            }
            stream.flush().await.map_err(|e| e.to_string())?;
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(peer = %node, %e, "mesh stream closed");
    }
    out.closed.store(true, SeqCst);
    out.ready.store(false, SeqCst);
    node
}
