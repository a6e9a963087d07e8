# The production-path half of scripts/compose-e2e.sh (sourced by it: it uses
# its helpers ok, fail, step, ctl, status_json, drained, run_figures,
# dest_digest). docker-compose.yml and deploy/compose.tls.yml as shipped,
# the shipped example network file, and two simulators standing in for the
# sites and the destination (an overlay written here: test scaffolding, not
# a deployment file).

export COMPOSE_PROJECT_NAME="relayprod$$"
export RELAY_SECRETS_DIR="$work/prod-secrets" RELAY_CONFIG_DIR="$work/config"
cat > "$work/sims.yml" <<'YAML'
services:
  demo-init:
    image: relay:${RELAY_VERSION:-latest}
    restart: "no"
    command: ["demo", "--write", "/demo", "--scale", "2", "--site-url", "http://sites:8080/api/",
              "--destination-url", "http://destination:8080/api/", "--reports-dir", "/reports"]
    volumes: ["demo:/demo"]
  sites:
    image: relay:${RELAY_VERSION:-latest}
    command: ["sim", "--listen", "0.0.0.0:8080", "--projects", "/demo/projects/sites", "--ban-threshold", "0"]
    volumes: ["demo:/demo:ro"]
    depends_on: {demo-init: {condition: service_completed_successfully}}
  destination:
    image: relay:${RELAY_VERSION:-latest}
    command: ["sim", "--listen", "0.0.0.0:8080", "--projects", "/demo/projects/destination", "--data", "/data", "--ban-threshold", "0"]
    volumes: ["demo:/demo:ro", "destination-data:/data"]
    ports: ["127.0.0.1::8080"]
    depends_on: {demo-init: {condition: service_completed_successfully}}
  # /metrics on the host, to read what an operator's Prometheus would
  nats: {ports: ["127.0.0.1::9090"]}
  exporter: {ports: ["127.0.0.1::9090"]}
  importer: {ports: ["127.0.0.1::9090"]}
volumes:
  demo:
  destination-data:
