# The two Quick start commands. Both install missing system packages first.
#   make demo   runs the main job on embedded defaults
#   make test   runs the whole test suite
#
# Builds go to a cache outside the clone so a fresh clone reuses earlier work;
# nothing relies on the cache being warm.
CARGO_TARGET_DIR ?= $(HOME)/.cache/plexus/target
export CARGO_TARGET_DIR

.PHONY: demo test deps bench fmt lint

deps:
	@./scripts/ensure-deps.sh
	@./scripts/install-chain-tools.sh >/dev/null

# The demo runs the binary from the same build `make test` uses (one feature
# resolution, so rocksdb's C++ is compiled once for both).
demo: deps
	cargo test --workspace --all-targets --locked --no-run
	$(CARGO_TARGET_DIR)/debug/plexus demo

test: deps
	cargo test --workspace --all-targets --locked
	cargo test --workspace --doc --locked

bench: deps
	cargo bench -p plexus-benches
	cargo bench -p plexus-epochs --bench checkpoint

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
