"""Log compaction (cleanup.policy=compact) seen by real clients: after cleaning, a consumer from
offset 0 reads exactly the last value of every key at its original offset, tombstones vanish
after delete.retention.ms, the log shrinks on disk, kill -9 during cleaning loses nothing,
keyless records are refused, compacted topics cannot be archived."""

import pathlib
import random
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clients import consume_partitions, file_sizes, unique_topic, wait_for_partitions

FAST_CLEANER = ("--override", "log.cleaner.backoff.ms=200")


def create_compacted(bootstrap, topic, **extra):
    config = {
        "cleanup.policy": "compact",
        "segment.bytes": "4096",
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": "3000",
    }
    config.update({k.replace("_", "."): str(v) for k, v in extra.items()})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(timeout=15)
    wait_for_partitions(bootstrap, topic, 1)


def log_bytes(broker, topic) -> int:
    return sum(size for _, size in file_sizes(pathlib.Path(broker.data_dir) / f"{topic}-0", ".log"))


def produce_keyed(bootstrap, topic, records, **conf):
    """Produces (key, value) pairs one request each (many small batches, several segments);
    returns {(key, value): offset} of what was acknowledged."""
    offsets = {}
    errors = []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            offsets[(msg.key(), msg.value())] = msg.offset()

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all", **conf})
    for i, (k, v) in enumerate(records):
        producer.produce(topic, key=k, value=v, on_delivery=on_delivery)
        if i % 20 == 19:
            producer.flush(30)
    assert producer.flush(30) == 0
    assert not errors, errors[:3]
    return offsets


def roll_with_filler(bootstrap, topic, size=5000):
    """One record larger than segment.bytes: it rolls the segment, so every record before it
    lies in closed (cleanable) segments and the active one holds only the filler."""
    return produce_keyed(bootstrap, topic, [(b"filler", b"f" * size)])


def read_all(bootstrap, topic):
    msgs = consume_partitions(bootstrap, topic, [0], timeout=30)[0]
    return [(m.offset(), m.key(), m.value()) for m in msgs]


