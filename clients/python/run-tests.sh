#!/usr/bin/env bash
# Runs the Python client's tests against a real `plexus up` (which the tests start).
#
#   PLEXUS_BIN      the plexus binary (default: the debug build in $CARGO_TARGET_DIR,
#                   or ~/.cache/plexus/target)
#   PLEXUS_PY_VENV  the virtual environment (default: ~/.cache/plexus/py-venv);
#                   created once, and reinstalled only when the package changes
#   PYTHON          the interpreter that creates it (default: python3)
#
# Extra arguments go to pytest (e.g. `-k kv -x`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${PLEXUS_PY_VENV:-$HOME/.cache/plexus/py-venv}"
python="${PYTHON:-python3}"
export PLEXUS_BIN="${PLEXUS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/plexus/target}/debug/plexus}"

if [ ! -x "$PLEXUS_BIN" ]; then
    echo "error: no plexus binary at $PLEXUS_BIN (build it with cargo build, or set PLEXUS_BIN)" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "creating the virtual environment $venv" >&2
    "$python" -m venv "$venv"
fi

# Reinstall only when the package's sources changed since the last install.
stamp="$venv/.plexus-client.stamp"
digest="$(cd "$here" && find pyproject.toml README.md plexus_client -type f ! -name '*.pyc' -print0 \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    # Built from a copy, so the build leaves nothing (build/, *.egg-info) here.
    copy="$(mktemp -d)"
    trap 'rm -rf "$copy"' EXIT
    cp -R "$here/pyproject.toml" "$here/README.md" "$here/plexus_client" "$copy/"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$copy[test]"
    echo "$digest" > "$stamp"
fi

cd "$here"
# The installed package is what is tested (pytest, unlike `python -m pytest`, does
# not put this directory on the import path); no caches are left in the tree.
export PYTHONDONTWRITEBYTECODE=1
"$venv/bin/pytest" -p no:cacheprovider "$@"
