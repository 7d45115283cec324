"""The node, its members and actors, and who may call the API."""

from __future__ import annotations

import asyncio

import pytest

from plexus_client import (
    AsyncClient,
    AuthError,
    Client,
    ConnectionFailed,
    Forbidden,
    PlexusError,
    SigningKey,
    default_data_dir,
    discover_api,
)

from conftest import Node


def test_node_info_names_the_node(client: Client, node: Node) -> None:
    info = client.node()
    assert info["id"] == node.id
    assert info["api"] == node.api
    assert info["network"] == "dev"  # `plexus up` names its network so
    assert client.network == info["network"]
    assert info["store"]["state"] == "ok"
    assert info["listen"], "the node listens nowhere"


def test_members_of_a_one_node_cluster(client: Client, node: Node) -> None:
    members = client.members()
    assert isinstance(members, list)
    # A node is not its own member; a one-node cluster has no other.
    assert [m for m in members if node.id in str(m)] == []
    assert len(members) == 0


def test_actors_lists_the_system_actors(client: Client, node: Node) -> None:
    actors = client.actors()
    kinds = {a["kind"] for a in actors}
    assert "plexus.durable" in kinds, kinds
    assert all(a["id"].startswith(node.id + "/") for a in actors)
    assert all(a["mailbox_depth"] <= a["mailbox_capacity"] for a in actors)


def test_local_finds_the_running_node(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(node.xdg))
    monkeypatch.delenv("PLEXUS_API", raising=False)
    monkeypatch.delenv("PLEXUS_API_TOKEN", raising=False)
    assert default_data_dir() == node.data_dir
    assert discover_api(node.token) == node.api
    local = Client.local()
    assert local.api == node.api
    assert local.token == node.token
    assert local.key is not None
    assert local.key.node_id == SigningKey.from_file(node.data_dir / "client.key").node_id
    assert local.node()["id"] == node.id


def test_local_without_a_node_says_so(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLEXUS_API_TOKEN", raising=False)
    with pytest.raises(PlexusError, match="no API token"):
        Client.local(str(tmp_path))


def test_a_wrong_token_is_an_auth_error(node: Node) -> None:
    wrong = Client(node.api, token="0" * 64)
    with pytest.raises(AuthError) as refused:
        wrong.jobs()
    assert refused.value.status == 401
    assert "token" in refused.value.message
    with pytest.raises(AuthError):
        Client(node.api).kv_get("anything")
    # The public route needs none.
    assert wrong.node()["id"] == node.id


def test_no_node_is_a_connection_error() -> None:
    with pytest.raises(ConnectionFailed, match="cannot reach"):
        Client("http://127.0.0.1:1", timeout=5).node()


def test_metrics_are_prometheus_text(client: Client) -> None:
    text = client.metrics()
    assert "# TYPE plexus_actors gauge" in text
    assert 'plexus_actors{kind="plexus.durable"} 1' in text


def test_the_async_client_makes_the_same_calls(node: Node) -> None:
    async def run() -> None:
        aclient = AsyncClient(client=node.client())
        info, jobs = await asyncio.gather(aclient.node(), aclient.jobs())
        assert info["id"] == node.id
        assert isinstance(jobs, list)
        await aclient.kv_put("async/key", "from asyncio")
        assert await aclient.kv_get("async/key") == b"from asyncio"
        with pytest.raises(AuthError):
            await AsyncClient(node.api, token="bad").status()
        # A watch, read from the loop while puts are made.
        watch = aclient.kv_watch("async/watched", timeout=30)
        first = asyncio.ensure_future(watch.__anext__())
        for i in range(50):
            await aclient.kv_put("async/watched", f"v{i}")
            done, _ = await asyncio.wait({first}, timeout=0.2)
            if done:
                break
        change = await asyncio.wait_for(first, 5)
        assert change["key"] == "async/watched"
        assert change["value"].startswith(b"v")
        await watch.aclose()

    asyncio.run(run())


def test_an_echo_actor_answers_asks_and_counts_tells(client: Client, node: Node) -> None:
    spawned = client.spawn("echo")
    assert spawned["node"] == node.id
    actor = spawned["actor"]
    assert actor.startswith(node.id + "/")
    assert actor in {a["id"] for a in client.actors()}
    first = client.ask("hello", actor=actor)
    assert first == {"node": node.id, "actor": actor, "text": "hello", "count": 1}
    client.tell("fire and forget", actor=actor)
    # The tell is counted before a later ask is handled (one mailbox, in order).
    assert client.ask("again", actor=actor)["count"] == 3
    with pytest.raises(Forbidden, match="reserved"):
        client.spawn("plexus.durable")
