"""The Plexus wire codec, as far as a client needs it.

Plexus encodes everything it signs or stores with bincode 2 in its "standard"
configuration: little endian, variable-length integers. A *frame* is one version
byte (:data:`WIRE_VERSION`) followed by the body.

The rules this module implements (the same ones the Rust side follows):

* ``u8`` is one raw byte.
* Every wider unsigned integer (``u16``..``u64``, and ``usize`` lengths) is a
  varint: below 251 one byte; else a marker byte (251, 252, 253) followed by
  the value as a little-endian ``u16``, ``u32`` or ``u64``, the smallest that
  holds it.
* A string or a byte vector is its length (a varint) and its bytes.
* A fixed-size byte array (a node id, a chunk id) is its bytes, no length.
* An enum is its variant's index (a varint ``u32``, in declaration order)
  followed by the variant's fields; a struct or tuple is its fields in order.
"""

from __future__ import annotations

import struct

#: The wire and disk format version the node speaks.
WIRE_VERSION = 1

_U16_MARKER = 251
_U32_MARKER = 252
_U64_MARKER = 253
_U64_MAX = (1 << 64) - 1


class CodecError(ValueError):
    """Bytes that are not a valid encoding, or a value that cannot be encoded."""


def varint(value: int) -> bytes:
    """Encodes an unsigned integer (at most ``u64``) as a bincode varint."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise CodecError(f"a varint must be an int, not {type(value).__name__}")
    if value < 0 or value > _U64_MAX:
        raise CodecError(f"{value} is outside the u64 range")
    if value < _U16_MARKER:
        return bytes([value])
    if value <= 0xFFFF:
        return bytes([_U16_MARKER]) + struct.pack("<H", value)
    if value <= 0xFFFF_FFFF:
        return bytes([_U32_MARKER]) + struct.pack("<I", value)
    return bytes([_U64_MARKER]) + struct.pack("<Q", value)


def byte_vec(data: bytes) -> bytes:
    """Encodes a byte vector: its length, then its bytes."""
    return varint(len(data)) + bytes(data)


def string(text: str) -> bytes:
    """Encodes a string: its UTF-8 length, then its UTF-8 bytes."""
    return byte_vec(text.encode("utf-8"))


def fixed(data: bytes, length: int) -> bytes:
    """Encodes a fixed-size byte array (no length prefix), checking its size."""
    if len(data) != length:
        raise CodecError(f"expected {length} bytes, got {len(data)}")
    return bytes(data)


def variant(index: int) -> bytes:
    """Encodes an enum variant's index."""
    return varint(index)


def frame(body: bytes) -> bytes:
    """Wraps an encoded body in a versioned frame."""
    return bytes([WIRE_VERSION]) + body


class Reader:
    """Decodes values from a byte string, front to back; every read is checked."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._at = 0

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes."""
        if self._at + n > len(self._data):
            raise CodecError(
                f"truncated: wanted {n} bytes at offset {self._at}, "
                f"only {len(self._data) - self._at} left"
            )
        out = self._data[self._at : self._at + n]
        self._at += n
        return out

    def u8(self) -> int:
        """One raw byte."""
        return self.take(1)[0]

    def varint(self) -> int:
        """A varint."""
        first = self.u8()
        if first < _U16_MARKER:
            return first
        if first == _U16_MARKER:
            return int(struct.unpack("<H", self.take(2))[0])
        if first == _U32_MARKER:
            return int(struct.unpack("<I", self.take(4))[0])
        if first == _U64_MARKER:
            return int(struct.unpack("<Q", self.take(8))[0])
        raise CodecError(f"varint marker {first} is not supported (u128?)")

    def byte_vec(self) -> bytes:
        """A length-prefixed byte vector."""
        return self.take(self.varint())

    def string(self) -> str:
        """A length-prefixed UTF-8 string."""
        raw = self.byte_vec()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CodecError(f"a string that is not UTF-8: {e}") from e

    def frame_version(self) -> None:
        """Reads and checks the frame's version byte."""
        version = self.u8()
        if version != WIRE_VERSION:
            raise CodecError(
                f"unsupported wire version {version} (this client speaks {WIRE_VERSION})"
            )

    def done(self) -> None:
        """Checks that every byte was read."""
        left = len(self._data) - self._at
        if left:
            raise CodecError(f"{left} trailing bytes after the value")
