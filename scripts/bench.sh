#!/usr/bin/env bash
# Benchmarks REDCap Relay (issue 7): relay all against the original tool's
# approach (one export and one import call per site, in turn, no broker) and
# against the machine's ceilings (raw JetStream, the simulator's own speed),
# with zero-latency simulators and with a REDCap-like latency model.
#
#   scripts/bench.sh              # full: 3x20k (both regimes) and 3x100k (zero latency), ~10-15 min
#   scripts/bench.sh --quick      # 3x2k, both regimes, well under a minute
#   scripts/bench.sh --go-bench   # also run go test -bench (BenchmarkTransformRecord, BenchmarkPipelineHop,
#                                 # BenchmarkFilesThroughThePipeline: target >= 50 MB/s)
#   scripts/bench.sh --records 50000 --latency=false --parallel 32 --keep   # one custom scale
#
# Prints a Markdown table (also written to bench-results.md) and writes
# bench-results.json in the repository root (both gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/relay" ./services/cmd/relay

gobench=0
args=()
for a in "$@"; do
  case "$a" in
    --go-bench) gobench=1 ;;
    *) args+=("$a") ;;
  esac
done
"$bin/relay" bench --json bench-results.json "${args[@]+"${args[@]}"}" | tee bench-results.md
if [ "$gobench" = 1 ]; then
  go test -run '^$' -bench 'BenchmarkTransformRecord|BenchmarkPipelineHop' -benchmem ./services/internal/tools/bench/
  go test -run '^$' -bench 'BenchmarkFilesThroughThePipeline' -benchtime 3x ./services/e2e/ | grep -E '^(Benchmark|ok|FAIL)'
fi
