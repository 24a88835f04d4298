"""/metrics values checked against what real clients did, and /ready against recovery.

- test_partition_traffic_matches_what_clients_produce_and_read: confluent-kafka produces N
  records of a known size; bytes in equal the partition's .log file and records in equal N;
  after a consumer reads them once, bytes and records out equal the same.
- test_group_lag_follows_a_stopped_consumer (classic and KIP-848 consumer protocols): a group
  reads and commits (lag 0, committed offset N, one member, state Stable); its consumer
  stops (no member, state Empty) and new records arrive: lag is their count; a consumer of
  the group catches up and commits: lag 0 again.
- test_archive_metrics_move_as_segments_are_archived: with small segments and the default
  local-directory archive, the uploaded segments and bytes, the archived size per partition
  and the remote segment count match the archive's manifest, nothing is left pending; a
  consumer reading from offset 0 reads the archive (remote reads, chunk cache misses, then
  a cache that holds bytes).
- test_archive_backlog_while_a_transaction_holds_the_segments: segments closed under an
  open transaction are not archived: pending segments and bytes equal the closed .log files,
  the lag in offsets reaches the active segment; after the commit they are archived and the
  backlog is 0. A topic with remote.storage.enable=false shows no backlog.
- test_transaction_markers_are_not_records_in_or_out: a committed transaction of 5 records
  counts 5 records in and, for a read_committed consumer, 5 out; the marker's bytes go out
  with them but are not counted in.
- test_cleaner_metrics_count_a_compaction: 30 keys written 4 times and cleaned: a pass, the
  90 superseded records removed, fewer bytes written than read; the compacted topic shows no
  archive backlog (it is never archived).
- test_ready_only_after_recovery: a broker on a data dir of thousands of partitions killed
  with SIGKILL answers /ready 503 while it recovers, then 200, and the Kafka port serves once
  it says 200.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_wire
from clients import (Delivered, file_sizes, consume_partitions, create_topic, group_consumer, poll_values, produce_all,
                     produce_values, unique_topic, wait_until)
from test_http import get, scrape


def sample(samples, name, **labels) -> float | None:
    """One sample's value, None when /metrics does not have it."""
    return samples.get((name, tuple(sorted(labels.items()))))


def metric(broker, name, **labels) -> float | None:
    return sample(scrape(broker), name, **labels)


def log_bytes(broker, topic: str, partition: int) -> int:
    pdir = broker.data_dir / f"{topic}-{partition}"
    return sum(size for name, size in file_sizes(pdir, ".log") if re.fullmatch(r"\d{20}\.log", name))


# ---------------------------------------------------------------------------------------------- traffic

def test_partition_traffic_matches_what_clients_produce_and_read(strata):
    topic = unique_topic("traffic")
    create_topic(strata.bootstrap, topic, 2)
    n, size = 200, 100
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": strata.bootstrap, "linger.ms": 20, "compression.type": "none"})
    # keyed, so that both partitions get records (keyless ones may all stick to one)
    produce_all(producer, [(b"k%03d" % i, b"%03d" % i + b"x" * (size - 3), None) for i in range(n)],
                delivered, topic)
    assert not delivered.failed
    wanted = {p: sum(1 for (pp, _) in delivered.ok.values() if pp == p) for p in (0, 1)}
    assert all(wanted.values()), wanted

    s = scrape(strata)
    for p in (0, 1):
        labels = dict(topic=topic, partition=str(p))
        assert sample(s, "strata_partition_in_records_total", **labels) == wanted[p]
        assert sample(s, "strata_partition_in_bytes_total", **labels) == log_bytes(strata, topic, p)
        # every record's value is in there, plus the batch and record headers
        assert sample(s, "strata_partition_in_bytes_total", **labels) > wanted[p] * size
        assert sample(s, "strata_partition_out_records_total", **labels) == 0
        assert sample(s, "strata_partition_out_bytes_total", **labels) == 0

    got = consume_partitions(strata.bootstrap, topic, [0, 1], expected=n, settle=0.5)
    assert sum(len(v) for v in got.values()) == n
    s = scrape(strata)
    for p in (0, 1):
        labels = dict(topic=topic, partition=str(p))
        assert sample(s, "strata_partition_out_records_total", **labels) == wanted[p]
        assert sample(s, "strata_partition_out_bytes_total", **labels) == \
            sample(s, "strata_partition_in_bytes_total", **labels)


