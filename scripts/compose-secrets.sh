#!/usr/bin/env bash
# Creates the secrets docker-compose.yml expects, where missing:
#   $RELAY_SECRETS_DIR/nats/<user>.password      one per NATS user
#   $RELAY_SECRETS_DIR/nats/store.key            JetStream encryption-at-rest key
#   $RELAY_SECRETS_DIR/pseudonym/pseudonym.key   keyed record-ID hashes and date shifts
# and the folders for the REDCap tokens you put there yourself:
#   $RELAY_SECRETS_DIR/sites/        one token file per site (exporter, checker)
#   $RELAY_SECRETS_DIR/destination/  the destination's token (importer)
# Existing files are kept: a new store key would make the stored data
# unreadable, a new pseudonym key would give every record a new pseudonym.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${RELAY_SECRETS_DIR:-./secrets}"
mkdir -p "$dir/nats" "$dir/sites" "$dir/destination" "$dir/pseudonym" "$dir/alerts"
chmod 700 "$dir"; chmod 755 "$dir/nats" "$dir/sites" "$dir/destination" "$dir/pseudonym" "$dir/alerts"
gen() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
for f in admin ticker exporter transformer importer checker notifier; do
  p="$dir/nats/$f.password"
  [ -s "$p" ] || { gen > "$p"; echo "created $p"; }
done
[ -s "$dir/nats/store.key" ] || { gen > "$dir/nats/store.key"; echo "created $dir/nats/store.key"; }
p="$dir/pseudonym/pseudonym.key"
[ -s "$p" ] || { od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$p"; echo "created $p (back it up: pseudonyms depend on it)"; }
# The containers run as uid 65532: the files must be readable to it; the
# folder (mode 700) keeps other host users out.
chmod 644 "$dir"/nats/* "$dir"/pseudonym/*
find "$dir/sites" "$dir/destination" "$dir/alerts" -type f -exec chmod 644 {} +
