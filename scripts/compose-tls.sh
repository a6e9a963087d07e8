#!/usr/bin/env bash
# Creates a private CA and a certificate for the NATS server, where missing,
# for deploy/compose.tls.yml:
#   $RELAY_SECRETS_DIR/tls/ca.pem       the CA every client verifies the server with
#   $RELAY_SECRETS_DIR/tls/ca.key       its key (keep it to renew the server certificate)
#   $RELAY_SECRETS_DIR/tls/server.pem   the server's certificate, for the names in $RELAY_NATS_TLS_HOSTS
#   $RELAY_SECRETS_DIR/tls/server.key   its key (the nats container only)
#
#   scripts/compose-tls.sh            # after scripts/build-images.sh (it runs the relay image)
#   RELAY_NATS_TLS_HOSTS="nats nats.center.example.org" scripts/compose-tls.sh
#
# Made by `relay nats tls-certs` (Go's crypto/x509: ECDSA P-256, 825 days):
# $RELAY_BIN if set, else the relay image. To use your own CA instead, put
# its ca.pem and a server.pem/server.key for the name "nats" there.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${RELAY_SECRETS_DIR:-./secrets}/tls"
mkdir -p "$dir"
hosts=()
for h in ${RELAY_NATS_TLS_HOSTS:-nats localhost}; do hosts+=(--host "$h"); done
if [ -n "${RELAY_BIN:-}" ]; then
  "$RELAY_BIN" nats tls-certs --out "$dir" "${hosts[@]}"
else
  docker run --rm --network none -u "$(id -u):$(id -g)" -v "$(cd "$dir" && pwd):/out" \
    "relay:${RELAY_VERSION:-latest}" nats tls-certs --out /out "${hosts[@]}"
fi
# The nats container (uid 65532) reads server.key; the secrets folder
# (mode 700) keeps other host users out. ca.key never leaves this host.
chmod 755 "$dir"
chmod 644 "$dir"/ca.pem "$dir"/server.pem "$dir"/server.key
chmod 600 "$dir"/ca.key
