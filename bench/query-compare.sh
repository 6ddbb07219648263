#!/bin/bash
# One side-by-side query-latency run: a fresh single Pharos node (release build) is started on an empty data
# directory and handed to ../shared/peers/compare.sh, which loads the same generated data into
# VictoriaMetrics, InfluxDB and Pharos in turn and runs the four standard dashboard queries
# (../shared/peers/queries.py: 20 runs each, median and p99, answer checksums) against each.
#
#   bench/query-compare.sh [--hosts 100] [--hours 12] [--cache on|off]
#
# Prints the harness's markdown table (also in $OUT/results.md, default /tmp/peers-out). `--cache off`
# starts Pharos with query.cache_entries = 0. Needs `cargo build --release -p pharos-node`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=${PEERS:-$root/../shared/peers}
[ -d "$peers" ] || peers=$root/../../shared/peers
hosts=100 hours=12 cache=on
while [ $# -gt 0 ]; do
  case $1 in
  --hosts) hosts=$2; shift 2 ;; --hours) hours=$2; shift 2 ;; --cache) cache=$2; shift 2 ;;
  *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bin=${CARGO_TARGET_DIR:-$root/target}/release/pharos
[ -x "$bin" ] || { echo "build first: cargo build --release -p pharos-node (looked for $bin)" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d /tmp/pharos-query-bench.XXXXXX)
hp=$(free_port) gp=$(free_port)
cfg=$dir/pharos.toml
if [ "$cache" = off ]; then printf '[query]\ncache_entries = 0\n' >"$cfg"; else : >"$cfg"; fi
setsid "$bin" server --config "$cfg" --data-dir "$dir/data" --http-addr "127.0.0.1:$hp" --grpc-addr "127.0.0.1:$gp" \
  --log warn >"$dir/pharos.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hp/health")" = 200 ] && break; sleep 0.2; done
echo "pharos (cache $cache) on 127.0.0.1:$hp, data in $dir/data; running the peers harness..." >&2
"$peers/compare.sh" --hosts "$hosts" --hours "$hours" --sets cpu --pharos "http://127.0.0.1:$hp" --pharos-pid "$pid" \
  --pharos-dir "$dir/data"
