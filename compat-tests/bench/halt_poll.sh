#!/usr/bin/env bash
# What a VM's idle polling does to the consume rate (a benchmark of the machine, not of a
# change):
#
#   STRATA_BIN=target/release/strata compat-tests/bench/halt_poll.sh [ROUNDS] [NS]
#
# A consume run is a chain of round trips: the client sends a Fetch, the broker's thread
# wakes and answers, the client's thread wakes and decodes. On a VM whose cpuidle haltpoll
# governor does not poll (/sys/module/haltpoll/parameters/guest_halt_poll_ns at 0), every
# wake of an idle vCPU goes through the host. This script writes a 3 GB topic of 1 KiB
# messages once (acks=-1, one partition), then for ROUNDS rounds (default 6) starts the
# broker twice, once with the machine's guest_halt_poll_ns and once with NS (default
# 200000, Linux's default), alternating which comes first, and reads the topic from the
# beginning twice per start with `rdkafka_performance -C` (the client's defaults). Needs
# root; the setting is restored on exit. Prints per read MB/s, the broker's CPU seconds and
# the machine's steal time, then per setting the range and median of MB/s.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${1:-6}
NS=${2:-200000}
BIN=${STRATA_BIN:-$ROOT/target/release/strata}
KNOB=/sys/module/haltpoll/parameters/guest_halt_poll_ns
[[ -w $KNOB ]] || { echo "halt_poll.sh: $KNOB is not there or not writable (haltpoll governor, root)" >&2; exit 2; }
PERF=$HERE/.cache/bin/rdkafka_performance
[[ -x $PERF ]] || "$HERE/bench.sh" --build-only
PY=$(command -v python3)
HELPER=("$PY" "$HERE/bench_helper.py")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-halt-poll-XXXXXX")
PORT=$("${HELPER[@]}" freeport)
MACHINE=$(cat "$KNOB")
COUNT=2929687
BROKER_PID=""
cleanup() {
    echo "$MACHINE" > "$KNOB"
    if [[ -n $BROKER_PID ]]; then "${HELPER[@]}" stop "$BROKER_PID"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

start() {
    local out
    out=$("${HELPER[@]}" start "$WORK/broker.log" 30 -- "$BIN" --data-dir "$WORK/data" \
        --listen "127.0.0.1:$PORT" --advertised-listener "127.0.0.1:$PORT" --http-listen none) \
        || { echo "halt_poll.sh: the broker did not start; see $WORK/broker.log" >&2; exit 1; }
    BROKER_PID=${out%% *}
}

stop() {
    "${HELPER[@]}" stop "$BROKER_PID"
    BROKER_PID=""
}

read_once() { # -> "MB/s broker-CPU-s steal-s"
    local c0 s0 mbs
    c0=$("${HELPER[@]}" cpu "$BROKER_PID")
    s0=$("${HELPER[@]}" steal)
    "$PERF" -C -t read -b "127.0.0.1:$PORT" -p 0 -o beginning -c "$COUNT" -e > "$WORK/perf.log" 2>&1
    mbs=$(grep -o '[0-9.]* MB/s' "$WORK/perf.log" | tail -1 | cut -d' ' -f1)
    [[ -n $mbs ]] || { echo "halt_poll.sh: the read did not complete: $(tail -3 "$WORK/perf.log")" >&2; exit 1; }
    awk -v m="$mbs" -v c0="$c0" -v c1="$("${HELPER[@]}" cpu "$BROKER_PID")" \
        -v s0="$s0" -v s1="$("${HELPER[@]}" steal)" \
        'BEGIN {printf "%.0f %.2f %.2f", m, c1 - c0, s1 - s0}'
}

echo "machine: $(nproc) cores, guest_halt_poll_ns $MACHINE; compared with $NS; broker $BIN"
start
"$PERF" -P -t read -b "127.0.0.1:$PORT" -p 0 -s 1024 -c "$COUNT" -X acks=-1 > "$WORK/perf.log" 2>&1
stop
sync
declare -A RATES
for round in $(seq 1 "$ROUNDS"); do
    order=("$MACHINE" "$NS")
    (( round % 2 == 0 )) && order=("$NS" "$MACHINE")
    for ns in "${order[@]}"; do
        echo "$ns" > "$KNOB"
        start
        line="round $round guest_halt_poll_ns=$ns:"
        for _ in 1 2; do
            read -r mbs cpu steal <<<"$(read_once)"
            line+="  $mbs MB/s (broker $cpu CPU s, steal $steal s)"
            RATES[$ns]+="$mbs "
        done
        stop
        echo "$line"
    done
done
echo "$MACHINE" > "$KNOB"
echo
for ns in "$MACHINE" "$NS"; do
    # shellcheck disable=SC2086
    echo "guest_halt_poll_ns=$ns, MB/s: $("${HELPER[@]}" range ${RATES[$ns]})"
done
