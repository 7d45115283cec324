"""Client messages to durable actors: accepted, acknowledged, applied once."""

from __future__ import annotations

import collections
import os
from typing import Any, Dict, Iterator, Optional

import pytest

import plexus_client
from plexus_client import BadRequest, Client


@pytest.fixture(scope="module")
def word_count(client: Client) -> Iterator[str]:
    """A deployed one-actor `word-count` job; yields the actor's key."""
    name = f"words-{os.getpid()}"
    spec = f'name = "{name}"\ndurability = 1\n[[stage]]\nname = "count"\nkind = "word-count"\n'
    client.deploy(spec, wait=True)
    yield f"{name}/count/0"
    client.stop(name)


def actor_state(client: Client, key: str) -> Optional[Dict[str, Any]]:
    """What the durable actor ``key`` reports of itself here."""
    state: Optional[Dict[str, Any]] = client.durable()["actors"].get(key)
    return state


def test_messages_are_acknowledged_and_applied_once(client: Client, word_count: str) -> None:
    before = client.durable()
    messages = ["the quick brown fox", "the lazy dog", "the end"]
    assert client.send(word_count, messages) == len(messages)

    def applied() -> Optional[Dict[str, Any]]:
        state = actor_state(client, word_count)
        return state if state and state["count"] >= len(messages) else None

    state = plexus_client.wait_until(applied, 30, "the messages to be applied")
    assert state["count"] == len(messages), "a message was applied twice"
    words = collections.Counter(w for m in messages for w in m.split())
    assert state["distinct_words"] == len(words)
    top = {w: n for w, n in state["top_words"]}
    assert top["the"] == words["the"] == 3

    after = plexus_client.wait_until(
        lambda: (lambda d: d if d["acked"] - before["acked"] >= len(messages) else None)(
            client.durable()
        ),
        30,
        "the messages to be acknowledged",
    )
    assert after["sent"] - before["sent"] == len(messages)
    assert after["acked"] - before["acked"] == len(messages)


def test_more_messages_add_up(client: Client, word_count: str) -> None:
    start = actor_state(client, word_count)
    assert start is not None
    batch = [f"word{i}" for i in range(20)]
    assert client.send(word_count, batch) == 20
    plexus_client.wait_until(
        lambda: True if (actor_state(client, word_count) or {}).get("count") == start["count"] + 20 else None,
        30,
        "20 more messages to be applied",
    )


def test_a_bad_actor_key_is_a_bad_request(client: Client) -> None:
    with pytest.raises(BadRequest) as refused:
        client.send("not a key", ["hello"])
    assert "`actor`" in refused.value.message
    with pytest.raises(TypeError, match="list of strings"):
        client.send("a/b/0", "one string")
