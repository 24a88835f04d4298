"""DeleteTopics by topic id, and with deletion turned off.

- test_a_topic_is_deleted_by_its_id: DeleteTopics v6 naming only the id Metadata reports deletes the topic and answers with its name; the same id again,
  and an id no topic has, are UNKNOWN_TOPIC_ID.
- test_delete_topic_enable_false_refuses_every_deletion: with `delete.topic.enable=false`
  confluent-kafka's delete_topics fails with TOPIC_DELETION_DISABLED, DeleteTopics v2 gets
  INVALID_REQUEST (as Kafka answers versions before 3), and the topic keeps its records.
"""

from __future__ import annotations

import socket
import struct
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

import kafka_wire as kw
from clients import create_topic, first_message, unique_topic
from clients import topic_id as metadata_topic_id

DELETE_TOPICS = 20
UNKNOWN_TOPIC_ID = 100
INVALID_REQUEST = 42


def delete_by_id_v6(port: int, topic_id: uuid.UUID) -> list[tuple[str | None, uuid.UUID, int]]:
    body = kw.uvarint(2) + kw.compact_string(None) + topic_id.bytes + kw.uvarint(0)
    body += struct.pack(">i", 15000) + kw.uvarint(0)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(kw.frame(kw.header_v2(DELETE_TOPICS, 6, 7) + body))
        r = kw.Reader(kw.recv_frame(s))
    assert r.int32() == 7
    r.skip_tags()
    r.int32()  # throttle
    results = []
    for _ in range(r.compact_array_len()):
        name = r.compact_string()
        tid = uuid.UUID(bytes=r.take(16))
        code = r.int16()
        r.compact_string()  # message
        r.skip_tags()
        results.append((name, tid, code))
    return results


def delete_by_name_v2(port: int, topic: str) -> list[tuple[str, int]]:
    body = struct.pack(">i", 1) + kw.string(topic) + struct.pack(">i", 15000)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(kw.frame(kw.header_v1(DELETE_TOPICS, 2, 9) + body))
        r = kw.Reader(kw.recv_frame(s))
    assert r.int32() == 9
    r.int32()  # throttle
    return [(r.string(), r.int16()) for _ in range(r.int32())]


def test_a_topic_is_deleted_by_its_id(strata):
    topic = unique_topic("delete-by-id")
    create_topic(strata.bootstrap, topic, 1)
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    topic_id = metadata_topic_id(strata.bootstrap, topic)

    assert delete_by_id_v6(strata.port, topic_id) == [(topic, topic_id, 0)]
    assert topic not in admin.list_topics(timeout=10).topics
    assert delete_by_id_v6(strata.port, topic_id) == [(None, topic_id, UNKNOWN_TOPIC_ID)]
    stranger = uuid.uuid4()
    assert delete_by_id_v6(strata.port, stranger) == [(None, stranger, UNKNOWN_TOPIC_ID)]


def test_delete_topic_enable_false_refuses_every_deletion(strata_factory):
    broker = strata_factory("--override", "delete.topic.enable=false")
    topic = unique_topic("kept")
    create_topic(broker.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topic, b"still here")
    assert producer.flush(20) == 0

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as e:
        admin.delete_topics([topic], operation_timeout=10)[topic].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.TOPIC_DELETION_DISABLED
    assert delete_by_name_v2(broker.port, topic) == [(topic, INVALID_REQUEST)]

    assert topic in admin.list_topics(timeout=10).topics
    assert first_message(broker.bootstrap, topic, 0).value() == b"still here"
