#!/usr/bin/env bash
# Makes a CA and a node certificate for Pharos's TLS with openssl: for trying TLS out, tests and small
# clusters (a production cluster uses its own PKI). Run again with the same DIR to renew the node
# certificate under the same CA (the nodes pick it up without a restart).
#
# usage: scripts/make-certs.sh DIR [COMMON_NAME [SAN...]]
#   SANs as openssl writes them: IP:10.0.0.5 DNS:node1.example (default: IP:127.0.0.1 DNS:localhost);
#   they must cover every address clients and other nodes use to reach the node.
# writes: DIR/ca.crt and DIR/ca.key (made once), DIR/node.crt and DIR/node.key
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [COMMON_NAME [SAN...]]" >&2
  exit 2
fi
dir=$1
cn=${2:-pharos-node}
shift $(($# > 1 ? 2 : 1))
sans=${*:-IP:127.0.0.1 DNS:localhost}
command -v openssl >/dev/null || { echo "make-certs: needs openssl (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
if [ ! -e "$dir/ca.crt" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/ca.key" \
    -out "$dir/ca.crt" -subj "/CN=pharos CA" -days 3650 2>/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/node.key" -out "$tmp/node.csr" \
  -subj "/CN=$cn" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$(echo "$sans" | tr ' ' ',')" >"$tmp/ext.cnf"
openssl x509 -req -in "$tmp/node.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
  -out "$tmp/node.crt" -days 825 -extfile "$tmp/ext.cnf" 2>/dev/null
chmod 600 "$tmp/node.key"
# Key first, then certificate: a node reading between the two keeps serving the old pair until both match.
mv "$tmp/node.key" "$dir/node.key"
mv "$tmp/node.crt" "$dir/node.crt"
echo "make-certs: $dir/node.crt (CN=$cn, $sans) signed by $dir/ca.crt" >&2
