"""Every compression codec round-trips: keys, values and headers come back exactly."""

import time

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import kafka_wire
from clients import Delivered, consume_partitions, create_topic, produce_all, unique_topic

CODECS = ["gzip", "snappy", "lz4", "zstd"]
CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def compressible_messages(n, tag):
    # repetitive payloads so every codec really shrinks them; one null key and one empty value too
    out = []
    for i in range(n):
        key = None if i == 7 else f"{tag}-key-{i % 13}".encode()
        value = b"" if i == 11 else (f"{tag} value {i:05d} ".encode() * (1 + i % 20))
        headers = [("idx", str(i).encode()), ("codec", tag.encode()), ("empty", b"")]
        out.append((key, value, headers))
    return out


def as_tuples_confluent(msgs):
    return [(m.key(), m.value(), [(k, v) for k, v in (m.headers() or [])]) for m in msgs]


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_round_trips_compressed_batches(strata, codec):
    topic = unique_topic(f"compress-{codec}")
    create_topic(strata.bootstrap, topic, 1)
    sent = compressible_messages(1_000, codec)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": strata.bootstrap, "compression.type": codec,
                         "linger.ms": 20, "batch.num.messages": 200, "acks": "all"})

    produce_all(producer, [(k, v, h) for k, v, h in sent], delivered, topic)
    assert not delivered.failed, f"deliveries failed: {list(delivered.failed.values())[:3]}"

    consumed = consume_partitions(strata.bootstrap, topic, [0], expected=len(sent))[0]
    assert [m.offset() for m in consumed] == list(range(len(sent)))
    assert as_tuples_confluent(consumed) == [(k, v, h) for k, v, h in sent]


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_round_trips_compressed_batches(strata, codec):
    topic = unique_topic(f"kp-compress-{codec}")
    create_topic(strata.bootstrap, topic, 1)
    sent = compressible_messages(500, codec)
    producer = KafkaProducer(bootstrap_servers=strata.bootstrap, compression_type=codec,
                             linger_ms=20, acks="all")
    futures = [producer.send(topic, key=k, value=v, headers=h, partition=0) for k, v, h in sent]
    producer.flush(timeout=30)
    offsets = [f.get(timeout=30).offset for f in futures]
    producer.close()
    assert offsets == list(range(len(sent)))

    consumer = KafkaConsumer(bootstrap_servers=strata.bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    consumer.close()
    assert [r.offset for r in got] == list(range(len(sent)))
    assert [(r.key, r.value, list(r.headers)) for r in got] == [(k, v, h) for k, v, h in sent]

    # and librdkafka reads what kafka-python compressed
    cross = consume_partitions(strata.bootstrap, topic, [0], expected=len(sent))[0]
    assert as_tuples_confluent(cross) == [(k, v, h) for k, v, h in sent]


@pytest.mark.parametrize("codec", CODECS)
def test_segment_on_disk_keeps_the_batches_as_the_producer_compressed_them(strata_factory, codec):
    broker = strata_factory("--flush", "always")
    topic = unique_topic(f"ondisk-{codec}")
    create_topic(broker.bootstrap, topic, 1)
    sent = compressible_messages(300, codec)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec,
                         "linger.ms": 20, "acks": "all"})
    produce_all(producer, sent, delivered, topic)
    assert not delivered.failed
    broker.stop()

    segment = broker.data_dir / f"{topic}-0" / f"{0:020d}.log"
    assert segment.is_file(), f"no {segment.name} in {sorted(p.name for p in broker.data_dir.rglob('*'))}"
    batches = kafka_wire.read_segment_batches(segment)
    assert sum(b["record_count"] for b in batches) == len(sent)
    assert all(b["magic"] == 2 and b["crc_ok"] for b in batches)
    assert {b["compression"] for b in batches} == {CODEC_ID[codec]}
    assert [b["base_offset"] for b in batches] == sorted(b["base_offset"] for b in batches)
