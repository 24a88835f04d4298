#!/usr/bin/env bash
# Log compaction: cleaning throughput (MB/s) and produce latency p50/p99 while the cleaner
# runs versus idle (a benchmark, not a test; see compaction_bench.py for the steps).
#
#   compat-tests/bench/compaction_bench.sh [--mib 512] [--keys 20000] [--io-limit BYTES_PER_S]
#
# Uses target/release/strata (or $STRATA_BIN) and the test venv's confluent-kafka.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STRATA_BIN=${STRATA_BIN:-$ROOT/target/release/strata}
PY=$ROOT/compat-tests/.venv/bin/python
[[ -x $STRATA_BIN ]] || (cd "$ROOT" && cargo build --release)
exec "$PY" "$HERE/compaction_bench.py" --binary "$STRATA_BIN" "$@"
