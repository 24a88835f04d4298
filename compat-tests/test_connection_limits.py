"""Connection limits, idle connections and the memory hostile clients can make the broker hold.

Kafka's settings: `max.connections`, `max.connections.per.ip` (and its overrides),
`connections.max.idle.ms`, `queued.max.request.bytes` and `socket.request.max.bytes`.
Raw sockets play the crowd and the hostile clients (several source addresses on loopback,
127.0.0.2 and 127.0.0.3, stand for other hosts); librdkafka (confluent-kafka) is the client
that must keep being served.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time

from confluent_kafka import Producer

import kafka_wire as w
from clients import Delivered, consume_partitions, create_topic, produce_all, unique_topic, wait_until
from conftest import strata_binary
from test_http import scrape, value


def connect(broker, source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", broker.port))
    return s


def answers(s: socket.socket, correlation_id: int = 7) -> bool:
    """One ApiVersions round trip; False if the broker closed the connection instead."""
    try:
        s.sendall(w.api_versions_v0_request(correlation_id))
        cid, error, _ = w.parse_api_versions_v0(w.recv_frame(s))
    except (ConnectionError, OSError):
        return False
    return (cid, error) == (correlation_id, 0)


def closed(broker, metric_reason: str) -> float:
    return value(scrape(broker), "strata_connections_closed_total", reason=metric_reason)


def produce_and_consume(bootstrap: str, count: int = 100, size: int = 1000) -> None:
    """A librdkafka producer writes `count` messages and a consumer reads every one back."""
    topic = unique_topic("served")
    create_topic(bootstrap, topic, 1)
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    values = [b"%05d" % i + b"v" * (size - 5) for i in range(count)]
    produce_all(producer, [(None, v, None) for v in values], delivered, topic, flush_timeout=60)
    assert not delivered.failed, list(delivered.failed.values())[:3]
    got = consume_partitions(bootstrap, topic, [0], expected=count, settle=0)[0]
    assert [m.value() for m in got] == values


def rss_kib(broker) -> int:
    with open(f"/proc/{broker.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ------------------------------------------------------------------------------------- limits

def test_the_connection_over_max_connections_is_closed_and_the_others_are_served(strata_factory):
    broker = strata_factory("--override", "max.connections=8")
    topic = unique_topic("limited")
    create_topic(broker.bootstrap, topic, 1)
    # A producer and a consumer hold their connections; raw sockets take the rest.
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    produce_all(producer, [(None, b"before", None)], delivered, topic)
    held, refused = [], None
    for _ in range(12):
        s = connect(broker)
        if answers(s, 1):
            held.append(s)
        else:
            refused = s
            break
    assert refused is not None, "no connection was refused at max.connections=8"
    assert 1 <= len(held) < 8
    assert closed(broker, "limit") >= 1
    # Those already connected keep being served: the raw sockets and the producer.
    assert all(answers(s, 2) for s in held)
    produce_all(producer, [(None, b"during", None)], delivered, topic)
    assert not delivered.failed and len(delivered.ok) == 2
    log = broker.log_path.read_text()
    assert "max.connections reached: closing the newest connection" in log
    # A log written to a file is plain text: no terminal colour codes for grep to trip on.
    assert "\x1b[" not in log
    # Places freed by closed connections are given to new ones.
    for s in held + [refused]:
        s.close()
    produce_and_consume(broker.bootstrap, count=20)


def test_max_connections_per_ip_closes_the_newest_from_that_address_only(strata_factory):
    broker = strata_factory("--override", "max.connections.per.ip=3",
                            "--override", "max.connections.per.ip.overrides=127.0.0.3:1,127.0.0.1:100")
    held = [connect(broker, "127.0.0.2") for _ in range(3)]
    assert all(answers(s) for s in held)
    assert not answers(connect(broker, "127.0.0.2")), "a fourth connection from 127.0.0.2 was served"
    other = connect(broker, "127.0.0.3")
    assert answers(other)
    assert not answers(connect(broker, "127.0.0.3")), "a second connection from 127.0.0.3 was served"
    # A flood from one address: every connection is closed, the log says so about once a second.
    before = closed(broker, "ip_limit")
    flood = []
    for _ in range(200):
        s = connect(broker, "127.0.0.2")
        flood.append(s)
    for s in flood:
        assert w.connection_closed_by_peer(s, timeout=5)
        s.close()
    assert closed(broker, "ip_limit") >= before + 200
    lines = [l for l in broker.log_path.read_text().splitlines() if "max.connections.per.ip" in l]
    assert 1 <= len(lines) < 20, f"{len(lines)} log lines for 202 refused connections"
    # Other addresses, and the connections already open, are served all along.
    produce_and_consume(broker.bootstrap)
    assert all(answers(s, 3) for s in held + [other])


def test_settings_kafka_refuses_stop_the_start(tmp_path):
    for override, message in [
        ("queued.max.request.bytes=1000", "queued.max.request.bytes must be larger or equal to socket.request.max.bytes"),
        ("max.connections.per.ip=0", "max.connections.per.ip can be set to zero only if"),
    ]:
        proc = subprocess.run([str(strata_binary()), "--data-dir", str(tmp_path / "d"), "--http-listen", "none",
                               "--listen", "127.0.0.1:0", "--override", override],
                              capture_output=True, timeout=30)
        assert proc.returncode == 2, proc.stderr.decode()
        assert message in proc.stderr.decode()


# ------------------------------------------------------------------------------------------ idle

def test_idle_connections_are_closed_and_busy_ones_kept(strata_factory):
    broker = strata_factory("--override", "connections.max.idle.ms=1000")
    idle = connect(broker)
    assert answers(idle)
    busy = connect(broker)
    # One that sends requests and never reads the answers: the answers stop moving, so it is
    # idle too, however much it sent.
    deaf = connect(broker)
    deaf.sendall(b"".join(w.api_versions_v0_request(i) for i in range(100)))
    start = time.monotonic()
    while time.monotonic() - start < 3:
        assert answers(busy, 9), "a connection in use was closed"
        time.sleep(0.2)
    assert w.connection_closed_by_peer(idle, timeout=10), "an idle connection was kept"
    wait_until(lambda: closed(broker, "idle") >= 2, 10, "both idle connections counted")
    deaf.close()
    # A consumer's long polls (500 ms, librdkafka's default) keep it busy.
    produce_and_consume(broker.bootstrap, count=20)


# --------------------------------------------------------------------------- request memory

def test_a_frame_over_socket_request_max_bytes_closes_the_connection(strata_factory):
    broker = strata_factory("--override", "socket.request.max.bytes=1048576")
    fits = connect(broker)
    # ApiVersions v0 with trailing bytes, as large as the limit allows: read and answered.
    header = w.header_v1(w.API_VERSIONS, 0, 5)
    fits.sendall(w.frame(header + b"\0" * (1048576 - len(header))))
    cid, error, _ = w.parse_api_versions_v0(w.recv_frame(fits))
    assert (cid, error) == (5, 0)
    big = connect(broker)
    big.sendall(struct.pack(">i", 1048577) + header)
    assert w.connection_closed_by_peer(big, timeout=5)
    wait_until(lambda: closed(broker, "bad_request") >= 1, 10, "the close counted")
    assert answers(fits)


def fetch_v4(correlation_id: int, topic: str, max_bytes: int) -> bytes:
    body = struct.pack(">iiiib", -1, 0, 0, max_bytes, 0)
    body += struct.pack(">i", 1) + w.string(topic) + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, max_bytes)
    return w.frame(w.header_v1(1, 4, correlation_id) + body)


def test_fetch_max_bytes_caps_what_one_fetch_answer_carries(strata_factory):
    broker = strata_factory("--override", "fetch.max.bytes=1048576")
    topic = unique_topic("capped")
    create_topic(broker.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "batch.size": 65536})
    produce_all(producer, [(None, b"x" * 1024, None) for _ in range(6000)], Delivered(), topic)
    with connect(broker) as s:
        s.sendall(fetch_v4(1, topic, 100 << 20))
        answer = w.recv_frame(s)
    # The cap, plus at most the batch that crosses it (KIP-74) and the headers.
    assert (1 << 20) // 2 < len(answer) < (1 << 20) + 65536 + 4096, len(answer)


def test_hostile_clients_cannot_push_memory_past_the_bound_and_others_are_served(strata_factory):
    frame_max, queued_max = 16 << 20, 64 << 20
    broker = strata_factory("--override", f"socket.request.max.bytes={frame_max}",
                            "--override", f"queued.max.request.bytes={queued_max}")
    # Data for the clients that fetch and never read, and a warmed-up broker to measure from.
    topic = unique_topic("hostile")
    create_topic(broker.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
    produce_all(producer, [(None, b"x" * 1024, None) for _ in range(4000)], Delivered(), topic)
    produce_and_consume(broker.bootstrap, count=50)
    baseline = rss_kib(broker)

    stop = threading.Event()
    peak = [baseline]
    stalled_readers = []

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(broker))
            time.sleep(0.01)

    def announce_and_send():
        # Frames of the largest size allowed, sent whole, again and again, answers never read.
        payload = w.header_v1(w.API_VERSIONS, 0, 1)
        chunk = b"\0" * (1 << 20)
        try:
            with connect(broker, "127.0.0.2") as s:
                s.settimeout(30)
                while not stop.is_set():
                    s.sendall(struct.pack(">i", frame_max) + payload)
                    left = frame_max - len(payload)
                    while left > 0 and not stop.is_set():
                        s.sendall(chunk[:min(left, len(chunk))])
                        left -= min(left, len(chunk))
        except OSError:
            pass

    def announce_and_stall():
        # A frame announced and never sent: its memory is reserved, not allocated.
        with connect(broker, "127.0.0.2") as s:
            s.sendall(struct.pack(">i", frame_max) + w.header_v1(w.API_VERSIONS, 0, 1))
            stop.wait()

    def fetch_and_never_read():
        # Pipelined fetches of 1 MiB each; the answers pile up until the broker stops reading.
        with connect(broker, "127.0.0.3") as s:
            s.settimeout(2)
            cid = 0
            try:
                while not stop.is_set():
                    cid += 1
                    s.sendall(fetch_v4(cid, topic, 1 << 20))
            except socket.timeout:
                stalled_readers.append(cid)
            stop.wait()

    threads = [threading.Thread(target=sample)]
    threads += [threading.Thread(target=announce_and_send) for _ in range(12)]
    threads += [threading.Thread(target=announce_and_stall) for _ in range(6)]
    threads += [threading.Thread(target=fetch_and_never_read) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: value(scrape(broker), "strata_request_memory_waits_total") > 0, 20,
                   "reading stopped for want of request memory")
        # Meanwhile a producer and a consumer are served.
        produce_and_consume(broker.bootstrap, count=200)
        wait_until(lambda: len(stalled_readers) == 6, 20, "the broker to stop reading from clients that do not read")
        # their fetches are read and answered, the answers not yet taken
        assert value(scrape(broker), "strata_request_in_flight_bytes") > 0
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    wait_until(lambda: value(scrape(broker), "strata_request_in_flight_bytes") == 0, 20,
               "no request in flight once those clients are gone")
    samples = scrape(broker)
    assert value(samples, "strata_request_memory_limit_bytes") == queued_max
    assert value(samples, "strata_request_memory_used_bytes") <= queued_max
    # The bound, plus what the six deaf readers hold (up to about 2 MiB each) and slack.
    margin = 48 << 10
    grown = peak[0] - baseline
    assert grown < (queued_max >> 10) + margin, (
        f"RSS grew by {grown} KiB (from {baseline} KiB), over {queued_max >> 20} MiB + {margin >> 10} MiB")
    assert broker.is_running()
    produce_and_consume(broker.bootstrap, count=20)
