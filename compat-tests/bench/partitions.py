"""A hundred thousand partitions under the default open-file limit (a benchmark, not a test).

    STRATA_BIN=target/release/strata compat-tests/.venv/bin/python compat-tests/bench/partitions.py [TOPICS [PARTITIONS]]

Starts a broker with its defaults (archive on, in a local directory) and no raised limit,
creates TOPICS topics (default 1,000) of PARTITIONS partitions (default 100), writes a record
to every partition and reads every one back, then reports: open files and RSS with all of
them idle, Metadata for all topics, the time from a restart (clean, then after SIGKILL) to
the first answered request and to /ready (every log recovered), and reads again after the
restart.
"""

from __future__ import annotations

import pathlib
import resource
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import kafka_wire  # noqa: E402
from bench_helper import memory_kib, open_fds  # noqa: E402
from conftest import StrataBroker, free_port, strata_binary  # noqa: E402


def rss_mib(pid: int) -> float:
    return memory_kib(pid)[0] / 1024


def create_all(bootstrap: str, names: list[str], partitions: int) -> float:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    started = time.perf_counter()
    for i in range(0, len(names), 50):
        batch = [NewTopic(n, partitions, 1) for n in names[i:i + 50]]
        for f in admin.create_topics(batch, request_timeout=600).values():
            f.result(600)
    return time.perf_counter() - started


def produce_all(bootstrap: str, names: list[str], partitions: int, tag: bytes) -> float:
    """One record to every partition, by producers of about 2,000 partitions each: one
    librdkafka producer's time per request grows with the partitions it writes to, so a
    single one for 100,000 partitions spends minutes on its own bookkeeping."""
    failures = []
    started = time.perf_counter()
    per_producer = max(1, 2_000 // partitions)
    for i in range(0, len(names), per_producer):
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "acks": "all"})
        for n in names[i:i + per_producer]:
            for p in range(partitions):
                producer.produce(n, value=tag + b"-%d" % p, partition=p,
                                 on_delivery=lambda err, _msg: err and failures.append(err))
            producer.poll(0)
        left = producer.flush(120)
        if left or failures:
            raise SystemExit(f"produce failed: {left} undelivered, errors {failures[:3]}")
    return time.perf_counter() - started


def read_all(bootstrap: str, names: list[str], partitions: int, expected: int) -> tuple[float, int]:
    """Reads every partition from the start with consumers of 10,000 partitions each."""
    started = time.perf_counter()
    got = 0
    tps = [TopicPartition(n, p, 0) for n in names for p in range(partitions)]
    for i in range(0, len(tps), 10_000):
        part = tps[i:i + 10_000]
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-partitions",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 100})
        consumer.assign(part)
        want = len(part) * expected
        seen = 0
        deadline = time.monotonic() + 300
        while seen < want and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10_000, timeout=1.0):
                if m.error() is None:
                    seen += 1
        consumer.close()
        if seen < want:
            raise SystemExit(f"read back {seen} of {want} records from partitions {i}..{i + len(part)}")
        got += seen
    return time.perf_counter() - started, got


def metadata_all(bootstrap: str, runs: int = 5) -> tuple[float, float, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.list_topics(timeout=30)
    times, count = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        md = admin.list_topics(timeout=60)
        times.append(time.perf_counter() - started)
        count = sum(len(t.partitions) for t in md.topics.values())
    return statistics.median(times), max(times), count


def metadata_wire(bootstrap: str, runs: int = 5) -> tuple[float, float, int]:
    """The broker's own time for Metadata of every topic: a v1 request on a socket, timed
    until the whole answer is read (no client parses it)."""
    host, port = bootstrap.rsplit(":", 1)
    times, size = [], 0
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        for cid in range(runs):
            started = time.perf_counter()
            sock.sendall(kafka_wire.frame(kafka_wire.header_v1(3, 1, cid) + struct.pack(">i", -1)))
            size = len(kafka_wire.recv_frame(sock))
            times.append(time.perf_counter() - started)
    return statistics.median(times), max(times), size


def wait_ready(broker: StrataBroker, timeout: float = 600) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{broker.http_url}/ready", timeout=5) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("/ready never turned ready")


def restart(broker: StrataBroker, how: str) -> tuple[float, float]:
    """(seconds to the first answered ApiVersions, seconds more to /ready)."""
    if how == "kill":
        broker.kill()
    else:
        broker.stop(timeout=600)
    started = time.perf_counter()
    broker.start()
    first = time.perf_counter() - started
    return first, wait_ready(broker)


def report_metadata(bootstrap: str) -> None:
    median, worst, size = metadata_wire(bootstrap)
    print(f"Metadata v1 for all topics on the wire ({size / 1e6:.1f} MB): median {median * 1000:.0f} ms, "
          f"max {worst * 1000:.0f} ms")
    median, worst, count = metadata_all(bootstrap)
    print(f"... and through librdkafka's list_topics ({count:,} partitions): median {median * 1000:.0f} ms, "
          f"max {worst * 1000:.0f} ms")


def main() -> None:
    topics = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    partitions = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    total = topics * partitions
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    work = pathlib.Path(tempfile.mkdtemp(prefix="strata-partitions-bench-"))
    (work / "data").mkdir()
    broker = StrataBroker(strata_binary(), free_port(), work / "data", work / "strata.log").start()
    names = [f"t{i:04d}" for i in range(topics)]
    try:
        pid = broker.proc.pid
        print(f"{topics} topics x {partitions} partitions = {total:,} partitions; open-file limit {soft}/{hard}")
        print(f"empty broker: RSS {rss_mib(pid):.0f} MiB, {open_fds(pid)} open files")
        created = create_all(broker.bootstrap, names, partitions)
        print(f"created in {created:.1f} s: RSS {rss_mib(pid):.0f} MiB, {open_fds(pid)} open files")
        wrote = produce_all(broker.bootstrap, names, partitions, b"first")
        print(f"wrote a record to each in {wrote:.1f} s: {open_fds(pid)} open files")
        took, got = read_all(broker.bootstrap, names, partitions, 1)
        print(f"read back {got:,} records in {took:.1f} s: {open_fds(pid)} open files")
        time.sleep(10)
        print(f"idle: RSS {rss_mib(pid):.0f} MiB, {open_fds(pid)} open files")
        report_metadata(broker.bootstrap)
        for how in ("stop", "kill"):
            first, ready = restart(broker, how)
            pid = broker.proc.pid
            print(f"restart after {'SIGTERM' if how == 'stop' else 'SIGKILL'}: first answer {first:.2f} s, "
                  f"/ready {first + ready:.2f} s; RSS {rss_mib(pid):.0f} MiB, {open_fds(pid)} open files")
        wrote = produce_all(broker.bootstrap, names, partitions, b"second")
        took, got = read_all(broker.bootstrap, names, partitions, 2)
        print(f"after the restarts: wrote one more to each and read back {got:,} records in {wrote + took:.1f} s")
        time.sleep(10)
        print(f"idle: RSS {rss_mib(pid):.0f} MiB, {open_fds(pid)} open files")
        report_metadata(broker.bootstrap)
    finally:
        broker.shutdown_quietly()
        print(f"broker log: {work / 'strata.log'}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
