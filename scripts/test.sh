#!/usr/bin/env bash
# The test suite: every package, with the race detector off (2-core CI), and a
# timeout well inside CI's budget. Tests need only Go: NATS runs embedded, the
# REDCap simulator runs on loopback; the browser test skips without chromium
# and the compose test runs only with RELAY_COMPOSE_E2E=1 and a Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go test -count=1 -timeout 25m "$@" ./...
