#!/usr/bin/env bash
# Installs the local-chain tools used by the ledger bridge contracts and their tests:
#   anvil (Foundry's local EVM node, shipped as a prebuilt binary inside an npm package),
#   solc (solcjs, the Solidity compiler as JS/wasm) and the JS test dependencies.
# Everything goes into ${PLEXUS_TOOLS:-$HOME/.cache/plexus/tools}/chain via npm.
# Idempotent: does nothing (no network) when the pinned versions are already there.
# The last line of stdout is the absolute path of the anvil binary.
set -euo pipefail

ANVIL_VERSION=1.7.1
SOLC_VERSION=0.8.30
NOBLE_CURVES_VERSION=1.9.7
VIEM_VERSION=2.57.20

TOOLS="${PLEXUS_TOOLS:-$HOME/.cache/plexus/tools}"
DIR="$TOOLS/chain"
NM="$DIR/node_modules"

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) PLAT=linux-amd64 ;;
    Linux-aarch64 | Linux-arm64) PLAT=linux-arm64 ;;
    Darwin-arm64) PLAT=darwin-arm64 ;;
    Darwin-x86_64) PLAT=darwin-amd64 ;;
    *) echo "error: unsupported platform $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is not installed (Node.js >= 18 is needed)" >&2
    exit 1
fi

# Prints the installed version of package $1, or nothing.
installed_version() {
    local pj="$NM/$1/package.json"
    [ -f "$pj" ] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version || "")' "$pj" 2>/dev/null || true
}

want=(
    "@foundry-rs/anvil@$ANVIL_VERSION"
    "@foundry-rs/anvil-$PLAT@$ANVIL_VERSION"
    "solc@$SOLC_VERSION"
    "@noble/curves@$NOBLE_CURVES_VERSION"
    "viem@$VIEM_VERSION"
)

missing=0
for spec in "${want[@]}"; do
    name="${spec%@*}"
    ver="${spec##*@}"
    if [ "$(installed_version "$name")" != "$ver" ]; then
        missing=1
    fi
done

ANVIL="$NM/@foundry-rs/anvil-$PLAT/bin/anvil"

if [ "$missing" -eq 1 ]; then
    mkdir -p "$DIR"
    [ -f "$DIR/package.json" ] || echo '{ "name": "plexus-chain-tools", "private": true }' >"$DIR/package.json"
    echo "installing chain tools into $DIR" >&2
    # --ignore-scripts: anvil's postinstall only re-links the platform binary, which
    # the platform package already ships; the other packages have no install scripts.
    npm install --prefix "$DIR" --no-audit --no-fund --ignore-scripts --save-exact \
        --loglevel=error "${want[@]}" >&2
fi

if [ ! -f "$ANVIL" ]; then
    echo "error: anvil binary not found at $ANVIL" >&2
    exit 1
fi
# npm tarballs may lose the exec bit with --ignore-scripts; make sure it is set.
[ -x "$ANVIL" ] || chmod +x "$ANVIL"
if ! "$ANVIL" --version >/dev/null 2>&1; then
    echo "error: $ANVIL does not run" >&2
    exit 1
fi
echo "$ANVIL"
