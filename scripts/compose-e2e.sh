#!/usr/bin/env bash
# The compose end-to-end scenario (issues 6 and 19). Needs a Docker engine
# and docker-compose; nothing is pulled. It prints each check and each figure
# and exits non-zero on the first failure. Run time: about 10 minutes.
#
# The demo stack (docker-compose.yml + deploy/compose.demo.yml):
#   build images -> a plain up gives 3 transformers -> full sync, destination == expected
#   -> a second plain up keeps them, demo-init says "kept"
#   -> scale transformers 3->1->3 during a run: no loss, no duplicates
#   -> stop the destination mid-run: backlog held, start it: drained, equal
#   -> wipe the destination, relay replay: equal
#   -> SIGKILL NATS mid-run, restart: nothing lost, equal
#   -> the exporter's NATS user publishing on the importer's subject: refused
#   -> down -v leaves no container, volume or network behind
# The production path (docker-compose.yml + deploy/compose.tls.yml, the
# shipped example network, simulators standing in for the sites):
#   the example validates as shipped -> without ./config, up stops at once
#   -> up over TLS: full sync, destination == expected; a client without the
#      CA is refused; JSON logs with "service" once; no plaintext-password
#      warning; soft memory limits; stream fill and destination_up metrics
#   -> backup; restore into the running stack refused; ctl with NATS stopped
#      does not start it; wipe nats-data, restore: status shows the history,
#      the next incremental runs publish nothing, destination equal
#   -> upgrade: new image tag, provision changes a retention and an ack wait
#      keeping every message and cursor, rolling restart, provision again: nothing
#   -> no destination token: the importer stops after 5 attempts and says why
#   -> down -v leaves nothing behind
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  echo "compose-e2e: skipped: no Docker engine answers (docker info failed)"; exit 0
fi
command -v docker-compose >/dev/null || { echo "compose-e2e: skipped: docker-compose is not installed"; exit 0; }
command -v python3 >/dev/null || { echo "compose-e2e: python3 is needed to compare exports" >&2; exit 1; }
command -v curl >/dev/null || { echo "compose-e2e: curl is needed to read the destination and /metrics" >&2; exit 1; }

