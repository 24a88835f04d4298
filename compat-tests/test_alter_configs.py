"""AlterConfigs and IncrementalAlterConfigs as admin clients use them, and their effect.

- test_incremental_set_delete_append_subtract: confluent-kafka changes a topic's configs one key
  at a time (SET, DELETE, APPEND and SUBTRACT on cleanup.policy); validate_only changes nothing;
  bad values are INVALID_CONFIG naming the key; APPEND on a non-list is INVALID_CONFIG; an unknown
  topic is UNKNOWN_TOPIC_OR_PARTITION.
- test_alter_configs_replaces_the_whole_set: the legacy AlterConfigs drops what it does not name.
- test_segment_size_and_retention_take_effect: segment.bytes lowered -> the log rolls; retention.ms
  lowered -> old segments go and the earliest offset moves, without a restart.
- test_max_message_bytes_lowered_refuses_big_batches: produce gets MESSAGE_TOO_LARGE.
- test_timestamp_type_and_remote_storage: message.timestamp.type switched to LogAppendTime stamps
  the next messages with the broker's time; remote.storage.enable may be turned on, and off only
  with remote.log.delete.on.disable=true (Kafka's refusal otherwise).
- test_broker_defaults_apply_and_survive_a_restart: the cluster-wide default (empty broker name)
  and this broker's own value change a topic without an override, with Kafka's sources and
  synonym order; read-only broker configs are INVALID_REQUEST; after a kill -9 and a restart
  every value and source is the same.
- test_java_alter_configs: java/AlterConfigs.java, the Java Admin client's incrementalAlterConfigs()
  and describeConfigs(): the same operations, the cluster-wide default resource listing only what
  was set, all four synonyms of a topic config in Kafka's order, group configs as GROUP_CONFIG.
- test_group_session_timeout: a group's consumer.session.timeout.ms (KIP-848) bounded by the
  broker's min/max, and used: a killed member leaves the group after it, not after 45 s.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic, ResourceType)

import kafka_wire as kw
from clients import first_message, new_consumer, tail, unique_topic, wait_for_partitions, wait_until
from test_java import java_command

S = ConfigSource


_ADMINS: dict[str, AdminClient] = {}


@pytest.fixture(autouse=True)
def _drop_admins():
    yield
    _ADMINS.clear()


def admin(bootstrap: str) -> AdminClient:
    """One client per broker, kept alive: a client destroyed before its futures resolve fails them."""
    if bootstrap not in _ADMINS:
        _ADMINS[bootstrap] = AdminClient({"bootstrap.servers": bootstrap})
    return _ADMINS[bootstrap]


def make_topic(bootstrap: str, prefix: str, config: dict | None = None) -> str:
    topic = unique_topic(prefix)
    admin(bootstrap).create_topics([NewTopic(topic, 1, 1, config=config or {})])[topic].result(timeout=15)
    wait_for_partitions(bootstrap, topic, 1)
    return topic


def describe(bootstrap: str, resource: ConfigResource) -> dict:
    return admin(bootstrap).describe_configs([resource], request_timeout=15)[resource].result(timeout=20)


def incremental(bootstrap: str, rtype, name: str, ops: list[tuple], validate_only: bool = False):
    entries = [ConfigEntry(k, v, incremental_operation=op) for k, v, op in ops]
    resource = ConfigResource(rtype, name, incremental_configs=entries)
    fut = admin(bootstrap).incremental_alter_configs([resource], validate_only=validate_only,
                                                     request_timeout=15)[resource]
    return fut.result(timeout=20)


def refused(call) -> KafkaError:
    with pytest.raises(KafkaException) as e:
        call()
    return e.value.args[0]


def incremental_raw(bootstrap: str, rtype: int, name: str, ops: list[tuple]) -> tuple[int, str | None]:
    """IncrementalAlterConfigs v0 on the wire, for what confluent-kafka cannot name (the empty
    broker name of the cluster-wide default). Returns the resource's (error code, message)."""
    configs = b"".join(kw.string(k) + struct.pack(">b", op.value) + kw.string(v) for k, v, op in ops)
    body = (struct.pack(">i", 1) + struct.pack(">b", rtype) + kw.string(name) + struct.pack(">i", len(ops))
            + configs + struct.pack(">b", 0))
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(kw.frame(kw.header_v1(44, 0, 7) + body))
        r = kw.Reader(kw.recv_frame(sock))
        assert r.int32() == 7
        r.int32()  # throttle
        assert r.int32() == 1
        code, message = r.int16(), r.string()
        assert (r.int8(), r.string()) == (rtype, name)
        return code, message


