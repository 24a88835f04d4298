#!/usr/bin/env bash
# Strata benchmark (not a test): throughput and latency measured with
# librdkafka's own rdkafka_performance example, built from the librdkafka
# source bundled in the Rust crate rdkafka-sys (4.x, librdkafka 2.12).
#
# Usage:
#   compat-tests/bench/bench.sh [--delete-topics] [BOOTSTRAP]  # existing broker
#   compat-tests/bench/bench.sh --start [--flush-always]       # spawn target/release/strata
#   compat-tests/bench/bench.sh --start --latency-only --longpoll
#                                   # latency with and without 500 idle long-polls
#   compat-tests/bench/bench.sh --start --tls                  # the same runs over an SSL listener
#   compat-tests/bench/bench.sh --build-only                   # just build/cache the client
#
# Options:
#   --start          start target/release/strata (or $STRATA_BIN) on a free
#                    port with a temporary data dir, stop it afterwards
#   --flush-always   (with --start) also start a second broker with
#                    `--flush always` and measure produce latency there
#   --delete-topics  delete each run's topics (DeleteTopics) once the run is
#                    measured, then `sync`, so that earlier runs' data does not
#                    sit in the page cache and slow the later runs down. On by
#                    default with --start; against an existing broker the
#                    topics are kept unless this flag is given
#   --longpoll       after the plain latency run, measure it again while
#                    LONGPOLL_CONNS (500) connections long-poll as many other,
#                    empty topics (Fetch v4, max_wait_ms LONGPOLL_WAIT_MS=500,
#                    min_bytes 1; see longpoll_fetchers.py). The topics are
#                    created before and deleted after that run
#   --tls            (with --start) give the broker an SSL listener too, with a
#                    certificate made by openssl for the run, and run every
#                    produce/consume/latency run over TLS (security.protocol=ssl,
#                    the client verifying the certificate); the client is then
#                    a second rdkafka_performance built with OpenSSL. Topic
#                    deletion and probes use the PLAINTEXT listener
#   --latency-only   skip the throughput and consume runs: only the latency
#                    runs (and, with --flush-always, the flush=always latency run)
#   --quick          small message counts (smoke run, figures are noisy)
#   --build-only     build rdkafka_performance and exit
#   BOOTSTRAP        broker address (default: $BOOTSTRAP or 127.0.0.1:9092)
#
# Tunables (environment): N_SMALL / N_LARGE (100 B / 1 KiB msgs per produce
# run; by default each produce run is preceded by a 2 s calibration run and
# sized to take TARGET_SECS=7 s, at most MAX_RUN_MB=3000 MB), RUN_CAP
# (seconds, a run is stopped with SIGINT after this and reports what it did,
# 20), LAT_COUNT
# (latency msgs, 5000), LAT_RATE (msgs/s, 1000), CONSUME_RUNS (reads of the
# 1 KiB topic from the beginning, each its own row with the broker's CPU
# seconds, 1), LINGER_MS (producer
# linger.ms for throughput runs, 5 = librdkafka's default; rdkafka_performance
# itself would set 1000), SETTLE (1 = `sync` before each measured run, 0 =
# don't), LONGPOLL_CONNS (500) and LONGPOLL_WAIT_MS (500) for --longpoll,
# STRATA_BIN, BENCH_CACHE_DIR, KEEP_DATA=1 (keep the broker data dir).
# With --start the broker's data goes to a temporary dir under ${TMPDIR:-/tmp},
# removed after; as the topics are deleted after each run, it holds at most
# one run's data at a time (up to MAX_RUN_MB plus a 2 s calibration run).
#
# The first run installs missing Debian -dev packages (apt-get), fetches
# rdkafka-sys with cargo and builds the client (~1-2 min on 2 cores); later
# runs reuse compat-tests/bench/.cache/bin/rdkafka_performance.
# Results: printed at the end and written to compat-tests/bench/last-results.txt;
# all logs of the last run are in compat-tests/bench/.cache/last-run/.
# To rebuild the client: rm -rf compat-tests/bench/.cache

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${BENCH_CACHE_DIR:-$HERE/.cache}
HELPER=(python3 "$HERE/bench_helper.py")
FETCHERS=(python3 "$HERE/longpoll_fetchers.py")
RESULTS_FILE=$HERE/last-results.txt
PERF=$CACHE/bin/rdkafka_performance

START=0
FLUSH_ALWAYS=0
BUILD_ONLY=0
QUICK=0
DELETE_TOPICS=0
LONGPOLL=0
LATENCY_ONLY=0
TLS=0
BOOTSTRAP=${BOOTSTRAP:-127.0.0.1:9092}
STRATA_BIN=${STRATA_BIN:-$ROOT/target/release/strata}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --start) START=1 ;;
        --flush-always) FLUSH_ALWAYS=1 ;;
        --build-only) BUILD_ONLY=1 ;;
        --quick) QUICK=1 ;;
        --delete-topics) DELETE_TOPICS=1 ;;
        --longpoll) LONGPOLL=1 ;;
        --latency-only) LATENCY_ONLY=1 ;;
        --tls) TLS=1 ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) BOOTSTRAP=$1 ;;
    esac
    shift
