"""The digits classifier end to end: the README's example, run as it is written,
then more inference against the model it deployed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

import plexus_client
from plexus_client import BadRequest, Client, NotFound, digits

from conftest import Node, plexus_bin

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLE_MARKER = "<!-- example: digits"


def readme_example() -> str:
    """The README's digits example: the first ```python block after its marker."""
    text = README.read_text()
    at = text.index(EXAMPLE_MARKER)
    match = re.search(r"```python\n(.*?)```", text[at:], re.S)
    assert match, "the README's digits example has no ```python block"
    return match.group(1)


@pytest.fixture(scope="session")
def readme_run(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """Runs the README's example in a fresh interpreter, in an environment where
    the session's node is the default local one; returns its output."""
    script = tmp_path_factory.mktemp("readme") / "example.py"
    script.write_text(readme_example())
    env = node.env()
    env["PLEXUS_BIN"] = plexus_bin()
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=script.parent,
        timeout=300,
    )
    assert done.returncode == 0, f"the README example failed:\n{done.stderr}"
    return {"stdout": done.stdout, "stderr": done.stderr}


@pytest.fixture(scope="session")
def model(readme_run: Dict[str, str], client: Client) -> str:
    """The model the README example added and deployed: the one the `digits`
    job's executor serves."""
    executors = client.models()["executors"]
    served = [e["model"] for e in executors if e["key"] == "digits/classify/0"]
    assert len(served) == 1, f"no single digits executor: {executors}"
    return str(served[0])


def test_the_readme_example_is_ten_lines_at_most() -> None:
    lines = [line for line in readme_example().splitlines() if line.strip()]
    # With `pip install` and `plexus up`, the whole path is ten lines.
    assert len(lines) + 2 <= 10, lines


def test_the_readme_example_classifies_a_real_digit(readme_run: Dict[str, str]) -> None:
    images, labels = digits.load()
    found = re.fullmatch(r"classified (\d), labelled (\d)\n", readme_run["stdout"])
    assert found, f"unexpected output: {readme_run['stdout']!r}"
    classified, labelled = int(found.group(1)), int(found.group(2))
    assert labelled == labels[0]
    assert classified == labelled, "the classifier got the README's image wrong"
    assert 0 in digits.held_out(len(images)), "the README's image is not held out"


def test_the_deployed_job_serves_the_added_model(client: Client, model: str) -> None:
    held = {m["hash"] for m in client.models()["models"]}
    assert model in held
    job = client.job("digits")
    assert job is not None and job["state"] == "running", job
    assert client.key is not None and job["submitter"] == client.key.node_id


def test_held_out_images_are_classified_well(client: Client, model: str) -> None:
    images, labels = digits.load()
    test = digits.held_out(len(images))
    got = client.classify(model, [images[i] for i in test])
    assert len(got) == len(test)
    correct = sum(1 for g, i in zip(got, test) if g == labels[i])
    assert correct / len(test) >= 0.9, f"{correct}/{len(test)} correct"
    # Not one answer for everything: at least nine of the ten classes come back.
    assert len(set(got)) >= 9


def test_infer_returns_logits_that_agree_with_the_class(client: Client, model: str) -> None:
    images, _ = digits.load()
    outputs = client.infer(model, images[:3])
    assert len(outputs) == 3
    for out in outputs:
        logits: List[float] = out["logits"]
        assert len(logits) == 10
        assert out["class"] == max(range(10), key=lambda c: logits[c])


def test_infer_by_executor_key(client: Client, model: str) -> None:
    images, _ = digits.load()
    by_key = client.classify("digits/classify/0", images[:5])
    by_model = client.classify(model, images[:5])
    assert by_key == by_model


def test_receipts_count_the_forward_passes(client: Client, model: str) -> None:
    before = client.receipts()["signed"]
    images, _ = digits.load()
    client.classify(model, images[5:10])
    plexus_client.wait_until(
        lambda: True if client.receipts()["signed"] > before else None,
        30,
        "a receipt for the forward pass",
    )


def test_bad_pixels_are_refused(client: Client, model: str) -> None:
    with pytest.raises(ValueError, match="64 pixel values"):
        client.infer(model, [[0] * 63])
    with pytest.raises(ValueError, match="0..=16"):
        client.infer(model, [[17] * 64])
    # The node checks too: a request sent as raw JSON.
    with pytest.raises(BadRequest) as refused:
        client.post("/v1/infer", {"target": model, "inputs": [[17] * 64]})
    assert refused.value.status == 400
    assert "inputs[0]" in refused.value.message


def test_a_model_nobody_serves_is_not_found(client: Client) -> None:
    images, _ = digits.load()
    with pytest.raises(NotFound, match="no executor serves model"):
        client.infer("ab" * 32, images[:1])


def test_the_bundled_data_is_the_nodes() -> None:
    images, labels = digits.load()
    assert len(images) == len(labels) == 1797
    assert all(len(i) == 64 and all(0 <= p <= 16 for p in i) for i in images)
    assert sorted(set(labels)) == list(range(10))
    with pytest.raises(ValueError, match="model"):
        digits.job("not a hash")
