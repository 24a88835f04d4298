#!/usr/bin/env bash
# The whole test suite: installs what the tests need (only what is missing), builds strata,
# runs the Rust unit tests, then the real-client compatibility tests against the built binary.
#
#   compat-tests/run.sh                         # everything
#   compat-tests/run.sh -k kcat                 # extra arguments go to pytest
#   compat-tests/run.sh compat-tests/test_crash.py
#
# Environment: PYTHON (interpreter for the venv, default python3),
#              SKIP_CARGO_TEST=1 (skip `cargo test --release`, for quick iterations),
#              SKIP_FUZZ=1 (skip the short fuzz run), FUZZ_SECONDS (its time per target).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="$HERE/.venv"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ---------------------------------------------------------------- system packages
PYTHON="${PYTHON:-python3}"
apt_missing=()
command -v kcat >/dev/null 2>&1 || apt_missing+=(kcat)
# the console's tests drive Debian's Chromium through Playwright (never a downloaded browser)
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
if ! command -v "$PYTHON" >/dev/null 2>&1 || ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv for `python3 -m venv`
    apt_missing+=(python3 python3-venv)
    PYTHON=/usr/bin/python3
fi
if [ "${#apt_missing[@]}" -gt 0 ]; then
    step "apt-get install ${apt_missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}"
fi

# ---------------------------------------------------------------- Python venv
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    step "create venv $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    step "pip install -r compat-tests/requirements.txt"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$HERE/requirements.txt"
    echo "$want" > "$stamp"
fi

# ---------------------------------------------------------------- other clients' installers
for installer in "$HERE/js/install.sh" "$HERE/java/install.sh" "$HERE/connect/install.sh" "$HERE/quix/install.sh"; do
    if [ -f "$installer" ]; then
        step "${installer#"$ROOT"/}"
        PYTHON="$PYTHON" bash "$installer"
    fi
done

# ---------------------------------------------------------------- Rust
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
step "cargo build --release"
cargo build --release
if [ "${SKIP_CARGO_TEST:-0}" != 1 ]; then
    step "cargo test --release"
    cargo test --release
fi
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
    # Each fuzz target for a short while on the committed corpus: a crash, a hang or an
    # RSS excess fails the run (the long campaign is `fuzz/run.sh campaign`).
    step "fuzz/run.sh smoke ${FUZZ_SECONDS:-20}"
    bash fuzz/run.sh smoke "${FUZZ_SECONDS:-20}"
fi

# ---------------------------------------------------------------- compatibility tests
step "pytest compat-tests"
export STRATA_BIN="$ROOT/target/release/strata"
has_path=0
for arg in "$@"; do
    [ -e "${arg%%::*}" ] && has_path=1
done
if [ "$has_path" -eq 0 ]; then
    set -- "$@" "$HERE"
fi
exec "$VENV/bin/pytest" -c "$HERE/pytest.ini" --rootdir "$HERE" -v --durations=25 "$@"
