"""The codec and signing, offline (the other tests prove them against the node)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plexus_client import Deploy, Drain, Migrate, SignedRequest, SigningError, SigningKey, Status, Stop, codec
from plexus_client.ids import IdError, node_id_from_public_key, node_id_to_public_key
from plexus_client.signing import DOMAIN, signed_body

from conftest import Node


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, b"\x00"),
        (250, b"\xfa"),
        (251, b"\xfb\xfb\x00"),
        (0xFFFF, b"\xfb\xff\xff"),
        (0x10000, b"\xfc\x00\x00\x01\x00"),
        (0xFFFF_FFFF, b"\xfc\xff\xff\xff\xff"),
        (1 << 32, b"\xfd\x00\x00\x00\x00\x01\x00\x00\x00"),
    ],
)
def test_varints_are_bincodes(value: int, encoded: bytes) -> None:
    assert codec.varint(value) == encoded
    assert codec.Reader(encoded).varint() == value


def test_varints_refuse_what_is_not_a_u64() -> None:
    for bad in (-1, 1 << 64):
        with pytest.raises(codec.CodecError):
            codec.varint(bad)


def test_signed_requests_decode_to_what_was_signed() -> None:
    key = SigningKey.generate()
    other = SigningKey.generate().node_id
    for request in (
        Deploy('name = "x"'),
        Stop("x"),
        Migrate("x/y/0", other),
        Drain(other),
        Status(),
    ):
        signed = SignedRequest.sign(request, "dev", key, seq=7, expires_ms=300)
        assert SignedRequest.decode(signed.encode()) == signed
        assert signed.verify()
        assert key.sign(DOMAIN, signed_body(request, "dev", 7, 300)) == signed.signature


def test_the_frame_layout() -> None:
    key = SigningKey.from_seed(bytes(range(32)))
    signed = SignedRequest.sign(Stop("ab"), "n", key, seq=300, expires_ms=5)
    frame = signed.encode()
    # version, Stop = variant 1, "ab", "n", seq 300 (u16 varint), expiry 5,
    # 32 key bytes, then the signature's length (64) and bytes.
    head = b"\x01" + b"\x01" + b"\x02ab" + b"\x01n" + b"\xfb\x2c\x01" + b"\x05"
    assert frame[: len(head)] == head
    assert frame[len(head) : len(head) + 32] == key.public_key()
    assert frame[len(head) + 32] == 64
    assert len(frame) == len(head) + 32 + 1 + 64


def test_key_files_round_trip(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "client.key"
    key.to_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert SigningKey.from_file(path).node_id == key.node_id
    with pytest.raises(SigningError, match="exists"):
        key.to_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(SigningError, match="too open"):
        SigningKey.from_file(path)
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"\x01\x07ed25519")
    junk.chmod(0o600)
    with pytest.raises(SigningError, match="not a Plexus key file"):
        SigningKey.from_file(junk)


def test_the_nodes_key_files_read_as_its_ids(node: Node) -> None:
    # The node's own key file gives the id the node reports.
    assert SigningKey.from_file(node.data_dir / "node.key").node_id == node.id


def test_node_ids_round_trip() -> None:
    key = SigningKey.generate()
    assert node_id_to_public_key(key.node_id) == key.public_key()
    assert key.node_id.startswith("12D3KooW")
    assert node_id_from_public_key(key.public_key()) == key.node_id
    with pytest.raises(IdError, match="not base58"):
        node_id_to_public_key("0OIl")
    with pytest.raises(IdError, match="ed25519"):
        node_id_to_public_key("abc")