def test_transaction_markers_are_not_records_in_or_out(strata):
    topic = unique_topic("traffic-txn")
    create_topic(strata.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": strata.bootstrap, "transactional.id": unique_topic("txn")})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=b"in-txn-%d" % i, partition=0)
    producer.commit_transaction(30)
    labels = dict(topic=topic, partition="0")
    s = scrape(strata)
    assert sample(s, "strata_partition_in_records_total", **labels) == 5
    assert sample(s, "strata_partition_log_end_offset", **labels) == 6  # the commit marker
    assert 0 < sample(s, "strata_partition_in_bytes_total", **labels) < log_bytes(strata, topic, 0)
    got = consume_partitions(strata.bootstrap, topic, [0], expected=5, settle=0.5,
                             **{"isolation.level": "read_committed"})
    assert len(got[0]) == 5
    s = scrape(strata)
    assert sample(s, "strata_partition_out_records_total", **labels) == 5
    # the marker's batch travels with the records
    assert sample(s, "strata_partition_out_bytes_total", **labels) == log_bytes(strata, topic, 0)


# ---------------------------------------------------------------------------------------------- groups

@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_group_lag_follows_a_stopped_consumer(strata, protocol):
    topic = unique_topic(f"lag-{protocol}")
    group = unique_topic(f"lag-group-{protocol}")
    create_topic(strata.bootstrap, topic, 1)
    produce_values(strata.bootstrap, topic, [b"first-%03d" % i for i in range(20)])
    at = dict(group=group, topic=topic, partition="0")
    kind = dict(group=group, protocol=protocol)

    consumer = group_consumer(strata.bootstrap, group, protocol)
    consumer.subscribe([topic])
    assert sum(len(v) for v in poll_values([consumer], 20, settle=0.5).values()) == 20
    consumer.commit(asynchronous=False)
    wait_until(lambda: metric(strata, "strata_group_state", state="Stable", **kind) == 1, 30, "group Stable")
    s = scrape(strata)
    assert sample(s, "strata_group_committed_offset", **at) == 20
    assert sample(s, "strata_group_lag", **at) == 0
    assert sample(s, "strata_group_members", **kind) == 1
    assert sample(s, "strata_group_state", state="Empty", **kind) == 0

    consumer.close()
    wait_until(lambda: metric(strata, "strata_group_members", **kind) == 0, 30, "member gone")
    produce_values(strata.bootstrap, topic, [b"second-%03d" % i for i in range(7)])
    s = scrape(strata)
    assert sample(s, "strata_group_lag", **at) == 7
    assert sample(s, "strata_group_committed_offset", **at) == 20
    assert sample(s, "strata_group_state", state="Empty", **kind) == 1

    consumer = group_consumer(strata.bootstrap, group, protocol)
    consumer.subscribe([topic])
    try:
        assert sum(len(v) for v in poll_values([consumer], 7, settle=0.5).values()) == 7
        consumer.commit(asynchronous=False)
        s = scrape(strata)
        assert sample(s, "strata_group_lag", **at) == 0
        assert sample(s, "strata_group_committed_offset", **at) == 27
    finally:
        consumer.close()


# ---------------------------------------------------------------------------------------------- the archive

def manifest(broker, topic: str, partition: int) -> list[dict]:
    """The partition's manifest in the default local-directory archive (<data_dir>/tier)."""
    found = list((broker.data_dir / "tier").glob(f"*/{topic}-*/{partition}/manifest.json"))
    if not found:
        return []
    return json.loads(found[0].read_text())["segments"]


def test_archive_metrics_move_as_segments_are_archived(strata_factory):
    broker = strata_factory("--override", "log.segment.bytes=16384",
                            "--override", "log.local.retention.ms=500",
                            "--override", "log.retention.check.interval.ms=200")
    before = scrape(broker)
    topic = unique_topic("archive-metrics")
    create_topic(broker.bootstrap, topic, 1)
    n = 600
    delivered = Delivered()
    # batches of about 4 KiB, so that 16 KiB segments roll
    producer = Producer({"bootstrap.servers": broker.bootstrap, "batch.size": 4096, "linger.ms": 5})
    produce_all(producer, [(None, b"%04d" % i + b"a" * 196, None) for i in range(n)], delivered, topic)
    assert not delivered.failed
    labels = dict(topic=topic, partition="0")

    def archived_and_trimmed():
        segs = manifest(broker, topic, 0)
        local = sorted((broker.data_dir / f"{topic}-0").glob("*.log"))
        return len(segs) >= 4 and len(local) == 1 and segs[-1]["end_offset"] + 1 == int(local[0].name[:20])
    wait_until(archived_and_trimmed, 60, "closed segments archived and deleted locally")

    segs = manifest(broker, topic, 0)
    wait_until(lambda: metric(broker, "strata_partition_remote_segments", **labels) == len(segs), 10,
               "the broker installed the manifest")
    s = scrape(broker)
    assert sample(s, "strata_partition_remote_size_bytes", **labels) == sum(x["size"] for x in segs)
    assert sample(s, "strata_archive_uploaded_segments_total") - \
        (sample(before, "strata_archive_uploaded_segments_total") or 0) == len(segs)
    assert sample(s, "strata_archive_uploaded_bytes_total") - \
        (sample(before, "strata_archive_uploaded_bytes_total") or 0) == sum(x["size"] for x in segs)
    assert sample(s, "strata_archive_upload_errors_total") == 0
    assert sample(s, "strata_partition_archive_pending_segments", **labels) == 0
    assert sample(s, "strata_partition_archive_pending_bytes", **labels) == 0
    assert sample(s, "strata_partition_archive_lag_offsets", **labels) == 0
    # what is local is the active segment only
    assert sample(s, "strata_partition_local_size_bytes", **labels) == log_bytes(broker, topic, 0)
    assert sample(s, "strata_archive_remote_reads_total") == 0

    got = consume_partitions(broker.bootstrap, topic, [0], expected=n, settle=0.5)
    assert [m.value()[:4] for m in got[0]] == [b"%04d" % i for i in range(n)]
    s = scrape(broker)
    assert sample(s, "strata_archive_remote_reads_total") >= len(segs)
    assert sample(s, "strata_archive_remote_read_bytes_total") >= sum(x["size"] for x in segs)
    assert sample(s, "strata_archive_cache_misses_total") >= 1
    assert sample(s, "strata_archive_cache_size_bytes") > 0
    assert sample(s, "strata_archive_cache_size_bytes") <= sample(s, "strata_archive_cache_limit_bytes")
    assert sample(s, "strata_partition_out_records_total", **labels) == n
    # a second reader finds the chunks cached
    hits = sample(s, "strata_archive_cache_hits_total")
    again = consume_partitions(broker.bootstrap, topic, [0], expected=n, settle=0.5)
    assert len(again[0]) == n
    assert metric(broker, "strata_archive_cache_hits_total") >= hits + len(segs)


def test_archive_backlog_while_a_transaction_holds_the_segments(strata_factory):
    broker = strata_factory("--override", "log.segment.bytes=16384",
                            "--override", "log.retention.check.interval.ms=200")
    topic = unique_topic("archive-backlog")
    create_topic(broker.bootstrap, topic, 1)
    labels = dict(topic=topic, partition="0")
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique_topic("backlog"),
                         "batch.size": 4096, "linger.ms": 5})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(600):
        producer.produce(topic, value=b"%04d" % i + b"b" * 196, partition=0)
        producer.poll(0)
    assert producer.flush(30) == 0
    # Segments closed under an open transaction wait: nothing at or past the last stable
    # offset (0 here) is archived.
    pdir = broker.data_dir / f"{topic}-0"
    logs = sorted(p for p in pdir.glob("*.log") if re.fullmatch(r"\d{20}\.log", p.name))
    assert len(logs) >= 4
    closed, active = logs[:-1], logs[-1]
    s = scrape(broker)
    assert sample(s, "strata_partition_last_stable_offset", **labels) == 0
    assert sample(s, "strata_partition_archive_pending_segments", **labels) == len(closed)
    assert sample(s, "strata_partition_archive_pending_bytes", **labels) == sum(p.stat().st_size for p in closed)
    assert sample(s, "strata_partition_archive_lag_offsets", **labels) == int(active.name[:20])
    assert sample(s, "strata_partition_remote_segments", **labels) == 0

    producer.commit_transaction(30)
    wait_until(lambda: metric(broker, "strata_partition_archive_pending_segments", **labels) == 0, 30,
               "the backlog archived once the transaction committed")
    s = scrape(broker)
    assert sample(s, "strata_partition_archive_lag_offsets", **labels) == 0
    assert sample(s, "strata_partition_remote_segments", **labels) >= len(closed)

    # a topic that is not archived has no backlog
    local_only = unique_topic("not-archived")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(local_only, 1, 1, config={"remote.storage.enable": "false"})])[local_only].result(15)
    produce_values(broker.bootstrap, local_only, [b"x" * 200 for _ in range(10)])
    s = scrape(broker)
    assert sample(s, "strata_partition_in_records_total", topic=local_only, partition="0") == 10
    assert sample(s, "strata_partition_archive_pending_segments", topic=local_only, partition="0") is None


