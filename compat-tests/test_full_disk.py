"""A full disk: the data dir is a small tmpfs mounted for the test (the tests run as root).

Produce then gets KAFKA_STORAGE_ERROR for the partitions it cannot write, an offset commit
NOT_COORDINATOR (Kafka's coordinators answer a failed write so); nothing acknowledged is lost or
doubled, every segment stays a run of whole batches with indexes that point at them, consumers
keep reading, and writes resume by themselves once space is freed (a file deleted, or records
deleted through DeleteRecords), with no restart. After a restart everything acknowledged is
still there.
"""

import errno
import os
import struct
import subprocess
import threading
from collections import Counter

import crc32c
import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from clients import Delivered, consume_partitions, create_topic, new_consumer, produce_all, unique_topic
from conftest import StrataBroker, free_port, strata_binary

DISK_SIZE = "8m"
FILLER_BYTES = 1 << 20
PARTITIONS = 2


@pytest.fixture
def small_disk(request, tmp_path):
    """A running broker whose data dir is on an 8 MiB tmpfs holding a 1 MiB filler file.

    Returns start(*extra_args) -> (broker, filler path); the broker is stopped and the tmpfs
    unmounted at the end.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount)], check=True)
    brokers: list[StrataBroker] = []
    request.node._strata_brokers = brokers

    def start(*extra_args: str):
        data_dir = mount / "data"
        data_dir.mkdir()
        filler = mount / "filler"
        filler.write_bytes(b"\0" * FILLER_BYTES)
        broker = StrataBroker(strata_binary(), free_port(), data_dir, tmp_path / "strata.log",
                              ("--override", "log.segment.bytes=1048576",
                               # the default archive is a directory of the data dir: off, so that only
                               # the log competes for the space freed
                               "--override", "remote.log.storage.system.enable=false", *extra_args))
        brokers.append(broker)
        return broker.start(), filler

    yield start
    for broker in brokers:
        broker.shutdown_quietly()
    subprocess.run(["umount", str(mount)], check=False)


def value(i: int, size: int) -> bytes:
    return f"{i:08d}".encode().ljust(size, b".")


def fill_until_refused(bootstrap: str, topic: str) -> tuple[Delivered, int]:
    """Produces until every partition refuses several records in a row; returns the reports."""
    delivered = Delivered()
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        # the broker's error comes back as the delivery report, not after retries
        "enable.idempotence": False,
        "retries": 0,
        "linger.ms": 5,
        "batch.size": 65536,
    })
    i = 0
    # large records until the first refusal, then single small ones (each in its own request),
    # so that the disk is full to its last page
    while not delivered.failed:
        assert i < 20_000, "8 MiB took 80 MB of records without a refusal"
        for _ in range(64):
            producer.produce(topic, value=value(i, 4096), partition=i % PARTITIONS, on_delivery=delivered.callback)
            i += 1
        assert producer.flush(30) == 0
    refused_in_a_row = Counter()
    while min(refused_in_a_row[p] for p in range(PARTITIONS)) < 5:
        assert i < 40_000, f"partitions did not stay refused: {refused_in_a_row}"
        p = i % PARTITIONS
        producer.produce(topic, value=value(i, 100), partition=p, on_delivery=delivered.callback)
        assert producer.flush(30) == 0
        refused_in_a_row[p] = refused_in_a_row[p] + 1 if value(i, 100) in delivered.failed else 0
        i += 1
    return delivered, i


def segment_bases(data_dir, topic: str, partition: int) -> list[int]:
    return sorted(int(log.stem) for log in (data_dir / f"{topic}-{partition}").glob("*.log"))


def check_segments(data_dir, topic: str) -> int:
    """Every .log is whole batches (CRC-checked) with contiguous offsets; every .index entry points
    at the start of the batch whose last offset it names, every .timeindex entry at a batch's last
    offset. Returns the number of segments seen."""
    segments = 0
    for p in range(PARTITIONS):
        pdir = data_dir / f"{topic}-{p}"
        logs = sorted(pdir.glob("*.log"))
        assert logs, f"no segment in {pdir}"
        next_offset = int(logs[0].stem)
        for n, log in enumerate(logs):
            segments += 1
            base = int(log.stem)
            assert base == next_offset, f"{log.name} starts at {base}, the log before it ends at {next_offset}"
            data = log.read_bytes()
            batches = {}  # position -> last offset
            last_offsets = set()
            pos = 0
            while pos < len(data):
                assert pos + 61 <= len(data), f"{log.name}: a torn batch header at {pos} of {len(data)}"
                base_offset, length = struct.unpack_from(">qi", data, pos)
                assert pos + 12 + length <= len(data), f"{log.name}: a torn batch at {pos} of {len(data)}"
                (crc,) = struct.unpack_from(">I", data, pos + 17)
                assert crc32c.crc32c(data[pos + 21:pos + 12 + length]) == crc, f"{log.name}: bad CRC at {pos}"
                (last_delta,) = struct.unpack_from(">i", data, pos + 23)
                assert base_offset == next_offset, f"{log.name}: batch at {pos} has offset {base_offset}"
                next_offset = base_offset + last_delta + 1
                batches[pos] = next_offset - 1
                last_offsets.add(next_offset - 1)
                pos += 12 + length
            assert data or n == len(logs) - 1, f"{log.name}: an empty segment before the last"
            index = (pdir / f"{log.stem}.index").read_bytes()
            assert len(index) % 8 == 0, f"{log.stem}.index: {len(index)} bytes"
            for rel, position in struct.iter_unpack(">II", index):
                assert batches.get(position) == base + rel, \
                    f"{log.stem}.index: ({rel}, {position}) is not a batch of this segment"
            timeindex = (pdir / f"{log.stem}.timeindex").read_bytes()
            assert len(timeindex) % 12 == 0, f"{log.stem}.timeindex: {len(timeindex)} bytes"
            for _ts, rel in struct.iter_unpack(">qI", timeindex):
                assert base + rel in last_offsets, f"{log.stem}.timeindex: offset {base + rel} ends no batch"
    return segments


def check_read_back(bootstrap: str, topic: str, acked: dict, starts: dict | None = None) -> None:
    """Every acknowledged record (at or past its partition's start in `starts`) is read back once,
    where its delivery report put it; no other record is."""
    if starts:
        acked = {v: place for v, place in acked.items() if place[1] >= starts[place[0]]}
    consumed = consume_partitions(bootstrap, topic, range(PARTITIONS), timeout=60)
    values = Counter(m.value() for msgs in consumed.values() for m in msgs)
    doubled = [v[:8] for v, n in values.items() if n > 1]
    assert not doubled, f"read more than once: {doubled[:10]}"
    missing = [v[:8] for v in acked if v not in values]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:10]}"
    extra = [v[:8] for v in values if v not in acked]
    assert not extra, f"{len(extra)} records read that were never acknowledged, e.g. {extra[:10]}"
    at = {(m.partition(), m.offset()): m.value() for msgs in consumed.values() for m in msgs}
    for v, place in acked.items():
        assert at[place] == v, f"record {v[:8]} is not at {place}"


def commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    consumer = new_consumer(bootstrap, **{"group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = new_consumer(bootstrap, **{"group.id": group})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        consumer.close()


@pytest.mark.parametrize("flush", ["os", "always"])
def test_a_full_disk_refuses_writes_loses_nothing_and_resumes_when_space_is_freed(small_disk, flush):
    broker, filler = small_disk("--flush", flush)
    topic, group = unique_topic("full"), unique_topic("full-group")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    commit(broker.bootstrap, group, topic, 1)

    delivered, produced = fill_until_refused(broker.bootstrap, topic)
    codes = Counter(e.code() for e in delivered.failed.values())
    assert set(codes) == {KafkaError.KAFKA_STORAGE_ERROR}, f"refusals: {codes}"
    print(f"{len(delivered.ok)} records acknowledged, {len(delivered.failed)} refused with KAFKA_STORAGE_ERROR")
    assert broker.is_running()

    # Full: the files are whole, consumers read everything acknowledged, a commit is refused.
    segments = check_segments(broker.data_dir, topic)
    assert segments > PARTITIONS, "the run rolled no segment"
    check_read_back(broker.bootstrap, topic, delivered.ok)
    with pytest.raises(KafkaException) as refused:
        commit(broker.bootstrap, group, topic, 5)
    print(f"commit on the full disk: {refused.value}")
    assert committed(broker.bootstrap, group, topic) == 1, "a refused commit must not be visible"

    # Room again: the same broker takes writes, no restart.
    filler.unlink()
    resumed = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True})
    produce_all(resumed, ((None, value(produced + i, 1000), None) for i in range(200)), delivered, topic)
    assert sum(1 for i in range(200) if value(produced + i, 1000) in delivered.ok) == 200
    commit(broker.bootstrap, group, topic, 5)
    assert committed(broker.bootstrap, group, topic) == 5
    check_segments(broker.data_dir, topic)
    check_read_back(broker.bootstrap, topic, delivered.ok)

    broker.stop()
    broker.start()
    check_read_back(broker.bootstrap, topic, delivered.ok)
    assert committed(broker.bootstrap, group, topic) == 5
    check_segments(broker.data_dir, topic)


def low_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = new_consumer(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in range(PARTITIONS)}
    finally:
        consumer.close()


def test_delete_records_makes_room_on_a_full_disk_and_writes_resume(small_disk):
    broker, filler = small_disk()
    topic = unique_topic("full-delete")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    delivered, produced = fill_until_refused(broker.bootstrap, topic)
    assert filler.exists()

    # The new log start needs a checkpoint file, which needs room: the segments below it go first.
    # Partition 0 starts at its last segment, partition 1 one record into it.
    starts = {}
    for p in range(PARTITIONS):
        bases = segment_bases(broker.data_dir, topic, p)
        assert len(bases) > 1, f"partition {p} rolled no segment"
        starts[p] = bases[-1] + p
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.delete_records([TopicPartition(topic, p, o) for p, o in starts.items()], request_timeout=30)
    for tp, future in futures.items():
        assert future.result(timeout=30).low_watermark == starts[tp.partition]
    assert low_watermarks(broker.bootstrap, topic) == starts

    resumed = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True})
    produce_all(resumed, ((None, value(produced + i, 1000), None) for i in range(200)), delivered, topic)
    assert sum(1 for i in range(200) if value(produced + i, 1000) in delivered.ok) == 200
    check_segments(broker.data_dir, topic)
    check_read_back(broker.bootstrap, topic, delivered.ok, starts)

    broker.stop()
    broker.start()
    assert low_watermarks(broker.bootstrap, topic) == starts, "deleted records came back"
    check_read_back(broker.bootstrap, topic, delivered.ok, starts)


def fill_disk(path) -> None:
    """Writes `path` until the file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    finally:
        os.close(fd)


def test_a_transaction_committed_on_a_full_disk_completes_once_there_is_room(small_disk):
    broker, _ = small_disk()
    topic = unique_topic("full-txn")
    create_topic(broker.bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique_topic("txn"),
                         "transaction.timeout.ms": 120_000})
    producer.init_transactions(30)
    producer.begin_transaction()
    values = [value(i, 100) for i in range(10)]
    for v in values:
        producer.produce(topic, value=v, partition=0)
    assert producer.flush(30) == 0

    full = broker.data_dir.parent / "full"
    fill_disk(full)
    outcome = {}

    def commit_transaction():
        try:
            producer.commit_transaction(90)
            outcome["ok"] = True
        except KafkaException as e:
            outcome["error"] = e

    committing = threading.Thread(target=commit_transaction)
    committing.start()
    committing.join(3)
    assert committing.is_alive(), f"the commit finished on a full disk: {outcome}"
    assert consume_partitions(broker.bootstrap, topic, [0], timeout=10,
                              **{"isolation.level": "read_committed"}) == {0: []}

    full.unlink()
    committing.join(90)
    assert outcome == {"ok": True}
    read = consume_partitions(broker.bootstrap, topic, [0], expected=len(values), timeout=30,
                              **{"isolation.level": "read_committed"})
    assert [m.value() for m in read[0]] == values

    broker.stop()
    broker.start()
    read = consume_partitions(broker.bootstrap, topic, [0], expected=len(values), timeout=30,
                              **{"isolation.level": "read_committed"})
    assert [m.value() for m in read[0]] == values
