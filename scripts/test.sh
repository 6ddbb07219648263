#!/usr/bin/env bash
# Runs every test of the workspace: unit, storage on real RocksDB, Raft conformance, and the cluster tests
# on real pharos processes. This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Reuse a build directory outside the checkout when one is given; never required.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
echo "test: building (target dir $CARGO_TARGET_DIR)" >&2
cargo build --workspace --bins --locked
echo "test: running all tests" >&2
cargo test --workspace --locked --no-fail-fast -- --test-threads=2
