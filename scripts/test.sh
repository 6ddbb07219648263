#!/usr/bin/env bash
# Runs every test of the workspace: unit, storage on real RocksDB, Raft conformance, the cluster tests on
# real pharos processes, and a short run of every fuzz target. This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Reuse a build directory outside the checkout when one is given; never required.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
echo "test: building (target dir $CARGO_TARGET_DIR)" >&2
cargo build --workspace --bins --locked
echo "test: running all tests" >&2
# The failover test times how long a shard takes to accept writes after its leader is SIGKILLed (the limit is
# 5 s); it runs on its own afterwards, so a test killing nodes next to it on the same two cores does not
# count in its time.
failover=t30_sigkill_a_shard_leader_mid_write_recovers_within_5s
status=0
cargo test --workspace --locked --no-fail-fast -- --test-threads=2 --skip "$failover" || status=$?
echo "test: the failover test, alone" >&2
cargo test -p cluster-tests --test three_nodes --locked -- --exact "$failover" --nocapture || status=$?
# Every fuzz target for 20 s under libFuzzer (nightly toolchain and cargo-fuzz, installed when missing);
# long runs are in docs/reliability.md.
echo "test: fuzzing every target for 20 s (scripts/fuzz.sh)" >&2
./scripts/fuzz.sh 20 || status=$?
exit "$status"
