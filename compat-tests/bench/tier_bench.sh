#!/usr/bin/env bash
# Reading history from the archive versus from local disk (a benchmark, not a test).
#
#   compat-tests/bench/tier_bench.sh [--store local|s3] [--mib 1024]
#
# Starts target/release/strata twice on free ports: once with archiving off, once with
# closed segments archived (store `local`: a directory; `s3`: moto_server from the test
# venv) and local retention short enough that only the active segment stays on disk.
# Each broker gets the same data (1 KiB messages, MIB MiB in all, one partition) from
# rdkafka_performance; then a consumer reads it all from offset 0 and the MB/s is reported.
# The archive read is cold: the broker's chunk cache starts empty.
# Needs rdkafka_performance built by bench.sh (`bench.sh --build-only`).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
STORE=local
MIB=1024
while [[ $# -gt 0 ]]; do
    case $1 in
        --store) STORE=$2; shift 2 ;;
        --mib) MIB=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
PERF=${BENCH_CACHE_DIR:-$HERE/.cache}/bin/rdkafka_performance
STRATA_BIN=${STRATA_BIN:-$ROOT/target/release/strata}
PY=$ROOT/compat-tests/.venv/bin/python
[[ -x $PERF ]] || bash "$HERE/bench.sh" --build-only
[[ -x $STRATA_BIN ]] || (cd "$ROOT" && cargo build --release)
COUNT=$((MIB * 1024))
WORK=$(mktemp -d /tmp/strata-tier-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
freeport() { python3 "$HERE/bench_helper.py" freeport; }
wait_port() { for _ in $(seq 1 100); do python3 "$HERE/bench_helper.py" probe "$1" 1 >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

start_broker() { # name port config-file
    local dir=$WORK/$1
    mkdir -p "$dir"
    RUST_LOG=warn "$STRATA_BIN" --listen "127.0.0.1:$2" --advertised-listener "127.0.0.1:$2" \
        --data-dir "$dir/data" --config "$3" >"$dir/broker.log" 2>&1 &
    PIDS+=($!)
    wait_port "127.0.0.1:$2"
}

produce() { # bootstrap
    "$PERF" -P -t hist -b "$1" -p 0 -s 1024 -c "$COUNT" -X acks=1 -X linger.ms=5 -u >"$WORK/produce-$2.log" 2>&1
}

consume() { # bootstrap label -> MB/s
    local start end
    start=$(date +%s.%N)
    "$PERF" -C -t hist -b "$1" -p 0 -o beginning -c "$COUNT" -u >"$WORK/consume-$2.log" 2>&1
    end=$(date +%s.%N)
    python3 -c "print(f'{$COUNT*1024/1e6/($end-$start):.1f}')"
}

# --- local disk only
cat >"$WORK/local.yaml" <<YAML
tier: {store: none}
YAML
P1=$(freeport)
start_broker local "$P1" "$WORK/local.yaml"
produce "127.0.0.1:$P1" local
sync
LOCAL_MBS=$(consume "127.0.0.1:$P1" local)

# --- archive
if [[ $STORE == s3 ]]; then
    MP=$(freeport)
    "$ROOT/compat-tests/.venv/bin/moto_server" -H 127.0.0.1 -p "$MP" >"$WORK/moto.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$MP" >/dev/null && break; sleep 0.1; done
    "$PY" - "$MP" <<'PYEOF'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
s3.create_bucket(Bucket="bench")
PYEOF
    TIER="{store: s3, bucket: bench, endpoint: \"http://127.0.0.1:$MP\", allow_http: true, path_style: true, access_key_id: test, secret_access_key: test, region: us-east-1}"
else
    TIER="{store: local, local_dir: \"$WORK/archive\"}"
fi
cat >"$WORK/tier.yaml" <<YAML
tier: $TIER
kafka:
  log.segment.bytes: 67108864
  log.local.retention.ms: 0
  log.retention.check.interval.ms: 200
YAML
P2=$(freeport)
start_broker tier "$P2" "$WORK/tier.yaml"
produce "127.0.0.1:$P2" tier
# Wait until only the active segment is left locally.
for _ in $(seq 1 600); do
    n=$(find "$WORK/tier/data/hist-0" -name '*.log' | wc -l)
    [[ $n -le 1 ]] && break
    sleep 0.5
done
LOCAL_LEFT=$(du -sm "$WORK/tier/data/hist-0" | cut -f1)
sync
TIER_MBS=$(consume "127.0.0.1:$P2" tier)

printf '\nReading %s MiB of history (1 KiB messages, one partition), %s, nproc=%s\n' "$MIB" "$(uname -m)" "$(nproc)"
printf '%-44s %10s\n' "source" "MB/s"
printf '%-44s %10s\n' "local disk (archiving off)" "$LOCAL_MBS"
printf '%-44s %10s\n' "archive: $STORE store, cold cache ($LOCAL_LEFT MiB left locally)" "$TIER_MBS"
