"""The Apache Kafka Java client (kafka-clients 4.3.0) against strata.

java/ProduceConsume.java produces keyed messages with the producer's default settings
(idempotent, acks=all) and reads them back, checking each message exactly once at the
offset its ack named. The jars come from java/install.sh (idempotent); the program is
compiled with javac into a temporary directory once per test session.

- test_java_produce_consume_assign: consumer without group.id (assign + seekToBeginning),
  once per compression type.
- test_java_consumer_group_subscribe: group.id + subscribe() + commitSync(); needs strata's
  group coordinator (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetCommit,
  OffsetFetch, LeaveGroup).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from clients import program_report, tail

JAVA_DIR = pathlib.Path(__file__).resolve().parent / "java"
COUNT = 2000
PROGRAM_TIMEOUT_S = 90  # the program's own watchdog; the subprocess gets a margin on top


def _report(cmd: list[str], proc: subprocess.CompletedProcess, summary: dict | None) -> str:
    return program_report(cmd, proc, summary, "client log")


@pytest.fixture(scope="session")
def java_classpath(tmp_path_factory) -> str:
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found on PATH (a JDK 17 is needed for the Java client tests)", pytrace=False)
    install = subprocess.run(["bash", str(JAVA_DIR / "install.sh")], capture_output=True, text=True, timeout=900)
    if install.returncode != 0:
        pytest.fail(f"java/install.sh failed ({install.returncode}):\n{tail(install.stdout)}\n{tail(install.stderr)}",
                    pytrace=False)
    classes = tmp_path_factory.mktemp("java-classes")
    lib = f"{JAVA_DIR / 'lib'}{os.sep}*"
    javac = subprocess.run(["javac", "-cp", lib, "-d", str(classes), str(JAVA_DIR / "ProduceConsume.java")],
                           capture_output=True, text=True, timeout=300)
    if javac.returncode != 0:
        pytest.fail(f"javac failed ({javac.returncode}):\n{javac.stdout}\n{javac.stderr}", pytrace=False)
    return f"{lib}{os.pathsep}{classes}"


def run_produce_consume(classpath: str, bootstrap: str, topic: str, *, compression: str = "none",
                        consume: str = "assign", count: int = COUNT) -> dict:
    cmd = ["java",
           f"-Dlog4j2.configurationFile={JAVA_DIR / 'log4j2.properties'}",
           f"-Dstrata.log.level={os.environ.get('STRATA_COMPAT_JAVA_LOG', 'WARN')}",
           "-cp", classpath, "ProduceConsume",
           "--bootstrap", bootstrap, "--topic", topic, "--count", str(count),
           "--compression", compression, "--consume", consume,
           "--timeout", str(PROGRAM_TIMEOUT_S)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROGRAM_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"ProduceConsume did not finish in {PROGRAM_TIMEOUT_S + 30}s\n"
                    f"stdout:\n{tail(e.stdout or '')}\nstderr:\n{tail(e.stderr or '')}", pytrace=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else None
    if summary is None:
        pytest.fail(f"no JSON summary on stdout\n{_report(cmd, proc, summary)}\nstdout:\n{tail(proc.stdout)}",
                    pytrace=False)
    offsets = summary.get("offsets", {})
    checks = [
        (proc.returncode == 0, "exit status 0"),
        (summary["ok"] is True, "summary ok"),
        (summary["client_version"] == "4.3.0", "kafka-clients 4.3.0"),
        (summary.get("produced") == count, f"produced == {count}"),
        (summary["unique_consumed"] == count, f"{count} distinct messages consumed"),
        (summary["consumed"] == count, f"{count} messages consumed in all"),
        (summary["missing"] == 0, "none missing"),
        (summary["duplicates"] == 0, "no duplicates"),
        (summary["unexpected"] == 0, "nothing unexpected"),
        (summary["mismatches"] == 0, "no mismatches"),
        (summary["problems"] == [], "no problems"),
        # the keys spread over every partition, and the end offsets add up to what was acked
        (len(offsets) == 3, "offsets for 3 partitions"),
        (sum(o["high"] - o["low"] for o in offsets.values()) == count, f"offsets add up to {count}"),
    ]
    failed = [what for ok, what in checks if not ok]
    if failed:
        pytest.fail(f"checks not met: {'; '.join(failed)}\n{_report(cmd, proc, summary)}", pytrace=False)
    return summary


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_java_produce_consume_assign(strata, java_classpath, compression):
    """Default (idempotent, acks=all) producer, then a group-less consumer (assign + seek)."""
    run_produce_consume(java_classpath, strata.bootstrap, f"java-assign-{compression}", compression=compression)


def test_java_consumer_group_subscribe(strata, java_classpath):
    """Needs the group coordinator: consumer with group.id + subscribe(), then commitSync()
    and committed() must return the end offsets."""
    summary = run_produce_consume(java_classpath, strata.bootstrap, "java-group", consume="group")
    assert summary["assignment"] == 3, f"the one consumer of the group should own all 3 partitions: {summary}"
