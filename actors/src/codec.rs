//! The one codec for everything Plexus puts on the wire or on disk.
//!
//! The format is bincode 2 (`bincode = "=2.0.1"`, the last maintained release; the
//! crates.io 3.0.0 release is only a `compile_error!`) with its standard
//! configuration: little endian, variable-length integers. Nothing else in the
//! workspace may call bincode directly; go through this module so the format can be
//! swapped (for `wincode`, say) in one place.
//!
//! # Frames
//!
//! A *frame* is `[version: u8][body]`. [`WIRE_VERSION`] is the only version this
//! build speaks; a frame with any other version is refused with
//! [`CodecError::Version`] before its body is looked at.
//!
//! On a byte stream, frames travel length-delimited: `[len: u32 LE][frame]`, read by
//! [`FrameReader`], a sans-IO reassembler that accepts bytes in whatever pieces the
//! transport delivers.
//!
//! # Bounds
//!
//! Every decode takes a byte limit. An input longer than the limit is refused before
//! decoding ([`CodecError::Oversized`]), and the decoder is configured with the same
//! limit so a forged length prefix inside the body cannot make it allocate more.
//! [`FRAME_BYTES_MAX`] is the default limit. No input makes these functions panic;
//! `tests::arbitrary_bytes_never_panic` checks that with proptest.

use std::cell::RefCell;

use bytes::Buf as _;
pub use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The wire and disk format version this build writes and reads.
pub const WIRE_VERSION: u8 = 1;

/// Default upper bound on one frame, in bytes (16 MiB). Snapshots larger than this
/// must be chunked by their owner.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The hard ceiling the decoder itself enforces, whatever limit a caller passes.
const DECODER_BYTES_CEILING: usize = 64 * 1024 * 1024;

type Config<const LIMIT: usize> = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
>;

const fn config() -> Config<DECODER_BYTES_CEILING> {
    bincode::config::standard().with_limit::<DECODER_BYTES_CEILING>()
}

/// The decoder's own limits, in steps; a decode runs under the smallest step at or
/// above the caller's `max`. bincode takes its limit as a constant, so the limit a
/// length claim inside the body meets is the caller's `max` rounded up to a step
/// (at most 4x for small limits), never the 64 MiB ceiling.
const DECODER_STEPS: [usize; 5] = [4 << 10, 64 << 10, 1 << 20, 16 << 20, DECODER_BYTES_CEILING];

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    let config: Config<LIMIT> = bincode::config::standard().with_limit::<LIMIT>();
    bincode::serde::decode_from_slice::<T, _>(bytes, config)
}

/// Decodes under the smallest decoder limit at or above `max`.
fn decode_stepped<T: DeserializeOwned>(
    bytes: &[u8],
    max: usize,
) -> Result<(T, usize), bincode::error::DecodeError> {
    const S: [usize; 5] = DECODER_STEPS;
    if max <= S[0] {
        decode_limited::<T, { S[0] }>(bytes)
    } else if max <= S[1] {
        decode_limited::<T, { S[1] }>(bytes)
    } else if max <= S[2] {
        decode_limited::<T, { S[2] }>(bytes)
    } else if max <= S[3] {
        decode_limited::<T, { S[3] }>(bytes)
    } else {
        decode_limited::<T, { S[4] }>(bytes)
    }
}

/// Why bytes could not be encoded or decoded.
///
/// Every variant except [`CodecError::Encode`] is the fault of whoever produced the
/// bytes (a peer, a file); `Encode` is a local bug or an unencodable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input is longer than the limit in force.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// Length of the input, or the length its prefix claimed.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The input has no bytes at all.
    #[error("empty frame")]
    Empty,
    /// The version byte names a version this build does not speak.
    #[error("unsupported wire version {found} (this build speaks {supported})")]
    Version {
        /// The version byte found.
        found: u8,
        /// [`WIRE_VERSION`].
        supported: u8,
    },
    /// The input ended in the middle of a value.
    #[error("truncated frame")]
    Truncated,
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A whole value was decoded but bytes were left over.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// The value could not be encoded (local fault).
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn map_decode_error(err: bincode::error::DecodeError, max: usize, len: usize) -> CodecError {
    use bincode::error::DecodeError as D;
    match err {
        D::UnexpectedEnd { .. } => CodecError::Truncated,
        D::LimitExceeded => CodecError::Oversized { len, max },
        other => CodecError::Malformed(other.to_string()),
    }
}

