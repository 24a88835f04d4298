"""Tiered storage with real clients: closed segments go to an object store and stay readable.

Every test runs a broker with `--config` (see s3.tier_config) and small segments
(log.segment.bytes 64 KiB), a short local retention (500 ms) and a short archiver interval
(log.retention.check.interval.ms 200), so a few MiB of messages roll dozens of segments
that are archived and then deleted locally. The archive is either a local directory outside
the broker's data dir (store "local") or a bucket on moto (store "s3").

What is checked against the archive itself (Strata's layout):
    <prefix>/<topic>-<topic_id>/topic.yaml
    <prefix>/<topic>-<topic_id>/<partition>/manifest.json
    <prefix>/<topic>-<topic_id>/<partition>/<20-digit base>-<segment_id>.{log,index,timeindex}

- test_many_rolls_archive_and_read_back: 20,000 messages; manifests list contiguous
  segments with their three objects (the .log with the size and CRC-32C the manifest
  names); local files of archived segments are gone; librdkafka reads every message once,
  in order, from offset 0 (most of it from the archive).
- test_java_client_reads_the_archive: the Java client produces into a tiered broker and
  reads everything back from offset 0 (its beginningOffsets must be 0).
- test_offsets_for_times_in_the_archive: ListOffsets by timestamp finds offsets in archived
  segments (segment edges included), in the local log, and none after the last record.
- test_restore_from_archive_into_an_empty_data_dir: the data dir is deleted; a broker on the
  same archive recreates the topic (same id, partitions and configs), serves the archived
  history, and continues at the archive's end offset; new segments extend the same manifest.
  A broker whose data dir has a topic of its own restores nothing.
- test_store_unreachable_then_back (s3): the S3 link is cut; produce and consume of local data
  go on, nothing unarchived is deleted locally; after the link is back the archive catches up.
- test_slow_store_does_not_stall_local_fetches (s3): the S3 link is stalled (connections
  open, no bytes): a consumer of two partitions gets the local partition's messages at once
  while the other partition's archive reads hang; after the link is back it gets the
  archived history too, exactly once and in order.
- test_kill_during_upload (s3): SIGKILL right after segments roll; after the restart the
  archive catches up and every manifest entry's objects exist with the right sizes and CRC.
- test_total_retention_deletes_archived_segments: log.retention.bytes / log.retention.ms
  remove the oldest archived segments from the manifest and the store; the log start offset
  (ListOffsets earliest) moves forward and a consumer from the beginning starts there.
  Watched all along: a manifest entry is never replaced and an expired range never comes back.
- test_retention_bytes_counts_archived_bytes_once: with less data than log.retention.bytes
  nothing expires, also while archived segments still have their local copies.
- test_delete_topic_deletes_its_objects: AdminClient.delete_topics removes every object of
  the topic and leaves other topics' objects alone.
- test_a_topic_deleted_while_the_store_is_unreachable_stays_deleted (s3): the topic is
  deleted while the S3 link is cut; after a restart with the link back the broker, which has
  no topic left, does not restore it from the archive, and its objects are deleted.
- test_a_damaged_archive_object_is_an_error_and_the_next_fetch_reads_again: a segment object
  cut short, or with a negative batch length, answers KAFKA_STORAGE_ERROR on every fetch (the
  broker neither panics nor answers empty forever); once the object is whole again, the same
  fetch returns its records and a consumer reads everything.
"""

from __future__ import annotations

import json
import socket
import struct
import pathlib
import re
import shutil
import time
import uuid

import crc32c
import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from clients import (Delivered, file_sizes, consume_partitions, create_topic, new_consumer, topic_id, unique_topic, wait_for,
                     wait_for_partitions)
import kafka_wire
from conftest import StrataBroker, free_port
from s3 import tier_config
from test_http import scrape
from test_http import value as metric
from test_java import run_produce_consume

SEGMENT_BYTES = 64 * 1024
BASE_PROPS = {
    "log.segment.bytes": SEGMENT_BYTES,
    "log.local.retention.ms": 500,
    "log.retention.check.interval.ms": 200,
}
PREFIX = "strata"
ARCHIVE_TIMEOUT_S = 30.0
STORES = ["local", "s3"]


# ---------------------------------------------------------------------------------------------- the archive

class Archive:
    """Read-only view of what the broker wrote: a moto bucket or a local directory."""

    def __init__(self, *, bucket=None, root: pathlib.Path | None = None, prefix: str = PREFIX):
        self.bucket = bucket
        self.root = root
        self.prefix = prefix

    def objects(self, prefix: str = "") -> dict[str, int]:
        """key -> size under `prefix`."""
        if self.bucket is not None:
            return self.bucket.list_objects(prefix)
        out = {}
        if self.root is None or not self.root.exists():
            return out
        for path in self.root.rglob("*"):
            if not path.is_file():
                continue
            key = path.relative_to(self.root).as_posix()
            if "#" in path.name:  # object_store's staging file of a put in progress
                continue
            if key.startswith(prefix):
                try:
                    out[key] = path.stat().st_size
                except FileNotFoundError:
                    pass
        return out

    def get(self, key: str) -> bytes | None:
        if self.bucket is not None:
            try:
                return self.bucket.get(key)
            except self.bucket.client.exceptions.NoSuchKey:
                return None
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def topic_dirs(self, topic: str) -> list[str]:
        """`<prefix>/<topic>-<uuid>` for every stored copy of the topic."""
        pattern = re.compile(rf"^{re.escape(self.prefix)}/{re.escape(topic)}-([0-9a-f]{{8}}-[0-9a-f]{{4}}-"
                             rf"[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})/")
        return sorted({m.group(0)[:-1] for k in self.objects(f"{self.prefix}/{topic}-")
                       if (m := pattern.match(k))})

    def topic_dir(self, topic: str) -> str | None:
        dirs = self.topic_dirs(topic)
        assert len(dirs) <= 1, f"topic {topic} is in the archive more than once: {dirs}"
        return dirs[0] if dirs else None

    def manifest(self, topic: str, partition: int) -> list[dict]:
        """The manifest's segments ([] while there is no manifest)."""
        tdir = self.topic_dir(topic)
        if tdir is None:
            return []
        raw = self.get(f"{tdir}/{partition}/manifest.json")
        if raw is None:
            return []
        return json.loads(raw)["segments"]


class Tiered:
    """One test's archive plus a config writer for brokers that use it."""

    def __init__(self, request, tmp_path: pathlib.Path, store: str):
        self.store = store
        self.tmp_path = tmp_path
        if store == "s3":
            self.bucket = request.getfixturevalue("s3_bucket")
            self.archive = Archive(bucket=self.bucket)
        else:
            self.bucket = None
            # outside every data dir (data0, data1, ...), so deleting a data dir keeps the archive
            self.archive = Archive(root=tmp_path / "archive")

    def config(self, endpoint: str | None = None, **props) -> pathlib.Path:
        merged = {**BASE_PROPS, **props}
        if self.store == "s3":
            return tier_config(self.tmp_path, "s3", self.bucket, endpoint=endpoint, **merged)
        return tier_config(self.tmp_path, "local", local_dir=self.archive.root, **merged)


