"""DeleteRecords (AdminClient.delete_records / Admin.deleteRecords) with real clients.

The log start offset moves to the requested offset (-1: the high watermark) and the answer
carries it as the new low watermark; local segments wholly below it are deleted, archived
ones too (manifest first); the start survives a restart and a kill -9.

- test_delete_records_moves_the_log_start (librdkafka): low watermark reported; ListOffsets
  earliest moves; a consumer from the beginning starts there; a fetch below it is
  OFFSET_OUT_OF_RANGE and a consumer with auto.offset.reset=earliest lands on the start;
  the segment files wholly below it are gone from the data dir; a lower offset changes
  nothing; beyond the high watermark is OFFSET_OUT_OF_RANGE; an unknown partition is
  UNKNOWN_TOPIC_OR_PARTITION; -1 deletes everything up to the high watermark.
- test_log_start_survives_restart_and_kill: after a clean restart and after SIGKILL the start
  is where it was moved to, and consumers still begin there.
- test_idempotent_producer_continues_after_its_records_are_deleted: a producer whose records
  are all deleted goes on with its next sequence numbers (Kafka 4.x keeps its state), its
  messages land once each.
- test_java_admin_delete_records: the Java Admin client's deleteRecords() gets the low
  watermark, beginningOffsets() and a consumer from the beginning see it; an offset beyond
  the end is refused with OffsetOutOfRangeException.
- test_delete_records_in_an_archived_partition: with the local-directory archive, a start
  inside the archived range removes the archived segments wholly below it from the
  manifest, then their objects; the manifest records the start; reads from the start (from
  the archive) and above still work, below is OFFSET_OUT_OF_RANGE; the start survives a
  kill -9, and a broker restored from the archive on an empty disk starts there too.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

import kafka_wire
from clients import create_topic, new_consumer, unique_topic, wait_for
from s3 import tier_config
from test_java import java_command

TIMEOUT = 15.0


def produce(bootstrap: str, topic: str, count: int, prefix: str = "m", size: int = 100, **conf) -> list[int]:
    """`count` messages to partition 0 ("<prefix>-00000"... padded to `size` bytes); their offsets."""
    offsets: list[int] = []
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            offsets.append(msg.offset())

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.num.messages": 10, **conf})
    for i in range(count):
        value = f"{prefix}-{i:05d}".encode().ljust(size, b".")
        while True:
            try:
                p.produce(topic, value=value, partition=0, on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors[:3]
    return offsets


def delete_records(bootstrap: str, topic: str, offset: int, partition: int = 0):
    """AdminClient.delete_records for one partition: the low watermark, or the KafkaError."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records([TopicPartition(topic, partition, offset)], request_timeout=TIMEOUT)
    (future,) = futures.values()
    try:
        return future.result(timeout=TIMEOUT).low_watermark
    except KafkaException as e:
        return e.args[0]


def earliest(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, 0)
    (future,) = admin.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=TIMEOUT).values()
    return future.result(timeout=TIMEOUT).offset


def first_consumed(bootstrap: str, topic: str, offset: int = OFFSET_BEGINNING, **conf):
    """The first message a consumer assigned at `offset` gets (auto.offset.reset=earliest)."""
    c = new_consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                return msg.error()
            return msg
    finally:
        c.close()
    raise AssertionError(f"nothing consumed from {topic} at {offset}")


def fetch_raw(bootstrap: str, topic: str, offset: int) -> dict:
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(kafka_wire.fetch_v4_request(1, topic, 0, offset, max_wait_ms=200))
        _, parts = kafka_wire.parse_fetch_v4_response(kafka_wire.recv_frame(s))
    return parts[0]


ERR_UNKNOWN_TOPIC_OR_PARTITION = 3


def delete_records_raw(bootstrap: str, topic: str, partition: int, offset: int) -> tuple[int, int, int]:
    """DeleteRecords v0 for one partition: (partition, low watermark, error code)."""
    body = struct.pack(">i", 1) + kafka_wire.string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iq", partition, offset) + struct.pack(">i", 5000)
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(kafka_wire.frame(kafka_wire.header_v1(21, 0, 1) + body))
        r = kafka_wire.Reader(kafka_wire.recv_frame(s))
    r.int32()  # correlation id
    r.int32()  # throttle time
    assert r.int32() == 1 and r.string() == topic and r.int32() == 1
    return r.int32(), r.int64(), r.int16()


def local_bases(broker, topic: str) -> list[int]:
    pdir = broker.data_dir / f"{topic}-0"
    return sorted(int(p.name[:20]) for p in pdir.glob("*.log") if re.fullmatch(r"\d{20}\.log", p.name))


def local_broker(strata_factory, tmp_path):
    """A broker without an archive, in 4 KiB segments."""
    config = tier_config(tmp_path, "none", **{"log.segment.bytes": 4096})
    return strata_factory("--config", str(config))


