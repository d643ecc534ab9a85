#!/usr/bin/env bash
# Test certificates for TLS and mutual TLS, made with openssl (never use them in production):
#   ca.pem / ca.key            a private certificate authority
#   server.pem / server.key    the server, valid for localhost and 127.0.0.1
#   client-<name>.pem / .key   client certificates whose subject CN is <name> (the caller identity)
#   rogue-ca.pem, client-rogue.pem / .key   a client signed by another CA (must be refused)
# Usage: scripts/dev-certs.sh DIR [CLIENT_NAME ...]   (default clients: chat-backend ops-admin)
set -euo pipefail
dir=${1:?usage: dev-certs.sh DIR [CLIENT_NAME ...]}
shift
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(chat-backend ops-admin)
mkdir -p "$dir"
cd "$dir"
days=30

# A CA, and a certificate signed by it: sign NAME CA SUBJECT EXTENSIONS
sign() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -subj "$3" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days $days \
    -extfile <(printf '%s\n' "$4") -out "$1.pem" 2>/dev/null
  rm -f "$1.csr"
}
ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -subj "/CN=$2" -days $days -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

ca ca "handoff test CA"
ca rogue-ca "someone else's CA"
sign server ca "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth
basicConstraints=CA:FALSE"
for name in "${clients[@]}"; do
  sign "client-$name" ca "/CN=$name" "extendedKeyUsage=clientAuth
basicConstraints=CA:FALSE"
done
sign client-rogue rogue-ca "/CN=chat-backend" "extendedKeyUsage=clientAuth
basicConstraints=CA:FALSE"
echo "certificates in $dir"