/// Encodes `value` as a body (no version byte), appending to `out`.
pub fn encode_body_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Encodes `value` as a body (no version byte).
pub fn encode_body<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_body_into(value, &mut out)?;
    Ok(out)
}

/// Encoded values up to this size are written into a per-thread scratch buffer
/// and copied out at their exact size by [`encode_body_bytes`]; larger ones keep
/// the buffer they were written in (the scratch starts over).
const SCRATCH_KEEP_MAX: usize = 64 * 1024;

thread_local! {
    /// [`encode_body_bytes`]'s scratch buffer.
    static ENCODE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// [`encode_body`] into [`Bytes`], with one allocation of the exact size for a
/// small value. Writing into a fresh `Vec` grows it from nothing (a 100-byte
/// message reallocates five times on the way); this writes into a buffer the
/// thread keeps and copies the result out once.
pub fn encode_body_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, CodecError> {
    ENCODE_SCRATCH.with(|cell| {
        // A `Serialize` impl that itself encodes through here finds the scratch
        // taken, and gets a buffer of its own.
        let Ok(mut scratch) = cell.try_borrow_mut() else {
            return encode_body(value).map(Bytes::from);
        };
        scratch.clear();
        let encoded = encode_body_into(value, &mut scratch).map(|()| {
            if scratch.len() > SCRATCH_KEEP_MAX {
                Bytes::from(std::mem::take(&mut *scratch))
            } else {
                Bytes::copy_from_slice(&scratch)
            }
        });
        // A large value that failed, or growth past the bound, leaves more room
        // than the scratch keeps.
        if scratch.capacity() > SCRATCH_KEEP_MAX {
            *scratch = Vec::new();
        }
        encoded
    })
}

/// Decodes a body (no version byte) that must span all of `bytes`.
pub fn decode_body<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::Oversized {
            len: bytes.len(),
            max,
        });
    }
    let (value, used) =
        decode_stepped::<T>(bytes, max).map_err(|e| map_decode_error(e, max, bytes.len()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// Encodes `value` as a versioned frame: `[WIRE_VERSION][body]`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![WIRE_VERSION];
    encode_body_into(value, &mut out)?;
    Ok(out)
}

/// Decodes a versioned frame with the default limit [`FRAME_BYTES_MAX`].
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    decode_with_limit(frame, FRAME_BYTES_MAX)
}

/// Decodes a versioned frame of at most `max` bytes.
pub fn decode_with_limit<T: DeserializeOwned>(frame: &[u8], max: usize) -> Result<T, CodecError> {
    if frame.len() > max {
        return Err(CodecError::Oversized {
            len: frame.len(),
            max,
        });
    }
    let (&version, body) = frame.split_first().ok_or(CodecError::Empty)?;
    if version != WIRE_VERSION {
        return Err(CodecError::Version {
            found: version,
            supported: WIRE_VERSION,
        });
    }
    decode_body(body, max)
}

/// Appends `frame` to `out` with its `u32` little-endian length prefix.
///
/// Fails with [`CodecError::Oversized`] if the frame is longer than `max`, so a
/// sender never emits what its peer must refuse.
pub fn write_delimited(frame: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if frame.len() > max || u32::try_from(frame.len()).is_err() {
        return Err(CodecError::Oversized {
            len: frame.len(),
            max,
        });
    }
    out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    out.extend_from_slice(frame);
    Ok(())
}

