"""Growing topics and describing partitions and log dirs: CreatePartitions,
DescribeTopicPartitions and DescribeLogDirs, with confluent-kafka's AdminClient, the Java
AdminClient (java/PartitionsAdmin.java, compiled as test_java.py compiles its programs) and the
raw protocol for DescribeTopicPartitions' cursor.

- test_create_partitions_confluent: validate_only changes nothing, the count grows, fewer or
  equal is refused with Kafka's message, an unknown topic is UNKNOWN_TOPIC_OR_PARTITION,
  list_topics and describe_topics show the new partitions, a producer writes to a new
  partition and a consumer reads it, and the count survives a restart and a kill -9.
- test_running_librdkafka_producer_spreads_over_new_partitions: a producer that knew the
  topic before it grew sends keyed messages to every partition after its metadata refresh.
- test_classic_group_picks_up_new_partitions (librdkafka, classic protocol): the group's
  member is assigned the new partitions after its metadata refresh and reads them.
- test_java_admin: the Java AdminClient's createPartitions (validateOnly, manual assignment),
  describeTopics (DescribeTopicPartitions on 4.x) and describeLogDirs (sizes grow after
  producing; total and usable bytes of the file system).
- test_java_group_gets_new_partitions: a Java consumer group, classic and consumer protocol
  (KIP-848: the coordinator notices the partition count change), is assigned the new
  partitions and reads a record produced to one.
- test_describe_topic_partitions_cursor: raw DescribeTopicPartitions v0 with a small
  response_partition_limit walks every partition of every topic once through next_cursor.
- test_transaction_on_new_partition: a transactional producer writes to a new partition.
- test_new_partitions_are_archived_and_restored: with the archive on, a new partition's
  segments are archived, the archive's topic.yaml records the new count, and a broker on an
  empty disk restores every partition.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import AdminClient, NewPartitions

import kafka_wire as kw
from clients import create_topic, first_message, unique_topic, wait_for_partitions
from test_java import java_command

API_DESCRIBE_TOPIC_PARTITIONS = 75
FAST_CONSUMER_GROUPS = ("--override", "group.consumer.heartbeat.interval.ms=500")


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def grow(bootstrap: str, topic: str, count: int, validate_only: bool = False):
    a = admin(bootstrap)  # kept alive until the result is in
    futures = a.create_partitions([NewPartitions(topic, count)], validate_only=validate_only, request_timeout=15)
    return futures[topic].result(timeout=20)


def grow_error(bootstrap: str, topic: str, count: int) -> KafkaError:
    with pytest.raises(KafkaException) as e:
        grow(bootstrap, topic, count)
    return e.value.args[0]


def partition_count(bootstrap: str, topic: str) -> int:
    md = admin(bootstrap).list_topics(topic=topic, timeout=10)
    return len(md.topics[topic].partitions)


def produce_to(bootstrap: str, topic: str, partition: int, value: bytes, extra: dict | None = None):
    p = Producer({"bootstrap.servers": bootstrap, **(extra or {})})
    delivered = []
    p.produce(topic, value, partition=partition, on_delivery=lambda err, msg: delivered.append((err, msg)))
    p.flush(15)
    assert len(delivered) == 1 and delivered[0][0] is None, delivered
    return delivered[0][1].offset()


def test_create_partitions_confluent(strata):
    topic = unique_topic("grow")
    create_topic(strata.bootstrap, topic, 1)

    grow(strata.bootstrap, topic, 4, validate_only=True)
    assert partition_count(strata.bootstrap, topic) == 1, "validate_only must change nothing"

    grow(strata.bootstrap, topic, 4)
    wait_for_partitions(strata.bootstrap, topic, 4)
    a = admin(strata.bootstrap)
    desc = a.describe_topics(TopicCollection([topic]))[topic].result(timeout=15)
    assert [p.id for p in desc.partitions] == [0, 1, 2, 3]
    assert all(p.leader.id == 0 and [r.id for r in p.replicas] == [0] for p in desc.partitions)

    err = grow_error(strata.bootstrap, topic, 2)
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert f"The topic {topic} currently has 4 partition(s); 2 would not be an increase." in err.str(), err
    err = grow_error(strata.bootstrap, topic, 4)
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert "Topic already has 4 partition(s)." in err.str(), err
    err = grow_error(strata.bootstrap, topic + "-missing", 2)
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err

    # a producer and a consumer use the new partition
    offset = produce_to(strata.bootstrap, topic, 3, b"on-partition-3")
    assert offset == 0
    msg = first_message(strata.bootstrap, topic, 3)
    assert msg is not None and msg.value() == b"on-partition-3" and msg.partition() == 3

    strata.stop()
    strata.start()
    assert partition_count(strata.bootstrap, topic) == 4, "the count survives a restart"
    grow(strata.bootstrap, topic, 6)
    strata.kill()
    strata.start()
    assert partition_count(strata.bootstrap, topic) == 6, "the count survives a kill -9"
    produce_to(strata.bootstrap, topic, 5, b"after-kill")


def test_classic_group_picks_up_new_partitions(strata):
    """librdkafka's consumer (classic protocol) sees the partition count change on its metadata
    refresh and the group rebalances onto the new partitions."""
    topic = unique_topic("grow-classic")
    create_topic(strata.bootstrap, topic, 1)
    c = Consumer({"bootstrap.servers": strata.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 1000})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 20
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(0.2)
        assert [tp.partition for tp in c.assignment()] == [0]
        grow(strata.bootstrap, topic, 3)
        produce_to(strata.bootstrap, topic, 2, b"new")
        got = None
        deadline = time.monotonic() + 30
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                got = (m.partition(), m.value())
        assert got == (2, b"new")
        assert sorted(tp.partition for tp in c.assignment()) == [0, 1, 2]
    finally:
        c.close()


def run_java(classpath: str, *args: str) -> dict:
    cmd = java_command(classpath, "PartitionsAdmin", *args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no summary\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    summary = json.loads(lines[-1])
    assert proc.returncode == 0 and summary["ok"], f"{summary}\nstderr:\n{proc.stderr[-3000:]}"
    return summary


def test_java_admin(strata, java_classpath):
    topic = unique_topic("java-grow")
    create_topic(strata.bootstrap, topic, 1)
    s = run_java(java_classpath, "admin", "--bootstrap", strata.bootstrap, "--topic", topic)
    assert s["before"]["partitions"] == 1 and s["before"]["internal"] is False
    # without an authorizer Kafka reports every operation a topic supports
    assert s["operations"] == ["ALTER", "ALTER_CONFIGS", "CREATE", "DELETE", "DESCRIBE", "DESCRIBE_CONFIGS",
                               "READ", "WRITE"], s["operations"]
    assert s["validate_only"] is None and s["after_validate_only"] == 1
    assert s["grow"] is None
    assert s["after_grow"]["partitions"] == 3
    assert s["after_grow"]["leaders"] == [[0, 0, 1, 1], [1, 0, 1, 1], [2, 0, 1, 1]]
    assert s["shrink"] == ["InvalidPartitionsException",
                           f"The topic {topic} currently has 3 partition(s); 2 would not be an increase."]
    assert s["same"] == ["InvalidPartitionsException", "Topic already has 3 partition(s)."]
    assert s["bad_assignment"] == ["InvalidReplicaAssignmentException",
                                   "The manual partition assignment includes broker 1, but no such broker is "
                                   "registered."]
    assert s["good_assignment"] is None and s["after_assignment"] == 5
    assert s["missing"][0] == "UnknownTopicOrPartitionException"

    before, after = s["log_dirs_before"], s["log_dirs_after"]
    assert before["dirs"] == 1 and before["error"] is None
    assert before["path"] == str(strata.data_dir.resolve()) or before["path"] == str(strata.data_dir)
    assert sorted(before["sizes"]) == ["0", "1", "2", "3", "4"]
    assert before["sizes"]["4"] == [0, 0, False]
    assert after["sizes"]["4"][0] > 50 * 1000, after
    usage = shutil.disk_usage(strata.data_dir)
    assert 0 < after["usable"] <= after["total"]
    assert abs(after["total"] - usage.total) < usage.total * 0.01, (after, usage)


@pytest.mark.parametrize("group_protocol", ["classic", "consumer"])
def test_java_group_gets_new_partitions(strata_factory, java_classpath, group_protocol):
    broker = strata_factory(*FAST_CONSUMER_GROUPS)
    topic = unique_topic(f"java-grow-{group_protocol}")
    create_topic(broker.bootstrap, topic, 1)
    s = run_java(java_classpath, "group", "--bootstrap", broker.bootstrap, "--topic", topic,
                 "--group", f"g-{uuid.uuid4().hex[:8]}", "--group-protocol", group_protocol)
    assert s["assigned_before"] == [0]
    assert s["grow"] is None
    assert s["produced"] == [2, 0]
    assert s["read"] == [[2, 0, "on-new-partition"]]
    assert s["assigned_after"] == [0, 1, 2]


# ----------------------------------------------------------------------------- raw protocol

def describe_topic_partitions(sock: socket.socket, correlation_id: int, topics: list[str], limit: int,
                              cursor: tuple[str, int] | None) -> tuple[list[dict], tuple[str, int] | None]:
    body = kw.uvarint(len(topics) + 1) + b"".join(kw.compact_string(t) + kw.uvarint(0) for t in topics)
    body += struct.pack(">i", limit)
    if cursor is None:
        body += struct.pack(">b", -1)
    else:
        body += struct.pack(">b", 1) + kw.compact_string(cursor[0]) + struct.pack(">i", cursor[1]) + kw.uvarint(0)
    body += kw.uvarint(0)
    sock.sendall(kw.frame(kw.header_v2(API_DESCRIBE_TOPIC_PARTITIONS, 0, correlation_id) + body))
    r = kw.Reader(kw.recv_frame(sock))
    assert r.int32() == correlation_id
    r.skip_tags()
    r.int32()  # throttle
    out = []
    for _ in range(r.compact_array_len()):
        t = {"error": r.int16(), "name": r.compact_string(), "id": r.take(16), "internal": r.int8()}
        parts = []
        for _ in range(r.compact_array_len()):
            p = {"error": r.int16(), "index": r.int32(), "leader": r.int32(), "epoch": r.int32()}
            p["replicas"] = [r.int32() for _ in range(r.compact_array_len())]
            p["isr"] = [r.int32() for _ in range(r.compact_array_len())]
            p["elr"] = [r.int32() for _ in range(max(r.compact_array_len(), 0))]
            p["last_elr"] = [r.int32() for _ in range(max(r.compact_array_len(), 0))]
            p["offline"] = [r.int32() for _ in range(r.compact_array_len())]
            r.skip_tags()
            parts.append(p)
        t["partitions"] = parts
        t["ops"] = r.int32()
        r.skip_tags()
        out.append(t)
    nxt = None
    if r.int8() >= 0:
        nxt = (r.compact_string(), r.int32())
        r.skip_tags()
    r.skip_tags()
    return out, nxt


def test_describe_topic_partitions_cursor(strata):
    prefix = f"dtp-{uuid.uuid4().hex[:6]}"
    shape = {f"{prefix}-a": 3, f"{prefix}-b": 1, f"{prefix}-c": 4}
    for name, n in shape.items():
        create_topic(strata.bootstrap, name, n)
    expected = [(t, i) for t in sorted(shape) for i in range(shape[t])]
    with socket.create_connection(("127.0.0.1", strata.port), timeout=10) as sock:
        for limit in (1, 2, 3, 5, 100):
            seen, cursor, pages = [], None, 0
            while True:
                pages += 1
                topics, cursor = describe_topic_partitions(sock, pages, sorted(shape, reverse=True), limit, cursor)
                for t in topics:
                    # every topic operation, as Kafka without an authorizer
                    assert t["error"] == 0 and t["internal"] == 0 and t["ops"] == 3576, t
                    for p in t["partitions"]:
                        assert (p["leader"], p["replicas"], p["isr"], p["elr"], p["last_elr"]) == (0, [0], [0], [], [])
                        seen.append((t["name"], p["index"]))
                assert len(seen) <= len(expected) and pages < 20
                if cursor is None:
                    break
            assert seen == expected, (limit, seen)
        topics, cursor = describe_topic_partitions(sock, 99, [f"{prefix}-a", f"{prefix}-zz"], 100, None)
        assert [(t["name"], t["error"]) for t in topics] == [(f"{prefix}-a", 0), (f"{prefix}-zz", 3)]
        assert cursor is None


def test_transaction_on_new_partition(strata):
    topic = unique_topic("grow-txn")
    create_topic(strata.bootstrap, topic, 1)
    grow(strata.bootstrap, topic, 2)
    wait_for_partitions(strata.bootstrap, topic, 2)
    p = Producer({"bootstrap.servers": strata.bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex[:6]}"})
    p.init_transactions(15)
    p.begin_transaction()
    p.produce(topic, b"in-txn", partition=1)
    p.commit_transaction(15)
    got = first_message(strata.bootstrap, topic, 1, **{"isolation.level": "read_committed"})
    assert got is not None and got.value() == b"in-txn"


# ----------------------------------------------------------------------------- the archive

@pytest.fixture
def tiered_local(request, tmp_path):
    from test_tier import Tiered
    return Tiered(request, tmp_path, "local")


def test_new_partitions_are_archived_and_restored(strata_factory, tiered_local):
    """The added partitions get their archivers, the archive records the new count, and a
    broker started on an empty disk restores all of them."""
    from test_tier import check_manifest, produce_values, value_for, wait_fully_archived, watermarks
    broker = strata_factory("--config", str(tiered_local.config()))
    topic = unique_topic("grow-tier")
    create_topic(broker.bootstrap, topic, 1)
    grow(broker.bootstrap, topic, 3)
    wait_for_partitions(broker.bootstrap, topic, 3)
    produce_values(broker.bootstrap, topic, [value_for("new", i) for i in range(2_000)],
                   partition_of=lambda i: 2)
    wait_fully_archived(broker, tiered_local.archive, topic, [2])
    archived_end = check_manifest(tiered_local.archive, topic, 2)[-1]["end_offset"]
    meta = tiered_local.archive.get(f"{tiered_local.archive.topic_dir(topic)}/topic.yaml")
    assert meta is not None and b"partitions: 3" in meta, meta

    broker.stop()
    shutil.rmtree(broker.data_dir)
    broker.data_dir.mkdir()
    broker.start()
    wait_for_partitions(broker.bootstrap, topic, 3)
    assert watermarks(broker.bootstrap, topic, 2) == (0, archived_end + 1)


def test_running_librdkafka_producer_spreads_over_new_partitions(strata):
    """A producer that knew the topic with 1 partition picks up the new ones on its metadata
    refresh: keyed messages land on every partition afterwards."""
    topic = unique_topic("grow-producer")
    create_topic(strata.bootstrap, topic, 1)
    p = Producer({"bootstrap.servers": strata.bootstrap, "topic.metadata.refresh.interval.ms": 1000})
    partitions: set[int] = set()

    def send(n: int):
        for i in range(n):
            p.produce(topic, b"v", key=f"key-{i}".encode(),
                      on_delivery=lambda err, msg: err is None and partitions.add(msg.partition()))
        p.flush(15)

    send(20)
    assert partitions == {0}
    grow(strata.bootstrap, topic, 4)
    deadline = time.monotonic() + 20
    while partitions != {0, 1, 2, 3} and time.monotonic() < deadline:
        time.sleep(0.5)
        send(20)
    assert partitions == {0, 1, 2, 3}
