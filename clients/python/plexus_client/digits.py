"""The handwritten-digits classifier Plexus serves: its data, its training, its job.

The data set is the one the node's own code trains on (``ml/data/digits.csv.gz``
in the Plexus repository, bundled here unchanged and checked against the same
SHA-256): 1,797 8x8 images, pixel values 0..16, labels 0..9. It is the "Optical
Recognition of Handwritten Digits" set of E. Alpaydin and C. Kaynak (UCI Machine
Learning Repository, CC BY 4.0), as scikit-learn ships it. Every fifth image
(index divisible by 5) is held out of training.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from typing import List, Optional, Tuple, Union

from .errors import PlexusError

#: SHA-256 of the bundled ``digits.csv.gz`` (the same file the node embeds).
DATA_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
#: Pixels per image.
PIXELS = 64
#: The environment variable naming the `plexus` binary.
BIN_ENV = "PLEXUS_BIN"

Image = List[int]


def load(path: Optional[Union[str, "os.PathLike[str]"]] = None) -> Tuple[List[Image], List[int]]:
    """The images (64 pixel values 0..16 each, row by row) and their labels.

    ``path``: another gzip-compressed CSV of the same shape (no checksum is
    checked then); default: the bundled data set.
    """
    if path is None:
        raw = resources.files("plexus_client").joinpath("data/digits.csv.gz").read_bytes()
        got = hashlib.sha256(raw).hexdigest()
        if got != DATA_SHA256:
            raise PlexusError(f"the bundled digits data's SHA-256 is {got}, not {DATA_SHA256}")
    else:
        raw = Path(path).read_bytes()
    return parse(gzip.decompress(raw).decode("ascii"))


def parse(text: str) -> Tuple[List[Image], List[int]]:
    """Parses CSV lines of 64 pixels and a label; raises ValueError naming the line."""
    images: List[Image] = []
    labels: List[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != PIXELS + 1:
            raise ValueError(f"digits line {number}: {len(fields)} fields, not {PIXELS + 1}")
        try:
            values = [int(float(f)) for f in fields]
        except ValueError as e:
            raise ValueError(f"digits line {number}: {e}") from e
        if any(not 0 <= v <= 16 for v in values[:PIXELS]) or not 0 <= values[PIXELS] <= 9:
            raise ValueError(f"digits line {number}: a pixel outside 0..16 or a label outside 0..9")
        images.append(values[:PIXELS])
        labels.append(values[PIXELS])
    return images, labels


def held_out(count: int) -> List[int]:
    """The indices of the held-out images among ``count`` (every fifth, from 0),
    which training never sees."""
    return list(range(0, count, 5))


def job(
    model: str,
    name: str = "digits",
    durability: int = 1,
    max_batch: int = 32,
    max_wait_ms: int = 2,
) -> str:
    """A job spec (TOML) with one ``infer`` stage, ``classify``, serving ``model``
    (its 64-hex-digit hash). Its executor's key is ``<name>/classify/0``.
    ``durability`` is the copies of its request log (1 on a one-node cluster)."""
    if len(model) != 64 or any(c not in "0123456789abcdefABCDEF" for c in model):
        raise ValueError(f"`model` is a weights hash of 64 hex digits, not {model!r}")
    return (
        f'name = "{name}"\ndurability = {int(durability)}\n'
        '[resources]\ncpu = "500m"\nmemory = "64MiB"\n\n'
        '[[stage]]\nname = "classify"\nkind = "infer"\n'
        f'config = {{ model = "{model.lower()}", max_batch = {int(max_batch)}, '
        f"max_wait_ms = {int(max_wait_ms)} }}\n"
    )


def plexus_binary() -> str:
    """The `plexus` binary: ``$PLEXUS_BIN``, else ``plexus`` on the PATH."""
    named = os.environ.get(BIN_ENV)
    if named:
        return named
    found = shutil.which("plexus")
    if found is None:
        raise PlexusError(f"no `plexus` binary: put it on the PATH or set {BIN_ENV}")
    return found


def train(
    seed: int = 42, epochs: int = 30, plexus: Optional[str] = None, timeout: float = 600.0
) -> bytes:
    """Trains the classifier on the bundled data with ``plexus train`` (the
    node's own code, reproducible: the same seed gives the same weights) and
    returns the weights file's bytes, for :meth:`Client.add_model`."""
    exe = plexus or plexus_binary()
    with tempfile.TemporaryDirectory(prefix="plexus-train-") as tmp:
        out = Path(tmp) / "digits.weights"
        cmd = [exe, "train", "--seed", str(seed), "--epochs", str(epochs), "--out", str(out)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except OSError as e:
            raise PlexusError(f"cannot run {exe}: {e}") from e
        except subprocess.TimeoutExpired as e:
            raise PlexusError(f"`plexus train` did not finish within {timeout:g} s") from e
        if done.returncode != 0:
            raise PlexusError(
                f"`plexus train` failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
            )
        return out.read_bytes()
