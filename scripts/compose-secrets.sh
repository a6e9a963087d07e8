#!/usr/bin/env bash
# Creates the secrets docker-compose.yml expects, where missing:
#   $RELAY_SECRETS_DIR/nats/<user>.password      one per NATS user (the clients' copy)
#   $RELAY_SECRETS_DIR/nats/<user>.bcrypt        its bcrypt hash: all the NATS server gets
#   $RELAY_SECRETS_DIR/nats/store.key            JetStream encryption-at-rest key (and the backups' key)
#   $RELAY_SECRETS_DIR/pseudonym/pseudonym.key   keyed record-ID hashes and date shifts
#   $RELAY_SECRETS_DIR/sites.env                 site tokens as VAR=token lines, for sites whose
#                                                network entry says token: {env: VAR}
# and the folders for the REDCap tokens you put there yourself:
#   $RELAY_SECRETS_DIR/sites/        one token file per site (exporter, checker)
#   $RELAY_SECRETS_DIR/destination/  the destination's token (importer)
#
#   scripts/compose-secrets.sh                  # after scripts/build-images.sh (it hashes with the image)
#   scripts/compose-secrets.sh --placeholders   # also placeholder tokens for deploy/network.example.yaml's
#                                               # sites, so the example validates as shipped; replace them
#
# Existing files are kept: a new store key would make the stored data and
# the backups unreadable, a new pseudonym key would give every record a new
# pseudonym. A hash older than its password is made again.
# The hashes are made by `relay nats hash-password`: $RELAY_BIN if set, else
# the relay image (docker), else a relay binary on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
placeholders=""
case "${1:-}" in
  "") ;;
  --placeholders) placeholders=1 ;;
  *) echo "usage: $0 [--placeholders]" >&2; exit 2 ;;
esac
dir="${RELAY_SECRETS_DIR:-./secrets}"
mkdir -p "$dir/nats" "$dir/sites" "$dir/destination" "$dir/pseudonym" "$dir/alerts"
chmod 700 "$dir"; chmod 755 "$dir/nats" "$dir/sites" "$dir/destination" "$dir/pseudonym" "$dir/alerts"

relay() {
  if [ -n "${RELAY_BIN:-}" ]; then
    "$RELAY_BIN" "$@"
  elif docker image inspect "relay:${RELAY_VERSION:-latest}" >/dev/null 2>&1; then
    docker run --rm -i --network none "relay:${RELAY_VERSION:-latest}" "$@"
  elif command -v relay >/dev/null 2>&1; then
    command relay "$@"
  else
    echo "compose-secrets: no relay to hash the NATS passwords with: run scripts/build-images.sh first (or set RELAY_BIN)" >&2
    exit 1
  fi
}
gen() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

for f in admin ticker exporter transformer importer checker notifier verifier; do
  p="$dir/nats/$f.password" h="$dir/nats/$f.bcrypt"
  [ -s "$p" ] || { gen > "$p"; echo "created $p"; }
  if [ ! -s "$h" ] || [ "$p" -nt "$h" ]; then
    relay nats hash-password < "$p" > "$h.tmp" && mv "$h.tmp" "$h"
    echo "created $h (the NATS server's copy)"
  fi
done
[ -s "$dir/nats/store.key" ] || { gen > "$dir/nats/store.key"; echo "created $dir/nats/store.key (back it up apart from the backups: they are encrypted with it)"; }
p="$dir/pseudonym/pseudonym.key"
[ -s "$p" ] || { od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$p"; echo "created $p (back it up: pseudonyms depend on it)"; }
env="$dir/sites.env"
if [ ! -e "$env" ]; then
  cat > "$env" <<'ENV'
# Site tokens as environment variables, one VAR=token per line, for the
# sites whose network entry says token: {env: VAR}. docker-compose passes
# them to the exporter, the checker and ctl only. (Or use token files in
# sites/: token: {file: /run/secrets/relay/sites/<site>.token}.)
ENV
  echo "created $env"
fi
chmod 600 "$env" # read by docker-compose on this host, not by a container

if [ -n "$placeholders" ]; then
  # Letters and digits like a real token, so the example validates; a
  # REDCap server refuses them with "invalid token".
  ph() { [ -s "$1" ] || { echo "PLACEHOLDER0$2" | head -c 32 > "$1"; echo >> "$1"; echo "created $1 (a placeholder: put the real token there)"; }; }
  ph "$dir/sites/wake.token" "REPLACEWITHTHESITETOKEN000000000"
  ph "$dir/destination/destination.token" "REPLACEWITHTHEDESTINATIONTOKEN00"
  grep -q '^PITT_REDCAP_TOKEN=' "$env" || { echo "PITT_REDCAP_TOKEN=PLACEHOLDER0REPLACEWITHTHETOKEN00" >> "$env"; echo "added a placeholder PITT_REDCAP_TOKEN to $env (put the real token there)"; }
fi
# The containers run as uid 65532: the files must be readable to it; the
# folder (mode 700) keeps other host users out.
chmod 644 "$dir"/nats/* "$dir"/pseudonym/*
find "$dir/sites" "$dir/destination" "$dir/alerts" -type f -exec chmod 644 {} +
