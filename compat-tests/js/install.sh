#!/usr/bin/env bash
# Installs the pinned kafkajs (package-lock.json) into compat-tests/js/node_modules.
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail
cd "$(dirname "$0")"

want="$(node -e 'console.log(require("./package-lock.json").packages["node_modules/kafkajs"].version)')"
have="$(node -e 'try { console.log(require("./node_modules/kafkajs/package.json").version) } catch (e) { console.log("") }')"
if [ -n "$have" ] && [ "$have" = "$want" ]; then
    echo "kafkajs $have already installed"
    exit 0
fi
npm ci --no-audit --no-fund
echo "kafkajs $(node -e 'console.log(require("./node_modules/kafkajs/package.json").version)') installed"