done

if [[ $QUICK == 1 ]]; then
    N_SMALL=${N_SMALL:-200000}
    N_LARGE=${N_LARGE:-60000}
    RUN_CAP=${RUN_CAP:-6}
    LAT_COUNT=${LAT_COUNT:-1000}
fi
# N_SMALL / N_LARGE empty: calibrate (a 2 s run at full speed first, then a
# count that takes about TARGET_SECS at that rate, at most MAX_RUN_MB of data)
N_SMALL=${N_SMALL:-}
N_LARGE=${N_LARGE:-}
TARGET_SECS=${TARGET_SECS:-7}
MAX_RUN_MB=${MAX_RUN_MB:-3000}
RUN_CAP=${RUN_CAP:-20}
LAT_COUNT=${LAT_COUNT:-5000}
LAT_RATE=${LAT_RATE:-1000}
LINGER_MS=${LINGER_MS:-5}
CONSUME_RUNS=${CONSUME_RUNS:-1}
LONGPOLL_CONNS=${LONGPOLL_CONNS:-500}
LONGPOLL_WAIT_MS=${LONGPOLL_WAIT_MS:-500}

# a broker this script started holds nothing but the benchmark's own topics
[[ $START == 1 ]] && DELETE_TOPICS=1

if [[ $TLS == 1 && $START == 0 ]]; then
    echo "--tls needs --start" >&2
    exit 2
fi
# the TLS client is a separate build of rdkafka_performance, with OpenSSL
PERF_VARIANT=""
if [[ $TLS == 1 ]]; then
    PERF_VARIANT=-ssl
    PERF=$CACHE/bin/rdkafka_performance-ssl
fi
# -X settings every rdkafka_performance run gets (the TLS ones with --tls)
PERF_X=()
# where DeleteTopics, probes and the long-poll helpers connect: always plaintext
ADMIN_BOOTSTRAP=$BOOTSTRAP

if [[ $FLUSH_ALWAYS == 1 && $START == 0 ]]; then
    echo "--flush-always needs --start" >&2
    exit 2
fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------
# 1. Build rdkafka_performance (cached)
# ---------------------------------------------------------------------------

ensure_debian_packages() {
    local missing=() p
    local wanted=(gcc make libc6-dev zlib1g-dev pkg-config)
    [[ $TLS == 1 ]] && wanted+=(libssl-dev openssl)
    for p in "${wanted[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$p")
        fi
    done
    command -v python3 >/dev/null || missing+=(python3)
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing missing Debian packages: ${missing[*]}"
        [[ $(id -u) == 0 ]] || die "need root to apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