@pytest.fixture(params=STORES)
def tiered(request, tmp_path):
    return Tiered(request, tmp_path, request.param)


@pytest.fixture
def tiered_s3(request, tmp_path):
    return Tiered(request, tmp_path, "s3")


# ---------------------------------------------------------------------------------------------- helpers

def local_bases(broker, topic: str, partition: int) -> list[int]:
    """Base offsets of the partition's local segments (their .log files), sorted."""
    pdir = broker.data_dir / f"{topic}-{partition}"
    return sorted(int(p.name[:20]) for p in pdir.glob("*.log") if re.fullmatch(r"\d{20}\.log", p.name))


def local_segment_files(broker, topic: str, partition: int) -> list[str]:
    pdir = broker.data_dir / f"{topic}-{partition}"
    return sorted(p.name for p in pdir.iterdir() if re.fullmatch(r"\d{20}\.\w+", p.name))


def state(broker, archive: Archive, topic: str, partition: int) -> dict:
    manifest = archive.manifest(topic, partition)
    return {
        "local": local_bases(broker, topic, partition),
        "manifest": [(s["base_offset"], s["end_offset"]) for s in manifest],
    }


def fully_archived(st: dict) -> bool:
    """Only the active segment is local, and the manifest ends right before it."""
    local, manifest = st["local"], st["manifest"]
    return len(local) == 1 and bool(manifest) and manifest[-1][1] + 1 == local[0]


def short(st: dict) -> str:
    m = st["manifest"]
    ms = f"{len(m)} segments {m[:2]}...{m[-2:]}" if len(m) > 4 else str(m)
    return f"local bases {st['local'][:6]}{'...' if len(st['local']) > 6 else ''} (n={len(st['local'])}), manifest {ms}"


def wait_fully_archived(broker, archive, topic, partitions, timeout=ARCHIVE_TIMEOUT_S) -> dict[int, dict]:
    def check():
        states = {p: state(broker, archive, topic, p) for p in partitions}
        ok = all(fully_archived(s) for s in states.values())
        return ok, (states if ok else {p: short(s) for p, s in states.items()})
    return wait_for(f"{topic}: every closed segment archived and deleted locally", check, timeout)


def check_manifest(archive: Archive, topic: str, partition: int, *, first_base: int | None = 0,
                   verify_crc: bool = False) -> list[dict]:
    """The manifest is contiguous and every entry's three objects are there (.log: size, CRC)."""
    tdir = archive.topic_dir(topic)
    assert tdir is not None, f"{topic} is not in the archive"
    segments = archive.manifest(topic, partition)
    assert segments, f"{topic}/{partition}: empty manifest"
    if first_base is not None:
        assert segments[0]["base_offset"] == first_base, (
            f"{topic}/{partition}: manifest starts at {segments[0]['base_offset']}, expected {first_base}")
    for a, b in zip(segments, segments[1:]):
        assert b["base_offset"] == a["end_offset"] + 1, (
            f"{topic}/{partition}: manifest gap/overlap between {a} and {b}")
    objects = archive.objects(f"{tdir}/{partition}/")
    for s in segments:
        assert s["base_offset"] <= s["end_offset"], s
        stem = f"{tdir}/{partition}/{s['base_offset']:020d}-{s['segment_id']}"
        for suffix in (".log", ".index", ".timeindex"):
            assert stem + suffix in objects, f"{topic}/{partition}: manifest entry {s} has no {stem + suffix}"
        assert objects[stem + ".log"] == s["size"], (
            f"{stem}.log is {objects[stem + '.log']} bytes, the manifest says {s['size']}")
        assert s["size"] > 0, s
        if verify_crc:
            body = archive.get(stem + ".log")
            assert body is not None and crc32c.crc32c(body) == s["crc32c"], (
                f"{stem}.log: CRC-32C {crc32c.crc32c(body or b''):#x}, manifest says {s['crc32c']:#x}")
    return segments


def value_for(tag: str, i: int) -> bytes:
    return f"{tag}-{i:06d}-".encode() + b"x" * (150 + (i * 37) % 100)


