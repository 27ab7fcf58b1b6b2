# Developer entry points. `make test` is what CI runs (.ci/run).

.PHONY: test lint bench deps

deps:
	./deploy/install-deps.sh

# The whole test suite: unit, golden, property and integration tests (real processes, real
# state files). Takes a few minutes on 2 cores, most of it compiling.
test: deps
	cargo test --workspace --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

# Scheduler benchmarks (release build); see README "Performance".
bench:
	cargo run --release --locked -- bench
