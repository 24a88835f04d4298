#!/usr/bin/env bash
# Installs quixstreams (quix/requirements.txt) into compat-tests/quix/.venv, a venv of its
# own because quixstreams pins an older confluent-kafka than the rest of the suite.
# Idempotent: does nothing when the requirements have not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
stamp=.venv/.requirements.sha256
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "quixstreams already installed"
    exit 0
fi
rm -rf .venv
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
echo "$want" > "$stamp"
echo "quixstreams $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("quixstreams"))') installed"
