"""Malformed bytes on a raw socket: the broker stays up and real clients keep working.

Frames are written by hand: int32 size, then request header v1 (int16 api_key, int16
api_version, int32 correlation_id, nullable string client_id), then the body.
"""

import random
import socket
import struct

import pytest

import kafka_wire as w
from clients import Delivered, consume_partitions, create_topic, produce_and_read_back_one, unique_topic

AUTO_CREATE = ("--override", "auto.create.topics.enable=true", "--override", "num.partitions=1")


def connect(broker):
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    s.settimeout(5)
    return s


def send_quietly(sock, data):
    """Send; the broker may already have hung up, which is fine."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def assert_broker_still_serves(broker, label):
    assert broker.is_running(), f"strata died after {label} (exit status {broker.proc.returncode})"
    # a raw ApiVersions on a fresh connection
    with connect(broker) as s:
        s.sendall(w.api_versions_v0_request(4242))
        correlation_id, error, keys = w.parse_api_versions_v0(w.recv_frame(s))
    assert (correlation_id, error) == (4242, 0)
    assert w.API_VERSIONS in keys
    # and a real client: librdkafka produces and reads back
    produce_and_read_back_one(broker.bootstrap, unique_topic("after-bad-input"), f"alive after {label}".encode())


def random_garbage():
    rng = random.Random(1234)
    return bytes(rng.getrandbits(8) for _ in range(4096))


def metadata_v1(correlation_id, body):
    return w.frame(w.header_v1(w.API_METADATA, 1, correlation_id) + body)


BAD_INPUTS = {
    "random garbage bytes": lambda: random_garbage(),
    "a frame claiming 0x7fffffff bytes": lambda: struct.pack(">i", 0x7FFFFFFF) + b"\x00\x12\x00\x00" * 4,
    "a negative frame length": lambda: struct.pack(">i", -5) + b"\x00" * 16,
    "a zero frame length": lambda: struct.pack(">i", 0),
    "a frame shorter than a request header": lambda: w.frame(b"\x00\x03\x00"),
    "an unknown api key 999": lambda: w.frame(w.header_v1(999, 0, 7)),
    "an unknown api key 999 with a body": lambda: w.frame(w.header_v1(999, 3, 7) + b"\x01\x02\x03\x04" * 8),
    "a Metadata request with a garbage body": lambda: metadata_v1(
        8, struct.pack(">i", 3) + struct.pack(">h", 500) + b"no-such-bytes\xff\xfe"),
    "a Metadata request whose topic array claims 0x7fffffff elements": lambda: metadata_v1(
        9, struct.pack(">i", 0x7FFFFFFF) + w.string("t")),
    "a flexible Metadata v9 request whose compact array claims 0x7fffffff elements": lambda: w.frame(
        w.header_v2(w.API_METADATA, 9, 10) + w.uvarint(0x7FFFFFFF) + b"\x00\x00\x00"),
    "a string length pointing past the end of the frame": lambda: metadata_v1(
        11, struct.pack(">i", 1) + struct.pack(">h", 0x7FFF) + b"abc"),
    "a client id length pointing past the end of the frame": lambda: w.frame(
        struct.pack(">hhih", w.API_METADATA, 1, 12, 1000) + b"xy"),
    "a Produce request with a garbage record set": lambda: w.frame(
        w.header_v1(w.API_PRODUCE, 3, 13) + w.string(None) + struct.pack(">hi", 1, 1000) + struct.pack(">i", 1)
        + w.string("garbage-topic") + struct.pack(">i", 1) + struct.pack(">ii", 0, 64) + random_garbage()[:64]),
}


@pytest.mark.parametrize("label", list(BAD_INPUTS))
def test_broker_survives(strata_factory, label):
    broker = strata_factory(*AUTO_CREATE)
    with connect(broker) as s:
        send_quietly(s, BAD_INPUTS[label]())
        # give the broker time to read and react before we hang up
        w.connection_closed_by_peer(s, timeout=1.0)
    assert_broker_still_serves(broker, label)


@pytest.mark.parametrize("label,data", [
    ("a frame claiming 0x7fffffff bytes", struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 16),
    ("a negative frame length", struct.pack(">i", -1)),
])
def test_broker_closes_the_connection_on_an_impossible_frame_size(strata, label, data):
    with connect(strata) as s:
        s.sendall(data)
        assert w.connection_closed_by_peer(s, timeout=5), f"connection still open 5 s after {label}"
    assert_broker_still_serves(strata, label)


def test_truncated_request_then_hang_up_leaves_the_broker_serving(strata):
    # the size says 100 bytes, only 10 arrive, then the client closes
    with connect(strata) as s:
        s.sendall(struct.pack(">i", 100) + w.header_v1(w.API_METADATA, 1, 1)[:10])
    # the same, but many connections at once
    socks = [connect(strata) for _ in range(50)]
    for s in socks:
        s.sendall(struct.pack(">i", 100) + b"\x00\x03\x00\x01\x00\x00")
    for s in socks:
        s.close()
    assert_broker_still_serves(strata, "truncated requests")


def test_api_versions_with_an_unknown_version_gets_unsupported_version_in_a_v0_body(strata):
    with connect(strata) as s:
        s.sendall(w.frame(w.header_v1(w.API_VERSIONS, 99, 0x5EED)))
        correlation_id, error, keys = w.parse_api_versions_v0(w.recv_frame(s))
    assert correlation_id == 0x5EED
    assert error == w.ERR_UNSUPPORTED_VERSION, f"error code {error}, expected 35 (UNSUPPORTED_VERSION)"
    assert w.API_VERSIONS in keys, f"the answer must tell which ApiVersions versions exist: {keys}"
    low, high = keys[w.API_VERSIONS]
    assert low == 0 and high >= 3
    assert_broker_still_serves(strata, "ApiVersions v99")


def test_the_same_connection_keeps_working_after_an_unsupported_api_versions_request(strata):
    # a client (KIP-511) retries ApiVersions on the same connection with a version the broker named
    with connect(strata) as s:
        s.sendall(w.frame(w.header_v1(w.API_VERSIONS, 99, 1)))
        _, error, _ = w.parse_api_versions_v0(w.recv_frame(s))
        assert error == w.ERR_UNSUPPORTED_VERSION
        s.sendall(w.api_versions_v0_request(2))
        correlation_id, error, keys = w.parse_api_versions_v0(w.recv_frame(s))
    assert (correlation_id, error) == (2, 0)
    assert {0, 1, 3, 18} <= set(keys), f"Produce, Fetch, Metadata and ApiVersions should be advertised: {keys}"


def test_a_batch_with_a_bad_crc_is_refused_with_corrupt_message_and_never_stored(strata):
    topic = unique_topic("bad-crc")
    create_topic(strata.bootstrap, topic, 1)
    good = [(b"k1", b"first good"), (b"k2", b"second good")]
    with connect(strata) as s:
        s.sendall(w.produce_v3_request(21, topic, 0, w.record_batch(good)))
        cid, results = w.parse_produce_v3_response(w.recv_frame(s))
        assert cid == 21 and results == [(topic, 0, w.ERR_NONE, 0)], results

        s.sendall(w.produce_v3_request(22, topic, 0, w.record_batch([(b"k3", b"tampered")], corrupt_crc=True)))
        try:
            cid, results = w.parse_produce_v3_response(w.recv_frame(s))
        except ConnectionError:
            pytest.fail("broker closed the connection instead of answering CORRUPT_MESSAGE (2)")
        assert cid == 22
        assert [(t, p, e) for t, p, e, _ in results] == [(topic, 0, w.ERR_CORRUPT_MESSAGE)], results

        s.sendall(w.produce_v3_request(23, topic, 0, w.record_batch([(b"k4", b"third good")])))
        cid, results = w.parse_produce_v3_response(w.recv_frame(s))
        assert cid == 23 and results == [(topic, 0, w.ERR_NONE, 2)], results

    consumed = consume_partitions(strata.bootstrap, topic, [0], expected=3)[0]
    assert [(m.offset(), m.key(), m.value()) for m in consumed] == [
        (0, b"k1", b"first good"), (1, b"k2", b"second good"), (2, b"k4", b"third good")]
    assert_broker_still_serves(strata, "a corrupt batch")


def test_an_acks_zero_produce_that_fails_closes_the_connection_as_kafka_does(strata):
    """acks=0 gets no answer, so Kafka closes the connection when a partition fails: the
    producer's one signal to refresh its metadata. A produce that succeeds leaves it open."""
    topic = unique_topic("acks0-close")
    create_topic(strata.bootstrap, topic, 1)
    with connect(strata) as s:
        s.sendall(w.produce_v3_request(31, topic, 0, w.record_batch([(b"k", b"kept")]), acks=0))
        s.sendall(w.api_versions_v0_request(32))
        correlation_id, error, _ = w.parse_api_versions_v0(w.recv_frame(s))
        assert (correlation_id, error) == (32, 0), "the acks=0 produce must not be answered"

        s.sendall(w.produce_v3_request(33, topic, 7, w.record_batch([(b"k", b"nowhere")]), acks=0))
        assert w.connection_closed_by_peer(s, timeout=5), "an acks=0 produce to a missing partition left the connection open"
    consumed = consume_partitions(strata.bootstrap, topic, [0], expected=1)[0]
    assert [m.value() for m in consumed] == [b"kept"]
    assert_broker_still_serves(strata, "a failed acks=0 produce")


def test_a_producer_keeps_working_while_another_connection_sends_garbage(strata):
    topic = unique_topic("bad-neighbour")
    create_topic(strata.bootstrap, topic, 1)
    from confluent_kafka import Producer
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "all"})
    garbage = random_garbage()
    for i in range(20):
        producer.produce(topic, value=f"v{i}".encode(), on_delivery=delivered.callback)
        producer.poll(0)
        with connect(strata) as s:
            send_quietly(s, garbage[i * 100:(i + 1) * 100])
    assert producer.flush(30) == 0
    assert len(delivered.ok) == 20 and not delivered.failed
    consumed = consume_partitions(strata.bootstrap, topic, [0], expected=20)[0]
    assert [m.value() for m in consumed] == [f"v{i}".encode() for i in range(20)]