build_perf_tool() {
    if [[ -x $PERF && -f $CACHE/bin/VERSION$PERF_VARIANT ]]; then
        return 0
    fi
    ensure_debian_packages
    command -v cargo >/dev/null || die "cargo not found"

    # A throwaway cargo project whose only job is to make cargo download the
    # rdkafka-sys crate source (which bundles librdkafka).
    local fetch=$CACHE/crate-fetch
    mkdir -p "$fetch/src"
    cat > "$fetch/Cargo.toml" <<'EOF'
[package]
name = "strata-bench-rdkafka-src"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka-sys = { version = "4", default-features = false }

[workspace]
EOF
    echo 'fn main() {}' > "$fetch/src/main.rs"
    log "fetching rdkafka-sys 4.x source with cargo"
    (cd "$fetch" && cargo fetch --quiet) || die "cargo fetch failed"
    local meta manifest version
    meta=$(cd "$fetch" && cargo metadata --format-version 1 --offline 2>/dev/null) \
        || meta=$(cd "$fetch" && cargo metadata --format-version 1)
    read -r version manifest < <(printf '%s' "$meta" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for p in d["packages"]:
    if p["name"] == "rdkafka-sys":
        print(p["version"], p["manifest_path"])
        break
')
    [[ -n ${manifest:-} ]] || die "rdkafka-sys not found in cargo metadata"
    [[ $version == 4.* ]] || die "expected rdkafka-sys 4.x, got $version"
    local src
    src=$(dirname "$manifest")/librdkafka
    [[ -f $src/configure && -f $src/examples/rdkafka_performance.c ]] \
        || die "no librdkafka source in $src"
    log "building librdkafka from rdkafka-sys $version ($src)"

    local build=$CACHE/build/librdkafka
    local ssl_flag=--disable-ssl
    [[ $TLS == 1 ]] && ssl_flag=--enable-ssl
    rm -rf "$CACHE/build"
    mkdir -p "$CACHE/build"
    cp -a "$src" "$build"
    chmod -R u+w "$build"
    (
        cd "$build"
        ./configure --no-download "$ssl_flag" --disable-gssapi --disable-curl \
            --disable-zstd --disable-lz4-ext --enable-zlib > "$CACHE/build/configure.log" 2>&1 \
            || { tail -30 "$CACHE/build/configure.log" >&2; exit 1; }
        make -j"$(nproc)" -C src librdkafka.a > "$CACHE/build/make.log" 2>&1 \
            || { tail -30 "$CACHE/build/make.log" >&2; exit 1; }
        make -C examples rdkafka_performance >> "$CACHE/build/make.log" 2>&1 \
            || { tail -30 "$CACHE/build/make.log" >&2; exit 1; }
    ) || die "librdkafka build failed (logs in $CACHE/build/)"
    mkdir -p "$CACHE/bin"
    install -m 0755 "$build/examples/rdkafka_performance" "$PERF.tmp"
    mv "$PERF.tmp" "$PERF"
    local libver
    libver=$(grep -o 'RD_KAFKA_VERSION *0x[0-9a-fA-F]*' "$build/src/rdkafka.h" | head -1 || true)
    local with_ssl=""
    [[ $TLS == 1 ]] && with_ssl=", with OpenSSL"
    printf 'rdkafka-sys %s, %s%s\n' "$version" "$libver" "$with_ssl" > "$CACHE/bin/VERSION$PERF_VARIANT"
    rm -rf "$CACHE/build/librdkafka"   # keep only the logs
    log "built $PERF"
}

build_perf_tool
if [[ $BUILD_ONLY == 1 ]]; then
    "$PERF" -h 2>&1 | grep -m1 'librdkafka version' || true
    exit 0
fi

# ---------------------------------------------------------------------------
# 2. Broker handling
# ---------------------------------------------------------------------------

RUN_ID=$(date +%s)-$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench.XXXXXX")
LOGS=$WORK/logs
mkdir -p "$LOGS"
BROKER_PID=""
OWN_BROKER=0   # 1 while BROKER_PID is a broker this script started
BROKER_DATA=""
POLLER_PID=""      # longpoll_fetchers.py poll, while it runs
IDLE_PREFIX=""     # prefix of the idle long-poll topics, while they exist
NOTES=()

note() { NOTES+=("$*"); log "NOTE: $*"; }

stop_broker() {
    [[ -n $BROKER_PID && $OWN_BROKER == 1 ]] || return 0
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$BROKER_PID" 2>/dev/null; then
            note "broker pid $BROKER_PID did not exit 10 s after SIGTERM; killed"
            kill -KILL "$BROKER_PID" 2>/dev/null || true
        fi
    else
        note "broker pid $BROKER_PID was no longer running when the benchmark tried to stop it"
    fi
    BROKER_PID=""
    OWN_BROKER=0
    # the data dir is removed at exit, not here: deleting GBs of segments
    # right before the next measurement would disturb it
}

cleanup() {
    local rc=$?
    if [[ -n $POLLER_PID ]]; then
        kill -TERM "$POLLER_PID" 2>/dev/null || true
        wait "$POLLER_PID" 2>/dev/null || true
    fi
    if [[ -n $IDLE_PREFIX && $OWN_BROKER == 0 ]] && broker_alive; then
        "${FETCHERS[@]}" delete "$ADMIN_BOOTSTRAP" "$IDLE_PREFIX" "$LONGPOLL_CONNS" >/dev/null 2>&1 || true
    fi
    stop_broker || true
    rm -rf "$CACHE/last-run"
    mkdir -p "$CACHE"
    cp -a "$LOGS" "$CACHE/last-run" 2>/dev/null || true
    if [[ ${KEEP_DATA:-0} == 1 ]]; then
        log "broker data kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_broker NAME [extra strata args...]; sets BOOTSTRAP BROKER_PID STARTUP_MS
start_broker() {
    local name=$1; shift
    [[ -x $STRATA_BIN ]] || die "$STRATA_BIN not found (cargo build --release first)"
    local port
    port=$("${HELPER[@]}" freeport)
    BROKER_DATA=$WORK/data-$name
    mkdir -p "$BROKER_DATA"
    BOOTSTRAP=127.0.0.1:$port
    ADMIN_BOOTSTRAP=$BOOTSTRAP
    local tls_args=()
    if [[ $TLS == 1 ]]; then
        local ssl_port
        ssl_port=$("${HELPER[@]}" freeport)
        tls_args=(--override "listeners=PLAINTEXT://$ADMIN_BOOTSTRAP,SSL://127.0.0.1:$ssl_port"
                  --override "ssl.keystore.location=$TLS_DIR/keystore.pem")
        BOOTSTRAP=127.0.0.1:$ssl_port
    fi
    log "starting $STRATA_BIN on $BOOTSTRAP ($*)"
    local out
    OWN_BROKER=1
    # (--listen is what bench_helper.py probes: the PLAINTEXT listener)
    out=$("${HELPER[@]}" start "$LOGS/strata-$name.log" 30 -- \
        "$STRATA_BIN" --listen "$ADMIN_BOOTSTRAP" --advertised-listener "$ADMIN_BOOTSTRAP" \
        --data-dir "$BROKER_DATA" --override num.partitions=1 "${tls_args[@]}" "$@") || {
        BROKER_PID=${out%% *}
        log "broker log tail:"; tail -20 "$LOGS/strata-$name.log" >&2 || true
        die "broker did not answer ApiVersions"
    }
    read -r BROKER_PID STARTUP_MS <<<"$out"
    log "broker pid $BROKER_PID answered ApiVersions after $STARTUP_MS ms"
}

rss_of() { # -> "RSS_kB HWM_kB"
    if [[ -n ${1:-} ]]; then "${HELPER[@]}" rss "$1"; else echo "NA NA"; fi
}

fmt_kb() { # kB -> MiB with one decimal
    if [[ $1 =~ ^[0-9]+$ ]]; then awk -v k="$1" 'BEGIN{printf "%.1f MiB", k/1024}'; else echo "n/a"; fi
}

broker_alive() {
    [[ -z $BROKER_PID ]] || kill -0 "$BROKER_PID" 2>/dev/null
}

# ---------------------------------------------------------------------------
# 3. Measurements
# ---------------------------------------------------------------------------

ROWS_TP=()   # throughput rows
ROWS_LAT=()  # latency rows
# latency rows: label, n, p50, p99, p99.9, max, broker CPU, notes
LAT_FMT='%-58s %6s %8s %8s %8s %8s %7s  %s'

# run_capped CAP LOG cmd... : run with SIGINT after CAP seconds (SIGKILL 10 s later)
run_capped() {
    local cap=$1 logf=$2; shift 2
    local rc=0
    timeout -s INT -k 10 "$cap" "$@" > "$logf" 2>&1 || rc=$?
    if [[ $rc == 124 ]]; then echo capped; elif [[ $rc == 0 ]]; then echo ok; else echo "rc=$rc"; fi
}

# Write back the previous run's dirty pages first, so that one run's data
# does not slow the next one down (the machine's disk is the bottleneck for
# the produce runs otherwise). SETTLE=0 turns this off.
settle() {
    [[ ${SETTLE:-1} == 1 ]] && sync
    return 0
}

# drop_topics TOPIC... : with DELETE_TOPICS=1, delete the topics of a run that
# has been measured (DeleteTopics v1 over a raw socket), then `sync`. Without
# this, the data of the earlier runs (GBs) stays in the page cache and the
# later produce runs spend their write() calls waiting for the kernel to
# reclaim pages, which makes them look up to 2x slower than on a fresh broker.
drop_topics() {
    [[ $DELETE_TOPICS == 1 ]] || return 0
    broker_alive || return 0
    local t out
    for t in "$@"; do
        if ! out=$("${HELPER[@]}" delete-topic "$ADMIN_BOOTSTRAP" "$t" 2>&1); then
            note "could not delete topic $t: $(tail -1 <<<"$out" | cut -c1-200)"
        fi
    done
    sync
}

error_excerpt() { # LOG -> first few interesting lines (without the CONFWARN noise)
    grep -v CONFWARN "$1" | grep -iE 'error|fail|fatal|timed out|disconnect|unknown|refused|invalid' \
        | head -3 | cut -c1-200 | tr '\n' ' ' || true
}

# calibrate SIZE ACKS TOPIC -> message count for about TARGET_SECS
calibrate() {
    local size=$1 acks=$2 topic=$3 logf=$LOGS/calibrate-$3.log summary mps
    settle
    log "calibrating: ${size} B acks=$acks for 2 s" >&2
    run_capped 2 "$logf" "$PERF" "${PERF_X[@]}" -P -t "$topic" -b "$BOOTSTRAP" -p 0 -s "$size" -c 100000000 \
        -X acks="$acks" -X linger.ms="$LINGER_MS" >/dev/null
    summary=$("${HELPER[@]}" produce-summary "$logf")
    mps=0
    [[ $summary == NA ]] || mps=$(awk '{print $4}' <<<"$summary")
    awk -v r="$mps" -v t="$TARGET_SECS" -v s="$size" -v mb="$MAX_RUN_MB" 'BEGIN{
        n = int(r * t); max = int(mb * 1000000 / s);
        if (n > max) n = max; if (n < 10000) n = 10000; print n }'
}

# produce_run LABEL SIZE COUNT ACKS TOPIC [keep]   (COUNT empty: calibrate)
# Once the figures are recorded, the topic and its calibration topic are
# deleted (see drop_topics); with "keep" the topic itself is left for a later
# run (the caller deletes it then).
produce_run() {
    local label=$1 size=$2 count=$3 acks=$4 topic=$5 keep=${6:-}
    local logf=$LOGS/produce-$topic.log status summary
    local drop=()
    [[ $keep == keep ]] || drop+=("$topic")
    if [[ -z $count ]]; then
        count=$(calibrate "$size" "$acks" "$topic-calibrate")
        drop+=("$topic-calibrate")
    fi
    settle
    log "produce: $label ($count x $size B, acks=$acks, cap ${RUN_CAP}s)"
    status=$(run_capped "$RUN_CAP" "$logf" "$PERF" "${PERF_X[@]}" -P -t "$topic" -b "$BOOTSTRAP" -p 0 \
        -s "$size" -c "$count" -X acks="$acks" -X linger.ms="$LINGER_MS")
    summary=$("${HELPER[@]}" produce-summary "$logf")
    if [[ $summary == NA ]]; then
        ROWS_TP+=("$(printf '%-44s %12s %10s %11s %9s  %s' "$label" - - - - "FAILED")")
        note "$label: no summary from rdkafka_performance ($status): $(error_excerpt "$logf")"
        LAST_DELIVERED=0
        drop_topics "${drop[@]}"
        return
    fi
    local delivered failed ms mps mbs
    read -r delivered failed ms mps mbs <<<"$summary"
    LAST_DELIVERED=$delivered
    local flag=""
    [[ $status == capped ]] && flag="capped at ${RUN_CAP}s"
    [[ $status == rc=* ]] && flag="exit $status"
    if [[ $failed != 0 ]]; then
        flag="${flag:+$flag, }$failed failed"
        note "$label: $failed delivery failures: $(error_excerpt "$logf")"
    fi
    if [[ $delivered -lt $count && $status != capped ]]; then
        note "$label: only $delivered of $count delivered ($status)"
    fi
    ROWS_TP+=("$(printf '%-44s %12s %10s %11s %9s  %s' "$label" "$mps" "$mbs" "$delivered" \
        "$(awk -v m="$ms" 'BEGIN{printf "%.1f", m/1000}')" "$flag")")
    if [[ ${#drop[@]} -gt 0 ]]; then drop_topics "${drop[@]}"; fi
}

consume_run() { # LABEL TOPIC EXPECTED   (reads TOPIC CONSUME_RUNS times, then deletes it)
    local label=$1 topic=$2 expected=$3 run
    if [[ $expected -le 0 ]]; then
        ROWS_TP+=("$(printf '%-44s %12s %10s %11s %9s  %s' "$label" - - - - "skipped (nothing produced)")")
        return
    fi
    for run in $(seq 1 "$CONSUME_RUNS"); do
        if [[ $CONSUME_RUNS -gt 1 ]]; then
            consume_once "$label #$run" "$topic" "$expected" "$run" || break
        else
            consume_once "$label" "$topic" "$expected" "$run" || break
        fi
    done
    drop_topics "$topic"
}

consume_once() { # LABEL TOPIC EXPECTED RUN -> false if the read failed
    local label=$1 topic=$2 expected=$3 run=$4
    local logf=$LOGS/consume-$topic-$run.log status summary cpu0 cpu1 steal0 steal1 cpu=""
    log "consume: $label ($expected msgs from the beginning, cap $((RUN_CAP * 2))s)"
    cpu0=$("${HELPER[@]}" cpu "${BROKER_PID:-0}")
    steal0=$("${HELPER[@]}" steal)
    status=$(run_capped $((RUN_CAP * 2)) "$logf" "$PERF" "${PERF_X[@]}" -C -t "$topic" -b "$BOOTSTRAP" -p 0 \
        -o beginning -c "$expected" -e)
    cpu1=$("${HELPER[@]}" cpu "${BROKER_PID:-0}")
    steal1=$("${HELPER[@]}" steal)
    if [[ $cpu0 != NA && $cpu1 != NA ]]; then
        cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "broker CPU %.2f s", b-a}')
    fi
    # CPU time the host gave other tenants meanwhile: a read with much of it was slowed
    # by the machine, not the broker.
    if [[ $steal0 != NA && $steal1 != NA ]]; then
        cpu+=$(awk -v a="$steal0" -v b="$steal1" 'BEGIN{printf ", steal %.2f s", b-a}')
    fi
    summary=$("${HELPER[@]}" consume-summary "$logf")
    if [[ $summary == NA ]]; then
        ROWS_TP+=("$(printf '%-44s %12s %10s %11s %9s  %s' "$label" - - - - "FAILED")")
        note "$label: no summary ($status): $(error_excerpt "$logf")"
        return 1
    fi
    local msgs ms mps mbs flag=$cpu
    read -r msgs ms mps mbs <<<"$summary"
    [[ $status == capped ]] && flag="${flag:+$flag, }capped at $((RUN_CAP * 2))s"
    [[ $status == rc=* ]] && flag="${flag:+$flag, }exit $status"
    if [[ $msgs != "$expected" ]]; then
        flag="${flag:+$flag, }got $msgs of $expected"
        note "$label: consumed $msgs of $expected messages ($status): $(error_excerpt "$logf")"
    fi
    ROWS_TP+=("$(printf '%-44s %12s %10s %11s %9s  %s' "$label" "$mps" "$mbs" "$msgs" \
        "$(awk -v m="$ms" 'BEGIN{printf "%.1f", m/1000}')" "$flag")")
}

# latency_run TAG : acks=-1, LAT_RATE msgs/s, 100 B, linger.ms=0.
# Producer -l: per-message delivery latency (produce() -> delivery report);
# consumer -l in parallel: end-to-end produce -> consume latency.
# Also records the broker's CPU use (user + system) while the producer runs,
# as a share of one core.
latency_run() {
    local tag=$1
    local safe=${tag//[^a-zA-Z0-9._-]/-}   # topic names allow only [a-zA-Z0-9._-]
    local topic=bench-$RUN_ID-lat-$safe
    local dr=$LOGS/lat-$safe-delivery.us e2e=$LOGS/lat-$safe-e2e.us
    settle
    log "latency ($tag): $LAT_COUNT msgs at $LAT_RATE msg/s, acks=-1, linger.ms=0"
    # create the topic (and warm up connections) with one message
    run_capped 20 "$LOGS/lat-$safe-create.log" "$PERF" "${PERF_X[@]}" -P -t "$topic" -b "$BOOTSTRAP" -p 0 \
        -s 100 -c 1 -X acks=-1 >/dev/null
    local ccap=$(( LAT_COUNT / LAT_RATE + 40 ))
    # from the beginning: the topic only holds the warm-up message, which
    # carries no timestamp and is counted but not sampled (hence count + 1)
    timeout -s INT -k 10 "$ccap" "$PERF" "${PERF_X[@]}" -C -t "$topic" -b "$BOOTSTRAP" -p 0 -o beginning \
        -l -A "$e2e" -c $(( LAT_COUNT + 1 )) > "$LOGS/lat-$safe-consumer.log" 2>&1 &
    local cpid=$!
    sleep 3   # let the consumer connect and start fetching
    local pstatus cpu0 cpu1 t0 t1 cpu=n/a
    cpu0=$("${HELPER[@]}" cpu "${BROKER_PID:-0}")
    t0=$(date +%s.%N)
    pstatus=$(run_capped $(( LAT_COUNT / LAT_RATE + 30 )) "$LOGS/lat-$safe-producer.log" \
        "$PERF" "${PERF_X[@]}" -P -t "$topic" -b "$BOOTSTRAP" -p 0 -s 100 -c "$LAT_COUNT" -r "$LAT_RATE" \
        -X acks=-1 -X linger.ms=0 -l -A "$dr")
    t1=$(date +%s.%N)
    cpu1=$("${HELPER[@]}" cpu "${BROKER_PID:-0}")
    if [[ $cpu0 != NA && $cpu1 != NA ]]; then
        cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%.0f%%", 100*(b-a)/(t1-t0)}')
    fi
    # give the consumer up to 10 s to see the last messages
    for _ in $(seq 1 100); do
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    kill -INT "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    local n p50 p99 p999 max
    read -r n p50 p99 p999 max < <("${HELPER[@]}" pct "$dr")
    local flag=""
    [[ $pstatus != ok ]] && flag="producer $pstatus"
    [[ $n != "$LAT_COUNT" ]] && flag="${flag:+$flag, }$n of $LAT_COUNT samples"
    ROWS_LAT+=("$(printf "$LAT_FMT" "produce delivery ($tag)" "$n" "$p50" "$p99" "$p999" "$max" "$cpu" "$flag")")
    [[ $n == "$LAT_COUNT" ]] || note "latency ($tag): $n of $LAT_COUNT delivery samples ($pstatus): $(error_excerpt "$LOGS/lat-$safe-producer.log")"
    read -r n p50 p99 p999 max < <("${HELPER[@]}" pct "$e2e")
    flag=""
    [[ $n != "$LAT_COUNT" ]] && flag="$n of $LAT_COUNT samples"
    ROWS_LAT+=("$(printf "$LAT_FMT" "end-to-end produce->consume ($tag)" "$n" "$p50" "$p99" "$p999" "$max" - "$flag")")
    [[ $n == "$LAT_COUNT" ]] || note "latency ($tag): consumer saw $n of $LAT_COUNT messages: $(error_excerpt "$LOGS/lat-$safe-consumer.log")"
    drop_topics "$topic"
}

# longpoll_latency_run : latency_run while LONGPOLL_CONNS connections keep a
# Fetch (max_wait_ms LONGPOLL_WAIT_MS, min_bytes 1) waiting on as many other
# topics, which get no data. Each append to the produced topic is then an
# event for a broker with LONGPOLL_CONNS idle fetches parked; if appends wake
# every waiting fetch, rather than only those on the partition that grew, the
# broker does LONGPOLL_CONNS wake-ups per produced message.
LONGPOLL_SUMMARY=""
longpoll_latency_run() {
    local tag="$LONGPOLL_CONNS idle long-poll consumers"
    local ready=$WORK/longpoll.ready logf=$LOGS/longpoll-fetchers.log out
    IDLE_PREFIX=bench-$RUN_ID-idle
    log "longpoll: creating $LONGPOLL_CONNS topics $IDLE_PREFIX-N (1 partition each)"
    if ! out=$("${FETCHERS[@]}" create "$ADMIN_BOOTSTRAP" "$IDLE_PREFIX" "$LONGPOLL_CONNS" 2>&1); then
        note "longpoll: could not create the idle topics: $(tail -1 <<<"$out" | cut -c1-200)"
        drop_idle_topics
        return
    fi
    rm -f "$ready"
    "${FETCHERS[@]}" poll "$ADMIN_BOOTSTRAP" "$IDLE_PREFIX" "$LONGPOLL_CONNS" "$LONGPOLL_WAIT_MS" "$ready" \
        > "$logf" 2>&1 &
    POLLER_PID=$!
    # every connection has had one (max_wait_ms long) answer before measuring
    local waited=0
    while [[ ! -f $ready ]] && kill -0 "$POLLER_PID" 2>/dev/null && [[ $waited -lt 600 ]]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if [[ -f $ready ]]; then
        log "longpoll: $LONGPOLL_CONNS fetchers polling (max_wait_ms=$LONGPOLL_WAIT_MS)"
        latency_run "$tag"
    else
        note "longpoll: the fetchers did not all get an answer within 60 s: $(tail -2 "$logf" | tr '\n' ' ' | cut -c1-200)"
    fi
    kill -TERM "$POLLER_PID" 2>/dev/null || true
    wait "$POLLER_PID" 2>/dev/null || true
    POLLER_PID=""
    LONGPOLL_SUMMARY=$(grep -m1 '^longpoll:' "$logf" || true)
    if [[ -z $LONGPOLL_SUMMARY ]]; then
        note "longpoll: no summary from longpoll_fetchers.py: $(tail -2 "$logf" | tr '\n' ' ' | cut -c1-200)"
    elif [[ $LONGPOLL_SUMMARY != *" errors=0 "* ]]; then
        note "longpoll: fetch errors: $LONGPOLL_SUMMARY"
    fi
    drop_idle_topics
}

drop_idle_topics() {
    [[ -n $IDLE_PREFIX ]] || return 0
    broker_alive || return 0
    local out
    if ! out=$("${FETCHERS[@]}" delete "$ADMIN_BOOTSTRAP" "$IDLE_PREFIX" "$LONGPOLL_CONNS" 2>&1); then
        note "longpoll: could not delete the idle topics: $(tail -1 <<<"$out" | cut -c1-200)"
    fi
    IDLE_PREFIX=""
}

check_alive() {
    if ! broker_alive; then
        note "broker pid $BROKER_PID died during '$1' (log: .cache/last-run/)"
        tail -5 "$LOGS"/strata-*.log 2>/dev/null | sed 's/^/    /' >&2 || true
        return 1
    fi
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTUP_MS=""
MAIN_STARTUP=""
IDLE_RSS=NA
AFTER_RSS=NA
PEAK_RSS=NA
FA_STARTUP=""
BROKER_DESC="external broker at $BOOTSTRAP"

# make_tls_certs: a CA and a server certificate for 127.0.0.1 / localhost (openssl)
TLS_DIR=$WORK/tls
make_tls_certs() {
    mkdir -p "$TLS_DIR"
    (
        cd "$TLS_DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=strata bench CA" -keyout ca.key -out ca.pem
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/O=Strata/CN=localhost" -keyout server.key -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext.cnf -out server.pem
        cat server.key server.pem > keystore.pem
    ) > "$LOGS/tls-certs.log" 2>&1 || die "making the TLS certificates failed (see $LOGS/tls-certs.log)"
    PERF_X=(-X security.protocol=ssl -X "ssl.ca.location=$TLS_DIR/ca.pem")
}
[[ $TLS == 1 ]] && make_tls_certs

if [[ $START == 1 ]]; then
    start_broker main
    MAIN_STARTUP=$STARTUP_MS
    bin_desc=$STRATA_BIN
    [[ $bin_desc == "$ROOT"/* ]] && bin_desc=${bin_desc#"$ROOT"/}
    BROKER_DESC="$bin_desc started by bench.sh, default flush, num.partitions=1"
    [[ $TLS == 1 ]] && BROKER_DESC="$BROKER_DESC; clients over TLS (SSL listener $BOOTSTRAP, server certificate verified, no client certificate)"
    sleep 1
    read -r IDLE_RSS _ < <(rss_of "$BROKER_PID")
else
    "${HELPER[@]}" probe "$BOOTSTRAP" 3 >/dev/null 2>&1 \
        || die "no ApiVersions answer from $BOOTSTRAP (start a broker or use --start)"
    # best effort: find the pid listening on the port to report its RSS
    if command -v ss >/dev/null; then
        pid=$(ss -Hltnp "sport = :${BOOTSTRAP##*:}" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
        if [[ -n ${pid:-} ]]; then
            BROKER_PID=$pid
            read -r IDLE_RSS _ < <(rss_of "$BROKER_PID")
            BROKER_DESC="$BROKER_DESC (pid $pid, $(tr '\0' ' ' < /proc/"$pid"/cmdline 2>/dev/null | cut -c1-80))"
        fi
    fi
fi
PROBE_MS=$("${HELPER[@]}" probe "$ADMIN_BOOTSTRAP" 3 2>/dev/null || echo NA)

for acks in 1 -1; do
    [[ $LATENCY_ONLY == 1 ]] && break
    produce_run "produce 100 B  acks=$acks" 100 "$N_SMALL" "$acks" "bench-$RUN_ID-s100-a${acks/-1/all}"
    check_alive "produce 100 B acks=$acks" || break
    # the 1 KiB acks=1 topic is read by the consume run, which deletes it
    keep=""
    [[ $acks == 1 ]] && keep=keep
    produce_run "produce 1 KiB  acks=$acks" 1024 "$N_LARGE" "$acks" "bench-$RUN_ID-s1024-a${acks/-1/all}" "$keep"
    [[ $acks == 1 ]] && DELIVERED_1K=$LAST_DELIVERED
    check_alive "produce 1 KiB acks=$acks" || break
done
if [[ $LATENCY_ONLY == 0 ]] && broker_alive; then
    consume_run "consume 1 KiB  (from beginning)" "bench-$RUN_ID-s1024-a1" "${DELIVERED_1K:-0}"
    check_alive "consume" || true
fi
if broker_alive; then
    latency_run "flush=default"
    check_alive "latency" || true
fi
if [[ $LONGPOLL == 1 ]] && broker_alive; then
    longpoll_latency_run
    check_alive "latency with long-polling consumers" || true
fi
if [[ -n $BROKER_PID ]] && broker_alive; then
    read -r AFTER_RSS PEAK_RSS < <(rss_of "$BROKER_PID")
fi

if [[ $START == 1 ]]; then
    stop_broker
    if [[ $FLUSH_ALWAYS == 1 ]]; then
        start_broker flush-always --flush always
        FA_STARTUP=$STARTUP_MS
        latency_run "flush=always"
        check_alive "latency flush=always" || true
        if [[ $LATENCY_ONLY == 0 ]] && broker_alive; then
            produce_run "produce 1 KiB  acks=-1 flush=always" 1024 "$N_LARGE" -1 "bench-$RUN_ID-fa-s1024"
            check_alive "produce flush=always" || true
        fi
        stop_broker
    fi
fi

# ---------------------------------------------------------------------------
# 4. Report
# ---------------------------------------------------------------------------

for f in "$LOGS"/strata-*.log; do
    [[ -f $f ]] || continue
    # (peer resets are expected: runs stopped by RUN_CAP or calibration)
    bad=$(sed 's/\x1b\[[0-9;]*m//g' "$f" | grep -iE 'warn|error|panic' | grep -v 'reset by peer' || true)
    if [[ -n $bad ]]; then
        note "$(basename "$f"): $(wc -l <<<"$bad") WARN/ERROR/panic lines, first: $(head -1 <<<"$bad" | cut -c1-200)"
    fi
done

cpu_model=$(grep -m1 -E '^(model name|Hardware|cpu model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
{
    echo "Strata benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host:    $(uname -m), nproc=$(nproc), CPU: ${cpu_model:-unknown}, kernel $(uname -r)"
    echo "load:    1/5/15-min load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the figures)"
    echo "client:  rdkafka_performance, $(cat "$CACHE/bin/VERSION$PERF_VARIANT" 2>/dev/null)"
    echo "broker:  $BROKER_DESC"
    if [[ $LATENCY_ONLY == 1 ]]; then
        echo "params:  latency runs only (--latency-only): $LAT_COUNT msgs each"
    else
        echo "params:  msgs per produce run: ${N_SMALL:-auto (~${TARGET_SECS}s)} x 100 B, ${N_LARGE:-auto (~${TARGET_SECS}s)} x 1 KiB (cap ${RUN_CAP}s), linger.ms=$LINGER_MS; MB = 10^6 bytes"
    fi
    if [[ $DELETE_TOPICS == 1 ]]; then
        echo "topics:  deleted (+ sync) after each run, so each run starts without the earlier runs' data"
    else
        echo "topics:  kept (no --delete-topics): later runs share the page cache with the earlier runs' data"
    fi
    echo
    if [[ ${#ROWS_TP[@]} -gt 0 ]]; then
        printf '%-44s %12s %10s %11s %9s  %s\n' "throughput" "msgs/s" "MB/s" "msgs" "secs" "notes"
        for r in "${ROWS_TP[@]}"; do echo "$r"; done
        echo
    fi
    printf "$LAT_FMT\n" "latency ms (100 B, acks=-1, ${LAT_RATE} msg/s, linger 0)" "n" "p50" "p99" "p99.9" "max" "brk CPU" "notes"
    for r in "${ROWS_LAT[@]}"; do echo "$r"; done
    echo "(brk CPU: broker user+system CPU while the producer ran, % of one core)"
    if [[ $LONGPOLL == 1 ]]; then
        echo "long-poll consumers: $LONGPOLL_CONNS connections, each with a Fetch v4 waiting on its own empty"
        echo "  1-partition topic (max_wait_ms=$LONGPOLL_WAIT_MS, min_bytes=1) during the latency run;"
        echo "  ${LONGPOLL_SUMMARY:-no summary}"
        echo "  (fetches: answered Fetches; early: those answered in < 90% of max_wait_ms; while measuring: from all"
        echo "  pollers answered once to the end of the latency run; cpu_s: the pollers' own CPU time)"
    fi
    echo
    if [[ $START == 1 ]]; then
        echo "startup to first ApiVersions answer: ${MAIN_STARTUP} ms${FA_STARTUP:+ (flush=always broker: $FA_STARTUP ms)}"
    fi
    echo "ApiVersions round trip (new connection): ${PROBE_MS} ms"
    if [[ $START == 1 ]]; then rss_when="idle (1 s after start)"; else rss_when="before benchmark"; fi
    echo "broker RSS: $rss_when $(fmt_kb "$IDLE_RSS"), after benchmark $(fmt_kb "$AFTER_RSS"), peak (VmHWM) $(fmt_kb "$PEAK_RSS")"
    if [[ ${#NOTES[@]} -gt 0 ]]; then
        echo
        echo "problems:"
        for n in "${NOTES[@]}"; do echo "  - $n"; done
        echo "  (logs: compat-tests/bench/.cache/last-run/)"
    fi
} > "$WORK/results.txt"

cp "$WORK/results.txt" "$RESULTS_FILE"
echo
cat "$RESULTS_FILE"
