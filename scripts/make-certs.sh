#!/usr/bin/env bash
# Makes throwaway TLS material for tests and the local cluster with the openssl command line:
#   DIR/ca.pem, DIR/ca.key             a self-signed cluster CA
#   DIR/node<i>.pem, DIR/node<i>.key   for i in 1..N: subject CN "raftkv-node-<i>", signed by
#                                      the CA, usable as TLS server and client (peer TLS)
#   DIR/http.pem, DIR/http.key         an HTTPS server certificate for 127.0.0.1 / localhost
# Keys are ECDSA P-256, certificates valid for 30 days. Never use these in production.
#
#   scripts/make-certs.sh DIR N
set -euo pipefail

if [[ $# -ne 2 || ! "$2" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 DIR N   (N >= 1 node certificates)" >&2
  exit 2
fi
dir=$1
n=$2
mkdir -p "$dir"
cd "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; chmod 600 "$1"; }

# sign NAME SUBJECT EXTENSIONS: NAME.key + NAME.pem signed by the CA
sign() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$tmp/$1.csr" 2>/dev/null
  printf '%s\n' "$3" >"$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -CAserial "$tmp/ca.srl" -days 30 -sha256 -extfile "$tmp/$1.ext" -out "$1.pem" 2>/dev/null
}

key ca.key
openssl req -x509 -new -key ca.key -subj "/CN=raftkv throwaway CA" -days 30 -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem 2>/dev/null

for ((i = 1; i <= n; i++)); do
  sign "node$i" "/CN=raftkv-node-$i" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:raftkv-node-$i"
done
sign http "/CN=localhost" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"

echo "made a CA, node1..node$n and http certificates in $dir" >&2
