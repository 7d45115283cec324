"""The tests' node: one real ``plexus up`` for the whole session.

It runs from a fresh temporary directory that is also its ``XDG_DATA_HOME``, so
its data dir is the default one (``$XDG_DATA_HOME/plexus``) and
``Client.local()`` finds it as it would on a user's machine. Its API listens on a
free port (``--api 127.0.0.1:0``), which its ready line on stdout reports.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import plexus_client
from plexus_client import Client, SigningKey

#: How long the node may take to print its ready line.
READY_WAIT_S = 60.0
#: How long it may take before its scheduler answers.
SCHEDULER_WAIT_S = 60.0
#: Short epochs, so signed checkpoints appear within a test's patience.
EPOCH_LENGTH = "2s"


def plexus_bin() -> str:
    """The binary under test: ``$PLEXUS_BIN``, else ``plexus`` on the PATH."""
    named = os.environ.get("PLEXUS_BIN") or shutil.which("plexus")
    if not named or not os.access(named, os.X_OK):
        pytest.exit(
            f"no plexus binary (PLEXUS_BIN={os.environ.get('PLEXUS_BIN')!r}, none on the PATH)",
            returncode=2,
        )
    return str(Path(named).resolve())


@dataclass
class Node:
    """The running node and how to reach it."""

    process: "subprocess.Popen[str]"
    id: str
    api: str
    token: str
    data_dir: Path
    xdg: Path
    events: List[Dict[str, Any]]
    stderr: Path

    def client(self) -> Client:
        """A client with the node's token and the dev submitter key."""
        key = SigningKey.from_file(self.data_dir / "client.key")
        return Client(self.api, token=self.token, key=key)

    def env(self) -> Dict[str, str]:
        """An environment in which ``Client.local()`` finds this node."""
        env = dict(os.environ)
        env["XDG_DATA_HOME"] = str(self.xdg)
        env.pop("PLEXUS_API", None)
        env.pop("PLEXUS_API_TOKEN", None)
        return env


def _read_events(stdout: Any, out: "queue.Queue[Dict[str, Any]]") -> None:
    """Puts every JSON object the node prints on ``out`` (other lines are its
    human-readable notes, skipped)."""
    for line in stdout:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.put(value)


def _stop(process: "subprocess.Popen[str]") -> None:
    """SIGTERM to the node's process group, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no stderr)"


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """Starts ``plexus up`` in a fresh directory, waits for its ready line and its
    scheduler, and stops it (and anything it started) at the end."""
    base = tmp_path_factory.mktemp("plexus-up")
    xdg = base / "xdg"
    data_dir = xdg / "plexus"
    stderr_path = base / "node.stderr"
    env = dict(os.environ, XDG_DATA_HOME=str(xdg), RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    cmd = [
        plexus_bin(),
        "up",
        "--data-dir",
        str(data_dir),
        "--api",
        "127.0.0.1:0",
        "--epoch-length",
        EPOCH_LENGTH,
    ]
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
            start_new_session=True,
        )
    events: "queue.Queue[Dict[str, Any]]" = queue.Queue()
    threading.Thread(target=_read_events, args=(process.stdout, events), daemon=True).start()
    try:
        ready = _wait_ready(process, events, stderr_path)
        token = Path(ready["api_token_file"]).read_text().strip()
        running = Node(
            process=process,
            id=ready["node"],
            api=ready["api"],
            token=token,
            data_dir=data_dir,
            xdg=xdg,
            events=[ready],
            stderr=stderr_path,
        )
        # The ready line comes before the scheduler has a view of the cluster.
        client = running.client()
        plexus_client.wait_until(client.status, SCHEDULER_WAIT_S, "the scheduler to answer")
        yield running
    finally:
        _stop(process)


def _wait_ready(
    process: "subprocess.Popen[str]", events: "queue.Queue[Dict[str, Any]]", stderr: Path
) -> Dict[str, Any]:
    """The node's ready line; fails the session with its stderr if it exits or
    takes too long."""
    deadline = time.monotonic() + READY_WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None and events.empty():
            pytest.fail(f"plexus up exited with {process.returncode}:\n{_tail(stderr)}")
        try:
            event = events.get(timeout=0.5)
        except queue.Empty:
            continue
        if event.get("event") == "ready":
            return event
    pytest.fail(f"plexus up printed no ready line within {READY_WAIT_S:g} s:\n{_tail(stderr)}")


@pytest.fixture(scope="session")
def client(node: Node) -> Client:
    """A client of the session's node."""
    return node.client()