SET, DELETE, APPEND, SUBTRACT = (AlterConfigOpType.SET, AlterConfigOpType.DELETE, AlterConfigOpType.APPEND,
                                 AlterConfigOpType.SUBTRACT)


def test_incremental_set_delete_append_subtract(strata):
    b = strata.bootstrap
    topic = make_topic(b, "alter-inc")
    res = ConfigResource(ResourceType.TOPIC, topic)

    incremental(b, ResourceType.TOPIC, topic, [("retention.ms", "3600000", SET),
                                               ("cleanup.policy", "compact", APPEND)])
    c = describe(b, res)
    assert (c["retention.ms"].value, c["retention.ms"].source) == ("3600000", S.DYNAMIC_TOPIC_CONFIG.value)
    assert c["cleanup.policy"].value == "delete,compact"

    incremental(b, ResourceType.TOPIC, topic, [("cleanup.policy", "delete", SUBTRACT)])
    assert describe(b, res)["cleanup.policy"].value == "compact"

    incremental(b, ResourceType.TOPIC, topic, [("retention.ms", None, DELETE), ("cleanup.policy", None, DELETE)])
    c = describe(b, res)
    assert (c["retention.ms"].value, c["retention.ms"].source) == ("604800000", S.DEFAULT_CONFIG.value)
    assert (c["cleanup.policy"].value, c["cleanup.policy"].source) == ("delete", S.DEFAULT_CONFIG.value)

    # validate_only: checked, not applied
    incremental(b, ResourceType.TOPIC, topic, [("retention.ms", "1000", SET)], validate_only=True)
    assert describe(b, res)["retention.ms"].value == "604800000"

    for key, value in [("retention.ms", "-5"), ("cleanup.policy", "forever"),
                       ("message.timestamp.type", "WallClock"), ("max.message.bytes", "lots"),
                       ("segment.bytes", "1000"), ("no.such.config", "1")]:
        err = refused(lambda: incremental(b, ResourceType.TOPIC, topic, [(key, value, SET)]))
        assert err.code() == KafkaError.INVALID_CONFIG, (key, err)
        assert key in err.str(), (key, err.str())
    err = refused(lambda: incremental(b, ResourceType.TOPIC, topic, [("retention.ms", "5", APPEND)]))
    assert err.code() == KafkaError.INVALID_CONFIG and "retention.ms" in err.str()
    assert describe(b, res)["retention.ms"].source == S.DEFAULT_CONFIG.value

    err = refused(lambda: incremental(b, ResourceType.TOPIC, unique_topic("no-such"),
                                      [("retention.ms", "1000", SET)]))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")  # the legacy API is the point here
def test_alter_configs_replaces_the_whole_set(strata):
    b = strata.bootstrap
    topic = make_topic(b, "alter-legacy", {"retention.ms": "3600000", "segment.ms": "600000"})
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"max.message.bytes": "500000"})
    admin(b).alter_configs([res], request_timeout=15)[res].result(timeout=20)
    c = describe(b, ConfigResource(ResourceType.TOPIC, topic))
    assert (c["max.message.bytes"].value, c["max.message.bytes"].source) == ("500000", S.DYNAMIC_TOPIC_CONFIG.value)
    assert c["retention.ms"].source == S.DEFAULT_CONFIG.value
    assert c["segment.ms"].source == S.DEFAULT_CONFIG.value

    bad = ConfigResource(ResourceType.TOPIC, topic, set_config={"message.timestamp.type": "Later"})
    err = refused(lambda: admin(b).alter_configs([bad], request_timeout=15)[bad].result(timeout=20))
    assert err.code() == KafkaError.INVALID_CONFIG and "message.timestamp.type" in err.str()


def test_timestamp_type_and_remote_storage(strata):
    b = strata.bootstrap
    topic = make_topic(b, "alter-ts")
    incremental(b, ResourceType.TOPIC, topic, [("message.timestamp.type", "LogAppendTime", SET)])
    producer = Producer({"bootstrap.servers": b})
    producer.produce(topic, b"v", timestamp=1_000_000)
    assert producer.flush(15) == 0
    msg = first_message(b, topic, 0)
    assert msg is not None
    ts_type, ts = msg.timestamp()
    assert ts_type == 2  # TIMESTAMP_LOG_APPEND_TIME
    assert abs(ts - time.time() * 1000) < 60_000

    # archived by default (tier.store local): turning it off needs the delete flag
    def archived():
        return list((strata.data_dir / "tier").rglob(f"{topic}-*/topic.yaml"))
    wait_until(lambda: archived(), 15, "the topic's metadata in the archive")
    err = refused(lambda: incremental(b, ResourceType.TOPIC, topic, [("remote.storage.enable", "false", SET)]))
    assert err.code() == KafkaError.INVALID_CONFIG
    assert "remote.log.delete.on.disable=true" in err.str()
    incremental(b, ResourceType.TOPIC, topic, [("remote.storage.enable", "false", SET),
                                               ("remote.log.delete.on.disable", "true", SET)])
    c = describe(b, ConfigResource(ResourceType.TOPIC, topic))
    assert c["remote.storage.enable"].value == "false"
    assert archived() == []  # the archived data went with it
    incremental(b, ResourceType.TOPIC, topic, [("remote.storage.enable", "true", SET)])
    assert describe(b, ConfigResource(ResourceType.TOPIC, topic))["remote.storage.enable"].value == "true"
    wait_until(lambda: archived(), 15, "the topic archived again")


