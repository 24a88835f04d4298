"""Crashes: kill -9 mid-stream loses no acknowledged message and duplicates none; a torn tail is cut off.

What a start-up trusts without checking is what each partition's `recovery-point` file
vouches for: `flush: interval` moves it to the log end every `flush_interval_ms`, one
partition at a time or (many dirty partitions) with one sync of the file system; `flush: os`
leaves the active segment to the page cache and moves it only on shutdown.
"""

import pathlib
import random
import struct
import time
from collections import Counter

import pytest
from confluent_kafka import Producer

import kafka_wire
from clients import (Delivered, consume_partitions, create_topic, high_watermarks, produce_all,
                     produce_and_read_back_one, unique_topic)

PARTITIONS = 3


def test_every_acknowledged_message_survives_kill_9_exactly_once(strata_factory):
    broker = strata_factory("--flush", "always")
    topic = unique_topic("crash")
    create_topic(broker.bootstrap, topic, PARTITIONS)

    delivered = Delivered()
    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        "message.timeout.ms": 30000,
        "reconnect.backoff.max.ms": 500,
    })
    produced = 0
    killed_at_acked = None
    start = time.monotonic()
    # produce continuously; kill the broker ~2 s in while messages are in flight; keep producing a little
    while time.monotonic() - start < 2.5:
        try:
            producer.produce(topic, key=f"k{produced % 50}".encode(), value=f"crash-{produced:08d}".encode(),
                             on_delivery=delivered.callback)
            produced += 1
        except BufferError:
            producer.poll(0.01)
            continue
        producer.poll(0)
        if killed_at_acked is None and time.monotonic() - start >= 2.0:
            broker.kill()
            killed_at_acked = len(delivered.ok)
    assert killed_at_acked is not None
    assert killed_at_acked > 100, f"only {killed_at_acked} messages acknowledged in 2 s before the kill"

    broker.start()
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} messages neither delivered nor failed 60 s after restart"

    acked = set(delivered.ok)
    print(f"produced {produced}, acknowledged {killed_at_acked} before the kill and {len(acked)} in all, "
          f"{len(delivered.failed)} failed")
    consumed = consume_partitions(broker.bootstrap, topic, range(PARTITIONS), timeout=60)
    values = [m.value() for msgs in consumed.values() for m in msgs]
    duplicates = sorted(v for v, n in Counter(values).items() if n > 1)
    assert not duplicates, f"{len(duplicates)} messages stored more than once, e.g. {duplicates[:5]}"
    missing = acked - set(values)
    assert not missing, (f"{len(missing)} of {len(acked)} acknowledged messages lost after kill -9 "
                         f"(e.g. {sorted(missing)[:5]})")
    # the broker reported each acknowledged message at the offset where it is now stored
    stored_at = {m.value(): (p, m.offset()) for p, msgs in consumed.items() for m in msgs}
    wrong = [v for v in acked if stored_at[v] != delivered.ok[v]]
    assert not wrong, f"{len(wrong)} acknowledged messages at another offset than acknowledged, e.g. " + \
        ", ".join(f"{v!r}: acked {delivered.ok[v]}, stored {stored_at[v]}" for v in sorted(wrong)[:3])
    for p, msgs in consumed.items():
        order = [int(m.value().split(b"-")[1]) for m in msgs]
        assert order == sorted(order), f"partition {p}: messages out of produce order after recovery"

    produce_and_read_back_one(broker.bootstrap, topic, b"after-the-crash")


def tear(segment, how):
    """Append what a write cut short by a power loss could leave behind."""
    data = segment.read_bytes()
    last = kafka_wire.read_segment_batches(segment)[-1]
    start = len(data) - 12 - last["length"]
    whole = bytearray(data[start:])
    next_base = last["base_offset"] + last["last_offset_delta"] + 1
    whole[0:8] = struct.pack(">q", next_base)
    if how == "half a batch":
        tail = bytes(whole[: len(whole) // 2])
    elif how == "a batch header only":
        tail = bytes(whole[:40])
    elif how == "a whole batch with a bad CRC":
        whole[-3] ^= 0xFF
        tail = bytes(whole)
    else:  # random bytes
        tail = random.Random(7).randbytes(3000)
    with open(segment, "ab") as f:
        f.write(tail)


@pytest.mark.parametrize("how", ["half a batch", "a batch header only", "a whole batch with a bad CRC", "random bytes"])
def test_a_torn_write_at_the_end_of_the_log_is_cut_off_at_restart(strata_factory, how):
    broker = strata_factory("--flush", "always")
    topic = unique_topic("torn")
    create_topic(broker.bootstrap, topic, 1)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 10})
    produce_all(producer, [(None, f"torn-{i:04d}".encode(), None) for i in range(200)], delivered, topic)
    assert sorted(o for _, o in delivered.ok.values()) == list(range(200))
    broker.kill()

    segment = broker.data_dir / f"{topic}-0" / f"{0:020d}.log"
    tear(segment, how)
    broker.start()

    consumed = consume_partitions(broker.bootstrap, topic, [0], timeout=30)[0]
    assert [(m.offset(), m.value()) for m in consumed] == [(i, f"torn-{i:04d}".encode()) for i in range(200)]
    produce_and_read_back_one(broker.bootstrap, topic, b"after-the-torn-write")
    assert high_watermarks(broker.bootstrap, topic, [0]) == {0: 201}
    assert all(b["crc_ok"] for b in kafka_wire.read_segment_batches(segment)), "corrupt batch left in the log"


def recovery_points(broker, topic, partitions):
    def read(p):
        path = pathlib.Path(broker.data_dir) / f"{topic}-{p}" / "recovery-point"
        return int(path.read_text()) if path.exists() else 0
    return [read(p) for p in range(partitions)]


@pytest.mark.parametrize("flush", ["interval", "os"])
def test_flush_interval_moves_the_recovery_point_to_the_log_end(strata_factory, flush):
    broker = strata_factory("--flush", flush, "--override", "flush_interval_ms=200")
    # one partition on its own (an fsync per file) and twelve at once (one sync of the file system)
    few, many = unique_topic("flush-one"), unique_topic("flush-many")
    create_topic(broker.bootstrap, few, 1)
    create_topic(broker.bootstrap, many, 12)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for topic, partitions in ((few, 1), (many, 12)):
        for p in range(partitions):
            for i in range(20):
                producer.produce(topic, value=f"{topic}-{p}-{i}".encode(), partition=p)
    assert producer.flush(30) == 0
    ends = {few: [20], many: [20] * 12}
    for topic, end in ends.items():
        assert list(high_watermarks(broker.bootstrap, topic, range(len(end))).values()) == end

    if flush == "interval":
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if all(recovery_points(broker, t, len(e)) == e for t, e in ends.items()):
                break
            time.sleep(0.2)
        for topic, end in ends.items():
            assert recovery_points(broker, topic, len(end)) == end, topic
    else:
        time.sleep(2)  # ten flush intervals, were it flushing
        for topic, end in ends.items():
            assert recovery_points(broker, topic, len(end)) == [0] * len(end), topic
    broker.stop()  # a clean shutdown flushes everything, whatever the policy
    for topic, end in ends.items():
        assert recovery_points(broker, topic, len(end)) == end, topic
