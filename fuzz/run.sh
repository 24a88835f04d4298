#!/usr/bin/env bash
# Coverage-guided fuzzing of everything Strata parses from untrusted bytes (see the README's
# "Fuzzing" section and src/fuzzing.rs).
#
#   fuzz/run.sh build                  build the targets (installs cargo-fuzz on first use)
#   fuzz/run.sh smoke [SECONDS]        each target SECONDS (default 30) on the committed
#                                      corpus; exits non-zero on a crash, hang or RSS excess
#   fuzz/run.sh campaign [RUNS] [T..]  RUNS inputs (default 10,000,000) per target, one target
#                                      at a time at nice 19; prints inputs, time, exec/s and
#                                      findings per target; new corpus entries go to
#                                      $FUZZ_WORK/<target> (merge them with `cmin`);
#                                      MAX_SECONDS caps each target's time
#   fuzz/run.sh cmin [T..]             merge $FUZZ_WORK/<target> into fuzz/corpus/<target>,
#                                      minimised (cargo fuzz cmin)
#   fuzz/run.sh seeds                  add the seed inputs to fuzz/corpus/ (written by the
#                                      broker's own encoders; an ignored unit test)
#
# cargo-fuzz runs libFuzzer with `--sanitizer none`, which builds on the stable toolchain
# (no RUSTC_BOOTSTRAP needed). Every run bounds an input's time (-timeout) and the process's
# RSS (-rss_limit_mb); the targets use the broker's own allocator, which reserves huge
# blocks lazily, so what counts is memory actually touched.
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
TARGETS=(request record_batch startup)
BROKER_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# Built apart from the broker (other compiler flags); kept between runs on one machine.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/strata-fuzz-target}"
FUZZ_WORK="${FUZZ_WORK:-/tmp/strata-fuzz-work}"
RSS_LIMIT_MB="${RSS_LIMIT_MB:-512}"
TIMEOUT_S="${TIMEOUT_S:-10}"
BIN="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"

ensure_cargo_fuzz() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "installing cargo-fuzz"
        cargo install --locked cargo-fuzz
    fi
}

build() {
    ensure_cargo_fuzz
    (cd "$FUZZ_DIR" && nice -n 10 cargo fuzz build --sanitizer none -O)
}

# run TARGET OUT_LOG ARGS...: one libFuzzer run on the committed corpus and the seeds.
run_target() {
    local t=$1 log=$2
    shift 2
    mkdir -p "$FUZZ_WORK/$t" "$FUZZ_WORK/artifacts"
    # The first corpus directory receives new inputs; the committed ones are only read.
    nice -n 19 "$BIN/$t" "$@" \
        -rss_limit_mb="$RSS_LIMIT_MB" -timeout="$TIMEOUT_S" -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$FUZZ_WORK/artifacts/$t-" \
        "$FUZZ_WORK/$t" "$FUZZ_DIR/corpus/$t" >"$log" 2>&1
}

# figures TARGET LOG RC SECONDS: one line of the run's figures.
figures() {
    local t=$1 log=$2 rc=$3 secs=$4
    local runs rate rss cov found
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    # libFuzzer's status lines: "#N ... cov: EDGES ft: FEATURES ..."
    cov=$(grep -o ' cov: [0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    found=$(ls "$FUZZ_WORK/artifacts" 2>/dev/null | grep -c "^$t-" || true)
    printf '%-13s inputs=%-10s seconds=%-6s exec/s=%-7s peak_rss_mb=%-5s edges=%-6s exit=%-3s findings=%s\n' \
        "$t" "${runs:-?}" "$secs" "${rate:-?}" "${rss:-?}" "${cov:-?}" "$rc" "$found"
}

cmd=${1:-smoke}
shift || true
case "$cmd" in
build)
    build
    ;;
smoke)
    secs=${1:-30}
    build
    failed=0
    for t in "${TARGETS[@]}"; do
        log="$FUZZ_WORK/$t-smoke.log"
        start=$(date +%s)
        rc=0
        run_target "$t" "$log" -max_total_time="$secs" || rc=$?
        figures "$t" "$log" "$rc" "$(($(date +%s) - start))"
        if [ "$rc" -ne 0 ]; then
            failed=1
            grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 || true
        fi
    done
    exit "$failed"
    ;;
campaign)
    runs=${1:-10000000}
    shift || true
    [ $# -gt 0 ] && TARGETS=("$@")
    build
    echo "machine: $(nproc) cores, $(uname -m), load $(cut -d' ' -f1-3 /proc/loadavg)"
    failed=0
    for t in "${TARGETS[@]}"; do
        log="$FUZZ_WORK/$t-campaign.log"
        start=$(date +%s)
        rc=0
        run_target "$t" "$log" -runs="$runs" ${MAX_SECONDS:+-max_total_time=$MAX_SECONDS} || rc=$?
        figures "$t" "$log" "$rc" "$(($(date +%s) - start))"
        [ "$rc" -eq 0 ] || failed=1
    done
    exit "$failed"
    ;;
cmin)
    [ $# -gt 0 ] && TARGETS=("$@")
    ensure_cargo_fuzz
    for t in "${TARGETS[@]}"; do
        mkdir -p "$FUZZ_DIR/corpus/$t"
        # Everything found so far joins the committed corpus, then the whole is minimised.
        cp -n "$FUZZ_WORK/$t"/* "$FUZZ_DIR/corpus/$t/" 2>/dev/null || true
        (cd "$FUZZ_DIR" && nice -n 19 cargo fuzz cmin --sanitizer none -O "$t" "corpus/$t" -- \
            -rss_limit_mb="$RSS_LIMIT_MB" -timeout="$TIMEOUT_S" -max_len=65536 >/dev/null 2>&1)
        echo "$t: $(ls "$FUZZ_DIR/corpus/$t" | wc -l) inputs, $(du -sh "$FUZZ_DIR/corpus/$t" | cut -f1)"
    done
    ;;
seeds)
    (cd "$ROOT" && CARGO_TARGET_DIR="$BROKER_TARGET_DIR" STRATA_FUZZ_SEEDS="$FUZZ_DIR/corpus" \
        cargo test --release --lib fuzzing::seeds -- --ignored --quiet)
    ;;
*)
    echo "usage: $0 build | smoke [SECONDS] | campaign [RUNS] [TARGET..] | cmin [TARGET..] | seeds" >&2
    exit 2
    ;;
esac
