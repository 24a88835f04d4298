"""A clean restart (SIGTERM, start again on the same data dir) keeps data, topic ids and offsets."""

import time

from confluent_kafka import Producer, TopicPartition

from clients import (Delivered, consume_partitions, create_topic, new_consumer, produce_all, topic_id,
                     unique_topic)

PARTITIONS = 2


def produce(bootstrap, topic, start, count):
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    sent = [(f"k{i % 17}".encode(), f"m{i:06d}".encode(), None) for i in range(start, start + count)]
    produce_all(producer, sent, delivered, topic)
    assert not delivered.failed, f"deliveries failed: {list(delivered.failed.values())[:3]}"
    return sent, delivered


def test_messages_topic_id_and_offsets_survive_a_clean_restart(strata):
    topic = unique_topic("restart")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    before_sent, before = produce(strata.bootstrap, topic, 0, 3_000)
    id_before = topic_id(strata.bootstrap, topic)

    strata.stop()        # asserts exit status 0
    strata.start()

    assert topic_id(strata.bootstrap, topic) == id_before
    consumed = consume_partitions(strata.bootstrap, topic, range(PARTITIONS), expected=len(before_sent))
    read = {m.value(): (m.partition(), m.offset(), m.key()) for msgs in consumed.values() for m in msgs}
    assert sum(len(v) for v in consumed.values()) == len(before_sent), "duplicates after restart"
    assert read == {v: (*before.ok[v], k) for k, v, _ in before_sent}

    next_offset = {p: sum(1 for part, _ in before.ok.values() if part == p) for p in range(PARTITIONS)}
    after_sent, after = produce(strata.bootstrap, topic, 3_000, 500)
    for p in range(PARTITIONS):
        new_offsets = sorted(o for part, o in after.ok.values() if part == p)
        assert new_offsets == list(range(next_offset[p], next_offset[p] + len(new_offsets))), (
            f"partition {p}: new offsets {new_offsets[:3]}... do not continue at {next_offset[p]}")

    everything = consume_partitions(strata.bootstrap, topic, range(PARTITIONS),
                                    expected=len(before_sent) + len(after_sent))
    assert sorted(m.value() for msgs in everything.values() for m in msgs) == sorted(
        v for _, v, _ in before_sent + after_sent)


def test_a_topic_created_but_never_written_survives_a_restart(strata):
    topic = unique_topic("restart-empty")
    create_topic(strata.bootstrap, topic, 3)
    id_before = topic_id(strata.bootstrap, topic)

    strata.stop()
    strata.start()

    assert topic_id(strata.bootstrap, topic) == id_before
    _, delivered = produce(strata.bootstrap, topic, 0, 30)
    assert sorted({p for p, _ in delivered.ok.values()}) == [0, 1, 2]
    assert min(o for _, o in delivered.ok.values()) == 0


def test_two_restarts_in_a_row_keep_everything(strata):
    topic = unique_topic("restart-twice")
    create_topic(strata.bootstrap, topic, 1)
    sent1, _ = produce(strata.bootstrap, topic, 0, 200)
    strata.stop()
    strata.start()
    sent2, d2 = produce(strata.bootstrap, topic, 200, 200)
    assert sorted(o for _, o in d2.ok.values()) == list(range(200, 400))
    strata.stop()
    strata.start()

    consumed = consume_partitions(strata.bootstrap, topic, [0], expected=400)[0]
    assert [m.value() for m in consumed] == [v for _, v, _ in sent1 + sent2]
    assert [m.offset() for m in consumed] == list(range(400))


def test_a_log_of_many_segments_survives_restart_and_reads_from_any_offset_are_exact(strata_factory):
    broker = strata_factory("--override", "log.segment.bytes=1048576")
    topic = unique_topic("restart-segments")
    create_topic(broker.bootstrap, topic, 1)
    total = 5_000
    values = [f"{i:06d}|".encode() + bytes([65 + i % 26]) * 1000 for i in range(total)]
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                         "compression.type": "none"})
    produce_all(producer, [(None, v, None) for v in values], delivered, topic)
    assert not delivered.failed
    assert sorted(o for _, o in delivered.ok.values()) == list(range(total))

    partition_dir = broker.data_dir / f"{topic}-0"
    logs = sorted(partition_dir.glob("*.log"))
    assert len(logs) >= 4, f"5 MB in 1 MiB segments should roll several times: {[p.name for p in logs]}"
    for log in logs:
        assert len(log.stem) == 20 and log.stem.isdigit(), f"segment {log.name} not named by its 20-digit base offset"
        for ext in (".index", ".timeindex"):
            assert log.with_suffix(ext).exists(), f"{log.with_suffix(ext).name} missing beside {log.name}"
        assert log.stat().st_size <= 1_048_576 + 100_000, f"{log.name} is {log.stat().st_size} bytes"
    bases = [int(p.stem) for p in logs]
    assert bases[0] == 0 and bases == sorted(bases)

    broker.stop()
    broker.start()

    probes = sorted({0, 1, 1234, 2500, total - 1, *bases, *(b - 1 for b in bases[1:]), *(b + 1 for b in bases)})
    consumer = new_consumer(broker.bootstrap)
    try:
        for offset in probes:
            consumer.assign([TopicPartition(topic, 0, offset)])
            deadline = time.monotonic() + 10
            while True:
                msg = consumer.poll(0.5)
                if msg is not None and not msg.error():
                    break
                assert time.monotonic() < deadline, f"nothing read from offset {offset}"
            assert (msg.offset(), msg.value()) == (offset, values[offset]), (
                f"asked for offset {offset}, got offset {msg.offset()} value {msg.value()[:7]!r}")
            consumer.unassign()
    finally:
        consumer.close()

    everything = consume_partitions(broker.bootstrap, topic, [0], expected=total)[0]
    assert [m.value() for m in everything] == values
