#!/usr/bin/env bash
# Why bench.sh's "produce 1 KiB acks=-1" row can read far below sustained_produce.py on a
# VM (a benchmark of the machine, not of a change):
#
#   STRATA_BIN=target/release/strata compat-tests/bench/fresh_pages.sh [ROUNDS]
#
# Each round starts a fresh broker (its defaults, a data dir under TMPDIR) four times and
# produces 3 GB of 1 KiB messages (acks=-1, one partition) with rdkafka_performance:
#   fresh      nothing before;
#   after      2 GB produced to another topic first, then `sync`: its pages stay in the
#              page cache, so the 3 GB go into memory the kernel has not used lately;
#   touched    as "after", and 4 GB of anonymous memory written and freed just before;
#   dropped    as "after", with the page cache dropped (drop_caches, needs root) instead.
# On a VM whose balloon reports free pages to the host (virtio-balloon free page
# reporting), a guest page not used lately must be backed by the host again on its first
# write: "after" pays for that, "touched" and "dropped" hand the writes recycled pages.
# Prints per run MB/s, the broker's CPU seconds and the pages the kernel's reclaim scanned
# or stole meanwhile (/proc/vmstat), then per mode the range and median of MB/s. rdkafka_performance is built by bench.sh --build-only.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${1:-2}
BIN=${STRATA_BIN:-$ROOT/target/release/strata}
PERF=$HERE/.cache/bin/rdkafka_performance
[[ -x $PERF ]] || "$HERE/bench.sh" --build-only
PY=$(command -v python3)
HELPER=("$PY" "$HERE/bench_helper.py")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-fresh-pages-XXXXXX")
PORT=$("${HELPER[@]}" freeport)
BROKER_PID=""
cleanup() {
    if [[ -n $BROKER_PID ]]; then "${HELPER[@]}" stop "$BROKER_PID"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

reclaimed() { # pages scanned or stolen by reclaim so far
    awk '$1 ~ /^pg(scan|steal)_/ {s += $2} END {print s + 0}' /proc/vmstat
}

produce() { # TOPIC COUNT -> MB/s
    "$PERF" -P -t "$1" -b "127.0.0.1:$PORT" -p 0 -s 1024 -c "$2" -X acks=-1 -X linger.ms=5 \
        > "$WORK/perf.log" 2>&1
    grep -o '[0-9.]* MB/s' "$WORK/perf.log" | tail -1 | cut -d' ' -f1
}

one_run() { # MODE -> "MB/s broker-CPU-s reclaimed-pages" of the 3 GB run
    local mode=$1
    rm -rf "$WORK/data"
    sync
    local out
    out=$("${HELPER[@]}" start "$WORK/broker.log" 30 -- "$BIN" --data-dir "$WORK/data" \
        --listen "127.0.0.1:$PORT" --advertised-listener "127.0.0.1:$PORT" --http-listen none) \
        || { echo "fresh_pages.sh: the broker did not start; see $WORK/broker.log" >&2; exit 1; }
    BROKER_PID=${out%% *}
    if [[ $mode != fresh ]]; then
        produce before 2000000 > /dev/null
        sync
    fi
    case $mode in
        touched) "$PY" -c "
import mmap
n = 4 << 30
m = mmap.mmap(-1, n)
for i in range(0, n, 4096):
    m[i] = 1
m.close()" ;;
        dropped) echo 3 > /proc/sys/vm/drop_caches ;;
    esac
    local r0 c0 mbs
    r0=$(reclaimed)
    c0=$("${HELPER[@]}" cpu "$BROKER_PID")
    mbs=$(produce measured 2929687)
    echo "$mbs $(awk -v a="$c0" -v b="$("${HELPER[@]}" cpu "$BROKER_PID")" 'BEGIN {printf "%.2f", b - a}') $(( $(reclaimed) - r0 ))"
    "${HELPER[@]}" stop "$BROKER_PID"
    BROKER_PID=""
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); binary $BIN"
declare -A ALL
for r in $(seq 1 "$ROUNDS"); do
    line="round $r:"
    for mode in fresh after touched dropped; do
        read -r mbs cpu pages <<<"$(one_run "$mode")"
        ALL[$mode]="${ALL[$mode]:-} $mbs"
        line="$line  $mode $mbs MB/s (broker $cpu CPU s, $pages pages reclaimed)"
    done
    echo "$line"
done
for mode in fresh after touched dropped; do
    # shellcheck disable=SC2086
    echo "$mode MB/s: $("${HELPER[@]}" range ${ALL[$mode]})"
done
