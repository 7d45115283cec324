#!/usr/bin/env bash
# Installs the system packages Plexus needs to build and test, if they are missing:
# libclang (rocksdb's bindgen), a C/C++ toolchain, Node.js with npm (the local
# chain for the ledger tests, and Playwright for the dashboard's browser test),
# chromium (that test's browser), Prometheus (promtool and a server, for the
# metrics tests; on a machine with systemd, Debian's package also starts a
# Prometheus service on :9090: `systemctl disable --now prometheus` stops it), and
# python3 with venv (the Python client's tests), and Mesa's Vulkan drivers (the
# wgpu backend's tests run on lavapipe, a Vulkan device on the CPU). Idempotent and quick when
# everything is present. As root it uses apt-get; otherwise sudo if available;
# otherwise it prints the exact command to run and fails.
#
# `--demo` installs only what `make demo` needs (the build's C/C++ toolchain and
# libclang, and npm for the local chain), so a fresh machine's first demo does not
# wait for a browser, Prometheus and Python it will not use.
set -euo pipefail

demo_only=0
[ "${1:-}" = "--demo" ] && demo_only=1

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed; install Rust (https://rustup.rs) first" >&2
    exit 1
fi
if command -v dpkg-query >/dev/null 2>&1; then
    have_pkg libclang-dev || need+=(libclang-dev)
    have_pkg clang || need+=(clang)
    command -v cc >/dev/null 2>&1 || need+=(build-essential)
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    # Node.js and npm install the local chain (anvil) and the Solidity compiler
    # for the ledger bridge's tests (scripts/install-chain-tools.sh).
    command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
    if [ "$demo_only" -eq 0 ]; then
        # promtool and a Prometheus server for the metrics tests (tests/metrics.rs).
        [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ] || need+=(prometheus)
        # The dashboard's browser test (tests/dashboard.rs) drives Debian's chromium.
        [ -x /usr/bin/chromium ] || need+=(chromium)
        # The Python client's tests run in a virtual environment.
        command -v python3 >/dev/null 2>&1 || need+=(python3)
        python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
        # Mesa's lavapipe: a Vulkan device on the CPU, for the wgpu backend's
        # tests (ml/tests/wgpu.rs) on machines without a GPU.
        have_pkg mesa-vulkan-drivers || need+=(mesa-vulkan-drivers)
    fi
else
    # Not Debian/Ubuntu: check for libclang by file and advise.
    if ! ls /usr/lib*/libclang*.so* /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
        echo "error: libclang not found; install your distribution's libclang development package" >&2
        exit 1
    fi
fi

# Playwright (the npm package only: it drives the system chromium, it downloads
# no browser) for the dashboard's browser test.
browser_deps() {
    [ "$demo_only" -eq 0 ] || return 0
    local dir
    dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
    if [ ! -d "$dir/node_modules/playwright-core" ]; then
        echo "installing the browser test's npm packages in $dir"
        npm ci --prefix "$dir" --no-audit --no-fund --silent
    fi
}

if [ ${#need[@]} -eq 0 ]; then
    browser_deps
    exit 0
fi
echo "installing system packages: ${need[*]}"
if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
else
    echo "error: missing system packages. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
browser_deps
