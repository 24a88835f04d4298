"""confluent-kafka (librdkafka): keyed messages over a 3-partition topic, with acks 1, all and 0."""

import os
import statistics
import time
from collections import defaultdict

import pytest
from confluent_kafka import OFFSET_END, TIMESTAMP_CREATE_TIME, KafkaError, Producer, TopicPartition

from clients import (Delivered, consume_partitions, create_topic, new_consumer, produce_all,
                     produce_and_read_back_one, unique_topic)

PARTITIONS = 3


def keyed_messages(n):
    return [(f"key-{i % 101}".encode(), f"message-{i:06d}".encode(), None) for i in range(n)]


def index_of(value: bytes) -> int:
    return int(value.split(b"-")[1])


def check_every_message_back_once_in_order(delivered, consumed, sent):
    """Shared checks between the delivery reports (what the producer was told) and what a consumer reads."""
    sent_values = {v for _, v, _ in sent}
    key_of = {v: k for k, v, _ in sent}

    all_consumed = [m for msgs in consumed.values() for m in msgs]
    values = [m.value() for m in all_consumed]
    assert len(values) == len(set(values)), "some messages were consumed more than once"
    assert set(values) == sent_values, (f"missing {len(sent_values - set(values))} messages, "
                                        f"{len(set(values) - sent_values)} unexpected")

    for partition, msgs in consumed.items():
        offsets = [m.offset() for m in msgs]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), \
            f"partition {partition}: offsets not strictly increasing"
        order = [index_of(m.value()) for m in msgs]
        assert order == sorted(order), f"partition {partition}: messages out of produce order"
        for m in msgs:
            assert m.key() == key_of[m.value()], f"{m.value()!r} came back with key {m.key()!r}"
            if delivered is not None:
                assert delivered.ok[m.value()] == (partition, m.offset()), (
                    f"{m.value()!r} read at {partition}@{m.offset()}, "
                    f"delivery report said {delivered.ok[m.value()]}")


def test_ten_thousand_keyed_messages_come_back_once_each_in_order_on_the_partition_the_producer_was_told(strata):
    topic = unique_topic("rdkafka-keyed")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    sent = keyed_messages(10_000)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "1", "linger.ms": 5})

    produce_all(producer, sent, delivered, topic)

    assert not delivered.failed, f"{len(delivered.failed)} deliveries failed, e.g. {next(iter(delivered.failed.values()))}"
    assert len(delivered.ok) == len(sent)
    # librdkafka's partitioner sends one key to one partition, and uses all three here
    partitions_of_key = defaultdict(set)
    for key, value, _ in sent:
        partitions_of_key[key].add(delivered.ok[value][0])
    assert all(len(p) == 1 for p in partitions_of_key.values()), "a key was delivered to more than one partition"
    assert {p for p, _ in delivered.ok.values()} == set(range(PARTITIONS))
    # offsets the broker assigned are dense per partition
    for p in range(PARTITIONS):
        offsets = sorted(o for part, o in delivered.ok.values() if part == p)
        assert offsets == list(range(len(offsets))), f"partition {p}: delivery-report offsets are not 0..n-1"

    consumed = consume_partitions(strata.bootstrap, topic, range(PARTITIONS), expected=len(sent))

    check_every_message_back_once_in_order(delivered, consumed, sent)


def test_acks_all_deliveries_are_confirmed_and_readable(strata):
    topic = unique_topic("rdkafka-acks-all")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    sent = keyed_messages(2_000)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "all", "linger.ms": 5})

    produce_all(producer, sent, delivered, topic)

    assert not delivered.failed, f"{len(delivered.failed)} deliveries failed, e.g. {next(iter(delivered.failed.values()))}"
    assert all(offset >= 0 for _, offset in delivered.ok.values())
    consumed = consume_partitions(strata.bootstrap, topic, range(PARTITIONS), expected=len(sent))
    check_every_message_back_once_in_order(delivered, consumed, sent)


def test_acks_all_with_idempotence_delivers_every_message_once(strata):
    topic = unique_topic("rdkafka-idempotent")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    sent = keyed_messages(2_000)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": strata.bootstrap, "enable.idempotence": True, "linger.ms": 5})

    produce_all(producer, sent, delivered, topic)

    assert not delivered.failed, f"{len(delivered.failed)} deliveries failed, e.g. {next(iter(delivered.failed.values()))}"
    consumed = consume_partitions(strata.bootstrap, topic, range(PARTITIONS), expected=len(sent))
    check_every_message_back_once_in_order(delivered, consumed, sent)


def test_acks_zero_fire_and_forget_messages_all_arrive(strata):
    topic = unique_topic("rdkafka-acks-0")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    sent = keyed_messages(2_000)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "0", "linger.ms": 5})

    produce_all(producer, sent, delivered, topic)

    # with acks=0 the producer is told nothing but success, and no offsets
    assert not delivered.failed, f"{len(delivered.failed)} deliveries failed, e.g. {next(iter(delivered.failed.values()))}"
    consumed = consume_partitions(strata.bootstrap, topic, range(PARTITIONS), expected=len(sent), timeout=30)
    check_every_message_back_once_in_order(None, consumed, sent)
    # and the partition each key went to still follows the producer's partitioner
    partitions_of_key = defaultdict(set)
    for p, msgs in consumed.items():
        for m in msgs:
            partitions_of_key[m.key()].add(p)
    assert all(len(p) == 1 for p in partitions_of_key.values()), "a key ended up on more than one partition"
    assert all(delivered.ok[m.value()][0] == p for p, msgs in consumed.items() for m in msgs)


