"""More partitions than the process may open files: segment files are opened when used and
closed when idle, so a broker under a small open-file limit still creates, writes and reads
every partition, and after a restart (its logs opened in the background) answers each one
with what it holds."""

from __future__ import annotations

import os
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clients import unique_topic, wait_until
from conftest import StrataBroker, free_port, strata_binary

LIMIT = 256
TOPICS = 2
PARTITIONS = 200  # 400 partitions, 1,200 segment files: far past the limit


def open_files(broker: StrataBroker) -> int:
    return len(os.listdir(f"/proc/{broker.proc.pid}/fd"))


def produce_one_each(bootstrap: str, topics: list[str], tag: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    errors = []
    for t in topics:
        for p in range(PARTITIONS):
            producer.produce(t, key=f"{p}".encode(), value=f"{tag}-{t}-{p}".encode(), partition=p,
                             on_delivery=lambda err, _m: err and errors.append(err))
    assert producer.flush(60) == 0 and not errors, errors[:3]


def read_all(bootstrap: str, topics: list[str], per_partition: int) -> dict[tuple[str, int], list[bytes]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50})
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(PARTITIONS)])
    got: dict[tuple[str, int], list[bytes]] = {}
    want = len(topics) * PARTITIONS * per_partition
    seen = 0

    def done():
        nonlocal seen
        for m in consumer.consume(num_messages=1000, timeout=0.5):
            assert m.error() is None, m.error()
            got.setdefault((m.topic(), m.partition()), []).append(m.value())
            seen += 1
        return seen >= want

    try:
        wait_until(done, 90, f"{want} records read back")
    finally:
        consumer.close()
    return got


def expected(topics: list[str], tags: list[str]) -> dict[tuple[str, int], list[bytes]]:
    return {(t, p): [f"{tag}-{t}-{p}".encode() for tag in tags] for t in topics for p in range(PARTITIONS)}


def test_partitions_past_the_open_file_limit_are_written_and_read_back_across_restarts(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    broker = StrataBroker(strata_binary(), free_port(), data, tmp_path / "strata.log")
    broker.open_file_limit = LIMIT
    broker.start()
    try:
        topics = [unique_topic("many") for _ in range(TOPICS)]
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for f in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics]).values():
            f.result(60)
        produce_one_each(broker.bootstrap, topics, "first")
        assert read_all(broker.bootstrap, topics, 1) == expected(topics, ["first"])
        assert open_files(broker) < LIMIT

        # After a kill, every log is recovered, some on demand by the reads below while the
        # rest open in the background.
        broker.kill()
        broker.start()
        assert read_all(broker.bootstrap, topics, 1) == expected(topics, ["first"])
        produce_one_each(broker.bootstrap, topics, "second")
        wait_until(lambda: urllib.request.urlopen(f"{broker.http_url}/ready", timeout=5).status == 200,
                   60, "/ready once every log is open")

        broker.stop()
        broker.start()
        produce_one_each(broker.bootstrap, topics, "third")
        assert read_all(broker.bootstrap, topics, 3) == expected(topics, ["first", "second", "third"])
        assert open_files(broker) < LIMIT
        assert "Too many open files" not in broker.log_path.read_text(errors="replace")
    finally:
        broker.shutdown_quietly()