# ---------------------------------------------------------------------------------------------- /ready

def fill(broker, partitions: int) -> None:
    """A topic of `partitions` partitions, a record in each, and a kill: every tail needs recovery."""
    topic = unique_topic("many")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                        operation_timeout=120, request_timeout=120)[topic].result(timeout=120)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50})
    delivered = Delivered()
    for p in range(partitions):
        producer.produce(topic, value=b"v%d" % p, partition=p, on_delivery=delivered.callback)
        producer.poll(0)
    assert producer.flush(120) == 0
    assert not delivered.failed


def watch_ready(broker) -> tuple[list[int], float]:
    """Starts the broker's process and polls /ready from that moment until it answers 200.
    Returns the status codes seen in order (connection refused is left out)."""
    seen: list[int] = []
    with open(broker.log_path, "ab") as log:
        broker.proc = subprocess.Popen(broker.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       cwd=broker.data_dir.parent)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert broker.proc.poll() is None, broker.log_tail()
        try:
            status, _ = get(f"{broker.http_url}/ready", timeout=5)
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.002)
            continue
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == 200:
            return seen
        time.sleep(0.002)
    raise AssertionError(f"/ready never answered 200: {seen}\n{broker.log_tail()}")


def test_ready_only_after_recovery(strata_factory):
    broker = strata_factory()
    partitions, total = 2000, 0
    for _ in range(4):
        fill(broker, partitions)
        total += partitions
        broker.kill()
        seen = watch_ready(broker)
        assert seen[-1] == 200 and all(s in (503, 200) for s in seen), seen
        # once ready, the Kafka listener serves
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
            s.settimeout(5)
            s.sendall(kafka_wire.api_versions_v0_request(7))
            assert kafka_wire.recv_frame(s)[:4] == (7).to_bytes(4, "big")
        if seen == [503, 200]:
            return
        partitions *= 2  # recovery was too quick to see: more partitions, not a timed assertion
    pytest.fail(f"/ready never answered 503 during recovery of {total} partitions")


