"""kafka-python (a pure-Python client): admin, producer with keys and headers, manual-assign consumer."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAlreadyExistsError

from clients import unique_topic


@pytest.fixture
def admin(strata):
    client = KafkaAdminClient(bootstrap_servers=strata.bootstrap, request_timeout_ms=15000)
    yield client
    client.close()


def read_all(bootstrap, topic, partitions, expected, timeout=30.0):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    # anything beyond `expected` would be a duplicate: give it a moment to show up
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        for records in consumer.poll(timeout_ms=200).values():
            got.extend(records)
    consumer.close()
    return got


def test_admin_creates_a_topic_and_refuses_to_create_it_a_second_time(strata, admin):
    topic = unique_topic("kp-admin")

    result = admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(topic, 0)]

    assert topic in admin.list_topics()
    described = {t["name"]: t for t in admin.describe_topics([topic])}
    assert described[topic]["error_code"] == 0
    assert sorted(p["partition_index"] for p in described[topic]["partitions"]) == [0, 1]

    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})


def test_messages_with_keys_and_headers_come_back_through_assign_and_seek_to_beginning(strata, admin):
    topic = unique_topic("kp-produce")
    admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    sent = []
    producer = KafkaProducer(bootstrap_servers=strata.bootstrap, acks="all", linger_ms=5)
    futures = []
    for i in range(400):
        key = f"k{i % 10}".encode()
        value = f"value-{i}".encode()
        headers = [("trace", f"t{i}".encode()), ("source", b"kafka-python")]
        sent.append((key, value, headers))
        futures.append(producer.send(topic, key=key, value=value, headers=headers))
    producer.flush(timeout=30)
    metadata = [f.get(timeout=30) for f in futures]
    producer.close()
    placed = {v: (m.partition, m.offset) for (_, v, _), m in zip(sent, metadata)}

    got = read_all(strata.bootstrap, topic, [0, 1], expected=len(sent))

    assert sorted((r.key, r.value, list(r.headers)) for r in got) == sorted(sent)
    assert len({r.value for r in got}) == len(got) == len(sent), "duplicates or losses"
    for r in got:
        assert (r.partition, r.offset) == placed[r.value], f"{r.value!r} not where the producer was told"
    for p in (0, 1):
        order = [int(r.value.split(b"-")[1]) for r in got if r.partition == p]
        assert order == sorted(order), f"partition {p} out of order"
    # one key, one partition (kafka-python's murmur2 partitioner)
    by_key = {}
    for r in got:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(ps) == 1 for ps in by_key.values())


def test_deleted_topic_disappears_from_metadata_and_from_the_data_dir(strata, admin):
    topic = unique_topic("kp-delete")
    admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}})
    producer = KafkaProducer(bootstrap_servers=strata.bootstrap, acks="all")
    for p in range(3):
        producer.send(topic, value=b"doomed", partition=p).get(timeout=30)
    producer.close()
    dirs = lambda: sorted(d.name for d in strata.data_dir.iterdir() if d.name.startswith(topic))  # noqa: E731
    assert dirs() == [f"{topic}-0", f"{topic}-1", f"{topic}-2"]

    result = admin.delete_topics([topic])
    assert [t["error_code"] for t in result["topics"]] == [0]

    assert topic not in admin.list_topics()
    deadline = time.monotonic() + 10
    while dirs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dirs() == [], f"topic directories still in the data dir 10 s after delete: {dirs()}"
