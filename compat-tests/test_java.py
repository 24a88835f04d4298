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
- test_java_consumer_group_subscribe_consumer_protocol: the same with group.protocol=consumer
  (KIP-848: ConsumerGroupHeartbeat, the broker's assignor, OffsetCommit/OffsetFetch v9 with the
  member epoch, ConsumerGroupDescribe).
- test_java_group_churn: java/GroupMember.java processes run as members of one group (classic and
  consumer protocol) while 20,000 messages are produced, one member joins and one leaves (SIGTERM,
  a clean close): every message is processed exactly once, and a restarted member reads nothing
  that was committed.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import uuid

import pytest

from clients import (MemberProcess, check_group_churn, check_group_resumes, create_topic, program_report,
                     run_group_churn, tail, unique_topic)

JAVA_DIR = pathlib.Path(__file__).resolve().parent / "java"
COUNT = 2000
PROGRAM_TIMEOUT_S = 90  # the program's own watchdog; the subprocess gets a margin on top


def _report(cmd: list[str], proc: subprocess.CompletedProcess, summary: dict | None) -> str:
    return program_report(cmd, proc, summary, "client log")


def java_command(classpath: str, main_class: str, *args: str) -> list[str]:
    return ["java",
            f"-Dlog4j2.configurationFile={JAVA_DIR / 'log4j2.properties'}",
            f"-Dstrata.log.level={os.environ.get('STRATA_COMPAT_JAVA_LOG', 'WARN')}",
            "-cp", classpath, main_class, *args]


def run_produce_consume(classpath: str, bootstrap: str, topic: str, *, compression: str = "none",
                        consume: str = "assign", count: int = COUNT, group_protocol: str | None = None) -> dict:
    cmd = java_command(classpath, "ProduceConsume",
                       "--bootstrap", bootstrap, "--topic", topic, "--count", str(count),
                       "--compression", compression, "--consume", consume,
                       "--timeout", str(PROGRAM_TIMEOUT_S))
    if group_protocol is not None:
        cmd += ["--group-protocol", group_protocol]
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
    assert (summary["group_type"], summary["group_members"]) == ("CLASSIC", 1), summary


# The consumer protocol's heartbeat interval is the broker's (group.consumer.heartbeat.interval.ms,
# default 5 s): a member learns of a new assignment, or of partitions to give up, on a heartbeat.
FAST_CONSUMER_GROUPS = ("--override", "group.consumer.heartbeat.interval.ms=500")


def test_java_consumer_group_subscribe_consumer_protocol(strata_factory, java_classpath):
    """group.protocol=consumer (KIP-848): the broker assigns all 3 partitions to the one member, the
    commits (OffsetCommit v9 with the member epoch) land, and the Admin client describes a group of
    type CONSUMER with that member."""
    broker = strata_factory(*FAST_CONSUMER_GROUPS)
    summary = run_produce_consume(java_classpath, broker.bootstrap, "java-group-consumer", consume="group",
                                  group_protocol="consumer")
    assert summary["group_protocol"] == "consumer", summary
    assert summary["assignment"] == 3, f"the one consumer of the group should own all 3 partitions: {summary}"
    described = {k: summary.get(k) for k in ("group_type", "group_state", "group_members", "group_assignment")}
    assert described == {"group_type": "CONSUMER", "group_state": "STABLE", "group_members": 1,
                         "group_assignment": [0, 1, 2]}, summary


@pytest.mark.parametrize("group_protocol", ["classic", "consumer"])
def test_java_group_churn(strata_factory, java_classpath, tmp_path, group_protocol):
    """Three GroupMember processes over a 6-partition topic while 20,000 messages are produced
    (clients.run_group_churn): m1 and m2 start, m3 joins after a quarter, m1 leaves (SIGTERM:
    wakeup(), commit, close()) after half; messages keep coming during each change. Each member commits what it processed in onPartitionsRevoked and when it closes, so
    the next owner of a partition starts exactly after the last processed message: every message
    is processed once — no loss, no duplicate. Then a member started in the same group reads only
    messages produced after the others left."""
    broker = strata_factory(*FAST_CONSUMER_GROUPS)
    topic = unique_topic(f"java-churn-{group_protocol}")
    group = f"java-churn-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 6)

    def start_member(name: str) -> MemberProcess:
        cmd = java_command(java_classpath, "GroupMember", "--bootstrap", broker.bootstrap, "--topic", topic,
                           "--group", group, "--group-protocol", group_protocol, "--name", name,
                           "--timeout", "150")
        return MemberProcess(name, cmd, tmp_path / f"{name}.log")

    run = run_group_churn(broker.bootstrap, topic, start_member)
    check_group_churn(run)
    for m in run.members:
        (started,) = m.events_of("started")
        assert (started["client_version"], started["group_protocol"]) == ("4.3.0", group_protocol), started
        assert not m.events_of("commit-failed") and not m.events_of("lost"), m.describe()
    # the members that left committed their last offsets on the way out
    assert all(m.events_of("commit") for m in run.members), "\n".join(m.describe() for m in run.members)
    check_group_resumes(broker.bootstrap, topic, start_member)
