# The two Quick start commands. Both install missing system packages first.
#   make demo   runs the main job on embedded defaults
#   make test   runs the whole test suite
#
# Builds go to a cache outside the clone so a fresh clone reuses earlier work;
# nothing relies on the cache being warm.
CARGO_TARGET_DIR ?= $(HOME)/.cache/plexus/target
export CARGO_TARGET_DIR

.PHONY: demo test deps bench fmt lint chaos

deps:
	@./scripts/ensure-deps.sh
	@./scripts/install-chain-tools.sh >/dev/null

# The demo builds only the `plexus` binary (not the test suite) and installs the
# local chain's npm packages while it compiles; it needs only the build's system
# packages (`ensure-deps.sh --demo`), not the tests' browser, Prometheus or Python.
# At a terminal the cluster stays up at the end (--keep) for the dashboard whose URL
# it prints, until Ctrl-C; elsewhere (CI, a pipe) the demo ends on its own.
demo:
	@./scripts/ensure-deps.sh --demo
	@log=$$(mktemp); ./scripts/install-chain-tools.sh >$$log 2>&1 & chain=$$!; \
	  cargo build --locked --bin plexus; built=$$?; \
	  wait $$chain || { cat $$log >&2; rm -f $$log; exit 1; }; rm -f $$log; \
	  exit $$built
	if [ -t 0 ]; then $(CARGO_TARGET_DIR)/debug/plexus demo --keep; else $(CARGO_TARGET_DIR)/debug/plexus demo; fi

# The last line tests serving on wgpu; without a GPU it runs on Mesa's lavapipe.
test: deps
	cargo test --workspace --all-targets --locked
	cargo test --workspace --doc --locked
	cargo test -p plexus-ml --features wgpu --locked
	clients/python/run-tests.sh

# The chaos run (tests/chaos.rs) for five minutes: five nodes in network namespaces,
# a seeded nemesis, a checked history. `make test` runs it for 40 s. Needs root.
# CHAOS_SEED=N repeats a schedule.
chaos: deps
	CHAOS_SECONDS=$${CHAOS_SECONDS:-300} cargo test --workspace --test chaos --locked -- --nocapture

bench: deps
	cargo bench -p plexus-runtime-benches
	cargo bench -p plexus-benches
	cargo bench -p plexus-epochs --bench checkpoint

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