def segment_files(broker, topic: str) -> list:
    return sorted((broker.data_dir / f"{topic}-0").glob("*.log"))


def test_segment_size_and_retention_take_effect(strata_factory):
    broker = strata_factory("--override", "tier.store=none", "--override", "log.retention.check.interval.ms=200")
    b = broker.bootstrap
    topic = make_topic(b, "alter-effect")
    incremental(b, ResourceType.TOPIC, topic, [("segment.bytes", str(1024 * 1024), SET)])

    producer = Producer({"bootstrap.servers": b, "linger.ms": 5})
    value = b"x" * 10_000
    for _ in range(300):  # about 3 MB: at least two rolls at 1 MiB
        producer.produce(topic, value)
    assert producer.flush(30) == 0
    assert len(segment_files(broker, topic)) >= 3, segment_files(broker, topic)

    tp = TopicPartition(topic, 0)
    consumer = new_consumer(b)
    try:
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        assert (low, high) == (0, 300)
        incremental(b, ResourceType.TOPIC, topic, [("retention.ms", "1", SET)])

        def moved():
            return consumer.get_watermark_offsets(tp, timeout=10)[0] > 0
        wait_until(moved, 15, "the earliest offset to move past the expired segments")
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        assert 0 < low < high == 300
        assert len(segment_files(broker, topic)) == 1
    finally:
        consumer.close()


def test_max_message_bytes_lowered_refuses_big_batches(strata):
    b = strata.bootstrap
    topic = make_topic(b, "alter-max")
    errors = []

    def produce(size):
        p = Producer({"bootstrap.servers": b, "retries": 0, "compression.type": "none"})
        p.produce(topic, b"y" * size, on_delivery=lambda err, msg: errors.append(err))
        p.flush(15)

    produce(5000)
    assert errors == [None]
    incremental(b, ResourceType.TOPIC, topic, [("max.message.bytes", "1000", SET)])
    errors.clear()
    produce(5000)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors[0]
    errors.clear()
    produce(200)
    assert errors == [None]


