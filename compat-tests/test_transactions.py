"""Idempotent and transactional producers (librdkafka and the Java client) against strata.

- idempotence: 100,000 messages from librdkafka through a TCP proxy (the broker advertises the
  proxy) whose connections are cut six times, each time the producer had reconnected and half a
  second had passed, and from the Java client (its defaults: idempotent, acks=all) while the
  broker (--flush always) is restarted twice, once with SIGTERM and once with SIGKILL: every
  message is stored exactly once, in produce order, at the offset its ack named.
- consume-transform-produce with confluent-kafka and with the Java client: a read_committed group
  consumer and a transactional producer copy an input topic, committing the group's offsets in
  each transaction; one transaction is aborted and its batch processed again. read_committed
  readers of the output see each input once; read_uncommitted readers also see the aborted
  batch; the group's committed offsets are the input's end offsets.
- fencing: a second producer with the same transactional.id fences the first, whose open
  transaction is aborted and whose next commit fails with a fatal fenced error.
- timeout: an abandoned transaction holds read_committed readers back until the broker aborts it
  after transaction.timeout.ms; then they see later commits and never the abandoned records.
- kill -9: an open transaction ends aborted after a crash and restart; a committed one is
  complete after a crash (--flush always); a producer that lives on through the broker's crash
  carries its transaction on and commits it.
- admin: the Java Admin client's listTransactions/describeTransactions/describeProducers show an
  Ongoing transaction with its partitions, then CompleteCommit. (confluent-kafka 2.16's
  AdminClient has no transaction APIs.)

The Java tests run with transaction protocol 2 (KIP-890, strata's default transaction.version)
and with 1; librdkafka 2.12 uses the first protocol either way.

The Java program is java/Transactional.java, compiled once per session by the fixture below.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import (OFFSET_BEGINNING, Consumer, IsolationLevel, KafkaError,
                             KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, OffsetSpec

import kafka_wire
from clients import Delivered, JsonLinesProcess, committed_offsets, wait_until, consume_partitions, create_topic, high_watermarks, produce_all, tail, unique_topic
from conftest import StrataBroker, free_port, strata_binary

JAVA_DIR = pathlib.Path(__file__).resolve().parent / "java"
IDEMPOTENT_COUNT = 100_000
IDEMPOTENT_PARTITIONS = 4
# the transaction coordinator looks for timed-out transactions every 500 ms instead of 10 s
FAST_TXN_EXPIRY = ("--override", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500")
FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


# ------------------------------------------------------------------------------------------- helpers

def txn_producer(bootstrap: str, transactional_id: str, **extra) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "linger.ms": 5, **extra})


def produce_in_txn(producer: Producer, topic: str, values, partition_of) -> Delivered:
    """Produce values (partition from partition_of(i)) and flush; the transaction stays open."""
    delivered = Delivered()
    for i, v in enumerate(values):
        producer.produce(topic, value=v, partition=partition_of(i), on_delivery=delivered.callback)
    assert producer.flush(30) == 0, "transactional messages not delivered within 30 s"
    assert not delivered.failed, f"deliveries failed: {list(delivered.failed.items())[:3]}"
    return delivered


def latest_offsets(bootstrap: str, topic: str, partitions, committed: bool) -> dict[int, int]:
    """ListOffsets latest: the high watermark (read_uncommitted) or the last stable offset (read_committed)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    futures = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in partitions},
                                 isolation_level=level, request_timeout=10)
    return {tp.partition: f.result(timeout=15).offset for tp, f in futures.items()}


def read(bootstrap: str, topic: str, partitions, expected: int, committed: bool, timeout: float = 60.0,
         settle: float = 1.5) -> dict[int, list[bytes]]:
    """{partition: [value, ...]} of a reader at isolation level read_committed or read_uncommitted,
    after `expected` messages and `settle` seconds more (so anything extra shows up too)."""
    level = "read_committed" if committed else "read_uncommitted"
    got = consume_partitions(bootstrap, topic, partitions, expected=expected, timeout=timeout, settle=settle,
                             **{"isolation.level": level})
    return {p: [m.value() for m in msgs] for p, msgs in got.items()}


def flat(by_partition: dict) -> list:
    return [v for values in by_partition.values() for v in values]


def check_sequences(consumed: dict[int, list], expected_count: dict[int, int], acked: dict[int, list[int]] | None,
                    value_of) -> None:
    """Each partition holds value_of(p, 0), value_of(p, 1), ... exactly once and in order; with `acked`
    ({partition: [offset of seq 0, offset of seq 1, ...]}), each at the offset its ack named."""
    for p, want in expected_count.items():
        msgs = consumed[p]
        values = [m.value() for m in msgs]
        seqs = [int(v.rsplit(b"-", 1)[1]) for v in values]
        dupes = sorted(s for s, n in Counter(seqs).items() if n > 1)
        assert not dupes, f"partition {p}: {len(dupes)} messages stored more than once, e.g. seq {dupes[:5]}"
        missing = sorted(set(range(want)) - set(seqs))
        assert not missing, f"partition {p}: {len(missing)} of {want} messages missing, e.g. seq {missing[:5]}"
        assert len(seqs) == want, f"partition {p}: {len(seqs)} messages, expected {want}"
        out_of_order = [(i, seqs[i - 1], seqs[i]) for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]]
        assert not out_of_order, f"partition {p}: out of produce order at {out_of_order[:5]}"
        assert values == [value_of(p, n) for n in range(want)], f"partition {p}: values differ from what was sent"
        offsets = [m.offset() for m in msgs]
        assert offsets == list(range(want)), (f"partition {p}: offsets are not 0..{want - 1} "
                                              f"(first gaps: {[o for i, o in enumerate(offsets) if o != i][:5]})")
        if acked is not None:
            wrong = [(n, acked[p][n], offsets[n]) for n in range(want) if acked[p][n] != offsets[n]]
            assert not wrong, f"partition {p}: (seq, acked offset, stored offset) differ: {wrong[:5]}"