def test_delete_records_moves_the_log_start(strata_factory, tmp_path):
    broker = local_broker(strata_factory, tmp_path)
    topic = unique_topic("delrec")
    create_topic(broker.bootstrap, topic, 1)
    offsets = produce(broker.bootstrap, topic, 400)
    assert sorted(offsets) == list(range(400))
    bases = local_bases(broker, topic)
    assert len(bases) > 4, bases

    cut = 150
    assert delete_records(broker.bootstrap, topic, cut) == cut
    assert earliest(broker.bootstrap, topic) == cut
    msg = first_consumed(broker.bootstrap, topic)
    assert msg.offset() == cut and msg.value().startswith(b"m-00150")
    # Below the start: OFFSET_OUT_OF_RANGE on the wire, and a consumer resets to the start.
    assert fetch_raw(broker.bootstrap, topic, 10)["error_code"] == kafka_wire.ERR_OFFSET_OUT_OF_RANGE
    assert first_consumed(broker.bootstrap, topic, 10).offset() == cut
    err = first_consumed(broker.bootstrap, topic, 10, **{"auto.offset.reset": "error"})
    assert isinstance(err, KafkaError) and err.code() == KafkaError._AUTO_OFFSET_RESET, err
    # Segment files wholly below the start are gone; the one holding it stays.
    left = local_bases(broker, topic)
    assert left[0] <= cut and all(b > cut for b in left[1:]), (bases, left)
    assert left[0] > 0 and not (broker.data_dir / f"{topic}-0" / f"{0:020d}.log").exists()

    # Lower: a no-op answering the current start. Beyond the high watermark: refused.
    assert delete_records(broker.bootstrap, topic, 20) == cut
    err = delete_records(broker.bootstrap, topic, 401)
    assert isinstance(err, KafkaError) and err.code() == KafkaError.OFFSET_OUT_OF_RANGE, err
    assert earliest(broker.bootstrap, topic) == cut
    # librdkafka refuses unknown partitions itself: the broker's answer, on the wire.
    assert delete_records_raw(broker.bootstrap, topic, 3, 5) == (3, -1, ERR_UNKNOWN_TOPIC_OR_PARTITION)
    assert delete_records_raw(broker.bootstrap, "no-such-topic", 0, 5) == (0, -1, ERR_UNKNOWN_TOPIC_OR_PARTITION)
    assert delete_records_raw(broker.bootstrap, topic, 0, -7) == (0, -1, kafka_wire.ERR_OFFSET_OUT_OF_RANGE)

    # -1: everything up to the high watermark; new records are read from there.
    assert delete_records(broker.bootstrap, topic, -1) == 400
    assert earliest(broker.bootstrap, topic) == 400
    assert len(local_bases(broker, topic)) == 1
    produce(broker.bootstrap, topic, 3, prefix="after")
    msg = first_consumed(broker.bootstrap, topic)
    assert msg.offset() == 400 and msg.value().startswith(b"after-00000")


def test_log_start_survives_restart_and_kill(strata_factory, tmp_path):
    broker = local_broker(strata_factory, tmp_path)
    topic = unique_topic("delrec-restart")
    create_topic(broker.bootstrap, topic, 1)
    produce(broker.bootstrap, topic, 300)
    assert delete_records(broker.bootstrap, topic, 120) == 120
    broker.stop()
    broker.start()
    assert earliest(broker.bootstrap, topic) == 120
    assert first_consumed(broker.bootstrap, topic).offset() == 120

    assert delete_records(broker.bootstrap, topic, 205) == 205
    broker.kill()
    broker.start()
    assert earliest(broker.bootstrap, topic) == 205
    assert first_consumed(broker.bootstrap, topic).offset() == 205
    assert fetch_raw(broker.bootstrap, topic, 150)["error_code"] == kafka_wire.ERR_OFFSET_OUT_OF_RANGE
    assert all(b > 205 for b in local_bases(broker, topic)[1:])
    # And it goes on from there.
    assert delete_records(broker.bootstrap, topic, 100) == 205
    produce(broker.bootstrap, topic, 5, prefix="later")
    assert delete_records(broker.bootstrap, topic, 302) == 302


def test_idempotent_producer_continues_after_its_records_are_deleted(strata_factory, tmp_path):
    broker = local_broker(strata_factory, tmp_path)
    topic = unique_topic("delrec-idem")
    create_topic(broker.bootstrap, topic, 1)
    delivered: list[tuple[bytes, int]] = []
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.value(), msg.offset()))

    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i in range(50):
        p.produce(topic, value=f"a-{i}".encode(), partition=0, on_delivery=report)
    assert p.flush(20) == 0
    # Every record of this producer goes; the same producer then goes on with its sequence.
    assert delete_records(broker.bootstrap, topic, -1) == 50
    for i in range(50):
        p.produce(topic, value=f"b-{i}".encode(), partition=0, on_delivery=report)
    assert p.flush(20) == 0
    assert not errors, errors[:3]
    later = sorted(o for v, o in delivered if v.startswith(b"b-"))
    assert later == list(range(50, 100))
    c = new_consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 50 and time.monotonic() < deadline:
            for m in c.consume(100, 0.5):
                if not m.error():
                    got.append(m.value())
    finally:
        c.close()
    assert got == [f"b-{i}".encode() for i in range(50)]