def wait_for(view, predicate, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = view()
        if predicate(last):
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {timeout}s; last view: {str(last)[:600]}")


def test_a_consumer_sees_the_last_value_of_every_key_and_tombstones_vanish(strata_factory):
    broker = strata_factory(*FAST_CLEANER)
    topic = unique_topic("compact")
    create_compacted(broker.bootstrap, topic)
    records = []
    for version in range(8):
        for k in range(30):
            records.append((f"key-{k:02d}".encode(), f"value-{k:02d}-v{version}-".encode() + b"x" * 40))
    tombstoned = [f"key-{k:02d}".encode() for k in range(0, 30, 7)]
    records += [(k, None) for k in tombstoned]
    acked = produce_keyed(broker.bootstrap, topic, records)
    acked.update(roll_with_filler(broker.bootstrap, topic))
    before_bytes = log_bytes(broker, topic)

    last = {}
    for (k, v), off in acked.items():
        if k not in last or off > last[k][0]:
            last[k] = (off, v)
    with_tombstones = sorted((off, k, v) for k, (off, v) in last.items())
    live = [r for r in with_tombstones if r[2] is not None]

    # Cleaning runs within seconds; tombstones stay for delete.retention.ms (3 s), then go.
    view = wait_for(lambda: read_all(broker.bootstrap, topic),
                    lambda rows: rows in (with_tombstones, live), 30, "one record per key")
    if view == with_tombstones:
        view = wait_for(lambda: read_all(broker.bootstrap, topic), lambda rows: rows == live, 30,
                        "tombstones removed")
    assert view == live  # same offsets as acknowledged, last value of each key, no tombstone
    assert log_bytes(broker, topic) < before_bytes / 3, (before_bytes, log_bytes(broker, topic))

    # A restart serves the same cleaned log, and appends continue at the same end.
    broker.stop()
    broker.start()
    assert read_all(broker.bootstrap, topic) == live
    more = produce_keyed(broker.bootstrap, topic, [(b"key-01", b"after restart")])
    assert list(more.values()) == [live[-1][0] + 1]


def test_the_brokers_cleaner_defaults_apply_to_topics_without_their_own(strata_factory):
    # Kafka's broker-wide names for the topic configs: a day's delete.retention.ms by
    # default, three seconds here, so the tombstones go within the wait.
    broker = strata_factory(*FAST_CLEANER, "--override", "log.cleaner.delete.retention.ms=3000",
                            "--override", "log.cleaner.min.cleanable.ratio=0.01",
                            "--override", "log.cleaner.min.compaction.lag.ms=0")
    topic = unique_topic("compact-defaults")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    config = {"cleanup.policy": "compact", "segment.bytes": "4096"}
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(timeout=15)
    wait_for_partitions(broker.bootstrap, topic, 1)
    records = [(f"key-{k}".encode(), f"v{version}".encode() * 20) for version in range(4) for k in range(10)]
    records += [(b"key-3", None), (b"key-7", None)]
    acked = produce_keyed(broker.bootstrap, topic, records)
    acked.update(roll_with_filler(broker.bootstrap, topic))
    last = {}
    for (k, v), off in acked.items():
        if k not in last or off > last[k][0]:
            last[k] = (off, v)
    live = sorted((off, k, v) for k, (off, v) in last.items() if v is not None)
    assert wait_for(lambda: read_all(broker.bootstrap, topic), lambda rows: rows == live, 60,
                    "tombstones removed after the broker's delete.retention.ms") == live


def test_produce_without_a_key_to_a_compacted_topic_is_invalid_record(strata_factory):
    broker = strata_factory(*FAST_CLEANER)
    topic = unique_topic("compact-nokey")
    create_compacted(broker.bootstrap, topic)
    errors = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0,
                         "enable.idempotence": False, "retries": 0})
    producer.produce(topic, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.INVALID_RECORD, errors[0]
    # Keyed records are accepted.
    assert produce_keyed(broker.bootstrap, topic, [(b"k", b"v")]) == {(b"k", b"v"): 0}


def test_a_compacted_topic_cannot_be_archived(strata):
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    topic = unique_topic("compact-remote")
    futures = admin.create_topics([NewTopic(topic, 1, 1, config={
        "cleanup.policy": "compact", "remote.storage.enable": "true"})])
    with pytest.raises(KafkaException) as err:
        futures[topic].result(timeout=15)
    e = err.value.args[0]
    assert e.code() == KafkaError.INVALID_CONFIG
    assert "Remote log storage only supports topics with cleanup.policy=delete" in e.str()
    # Compact without asking for the archive is fine.
    ok = unique_topic("compact-local")
    admin.create_topics([NewTopic(ok, 1, 1, config={"cleanup.policy": "compact,delete"})])[ok].result(timeout=15)


def test_kill_9_while_cleaning_loses_nothing(strata_factory):
    # Throttled to 1 MB/s so a pass over the ~3 MB log takes seconds and the kills land mid-pass.
    broker = strata_factory(*FAST_CLEANER, "--override", "log.cleaner.io.max.bytes.per.second=1000000")
    topic = unique_topic("compact-kill")
    create_compacted(broker.bootstrap, topic, segment_bytes=65536, delete_retention_ms=600000)
    records = []
    for version in range(6):
        for k in range(1000):
            records.append((f"k{k:04d}".encode(), f"{k}-v{version}-".encode() + b"y" * 400))
    acked = produce_keyed(broker.bootstrap, topic, records, **{"linger.ms": 5, "batch.num.messages": 50})
    acked.update(roll_with_filler(broker.bootstrap, topic, size=70000))
    last = {}
    for (k, v), off in acked.items():
        if k not in last or off > last[k][0]:
            last[k] = (off, v)
    expected = sorted((off, k, v) for k, (off, v) in last.items())

    rng = random.Random(7)
    for _ in range(6):
        time.sleep(rng.uniform(0.3, 2.5))
        broker.kill()
        broker.start()
        # Whatever the moment, every key reads its last value (possibly older versions too,
        # while cleaning has not finished), never a lost key.
        rows = read_all(broker.bootstrap, topic)
        seen = {}
        for off, k, v in rows:
            seen[k] = (off, v)
        assert seen == last, "a kill -9 during cleaning lost or changed a record"
    view = wait_for(lambda: read_all(broker.bootstrap, topic), lambda rows: rows == expected, 90,
                    "the log cleaned after the kills")
    assert view == expected
    broker.stop()
    leftovers = [p.name for p in (pathlib.Path(broker.data_dir) / f"{topic}-0").iterdir()
                 if p.name.endswith((".cleaned", ".swap"))]
    assert not leftovers, leftovers
    broker.start()
    assert read_all(broker.bootstrap, topic) == expected


def batch_codecs(broker, topic) -> set[int]:
    """Compression ids of the non-empty batches in the partition's segment files."""
    import struct
    codecs = set()
    for path in sorted((pathlib.Path(broker.data_dir) / f"{topic}-0").glob("*.log")):
        data = path.read_bytes()
        pos = 0
        while pos + 61 <= len(data):
            length, = struct.unpack_from(">i", data, pos + 8)
            attributes, = struct.unpack_from(">h", data, pos + 21)
            count, = struct.unpack_from(">i", data, pos + 57)
            if count > 0:
                codecs.add(attributes & 0x07)
            pos += 12 + length
    return codecs


@pytest.mark.parametrize("codec,codec_id", [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)])
def test_a_compressed_topic_is_cleaned_and_stays_in_its_codec(strata_factory, codec, codec_id):
    broker = strata_factory(*FAST_CLEANER)
    topic = unique_topic(f"compact-{codec}")
    create_compacted(broker.bootstrap, topic)
    records = [(f"key-{k:02d}".encode(), f"{codec}-{k}-v{v}-".encode() + b"z" * 60)
               for v in range(6) for k in range(25)]
    acked = produce_keyed(broker.bootstrap, topic, records, **{"compression.type": codec})
    acked.update(roll_with_filler(broker.bootstrap, topic))
    last = {}
    for (k, v), off in acked.items():
        if k not in last or off > last[k][0]:
            last[k] = (off, v)
    expected = sorted((off, k, v) for k, (off, v) in last.items())
    wait_for(lambda: read_all(broker.bootstrap, topic), lambda rows: rows == expected, 30,
             f"the {codec} log cleaned")
    assert codec_id in batch_codecs(broker, topic)
    # The keyless check reads compressed batches too.
    errors = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec,
                         "enable.idempotence": False, "retries": 0})
    producer.produce(topic, value=b"no key " * 20, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD


def test_an_idempotent_producer_goes_on_after_cleaning_and_a_restart(strata_factory):
    broker = strata_factory(*FAST_CLEANER)
    topic = unique_topic("compact-idem")
    create_compacted(broker.bootstrap, topic)
    errors, offsets = [], []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            offsets.append(msg.offset())

    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                         "linger.ms": 0, "reconnect.backoff.max.ms": 200})
    for version in range(10):
        for k in range(10):
            producer.produce(topic, key=f"k{k}".encode(), value=f"v{version}".encode() + b"x" * 50,
                             on_delivery=on_delivery)
        producer.flush(15)
    producer.produce(topic, key=b"filler", value=b"f" * 5000, on_delivery=on_delivery)
    producer.flush(15)
    wait_for(lambda: len(read_all(broker.bootstrap, topic)), lambda n: n == 11, 30, "cleaned")
    broker.stop()
    broker.start()
    # The producer's sequence survived cleaning (its last batch is kept) and the restart.
    for k in range(10):
        producer.produce(topic, key=f"k{k}".encode(), value=b"after", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert not errors, errors[:3]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_records_of_aborted_transactions_are_cleaned_away(strata_factory):
    broker = strata_factory(*FAST_CLEANER)
    topic = unique_topic("compact-txn")
    create_compacted(broker.bootstrap, topic, delete_retention_ms=1000)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": topic, "linger.ms": 0})
    producer.init_transactions(15)
    producer.begin_transaction()
    for k in range(5):
        producer.produce(topic, key=f"k{k}".encode(), value=b"aborted")
    producer.flush(15)
    producer.abort_transaction(15)
    producer.begin_transaction()
    for k in range(5):
        producer.produce(topic, key=f"k{k}".encode(), value=b"committed")
    producer.commit_transaction(15)
    plain = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    plain.produce(topic, key=b"filler", value=b"f" * 5000)
    plain.flush(15)

    def on_disk():
        return b"".join(p.read_bytes() for p in (pathlib.Path(broker.data_dir) / f"{topic}-0").glob("*.log"))

    wait_for(on_disk, lambda data: b"aborted" not in data, 30, "aborted records removed from disk")
    rows = read_all(broker.bootstrap, topic)
    assert sorted((k, v) for _, k, v in rows) == sorted(
        [(f"k{k}".encode(), b"committed") for k in range(5)] + [(b"filler", b"f" * 5000)])
    committed = consume_partitions(broker.bootstrap, topic, [0], timeout=30, **{"isolation.level": "read_committed"})[0]
    assert sorted(m.value() for m in committed if m.key() != b"filler") == [b"committed"] * 5
