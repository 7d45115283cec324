"""Keys, and the signed requests the scheduler takes.

Deploy, stop and migrate need a key the network's allowlist names as a
*submitter*; ``plexus up`` makes one and keeps it in ``<data dir>/client.key``.
A request is signed over the codec encoding of ``(request, network, seq,
expires_ms)``, framed by the domain ``plexus/scheduler-request/v2`` and a zero
byte, with ed25519. The signed request travels to ``POST /v1/scheduler`` as the
hex of its codec frame (see :mod:`plexus_client.codec`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from . import codec
from .errors import SigningError
from .ids import node_id_from_public_key, node_id_to_public_key

#: The signature domain of scheduler requests.
DOMAIN = b"plexus/scheduler-request/v2"
#: How long requests are valid for by default (as the Rust CLI signs them).
VALIDITY_DEFAULT_MS = 2 * 60 * 1000
#: The furthest ahead of the node's clock an expiry may lie.
VALIDITY_MAX_MS = 10 * 60 * 1000
#: The algorithm name a key file records.
_KEY_ALGORITHM = "ed25519"
#: Largest key file read.
_KEY_FILE_BYTES_MAX = 1024

PathLike = Union[str, "os.PathLike[str]"]


def framed(domain: bytes, message: bytes) -> bytes:
    """What a Plexus signature covers: ``domain || 0x00 || message``."""
    return domain + b"\0" + message


class SigningKey:
    """An ed25519 key: a client's submitter key, or any Plexus key file."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def from_seed(cls, seed: bytes) -> "SigningKey":
        """The key of a 32-byte secret seed."""
        if len(seed) != 32:
            raise SigningError(f"an ed25519 seed is 32 bytes, not {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    @classmethod
    def generate(cls) -> "SigningKey":
        """A fresh random key (not allowlisted anywhere until someone admits it)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: PathLike) -> "SigningKey":
        """Reads a Plexus key file (a codec frame of ``{algorithm, seed}``).

        Like the node, it refuses a key file that others can read.
        """
        p = Path(path)
        try:
            mode = p.stat().st_mode & 0o777
            raw = p.read_bytes()
        except OSError as e:
            raise SigningError(f"{p}: {e.strerror or e}") from e
        if os.name == "posix" and mode & 0o077:
            raise SigningError(
                f"{p}: permissions {mode:o} are too open; the key must be "
                "readable by its owner only (chmod 600)"
            )
        if len(raw) > _KEY_FILE_BYTES_MAX:
            raise SigningError(f"{p}: not a Plexus key file ({len(raw)} bytes)")
        try:
            r = codec.Reader(raw)
            r.frame_version()
            algorithm = r.string()
            seed = r.take(32)
            r.done()
        except codec.CodecError as e:
            raise SigningError(f"{p}: not a Plexus key file ({e})") from e
        if algorithm != _KEY_ALGORITHM:
            raise SigningError(f"{p}: not a Plexus key file (unknown algorithm `{algorithm}`)")
        return cls.from_seed(seed)

    def to_file(self, path: PathLike) -> None:
        """Writes the key as a Plexus key file, mode 0600; refuses to overwrite one."""
        p = Path(path)
        data = codec.frame(codec.string(_KEY_ALGORITHM) + self.seed())
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as e:
            raise SigningError(f"{p}: a key exists already") from e
        except OSError as e:
            raise SigningError(f"{p}: {e.strerror or e}") from e
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def seed(self) -> bytes:
        """The 32-byte secret seed (handle with care)."""
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def public_key(self) -> bytes:
        """The 32-byte public key."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def node_id(self) -> str:
        """The key's id as Plexus prints it (a libp2p PeerId, ``12D3KooW...``)."""
        return node_id_from_public_key(self.public_key())

    def sign(self, domain: bytes, message: bytes) -> bytes:
        """Signs ``message`` for ``domain``: 64 bytes."""
        return self._key.sign(framed(domain, message))

    def __repr__(self) -> str:
        return f"SigningKey({self.node_id})"


def verify(node_id: str, domain: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``node_id``'s key signed ``message`` for ``domain``."""
    key = Ed25519PublicKey.from_public_bytes(node_id_to_public_key(node_id))
    try:
        key.verify(bytes(signature), framed(domain, message))
    except InvalidSignature:
        return False
    return True


# The scheduler's requests, in the order the Rust enum declares them (the
# variant index is the position).


@dataclass(frozen=True)
class Deploy:
    """Deploy a job: ``spec`` is the TOML text that is signed and runs."""

    spec: str
    index: ClassVar[int] = 0

    def encode(self) -> bytes:
        return codec.variant(self.index) + codec.string(self.spec)


@dataclass(frozen=True)
class Stop:
    """Stop a job and forget its actors' state."""

    job: str
    index: ClassVar[int] = 1

    def encode(self) -> bytes:
        return codec.variant(self.index) + codec.string(self.job)


@dataclass(frozen=True)
class Migrate:
    """Move an actor (``job/stage/index``) to node ``to`` (a PeerId), live."""

    actor: str
    to: str
    index: ClassVar[int] = 2

    def encode(self) -> bytes:
        return (
            codec.variant(self.index)
            + codec.string(self.actor)
            + codec.fixed(node_id_to_public_key(self.to), 32)
        )


@dataclass(frozen=True)
class Drain:
    """Move everything off ``node`` (a PeerId)."""

    node: str
    index: ClassVar[int] = 3

    def encode(self) -> bytes:
        return codec.variant(self.index) + codec.fixed(node_id_to_public_key(self.node), 32)


@dataclass(frozen=True)
class Status:
    """What runs where."""

    index: ClassVar[int] = 4

    def encode(self) -> bytes:
        return codec.variant(self.index)


Request = Union[Deploy, Stop, Migrate, Drain, Status]


def _decode_request(r: codec.Reader) -> Request:
    index = r.varint()
    if index == Deploy.index:
        return Deploy(r.string())
    if index == Stop.index:
        return Stop(r.string())
    if index == Migrate.index:
        actor = r.string()
        return Migrate(actor, node_id_from_public_key(r.take(32)))
    if index == Drain.index:
        return Drain(node_id_from_public_key(r.take(32)))
    if index == Status.index:
        return Status()
    raise codec.CodecError(f"request variant {index} is not one a client sends")


def signed_body(request: Request, network: str, seq: int, expires_ms: int) -> bytes:
    """The bytes a signature covers: ``(request, network, seq, expires_ms)``."""
    return request.encode() + codec.string(network) + codec.varint(seq) + codec.varint(expires_ms)


@dataclass(frozen=True)
class SignedRequest:
    """A request signed for a network, as the scheduler takes it."""

    request: Request
    network: str
    seq: int
    expires_ms: int
    signer: str
    signature: bytes = field(repr=False)

    @classmethod
    def sign(
        cls,
        request: Request,
        network: str,
        key: SigningKey,
        seq: Optional[int] = None,
        expires_ms: Optional[int] = None,
        validity_ms: int = VALIDITY_DEFAULT_MS,
    ) -> "SignedRequest":
        """Signs ``request`` for ``network`` with ``key``.

        ``seq`` must be higher than any the key used before (default: the clock
        in microseconds, as the Rust CLI does); ``expires_ms`` defaults to now
        plus ``validity_ms`` (the node refuses more than ten minutes ahead).
        """
        now_us = time.time_ns() // 1000
        if seq is None:
            seq = now_us
        if expires_ms is None:
            expires_ms = now_us // 1000 + validity_ms
        body = signed_body(request, network, seq, expires_ms)
        return cls(
            request=request,
            network=network,
            seq=seq,
            expires_ms=expires_ms,
            signer=key.node_id,
            signature=key.sign(DOMAIN, body),
        )

    def encode(self) -> bytes:
        """The codec frame ``POST /v1/scheduler`` takes (as hex)."""
        body = signed_body(self.request, self.network, self.seq, self.expires_ms)
        return codec.frame(
            body
            + codec.fixed(node_id_to_public_key(self.signer), 32)
            + codec.byte_vec(self.signature)
        )

    def hex(self) -> str:
        """:meth:`encode`, in hex."""
        return self.encode().hex()

    @classmethod
    def decode(cls, data: bytes) -> "SignedRequest":
        """Reads a frame :meth:`encode` wrote (a client's request kinds only)."""
        r = codec.Reader(data)
        r.frame_version()
        request = _decode_request(r)
        network = r.string()
        seq = r.varint()
        expires_ms = r.varint()
        signer = node_id_from_public_key(r.take(32))
        signature = r.byte_vec()
        r.done()
        return cls(request, network, seq, expires_ms, signer, signature)

    def verify(self) -> bool:
        """Whether the signature verifies (as the scheduler checks it)."""
        body = signed_body(self.request, self.network, self.seq, self.expires_ms)
        return verify(self.signer, DOMAIN, body, self.signature)