# ------------------------------------------------------------------------------------------- Java

class JavaProgram(JsonLinesProcess):
    """`java Transactional MODE ...` in the background: JSON lines from stdout into .events, the last
    one ({"event": "summary"}) into .summary; the client's log (stderr) into log_path."""

    def __init__(self, classpath: str, mode: str, args: list[str], log_path: pathlib.Path):
        self.events: list[dict] = []
        self.summary: dict | None = None
        cmd = ["java", f"-Dlog4j2.configurationFile={JAVA_DIR / 'log4j2.properties'}",
               f"-Dstrata.log.level={os.environ.get('STRATA_COMPAT_JAVA_LOG', 'WARN')}",
               "-cp", classpath, "Transactional", mode, *args]
        super().__init__(f"Transactional-{mode}", cmd, log_path)

    def on_message(self, obj: dict) -> None:
        if obj.get("event") == "summary":
            self.summary = obj
        else:
            self.events.append(obj)

    def last(self, kind: str) -> dict | None:
        for e in reversed(self.events):
            if e.get("event") == kind:
                return e
        return None

    def describe(self) -> str:
        brief = {k: v for k, v in (self.summary or {}).items() if k not in ("offsets", "aborted_values")}
        return (f"command: {' '.join(self.cmd)}\nexit status: {self.proc.poll()}\nsummary: {json.dumps(brief)}\n"
                f"last events: {self.events[-5:]}\nclient log (last lines):\n"
                f"{tail(self.log_path.read_text(errors='replace'), 40)}")

    def wait(self, timeout: float) -> dict:
        """Wait for the exit and assert a clean one (status 0, ok summary)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the Java program did not finish within {timeout}s\n{self.describe()}")
        self._reader.join(10)
        assert self.proc.returncode == 0 and self.summary and self.summary.get("ok") is True, (
            f"the Java program failed\n{self.describe()}")
        assert self.summary["client_version"] == "4.3.0", self.summary["client_version"]
        return self.summary


# ------------------------------------------------------------------------------------------- 1. librdkafka idempotence

class _AdvertisedBroker(StrataBroker):
    """A broker that tells clients to connect to another address (a proxy in front of it)."""

    def __init__(self, *args, advertised: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.advertised = advertised

    @property
    def command(self) -> list[str]:
        cmd = super().command
        cmd[cmd.index("--advertised-listener") + 1] = self.advertised
        return cmd


def broker_behind_proxy(request, tcp_proxy, tmp_path, *extra_args):
    """A broker whose advertised listener is a tcp_proxy in front of it, so every client connection
    (after the bootstrap one too) goes through the proxy. Needs the strata_factory fixture (for the
    log tail in failure reports and the shutdown at the end)."""
    port = free_port()
    proxy = tcp_proxy("127.0.0.1", port)
    data_dir = tmp_path / "proxied-data"
    data_dir.mkdir()
    broker = _AdvertisedBroker(strata_binary(), port, data_dir, tmp_path / "strata-proxied.log", extra_args,
                               advertised=proxy.address)
    request.node._strata_brokers.append(broker)
    broker.start()
    return broker, proxy


def test_librdkafka_idempotent_producer_through_cut_connections_stores_every_message_once_in_order(
        request, strata_factory, tcp_proxy, tmp_path):
    broker, proxy = broker_behind_proxy(request, tcp_proxy, tmp_path)
    topic = unique_topic("idem-cuts")
    create_topic(proxy.address, topic, IDEMPOTENT_PARTITIONS)

    delivered = Delivered()
    producer = Producer({
        "bootstrap.servers": proxy.address,
        "enable.idempotence": True,         # acks=all, retries, at most 5 requests in flight, in order
        "linger.ms": 5,
        "message.timeout.ms": 120000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "retry.backoff.ms": 50,
    })
    counts = {p: len(range(p, IDEMPOTENT_COUNT, IDEMPOTENT_PARTITIONS)) for p in range(IDEMPOTENT_PARTITIONS)}

    def value_of(p, n):
        return f"p{p}-{n:07d}".encode()

    cuts: list[tuple[int, int]] = []     # (acknowledged, accepted connections) at each cut
    cutter_errors: list[Exception] = []
    finished = threading.Event()

    def cutter():
        try:
            cut_repeatedly()
        except AssertionError as e:
            cutter_errors.append(e)

    def cut_repeatedly():
        # Cut, then let the producer reconnect and deliver again (at least 0.5 s and 1000 more acks) before
        # the next cut, so each cut hits a producer with requests in flight. (librdkafka 2.12 re-bootstraps
        # when its only broker connection drops, and tries that about once a second.)
        wait_until(lambda: len(delivered.ok) >= 5000 or finished.is_set(), 60, "the first 5000 acks")
        while not finished.is_set() and len(cuts) < 6:
            cuts.append((len(delivered.ok), proxy.accepted))
            proxy.cut()           # resets every connection, in-flight produce requests included
            time.sleep(0.15)
            proxy.restore()
            resumed_from, restored_at = len(delivered.ok), time.monotonic()
            wait_until(lambda: finished.is_set() or (len(delivered.ok) >= resumed_from + 1000
                                                     and time.monotonic() >= restored_at + 0.5),
                       60, lambda: f"the producer to resume after cut {len(cuts)} (acked {len(delivered.ok)})")

    thread = threading.Thread(target=cutter, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        # paced to about 10,000 messages/s (10 s) so the cuts fall in the middle of the stream
        for chunk_start in range(0, IDEMPOTENT_COUNT, 1000):
            for i in range(chunk_start, chunk_start + 1000):
                p = i % IDEMPOTENT_PARTITIONS
                while True:
                    try:
                        producer.produce(topic, value=value_of(p, i // IDEMPOTENT_PARTITIONS), partition=p,
                                         on_delivery=delivered.callback)
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.poll(0)
            due = started + (chunk_start + 1000) / 10000
            while time.monotonic() < due:
                producer.poll(min(0.02, max(0.0, due - time.monotonic())))  # poll returns early on callbacks
        remaining = producer.flush(120)
    finally:
        finished.set()
        thread.join(10)
        proxy.restore()
    elapsed = time.monotonic() - started
    print(f"produced {IDEMPOTENT_COUNT} in {elapsed:.1f} s; cuts at (acked, connections): {cuts}; "
          f"{proxy.accepted} connections accepted, {proxy.refused} refused")
    assert remaining == 0, f"{remaining} messages neither delivered nor failed after 120 s"
    assert not delivered.failed, (f"{len(delivered.failed)} deliveries failed, e.g. "
                                  f"{list(delivered.failed.items())[:3]}")
    assert len(delivered.ok) == IDEMPOTENT_COUNT
    mid_stream = [c for c in cuts if 0 < c[0] < IDEMPOTENT_COUNT]
    assert len(mid_stream) >= 4, (f"only {len(mid_stream)} cuts happened while messages were in flight: {cuts} "
                                  f"{cutter_errors}")
    assert proxy.accepted > len(mid_stream), "the producer never reconnected through the proxy"

    acked = {p: [-1] * counts[p] for p in counts}
    for value, (p, offset) in delivered.ok.items():
        acked[p][int(value.rsplit(b"-", 1)[1])] = offset
    consumed = consume_partitions(proxy.address, topic, range(IDEMPOTENT_PARTITIONS), expected=IDEMPOTENT_COUNT,
                                  timeout=90, settle=1.5)
    check_sequences(consumed, counts, acked, value_of)
    assert high_watermarks(proxy.address, topic, range(IDEMPOTENT_PARTITIONS)) == counts


# ------------------------------------------------------------------------------------------- 2. Java idempotence

def test_java_default_producer_across_broker_restarts_stores_every_message_once_in_order(
        strata_factory, java_classpath, tmp_path):
    broker = strata_factory("--flush", "always")
    topic = unique_topic("idem-java-restarts")
    create_topic(broker.bootstrap, topic, IDEMPOTENT_PARTITIONS)
    program = JavaProgram(java_classpath, "produce",
                          ["--bootstrap", broker.bootstrap, "--topic", topic,
                           "--partitions", str(IDEMPOTENT_PARTITIONS), "--count", str(IDEMPOTENT_COUNT),
                           "--chunk", "1000", "--pause-ms", "40", "--timeout", "150"],
                          tmp_path / "java-produce.log")
    restarts = []
    try:
        for threshold, how in ((25_000, "SIGTERM"), (60_000, "SIGKILL")):
            wait_until(lambda: ((program.last("progress") or {}).get("acked", 0) >= threshold
                                or program.proc.poll() is not None), 90,
                       lambda: f"{threshold} acks (have {program.last('progress')})\n{program.describe()}")
            at = program.last("progress")
            if how == "SIGTERM":
                broker.stop()
            else:
                broker.kill()
            time.sleep(1.0)        # the producer's requests fail and queue up meanwhile
            broker.start()
            restarts.append((how, at["sent"], at["acked"]))
        summary = program.wait(150)
    finally:
        program.kill()
    print(f"restarts (how, sent, acked): {restarts}; produce took {summary['produce_ms']} ms; "
          f"errors {summary['errors']}")
    assert all(acked < IDEMPOTENT_COUNT for _, _, acked in restarts), f"the run ended before a restart: {restarts}"
    assert summary["acked"] == IDEMPOTENT_COUNT and summary["failed"] == 0, program.describe()

    counts = {p: len(range(p, IDEMPOTENT_COUNT, IDEMPOTENT_PARTITIONS)) for p in range(IDEMPOTENT_PARTITIONS)}
    acked = {int(p): offsets for p, offsets in summary["offsets"].items()}

    def value_of(p, n):
        return f"j-{p}-{n:06d}".encode()

    consumed = consume_partitions(broker.bootstrap, topic, range(IDEMPOTENT_PARTITIONS), expected=IDEMPOTENT_COUNT,
                                  timeout=90, settle=1.5)
    check_sequences(consumed, counts, acked, value_of)
    assert high_watermarks(broker.bootstrap, topic, range(IDEMPOTENT_PARTITIONS)) == counts


# ------------------------------------------------------------------------------------------- 3./4. consume-transform-produce

CTP_COUNT = 3000
CTP_PARTITIONS = 3


def ctp_topics(bootstrap: str, prefix: str) -> tuple[str, str, list[bytes]]:
    """An input topic with CTP_COUNT keyed messages over CTP_PARTITIONS partitions, an empty output topic."""
    source, sink = unique_topic(f"{prefix}-in"), unique_topic(f"{prefix}-out")
    create_topic(bootstrap, source, CTP_PARTITIONS)
    create_topic(bootstrap, sink, CTP_PARTITIONS)
    values = [f"in-{i:05d}".encode() for i in range(CTP_COUNT)]
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    produce_all(producer, [(f"k{i % 37}".encode(), v, None) for i, v in enumerate(values)], delivered, source)
    assert not delivered.failed and len(delivered.ok) == CTP_COUNT
    return source, sink, values


def check_ctp_output(bootstrap: str, source: str, sink: str, group: str, aborted: list[bytes]) -> None:
    """read_committed readers of the output see each input once, transformed, in the input's
    order per partition; read_uncommitted readers see the aborted batch too; the group's
    committed offsets are the input's end offsets; nothing is left open on the output."""
    assert aborted, "no batch was aborted"
    source_by_partition = read(bootstrap, source, range(CTP_PARTITIONS), CTP_COUNT, committed=True, settle=0.5)
    committed_view = read(bootstrap, sink, range(CTP_PARTITIONS), CTP_COUNT, committed=True)
    out = flat(committed_view)
    dupes = sorted(v for v, n in Counter(out).items() if n > 1)
    assert not dupes, f"read_committed: {len(dupes)} outputs more than once, e.g. {dupes[:5]}"
    want = {b"T:" + v for v in flat(source_by_partition)}
    assert set(out) == want, (f"read_committed: {len(want - set(out))} inputs without output (e.g. "
                              f"{sorted(want - set(out))[:3]}), {len(set(out) - want)} unexpected outputs")
    for p in range(CTP_PARTITIONS):
        assert committed_view[p] == [b"T:" + v for v in source_by_partition[p]], (
            f"read_committed: partition {p} of the output is not partition {p} of the input, in order")

    uncommitted_view = read(bootstrap, sink, range(CTP_PARTITIONS), CTP_COUNT + len(aborted), committed=False)
    extra = Counter(flat(uncommitted_view)) - Counter(out)
    assert extra == Counter(b"T:" + v for v in aborted), (
        f"read_uncommitted should show exactly the aborted batch ({len(aborted)} records) on top of the "
        f"committed ones; extra: {sum(extra.values())} records, e.g. {sorted(extra)[:5]}")
    assert sum(len(v) for v in uncommitted_view.values()) == CTP_COUNT + len(aborted)

    ends = high_watermarks(bootstrap, source, range(CTP_PARTITIONS))
    assert sum(ends.values()) == CTP_COUNT
    committed = committed_offsets(bootstrap, group)
    assert committed == {(source, p): ends[p] for p in range(CTP_PARTITIONS)}, (
        f"the group's committed offsets {committed} are not the input's end offsets {ends}")
    stable = latest_offsets(bootstrap, sink, range(CTP_PARTITIONS), committed=True)
    assert stable == latest_offsets(bootstrap, sink, range(CTP_PARTITIONS), committed=False), (
        "a transaction is still open on the output: last stable offset below the high watermark")


