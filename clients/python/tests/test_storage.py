"""The key-value store and file storage."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from typing import Any, Dict

import pytest

from plexus_client import BadRequest, Client, NotFound
from plexus_client.ids import chunk_digest, content_id

#: One node: one copy is all it can hold.
ONE = 1


def test_kv_put_get_list_delete(client: Client) -> None:
    prefix = f"test/{os.getpid()}/"
    client.kv_put(prefix + "text", "hello, plexus")
    client.kv_put(prefix + "bytes", b"\x00\xff\x10")
    client.kv_put(prefix + "with space/and slash", "nested")
    assert client.kv_get(prefix + "text") == b"hello, plexus"
    assert client.kv_get(prefix + "bytes") == b"\x00\xff\x10"
    assert client.kv_get(prefix + "with space/and slash") == b"nested"
    assert client.kv_list(prefix) == {
        prefix + "bytes": b"\x00\xff\x10",
        prefix + "text": b"hello, plexus",
        prefix + "with space/and slash": b"nested",
    }
    assert len(client.kv_list(prefix, limit=1)) == 1

    client.kv_put(prefix + "text", "changed")
    assert client.kv_get(prefix + "text") == b"changed"
    client.kv_delete(prefix + "text")
    with pytest.raises(NotFound) as missing:
        client.kv_get(prefix + "text")
    assert missing.value.status == 404
    assert prefix + "text" not in client.kv_list(prefix)


def test_kv_watch_sees_a_later_put(client: Client) -> None:
    prefix = f"watched/{os.getpid()}/"
    changes: "queue.Queue[Dict[str, Any]]" = queue.Queue()
    watch = client.kv_watch(prefix, timeout=30)
    # The watch is registered once the first response bytes can be read; the
    # reader thread holds it open while the puts happen.

    def read() -> None:
        for change in watch:
            changes.put(change)
            if change.get("deleted"):
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline_tries = 50
    change: Dict[str, Any] = {}
    # Put until the watch reports one (the watch may register after the first put).
    for i in range(deadline_tries):
        client.kv_put(prefix + "k", f"v{i}")
        try:
            change = changes.get(timeout=0.2)
            break
        except queue.Empty:
            continue
    assert change, "the watch saw no put"
    assert change["key"] == prefix + "k"
    assert change["value"].startswith(b"v")
    assert change["time_us"] > 0
    client.kv_delete(prefix + "k")
    reader.join(timeout=30)
    seen = []
    while not changes.empty():
        seen.append(changes.get())
    assert any(c.get("deleted") and c["key"] == prefix + "k" for c in seen), seen


def test_a_chunk_round_trips(client: Client, node: Any) -> None:
    data = os.urandom(10_000)
    stored = client.put_chunk(data, replicas=ONE)
    assert stored["holders"] == [node.id]
    assert client.get_chunk(stored["id"]) == data
    # The id text is a CIDv1 of the 32-byte digest; hex names the same chunk.
    digest = chunk_digest(stored["id"])
    assert content_id(digest) == stored["id"]
    assert client.get_chunk(digest.hex()) == data


def test_a_public_file_round_trips(client: Client) -> None:
    data = os.urandom(3 * 4096 + 123)
    stored = client.put_file(data, replicas=ONE, chunk_bytes=4096)
    assert stored["size"] == len(data)
    assert stored["chunks"] == 4
    assert stored["sealed"] is False
    assert stored["replicas"] == ONE
    back = client.get_file(stored["id"])
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()

    listed = {f["id"]: f for f in client.files()}
    assert listed[stored["id"]]["size"] == len(data)
    assert listed[stored["id"]]["pinned"] is True
    stat = client.file(stored["id"])
    assert stat["chunks"] == 4 and stat["chunk_bytes"] == 4096
    assert stat["copies_min"] >= ONE
    client.unpin(stored["id"])
    assert client.file(stored["id"])["pinned"] is False
    client.pin(stored["id"])
    assert client.file(stored["id"])["pinned"] is True


def test_an_empty_file_round_trips(client: Client) -> None:
    stored = client.put_file(b"", replicas=ONE)
    assert stored["size"] == 0 and stored["chunks"] == 0
    assert client.get_file(stored["id"]) == b""


def test_storage_refuses_what_is_wrong(client: Client) -> None:
    with pytest.raises(BadRequest, match="replicas"):
        client.put_chunk(b"x", replicas=0)
    with pytest.raises(BadRequest):
        client.get_chunk("not-a-content-id")
    with pytest.raises(NotFound):
        client.get_chunk("ab" * 32)
    chunk = client.put_chunk(b"a data chunk, not a manifest", replicas=ONE)
    with pytest.raises(BadRequest, match="not a manifest"):
        client.file(chunk["id"])
    with pytest.raises(ValueError, match="chunk_bytes"):
        client.put_file(b"x", chunk_bytes=10)


def test_storage_status_counts_this_nodes_shard(client: Client, node: Any) -> None:
    before = client.storage_status()
    client.put_chunk(os.urandom(2048), replicas=ONE)
    after = client.storage_status()
    assert after["node"] == node.id
    assert after["chunks"] == before["chunks"] + 1
    assert after["bytes"] >= before["bytes"] + 2048