@pytest.mark.parametrize("partitions", [1, 3])
def test_auto_created_topic_takes_the_configured_partition_count(strata_factory, partitions):
    broker = strata_factory("--override", "auto.create.topics.enable=true",
                            "--override", f"num.partitions={partitions}")
    topic = unique_topic("rdkafka-auto")
    sent = keyed_messages(300)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})

    produce_all(producer, sent, delivered, topic)

    assert not delivered.failed, f"{len(delivered.failed)} deliveries failed, e.g. {next(iter(delivered.failed.values()))}"
    assert {p for p, _ in delivered.ok.values()} == set(range(partitions))
    consumed = consume_partitions(broker.bootstrap, topic, range(partitions), expected=len(sent))
    check_every_message_back_once_in_order(delivered, consumed, sent)


def test_a_waiting_consumer_gets_a_new_message_in_milliseconds_not_at_the_end_of_its_long_poll(strata):
    topic = unique_topic("rdkafka-latency")
    create_topic(strata.bootstrap, topic, 1)
    consumer = new_consumer(strata.bootstrap, **{"fetch.wait.max.ms": 500, "fetch.min.bytes": 1})
    consumer.assign([TopicPartition(topic, 0, 0)])
    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "1", "linger.ms": 0})
    latencies = []
    try:
        for i in range(25):
            time.sleep(0.1)  # let the consumer settle into a long poll
            sent_at = time.monotonic()
            producer.produce(topic, value=f"ping-{i}".encode(), partition=0)
            producer.poll(0)
            deadline = sent_at + 5
            while True:
                msg = consumer.poll(0.01)
                if msg is not None and not msg.error():
                    assert msg.value() == f"ping-{i}".encode()
                    latencies.append(time.monotonic() - sent_at)
                    break
                assert time.monotonic() < deadline, f"message {i} not consumed within 5 s"
        producer.flush(10)
    finally:
        consumer.close()
    median = statistics.median(latencies[5:])  # the first few include connection set-up
    print(f"produce-to-consume latencies (ms): {[round(x * 1000, 1) for x in latencies]}")
    assert median < 0.15, (f"median produce-to-consume latency {median * 1000:.0f} ms with fetch.wait.max.ms=500: "
                           f"the broker seems to sit out max_wait_ms instead of answering when data arrives "
                           f"(all: {[round(x * 1000) for x in latencies]} ms)")


def test_a_message_bigger_than_the_consumers_fetch_limits_still_comes_through(strata):
    topic = unique_topic("rdkafka-big")
    create_topic(strata.bootstrap, topic, 1)
    big = os.urandom(900_000)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "all"})
    produce_all(producer, [(b"small-before", b"x", None), (b"big", big, None), (b"small-after", b"y", None)],
                delivered, topic)
    assert not delivered.failed, list(delivered.failed.values())

    # fetch limits far below the message size: the broker must still hand out one whole batch (KIP-74)
    consumed = consume_partitions(strata.bootstrap, topic, [0], expected=3, **{
        "max.partition.fetch.bytes": 10_000, "fetch.max.bytes": 50_000, "message.max.bytes": 50_000})[0]
    assert [(m.key(), len(m.value())) for m in consumed] == [(b"small-before", 1), (b"big", len(big)),
                                                              (b"small-after", 1)]
    assert consumed[1].value() == big


def test_a_message_above_the_brokers_size_limit_is_refused_with_message_too_large(strata):
    topic = unique_topic("rdkafka-too-big")
    create_topic(strata.bootstrap, topic, 1)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "all", "message.max.bytes": 5_000_000,
                         "message.send.max.retries": 0})
    huge = os.urandom(2_000_000)  # Kafka's default limit (message.max.bytes) is 1 MiB + 12 bytes
    producer.produce(topic, value=huge, partition=0, on_delivery=delivered.callback)
    assert producer.flush(30) == 0
    assert huge in delivered.failed, "a 2 MB message was accepted although the broker limit is about 1 MB"
    assert delivered.failed[huge].code() == KafkaError.MSG_SIZE_TOO_LARGE, delivered.failed[huge]

    produce_and_read_back_one(strata.bootstrap, topic, b"small enough")


def test_offsets_for_times_finds_the_first_message_at_or_after_a_timestamp(strata):
    topic = unique_topic("rdkafka-times")
    create_topic(strata.bootstrap, topic, 1)
    base = int(time.time() * 1000) - 60_000
    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "all", "linger.ms": 20})
    for i in range(10):
        producer.produce(topic, value=f"t{i}".encode(), partition=0, timestamp=base + i * 1000)
    assert producer.flush(20) == 0

    consumer = new_consumer(strata.bootstrap)
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, 0, base + 3500)], timeout=10)
        assert found[0].error is None and found[0].offset == 4
        exact = consumer.offsets_for_times([TopicPartition(topic, 0, base + 7000)], timeout=10)
        assert exact[0].offset == 7
        after_all = consumer.offsets_for_times([TopicPartition(topic, 0, base + 60_000)], timeout=10)
        assert after_all[0].offset == OFFSET_END
    finally:
        consumer.close()
    consumed = consume_partitions(strata.bootstrap, topic, [0], expected=10)[0]
    assert [m.timestamp() for m in consumed] == [(TIMESTAMP_CREATE_TIME, base + i * 1000) for i in range(10)]
