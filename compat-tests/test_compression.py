"""Every compression codec round-trips: keys, values and headers come back exactly.

Where the broker looks inside compressed batches, it does with every codec:
- ListOffsets by timestamp and MAX_TIMESTAMP answer the exact record inside a compressed
  batch (confluent-kafka's offsets_for_times and AdminClient.list_offsets, the Java client's
  offsetsForTimes and Admin.listOffsets), and not past the last stable offset for
  read_committed;
- a LogAppendTime topic stamps compressed batches (attribute and max timestamp only, the
  records stay as compressed) and every record reads back with the broker's time;
- a topic's compression.type other than `producer` recompresses batches on append into its
  codec, keeping the producer id, epoch, sequence and transactional bit;
- zstd needs Produce v7 and (for a zstd topic) Fetch v10.

And Kafka's own record code (kafka-clients' MemoryRecords, java/ReadSegments.java) reads the
segment files Strata writes: every batch's CRC holds, every codec decodes, transaction
markers are control batches, and the records are the ones acknowledged.
"""

import json
import pathlib
import socket
import subprocess
import time
import uuid

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, IsolationLevel, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import kafka_wire
from clients import (Delivered, consume_partitions, create_topic, new_consumer, produce_all, program_report,
                     unique_topic, wait_for_partitions)
from test_java import java_command, run_produce_consume

