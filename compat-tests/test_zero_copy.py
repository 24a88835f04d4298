"""Fetch answers on a plaintext listener are sent from the segment files' page cache
(sendfile), on a TLS listener read into memory and encrypted: consumers on either get every
record byte for byte as it was produced.

Every broker here has a PLAINTEXT listener and an SSL listener (a fresh test CA per test).

- test_every_record_is_byte_identical_over_plaintext_and_tls: three partitions of records
  from 10 B to 200 KiB, with keys and headers, in uncompressed and lz4 batches, over 1 MiB
  segments (many rolls); read from the beginning by confluent-kafka on both listeners and by
  kafka-python (other Fetch versions) on the plaintext one. Each consumer's checksum of
  every (partition, offset, key, value, headers) is the producer's.
- test_records_stay_exact_while_segments_roll_and_retention_deletes_them: a producer keeps
  writing while consumers on both listeners read from the beginning, with 1 MiB segments and
  retention.bytes keeping about four of them, checked every 100 ms, so that segments are
  deleted while fetches read them. Every record a consumer gets is the one produced at its
  offset, offsets only go up (a consumer that falls below the log start resets to it), both
  consumers reach the end, and the log start did move.
- test_records_stay_exact_while_the_cleaner_replaces_segments: a compacted topic in 16 KiB
  segments, written in rounds of 40 keys while readers on both listeners read it from the
  beginning again and again, as the cleaner (every 200 ms) swaps cleaned segments in under
  their fetches. Every record any read returns is the one produced at its offset, and the
  cleaner did remove most of the older values.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

from certs import TestPki
from clients import create_topic, new_consumer, unique_topic, wait_for_partitions
from conftest import StrataBroker, free_port, strata_binary

SIZES = [10, 100, 1000, 4000, 20_000, 200_000]


@pytest.fixture
def broker_with_tls(request, tmp_path):
    """start(*overrides) -> (broker, ssl bootstrap, client TLS settings): PLAINTEXT on
    broker.port, SSL on another port."""
    brokers: list[StrataBroker] = []
    request.node._strata_brokers = brokers

    def start(*overrides: str):
        pki = TestPki(tmp_path / "pki")
        server = pki.server()
        keystore = pki.dir / "keystore.pem"
        keystore.write_text(server.key.read_text() + server.cert.read_text())
        port, ssl_port = free_port(), free_port()
        args = ["--override", f"listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port}",
                "--override", f"ssl.keystore.location={keystore}"]
        for o in overrides:
            args += ["--override", o]
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        broker = StrataBroker(strata_binary(), port, data_dir, tmp_path / "strata.log", tuple(args))
        brokers.append(broker)
        broker.start()
        tls = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca_cert)}
        return broker, f"127.0.0.1:{ssl_port}", tls

    yield start
    for b in brokers:
        b.shutdown_quietly()


def digest(partition, offset, key, value, headers) -> bytes:
    h = hashlib.sha256()
    h.update(f"{partition}/{offset}".encode())
    for part in (key, value):
        h.update(b"-" if part is None else len(part).to_bytes(4, "big") + part)
    for k, v in headers or []:
        h.update(k.encode() if isinstance(k, str) else k)
        h.update(b"-" if v is None else v)
    return h.digest()


def record(i: int):
    """The i-th record: a key, a value of one of SIZES, some headers."""
    rng = random.Random(i)
    value = rng.randbytes(rng.choice(SIZES))
    headers = [("n", str(i).encode())] if i % 3 else []
    return f"key-{i}".encode(), value, headers


class Produced:
    """What each (partition, offset) holds, from the delivery reports."""

    def __init__(self):
        self.at: dict[tuple[int, int], bytes] = {}
        self.errors: list = []
        self.lock = threading.Lock()

    def callback(self, headers):
        def on_delivery(err, msg):
            if err is not None:
                self.errors.append(err)
                return
            d = digest(msg.partition(), msg.offset(), msg.key(), msg.value(), headers)
            with self.lock:
                self.at[(msg.partition(), msg.offset())] = d
        return on_delivery


def produce(bootstrap, topic, indexes, produced: Produced, **conf):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    for i in indexes:
        key, value, headers = record(i)
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers,
                                 on_delivery=produced.callback(headers))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not produced.errors, produced.errors[:3]


def end_offsets(bootstrap, topic, partitions) -> dict[int, tuple[int, int]]:
    consumer = new_consumer(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
    finally:
        consumer.close()


def read_confluent(bootstrap, topic, partitions, until: dict[int, int], conf, timeout=120.0):
    """{(partition, offset): digest} read from the beginning until every partition reaches
    `until` (a dict that may still grow while the read runs); offsets must only go up."""
    consumer = new_consumer(bootstrap, **conf)
    got: dict[tuple[int, int], bytes] = {}
    last = {p: -1 for p in partitions}
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + timeout
        while any(last[p] + 1 < until.get(p, 1 << 62) for p in partitions):
            assert time.monotonic() < deadline, f"timed out at {last} of {until}"
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error():
                    # A consumer below the log start is reset to it (auto.offset.reset).
                    assert msg.error().code() in (KafkaError._PARTITION_EOF, KafkaError._AUTO_OFFSET_RESET,
                                                  KafkaError.OFFSET_OUT_OF_RANGE), msg.error()
                    continue
                p, off = msg.partition(), msg.offset()
                assert off > last[p], f"partition {p}: offset {off} after {last[p]}"
                last[p] = off
                got[(p, off)] = digest(p, off, msg.key(), msg.value(), msg.headers())
    finally:
        consumer.close()
    return got


def read_kafka_python(bootstrap, topic, partitions, until: dict[int, int], timeout=120.0):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_partition_fetch_bytes=1 << 20)
    got: dict[tuple[int, int], bytes] = {}
    try:
        tps = [KpTopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(got) < sum(until.values()):
            assert time.monotonic() < deadline, f"timed out with {len(got)} of {sum(until.values())}"
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                for m in msgs:
                    headers = [(k, v) for k, v in m.headers] or None
                    got[(tp.partition, m.offset)] = digest(tp.partition, m.offset, m.key, m.value, headers)
    finally:
        consumer.close()
    return got


def test_every_record_is_byte_identical_over_plaintext_and_tls(broker_with_tls):
    broker, ssl_bootstrap, tls = broker_with_tls("log.segment.bytes=1048576")
    topic = unique_topic("zero-copy")
    partitions = [0, 1, 2]
    create_topic(broker.bootstrap, topic, len(partitions))
    produced = Produced()
    produce(broker.bootstrap, topic, range(0, 600), produced)
    produce(broker.bootstrap, topic, range(600, 1200), produced, **{"compression.type": "lz4"})
    ends = {p: hi for p, (_, hi) in end_offsets(broker.bootstrap, topic, partitions).items()}
    assert sum(ends.values()) == 1200
    segments = list((broker.data_dir).glob(f"{topic}-*/*.log"))
    assert len(segments) > 6, f"only {len(segments)} segments: the records should span several"
    plain = read_confluent(broker.bootstrap, topic, partitions, ends, {})
    assert plain == produced.at, "plaintext consumer: records differ from what was produced"
    secure = read_confluent(ssl_bootstrap, topic, partitions, ends, tls)
    assert secure == produced.at, "TLS consumer: records differ from what was produced"
    other = read_kafka_python(broker.bootstrap, topic, partitions, ends)
    assert other == produced.at, "kafka-python: records differ from what was produced"


def test_records_stay_exact_while_segments_roll_and_retention_deletes_them(broker_with_tls):
    broker, ssl_bootstrap, tls = broker_with_tls(
        "log.segment.bytes=1048576", "log.retention.bytes=4194304",
        "log.retention.check.interval.ms=100", "tier.store=none")
    topic = unique_topic("zero-copy-retention")
    partitions = [0]
    create_topic(broker.bootstrap, topic, 1)
    produced = Produced()
    total = 2500
    until: dict[int, int] = {}
    results: dict[str, dict] = {}
    failures: list[BaseException] = []

    def reader(name, bootstrap, conf):
        try:
            results[name] = read_confluent(bootstrap, topic, partitions, until, conf, timeout=180)
        except BaseException as e:  # reported by the test thread
            failures.append(e)

    # A first part, so that the readers start with data to read, then the rest meanwhile.
    produce(broker.bootstrap, topic, range(0, 500), produced)
    threads = [threading.Thread(target=reader, args=("plaintext", broker.bootstrap, {})),
               threading.Thread(target=reader, args=("tls", ssl_bootstrap, tls))]
    for t in threads:
        t.start()
    for start in range(500, total, 250):
        produce(broker.bootstrap, topic, range(start, start + 250), produced)
    until[0] = end_offsets(broker.bootstrap, topic, partitions)[0][1]
    for t in threads:
        t.join(200)
    assert not failures, failures[0]
    log_start = end_offsets(broker.bootstrap, topic, partitions)[0][0]
    assert log_start > 0, "retention deleted nothing"
    for name, got in results.items():
        assert got, f"{name}: nothing read"
        wrong = [k for k, d in got.items() if produced.at.get(k) != d]
        assert not wrong, f"{name}: {len(wrong)} records differ from what was produced, first {wrong[:3]}"
        assert max(off for _, off in got) == until[0] - 1, f"{name} did not reach the end"


def test_records_stay_exact_while_the_cleaner_replaces_segments(broker_with_tls):
    broker, ssl_bootstrap, tls = broker_with_tls("log.cleaner.backoff.ms=200")
    topic = unique_topic("zero-copy-compact")
    config = {"cleanup.policy": "compact", "segment.bytes": "16384", "min.cleanable.dirty.ratio": "0.01",
              "min.compaction.lag.ms": "0"}
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(15)
    wait_for_partitions(broker.bootstrap, topic, 1)
    produced = Produced()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 2, "acks": "all"})
    rng = random.Random(7)
    reads: list[dict] = []
    failures: list[BaseException] = []
    writing = threading.Event()
    writing.set()

    def reader(bootstrap, conf):
        try:
            while writing.is_set():
                until = {0: end_offsets(broker.bootstrap, topic, [0])[0][1]}
                if until[0] > 0:
                    reads.append(read_confluent(bootstrap, topic, [0], until, conf, timeout=60))
        except BaseException as e:  # reported by the test thread
            failures.append(e)

    threads = [threading.Thread(target=reader, args=(broker.bootstrap, {})),
               threading.Thread(target=reader, args=(ssl_bootstrap, tls))]
    for t in threads:
        t.start()
    total = 0
    for _ in range(10):
        for _ in range(400):
            key = f"key-{rng.randrange(40)}".encode()
            producer.produce(topic, key=key, value=rng.randbytes(rng.randrange(50, 3000)),
                             on_delivery=produced.callback(None))
            producer.poll(0)
            total += 1
        assert producer.flush(30) == 0
        time.sleep(0.5)
    writing.clear()
    for t in threads:
        t.join(120)
    assert not failures, failures[0]
    assert not produced.errors, produced.errors[:3]
    assert len(produced.at) == total
    assert len(reads) >= 4, f"only {len(reads)} reads finished"
    for got in reads:
        wrong = [k for k, d in got.items() if produced.at.get(k) != d]
        assert not wrong, f"{len(wrong)} records differ from what was produced at their offsets, first {wrong[:3]}"
    # The cleaner ran under those reads: at most a few versions of each of the 40 keys stay in
    # the cleaned segments (and the active one).
    final = read_confluent(broker.bootstrap, topic, [0], {0: total}, {})
    assert len(final) < total / 2, f"{len(final)} of {total} records left: the cleaner did not run"
    assert all(produced.at.get(k) == d for k, d in final.items())
