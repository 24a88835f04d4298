"""Small helpers around confluent-kafka (librdkafka) used by several scenarios."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 15.0) -> None:
    """Create a topic with confluent-kafka's AdminClient and wait for the result."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=timeout, request_timeout=timeout)
    futures[topic].result(timeout=timeout)
    wait_for_partitions(bootstrap, topic, partitions, timeout)


def wait_for_partitions(bootstrap: str, topic: str, partitions: int, timeout: float = 15.0) -> None:
    """Poll metadata until the topic shows `partitions` partitions, each with a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=topic, timeout=5)
        t = md.topics.get(topic)
        last = t
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 and p.error is None for p in t.partitions.values()):
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} did not show {partitions} led partitions within {timeout}s: {last!r}")


@dataclass
class Delivered:
    """What delivery reports said: per message value, (partition, offset) or the error."""
    ok: dict = field(default_factory=dict)       # value(bytes) -> (partition, offset)
    failed: dict = field(default_factory=dict)   # value(bytes) -> KafkaError

    def callback(self, err, msg):
        if err is None:
            self.ok[msg.value()] = (msg.partition(), msg.offset())
        else:
            self.failed[msg.value()] = err


def produce_all(producer: Producer, messages, delivered: Delivered, topic: str, flush_timeout: float = 60.0) -> None:
    """Produce (key, value, headers) tuples, waiting for queue room when needed, then flush."""
    for key, value, headers in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered.callback)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(flush_timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {flush_timeout}s flush"


def new_consumer(bootstrap: str, **extra) -> Consumer:
    # librdkafka insists on a group.id even for manually assigned partitions; nothing is committed.
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"compat-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(extra)
    return Consumer(conf)


def high_watermarks(bootstrap: str, topic: str, partitions, timeout: float = 10.0) -> dict[int, int]:
    consumer = new_consumer(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in partitions}
    finally:
        consumer.close()


def consume_partitions(bootstrap: str, topic: str, partitions, expected: int | None = None,
                       timeout: float = 60.0, settle: float = 1.0, **consumer_conf) -> dict[int, list]:
    """Assign the partitions from the beginning and read them.

    Stops when `expected` messages arrived (then keeps polling `settle` seconds more to catch
    anything extra), or, when expected is None, when every partition reached the high watermark
    it had when reading began. Returns {partition: [Message, ...]} in arrival order.
    """
    partitions = list(partitions)
    targets = None if expected is not None else high_watermarks(bootstrap, topic, partitions)
    consumer = new_consumer(bootstrap, **consumer_conf)
    got: dict[int, list] = {p: [] for p in partitions}
    errors = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout

        def done():
            if expected is not None:
                return sum(len(v) for v in got.values()) >= expected
            return all((got[p][-1].offset() + 1 if got[p] else 0) >= targets[p] for p in partitions)

        while not done():
            if time.monotonic() > deadline:
                counts = {p: len(v) for p, v in got.items()}
                raise AssertionError(f"timed out after {timeout}s consuming {topic}: got {counts} "
                                     f"(expected {expected if expected is not None else targets}); errors: {errors[:5]}")
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        errors.append(msg.error())
                    continue
                got[msg.partition()].append(msg)
        if expected is not None and settle > 0:
            end = time.monotonic() + settle
            while time.monotonic() < end:
                for msg in consumer.consume(num_messages=1000, timeout=0.2):
                    if not msg.error():
                        got[msg.partition()].append(msg)
    finally:
        consumer.close()
    return got


def produce_and_read_back_one(bootstrap: str, topic: str, value: bytes, timeout: float = 20.0) -> None:
    """A fresh librdkafka producer writes one message to partition 0 and a fresh consumer reads it back."""
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": int(timeout * 1000)})
    producer.produce(topic, value=value, key=b"probe", partition=0, on_delivery=delivered.callback)
    assert producer.flush(timeout) == 0, "probe message not delivered"
    assert value in delivered.ok, f"probe message failed: {delivered.failed.get(value)}"
    _, offset = delivered.ok[value]
    consumer = new_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            assert msg.offset() == offset and msg.value() == value, (
                f"read offset {msg.offset()} value {msg.value()!r}, expected offset {offset} value {value!r}")
            return
        raise AssertionError(f"probe message at {topic}/0@{offset} not readable within {timeout}s")
    finally:
        consumer.close()


def topic_id(bootstrap: str, topic: str) -> uuid.UUID:
    """The topic id the broker's metadata reports (kafka-python's admin client)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    assert described["error_code"] == 0, described
    raw = described.get("topic_id")
    tid = raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw)) if raw else None
    assert tid is not None and tid.int != 0, f"metadata gives no topic id for {topic}: {described}"
    return tid


def tail(text: str | bytes, lines: int = 80) -> str:
    if isinstance(text, bytes):  # TimeoutExpired carries bytes even with text=True
        text = text.decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def program_report(cmd: list[str], proc: subprocess.CompletedProcess, summary: dict | None, log_name: str) -> str:
    """What a client program (js/, java/) did: exit status, JSON summary, problems, log tail."""
    problems = "\n".join(f"  - {p}" for p in (summary or {}).get("problems", []))
    rest = {k: v for k, v in (summary or {}).items() if k != "problems"}
    return (f"command: {' '.join(cmd)}\nexit status: {proc.returncode}\n"
            f"summary: {json.dumps(rest)}\nproblems:\n{problems or '  (none)'}\n"
            f"{log_name} (stderr, last lines):\n{tail(proc.stderr)}")