CODECS = ["gzip", "snappy", "lz4", "zstd"]
CODEC_ID = {"none": 0, "uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
BASE_TS = 1_700_000_000_000  # fixed record timestamps, so that every lookup has one exact answer
TESTDATA = pathlib.Path(__file__).resolve().parent.parent / "src" / "log" / "testdata"


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


def read_kafka_python(bootstrap, topic, expected, timeout=30.0):
    """kafka-python's records of partition 0 from the beginning, until `expected` or the timeout."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    consumer.close()
    return got


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

    got = read_kafka_python(strata.bootstrap, topic, len(sent))
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
    # a long linger gathers the messages into a few large batches: librdkafka sends a batch
    # uncompressed when compressing would make it bigger (a lone small message)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec,
                         "linger.ms": 200, "acks": "all"})
    produce_all(producer, sent, delivered, topic)
    assert not delivered.failed
    broker.stop()

    segment = broker.data_dir / f"{topic}-0" / f"{0:020d}.log"
    assert segment.is_file(), f"no {segment.name} in {sorted(p.name for p in broker.data_dir.rglob('*'))}"
    batches = kafka_wire.read_segment_batches(segment)
    assert sum(b["record_count"] for b in batches) == len(sent)
    assert all(b["magic"] == 2 and b["crc_ok"] for b in batches)
    assert {b["compression"] for b in batches if b["record_count"] > 1} == {CODEC_ID[codec]}
    assert [b["base_offset"] for b in batches] == sorted(b["base_offset"] for b in batches)


# ----------------------------------------------------------------------------- looking inside batches

def create_topic_with(bootstrap, topic, config):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)])[topic].result(15)
    wait_for_partitions(bootstrap, topic, 1)


def produce_one_batch(bootstrap, topic, codec, timestamps, **conf):
    """Sends one record per timestamp; linger.ms keeps them in one batch."""
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 500, **conf})
    delivered = Delivered()
    for i, ts in enumerate(timestamps):
        producer.produce(topic, key=f"k{i}".encode(), value=f"record {i} ".encode() * 20, partition=0,
                         timestamp=ts, on_delivery=delivered.callback)
    assert producer.flush(30) == 0
    assert not delivered.failed, list(delivered.failed.values())[:3]
    return delivered


def list_offsets(bootstrap, topic, spec, isolation=IsolationLevel.READ_UNCOMMITTED):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = CTopicPartition(topic, 0)
    info = admin.list_offsets({tp: spec}, isolation_level=isolation, request_timeout=15)[tp].result(15)
    return info.offset, info.timestamp


def segment_batches(broker, topic):
    return kafka_wire.read_segment_batches(broker.data_dir / f"{topic}-0" / f"{0:020d}.log")


def mid_batch_timestamps(n=20, max_at=12):
    """BASE + 10*i, except one record in the middle that carries the largest timestamp."""
    ts = [BASE_TS + 10 * i for i in range(n)]
    ts[max_at] = BASE_TS + 1_000_000
    return ts


@pytest.mark.parametrize("codec", CODECS)
def test_timestamp_lookups_find_the_record_inside_a_compressed_batch(strata, codec):
    topic = unique_topic(f"ts-{codec}")
    create_topic(strata.bootstrap, topic, 1)
    produce_one_batch(strata.bootstrap, topic, codec, mid_batch_timestamps())
    batches = segment_batches(strata, topic)
    assert [(b["compression"], b["record_count"]) for b in batches] == [(CODEC_ID[codec], 20)]

    consumer = new_consumer(strata.bootstrap)
    try:
        for target, want in [(BASE_TS, 0), (BASE_TS + 50, 5), (BASE_TS + 55, 6), (BASE_TS + 115, 12),
                             (BASE_TS + 1_000_001, -1)]:
            got = consumer.offsets_for_times([CTopicPartition(topic, 0, target)], timeout=10)[0]
            assert (target - BASE_TS, got.offset) == (target - BASE_TS, want)
    finally:
        consumer.close()
    assert list_offsets(strata.bootstrap, topic, OffsetSpec.for_timestamp(BASE_TS + 70)) == (7, BASE_TS + 70)
    assert list_offsets(strata.bootstrap, topic, OffsetSpec.max_timestamp()) == (12, BASE_TS + 1_000_000)


def test_timestamp_lookups_stop_at_the_last_stable_offset_for_read_committed(strata):
    topic = unique_topic("ts-lso")
    create_topic(strata.bootstrap, topic, 1)
    produce_one_batch(strata.bootstrap, topic, "lz4", [BASE_TS + 10 * i for i in range(5)])  # offsets 0-4
    txn = Producer({"bootstrap.servers": strata.bootstrap, "transactional.id": f"ts-lso-{uuid.uuid4().hex[:8]}",
                    "compression.type": "zstd", "linger.ms": 100})
    txn.init_transactions(15)
    txn.begin_transaction()
    for i in range(5):  # offsets 5-9, left open
        txn.produce(topic, value=f"open {i} ".encode() * 20, partition=0, timestamp=BASE_TS + 100 + 10 * i)
    assert txn.flush(15) == 0
    committed = IsolationLevel.READ_COMMITTED
    b = strata.bootstrap
    assert list_offsets(b, topic, OffsetSpec.for_timestamp(BASE_TS + 20), committed) == (2, BASE_TS + 20)
    assert list_offsets(b, topic, OffsetSpec.for_timestamp(BASE_TS + 120), committed) == (-1, -1)
    assert list_offsets(b, topic, OffsetSpec.max_timestamp(), committed) == (-1, -1)
    assert list_offsets(b, topic, OffsetSpec.for_timestamp(BASE_TS + 120)) == (7, BASE_TS + 120)
    assert list_offsets(b, topic, OffsetSpec.max_timestamp()) == (9, BASE_TS + 140)
    txn.commit_transaction(15)
    assert list_offsets(b, topic, OffsetSpec.for_timestamp(BASE_TS + 120), committed) == (7, BASE_TS + 120)
    # the commit marker (stamped now) holds the largest timestamp now, as in Kafka; both views agree
    assert list_offsets(b, topic, OffsetSpec.max_timestamp(), committed) == \
        list_offsets(b, topic, OffsetSpec.max_timestamp())


def test_java_timestamp_lookups_inside_a_snappy_batch(strata, java_classpath):
    topic = unique_topic("ts-java")
    create_topic(strata.bootstrap, topic, 1)
    cmd = java_command(java_classpath, "OffsetsForTimes", "--bootstrap", strata.bootstrap, "--topic", topic,
                       "--compression", "snappy", "--count", "20", "--base-ts", str(BASE_TS),
                       "--max-at", "12", "--query", "5")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, program_report(cmd, proc, None, "client log")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["offsets"] == list(range(20))
    assert [(b["compression"], b["record_count"]) for b in segment_batches(strata, topic)] == [(2, 20)]
    assert (out["consumer_offset"], out["consumer_timestamp"]) == (5, BASE_TS + 50)
    assert out["admin_offset"] == 5
    assert (out["max_offset"], out["max_timestamp"]) == (12, BASE_TS + 1_000_000)


@pytest.mark.parametrize("codec", CODECS)
def test_log_append_time_stamps_a_compressed_batch_for_every_record(strata, codec):
    topic = unique_topic(f"lat-{codec}")
    create_topic_with(strata.bootstrap, topic, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_one_batch(strata.bootstrap, topic, codec, [BASE_TS + i for i in range(10)])
    after = int(time.time() * 1000)

    [batch] = segment_batches(strata, topic)
    assert batch["compression"] == CODEC_ID[codec] and batch["crc_ok"]
    assert batch["attributes"] & 0x08, "timestamp type bit"
    assert before <= batch["max_timestamp"] <= after
    assert batch["base_timestamp"] == BASE_TS  # the records were not rewritten
    msgs = consume_partitions(strata.bootstrap, topic, [0], expected=10)[0]
    assert [m.timestamp() for m in msgs] == [(TIMESTAMP_LOG_APPEND_TIME, batch["max_timestamp"])] * 10
    assert [m.value() for m in msgs] == [f"record {i} ".encode() * 20 for i in range(10)]
    # the producer's create times are gone: a lookup sees the append time
    assert list_offsets(strata.bootstrap, topic, OffsetSpec.for_timestamp(BASE_TS + 5)) == (0, batch["max_timestamp"])


@pytest.mark.parametrize("topic_codec,producer_codec", [("zstd", "gzip"), ("uncompressed", "lz4"),
                                                        ("snappy", "none"), ("lz4", "zstd"), ("gzip", "snappy")])
def test_topic_compression_type_recompresses_on_append(strata, topic_codec, producer_codec):
    topic = unique_topic(f"recompress-{topic_codec}")
    create_topic_with(strata.bootstrap, topic, {"compression.type": topic_codec})
    sent = compressible_messages(300, producer_codec)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": strata.bootstrap, "compression.type": producer_codec,
                         "enable.idempotence": True, "linger.ms": 20, "batch.num.messages": 100})
    produce_all(producer, sent, delivered, topic)
    assert not delivered.failed, list(delivered.failed.values())[:3]

    consumed = consume_partitions(strata.bootstrap, topic, [0], expected=len(sent))[0]
    assert [m.offset() for m in consumed] == list(range(len(sent)))
    assert as_tuples_confluent(consumed) == sent
    batches = segment_batches(strata, topic)
    assert {b["compression"] for b in batches} == {CODEC_ID[topic_codec]}
    assert all(b["crc_ok"] for b in batches)
    # idempotence survives: one producer, its sequence numbers match the offsets
    assert len({b["producer_id"] for b in batches}) == 1 and batches[0]["producer_id"] >= 0
    assert [b["base_sequence"] for b in batches] == [b["base_offset"] for b in batches]

    # kafka-python decodes what the broker compressed too
    got = read_kafka_python(strata.bootstrap, topic, len(sent))
    assert [(r.key, r.value, list(r.headers)) for r in got] == sent


@pytest.mark.parametrize("topic_codec,producer_codec", [("lz4", "gzip"), ("snappy", "zstd")])
def test_java_reads_what_the_broker_recompressed(strata, java_classpath, topic_codec, producer_codec):
    topic = unique_topic(f"java-recompress-{topic_codec}")
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                  config={"compression.type": topic_codec})])[topic].result(15)
    wait_for_partitions(strata.bootstrap, topic, 3)
    # ProduceConsume checks every key, value, header and timestamp it reads back
    run_produce_consume(java_classpath, strata.bootstrap, topic, compression=producer_codec, count=500)
    batches = [b for p in range(3)
               for b in kafka_wire.read_segment_batches(strata.data_dir / f"{topic}-{p}" / f"{0:020d}.log")]
    assert batches and {b["compression"] for b in batches} == {CODEC_ID[topic_codec]}


def test_recompressed_transactional_batches_commit(strata):
    topic = unique_topic("recompress-txn")
    create_topic_with(strata.bootstrap, topic, {"compression.type": "zstd"})
    txn = Producer({"bootstrap.servers": strata.bootstrap, "transactional.id": f"rc-{uuid.uuid4().hex[:8]}",
                    "compression.type": "gzip", "linger.ms": 20})
    txn.init_transactions(15)
    txn.begin_transaction()
    for i in range(50):
        txn.produce(topic, value=f"txn {i} ".encode() * 10, partition=0)
    txn.commit_transaction(15)
    msgs = consume_partitions(strata.bootstrap, topic, [0], expected=50,
                              **{"isolation.level": "read_committed"})[0]
    assert [m.value() for m in msgs] == [f"txn {i} ".encode() * 10 for i in range(50)]
    data = [b for b in segment_batches(strata, topic) if not b["attributes"] & 0x20]
    assert data and all(b["compression"] == 4 and b["attributes"] & 0x10 for b in data)


def test_zstd_needs_produce_v7_and_fetch_v10(strata):
    """Produce v3 carrying a zstd batch (captured from librdkafka) and Fetch v4 from a topic with
    compression.type=zstd get UNSUPPORTED_COMPRESSION_TYPE (76), as in Kafka."""
    topic = unique_topic("zstd-v3")
    create_topic(strata.bootstrap, topic, 1)
    zstd_topic = unique_topic("zstd-topic")
    create_topic_with(strata.bootstrap, zstd_topic, {"compression.type": "zstd"})
    produce_one_batch(strata.bootstrap, zstd_topic, "gzip", [BASE_TS, BASE_TS + 1])
    batch = (TESTDATA / "librdkafka-zstd.bin").read_bytes()
    with socket.create_connection(("127.0.0.1", strata.port), timeout=10) as sock:
        sock.sendall(kafka_wire.produce_v3_request(1, topic, 0, batch))
        _, results = kafka_wire.parse_produce_v3_response(kafka_wire.recv_frame(sock))
        assert [r[2] for r in results] == [76]
        sock.sendall(kafka_wire.fetch_v4_request(2, zstd_topic, 0, 0, max_wait_ms=0))
        _, parts = kafka_wire.parse_fetch_v4_response(kafka_wire.recv_frame(sock))
        assert [(p["error_code"], p["records"]) for p in parts] == [(76, b"")]
    # newer clients read it
    msgs = consume_partitions(strata.bootstrap, zstd_topic, [0], expected=2)[0]
    assert [m.timestamp()[1] for m in msgs] == [BASE_TS, BASE_TS + 1]


def test_kafkas_record_code_reads_the_segment_files(strata, java_classpath):
    topics = {"producer": unique_topic("kafka-reads"), "lz4": unique_topic("kafka-reads-lz4")}
    for compression, topic in topics.items():
        create_topic_with(strata.bootstrap, topic, {"segment.bytes": "4096", "compression.type": compression})
    acked = {topic: {} for topic in topics.values()}

    def record(topic):
        def on_delivery(err, msg):
            assert err is None, err
            acked[topic][msg.offset()] = (msg.key().decode(), msg.value().decode())
        return on_delivery

    for codec in ["none", *CODECS]:
        for topic in topics.values():
            producer = Producer({"bootstrap.servers": strata.bootstrap, "compression.type": codec, "linger.ms": 20})
            for i in range(60):
                producer.produce(topic, key=f"{codec}-{i}".encode(), value=f"{codec} value {i:03d} ".encode() * 8,
                                 partition=0, on_delivery=record(topic))
            assert producer.flush(30) == 0
    # a committed and an aborted transaction: their markers are control batches
    txn = Producer({"bootstrap.servers": strata.bootstrap, "transactional.id": f"reads-{uuid.uuid4()}",
                    "compression.type": "zstd"})
    txn.init_transactions(15)
    for outcome in ("commit", "abort"):
        txn.begin_transaction()
        txn.produce(topics["producer"], key=outcome.encode(), value=f"in a transaction to {outcome}".encode(),
                    partition=0, on_delivery=record(topics["producer"]))
        assert txn.flush(15) == 0
        if outcome == "commit":
            txn.commit_transaction(15)
        else:
            txn.abort_transaction(15)

    for compression, topic in topics.items():
        files = sorted((strata.data_dir / f"{topic}-0").glob("*.log"))
        assert len(files) > 1, "expected several segments"
        cmd = java_command(java_classpath, "ReadSegments", *map(str, files))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, program_report(cmd, proc, None, "ReadSegments")
        batches = [json.loads(line) for line in proc.stdout.splitlines()]
        # each file starts with the batch its name says, in Kafka's v2 format
        for f in files:
            first = next(b for b in batches if b["file"] == f.name)
            assert first["base_offset"] == int(f.stem)
        assert {b["magic"] for b in batches} == {2}
        read = {r["offset"]: (r["key"], r["value"]) for b in batches if not b["control"] for r in b["records"]}
        assert read == acked[topic]
        codecs = {b["compression"] for b in batches if not b["control"]}
        if compression == "lz4":
            assert codecs == {"lz4"}  # recompressed by the broker, read by Kafka's codec
        else:
            assert codecs == {"none", *CODECS}
            markers = [b for b in batches if b["control"]]
            assert len(markers) == 2 and all(b["transactional"] for b in markers)