def test_confluent_kafka_consume_transform_produce_with_an_aborted_batch_is_exactly_once(strata):
    source, sink, _ = ctp_topics(strata.bootstrap, "ctp-rdk")
    group = f"ctp-rdk-{uuid.uuid4().hex[:8]}"
    abort_at = 3
    consumer = Consumer({
        "bootstrap.servers": strata.bootstrap,
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    })
    producer = txn_producer(strata.bootstrap, f"ctp-rdk-{uuid.uuid4().hex[:8]}")
    producer.init_transactions(30)
    consumer.subscribe([source])
    ends = high_watermarks(strata.bootstrap, source, range(CTP_PARTITIONS))
    transactions, aborted, rewound = 0, [], None
    deadline = time.monotonic() + 90
    try:
        while True:
            assert time.monotonic() < deadline, f"not done after 90 s ({transactions} transactions)"
            batch = [m for m in consumer.consume(num_messages=250, timeout=1.0) if not m.error()]
            if not batch:
                assignment = consumer.assignment()
                if len(assignment) == CTP_PARTITIONS and all(
                        tp.offset >= ends[tp.partition] for tp in consumer.position(assignment)):
                    break
                continue
            transactions += 1
            producer.begin_transaction()
            for m in batch:
                producer.produce(sink, key=m.key(), value=b"T:" + m.value(), partition=m.partition())
            positions = consumer.position([TopicPartition(source, p) for p in sorted({m.partition() for m in batch})])
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
            if transactions == abort_at:
                assert producer.flush(30) == 0    # the batch reaches the log before the abort
                producer.abort_transaction(30)
                aborted = [m.value() for m in batch]
                # back to what the group committed: the aborted batch gets processed again
                committed = consumer.committed(consumer.assignment(), timeout=15)
                rewound = {tp.partition: tp.offset for tp in committed}
                for tp in committed:
                    consumer.seek(TopicPartition(source, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
            else:
                producer.commit_transaction(30)
    finally:
        consumer.close()
    print(f"{transactions} transactions, transaction {abort_at} aborted ({len(aborted)} records), "
          f"rewound to the committed offsets {rewound}")
    assert transactions > abort_at
    check_ctp_output(strata.bootstrap, source, sink, group, aborted)


# The Java client 4.x speaks transaction protocol 2 (KIP-890: partitions enrolled by Produce, a new epoch
# from every EndTxn) when the broker finalizes transaction.version 2, strata's default; with 1 it uses
# AddPartitionsToTxn/AddOffsetsToTxn as librdkafka does.
TRANSACTION_VERSIONS = [pytest.param("2", id="tv2"), pytest.param("1", id="tv1")]


@pytest.mark.parametrize("transaction_version", TRANSACTION_VERSIONS)
def test_java_consume_transform_produce_with_an_aborted_batch_is_exactly_once(strata_factory, java_classpath,
                                                                              tmp_path, transaction_version):
    strata = strata_factory("--override", f"transaction.version={transaction_version}")
    source, sink, _ = ctp_topics(strata.bootstrap, "ctp-java")
    group = f"ctp-java-{uuid.uuid4().hex[:8]}"
    program = JavaProgram(java_classpath, "copy",
                          ["--bootstrap", strata.bootstrap, "--input", source, "--output", sink, "--group", group,
                           "--txn-id", f"ctp-java-{uuid.uuid4().hex[:8]}", "--batch", "200", "--abort-batch", "3",
                           "--timeout", "90"],
                          tmp_path / "java-copy.log")
    try:
        summary = program.wait(120)
    finally:
        program.kill()
    print(f"{summary['transactions']} transactions of {summary['batch_sizes']} records; "
          f"aborted: {program.last('aborted')}")
    assert summary["committed_records"] == CTP_COUNT, program.describe()
    assert summary["positions"] == summary["end_offsets"], program.describe()
    aborted = [v.encode() for v in summary["aborted_values"]]
    check_ctp_output(strata.bootstrap, source, sink, group, aborted)


# ------------------------------------------------------------------------------------------- 5. fencing

def test_a_second_producer_with_the_same_transactional_id_fences_the_first_and_aborts_its_transaction(strata):
    topic = unique_topic("txn-fence")
    create_topic(strata.bootstrap, topic, 2)
    tid = f"fence-{uuid.uuid4().hex[:8]}"

    first = txn_producer(strata.bootstrap, tid)
    first.init_transactions(30)
    first.begin_transaction()
    produce_in_txn(first, topic, [f"first-open-{i}".encode() for i in range(10)], lambda i: i % 2)
    assert latest_offsets(strata.bootstrap, topic, [0, 1], committed=True) == {0: 0, 1: 0}, (
        "the open transaction should hold the last stable offset at its first record")

    second = txn_producer(strata.bootstrap, tid)
    second.init_transactions(30)      # bumps the epoch: fences `first` and aborts its transaction
    # the abort marker is written: nothing open any more on either partition
    assert latest_offsets(strata.bootstrap, topic, [0, 1], committed=True) == \
        latest_offsets(strata.bootstrap, topic, [0, 1], committed=False) == {0: 6, 1: 6}

    late = Delivered()
    try:
        for i in range(4):
            first.produce(topic, value=f"first-late-{i}".encode(), partition=i % 2, on_delivery=late.callback)
        first.flush(15)
    except (KafkaException, SystemError):
        pass   # confluent-kafka raises the fatal error from the delivery callback's poll
    error = None
    try:
        first.commit_transaction(15)
    except KafkaException as e:
        error = e.args[0]
    assert error is not None, "the fenced producer's commit_transaction succeeded"
    assert error.code() in FENCED_CODES and error.fatal(), (
        f"expected a fatal fenced error (_FENCED / PRODUCER_FENCED / INVALID_PRODUCER_EPOCH), got {error!r} "
        f"(fatal={error.fatal()})")
    assert not late.ok, f"records of the fenced producer were acknowledged: {late.ok}"
    print(f"the fenced producer's commit_transaction: {error}")

    second.begin_transaction()
    produce_in_txn(second, topic, [f"second-{i}".encode() for i in range(10)], lambda i: i % 2)
    second.commit_transaction(30)

    committed = flat(read(strata.bootstrap, topic, [0, 1], 10, committed=True))
    assert sorted(committed) == sorted(f"second-{i}".encode() for i in range(10)), committed
    everything = flat(read(strata.bootstrap, topic, [0, 1], 20, committed=False))
    assert sorted(everything) == sorted([f"first-open-{i}".encode() for i in range(10)]
                                        + [f"second-{i}".encode() for i in range(10)]), (
        f"read_uncommitted should show the aborted and the committed records, and no record the fenced "
        f"producer sent after it was fenced: {everything}")


# ------------------------------------------------------------------------------------------- 6. timeout

def test_an_abandoned_transaction_is_aborted_after_its_timeout_and_stops_holding_back_read_committed(strata_factory):
    broker = strata_factory(*FAST_TXN_EXPIRY)
    topic = unique_topic("txn-timeout")
    create_topic(broker.bootstrap, topic, 1)

    abandoned = txn_producer(broker.bootstrap, f"abandoned-{uuid.uuid4().hex[:8]}", **{"transaction.timeout.ms": 3000})
    abandoned.init_transactions(30)
    other = txn_producer(broker.bootstrap, f"other-{uuid.uuid4().hex[:8]}")
    other.init_transactions(30)

    started = time.monotonic()
    abandoned.begin_transaction()
    produce_in_txn(abandoned, topic, [f"abandoned-{i}".encode() for i in range(5)], lambda i: 0)
    other.begin_transaction()
    produce_in_txn(other, topic, [f"later-{i}".encode() for i in range(5)], lambda i: 0)
    other.commit_transaction(30)
    held_at = time.monotonic() - started

    if held_at < 2.0:
        # 5 abandoned records, 5 committed ones and their commit marker; stable only before the first
        assert latest_offsets(broker.bootstrap, topic, [0], committed=False) == {0: 11}
        assert latest_offsets(broker.bootstrap, topic, [0], committed=True) == {0: 0}, (
            f"{held_at:.1f} s into a transaction with a 3 s timeout the last stable offset should be "
            f"at its first record")

    # a read_committed reader waits for the abandoned transaction to end, then gets the later commit
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    seen, seen_at = [], None
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = started + 20
        while time.monotonic() < deadline and (seen_at is None or time.monotonic() < seen_at + 1.5):
            for m in consumer.consume(num_messages=100, timeout=0.2):
                if not m.error():
                    seen.append(m.value())
                    if len(seen) == 5 and seen_at is None:
                        seen_at = time.monotonic()
    finally:
        consumer.close()
    assert seen == [f"later-{i}".encode() for i in range(5)], (
        f"read_committed should get the 5 later records once the abandoned transaction is aborted "
        f"(transaction.timeout.ms=3000, checked every 500 ms); got {seen}")
    unblocked_after = seen_at - started
    print(f"stable offset held for {held_at:.1f} s+, read_committed unblocked {unblocked_after:.1f} s after the "
          f"abandoned transaction began")
    assert unblocked_after >= 2.5, f"the transaction was aborted {unblocked_after:.1f} s in, before its 3 s timeout"

    # the abort marker follows: the last stable offset is the high watermark again
    assert latest_offsets(broker.bootstrap, topic, [0], committed=True) == \
        latest_offsets(broker.bootstrap, topic, [0], committed=False) == {0: 12}

    # and the abandoned producer finds out: it was fenced by the abort's epoch bump
    error = None
    try:
        abandoned.commit_transaction(15)
    except KafkaException as e:
        error = e.args[0]
    assert error is not None, "commit_transaction of a transaction the broker aborted succeeded"
    assert error.code() in FENCED_CODES, f"expected a fenced error, got {error!r}"
    print(f"the abandoned producer's commit_transaction: {error}")
    assert flat(read(broker.bootstrap, topic, [0], 5, committed=True)) == [f"later-{i}".encode() for i in range(5)]


# ------------------------------------------------------------------------------------------- 7. kill -9

def test_an_open_transaction_ends_aborted_after_kill_9_and_restart(strata_factory):
    broker = strata_factory(*FAST_TXN_EXPIRY)
    topic = unique_topic("txn-kill-open")
    create_topic(broker.bootstrap, topic, 2)

    crashed = txn_producer(broker.bootstrap, f"crashed-{uuid.uuid4().hex[:8]}", **{"transaction.timeout.ms": 6000})
    crashed.init_transactions(30)
    started = time.monotonic()
    crashed.begin_transaction()
    produce_in_txn(crashed, topic, [f"open-{i:02d}".encode() for i in range(50)], lambda i: i % 2)
    broker.kill()
    broker.start()
    restarted_at = time.monotonic() - started

    assert latest_offsets(broker.bootstrap, topic, [0, 1], committed=False) == {0: 25, 1: 25}
    if restarted_at < 4.5:
        assert latest_offsets(broker.bootstrap, topic, [0, 1], committed=True) == {0: 0, 1: 0}, (
            f"restarted {restarted_at:.1f} s into a transaction with a 6 s timeout: it should still be open")

    # other producers go on writing; read_committed readers get that once the transaction is aborted
    plain = Delivered()
    produce_all(Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"}),
                [(None, f"after-{i}".encode(), None) for i in range(10)], plain, topic)
    assert not plain.failed
    after = sorted(f"after-{i}".encode() for i in range(10))
    assert sorted(flat(read(broker.bootstrap, topic, [0, 1], 10, committed=True, timeout=30))) == after
    waited = time.monotonic() - started
    ends = latest_offsets(broker.bootstrap, topic, [0, 1], committed=False)
    assert latest_offsets(broker.bootstrap, topic, [0, 1], committed=True) == ends
    print(f"restarted {restarted_at:.1f} s into the transaction; read_committed saw the later records "
          f"{waited:.1f} s after it began; end offsets {ends}")

    # the abort is for good: after another restart read_committed still skips the 50 records
    broker.stop()
    broker.start()
    assert sorted(flat(read(broker.bootstrap, topic, [0, 1], 10, committed=True, timeout=30))) == after
    everything = flat(read(broker.bootstrap, topic, [0, 1], 60, committed=False, timeout=30))
    assert sorted(everything) == sorted(after + [f"open-{i:02d}".encode() for i in range(50)])
    crashed.purge()


def test_a_committed_transaction_is_complete_after_kill_9_and_restart(strata_factory):
    # --flush always: the records and the commit markers are fsynced before commit_transaction returns.
    # (With the default --flush os a kill -9 of the broker alone loses nothing the OS has accepted
    # either; only a machine crash could.)
    broker = strata_factory("--flush", "always", *FAST_TXN_EXPIRY)
    topic = unique_topic("txn-kill-committed")
    create_topic(broker.bootstrap, topic, 3)
    tid = f"committed-{uuid.uuid4().hex[:8]}"

    producer = txn_producer(broker.bootstrap, tid)
    producer.init_transactions(30)
    producer.begin_transaction()
    produce_in_txn(producer, topic, [f"c-{i % 3}-{i // 3:04d}".encode() for i in range(1500)], lambda i: i % 3)
    producer.commit_transaction(30)
    broker.kill()
    broker.start()

    consumed = consume_partitions(broker.bootstrap, topic, range(3), expected=1500, timeout=30, settle=1.5,
                                  **{"isolation.level": "read_committed"})
    counts = {p: 500 for p in range(3)}
    check_sequences(consumed, counts, None, lambda p, n: f"c-{p}-{n:04d}".encode())
    # 500 records and a commit marker in each partition, and nothing open
    assert latest_offsets(broker.bootstrap, topic, range(3), committed=True) == \
        latest_offsets(broker.bootstrap, topic, range(3), committed=False) == {p: 501 for p in range(3)}

    # the transactional id lives on: a new producer with it (after the old one) commits again
    producer.purge()
    again = txn_producer(broker.bootstrap, tid)
    again.init_transactions(30)
    again.begin_transaction()
    produce_in_txn(again, topic, [b"c-0-0500"], lambda i: 0)
    again.commit_transaction(30)
    consumed = consume_partitions(broker.bootstrap, topic, range(3), expected=1501, timeout=30, settle=1.0,
                                  **{"isolation.level": "read_committed"})
    assert [m.value() for m in consumed[0]][-2:] == [b"c-0-0499", b"c-0-0500"]
    assert sum(len(v) for v in consumed.values()) == 1501


def test_a_producer_carries_its_open_transaction_on_across_a_broker_kill_9_and_commits_it(strata_factory):
    """The broker crashes in the middle of a transaction and comes back well within the timeout: the
    producer (which lives on) adds more records and commits, and the whole transaction is visible."""
    broker = strata_factory("--flush", "always", *FAST_TXN_EXPIRY)
    topic = unique_topic("txn-kill-carry-on")
    create_topic(broker.bootstrap, topic, 2)
    producer = txn_producer(broker.bootstrap, f"carry-on-{uuid.uuid4().hex[:8]}", **{"transaction.timeout.ms": 30000})
    producer.init_transactions(30)
    producer.begin_transaction()
    produce_in_txn(producer, topic, [f"before-{i:02d}".encode() for i in range(20)], lambda i: i % 2)
    broker.kill()
    broker.start()
    produce_in_txn(producer, topic, [f"after-{i:02d}".encode() for i in range(20)], lambda i: i % 2)
    producer.commit_transaction(30)

    # 10 + 10 records and a commit marker in each partition, nothing open
    assert latest_offsets(broker.bootstrap, topic, [0, 1], committed=True) == \
        latest_offsets(broker.bootstrap, topic, [0, 1], committed=False) == {0: 21, 1: 21}
    got = read(broker.bootstrap, topic, [0, 1], 40, committed=True, timeout=30)
    assert sorted(flat(got)) == sorted([f"before-{i:02d}".encode() for i in range(20)]
                                       + [f"after-{i:02d}".encode() for i in range(20)])
    for p in (0, 1):
        assert got[p] == [f"{when}-{i:02d}".encode() for when in ("before", "after") for i in range(p, 20, 2)]


# ------------------------------------------------------------------------------------------- 8. admin views

@pytest.mark.parametrize("transaction_version", TRANSACTION_VERSIONS)
def test_java_admin_lists_and_describes_an_ongoing_then_committed_transaction(strata_factory, java_classpath,
                                                                              tmp_path, transaction_version):
    strata = strata_factory("--override", f"transaction.version={transaction_version}")
    topic = unique_topic("txn-admin")
    create_topic(strata.bootstrap, topic, 2)
    tid = f"admin-{uuid.uuid4().hex[:8]}"
    program = JavaProgram(java_classpath, "admin",
                          ["--bootstrap", strata.bootstrap, "--topic", topic, "--txn-id", tid, "--timeout", "60"],
                          tmp_path / "java-admin.log")
    try:
        summary = program.wait(90)
    finally:
        program.kill()
    ongoing, done = summary["ongoing"], summary["committed"]
    details = program.describe()

    assert ongoing["listed"].get(tid, {}).get("state") == "Ongoing", details
    d = ongoing["described"]
    assert d["state"] == "Ongoing", details
    assert d["partitions"] == [f"{topic}-0", f"{topic}-1"], details
    assert d["producer_id"] == ongoing["listed"][tid]["producer_id"] >= 0, details
    assert d["timeout_ms"] == 60000 and d["start_ms"] is not None, details   # the Java client's default timeout
    for p in ("0", "1"):
        (state,) = ongoing["producers"][p]
        assert state["producer_id"] == d["producer_id"] and state["producer_epoch"] == d["producer_epoch"], details
        assert state["txn_start_offset"] == 0 and state["last_sequence"] == 4, details

    assert done["listed"].get(tid, {}).get("state") == "CompleteCommit", details
    assert done["described"]["state"] == "CompleteCommit" and done["described"]["partitions"] == [], details
    # transaction protocol 2 ends every transaction with a new epoch, and its markers carry it
    epoch_after = d["producer_epoch"] + (1 if transaction_version == "2" else 0)
    assert done["described"]["producer_epoch"] == epoch_after, details
    for p in ("0", "1"):
        (state,) = done["producers"][p]
        assert state["producer_id"] == d["producer_id"] and state["txn_start_offset"] is None, details
        assert state["producer_epoch"] == epoch_after, details
    assert sorted(flat(read(strata.bootstrap, topic, [0, 1], 10, committed=True))) == \
        sorted(f"admin-{i}".encode() for i in range(10))


# ------------------------------------------------------------------------------------------- expiry

def wire_call(bootstrap: str, api_key: int, version: int, body: bytes) -> kafka_wire.Reader:
    """One flexible-version request on a fresh socket; returns a reader past the response header."""
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(kafka_wire.frame(kafka_wire.header_v2(api_key, version, 7) + body))
        r = kafka_wire.Reader(kafka_wire.recv_frame(sock))
    assert r.int32() == 7
    r.skip_tags()
    return r


def described_producers(bootstrap: str, topic: str, partition: int) -> list[int]:
    """DescribeProducers v0: the producer ids the partition keeps state for."""
    body = (kafka_wire.uvarint(2) + kafka_wire.compact_string(topic) + kafka_wire.uvarint(2)
            + struct.pack(">i", partition) + kafka_wire.uvarint(0) + kafka_wire.uvarint(0))
    r = wire_call(bootstrap, 61, 0, body)
    r.int32()  # throttle
    ids = []
    for _ in range(r.compact_array_len()):
        r.compact_string()
        for _ in range(r.compact_array_len()):
            r.int32()
            assert r.int16() == 0, "DescribeProducers partition error"
            r.compact_string()
            for _ in range(r.compact_array_len()):
                ids.append(r.int64())
                r.int32(), r.int32(), r.int64(), r.int32(), r.int64()
                r.skip_tags()
            r.skip_tags()
        r.skip_tags()
    return ids


def listed_transactional_ids(bootstrap: str) -> dict[str, str]:
    """ListTransactions v0 without filters: {transactional id: state}."""
    body = kafka_wire.uvarint(1) + kafka_wire.uvarint(1) + kafka_wire.uvarint(0)
    r = wire_call(bootstrap, 66, 0, body)
    r.int32()
    assert r.int16() == 0, "ListTransactions error"
    for _ in range(r.compact_array_len()):
        r.compact_string()
    out = {}
    for _ in range(r.compact_array_len()):
        tid = r.compact_string()
        r.int64()
        out[tid] = r.compact_string()
        r.skip_tags()
    return out


def test_idle_producers_and_transactional_ids_expire(strata_factory):
    """producer.id.expiration.ms forgets an idle producer's state in the partition (Kafka's rule:
    the last batch's timestamp), transactional.id.expiration.ms an idle transactional id; the
    expired transactional id starts again as a new producer when it comes back."""
    broker = strata_factory("--override", "producer.id.expiration.ms=3000",
                            "--override", "producer.id.expiration.check.interval.ms=500",
                            "--override", "transactional.id.expiration.ms=3000",
                            "--override", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500")
    topic = unique_topic("expiry")
    create_topic(broker.bootstrap, topic, 1)
    idem = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    idem.produce(topic, b"idempotent", partition=0)
    assert idem.flush(10) == 0
    tid = f"expiring-{uuid.uuid4().hex[:6]}"
    txn = txn_producer(broker.bootstrap, tid)
    txn.init_transactions(10)
    txn.begin_transaction()
    txn.produce(topic, b"transactional", partition=0)
    txn.commit_transaction(10)
    assert len(described_producers(broker.bootstrap, topic, 0)) == 2
    assert listed_transactional_ids(broker.bootstrap).get(tid) == "CompleteCommit"

    wait_until(lambda: described_producers(broker.bootstrap, topic, 0) == [], 15,
               "the idle producers' state to expire from the partition")
    wait_until(lambda: tid not in listed_transactional_ids(broker.bootstrap), 15,
               "the idle transactional id to expire")
    again = txn_producer(broker.bootstrap, tid)
    again.init_transactions(10)
    again.begin_transaction()
    again.produce(topic, b"again", partition=0)
    again.commit_transaction(10)
    got = read(broker.bootstrap, topic, [0], expected=3, committed=True)
    assert sorted(flat(got)) == [b"again", b"idempotent", b"transactional"]
    assert listed_transactional_ids(broker.bootstrap).get(tid) == "CompleteCommit"