export COMPOSE_PROJECT_NAME="relaye2e$$"
work="$(mktemp -d)"
export RELAY_SECRETS_DIR="$work/secrets"
DC=(docker-compose -f docker-compose.yml -f deploy/compose.demo.yml)
started=$(date +%s)
ok()   { printf '  ok   %s\n' "$*"; }
# On failure: the other services' logs first, then the exporter's and
# importer's, then the pipeline's status last, where a truncated CI log still
# shows it.
fail() {
  printf '  FAIL %s\n' "$*" >&2
  "${DC[@]}" logs --no-color --tail 15 nats ticker transformer checker >&2 2>/dev/null || true
  "${DC[@]}" logs --no-color --tail 40 exporter importer >&2 2>/dev/null || true
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

step "build images"
bash scripts/build-images.sh
bash scripts/compose-secrets.sh >/dev/null

step "up (plain, no --scale): NATS, provision, demo sites and destination, ticker, exporter, transformers, importer, checker"
"${DC[@]}" up -d 2>&1 | grep -v 'undefined secret' | tail -n 20
n=$("${DC[@]}" ps -q transformer | wc -l); [ "$n" -eq 3 ] && ok "transformers running: $n (scale from the compose file)" || fail "transformers: $n, want 3"

dest_port=$("${DC[@]}" port destination 8080 | cut -d: -f2)
dest_token=$(docker cp "$("${DC[@]}" ps -q sites | head -1)":/demo/secrets/destination.token - | tar -xO | tr -d ' \n')
api() { curl -sS --fail -X POST "http://127.0.0.1:$dest_port/api/" -d token="$dest_token" "$@"; }
# The destination's records, normalised (sorted rows, sorted keys), as one hash and a count.
dest_digest() {
  api -d content=record -d format=json -d type=flat | python3 -c '
import sys, json, hashlib
rows = json.load(sys.stdin)
norm = sorted(json.dumps(r, sort_keys=True) for r in rows)
ids = {r.get(next(iter(r))) for r in rows}
print(hashlib.sha256("\n".join(norm).encode()).hexdigest()[:16], len(ids), len(rows))'
}
status_json() { ctl status --json; }
# Waits until every site has finished its last run and every stage's lag is 0.
drained() {
  local deadline=$(( $(date +%s) + ${1:-240} ))
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
run_figures() {
  status_json | python3 -c '
import sys, json
s = json.load(sys.stdin); bad = 0
for x in s["sites"]:
    c = x["counts"]; r = x.get("last_event") or {}
    print("  site %-10s run %-30s %-9s exported %5d deleted %3d cleaned %5d imported %5d dead-lettered %3d" % (
        x["site"], r.get("run_id", "-"), r.get("phase", "-"), c["exported"], c["deleted"], c["cleaned"], c["imported"], c["dead_lettered"]))
    if c["imported"] + c["dead_lettered"] != c["exported"] + c["deleted"]: bad += 1
sys.exit(1 if bad else 0)'
}

step "full sync; destination equals the expected data"
ctl sync --all --full
drained 300 || fail "the pipeline did not drain"
run_figures || fail "a site lost records (imported + dead-lettered != exported + deleted)"
read -r expected records rows < <(dest_digest)
exported=$(status_json | python3 -c 'import sys,json; print(sum(x["counts"]["exported"]-x["counts"]["dead_lettered"] for x in json.load(sys.stdin)["sites"]))')
[ "$records" -eq "$exported" ] && ok "destination holds $records records ($rows rows), digest $expected; sites exported $exported (net of dead letters)" \
  || fail "destination holds $records records, sites exported $exported"

step "a second plain up: the transformers stay, demo-init keeps the network"
"${DC[@]}" up -d 2>&1 | grep -v 'undefined secret' | tail -n 3
n=$("${DC[@]}" ps -q transformer | wc -l); [ "$n" -eq 3 ] && ok "transformers after a plain up: $n" || fail "a plain up left $n transformers, want 3"
said=$("${DC[@]}" logs --no-color demo-init 2>/dev/null | grep -o 'demo network [a-z]* [a-z]* [^ ]*' | tail -1)
echo "$said" | grep -q 'kept' && ok "demo-init on the second up: $said" || fail "demo-init on the second up said: $said"

step "scale transformers 3 -> 1 -> 3 during a run"
ctl sync --all --full
"${DC[@]}" up -d --no-recreate --scale transformer=1 transformer 2>&1 | grep -v 'undefined secret' | tail -n 3
ok "transformers: $("${DC[@]}" ps -q transformer | wc -l)"
sleep 3
"${DC[@]}" up -d --no-recreate --scale transformer=3 transformer 2>&1 | grep -v 'undefined secret' | tail -n 3
ok "transformers: $("${DC[@]}" ps -q transformer | wc -l)"
drained 300 || fail "the pipeline did not drain after scaling"
run_figures || fail "records lost while scaling"
read -r got records rows < <(dest_digest)
[ "$got" = "$expected" ] && ok "destination equal after scaling: $records records, digest $got (no loss, no duplicates)" || fail "destination differs after scaling: $got != $expected"

step "destination outage mid-run"
"${DC[@]}" stop destination 2>&1 | grep -v 'undefined secret' | tail -n 1
ctl sync --all --full
# The runs first wait up to 30 s for the importer's dictionary read, then
# check against the destination's last dictionary and export.
backlog=0
for _ in $(seq 30); do
  sleep 3
  backlog=$(status_json | python3 -c 'import sys,json; print([l["lag"] for l in json.load(sys.stdin)["lag"] if l["stage"]=="import"][0])')
  [ "$backlog" -gt 0 ] && break
done
[ "$backlog" -gt 0 ] && ok "destination down: backlog held in RECORDS_CLEAN: $backlog message(s)" || fail "no backlog while the destination is down"
"${DC[@]}" start destination 2>&1 | grep -v 'undefined secret' | tail -n 1
dest_port=$("${DC[@]}" port destination 8080 | cut -d: -f2)
drained 300 || fail "the backlog did not drain after the destination came back"
ok "backlog drained"
run_figures || fail "records lost in the outage"
read -r got records rows < <(dest_digest)
[ "$got" = "$expected" ] && ok "destination equal after the outage: digest $got" || fail "destination differs after the outage"

step "wipe the destination (a restore from an old backup), then relay replay"
ids=$(api -d content=record -d format=json -d type=flat | python3 -c '
import sys, json; rows = json.load(sys.stdin); print(" ".join(sorted({r[next(iter(r))] for r in rows})))')
args=(); i=0; for id in $ids; do args+=(-d "records[$i]=$id"); i=$((i+1)); done
api -d content=record -d action=delete "${args[@]}" >/dev/null
read -r got records rows < <(dest_digest)
[ "$records" -eq 0 ] && ok "destination wiped: $records records" || fail "wipe left $records records"
ctl replay --stage import --from-seq 1
drained 300 || fail "the replay did not drain"
read -r got records rows < <(dest_digest)
[ "$got" = "$expected" ] && ok "destination equal after replay: $records records, digest $got" || fail "destination differs after replay: $got != $expected"

step "relay verify: the destination equals every site (ctl, the tokens of both sides)"
[ -n "$("${DC[@]}" ps -q verifier)" ] && [ "$(docker inspect -f '{{.State.Running}}' "$("${DC[@]}" ps -q verifier)")" = true ] \
  && ok "verifier service running" || fail "the verifier service is not running: $("${DC[@]}" logs --no-color --tail 5 verifier 2>&1)"
vout=$(ctl verify --all --json) || fail "relay verify --all exited non-zero: $vout"
echo "$vout" | python3 -c '
import sys, json
r = json.load(sys.stdin)
bad = [s["site"] for s in r["sites"] if s["status"] != "equal"]
assert r["status"] == "equal" and not bad, (r["status"], bad)
print(sum(s["counts"]["records"] for s in r["sites"]), len(r["sites"]))' > /tmp/relay-verify-$$ \
  && read -r vrec vsites < /tmp/relay-verify-$$ && ok "relay verify --all: equal, $vrec records of $vsites sites compared" \
  || fail "relay verify --all did not find the destination equal: $vout"
rm -f /tmp/relay-verify-$$

step "SIGKILL the NATS container mid-run and restart it"
# Slow the sites to 1 s per call, so that the kill lands while the exporter
# is still publishing (riverside's run then takes about 20 s: 7 metadata and ID
# calls, then 16 batches two at a time).
sites_admin=$("${DC[@]}" port sites 8081 | cut -d: -f2)
site_faults() { curl -sS --fail -X PUT "http://127.0.0.1:$sites_admin/faults" -d "$1" >/dev/null; }
site_faults '{"latency":"1s","ban_threshold":-1}'
ctl sync --all --full
sleep 12
docker kill -s KILL "$("${DC[@]}" ps -q nats)" >/dev/null
ok "NATS killed 12 s into a full sync (site calls slowed to 1 s per call)"
site_faults '{"ban_threshold":-1}'
"${DC[@]}" start nats 2>&1 | grep -v 'undefined secret' | tail -n 1
sleep 5
# nats-server occasionally fails to recover an encrypted stream after a
# SIGKILL (its log says "Error recreating stream"; nats-io/nats-server#5703
# and friends). That is the server's defect, not the pipeline's; what the
# pipeline owes is to say so (relay status: "stream missing") and to come
# back equal after the operator's runbook: relay provision, a full sync.
if lost=$("${DC[@]}" logs --no-color nats 2>/dev/null | grep -o 'Error recreating stream[^"]*"[^"]*"[^}]*' | tail -n 3) && [ -n "$lost" ]; then
  printf '  WARN nats-server did not recover a stream after the SIGKILL:\n%s\n' "$lost"
  ctl status 2>/dev/null | grep -i "stream missing" && ok "relay status names the missing stream and the remedy"
  "${DC[@]}" run --rm -T provision 2>&1 | grep -v 'undefined secret' | tail -n 2
  ctl sync --all --full
fi
drained 300 || fail "the pipeline did not drain after the NATS restart"
redone=$("${DC[@]}" logs --no-color exporter 2>/dev/null | grep -c 'run failed on a transient error' || true)
[ "$redone" -gt 0 ] && ok "exporter runs cut by the kill failed and were redone ($redone failed attempt(s) logged)" \
  || printf '  WARN no exporter run was cut by the kill\n'
run_figures || fail "records lost across the NATS kill"
read -r got records rows < <(dest_digest)
[ "$got" = "$expected" ] && ok "destination equal after the NATS kill: digest $got" || fail "destination differs after the NATS kill"

step "NATS permissions: the exporter's user publishing on the importer's subject"
site=$(status_json | python3 -c 'import sys,json; print(json.load(sys.stdin)["sites"][0]["site"])')
if out=$("${DC[@]}" exec -T exporter /relay publish --subject "relay.records.clean.$site" 2>&1); then
  fail "the exporter stored a message on relay.records.clean.$site: $out"
fi
echo "$out" | grep -q "Permissions Violation" && ok "refused: $(echo "$out" | grep -o 'Permissions Violation[^"]*"[^"]*"' | head -1)" || fail "refused without a permissions violation: $out"
"${DC[@]}" exec -T exporter /relay publish --subject "relay.import.done.$site" >/dev/null 2>&1 && fail "exporter stored on relay.import.done" || ok "refused: exporter on relay.import.done.$site"

step "status"
ctl status

step "down -v"
"${DC[@]}" --profile tools down -v --remove-orphans 2>&1 | grep -v 'undefined secret' | tail -n 3
left_c=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | wc -l)
left_v=$(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | wc -l)
left_n=$(docker network ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | wc -l)
[ "$left_c$left_v$left_n" = "000" ] && ok "nothing left: containers $left_c, volumes $left_v, networks $left_n" || fail "left behind: containers $left_c, volumes $left_v, networks $left_n"
source scripts/compose-e2e-prod.sh

printf '\ncompose-e2e: all checks passed in %ss\n' "$(( $(date +%s) - started ))"
