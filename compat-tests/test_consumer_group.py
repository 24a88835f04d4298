"""Consumer groups: subscribe, committed offsets that a later consumer resumes from, partitions split between members."""

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

from clients import Delivered, create_topic, produce_all, unique_topic

PARTITIONS = 3


def group_consumer(bootstrap, group, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    }
    conf.update(extra)
    return Consumer(conf)


def produce_values(bootstrap, topic, values):
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    produce_all(producer, [(v[-3:], v, None) for v in values], delivered, topic)
    assert not delivered.failed, list(delivered.failed.values())[:3]
    return delivered


def poll_values(consumers, count, timeout=60.0, settle=2.0):
    """Poll the consumers in turn until `count` messages arrived, then `settle` seconds more."""
    got = {id(c): [] for c in consumers}
    deadline = time.monotonic() + timeout
    settle_until = None
    while True:
        now = time.monotonic()
        total = sum(len(v) for v in got.values())
        if total >= count and settle_until is None:
            settle_until = now + settle
        if settle_until is not None and now >= settle_until:
            return got
        assert now < deadline, f"timed out with {total} of {count} messages"
        for c in consumers:
            for msg in c.consume(num_messages=500, timeout=0.05):
                if not msg.error():
                    got[id(c)].append(msg)


def test_a_new_consumer_in_the_group_resumes_after_the_committed_offsets(strata):
    topic = unique_topic("group-resume")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, PARTITIONS)
    first = [f"first-{i:04d}".encode() for i in range(300)]
    produce_values(strata.bootstrap, topic, first)

    c1 = group_consumer(strata.bootstrap, group)
    c1.subscribe([topic])
    got = poll_values([c1], len(first))[id(c1)]
    assert sorted(m.value() for m in got) == sorted(first)
    c1.commit(asynchronous=False)
    committed = c1.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    c1.close()
    per_partition = {p: sum(1 for m in got if m.partition() == p) for p in range(PARTITIONS)}
    assert {tp.partition: tp.offset for tp in committed} == per_partition

    second = [f"second-{i:04d}".encode() for i in range(100)]
    produce_values(strata.bootstrap, topic, second)
    c2 = group_consumer(strata.bootstrap, group)
    c2.subscribe([topic])
    got2 = poll_values([c2], len(second))[id(c2)]
    c2.close()
    assert sorted(m.value() for m in got2) == sorted(second), "the second consumer re-read committed messages"


def test_two_members_of_a_group_split_the_partitions_and_read_everything_once(strata):
    topic = unique_topic("group-split")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, PARTITIONS)
    a = group_consumer(strata.bootstrap, group)
    b = group_consumer(strata.bootstrap, group)
    a.subscribe([topic])
    b.subscribe([topic])

    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, f"no stable split: a={a.assignment()} b={b.assignment()}"
        a.poll(0.1)
        b.poll(0.1)
        pa = {tp.partition for tp in a.assignment()}
        pb = {tp.partition for tp in b.assignment()}
        if pa and pb and not (pa & pb) and (pa | pb) == set(range(PARTITIONS)):
            break

    values = [f"split-{i:04d}".encode() for i in range(600)]
    produce_values(strata.bootstrap, topic, values)
    got = poll_values([a, b], len(values))
    a.close()
    b.close()
    from_a, from_b = got[id(a)], got[id(b)]
    assert sorted(m.value() for m in from_a + from_b) == sorted(values)
    assert {m.partition() for m in from_a} <= pa and {m.partition() for m in from_b} <= pb


def test_kafka_python_group_consumer_commits_and_a_successor_reads_the_rest(strata):
    topic = unique_topic("kp-group")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, PARTITIONS)
    first = [f"first-{i:04d}".encode() for i in range(150)]
    produce_values(strata.bootstrap, topic, first)

    def consume(n, timeout=60):
        consumer = KafkaConsumer(topic, bootstrap_servers=strata.bootstrap, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(records)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(records)
        consumer.commit()
        committed = {p: consumer.committed(KpTopicPartition(topic, p)) for p in range(PARTITIONS)}
        consumer.close()
        return got, committed

    got, committed = consume(len(first))
    assert sorted(r.value for r in got) == sorted(first)
    assert committed == {p: sum(1 for r in got if r.partition == p) for p in range(PARTITIONS)}

    second = [f"second-{i:04d}".encode() for i in range(50)]
    produce_values(strata.bootstrap, topic, second)
    got2, _ = consume(len(second))
    assert sorted(r.value for r in got2) == sorted(second)


def test_admin_lists_describes_and_deletes_groups(strata):
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    topic = unique_topic("admin-groups")
    create_topic(strata.bootstrap, topic, 1)
    produce_values(strata.bootstrap, topic, [f"v-{i:03d}" for i in range(10)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = group_consumer(strata.bootstrap, group)
    consumer.subscribe([topic])
    poll_values([consumer], 10, timeout=30, settle=0.5)
    consumer.commit(asynchronous=False)

    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    assert described.state == ConsumerGroupState.STABLE
    assert len(described.members) == 1
    # A group with members cannot be deleted.
    try:
        admin.delete_consumer_groups([group])[group].result(timeout=10)
        raise AssertionError("deleting a group with members succeeded")
    except Exception as e:  # KafkaException(NON_EMPTY_GROUP)
        assert "NON_EMPTY_GROUP" in str(e) or "not empty" in str(e).lower(), e

    consumer.close()
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(timeout=10).valid}
    assert group in listed and listed[group].state == ConsumerGroupState.EMPTY
    admin.delete_consumer_groups([group])[group].result(timeout=10)
    listed = {g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid}
    assert group not in listed
    # Its committed offsets went with it: a new member of that group starts from the beginning.
    again = group_consumer(strata.bootstrap, group)
    again.subscribe([topic])
    got = poll_values([again], 10, timeout=30, settle=0.5)
    again.close()
    assert len(got[id(again)]) == 10
