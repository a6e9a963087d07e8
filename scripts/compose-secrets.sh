#!/usr/bin/env bash
# Creates the NATS secrets docker-compose.yml expects, where missing:
#   $RELAY_SECRETS_DIR/nats/<user>.password   one per NATS user
#   $RELAY_SECRETS_DIR/nats/store.key         JetStream encryption-at-rest key
# Existing files are kept (a new store key would make the stored data unreadable).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${RELAY_SECRETS_DIR:-./secrets}"
mkdir -p "$dir/nats" "$dir/tokens"
chmod 700 "$dir"; chmod 755 "$dir/nats" "$dir/tokens"
gen() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
for f in admin ticker exporter transformer importer checker; do
  p="$dir/nats/$f.password"
  [ -s "$p" ] || { gen > "$p"; echo "created $p"; }
done
[ -s "$dir/nats/store.key" ] || { gen > "$dir/nats/store.key"; echo "created $dir/nats/store.key"; }
# The containers run as uid 65532: the files must be readable to it; the
# folder (mode 700) keeps other host users out.
chmod 644 "$dir"/nats/*