/// Encodes `value` as a versioned frame and appends it to `out` with its length
/// prefix, in place (no intermediate buffer). On error `out` is left as it was.
pub fn encode_delimited_into<T: Serialize + ?Sized>(
    value: &T,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, WIRE_VERSION]);
    if let Err(e) = encode_body_into(value, out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - 4;
    if len > max || u32::try_from(len).is_err() {
        out.truncate(start);
        return Err(CodecError::Oversized { len, max });
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Reassembles length-delimited frames from a byte stream. Sans-IO: feed it whatever
/// the transport read, then take whole frames out.
///
/// Two ways in: [`extend`](Self::extend) copies bytes the caller already has;
/// [`room`](Self::room) and [`advance`](Self::advance) let the transport read
/// straight into the reader's buffer, so a frame is written once, by the read.
/// Frames of at least [`FRAME_SHARE_MIN_BYTES`] come out as [`Bytes`] sharing
/// that buffer (no copy), and [`decode_shared_with_limit`] shares their byte
/// strings in turn; smaller frames are copied out.
///
/// Bound: it buffers at most one frame plus one read, and refuses a length prefix
/// above its limit at once ([`CodecError::Oversized`]). After an error the stream is
/// out of sync and must be closed; the reader keeps returning that error. A shared
/// frame keeps its buffer alive while any slice of it lives: at most the frame
/// and one read's room, so what a held slice keeps is within a small factor of
/// itself (a small frame, copied, keeps only itself). The reader starts a new
/// buffer when it needs room a shared one cannot give.
#[derive(Debug)]
pub struct FrameReader {
    /// `[..filled]`: bytes read and not yet returned as frames; the rest is
    /// initialised room for the next read.
    buf: BytesMut,
    filled: usize,
    max: usize,
    failed: Option<CodecError>,
}

impl FrameReader {
    /// A reader that refuses frames longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            filled: 0,
            max,
            failed: None,
        }
    }

    /// Appends bytes read from the stream (a copy; see [`room`](Self::room)).
    pub fn extend(&mut self, bytes: &[u8]) {
        let room = self.room(bytes.len());
        room[..bytes.len()].copy_from_slice(bytes);
        self.advance(bytes.len());
    }

    /// Room for the next read: at least `want` bytes, and at least the rest of
    /// the frame being reassembled when its length is known and within the limit,
    /// so a large frame arrives in one buffer. Read into it, then call
    /// [`advance`](Self::advance) with the count read.
    pub fn room(&mut self, want: usize) -> &mut [u8] {
        let need = self.filled + want.max(self.frame_rest()).max(1);
        if self.buf.len() < need {
            if self.buf.capacity() < need {
                // The room past `filled` would be copied into a new buffer for
                // nothing: drop it first.
                self.buf.truncate(self.filled);
            }
            self.buf.resize(need, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Counts `n` bytes written into [`room`](Self::room) as read (at most the
    /// room there is).
    pub fn advance(&mut self, n: usize) {
        self.filled = self.filled.saturating_add(n).min(self.buf.len());
    }

    /// Bytes of the frame being reassembled still to come, if its length is known.
    fn frame_rest(&self) -> usize {
        if self.filled < 4 {
            return 0;
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let len = len as usize;
        if len > self.max {
            return 0;
        }
        (4 + len).saturating_sub(self.filled)
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.filled
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, CodecError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.filled < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let len = len as usize;
        if len > self.max {
            let err = CodecError::Oversized { len, max: self.max };
            self.failed = Some(err.clone());
            return Err(err);
        }
        if self.filled < 4 + len {
            return Ok(None);
        }
        self.filled -= 4 + len;
        if len < FRAME_SHARE_MIN_BYTES {
            // Copied out, so the buffer stays the reader's own, to be reused.
            let frame = Bytes::copy_from_slice(&self.buf[4..4 + len]);
            self.buf.advance(4 + len);
            return Ok(Some(frame));
        }
        let mut frame = self.buf.split_to(4 + len);
        frame.advance(4);
        Ok(Some(frame.freeze()))
    }
}

/// Frames shorter than this are copied out of [`FrameReader`]'s buffer instead
/// of shared: the copy is cheap, and a small message held for long (in a
/// mailbox, say) then holds only itself, not the buffer it arrived in.
pub const FRAME_SHARE_MIN_BYTES: usize = 16 * 1024;

thread_local! {
    /// The input of the shared decode running on this thread, if any.
    static SHARED_SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Byte strings shorter than this are copied even in a shared decode, unless the
/// whole input is at most [`SHARE_INPUT_MAX_BYTES`]: a small value kept for long
/// should not hold a large input alive.
pub const SHARE_MIN_BYTES: usize = 512;

/// An input this small is shared by all of its byte strings, however short:
/// holding it costs no more than a copy of any of them, and a slice saves an
/// allocation and a copy (a small message's payload, then its fields).
pub const SHARE_INPUT_MAX_BYTES: usize = 1024;

/// Runs `decode` with `source` as the input that [`shared_bytes`] fields slice.
fn with_shared_source<R>(source: &Bytes, decode: impl FnOnce() -> R) -> R {
    crate::scoped::with_slot(&SHARED_SOURCE, source.clone(), decode)
}

/// [`decode_body`] from shared bytes: fields declared with [`shared_bytes`] come
/// out as slices of `bytes` (no copy) when at least [`SHARE_MIN_BYTES`] long, or
/// whatever their length when `bytes` is at most [`SHARE_INPUT_MAX_BYTES`].
pub fn decode_body_shared<T: DeserializeOwned>(bytes: &Bytes, max: usize) -> Result<T, CodecError> {
    with_shared_source(bytes, || decode_body(bytes, max))
}

/// [`decode_with_limit`] from shared bytes (see [`decode_body_shared`]).
pub fn decode_shared_with_limit<T: DeserializeOwned>(
    frame: &Bytes,
    max: usize,
) -> Result<T, CodecError> {
    with_shared_source(frame, || decode_with_limit(frame, max))
}

/// A byte string shared with its input where it can be: use as
/// `#[serde(with = "plexus_actors::codec::shared_bytes")]` on a [`Bytes`] field.
///
/// On the wire it is a byte string, the same encoding as `serde_bytes` and
/// `Bytes`'s own. Decoded by [`decode_body_shared`] or
/// [`decode_shared_with_limit`], the value is a slice of the input; decoded any
/// other way, it is a copy.
pub mod shared_bytes {
    use std::fmt;

    use bytes::Bytes;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    use super::{SHARE_INPUT_MAX_BYTES, SHARE_MIN_BYTES, SHARED_SOURCE};

    /// Writes the bytes as a byte string.
    pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Reads a byte string, sharing the input's bytes where it can.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        deserializer.deserialize_bytes(SharedVisitor)
    }

    /// `Option<Bytes>`, the same way.
    pub mod option {
        use bytes::Bytes;
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        #[derive(Serialize)]
        struct Out<'a>(#[serde(with = "super")] &'a Bytes);

        #[derive(Deserialize)]
        struct In(#[serde(with = "super")] Bytes);

        /// Writes `None`, or `Some` and the byte string.
        pub fn serialize<S: Serializer>(
            bytes: &Option<Bytes>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            bytes.as_ref().map(Out).serialize(serializer)
        }

        /// Reads what [`serialize`] wrote.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Bytes>, D::Error> {
            Ok(Option::<In>::deserialize(deserializer)?.map(|In(bytes)| bytes))
        }
    }

    /// A slice of the shared decode's input, if `v` lies inside it and is worth
    /// sharing (long enough, or the input small); else a copy.
    fn share(v: &[u8]) -> Bytes {
        SHARED_SOURCE.with(|slot| {
            let slot = slot.borrow();
            let Some(source) = slot.as_ref() else {
                return Bytes::copy_from_slice(v);
            };
            if v.len() < SHARE_MIN_BYTES && source.len() > SHARE_INPUT_MAX_BYTES {
                return Bytes::copy_from_slice(v);
            }
            let start = source.as_ptr() as usize;
            let at = v.as_ptr() as usize;
            let inside = at >= start
                && at
                    .checked_add(v.len())
                    .is_some_and(|end| end <= start + source.len());
            if inside {
                source.slice_ref(v)
            } else {
                Bytes::copy_from_slice(v)
            }
        })
    }

    struct SharedVisitor;

    impl<'de> Visitor<'de> for SharedVisitor {
        type Value = Bytes;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
            Ok(share(v))
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(v))
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
            Ok(Bytes::from(v))
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(Bytes::from(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sample {
        id: u64,
        name: String,
        payload: Vec<u8>,
        tags: Vec<(String, i32)>,
        nested: Option<Box<Sample>>,
    }

    fn sample() -> Sample {
        Sample {
            id: 7,
            name: "stage".into(),
            payload: vec![1, 2, 3],
            tags: vec![("a".into(), -1)],
            nested: Some(Box::new(Sample {
                id: 8,
                name: String::new(),
                payload: vec![],
                tags: vec![],
                nested: None,
            })),
        }
    }

    #[test]
    fn a_length_claim_inside_the_body_meets_the_callers_limit() {
        // 9 bytes that claim a 2 MiB byte string: with a 64 KiB limit this is an
        // oversized claim, refused as such, not a truncated frame of the 64 MiB
        // ceiling's.
        let mut body = Vec::new();
        encode_body_into(&(2u64 << 20), &mut body).unwrap();
        body.extend_from_slice(b"abcd");
        let small: Result<serde_bytes::ByteBuf, _> = decode_body(&body, 64 << 10);
        assert!(
            matches!(small, Err(CodecError::Oversized { .. })),
            "{small:?}"
        );
        // Under a limit above the claim, the same bytes are merely truncated.
        let large: Result<serde_bytes::ByteBuf, _> = decode_body(&body, 4 << 20);
        assert_eq!(large, Err(CodecError::Truncated));
    }

    #[test]
    fn round_trip() {
        let frame = encode(&sample()).unwrap();
        assert_eq!(frame[0], WIRE_VERSION);
        assert_eq!(decode::<Sample>(&frame).unwrap(), sample());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let frame = encode(&sample()).unwrap();
        for cut in 0..frame.len() {
            let err = decode::<Sample>(&frame[..cut]).unwrap_err();
            match cut {
                0 => assert_eq!(err, CodecError::Empty),
                _ => assert_eq!(err, CodecError::Truncated, "cut at {cut}"),
            }
        }
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let frame = encode(&vec![0u8; 1000]).unwrap();
        let err = decode_with_limit::<Vec<u8>>(&frame, 100).unwrap_err();
        assert_eq!(
            err,
            CodecError::Oversized {
                len: frame.len(),
                max: 100
            }
        );
        // A length prefix inside the body that claims far more than the input holds.
        let mut forged = vec![WIRE_VERSION];
        encode_body_into(&u64::MAX, &mut forged).unwrap();
        assert!(decode::<Vec<u8>>(&forged).is_err());
    }

    #[test]
    fn wrong_version_and_trailing_bytes_are_refused() {
        let mut frame = encode(&5u32).unwrap();
        frame[0] = WIRE_VERSION + 1;
        assert_eq!(
            decode::<u32>(&frame).unwrap_err(),
            CodecError::Version {
                found: WIRE_VERSION + 1,
                supported: WIRE_VERSION
            }
        );
        let mut frame = encode(&5u32).unwrap();
        frame.push(0);
        assert_eq!(decode::<u32>(&frame).unwrap_err(), CodecError::Trailing(1));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let frame = [WIRE_VERSION, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<Sample>(&frame).is_err());
        // An invalid enum tag.
        let frame = [WIRE_VERSION, 9];
        assert!(matches!(
            decode::<Option<u8>>(&frame),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn frame_reader_reassembles_split_frames() {
        let mut stream = Vec::new();
        for i in 0..5u32 {
            write_delimited(&encode(&i).unwrap(), 64, &mut stream).unwrap();
        }
        let mut reader = FrameReader::new(64);
        let mut seen = Vec::new();
        for chunk in stream.chunks(3) {
            reader.extend(chunk);
            while let Some(frame) = reader.next_frame().unwrap() {
                seen.push(decode::<u32>(&frame).unwrap());
            }
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn reads_into_the_reader_give_the_same_frames_and_a_large_one_in_one_buffer() {
        let big = vec![0xA5u8; 300_000];
        let mut stream = Vec::new();
        write_delimited(&encode(&1u32).unwrap(), 1 << 20, &mut stream).unwrap();
        write_delimited(&big, 1 << 20, &mut stream).unwrap();
        write_delimited(&encode(&2u32).unwrap(), 1 << 20, &mut stream).unwrap();
        // A transport that reads at most 1,000 bytes at a time, into the room given.
        let mut reader = FrameReader::new(1 << 20);
        let mut frames = Vec::new();
        let mut rest = &stream[..];
        // Where the buffer began at each read while the large frame was coming.
        let mut bases = std::collections::BTreeSet::new();
        while !rest.is_empty() {
            let filled = reader.buffered();
            let pending_big = frames.len() == 1;
            let room = reader.room(1000);
            assert!(!room.is_empty());
            if pending_big {
                bases.insert(room.as_ptr() as usize - filled);
            }
            let n = room.len().min(1000).min(rest.len());
            room[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            reader.advance(n);
            while let Some(frame) = reader.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(reader.buffered(), 0);
        assert_eq!(frames.len(), 3);
        assert_eq!(decode::<u32>(&frames[0]).unwrap(), 1);
        assert_eq!(&frames[1][..], &big[..]);
        assert_eq!(decode::<u32>(&frames[2]).unwrap(), 2);
        // Once its length was known the large frame had room for all of it: its
        // 300 reads went into one buffer (two at most: the one its length
        // arrived in, then one for the whole frame), not into a buffer grown
        // again and again.
        assert!(bases.len() <= 2, "the frame moved {} times", bases.len());
        // And it is handed out as the buffer it was read into, not a copy.
        let big_at = frames[1].as_ptr() as usize - 4;
        assert!(bases.contains(&big_at), "the large frame was copied");
        // Room is never handed out past what was counted as read.
        let mut reader = FrameReader::new(16);
        let room = reader.room(8).len();
        reader.advance(room + 100);
        assert_eq!(reader.buffered(), room);
    }

    #[test]
    fn small_frames_are_copied_out_and_the_buffer_is_reused() {
        let mut stream = Vec::new();
        for i in 0..3u32 {
            write_delimited(&encode(&i).unwrap(), 1 << 20, &mut stream).unwrap();
        }
        let mut reader = FrameReader::new(1 << 20);
        let room = reader.room(4096);
        let base = room.as_ptr() as usize;
        room[..stream.len()].copy_from_slice(&stream);
        reader.advance(stream.len());
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            frames.push(frame);
        }
        assert_eq!(frames.len(), 3);
        for (i, frame) in frames.iter().enumerate() {
            assert_eq!(decode::<u32>(frame).unwrap(), i as u32);
            let at = frame.as_ptr() as usize;
            assert!(
                !(base..base + 4096).contains(&at),
                "a small frame shares the read buffer"
            );
        }
        // No frame holds the buffer, so the reader has it back: the next room is
        // the same memory.
        assert_eq!(reader.room(4096).as_ptr() as usize, base);
    }

    #[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Shared {
        #[serde(with = "shared_bytes")]
        big: Bytes,
        #[serde(with = "shared_bytes")]
        small: Bytes,
        #[serde(with = "shared_bytes::option")]
        maybe: Option<Bytes>,
    }

    #[test]
    fn shared_decodes_slice_the_input_and_copy_small_or_unshared_values() {
        let value = Shared {
            big: Bytes::from(vec![1u8; 4096]),
            small: Bytes::from(vec![2u8; SHARE_MIN_BYTES - 1]),
            maybe: Some(Bytes::from(vec![3u8; 2048])),
        };
        // The same byte strings on the wire as serde_bytes writes.
        #[derive(Serialize)]
        struct Plain<'a> {
            #[serde(with = "serde_bytes")]
            big: &'a [u8],
            #[serde(with = "serde_bytes")]
            small: &'a [u8],
            maybe: Option<&'a serde_bytes::Bytes>,
        }
        let plain = encode(&Plain {
            big: &value.big,
            small: &value.small,
            maybe: value.maybe.as_deref().map(serde_bytes::Bytes::new),
        })
        .unwrap();
        let frame = Bytes::from(encode(&value).unwrap());
        assert_eq!(&frame[..], &plain[..]);
        let inside = |b: &Bytes| frame.as_ptr_range().contains(&b.as_ptr());

        let shared: Shared = decode_shared_with_limit(&frame, 1 << 20).unwrap();
        assert_eq!(shared, value);
        assert!(inside(&shared.big), "a large value is a slice of the input");
        assert!(inside(shared.maybe.as_ref().unwrap()));
        assert!(!inside(&shared.small), "a small one is a copy");

        let copied: Shared = decode(&frame).unwrap();
        assert_eq!(copied, value);
        assert!(!inside(&copied.big), "outside a shared decode, a copy");

        let body = frame.slice(1..);
        let shared: Shared = decode_body_shared(&body, 1 << 20).unwrap();
        assert!(inside(&shared.big));
        // The source is set only during the decode.
        SHARED_SOURCE.with(|slot| assert!(slot.borrow().is_none()));
        let none = Shared {
            maybe: None,
            ..value
        };
        let frame = Bytes::from(encode(&none).unwrap());
        assert_eq!(
            decode_shared_with_limit::<Shared>(&frame, 1 << 20).unwrap(),
            none
        );
        // Truncations of a shared decode fail like any other.
        for cut in 1..frame.len() {
            assert!(decode_shared_with_limit::<Shared>(&frame.slice(..cut), 1 << 20).is_err());
        }
    }

    #[test]
    fn a_small_input_is_shared_by_all_its_values_and_encodes_alike() {
        let value = Shared {
            big: Bytes::from(vec![1u8; 300]),
            small: Bytes::from(vec![2u8; 10]),
            maybe: Some(Bytes::new()),
        };
        let encoded = encode(&value).unwrap();
        assert!(encoded.len() <= SHARE_INPUT_MAX_BYTES);
        let frame = Bytes::from(encoded);
        let inside = |b: &Bytes| frame.as_ptr_range().contains(&b.as_ptr());
        let shared: Shared = decode_shared_with_limit(&frame, 1 << 20).unwrap();
        assert_eq!(shared, value);
        assert!(inside(&shared.big) && inside(&shared.small));
        // One byte over the bound, the short value is copied again.
        let value = Shared {
            big: Bytes::from(vec![1u8; SHARE_INPUT_MAX_BYTES]),
            ..value
        };
        let frame = Bytes::from(encode(&value).unwrap());
        let inside = |b: &Bytes| frame.as_ptr_range().contains(&b.as_ptr());
        let shared: Shared = decode_shared_with_limit(&frame, 1 << 20).unwrap();
        assert_eq!(shared, value);
        assert!(inside(&shared.big) && !inside(&shared.small));
        // The scratch-buffer encoder writes what the plain one writes, small or
        // past the scratch bound, and stays usable after either.
        for size in [0, 100, SCRATCH_KEEP_MAX + 1, 7] {
            let value = Shared {
                big: Bytes::from(vec![5u8; size]),
                ..value.clone()
            };
            assert_eq!(
                encode_body_bytes(&value).unwrap(),
                encode_body(&value).unwrap()
            );
        }
    }

    #[test]
    fn in_place_delimited_encoding_matches_and_refuses_oversize() {
        let mut a = Vec::new();
        write_delimited(&encode(&sample()).unwrap(), 1 << 20, &mut a).unwrap();
        let mut b = vec![9u8];
        encode_delimited_into(&sample(), 1 << 20, &mut b).unwrap();
        assert_eq!(&b[1..], &a[..]);
        let mut c = vec![9u8];
        assert!(matches!(
            encode_delimited_into(&vec![0u8; 100], 10, &mut c),
            Err(CodecError::Oversized { .. })
        ));
        assert_eq!(c, vec![9u8], "left untouched");
    }

    #[test]
    fn frame_reader_refuses_a_huge_prefix_and_stays_failed() {
        let mut reader = FrameReader::new(16);
        reader.extend(&1000u32.to_le_bytes());
        assert_eq!(
            reader.next_frame().unwrap_err(),
            CodecError::Oversized { len: 1000, max: 16 }
        );
        reader.extend(&[0; 8]);
        assert!(reader.next_frame().is_err());
        let mut out = Vec::new();
        assert!(write_delimited(&[0; 17], 16, &mut out).is_err());
        assert!(out.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Sample>(&bytes);
            let _ = decode::<Vec<String>>(&bytes);
            let mut reader = FrameReader::new(64);
            reader.extend(&bytes);
            while let Ok(Some(frame)) = reader.next_frame() {
                let _ = decode::<Sample>(&frame);
            }
        }

        #[test]
        fn round_trip_any(id in any::<u64>(), name in ".{0,20}", payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let s = Sample { id, name, payload, tags: vec![], nested: None };
            prop_assert_eq!(decode::<Sample>(&encode(&s).unwrap()).unwrap(), s);
        }
    }
}
