#!/bin/bash
# One side-by-side ingest run: the same generated line protocol (../shared/peers/gen.py) loaded by the same
# loader (../shared/peers/load.py, batches of 5,000 lines over 4 connections) into VictoriaMetrics, InfluxDB,
# a single Pharos node and a 3-node Pharos cluster with 3 replicas, all on this machine. Prints one markdown
# table: ingest samples/s, server CPU-seconds per million samples, peak RSS, bytes on disk per sample.
#
#   bench/ingest-compare.sh [--hosts 100] [--hours 6] [--sets cpu,node] [--systems vm,influx,pharos,pharos3]
#
# Needs a release build (`cargo build --release -p pharos-node`). Peers come from Debian's packages via
# ../shared/peers/peer.sh and listen on 127.0.0.1 only.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=${PEERS:-$root/../shared/peers}
[ -d "$peers" ] || peers=$root/../../shared/peers
hosts=100 hours=6 sets=cpu,node systems=vm,influx,pharos,pharos3
while [ $# -gt 0 ]; do
  case $1 in
  --hosts) hosts=$2; shift 2 ;; --hours) hours=$2; shift 2 ;; --sets) sets=$2; shift 2 ;;
  --systems) systems=$2; shift 2 ;; *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bin=${CARGO_TARGET_DIR:-$root/target}/release/pharos
[ -x "$bin" ] || { echo "build first: cargo build --release -p pharos-node (looked for $bin)" >&2; exit 1; }
DATA=${DATA:-/tmp/peers-data}/$hosts-$hours
mkdir -p "$DATA"
"$peers/peer.sh" install
for s in ${sets//,/ }; do
  [ -f "$DATA/$s.lp" ] || { echo "generating $s data ($hosts hosts, $hours h)..." >&2; python3 "$peers/gen.py" --set "$s" --hosts "$hosts" --hours "$hours" --out "$DATA" >&2; }
done

cpu_s() { local t=0; for p in "$@"; do t=$(awk -v t="$t" '{print t + ($14 + $15) / 100}' "/proc/$p/stat" 2>/dev/null || echo "$t"); done; echo "$t"; }
rss_mb() { local t=0; for p in "$@"; do t=$((t + $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo "$t"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.2; done; echo "no answer from $1" >&2; return 1; }

# start_pharos N DIR -> sets PIDS and URL (HTTP of node 1)
start_pharos() {
  local n=$1 dir=$2 ic="" i
  PIDS=() URLS=()
  local -a hp gp
  for i in $(seq "$n"); do hp[$i]=$(free_port); gp[$i]=$(free_port); done
  if [ "$n" -gt 1 ]; then for i in $(seq "$n"); do ic="$ic${ic:+,}$i=127.0.0.1:${gp[$i]}"; done; fi
  for i in $(seq "$n"); do
    mkdir -p "$dir/n$i"
    setsid "$bin" server --node-id "$i" --data-dir "$dir/n$i" --http-addr "127.0.0.1:${hp[$i]}" \
      --grpc-addr "127.0.0.1:${gp[$i]}" ${ic:+--initial-cluster "$ic"} --log warn >"$dir/n$i.log" 2>&1 &
    PIDS+=($!) URLS+=("http://127.0.0.1:${hp[$i]}")
  done
  for u in "${URLS[@]}"; do
    for _ in $(seq 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$u/health")" = 200 ] && break; sleep 0.2; done
  done
  URL=${URLS[0]}
}

row() {  # row NAME WRITE_URL DIR PIDS...
  local name=$1 wurl=$2 dir=$3; shift 3
  local line="| $name |" before=0
  for s in ${sets//,/ }; do
    local c0 c1 res samples rate errs bytes
    c0=$(cpu_s "$@")
    res=$(python3 "$peers/load.py" --url "$wurl" "$DATA/$s.lp")
    c1=$(cpu_s "$@")
    echo "$name $s: $res" >&2
    samples=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["samples"])')
    rate=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["samples_per_s"])')
    errs=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["errors"])')
    # Bytes on disk after each system's own compaction: VictoriaMetrics force-merged, InfluxDB compacted,
    # every Pharos node snapshotted, its Raft logs purged and RocksDB compacted.
    case $name in
    vm|influx) "$peers/peer.sh" flush "$name" "$FLUSH_PORT" ;;
    *) for u in "${URLS[@]}"; do curl -sf -XPOST "$u/api/v1/admin/compact" >/dev/null || echo "compaction of $u failed" >&2; done ;;
    esac
    bytes=$(du -s --block-size=1 "$dir" | cut -f1)
    line="$line $rate ($errs err) | $(python3 -c "print(round(($c1 - $c0) * 1e6 / max(1, $samples), 2))") | $(python3 -c "print(round(($bytes - $before) / max(1, $samples), 3))") |"
    before=$bytes
  done
  echo "$line $(rss_mb "$@") |"
}

hdr="| system |" sep="|---|"
for s in ${sets//,/ }; do hdr="$hdr $s ingest samples/s | $s CPU-s per M samples | $s bytes/sample on disk |"; sep="$sep---|---|---|"; done
echo "Data: $hosts hosts x $hours h at 10 s, sets $sets; $(date -u +%F); $(nproc) cores; loader: 5,000 lines per batch, 4 connections."
echo
echo "$hdr peak RSS MB (all processes) |"
echo "$sep---|"
for sys in ${systems//,/ }; do
  dir=$(mktemp -d /tmp/ingest-run.XXXXXX)
  case $sys in
  vm|influx)
    port=$(free_port)
    pid=$("$peers/peer.sh" start "$sys" "$port" "$dir")
    FLUSH_PORT=$port
    case $sys in
    vm) row vm "http://127.0.0.1:$port/write" "$dir" "$pid" ;;
    influx) row influx "http://127.0.0.1:$port/write?db=bench&precision=s" "$dir" "$pid" ;;
    esac
    kill "$pid" ;;
  pharos|pharos3)
    n=1; [ "$sys" = pharos3 ] && n=3
    start_pharos "$n" "$dir"
    row "$sys" "$URL/write?db=bench&precision=s" "$dir" "${PIDS[@]}"
    kill "${PIDS[@]}" ;;
  esac
  sleep 2; rm -rf "$dir"
done