def test_broker_defaults_apply_and_survive_a_restart(strata_factory):
    broker = strata_factory("--override", "log.retention.ms=3600000")
    b = broker.bootstrap
    plain = make_topic(b, "alter-default")
    own = make_topic(b, "alter-own", {"retention.ms": "1234567"})
    incremental(b, ResourceType.TOPIC, own, [("segment.ms", "600000", SET)])

    # the cluster-wide default (the empty broker name); Java's AdminClient describes it in test_java_alter_configs
    assert incremental_raw(b, 4, "", [("log.retention.ms", "7200000", SET),
                                      ("log.segment.bytes", str(2 * 1024 * 1024), SET)]) == (0, None)

    incremental(b, ResourceType.BROKER, "0", [("log.retention.ms", "10800000", SET)])

    def check():
        t = describe(b, ConfigResource(ResourceType.TOPIC, plain))
        ret = t["retention.ms"]
        assert (ret.value, ret.source) == ("10800000", S.DYNAMIC_BROKER_CONFIG.value)
        # confluent-kafka keys synonyms by name, so only Java sees all four (test_java_alter_configs)
        assert "log.retention.ms" in ret.synonyms
        seg = t["segment.bytes"]
        assert (seg.value, seg.source) == (str(2 * 1024 * 1024), S.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
        o = describe(b, ConfigResource(ResourceType.TOPIC, own))
        assert (o["retention.ms"].value, o["retention.ms"].source) == ("1234567", S.DYNAMIC_TOPIC_CONFIG.value)
        assert (o["segment.ms"].value, o["segment.ms"].source) == ("600000", S.DYNAMIC_TOPIC_CONFIG.value)
        br = describe(b, ConfigResource(ResourceType.BROKER, "0"))
        assert (br["log.retention.ms"].value, br["log.retention.ms"].source) == (
            "10800000", S.DYNAMIC_BROKER_CONFIG.value)
        assert br["log.segment.bytes"].source == S.DYNAMIC_DEFAULT_BROKER_CONFIG.value

    check()
    err = refused(lambda: incremental(b, ResourceType.BROKER, "0", [("num.partitions", "3", SET)]))
    assert err.code() == KafkaError.INVALID_REQUEST and "num.partitions" in err.str()
    code, message = incremental_raw(b, 4, "7", [("log.retention.ms", "1", SET)])
    assert code == KafkaError.INVALID_REQUEST and "Unexpected broker id" in message
    code, message = incremental_raw(b, 4, "", [("log.retention.ms", "-9", SET)])
    assert code == KafkaError.INVALID_REQUEST and "log.retention.ms" in message

    broker.kill()  # kill -9: the changes were on disk before they were acknowledged
    broker.start()
    check()

    incremental(b, ResourceType.BROKER, "0", [("log.retention.ms", None, DELETE)])
    ret = describe(b, ConfigResource(ResourceType.TOPIC, plain))["retention.ms"]
    assert (ret.value, ret.source) == ("7200000", S.DYNAMIC_DEFAULT_BROKER_CONFIG.value)


MEMBER = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "group.protocol": "consumer",
              "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.2)
    if c.assignment():
        print("assigned", flush=True)
"""


def members(b: str, group: str) -> int:
    d = admin(b).describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    return len(d.members)


def test_group_session_timeout(strata_factory, tmp_path):
    broker = strata_factory("--override", "group.consumer.min.session.timeout.ms=1000",
                            "--override", "group.consumer.heartbeat.interval.ms=500",
                            "--override", "group.consumer.min.heartbeat.interval.ms=100")
    b = broker.bootstrap
    topic = make_topic(b, "alter-group")
    group = unique_topic("alter-group-g")

    err = refused(lambda: incremental(b, ResourceType.GROUP, group,
                                      [("consumer.session.timeout.ms", "500", SET)]))
    assert err.code() == KafkaError.INVALID_CONFIG and "consumer.session.timeout.ms" in err.str()
    err = refused(lambda: incremental(b, ResourceType.GROUP, group, [("no.such", "1", SET)]))
    assert err.code() == KafkaError.INVALID_CONFIG

    incremental(b, ResourceType.GROUP, group, [("consumer.session.timeout.ms", "2000", SET)])
    broker.stop()
    broker.start()  # the group's config survives a restart
    c = describe(b, ConfigResource(ResourceType.GROUP, group))
    assert c["consumer.session.timeout.ms"].value == "2000"
    assert c["consumer.session.timeout.ms"].source == 8  # DYNAMIC_GROUP_CONFIG
    assert c["consumer.heartbeat.interval.ms"].value == "500"

    script = tmp_path / "member.py"
    script.write_text(MEMBER)
    proc = subprocess.Popen([sys.executable, str(script), b, group, topic], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "assigned"
        assert members(b, group) == 1
        proc.kill()
        proc.wait(10)
        killed = time.monotonic()
        wait_until(lambda: members(b, group) == 0, 15, "the killed member's session to time out")
        assert time.monotonic() - killed < 10  # the broker default (45 s) would still hold it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


def test_java_alter_configs(strata, java_classpath):  # noqa: F811
    cmd = java_command(java_classpath, "AlterConfigs", "--bootstrap", strata.bootstrap,
                       "--topic", unique_topic("alter-java"), "--group", unique_topic("alter-java-g"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no summary\nstdout:\n{tail(proc.stdout)}\nstderr:\n{tail(proc.stderr)}"
    summary = json.loads(lines[-1])
    assert summary["ok"] and proc.returncode == 0, f"{summary}\nstderr:\n{tail(proc.stderr)}"
    assert summary["steps"] >= 15, summary


def test_compaction_and_explicit_remote_storage_exclude_each_other(strata):
    """As Kafka: a topic with remote.storage.enable=true cannot be made compacted, nor a
    compacted one archived; a topic archived only by the broker's default may become
    compacted and then leaves the archive alone."""
    b = strata.bootstrap
    topic = make_topic(b, "alter-compact")
    err = refused(lambda: incremental(b, ResourceType.TOPIC, topic, [("remote.storage.enable", "true", SET),
                                                                      ("cleanup.policy", "compact", SET)]))
    assert err.code() == KafkaError.INVALID_CONFIG
    assert "cleanup.policy=delete" in err.str()
    incremental(b, ResourceType.TOPIC, topic, [("cleanup.policy", "compact", SET)])
    assert describe(b, ConfigResource(ResourceType.TOPIC, topic))["cleanup.policy"].value == "compact"
    err = refused(lambda: incremental(b, ResourceType.TOPIC, topic, [("remote.storage.enable", "true", SET)]))
    assert err.code() == KafkaError.INVALID_CONFIG