def produce_values(bootstrap: str, topic: str, values, partition_of=None, timestamps=None,
                   timeout: float = 60.0, **conf) -> Delivered:
    """Produces the values (partition from partition_of(i), else the partitioner), waits for every ack."""
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "batch.size": 16384, "message.timeout.ms": int(timeout * 1000), **conf})
    for i, v in enumerate(values):
        kwargs = {}
        if partition_of is not None:
            kwargs["partition"] = partition_of(i)
        if timestamps is not None:
            kwargs["timestamp"] = timestamps[i]
        while True:
            try:
                producer.produce(topic, value=v, key=f"k{i % 13}".encode(), on_delivery=delivered.callback, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(timeout)
    assert remaining == 0, f"{remaining} messages undelivered after {timeout}s"
    assert not delivered.failed, f"{len(delivered.failed)} deliveries failed: {list(delivered.failed.values())[:3]}"
    return delivered


def expected_by_partition(*delivered: Delivered) -> dict[int, dict[int, bytes]]:
    out: dict[int, dict[int, bytes]] = {}
    for d in delivered:
        for value, (p, off) in d.ok.items():
            assert off not in out.setdefault(p, {}), f"two acks for {p}/{off}"
            out[p][off] = value
    return out


def assert_read_exactly(got: dict[int, list], expected: dict[int, dict[int, bytes]], what: str) -> None:
    """Each partition's messages came in offset order, each expected one exactly once, nothing else."""
    for p, want in expected.items():
        msgs = got.get(p, [])
        offsets = [m.offset() for m in msgs]
        want_offsets = sorted(want)
        if offsets != want_offsets:
            dups = len(offsets) - len(set(offsets))
            missing = sorted(set(want_offsets) - set(offsets))
            extra = sorted(set(offsets) - set(want_offsets))
            disorder = next((i for i in range(1, len(offsets)) if offsets[i] <= offsets[i - 1]), None)
            raise AssertionError(
                f"{what}, partition {p}: read {len(offsets)} messages, expected {len(want_offsets)} "
                f"(offsets {want_offsets[:1]}..{want_offsets[-1:]}); {dups} duplicates, "
                f"{len(missing)} missing {missing[:10]}, {len(extra)} unexpected {extra[:10]}, "
                f"first out-of-order at index {disorder} "
                f"({offsets[disorder - 1:disorder + 1] if disorder else ''})")
        bad = [m.offset() for m in msgs if m.value() != want[m.offset()]]
        assert not bad, f"{what}, partition {p}: wrong values at offsets {bad[:10]} ({len(bad)} in all)"
    extra_parts = {p: len(v) for p, v in got.items() if p not in expected and v}
    assert not extra_parts, f"{what}: messages from unexpected partitions {extra_parts}"


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    consumer = new_consumer(bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()


def dir_uuid(topic_dir: str, topic: str) -> uuid.UUID:
    return uuid.UUID(topic_dir.rsplit("/", 1)[1][len(topic) + 1:])


# ---------------------------------------------------------------------------------------------- 1. many rolls

def test_many_rolls_archive_and_read_back(strata_factory, tiered):
    broker = strata_factory("--config", str(tiered.config()))
    topic = unique_topic("tier-rolls")
    partitions = [0, 1]
    create_topic(broker.bootstrap, topic, len(partitions))
    count = 20_000
    values = [value_for("roll", i) for i in range(count)]
    delivered = produce_values(broker.bootstrap, topic, values, partition_of=lambda i: i % 2)
    expected = expected_by_partition(delivered)
    for p in partitions:
        assert sorted(expected[p]) == list(range(count // 2)), f"partition {p}: acked offsets not 0..{count // 2 - 1}"

    states = wait_fully_archived(broker, tiered.archive, topic, partitions)
    tdir = tiered.archive.topic_dir(topic)
    assert tiered.archive.get(f"{tdir}/topic.yaml") is not None, f"no {tdir}/topic.yaml"
    assert dir_uuid(tdir, topic) == topic_id(broker.bootstrap, topic), "archive dir named with another topic id"
    # ~2.3 MB per partition in 64 KiB segments: dozens of them
    min_segments = 20
    for p in partitions:
        segments = check_manifest(tiered.archive, topic, p, verify_crc=True)
        assert len(segments) >= min_segments, f"partition {p}: only {len(segments)} archived segments"
        assert all(s["size"] <= SEGMENT_BYTES for s in segments), [s["size"] for s in segments]
        active = states[p]["local"][0]
        files = local_segment_files(broker, topic, p)
        assert all(int(f[:20]) == active for f in files), (
            f"partition {p}: local files of archived segments are still there: {files[:8]}")
        assert active > 0 and active == segments[-1]["end_offset"] + 1
        # The manifest is the only record of what is archived: no local copy of its end.
        assert not (broker.data_dir / f"{topic}-{p}" / "remote-log-end-offset").exists()

    for p in partitions:
        low, high = watermarks(broker.bootstrap, topic, p)
        assert (low, high) == (0, count // 2), f"partition {p}: watermarks {(low, high)}"

    got = consume_partitions(broker.bootstrap, topic, partitions, expected=count, timeout=90)
    assert_read_exactly(got, expected, "consume from OFFSET_BEGINNING")


# ---------------------------------------------------------------------------------------------- 1b. Java

def test_java_client_reads_the_archive(strata_factory, tiered, java_classpath):
    """The Java program produces (its timestamps are a minute old, so archived segments are
    deleted locally at once) and then reads from seekToBeginning: most of it from the archive."""
    classpath = java_classpath
    broker = strata_factory("--config", str(tiered.config()))
    topic = unique_topic("tier-java")
    count = 6_000
    summary = run_produce_consume(classpath, broker.bootstrap, topic, count=count)
    assert all(o["low"] == 0 for o in summary["offsets"].values()), summary["offsets"]

    # what the consumer read from offset 0 had been archived and deleted locally
    for p in range(3):
        st = state(broker, tiered.archive, topic, p)
        assert st["local"] and st["local"][0] > 0, f"partition {p}: nothing was deleted locally: {short(st)}"
        check_manifest(tiered.archive, topic, p)


# ---------------------------------------------------------------------------------------------- 2. timestamps

def test_offsets_for_times_in_the_archive(strata_factory, tiered):
    broker = strata_factory("--config", str(tiered.config()))
    topic = unique_topic("tier-times")
    create_topic(broker.bootstrap, topic, 1)
    count = 3_000
    step = 10
    base = int(time.time() * 1000) - 600_000  # ten minutes ago, one record every 10 ms
    timestamps = [base + i * step for i in range(count)]
    delivered = produce_values(broker.bootstrap, topic, [value_for("ts", i) for i in range(count)],
                               partition_of=lambda i: 0, timestamps=timestamps)
    assert sorted(o for _, o in delivered.ok.values()) == list(range(count))

    st = wait_fully_archived(broker, tiered.archive, topic, [0])[0]
    segments = check_manifest(tiered.archive, topic, 0)
    local_start = st["local"][0]
    assert len(segments) >= 5, f"too few archived segments for the test: {short(st)}"
    assert local_start < count - 1, f"nothing left in the local log: {short(st)}"

    # (timestamp, expected offset): the first record whose timestamp is >= it
    probes = [(base - 100_000, 0), (base, 0), (base + 1, 1), (base + step - 1, 1)]
    for s in segments[:3] + segments[len(segments) // 2:len(segments) // 2 + 1] + segments[-2:]:
        b, e = s["base_offset"], s["end_offset"]
        probes += [(timestamps[b], b), (timestamps[b] - 3, b), (timestamps[e], e), (timestamps[e] - 3, e),
                   (timestamps[e] + 1, e + 1), (timestamps[(b + e) // 2], (b + e) // 2)]
    probes += [(timestamps[local_start], local_start), (timestamps[local_start] - 1, local_start),
               (timestamps[count - 1], count - 1)]
    consumer = new_consumer(broker.bootstrap)
    try:
        wrong = []
        for ts, want in probes:
            (found,) = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=15)
            if found.error is not None or found.offset != want:
                wrong.append((ts - base, want, found.offset, found.error))
        (after_all,) = consumer.offsets_for_times([TopicPartition(topic, 0, timestamps[-1] + 1)], timeout=15)
    finally:
        consumer.close()
    assert not wrong, (f"offsets_for_times wrong for {len(wrong)} of {len(probes)} probes "
                       f"(ts - base, expected, got, error): {wrong[:12]}; local log starts at {local_start}")
    assert after_all.error is None and after_all.offset == OFFSET_END, (
        f"after the last record: offset {after_all.offset}, error {after_all.error}")
    assert watermarks(broker.bootstrap, topic, 0) == (0, count)


# ---------------------------------------------------------------------------------------------- 3. restore

def test_restore_from_archive_into_an_empty_data_dir(strata_factory, tiered):
    config = tiered.config()
    broker = strata_factory("--config", str(config))
    topic = unique_topic("tier-restore")
    partitions = [0, 1]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, len(partitions), 1, config={"max.message.bytes": "2000000"})])[topic].result(
        timeout=15)
    wait_for_partitions(broker.bootstrap, topic, len(partitions))
    tid = topic_id(broker.bootstrap, topic)
    count = 8_000
    delivered = produce_values(broker.bootstrap, topic, [value_for("old", i) for i in range(count)],
                               partition_of=lambda i: i % 2)
    before = expected_by_partition(delivered)
    wait_fully_archived(broker, tiered.archive, topic, partitions)
    tdir = tiered.archive.topic_dir(topic)
    archived_end = {p: check_manifest(tiered.archive, topic, p)[-1]["end_offset"] for p in partitions}

    broker.stop()
    shutil.rmtree(broker.data_dir)  # the disk is lost; the archive is not
    broker.data_dir.mkdir()
    broker.start()

    wait_for_partitions(broker.bootstrap, topic, len(partitions))
    assert topic_id(broker.bootstrap, topic) == tid, "the restored topic has another id"
    resource = ConfigResource(ResourceType.TOPIC, topic)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    restored = admin.describe_configs([resource])[resource].result(timeout=15)
    assert restored["max.message.bytes"].value == "2000000", "the restored topic lost its config"
    for p in partitions:
        assert watermarks(broker.bootstrap, topic, p) == (0, archived_end[p] + 1), (
            f"partition {p}: watermarks after restore, archive ends at {archived_end[p]}")

    archived = {p: {o: v for o, v in before[p].items() if o <= archived_end[p]} for p in partitions}
    got = consume_partitions(broker.bootstrap, topic, partitions,
                             expected=sum(len(v) for v in archived.values()), timeout=60)
    assert_read_exactly(got, archived, "archived history after restore")

    more = 3_000
    delivered2 = produce_values(broker.bootstrap, topic, [value_for("new", i) for i in range(more)],
                                partition_of=lambda i: i % 2)
    after = expected_by_partition(delivered2)
    for p in partitions:
        assert sorted(after[p]) == list(range(archived_end[p] + 1, archived_end[p] + 1 + more // 2)), (
            f"partition {p}: new produces at {sorted(after[p])[:3]}..., expected from {archived_end[p] + 1}")

    everything = {p: {**archived[p], **after[p]} for p in partitions}
    got = consume_partitions(broker.bootstrap, topic, partitions,
                             expected=sum(len(v) for v in everything.values()), timeout=60)
    assert_read_exactly(got, everything, "archive plus new messages after restore")

    # the new segments go to the same topic dir, extending the same manifests
    wait_fully_archived(broker, tiered.archive, topic, partitions)
    assert tiered.archive.topic_dirs(topic) == [tdir]
    for p in partitions:
        segments = check_manifest(tiered.archive, topic, p)
        assert segments[-1]["end_offset"] > archived_end[p], f"partition {p}: no new segment archived"

    # A broker that has a topic of its own restores nothing, even with the archive full.
    broker.stop()
    shutil.rmtree(broker.data_dir)
    broker.data_dir.mkdir()
    unarchived = StrataBroker(broker.binary, free_port(), broker.data_dir, broker.log_path,
                              ("--config", str(config), "--override", "tier.store=none")).start()
    own = unique_topic("own")
    create_topic(unarchived.bootstrap, own, 1)
    unarchived.stop()
    broker.start()
    wait_for_partitions(broker.bootstrap, own, 1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert topic not in admin.list_topics(timeout=10).topics


# ---------------------------------------------------------------------------------------------- 4. faults

def test_store_unreachable_then_back(strata_factory, tiered_s3, tcp_proxy):
    proxy = tcp_proxy("127.0.0.1", tiered_s3.bucket.port)
    broker = strata_factory("--config", str(tiered_s3.config(endpoint=proxy.endpoint)))
    archive = tiered_s3.archive  # read directly from moto, not through the proxy
    topic = unique_topic("tier-cut")
    create_topic(broker.bootstrap, topic, 1)
    d1 = produce_values(broker.bootstrap, topic, [value_for("a", i) for i in range(3_000)],
                        partition_of=lambda i: 0)
    wait_fully_archived(broker, archive, topic, [0])
    manifest_before = archive.manifest(topic, 0)
    assert proxy.accepted > 0, "the broker's S3 traffic did not go through the proxy"

    proxy.cut()
    during: list[Delivered] = []
    rounds = 0
    cut_started = time.monotonic()
    while time.monotonic() - cut_started < 4.0:
        d = produce_values(broker.bootstrap, topic, [value_for(f"cut{rounds}", i) for i in range(500)],
                           partition_of=lambda i: 0, timeout=15)
        during.append(d)
        rounds += 1
        time.sleep(0.3)
    cut_expected = expected_by_partition(*during)
    first_cut = min(cut_expected[0])
    assert sorted(cut_expected[0]) == list(range(3_000, 3_000 + 500 * rounds))
    # local data is served while the store is away
    consumer = new_consumer(broker.bootstrap)
    read = []
    try:
        consumer.assign([TopicPartition(topic, 0, first_cut)])
        deadline = time.monotonic() + 20
        while len(read) < len(cut_expected[0]) and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                if not m.error():
                    read.append(m)
    finally:
        consumer.close()
    assert_read_exactly({0: read}, cut_expected, "local messages read while the store is cut off")

    st_cut = state(broker, archive, topic, 0)
    assert archive.manifest(topic, 0) == manifest_before, "the manifest changed while the store was unreachable"
    assert len(st_cut["local"]) > 3, f"the log should have rolled during the cut: {short(st_cut)}"
    remote_end = manifest_before[-1]["end_offset"] + 1
    assert st_cut["local"][0] <= remote_end, (
        f"unarchived local segments were deleted while the store was unreachable: {short(st_cut)}")
    # The broker's log says how far behind the archive is.
    plain = re.sub(r"\x1b\[[0-9;]*m", "", broker.log_path.read_text(errors="replace"))
    lags = [int(m) for m in re.findall(r"archive step failed.*?lag_segments=(\d+)", plain)]
    assert lags and max(lags) >= 1, "no 'archive step failed ... lag_segments=N' line while the store was cut"
    assert re.search(r"archive step failed.*lag_bytes=[1-9]\d*", plain), "no lag_bytes in the failure lines"

    proxy.restore()
    restored_at = time.monotonic()
    wait_fully_archived(broker, archive, topic, [0], timeout=60)
    caught_up_s = time.monotonic() - restored_at
    segments = check_manifest(archive, topic, 0, verify_crc=True)
    assert segments[:len(manifest_before)] == manifest_before, "archived entries were rewritten"

    everything = expected_by_partition(d1, *during)
    assert sorted(everything[0]) == list(range(len(everything[0])))
    got = consume_partitions(broker.bootstrap, topic, [0], expected=len(everything[0]), timeout=60)
    assert_read_exactly(got, everything, f"everything after the store came back (caught up in {caught_up_s:.1f}s)")


def test_a_restart_with_the_store_unreachable_keeps_the_archived_history(strata_factory, tiered_s3, tcp_proxy):
    """Until its manifest loads, a partition's start is its checkpointed log start (as in
    Kafka), and a read below the local log waits instead of being out of range: a consumer
    whose offset is in the archive must not be reset past it."""
    proxy = tcp_proxy("127.0.0.1", tiered_s3.bucket.port)
    broker = strata_factory("--config", str(tiered_s3.config(endpoint=proxy.endpoint)))
    topic = unique_topic("tier-restart-cut")
    create_topic(broker.bootstrap, topic, 1)
    d = produce_values(broker.bootstrap, topic, [value_for("r", i) for i in range(2_000)], partition_of=lambda i: 0)
    st = wait_fully_archived(broker, tiered_s3.archive, topic, [0])[0]
    local_start = st["local"][0]
    assert local_start > 0
    broker.kill()
    proxy.cut()
    broker.start()
    assert watermarks(broker.bootstrap, topic, 0)[0] == 0, "the log start moved up to the local log"
    # A consumer at offset 10 (in the archive) gets nothing yet, and no reset.
    consumer = new_consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    got, errors = [], []
    try:
        consumer.assign([TopicPartition(topic, 0, 10)])
        waited = time.monotonic() + 3
        while time.monotonic() < waited:
            for m in consumer.consume(num_messages=500, timeout=0.3):
                (errors if m.error() else got).append(m)
        assert not got and not errors, [e.error() for e in errors]
        proxy.restore()
        deadline = time.monotonic() + 60
        while len(got) < 2_000 - 10 and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                (errors if m.error() else got).append(m)
    finally:
        consumer.close()
    assert not errors, [e.error() for e in errors]
    assert [m.offset() for m in got] == list(range(10, 2_000))
    assert all(d.ok[m.value()][:2] == (0, m.offset()) for m in got)


def test_kill_during_upload(strata_factory, tiered_s3):
    """Round 0: SIGKILL once the archiver has uploaded a few of the freshly rolled segments
    (the next upload is in flight). Round 1: SIGKILL right after the last ack."""
    broker = strata_factory("--config", str(tiered_s3.config()))
    archive = tiered_s3.archive
    topic = unique_topic("tier-kill")
    create_topic(broker.bootstrap, topic, 1)
    rounds: list[Delivered] = []
    behind = []
    per_round = 5_000
    for r in range(2):
        before = len(archive.manifest(topic, 0))
        d = produce_values(broker.bootstrap, topic, [value_for(f"r{r}", i) for i in range(per_round)],
                           partition_of=lambda i: 0)
        if r == 0:
            wait_for("a few new segments archived", lambda: (
                len(archive.manifest(topic, 0)) >= before + 3, archive.manifest(topic, 0)[-1:]), 20, interval=0.01)
        broker.kill()
        rounds.append(d)
        st = state(broker, archive, topic, 0)
        closed = st["local"][:-1]
        archived_ends = {e for _, e in st["manifest"]}
        behind.append(sum(1 for i, b in enumerate(closed) if (st["local"][i + 1] - 1) not in archived_ends))
        assert behind[-1] > 0, f"round {r}: the archive had already caught up at the kill: {short(st)}"

        broker.start()
        wait_fully_archived(broker, archive, topic, [0], timeout=60)
        segments = check_manifest(archive, topic, 0, verify_crc=True)
        assert segments[-1]["end_offset"] >= st["local"][-1] - 1, (
            f"round {r}: the segments closed before the kill are not all archived: {short(st)}")

    total = per_round * len(rounds)
    everything = expected_by_partition(*rounds)
    assert sorted(everything[0]) == list(range(total))
    assert watermarks(broker.bootstrap, topic, 0) == (0, total)
    got = consume_partitions(broker.bootstrap, topic, [0], expected=total, timeout=60)
    assert_read_exactly(got, everything, f"after SIGKILLs (closed segments not yet archived at the kills: {behind})")


def test_slow_store_does_not_stall_local_fetches(strata_factory, tiered_s3, tcp_proxy):
    """Partition 0's history is only in the archive, partition 1's data only local. With the S3
    link stalled, one consumer fetching both must still get partition 1 promptly (the broker
    answers a fetch without the partition whose archive read hangs), more than once; partition
    0's history arrives after the link is back."""
    local_bound_s = 5.0      # partition 1's messages, from assign() / from their produce
    archive_bound_s = 90.0   # partition 0's history after restore(): object_store may first time out (~30 s)
    proxy = tcp_proxy("127.0.0.1", tiered_s3.bucket.port)
    config = tiered_s3.config(endpoint=proxy.endpoint, **{"log.local.retention.ms": 300,
                                                          "log.retention.check.interval.ms": 200})
    broker = strata_factory("--config", str(config))
    archive = tiered_s3.archive  # read directly from moto, not through the proxy
    topic = unique_topic("tier-stall")
    create_topic(broker.bootstrap, topic, 2)

    history = 3_000
    d0 = produce_values(broker.bootstrap, topic, [value_for("old", i) for i in range(history)],
                        partition_of=lambda i: 0)
    st0 = wait_fully_archived(broker, archive, topic, [0])[0]
    local_start = st0["local"][0]
    assert local_start >= history // 2, f"partition 0: too little of the history is archive-only: {short(st0)}"
    assert proxy.accepted > 0, "the broker's S3 traffic did not go through the proxy"

    proxy.stall()
    stalled_at = time.monotonic()
    bytes_at_stall = (proxy.bytes_up, proxy.bytes_down)
    d1 = produce_values(broker.bootstrap, topic, [value_for("new", i) for i in range(200)],
                        partition_of=lambda i: 1, timeout=15)
    expected = expected_by_partition(d0, d1)
    assert sorted(expected[0]) == list(range(history)) and sorted(expected[1]) == list(range(200))

    got: dict[int, list] = {0: [], 1: []}
    errors = []

    def poll_until(done, deadline: float) -> bool:
        while not done():
            if time.monotonic() >= deadline:
                return False
            for m in consumer.consume(num_messages=1000, timeout=0.2):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        errors.append(m.error())
                    continue
                got[m.partition()].append(m)
        return True

    def counts() -> str:
        return (f"partition 0: {len(got[0])}/{len(expected[0])}, partition 1: {len(got[1])}/{len(expected[1])}; "
                f"errors {errors[:5]}")

    consumer = new_consumer(broker.bootstrap)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
        started = time.monotonic()
        ok = poll_until(lambda: len(got[1]) >= len(expected[1]), started + local_bound_s)
        first_s = time.monotonic() - started
        assert ok, (f"partition 1 (local data) not read within {local_bound_s}s of assign() while the "
                    f"object store is stalled: {counts()}")

        # again, now that partition 0's archive read has been hanging for a while
        d2 = produce_values(broker.bootstrap, topic, [value_for("newer", i) for i in range(200)],
                            partition_of=lambda i: 1, timeout=15)
        expected = expected_by_partition(d0, d1, d2)
        produced = time.monotonic()
        ok = poll_until(lambda: len(got[1]) >= len(expected[1]), produced + local_bound_s)
        second_s = time.monotonic() - produced
        assert ok, (f"partition 1: the second batch not read within {local_bound_s}s of its produce while "
                    f"the object store is stalled: {counts()}")

        # keep fetching a while longer with the reads hanging (the client must see no errors)
        poll_until(lambda: False, time.monotonic() + 2.0)

        # the test is only meaningful if partition 0's history really could not be read meanwhile
        early = [m.offset() for m in got[0] if m.offset() < local_start]
        assert not early, (f"partition 0: archived offsets {early[:5]}... were read while the store was stalled "
                           f"(proxy bytes {bytes_at_stall} -> {(proxy.bytes_up, proxy.bytes_down)})")
        assert (proxy.bytes_up, proxy.bytes_down) == bytes_at_stall
        stall_s = time.monotonic() - stalled_at

        proxy.restore()
        restored = time.monotonic()
        ok = poll_until(lambda: len(got[0]) >= len(expected[0]), restored + archive_bound_s)
        catch_up_s = time.monotonic() - restored
        assert ok, f"partition 0: history not read within {archive_bound_s}s of restore(): {counts()}"
        poll_until(lambda: False, time.monotonic() + 1.0)  # anything extra (duplicates) shows up here
    finally:
        consumer.close()
    assert not errors, f"consumer errors: {errors[:5]}"
    assert_read_exactly(got, expected, (
        f"two partitions, one of them behind a stalled store (partition 1 in {first_s:.1f}s and {second_s:.1f}s, "
        f"stalled {stall_s:.1f}s, partition 0 caught up {catch_up_s:.1f}s after restore)"))



# ---------------------------------------------------------------------------------------------- 5. total retention

@pytest.mark.parametrize("limit", ["bytes", "ms"])
def test_total_retention_deletes_archived_segments(strata_factory, tiered, limit):
    if limit == "bytes":
        retention_bytes = 300_000
        # local copies of archived segments stay 2 s: meanwhile they must not count twice
        config = tiered.config(**{"log.retention.bytes": retention_bytes, "log.local.retention.ms": 2_000})
    else:
        config = tiered.config(**{"log.retention.ms": 60_000})
    broker = strata_factory("--config", str(config))
    topic = unique_topic(f"tier-retention-{limit}")
    create_topic(broker.bootstrap, topic, 1)
    count = 8_000
    now = int(time.time() * 1000)
    old = 5_000
    # for "ms": the first 5,000 records are an hour old, the rest are from the last seconds
    timestamps = [now - 3_600_000 + i if i < old else now - count + i for i in range(count)] \
        if limit == "ms" else None
    delivered = produce_values(broker.bootstrap, topic, [value_for("ret", i) for i in range(count)],
                               partition_of=lambda i: 0, timestamps=timestamps)
    expected = expected_by_partition(delivered)

    # Watched all along: a manifest entry is never replaced (same base offset, another segment
    # id) and an expired range never comes back (no base below an earlier manifest's start).
    entry_ids: dict[int, str] = {}
    highest_start = -1
    violations: list[str] = []

    def watch(segments):
        nonlocal highest_start
        for s in segments:
            b, sid = s["base_offset"], s["segment_id"]
            if entry_ids.setdefault(b, sid) != sid and len(violations) < 10:
                violations.append(f"offsets {b}..{s['end_offset']} archived again as {sid} "
                                  f"(was {entry_ids[b]}); manifest starts at {segments[0]['base_offset']}")
                entry_ids[b] = sid
        if segments:
            if segments[0]["base_offset"] < highest_start and len(violations) < 10:
                violations.append(f"manifest start went back from {highest_start} to {segments[0]['base_offset']}")
            highest_start = max(highest_start, segments[0]["base_offset"])

    def settled():
        segments = tiered.archive.manifest(topic, 0)
        watch(segments)
        st = {"local": local_bases(broker, topic, 0),
              "manifest": [(s["base_offset"], s["end_offset"]) for s in segments]}
        if not fully_archived(st) or st["manifest"][0][0] == 0:
            return False, short(st)
        if limit == "bytes":
            pdir = broker.data_dir / f"{topic}-0"
            local = sum(size for _, size in file_sizes(pdir, ".log"))
            total = sum(s["size"] for s in segments) + local
            # Kafka's rule: the oldest segment goes only while the log, without it, is still
            # at least retention.bytes; so it settles once dropping one more would go below.
            return total - segments[0]["size"] < retention_bytes, (
                f"{short(st)}; archived+local {total} bytes")
        return True, st

    wait_for(f"{topic}: archived segments expire", settled, ARCHIVE_TIMEOUT_S, interval=0.05)
    segments = check_manifest(tiered.archive, topic, 0, first_base=None)
    # nothing is produced any more: the archive stays as it is (no expired range comes back)
    seen = []
    for _ in range(20):
        time.sleep(0.1)
        now_segments = tiered.archive.manifest(topic, 0)
        watch(now_segments)
        if now_segments != segments:
            seen.append([(s["base_offset"], s["end_offset"]) for s in now_segments])
    assert not violations, "archived segments were expired and then uploaded again:\n  " + "\n  ".join(violations)
    assert not seen, (f"the manifest keeps changing after retention settled at "
                      f"{[(s['base_offset'], s['end_offset']) for s in segments]}: then {seen[:4]}")
    start = segments[0]["base_offset"]
    if limit == "ms":
        # the oldest kept segment is the one holding the first new record
        holder = next(s for s in segments if s["base_offset"] <= old <= s["end_offset"]) \
            if segments[-1]["end_offset"] >= old else None
        assert holder is not None and holder is segments[0], (
            f"segments of only hour-old records should be gone, the one with offset {old} kept: "
            f"{[(s['base_offset'], s['end_offset']) for s in segments[:3]]}")
    else:
        # the oldest segments went, but only as many as needed
        assert sum(s["size"] for s in segments) + SEGMENT_BYTES * 2 > retention_bytes, (
            f"more was deleted than retention.bytes asks: {len(segments)} segments, "
            f"{sum(s['size'] for s in segments)} bytes kept")

    # the expired segments' objects are gone from the store, and nothing else is there
    tdir = tiered.archive.topic_dir(topic)
    want = {f"{tdir}/0/manifest.json"} | {f"{tdir}/0/{s['base_offset']:020d}-{s['segment_id']}{x}"
                                          for s in segments for x in (".log", ".index", ".timeindex")}

    def objects_match():
        have = set(tiered.archive.objects(f"{tdir}/0/"))
        return have == want, {"left over": sorted(have - want)[:6], "missing": sorted(want - have)[:6]}
    wait_for(f"{topic}: expired segments' objects deleted", objects_match, 10)

    low, high = watermarks(broker.bootstrap, topic, 0)
    assert (low, high) == (start, count), f"watermarks {(low, high)}, expected ({start}, {count})"
    assert 0 < start < count
    kept = {0: {o: v for o, v in expected[0].items() if o >= start}}
    got = consume_partitions(broker.bootstrap, topic, [0], expected=len(kept[0]), timeout=60)
    assert_read_exactly(got, kept, f"consume from the beginning after retention (log start {start})")


# ---------------------------------------------------------------------------------------------- 6. delete topic

def test_delete_topic_deletes_its_objects(strata_factory, tiered):
    broker = strata_factory("--config", str(tiered.config()))
    doomed, kept = unique_topic("tier-doomed"), unique_topic("tier-kept")
    for t in (doomed, kept):
        create_topic(broker.bootstrap, t, 2)
    produce_values(broker.bootstrap, kept, [value_for("k", i) for i in range(3_000)])
    wait_fully_archived(broker, tiered.archive, kept, [0, 1])
    kept_objects = tiered.archive.objects(f"{tiered.archive.topic_dir(kept)}/")

    produce_values(broker.bootstrap, doomed, [value_for("d", i) for i in range(6_000)])
    # delete while the archiver may still be uploading, once something is there
    wait_for(f"{doomed}: archived segments", lambda: (
        all(len(tiered.archive.manifest(doomed, p)) >= 2 for p in (0, 1)), "no manifests yet"), ARCHIVE_TIMEOUT_S,
        interval=0.05)
    tdir = tiered.archive.topic_dir(doomed)
    assert tiered.archive.objects(f"{tdir}/")

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics([doomed], operation_timeout=15, request_timeout=15)[doomed].result(timeout=20)

    def gone():
        left = sorted(tiered.archive.objects(f"{tdir}/"))
        return not left, f"{len(left)} objects left: {left[:6]}"
    wait_for(f"{doomed}: objects deleted", gone, 15)
    time.sleep(2.0)  # nothing trickles back from an upload that was in flight
    ok, detail = gone()
    assert ok, f"objects of the deleted topic came back: {detail}"
    assert not (broker.data_dir / f"{doomed}-0").exists()

    assert tiered.archive.objects(f"{tiered.archive.topic_dir(kept)}/") == kept_objects, (
        "the other topic's objects changed")
    got = consume_partitions(broker.bootstrap, kept, [0, 1], expected=3_000, timeout=60)
    assert sum(len(v) for v in got.values()) == 3_000


def test_a_topic_deleted_while_the_store_is_unreachable_stays_deleted(strata_factory, tiered_s3, tcp_proxy):
    """The deletion of a deleted topic's objects is recorded before its local files go: when
    the store cannot be reached at the time, a restart (which, with no topic left, restores
    whatever the archive holds) does not bring the topic back, and the objects go once the
    store answers again."""
    proxy = tcp_proxy("127.0.0.1", tiered_s3.bucket.port)
    broker = strata_factory("--config", str(tiered_s3.config(endpoint=proxy.endpoint)))
    archive = tiered_s3.archive  # read directly from moto, not through the proxy
    topic = unique_topic("tier-deleted")
    create_topic(broker.bootstrap, topic, 1)
    produce_values(broker.bootstrap, topic, [value_for("d", i) for i in range(3_000)], partition_of=lambda i: 0)
    wait_fully_archived(broker, archive, topic, [0])
    tdir = archive.topic_dir(topic)

    proxy.cut()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics([topic], operation_timeout=15, request_timeout=15)[topic].result(timeout=20)
    time.sleep(1.0)
    assert archive.objects(f"{tdir}/"), "the topic's objects went although the store was cut off"
    broker.stop()
    proxy.restore()
    broker.start()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert topic not in admin.list_topics(timeout=10).topics, "the deleted topic came back from the archive"

    def gone():
        left = sorted(archive.objects(f"{tdir}/"))
        return not left, f"{len(left)} objects left: {left[:4]}"
    wait_for(f"{topic}: objects deleted once the store answers", gone, 30)
    broker.stop()
    broker.start()
    assert topic not in admin.list_topics(timeout=10).topics


def test_retention_bytes_counts_archived_bytes_once(strata_factory, tiered):
    """Less data than log.retention.bytes: nothing may expire, also not while archived segments
    still have their local copies (local retention 2 s) — those bytes are the same bytes."""
    retention_bytes = 600_000
    broker = strata_factory("--config", str(tiered.config(**{"log.retention.bytes": retention_bytes,
                                                              "log.local.retention.ms": 2_000})))
    topic = unique_topic("tier-retention-once")
    create_topic(broker.bootstrap, topic, 1)
    count = 1_800  # about 450 KB: seven 64 KiB segments
    delivered = produce_values(broker.bootstrap, topic, [value_for("once", i) for i in range(count)],
                               partition_of=lambda i: 0)
    starts = set()

    def check():
        st = state(broker, tiered.archive, topic, 0)
        if st["manifest"]:
            starts.add(st["manifest"][0][0])
        return fully_archived(st), short(st)
    wait_for(f"{topic}: every closed segment archived and deleted locally", check, ARCHIVE_TIMEOUT_S, interval=0.05)
    segments = check_manifest(tiered.archive, topic, 0, first_base=None)
    total = sum(s["size"] for s in segments) + sum(
        size for _, size in file_sizes(broker.data_dir / f"{topic}-0", ".log"))
    assert total < retention_bytes, f"the test wrote too much: {total} bytes"
    assert sorted(starts) == [0] and segments[0]["base_offset"] == 0, (
        f"archived segments expired though archive + local-only data ({total} bytes) is under "
        f"retention.bytes {retention_bytes}: manifest starts seen {sorted(starts)}")
    assert watermarks(broker.bootstrap, topic, 0) == (0, count)
    got = consume_partitions(broker.bootstrap, topic, [0], expected=count, timeout=60)
    assert_read_exactly(got, expected_by_partition(delivered), "everything, none of it expired")


# ---------------------------------------------------------------------------------------------- large segments

def test_large_segments_go_up_in_parts_and_read_back(strata_factory, tiered):
    """Segments over 16 MiB are uploaded with multipart upload (8 MiB parts): the objects
    have the size and CRC-32C the manifest names and every message reads back from 0."""
    segment = 20 * 1024 * 1024
    broker = strata_factory("--config", str(tiered.config(**{"log.segment.bytes": segment})))
    topic = unique_topic("tier-large")
    create_topic(broker.bootstrap, topic, 1)
    count = 45_000  # ~46 MB of 1 KiB values: two closed 20 MiB segments and an active one
    values = [f"large-{i:06d}-".encode() + b"y" * 1010 for i in range(count)]
    delivered = produce_values(broker.bootstrap, topic, values)
    expected = expected_by_partition(delivered)
    wait_fully_archived(broker, tiered.archive, topic, [0], timeout=90)
    segments = check_manifest(tiered.archive, topic, 0, verify_crc=True)
    assert len(segments) >= 2 and all(s["size"] > 16 * 1024 * 1024 for s in segments), (
        [s["size"] for s in segments])
    got = consume_partitions(broker.bootstrap, topic, [0], expected=count, timeout=120)
    assert_read_exactly(got, expected, "consume large archived segments from OFFSET_BEGINNING")


# ---------------------------------------------------------------------------------------------- no archive

def test_retention_applies_to_topics_that_are_not_archived(strata_factory, tmp_path):
    """With archiving off, retention.bytes deletes the oldest local segments (Kafka's rule:
    while the log without the oldest segment is still at least retention.bytes) and the
    earliest offset moves; the rest reads back."""
    retention_bytes = 300_000
    config = tier_config(tmp_path, "none", **{"log.segment.bytes": SEGMENT_BYTES,
                                               "log.retention.bytes": retention_bytes,
                                               "log.local.retention.ms": None,
                                               "log.retention.check.interval.ms": 200})
    broker = strata_factory("--config", str(config))
    topic = unique_topic("retention-local")
    create_topic(broker.bootstrap, topic, 1)
    count = 6_000
    delivered = produce_values(broker.bootstrap, topic, [value_for("loc", i) for i in range(count)],
                               partition_of=lambda i: 0)
    expected = expected_by_partition(delivered)

    def settled():
        pdir = broker.data_dir / f"{topic}-0"
        sizes = sorted((int(name[:20]), size) for name, size in file_sizes(pdir, ".log"))
        total = sum(s for _, s in sizes)
        ok = sizes[0][0] > 0 and total - sizes[0][1] < retention_bytes <= total
        return ok, f"segments {sizes[:3]}... total {total}"

    wait_for(f"{topic}: old segments deleted", settled, ARCHIVE_TIMEOUT_S)
    assert not (broker.data_dir / "tier").exists(), "archiving is off, yet a tier directory appeared"
    low, high = watermarks(broker.bootstrap, topic, 0)
    assert 0 < low < high == count, (low, high)
    kept = {0: {o: v for o, v in expected[0].items() if o >= low}}
    got = consume_partitions(broker.bootstrap, topic, [0], expected=count - low, timeout=60)
    assert_read_exactly(got, kept, "consume what retention kept")


# ---------------------------------------------------------------------------------------------- transactions

def test_read_committed_drops_aborted_records_read_from_the_archive(strata_factory, tiered):
    """Transactions, every third one aborted, roll dozens of segments that go to the archive
    with their .txnindex objects and leave the local disk. After a restart (so the aborted
    spans can only come from the archive) a read_committed consumer from offset 0 gets exactly
    the committed records, in order; a read_uncommitted one gets the aborted ones too."""
    broker = strata_factory("--config", str(tiered.config()))
    topic = unique_topic("tier-txn")
    create_topic(broker.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": f"tier-{uuid.uuid4().hex[:6]}",
                         "linger.ms": 5})
    producer.init_transactions(30)
    committed, aborted = [], []
    for t in range(30):
        values = [value_for(f"t{t:02d}", i) for i in range(60)]
        producer.begin_transaction()
        for v in values:
            producer.produce(topic, v, partition=0)
        producer.flush(30)
        if t % 3 == 2:
            producer.abort_transaction(30)
            aborted.extend(values)
        else:
            producer.commit_transaction(30)
            committed.extend(values)
    states = wait_fully_archived(broker, tiered.archive, topic, [0])
    segments = check_manifest(tiered.archive, topic, 0)
    assert len(segments) >= 5, f"only {len(segments)} archived segments"
    with_txn_index = [s for s in segments if s.get("txn_index")]
    assert with_txn_index, "no archived segment carries a .txnindex"
    tdir = tiered.archive.topic_dir(topic)
    for s in with_txn_index:
        key = f"{tdir}/0/{s['base_offset']:020d}-{s['segment_id']}.txnindex"
        body = tiered.archive.get(key)
        assert body is not None and len(body) % 34 == 0 and body, f"{key}: missing or not whole 34-byte entries"
    active = states[0]["local"][0]
    leftover = [p.name for p in (broker.data_dir / f"{topic}-0").glob("*.txnindex") if int(p.name[:20]) != active]
    assert not leftover, f"local .txnindex files of archived segments are still there: {leftover}"

    broker.stop()
    broker.start()
    got = consume_partitions(broker.bootstrap, topic, [0], expected=len(committed), timeout=90,
                             **{"isolation.level": "read_committed"})
    assert [m.value() for m in got[0]] == committed, (
        f"read_committed: {len(got[0])} records, expected the {len(committed)} committed ones in order")
    everything = consume_partitions(broker.bootstrap, topic, [0], expected=len(committed) + len(aborted),
                                    timeout=90, **{"isolation.level": "read_uncommitted"})
    values = [m.value() for m in everything[0]]
    assert sorted(values) == sorted(committed + aborted), "read_uncommitted does not see every record once"


# ---------------------------------------------------------------------------------------------- damaged objects

def fetch_raw(bootstrap: str, topic: str, partition: int, offset: int) -> dict:
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(kafka_wire.fetch_v4_request(1, topic, partition, offset, max_wait_ms=1000))
        _, parts = kafka_wire.parse_fetch_v4_response(kafka_wire.recv_frame(s))
    assert len(parts) == 1, parts
    return parts[0]


def fetch_until(bootstrap, topic, partition, offset, what, done, timeout=15.0) -> dict:
    """Fetches until done(answer); an empty answer means a read is still under way."""
    return wait_for(what, lambda: (lambda a: (done(a), a))(fetch_raw(bootstrap, topic, partition, offset)),
                    timeout, interval=0.3)


@pytest.mark.parametrize("damage", ["truncated", "bad-batch-length"])
def test_a_damaged_archive_object_is_an_error_and_the_next_fetch_reads_again(strata_factory, tmp_path, damage):
    """A segment object cut short or with a batch length pointing nowhere: the fetch gets
    KAFKA_STORAGE_ERROR (not an empty answer, not a dead broker), every fetch after it tries
    the store again, and once the object is whole again the archived records are served."""
    tiered = Tiered(None, tmp_path, "local")
    broker = strata_factory("--config", str(tiered.config()))
    topic = unique_topic("tier-damaged")
    create_topic(broker.bootstrap, topic, 1)
    count = 3_000
    delivered = produce_values(broker.bootstrap, topic, [value_for("dmg", i) for i in range(count)],
                               partition_of=lambda i: 0)
    expected = expected_by_partition(delivered)
    wait_fully_archived(broker, tiered.archive, topic, [0])
    first = tiered.archive.manifest(topic, 0)[0]
    assert first["base_offset"] == 0
    key = f"{tiered.archive.topic_dir(topic)}/0/{first['base_offset']:020d}-{first['segment_id']}.log"
    path = tiered.archive.root / key
    whole = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(whole[:40])
    else:
        path.write_bytes(whole[:8] + struct.pack(">i", -100) + whole[12:])

    for attempt in range(3):
        answer = fetch_until(broker.bootstrap, topic, 0, 0, f"an error for the damaged object (fetch {attempt})",
                             lambda a: a["error_code"] != 0 or a["records"])
        assert answer["error_code"] == kafka_wire.ERR_KAFKA_STORAGE_ERROR, answer
        assert answer["records"] == b"", "records served from a damaged object"
        assert answer["high_watermark"] == count
    assert broker.is_running(), broker.log_tail()
    assert "archive read failed" in broker.log_path.read_text(errors="replace")
    assert metric(scrape(broker), "strata_archive_remote_read_errors_total") >= 3

    path.write_bytes(whole)
    answer = fetch_until(broker.bootstrap, topic, 0, 0, "records once the object is whole again",
                         lambda a: a["error_code"] != 0 or a["records"])
    assert answer["error_code"] == 0, answer
    assert kafka_wire.first_batch_base_offset(answer["records"]) == 0
    got = consume_partitions(broker.bootstrap, topic, [0], expected=count, timeout=60)
    assert_read_exactly(got, expected, "consume from OFFSET_BEGINNING after the repair")