def run_java_delete(classpath: str, bootstrap: str, topic: str, offset: int) -> dict:
    cmd = java_command(classpath, "DeleteRecords", "--bootstrap", bootstrap, "--topic", topic,
                       "--partition", "0", "--offset", str(offset))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"{cmd}: {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def test_java_admin_delete_records(strata_factory, tmp_path, java_classpath):
    broker = local_broker(strata_factory, tmp_path)
    topic = unique_topic("delrec-java")
    create_topic(broker.bootstrap, topic, 1)
    produce(broker.bootstrap, topic, 200)
    out = run_java_delete(java_classpath, broker.bootstrap, topic, 77)
    assert out == {"low_watermark": 77, "beginning": 77, "end": 200, "first_offset": 77}, out
    assert not (broker.data_dir / f"{topic}-0" / f"{0:020d}.log").exists()
    out = run_java_delete(java_classpath, broker.bootstrap, topic, 1_000)
    assert out["error"] == "OffsetOutOfRangeException" and out["beginning"] == 77, out
    out = run_java_delete(java_classpath, broker.bootstrap, topic, -1)
    assert out == {"low_watermark": 200, "beginning": 200, "end": 200, "first_offset": -1}, out


def archive_manifest(root, topic: str) -> dict | None:
    found = list(root.glob(f"strata/{topic}-*/0/manifest.json"))
    return json.loads(found[0].read_text()) if found else None


def archive_objects(root, topic: str) -> set[str]:
    return {p.name for p in root.glob(f"strata/{topic}-*/0/*") if p.name != "manifest.json" and "#" not in p.name}


def test_delete_records_in_an_archived_partition(strata_factory, tmp_path):
    archive = tmp_path / "archive"
    config = tier_config(tmp_path, "local", local_dir=archive, **{
        "log.segment.bytes": 8192,
        "log.local.retention.ms": 500,
        "log.retention.check.interval.ms": 200,
    })
    broker = strata_factory("--config", str(config))
    topic = unique_topic("delrec-tier")
    create_topic(broker.bootstrap, topic, 1)
    produce(broker.bootstrap, topic, 600)

    def archived():
        m = archive_manifest(archive, topic)
        segs = (m or {}).get("segments", [])
        local = local_bases(broker, topic)
        ok = len(segs) >= 5 and segs[-1]["end_offset"] + 1 == local[0] and len(local) == 1
        return ok, (segs and [(s["base_offset"], s["end_offset"]) for s in segs], local)

    wait_for("segments archived and deleted locally", archived)
    segs = archive_manifest(archive, topic)["segments"]
    # A start inside the fourth archived segment: the first three go.
    cut = segs[3]["base_offset"] + 2
    gone = segs[:3]
    assert delete_records(broker.bootstrap, topic, cut) == cut
    assert earliest(broker.bootstrap, topic) == cut

    def manifest_moved():
        m = archive_manifest(archive, topic)
        first = m["segments"][0]
        return first["base_offset"] == segs[3]["base_offset"] and m.get("log_start_offset") == cut, m

    wait_for("the manifest drops the segments below the start", manifest_moved)

    def objects_gone():
        objects = archive_objects(archive, topic)
        left = [s["segment_id"] for s in gone if any(s["segment_id"] in name for name in objects)]
        return not left, (left, sorted(objects))

    # The objects go after the manifest no longer lists them.
    wait_for("the objects below the start are deleted", objects_gone, timeout=10)
    assert any(segs[3]["segment_id"] in name for name in archive_objects(archive, topic))

    # Reads: from the start (in the archive) and above work; below is out of range.
    msg = first_consumed(broker.bootstrap, topic)
    assert msg.offset() == cut and msg.value().startswith(f"m-{cut:05d}".encode())
    assert fetch_raw(broker.bootstrap, topic, cut - 3)["error_code"] == kafka_wire.ERR_OFFSET_OUT_OF_RANGE
    c = new_consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 600 - cut and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if not m.error():
                    got.append(m.offset())
    finally:
        c.close()
    assert got == list(range(cut, 600))

    # After a restart the start and the manifest stay where they were.
    broker.kill()
    broker.start()
    assert earliest(broker.bootstrap, topic) == cut
    assert first_consumed(broker.bootstrap, topic).offset() == cut
    # A broker on an empty disk restores the topic from the archive, with the start the
    # manifest records.
    broker.stop()
    restored = strata_factory("--config", str(config))
    wait_for("the restored topic's start", lambda: (lambda e: (e == cut, e))(earliest(restored.bootstrap, topic)))
    assert first_consumed(restored.bootstrap, topic).offset() == cut
