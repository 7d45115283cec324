"""Signed scheduler requests, accepted and refused by the real node."""

from __future__ import annotations

import dataclasses
import itertools
import os

import pytest

import plexus_client
from plexus_client import (
    Client,
    ClusterRejected,
    Deploy,
    NotFound,
    RequestRejected,
    SchedulerRejected,
    SignedRequest,
    SigningError,
    SigningKey,
    Status,
)

from conftest import Node

_names = itertools.count()


def job_name(prefix: str) -> str:
    """A job name no other test uses."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def tally_job(name: str) -> str:
    """A one-actor job of the standard `tally` kind."""
    return f'name = "{name}"\ndurability = 1\n[[stage]]\nname = "sink"\nkind = "tally"\n'


def test_deploy_is_listed_then_stop_removes_it(client: Client, node: Node) -> None:
    name = job_name("deploy")
    deployed = client.deploy(tally_job(name), wait=True)
    assert deployed["job"] == name
    assert deployed["actors"] == [[f"{name}/sink/0", node.id]]

    job = client.job(name)
    assert job is not None, client.jobs()
    assert job["state"] == "running"
    assert job["actors"] == job["running"] == 1
    assert client.key is not None and job["submitter"] == client.key.node_id
    [actor] = client.job_actors(name)
    assert actor["key"] == f"{name}/sink/0"
    assert actor["kind"] == "tally"
    assert actor["active"] is True and actor["node"] == node.id

    stopped = client.stop(name)
    assert stopped == {"job": name, "actors": 1}
    plexus_client.wait_until(
        lambda: True if client.job(name) is None else None, 30, f"job {name} to be gone"
    )
    assert all(a["job"] != name for a in client.job_actors())


def test_deploying_the_same_name_twice_is_refused(client: Client) -> None:
    name = job_name("twice")
    client.deploy(tally_job(name))
    try:
        with pytest.raises(ClusterRejected, match="already runs"):
            client.deploy(tally_job(name).replace("tally", "relay"))
    finally:
        client.stop(name)


def test_a_tampered_request_has_a_bad_signature(client: Client) -> None:
    name = job_name("tampered")
    signed = client.sign(Deploy(tally_job(name)))
    forged = dataclasses.replace(signed, request=Deploy(tally_job(name + "-forged")))
    assert signed.verify() and not forged.verify()
    with pytest.raises(RequestRejected) as refused:
        client.submit(forged)
    assert refused.value.status == 400
    assert "bad signature" in refused.value.message
    assert client.job(name + "-forged") is None


def test_a_key_not_on_the_allowlist_may_not_deploy(node: Node) -> None:
    stranger = Client(node.api, token=node.token, key=SigningKey.generate())
    name = job_name("stranger")
    with pytest.raises(SchedulerRejected) as refused:
        stranger.deploy(tally_job(name))
    assert isinstance(refused.value, RequestRejected)
    assert stranger.key is not None
    assert f"{stranger.key.node_id} is not an allowlisted submitter" in refused.value.message
    assert stranger.job(name) is None


def test_a_request_for_another_network_is_refused(client: Client) -> None:
    assert client.key is not None
    signed = SignedRequest.sign(Status(), "not-" + client.network, client.key)
    with pytest.raises(RequestRejected, match="is for network"):
        client.submit(signed)


def test_a_replayed_request_is_refused(client: Client) -> None:
    name = job_name("replayed")
    signed = client.sign(Deploy(tally_job(name)))
    assert client.submit(signed)["Deployed"]["job"] == name
    try:
        # The same bytes again: the scheduler has seen this signer's sequence number.
        with pytest.raises(RequestRejected, match="replay"):
            client.submit(signed)
    finally:
        client.stop(name)


def test_an_expired_request_is_refused(client: Client) -> None:
    signed = client.sign(Status(), expires_ms=1_000)
    with pytest.raises(RequestRejected, match="expired"):
        client.submit(signed)


def test_signed_status_needs_no_token(client: Client, node: Node) -> None:
    keyed = Client(node.api, token=None, key=client.key)
    status = keyed.scheduler_status()
    assert status["host"] == node.id
    assert {j["name"] for j in status["jobs"]} == {j["name"] for j in client.jobs()}


def test_signing_needs_a_key(node: Node) -> None:
    with pytest.raises(SigningError, match="no signing key"):
        Client(node.api, token=node.token).deploy(tally_job("keyless"))


def test_migrate_and_drain_carry_node_ids(client: Client, node: Node) -> None:
    name = job_name("migrate")
    client.deploy(tally_job(name), wait=True)
    try:
        # The only node already hosts it: the refusal names the node decoded
        # from the request's 32 key bytes.
        with pytest.raises(ClusterRejected) as refused:
            client.migrate(f"{name}/sink/0", node.id)
        assert refused.value.message == f"`{name}/sink/0` already runs on {node.id}"
        with pytest.raises(RequestRejected, match="no actor"):
            client.migrate(f"{name}/sink/9", node.id)
    finally:
        client.stop(name)
    # Draining a node that is not a member moves nothing, but the scheduler
    # records the node it read.
    outsider = SigningKey.generate().node_id
    assert client.drain(outsider) == {"node": outsider, "actors": 0}
    assert outsider in client.status()["draining"]


def test_an_unknown_job_cannot_be_stopped(client: Client) -> None:
    with pytest.raises(RequestRejected, match="no job named"):
        client.stop(job_name("never-deployed"))


def test_status_has_the_schedulers_fields(client: Client, node: Node) -> None:
    status = client.status()
    assert set(status) == {"host", "jobs", "actors", "draining"}
    assert status["host"] == node.id
    with pytest.raises(NotFound):
        client.get("/v1/no-such-route")
