#!/usr/bin/env bash
# Installs what building and testing Pharos needs on a fresh Debian machine with only Rust on it:
# Debian's RocksDB (linked instead of compiling RocksDB's C++, see docs/ARCHITECTURE.md "Build") and
# libclang for the RocksDB bindings; for the tests, real peers: influxdb-client (query), prometheus,
# prometheus-node-exporter and python3-prometheus-client (collection), prometheus-alertmanager and
# python3-aiosmtpd (alerting: an Alertmanager and an SMTP server receive notifications), faketime (a node
# whose clock is off), chromium (the web UI's test), influxdb (the InfluxQL compatibility test's reference). Safe to run again; does nothing when everything is present.
set -euo pipefail
need=()
[ -e /usr/lib/x86_64-linux-gnu/librocksdb.so ] || [ -e /usr/lib/aarch64-linux-gnu/librocksdb.so ] || need+=(librocksdb-dev)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v clang >/dev/null || need+=(clang)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v python3 >/dev/null || need+=(python3)
# TLS tests: certificates made with openssl (scripts/make-certs.sh), HTTPS checked with curl.
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
# The InfluxDB 1.x command-line client: the query tests drive /query with it.
command -v influx >/dev/null || need+=(influxdb-client)
# InfluxDB 1.x's server: the compatibility test asks it and Pharos the same queries.
command -v influxd >/dev/null || need+=(influxdb)
# Prometheus: the remote-write test points a real Prometheus server at Pharos.
command -v prometheus >/dev/null || need+=(prometheus)
# Scrape targets for the collection tests.
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
[ -d /usr/lib/python3/dist-packages/prometheus_client ] || need+=(python3-prometheus-client)
# Notification receivers for the alerting tests (run with Debian's /usr/bin/python3).
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
[ -d /usr/lib/python3/dist-packages/aiosmtpd ] || need+=(python3-aiosmtpd)
# The web UI's test drives Debian's headless Chromium.
command -v chromium >/dev/null || need+=(chromium)
# A node with a clock that is off (the clock-skew test preloads libfaketime).
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} (apt-get)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian starts InfluxDB's service on install, on port 8086: Pharos's default. The test runs its own.
  if printf '%s\n' "${need[@]}" | grep -qx influxdb && command -v systemctl >/dev/null; then
    $SUDO systemctl disable --now influxdb >/dev/null 2>&1 || true
  fi
fi
# The library directory cargo should link RocksDB from (see .cargo/config.toml).
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
echo "setup: ok (librocksdb in /usr/lib/$arch)" >&2