# ---------------------------------------------------------------------------------------------- the cleaner

def test_cleaner_metrics_count_a_compaction(strata_factory):
    from test_compaction import FAST_CLEANER, create_compacted, produce_keyed, roll_with_filler

    broker = strata_factory(*FAST_CLEANER)
    topic = unique_topic("compact-metrics")
    create_compacted(broker.bootstrap, topic)
    records = [(b"key-%02d" % k, b"v%d-" % v + b"x" * 60) for v in range(4) for k in range(30)]
    produce_keyed(broker.bootstrap, topic, records)
    roll_with_filler(broker.bootstrap, topic)
    # 30 keys written 4 times: 90 records are superseded
    wait_until(lambda: (metric(broker, "strata_cleaner_removed_records_total") or 0) >= 90, 30,
               "the cleaner removed the superseded records")
    s = scrape(broker)
    assert sample(s, "strata_cleaner_passes_total") >= 1
    assert sample(s, "strata_cleaner_errors_total") == 0
    assert sample(s, "strata_cleaner_read_bytes_total") > sample(s, "strata_cleaner_written_bytes_total") > 0
    # a compacted topic is never archived, so it has no archive backlog
    assert sample(s, "strata_partition_archive_pending_segments", topic=topic, partition="0") is None
    assert sample(s, "strata_partition_local_size_bytes", topic=topic, partition="0") > 0
