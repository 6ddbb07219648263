#!/usr/bin/env bash
# Fuzzes the targets of fuzz/ (docs/reliability.md) under libFuzzer, with the nightly toolchain and the
# address sanitizer:
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]     default: 20 s for every target
#   FUZZ_RUNS=N scripts/fuzz.sh 0 TARGET                 N executions instead of a time (long runs)
#
# Installs the nightly toolchain and cargo-fuzz when they are missing. Each target starts from the committed
# corpus (fuzz/corpus/TARGET), the regressions (fuzz/regressions/TARGET), generated seeds and what earlier
# runs here found ($CARGO_TARGET_DIR/fuzz/corpus/TARGET). A crash fails the run: libFuzzer saves its input
# in fuzz/targets/artifacts/TARGET/; fix the bug and keep the input in fuzz/regressions/TARGET/, where
# `cargo test -p pharos-fuzz` replays it on stable.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
[ $# -gt 0 ] && shift
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
fuzz=(cargo +nightly fuzz)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir fuzz/targets)
fi
work=$CARGO_TARGET_DIR/fuzz
mkdir -p "$work"
echo "fuzz: building ${#targets[@]} targets (nightly, address sanitizer, debug assertions)" >&2
"${fuzz[@]}" build --fuzz-dir fuzz/targets --debug-assertions
rm -rf "$work/seeds"
cargo run -q --locked -p pharos-fuzz --bin pharos-fuzz-seeds -- "$work/seeds"
if [ "${FUZZ_RUNS:-}" ]; then limit=(-runs="$FUZZ_RUNS"); else limit=(-max_total_time="$secs"); fi
status=0
for t in "${targets[@]}"; do
  dirs=("$work/corpus/$t")
  mkdir -p "${dirs[0]}"
  for d in "fuzz/corpus/$t" "fuzz/regressions/$t" "$work/seeds/$t"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  echo "fuzz: $t (${limit[*]})" >&2
  if "${fuzz[@]}" run --fuzz-dir fuzz/targets --debug-assertions "$t" "${dirs[@]}" -- \
      "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>"$work/$t.log"; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz: $t passed, $runs executions" >&2
  else
    echo "fuzz: $t FAILED; its log: $work/$t.log; the input: fuzz/targets/artifacts/$t/" >&2
    # The panic's message, or the sanitizer's or libFuzzer's verdict (timeout, out of memory).
    grep -E -A2 "panicked at|^==[0-9]+== ?ERROR|^SUMMARY" "$work/$t.log" | grep -v "^ *[0-9]*: \|^ *at " | head -20 >&2 ||
      tail -20 "$work/$t.log" >&2
    status=1
  fi
done
exit "$status"
