"""Identities: node ids (ed25519 public keys shown as libp2p PeerIds) and the
content ids of stored chunks and files (CIDv1 over a BLAKE3 digest)."""

from __future__ import annotations

import base64

from .errors import PlexusError

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}

#: The identity-multihash and protobuf prefix libp2p puts before an ed25519 key.
_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
#: CIDv1, raw codec, BLAKE3 multihash, 32-byte digest.
_CID_PREFIX = bytes([0x01, 0x55, 0x1E, 0x20])


class IdError(PlexusError, ValueError):
    """A text that is not a node id or content id; the message says why."""


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58, as libp2p uses it."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Decodes bitcoin-alphabet base58; raises :class:`IdError` on other characters."""
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            raise IdError(f"not a PeerId: {text!r} is not base58 ({c!r})")
        n = n * 58 + _B58_INDEX[c]
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def node_id_from_public_key(public_key: bytes) -> str:
    """The PeerId text (``12D3KooW...``) of a 32-byte ed25519 public key."""
    if len(public_key) != 32:
        raise IdError(f"an ed25519 public key is 32 bytes, not {len(public_key)}")
    return b58encode(_PEER_ID_PREFIX + public_key)


def node_id_to_public_key(node_id: str) -> bytes:
    """The 32-byte ed25519 public key a PeerId text names."""
    raw = b58decode(node_id.strip())
    if len(raw) != 38 or raw[:6] != _PEER_ID_PREFIX:
        raise IdError(f"not the PeerId of an ed25519 key: {node_id!r}")
    return raw[6:]


def chunk_digest(content_id: str) -> bytes:
    """The 32-byte BLAKE3 digest a content id names (CIDv1 ``b...`` or 64 hex digits)."""
    text = content_id.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    if not text.startswith("b"):
        raise IdError(f"{content_id!r} is not a content id: expected a CIDv1 (b...) or 64 hex digits")
    body = text[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as e:
        raise IdError(f"the content id's base32 does not decode: {e}") from e
    if len(raw) != 36 or raw[:4] != _CID_PREFIX:
        raise IdError(f"{content_id!r} is not a CIDv1 of raw bytes hashed with BLAKE3")
    return raw[4:]


def content_id(digest: bytes) -> str:
    """The CIDv1 text of a 32-byte BLAKE3 digest."""
    if len(digest) != 32:
        raise IdError(f"a BLAKE3 digest is 32 bytes, not {len(digest)}")
    text = base64.b32encode(_CID_PREFIX + digest).decode("ascii").rstrip("=").lower()
    return "b" + text