YAML
DC=(docker-compose -f docker-compose.yml -f deploy/compose.tls.yml -f "$work/sims.yml")
metrics() { curl -sS --fail "http://127.0.0.1:$("${DC[@]}" port "$1" 9090 | cut -d: -f2)/metrics"; }
# The value of one sample, e.g. metric nats 'relay_stream_messages{account="RELAY",stream="AUDIT"}'.
metric() { metrics "$1" | awk -v k="$2" '$1 == k {print $2}'; }
stream_msgs() { metrics nats | grep '^relay_stream_messages' | sort; }
wait_healthy() {
  local deadline=$(( $(date +%s) + 60 ))
  while [ "$(docker inspect -f '{{.State.Health.Status}}' "$("${DC[@]}" ps -q "$1")" 2>/dev/null)" != healthy ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$1 is not healthy after 60 s"
    sleep 1
  done
}

step "production path: the shipped example network validates with the placeholder secrets"
bash scripts/compose-secrets.sh --placeholders >/dev/null
bash scripts/compose-tls.sh >/dev/null
mkdir -p "$RELAY_CONFIG_DIR/policies"
cp deploy/network.example.yaml "$RELAY_CONFIG_DIR/network.yaml"
cp -r deploy/protocol "$RELAY_CONFIG_DIR/"
cp deploy/policies/heal-core.yaml "$RELAY_CONFIG_DIR/policies/"
out=$(ctl config validate 2>&1) || fail "the example does not validate as shipped: $out"
ok "ctl config validate: $(echo "$out" | head -1)"

step "production path: without ./config, up stops at once and says why"
t0=$(date +%s)
if RELAY_CONFIG_DIR="$work/no-config" timeout 180 "${DC[@]}" up -d ticker >"$work/up.log" 2>&1; then
  fail "up without a network file succeeded"
fi
took=$(( $(date +%s) - t0 ))
said=$("${DC[@]}" logs --no-color provision 2>/dev/null | grep -o '"msg":"network file [^:]*: [^(]*' | head -1)
[ "$took" -lt 90 ] && [ -n "$said" ] && ok "up returned non-zero after ${took}s; provision: $said" || fail "up without ./config: ${took}s, provision said: $said"
"${DC[@]}" rm -fsv provision ticker >/dev/null 2>&1

step "production path: simulators stand in for wake, pitt and the destination"
"${DC[@]}" up -d sites destination 2>&1 | grep -v 'undefined secret' | tail -n 2
sim=$("${DC[@]}" ps -q sites)
demo_file() { docker cp "$sim:$1" - | tar -xO; }
demo_file /demo/secrets/riverside.token > "$RELAY_SECRETS_DIR/sites/wake.token"
sed -i "s/^PITT_REDCAP_TOKEN=.*/PITT_REDCAP_TOKEN=$(demo_file /demo/secrets/lakeshore.token | tr -d ' \n')/" "$RELAY_SECRETS_DIR/sites.env"
demo_file /demo/secrets/destination.token > "$RELAY_SECRETS_DIR/destination/destination.token"
# The sites' policy is the one their projects were approved with (the demo's).
demo_file /demo/policies/heal-core.yaml > "$RELAY_CONFIG_DIR/policies/heal-core.yaml"
python3 - "$RELAY_CONFIG_DIR/network.yaml" <<'PY'
import re, sys
p = sys.argv[1]; s = open(p).read()
s = re.sub(r'url: https://redcap\.(wake|pitt)\.example\.org/api/', 'url: http://sites:8080/api/', s)
s = s.replace('url: https://redcap.center.example.org/api/', 'url: http://destination:8080/api/')
s = s.replace('dag: wake ', 'dag: riverside ').replace('dag: pitt\n', 'dag: lakeshore\n')
s = re.sub(r'(\n    time_zone: [^\n]*)', r'\1\n    server_time_zone: UTC   # the simulator clock', s)
open(p, 'w').write(s)
PY
out=$(ctl config validate 2>&1) || fail "the example pointed at the simulators does not validate: $out"
ok "example pointed at the simulators: $(echo "$out" | head -1)"

step "production stack up over TLS (plain up)"
"${DC[@]}" up -d 2>&1 | grep -v 'undefined secret' | tail -n 3
n=$("${DC[@]}" ps -q transformer | wc -l); [ "$n" -eq 3 ] && ok "transformers: $n" || fail "transformers: $n, want 3"
dest_port=$("${DC[@]}" port destination 8080 | cut -d: -f2)
dest_token=$(tr -d ' \n' < "$RELAY_SECRETS_DIR/destination/destination.token")
ctl sync --all --full
drained 300 || fail "the production stack did not drain"
run_figures || fail "a site lost records on the production path"
read -r prod_expected records rows < <(dest_digest)
exported=$(status_json | python3 -c 'import sys,json; print(sum(x["counts"]["exported"]-x["counts"]["dead_lettered"] for x in json.load(sys.stdin)["sites"]))')
[ "$records" -gt 0 ] && [ "$records" -eq "$exported" ] && ok "destination holds $records records ($rows rows), digest $prod_expected; sites exported $exported" \
  || fail "destination holds $records records, sites exported $exported"

step "production path: TLS verified, JSON logs, hashed passwords, limits, metrics"
out=$("${DC[@]}" run --rm -T -e RELAY_NATS_CA_FILE= ctl status 2>&1) && fail "a client without the CA connected: $out"
echo "$out" | grep -q "certificate signed by unknown authority" && ok "a client without the CA is refused: $(echo "$out" | grep -o 'x509: [^(]*' | head -1)" || fail "no certificate error: $out"
"${DC[@]}" logs --no-color nats provision ticker exporter transformer importer checker 2>/dev/null | python3 -c '
import sys, json, collections
bad, n, per = [], 0, collections.Counter()
for line in sys.stdin:
    if " | " not in line: continue
    name, _, body = line.partition(" | "); body = body.strip()
    if not body: continue
    n += 1
    try: json.loads(body)
    except ValueError: bad.append(line.strip()); continue
    if body.count("\"service\":") > 1: bad.append("service twice: " + line.strip())
    if "Plaintext passwords" in body: bad.append("plaintext warning: " + line.strip())
    per[name.strip().rsplit("_", 1)[0]] += 1
print("  ok   %d log lines, all JSON, \"service\" at most once, no plaintext-password warning (%s)" % (n, ", ".join("%s %d" % kv for kv in sorted(per.items()))))
if bad: print("\n".join(bad[:5])); sys.exit(1)' || fail "log lines that are not JSON (above)"
for s in nats exporter importer checker ticker; do
  lim=$("${DC[@]}" logs --no-color "$s" 2>/dev/null | grep -o '"msg":"soft memory limit[^}]*"container_bytes":[0-9]*' | tail -1 | grep -o '"bytes":[0-9]*,"container_bytes":[0-9]*')
  [ -n "$lim" ] || fail "$s logged no soft memory limit"
  printf '  ok   %-9s soft memory limit %s\n' "$s" "$lim"
done
clean_bytes=$(metric nats 'relay_stream_bytes{account="RELAY",stream="RECORDS_CLEAN"}')
clean_max=$(metric nats 'relay_stream_max_bytes{account="RELAY",stream="RECORDS_CLEAN"}')
capped=$(metrics nats | grep -c '^relay_stream_max_bytes{account="RELAY"')
[ -n "$clean_bytes" ] && [ "$capped" -ge 12 ] && ok "relay_stream_bytes RECORDS_CLEAN $clean_bytes of relay_stream_max_bytes $clean_max; $capped streams and buckets have a byte cap" \
  || fail "stream metrics: bytes '$clean_bytes', max '$clean_max', capped $capped"
up=$(metric importer relay_destination_up); notup=$(metric exporter relay_destination_up)
[ "$up" = 1 ] && [ -z "$notup" ] && ok "relay_destination_up: importer $up, exporter (no importer) absent" || fail "relay_destination_up: importer '$up', exporter '$notup'"

step "backup, a refused restore, NATS stopped, wipe nats-data, restore"
history() { status_json | python3 -c '
import sys, json
for x in json.load(sys.stdin)["sites"]:
    r = x.get("last_event") or {}
    print(x["site"], r.get("run_id"), r.get("phase"), json.dumps(x["counts"], sort_keys=True))'; }
hist_before=$(history)
raw_before=$(metric nats 'relay_stream_messages{account="RELAY",stream="RECORDS_RAW"}')
out=$(ctl backup --out /backups/e2e.backup) || fail "backup: $out"
echo "$out" | sed 's/^/       /'
ok "backup: $(echo "$out" | tail -1)"
out=$(ctl restore --replace /backups/e2e.backup 2>&1) && fail "a restore into the running stack went ahead: $out"
echo "$out" | grep -q "the pipeline is running" && ok "restore into the running stack refused: $(echo "$out" | grep -o 'the pipeline is running: [^;]*;' | cut -c1-150)..." || fail "restore into the running stack: $out"
"${DC[@]}" stop ticker exporter transformer importer checker 2>&1 | grep -v 'undefined secret' | tail -n 1
"${DC[@]}" stop nats 2>&1 | grep -v 'undefined secret' | tail -n 1
t0=$(date +%s)
ctl status >/dev/null 2>&1 && fail "ctl status answered with NATS stopped"
state=$(docker inspect -f '{{.State.Status}}' "$("${DC[@]}" ps -q nats)")
[ "$state" = exited ] && ok "ctl status with NATS stopped failed in $(( $(date +%s) - t0 ))s and left NATS $state" || fail "ctl status started NATS ($state)"
"${DC[@]}" rm -f nats >/dev/null 2>&1
docker volume rm "${COMPOSE_PROJECT_NAME}_nats-data" >/dev/null && ok "nats-data volume removed"
"${DC[@]}" up -d --no-deps nats 2>&1 | grep -v 'undefined secret' | tail -n 1
wait_healthy nats
out=$(ctl restore /backups/e2e.backup) || fail "restore: $out"
ok "restore: $(echo "$out" | grep '^restored')"
"${DC[@]}" up -d 2>&1 | grep -v 'undefined secret' | tail -n 1
hist_after=$(history)
[ "$hist_after" = "$hist_before" ] && ok "relay status shows the same history after the restore: $(echo "$hist_after" | awk '{print $1, $3}' | paste -sd, -)" \
  || fail "history differs after the restore:\n$hist_before\n---\n$hist_after"
ctl sync --all
drained 300 || fail "the restored stack did not drain"
status_json | python3 -c '
import sys, json
bad = 0
for x in json.load(sys.stdin)["sites"]:
    r = x["last_event"]
    print("  ok   site %-10s incremental run %s: %s, exported %d, deleted %d" % (x["site"], r["run_id"], r["phase"], r["exported"], r["deleted"]))
    bad += r["full"] or r["exported"] != 0 or r["deleted"] != 0
sys.exit(1 if bad else 0)' || fail "an incremental run after the restore published records"
raw_after=$(metric nats 'relay_stream_messages{account="RELAY",stream="RECORDS_RAW"}')
[ "$raw_after" = "$raw_before" ] && ok "RECORDS_RAW still holds $raw_after messages: the incremental runs published nothing" || fail "RECORDS_RAW $raw_before -> $raw_after"
read -r got records rows < <(dest_digest)
[ "$got" = "$prod_expected" ] && ok "destination equal after the restore: digest $got" || fail "destination differs after the restore"

step "upgrade: new image tag, provision migrates the settings, rolling restart"
docker tag relay:latest relay:e2e-next
python3 - "$RELAY_CONFIG_DIR/network.yaml" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
s = s.replace("clean_max_age: 720h", "clean_max_age: 1440h").replace("  dedupe_window: 2h\n", "  dedupe_window: 2h\n  import_ack_wait: 90s\n")
open(p, 'w').write(s)
PY
# A consumer's cursor: what it has left (its last delivery times live in
# the server's memory and start over on a restart).
lag_cursors() { python3 -c 'import sys,json; print(json.dumps([{k: l[k] for k in ("stage", "consumer", "pending", "ack_pending", "lag")} for l in json.load(sys.stdin)["lag"]], sort_keys=True))'; }
msgs_before=$(stream_msgs); lag_before=$(status_json | lag_cursors)
# The broker first (the services reconnect), then provision with the new
# image and settings, then the services, downstream first.
RELAY_VERSION=e2e-next "${DC[@]}" up -d --no-deps nats 2>&1 | grep -v 'undefined secret' | tail -n 1
wait_healthy nats
out=$(RELAY_VERSION=e2e-next "${DC[@]}" run --rm -T provision 2>&1 | grep '"msg":"provision')
echo "$out" | python3 -c '
import sys, json
ch = [json.loads(l) for l in sys.stdin if "\"setting\"" in l]
for c in ch: print("  ok   provision changed %s %s: %s %s -> %s" % (c["kind"], c["name"], c["setting"], c["from"], c["to"]))
# the files bucket keeps files as long as the clean records that refer to them
want = {("RECORDS_CLEAN", "max_age"), ("OBJ_relay_files", "max_age"), ("RECORDS_CLEAN/importer", "ack_wait")}
sys.exit(0 if {(c["name"], c["setting"]) for c in ch} == want else 1)' || fail "provision's changes: $out"
for s in importer checker transformer exporter ticker; do   # downstream first
  RELAY_VERSION=e2e-next "${DC[@]}" up -d --no-deps "$s" 2>&1 | grep -v 'undefined secret' | tail -n 1
done
images=$(for c in $("${DC[@]}" ps -q nats ticker exporter transformer importer checker); do docker inspect -f '{{.Config.Image}}' "$c"; done | sort | uniq -c | xargs)
[ "$images" = "8 relay:e2e-next" ] && ok "rolling restart: $images" || fail "after the rolling restart: $images"
wait_healthy importer
[ "$(stream_msgs)" = "$msgs_before" ] && ok "every stream holds the same messages after the upgrade ($(echo "$msgs_before" | wc -l) streams)" || fail "messages changed by the upgrade"
lag_after=$(status_json | lag_cursors)
[ "$lag_after" = "$lag_before" ] && ok "every consumer's cursor kept (lag unchanged)" || fail "consumer lag changed: $lag_before -> $lag_after"
again=$(RELAY_VERSION=e2e-next "${DC[@]}" run --rm -T provision 2>&1 | grep -o '"changes":[0-9]*')
[ "$again" = '"changes":0' ] && ok "provision again: nothing to change" || fail "a second provision: $again"
ctl sync --all
drained 300 || fail "the upgraded stack did not drain"
read -r got records rows < <(dest_digest)
[ "$got" = "$prod_expected" ] && ok "destination equal after the upgrade and a sync: digest $got" || fail "destination differs after the upgrade"

step "no destination token: the importer stops and says why"
mv "$RELAY_SECRETS_DIR/destination/destination.token" "$work/destination.token"
RELAY_VERSION=e2e-next "${DC[@]}" up -d --no-deps --force-recreate importer 2>&1 | grep -v 'undefined secret' | tail -n 1
deadline=$(( $(date +%s) + 60 ))
while :; do
  st=$(docker inspect -f '{{.State.Status}} {{.RestartCount}}' "$("${DC[@]}" ps -q importer)")
  [ "${st%% *}" = exited ] && [ "${st##* }" -ge 5 ] && break
  [ "$(date +%s)" -lt "$deadline" ] || fail "the importer still restarts: $st"
  sleep 2
done
why=$("${DC[@]}" logs --no-color importer 2>/dev/null | grep '"level":"ERROR"' | tail -1 | grep -o 'destination.token: [^"]*')
[ -n "$why" ] && ok "importer $st (exited after 5 restarts, not spinning): $why" || fail "the importer did not say why"
mv "$work/destination.token" "$RELAY_SECRETS_DIR/destination/destination.token"

step "production path: status, then down -v"
ctl status
"${DC[@]}" --profile tools down -v --remove-orphans 2>&1 | grep -v 'undefined secret' | tail -n 1
docker rmi relay:e2e-next >/dev/null 2>&1 || true
left=$(( $(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | wc -l) + $(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | wc -l) ))
[ "$left" -eq 0 ] && ok "production stack: nothing left" || fail "production stack left $left containers/volumes"
