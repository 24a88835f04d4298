"""How fast the console's pages and /metrics answer with many partitions (a benchmark, not a test).

    ulimit -n 65536   # each partition keeps three files open (issue 13 is about that)
    STRATA_BIN=target/release/strata compat-tests/.venv/bin/python compat-tests/bench/console_pages.py [PARTITIONS]

Starts a broker, creates one topic of PARTITIONS partitions (default 10,000) and 100 small
topics, writes a record to every partition, runs a consumer group that commits on the big
topic, then times each console page and /metrics (median and max of 5 loads each, over
HTTP, the way a browser asks for them) while a producer keeps writing.
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from conftest import StrataBroker, free_port, strata_binary  # noqa: E402


def timed(url: str, loads: int = 5) -> tuple[float, float, int]:
    times, size = [], 0
    for _ in range(loads):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as r:
            size = len(r.read())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), size


def main() -> None:
    partitions = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    work = pathlib.Path(tempfile.mkdtemp(prefix="strata-console-bench-"))
    (work / "data").mkdir()
    broker = StrataBroker(strata_binary(), free_port(), work / "data", work / "strata.log").start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        topics = [NewTopic("big", partitions, 1)] + [NewTopic(f"small-{i:03d}", 1, 1) for i in range(100)]
        for f in admin.create_topics(topics, request_timeout=300).values():
            f.result(300)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
        for p in range(partitions):
            producer.produce("big", value=b'{"n": %d}' % p, partition=p)
        producer.flush(120)
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "bench-group",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition("big", p, 0) for p in range(0, partitions, 10)])
        consumer.consume(num_messages=partitions // 10, timeout=30)
        consumer.commit(asynchronous=False)
        pages = ["/", "/topics", "/topics?q=small", "/topics/big", f"/topics/big?page={partitions // 100}",
                 "/topics/big/0", f"/topics/big/{partitions - 1}?format=json", "/groups", "/groups/bench-group",
                 "/archive", "/metrics"]
        print(f"strata console pages with {partitions} partitions in one topic plus 100 topics "
              f"({broker.binary}); milliseconds over HTTP, 5 loads each")
        print(f"{'page':45} {'median':>8} {'max':>8} {'bytes':>10}")
        for page in pages:
            for p in range(0, partitions, max(1, partitions // 50)):  # writes go on meanwhile
                producer.produce("big", value=b"more", partition=p)
            producer.poll(0)
            median, worst, size = timed(f"{broker.http_url}{page}")
            print(f"{page:45} {median:8.1f} {worst:8.1f} {size:10d}")
        producer.flush(30)
        consumer.close()
    finally:
        broker.shutdown_quietly()


if __name__ == "__main__":
    main()
