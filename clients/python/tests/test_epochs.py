"""Epochs, signed checkpoints and work receipts (the session's node runs 2 s epochs)."""

from __future__ import annotations

import re
from typing import Any, Dict, Optional

import pytest

import plexus_client
from plexus_client import Client, NotFound

HEX = re.compile(r"[0-9a-f]+")


def final_epoch(client: Client) -> Optional[Dict[str, Any]]:
    """The first epoch whose checkpoint is final, if any."""
    rows = client.epochs()["epochs"]
    return next((r for r in rows if r["state"] == "final"), None)


def test_the_dev_committee_is_this_node(client: Client, node: Any) -> None:
    status = plexus_client.wait_until(
        lambda: (lambda s: s if s["dkg"] == "done" else None)(client.epochs()),
        60,
        "the DKG to finish",
    )
    assert status["node"] == node.id
    assert status["member"] is True
    assert status["committee"] == 1 and status["threshold"] == 1
    assert HEX.fullmatch(status["group_key"]), status["group_key"]
    assert status["current"] >= 0


def test_a_checkpoint_is_signed_and_well_formed(client: Client, node: Any) -> None:
    row = plexus_client.wait_until(lambda: final_epoch(client), 90, "a final checkpoint")
    epoch = row["epoch"]
    assert row["signers"] == 1
    assert HEX.fullmatch(row["hash"]) and len(row["hash"]) == 64
    checkpoint = client.epoch(epoch)
    assert checkpoint["epoch"] == epoch
    assert checkpoint["hash"] == row["hash"]
    assert checkpoint["committee"] == [node.id]
    assert checkpoint["group_key"] == client.epochs()["group_key"]
    assert HEX.fullmatch(checkpoint["export"]) and len(checkpoint["export"]) % 2 == 0
    assert [m["node"] for m in checkpoint["members"]] == [node.id]
    assert 0 <= checkpoint["members"][0]["availability_ppm"] <= 1_000_000


def test_a_checkpoint_not_signed_yet_is_not_found(client: Client) -> None:
    later = client.epochs()["current"] + 1_000_000
    with pytest.raises(NotFound, match=f"no signed checkpoint for epoch {later}"):
        client.epoch(later)


def test_receipts_are_well_formed(client: Client, node: Any) -> None:
    receipts = client.receipts()
    assert receipts["node"] == node.id
    assert set(receipts) >= {
        "current",
        "sample_rate_ppm",
        "verifiers",
        "signed",
        "epochs",
        "evidence",
    }
    assert 0 <= receipts["sample_rate_ppm"] <= 1_000_000
    assert receipts["evidence"] == [], "an honest one-node cluster holds evidence"
    for row in receipts["epochs"]:
        assert HEX.fullmatch(row["root"])
        for worker in row["workers"]:
            assert worker["verified"] + worker["unverified"] <= worker["sampled"] <= worker["receipts"]
