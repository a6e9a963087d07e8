#!/usr/bin/env bash
# The compose cluster scenario (issue 12): the demo stack on a three-node
# JetStream cluster (docker-compose.yml + deploy/compose.demo.yml +
# deploy/compose.cluster.yml, streams.replicas: 3). Needs a Docker engine and
# docker-compose; nothing is pulled. Run time: a few minutes.
#
#   build images -> up: three nats nodes, R3 streams -> full sync, destination
#   == what the sites exported -> a second full sync with the sites slowed,
#   docker kill one nats node mid-run -> the services move to the other two
#   nodes: drained, destination equal, no new dead letters -> start the node
#   again: it rejoins -> down -v leaves nothing behind
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  echo "compose-cluster: skipped: no Docker engine answers (docker info failed)"; exit 0
fi
command -v docker-compose >/dev/null || { echo "compose-cluster: skipped: docker-compose is not installed"; exit 0; }
command -v python3 >/dev/null || { echo "compose-cluster: python3 is needed to compare exports" >&2; exit 1; }
command -v curl >/dev/null || { echo "compose-cluster: curl is needed to read the destination" >&2; exit 1; }

export COMPOSE_PROJECT_NAME="relaycluster$$"
export RELAY_DEMO_REPLICAS=3
work="$(mktemp -d)"
export RELAY_SECRETS_DIR="$work/secrets"
DC=(docker-compose -f docker-compose.yml -f deploy/compose.demo.yml -f deploy/compose.cluster.yml)
started=$(date +%s)
ok()   { printf '  ok   %s\n' "$*"; }
fail() {
  printf '  FAIL %s\n' "$*" >&2
  "${DC[@]}" logs --no-color --tail 20 nats nats-2 nats-3 >&2 2>/dev/null || true
  "${DC[@]}" logs --no-color --tail 40 exporter importer transformer >&2 2>/dev/null || true
  "${DC[@]}" run --rm -T ctl status >&2 2>/dev/null || true
  printf '  FAIL %s\n' "$*" >&2
  exit 1
}
step() { printf '\n== %s (t+%ss)\n' "$*" "$(( $(date +%s) - started ))"; }
cleanup() {
  "${DC[@]}" --profile tools down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
ctl() { "${DC[@]}" run --rm -T ctl "$@" 2> >(grep -v 'undefined secret' >&2); }
status_json() { ctl status --json; }
drained() {
  local deadline=$(( $(date +%s) + ${1:-300} ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if status_json 2>/dev/null | python3 -c '
import sys, json
s = json.load(sys.stdin)
done = all(x.get("last_event") and x["last_event"]["phase"] in ("exported", "completed", "failed") for x in s["sites"])
lag = sum(l["lag"] for l in s["lag"] if l["stage"] != "check")
sys.exit(0 if done and lag == 0 and s["sites"] else 1)'; then return 0; fi
    sleep 3
  done
  return 1
}
# Exported (net of dead letters) and dead-lettered, summed over the sites.
counts() { status_json | python3 -c '
import sys, json
s = json.load(sys.stdin)["sites"]
print(sum(x["counts"]["exported"] - x["counts"]["dead_lettered"] for x in s), sum(x["counts"]["dead_lettered"] for x in s))'; }

step "build images"
bash scripts/build-images.sh
bash scripts/compose-secrets.sh >/dev/null

step "up: three nats nodes (nats, nats-2, nats-3), provision R3, demo sites and destination, services"
"${DC[@]}" up -d 2>&1 | grep -v 'undefined secret' | tail -n 25
for node in nats nats-2 nats-3; do
  # The whole log first: grep -q would close the pipe early (pipefail).
  log=$("${DC[@]}" logs --no-color "$node" 2>/dev/null || true)
  ready=$(printf '%s\n' "$log" | grep -o '"server_name":"[^"]*","cluster":"[^"]*"' | tail -1 || true)
  [ -n "$ready" ] && ok "$node ready: $ready" || fail "$node did not say it is ready"
done

dest_port=$("${DC[@]}" port destination 8080 | cut -d: -f2)
dest_token=$(docker cp "$("${DC[@]}" ps -q sites | head -1)":/demo/secrets/destination.token - | tar -xO | tr -d ' \n')
api() { curl -sS --fail -X POST "http://127.0.0.1:$dest_port/api/" -d token="$dest_token" "$@"; }
dest_digest() {
  api -d content=record -d format=json -d type=flat | python3 -c '
import sys, json, hashlib
rows = json.load(sys.stdin)
norm = sorted(json.dumps(r, sort_keys=True) for r in rows)
ids = {r.get(next(iter(r))) for r in rows}
print(hashlib.sha256("\n".join(norm).encode()).hexdigest()[:16], len(ids), len(rows))'
}

step "full sync on the cluster"
t0=$(date +%s)
ctl sync --all --full
drained 300 || fail "the pipeline did not drain"
read -r expected records rows < <(dest_digest)
read -r exported dead < <(counts)
[ "$records" -eq "$exported" ] && ok "destination holds $records records ($rows rows), digest $expected, in $(( $(date +%s) - t0 )) s; sites exported $exported (net of $dead dead letters)" \
  || fail "destination holds $records records, sites exported $exported"

step "docker kill one nats node mid-run"
sites_admin=$("${DC[@]}" port sites 8081 | cut -d: -f2)
site_faults() { curl -sS --fail -X PUT "http://127.0.0.1:$sites_admin/faults" -d "$1" >/dev/null; }
site_faults '{"latency":"500ms","ban_threshold":-1}'
t0=$(date +%s)
ctl sync --all --full
sleep 10
victim=${RELAY_CLUSTER_KILL:-nats}
docker kill -s KILL "$("${DC[@]}" ps -q "$victim")" >/dev/null
ok "$victim killed 10 s into a full sync (site calls slowed to 500 ms)"
site_faults '{"ban_threshold":-1}'
drained 300 || fail "the pipeline did not drain on two nodes"
read -r got records rows < <(dest_digest)
read -r exported2 dead2 < <(counts)
[ "$got" = "$expected" ] && ok "destination equal with $victim down: $records records, digest $got, run and drain in $(( $(date +%s) - t0 )) s" \
  || fail "destination differs after the kill: $got != $expected"
[ "$dead2" -eq "$dead" ] && ok "no new dead letters ($dead2, as before the kill)" || fail "dead letters: $dead2, before the kill $dead"
moved=$("${DC[@]}" logs --no-color exporter transformer importer 2>/dev/null | grep -c '"nats reconnected"' || true)
ok "service reconnections to another node logged: $moved"

step "start $victim again: it rejoins the cluster"
"${DC[@]}" start "$victim" 2>&1 | grep -v 'undefined secret' | tail -n 1
for _ in $(seq 30); do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$("${DC[@]}" ps -q "$victim")")" = healthy ] && break
  sleep 2
done
[ "$(docker inspect -f '{{.State.Health.Status}}' "$("${DC[@]}" ps -q "$victim")")" = healthy ] && ok "$victim healthy again" || fail "$victim did not become healthy"
ctl sync --all
drained 300 || fail "the pipeline did not drain after the node came back"
read -r got records rows < <(dest_digest)
[ "$got" = "$expected" ] && ok "destination still equal after an incremental sync on three nodes: digest $got" || fail "destination differs: $got != $expected"

step "down -v"
"${DC[@]}" --profile tools down -v --remove-orphans 2>&1 | grep -v 'undefined secret' | tail -n 3
left_c=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | wc -l)
left_v=$(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | wc -l)
[ "$left_c$left_v" = "00" ] && ok "nothing left: containers $left_c, volumes $left_v" || fail "left behind: containers $left_c, volumes $left_v"

printf '\ncompose-cluster: all checks passed in %ss\n' "$(( $(date +%s) - started ))"
