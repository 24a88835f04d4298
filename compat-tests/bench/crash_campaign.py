#!/usr/bin/env python3
"""Crash campaign: SIGKILL the broker at random moments of every kind of change it makes.

    nice -n 10 compat-tests/.venv/bin/python compat-tests/bench/crash_campaign.py --cycles 200 --seed 1

Each cycle starts the release broker on one data directory that lives through the whole
campaign (archive on: a local-directory object store; 32 KiB segments so rolls and uploads
happen every few hundred milliseconds; a flush policy drawn per start from os, interval and
always), runs a mixed workload with confluent-kafka clients, and kills the broker with SIGKILL.
The moment is chosen per cycle from one kind of change, in turn so that every kind gets its
share:

    produce              a burst of idempotent acks=all produces has just been sent
    segment roll         a new .log file has just appeared in a partition directory
    archive upload       a new object has just appeared in the archive
    topic create         CreateTopics is in flight
    topic delete         DeleteTopics is in flight
    group commit         an OffsetCommit is in flight
    transaction commit   EndTxn(commit) is in flight (with TxnOffsetCommit earlier in some)
    transaction abort    EndTxn(abort) is in flight
    compaction           the cleaner's .cleaned / .swap files have just appeared
    delete records       DeleteRecords is in flight
    random moment        any time in the first few seconds

A request-triggered kill waits a random part of that request's usual duration, so some kills
land before the answer and some after; the figures say how many changes were acknowledged
before their kill. Everything else runs meanwhile in every cycle (plain topics, a compacted
topic, transactions, commits, topic churn, DeleteRecords), so each kill also interrupts
whatever else was under way.

Checked right after each kill (broker dead, recovery not run), with logcheck in
"after-crash" mode: the files as a kill leaves them. Checked after each restart:
- every acknowledged record is there exactly once, at the offset it was acknowledged at, in
  produce order; records whose produce was interrupted are there at most once and, once
  seen or not seen after a restart, stay so; nothing foreign;
- transactions: committed ones visible to read_committed exactly once, aborted ones (and
  those still open at the kill) never, those whose EndTxn was interrupted all or nothing;
  the offsets committed inside transactions are those of the last committed one;
- group offsets: the last acknowledged commit (or a later interrupted one) is what
  OffsetFetch answers;
- compacted topic: the last write of every key is its last record; any acknowledged record
  missing has a later record of the same key;
- topics: created ones exist with their partitions, deleted ones stay deleted;
- DeleteRecords: the log start is at least every acknowledged low watermark and no further
  than the furthest one asked;
- the files agree (logcheck in "running" mode, after the checks above): segments, indexes,
  transaction indexes, producer snapshots, checkpoints, state files, the archive's
  manifests and objects.

Prints the figures at the end; exits 1 if anything was violated. `run()` is what
compat-tests/test_crash_campaign.py calls for its short version.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gc
import logging
import os
import pathlib
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from confluent_kafka import (OFFSET_BEGINNING, Consumer, ConsumerGroupTopicPartitions, KafkaError,  # noqa: E402
                             KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from conftest import StrataBroker, free_port  # noqa: E402
from logcheck import LogChecker  # noqa: E402
from s3 import tier_config  # noqa: E402

PRODUCE = "produce"
ROLL = "segment roll"
UPLOAD = "archive upload"
CREATE = "topic create"
DELETE = "topic delete"
COMMIT = "group commit"
TXN_COMMIT = "transaction commit"
TXN_ABORT = "transaction abort"
COMPACTION = "compaction"
DELETE_RECORDS = "delete records"
RANDOM = "random moment"
KINDS = [PRODUCE, ROLL, UPLOAD, CREATE, DELETE, COMMIT, TXN_COMMIT, TXN_ABORT, COMPACTION, DELETE_RECORDS, RANDOM]
REQUEST_KINDS = {CREATE, DELETE, COMMIT, TXN_COMMIT, TXN_ABORT, DELETE_RECORDS}

BASE, TXN, COMPACT = "base", "txn", "compact"
GROUPS = ["campaign-g0", "campaign-g1", "campaign-g2"]
TXN_GROUP = "campaign-txn-group"
TRANSACTIONAL_ID = "campaign-txn"
PREFIX = "strata"
KEYS = 60
SEGMENT_BYTES = 32 * 1024
PRODUCE_RATE = 1500            # plain messages per second, across topics
WAIT_FOR_TRIGGER_S = 12.0      # a kill that waited this long for its kind of change happens anyway
CLIENT_TIMEOUT_S = 3.0
BROKER_PROPS = {
    "log.segment.bytes": SEGMENT_BYTES,
    "log.local.retention.ms": 1000,
    "log.retention.check.interval.ms": 200,
    "auto.create.topics.enable": "false",
    "log.cleaner.backoff.ms": 200,
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000,
}
# librdkafka logs every refused connection while the broker is down, and a left-behind
# transactional producer's fencing at level 0
_SILENT = logging.getLogger("crash_campaign.librdkafka")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False
QUIET = {"log_level": 0, "logger": _SILENT}


# ---------------------------------------------------------------------------------------------- the model

@dataclasses.dataclass
class PartitionModel:
    acked: dict = dataclasses.field(default_factory=dict)   # offset -> value: acknowledged (or seen, see resolve)
    maybe: set = dataclasses.field(default_factory=set)     # produced, outcome unknown yet
    gone: set = dataclasses.field(default_factory=set)      # resolved as never written: must never appear
    next_seq: int = 0
    delete_acked: int = 0     # highest low watermark a DeleteRecords answered
    delete_asked: int = 0     # highest offset a DeleteRecords asked for, answered or not
    last_seq_seen: int = -1


@dataclasses.dataclass
class TopicModel:
    name: str
    partitions: int
    role: str                 # base | rotating | txn | compact
    state: str                # live | creating (in doubt) | deleting (in doubt) | gone
    born: int
    parts: list = dataclasses.field(default_factory=list)
    retiring: bool = False    # no new produces: a delete is coming
    outstanding: int = 0      # produces without a delivery report

    def __post_init__(self):
        if not self.parts:
            self.parts = [PartitionModel() for _ in range(self.partitions)]


@dataclasses.dataclass
class Write:
    """One write to the compacted topic (value None: a tombstone)."""
    wid: int
    key: bytes
    value: bytes | None
    partition: int
    offset: int | None = None
    state: str = "maybe"      # maybe | acked | landed (seen, not acknowledged) | gone


@dataclasses.dataclass
class Txn:
    serial: int
    values: dict = dataclasses.field(default_factory=dict)   # value -> partition
    offsets: bool = False     # sent TxnOffsetCommit (offset = serial) for TXN_GROUP
    state: str = "open"       # open | committing | aborting | committed | aborted


@dataclasses.dataclass
class Figures:
    cycles: int = 0
    kills: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    reached: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    acked_before_kill: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    records_verified: int = 0
    records_acked: int = 0
    compacted_records_verified: int = 0
    commits_verified: int = 0
    txns: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    topics_created: int = 0
    topics_deleted: int = 0
    delete_records: int = 0
    files: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    startup_ms: list = dataclasses.field(default_factory=list)
    violations: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    archived_verified: int = 0
    phase_s: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    blocked_clients: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def report(self) -> str:
        lines = [f"cycles: {self.cycles} (kills: {sum(self.kills.values())}, restarts: {len(self.startup_ms)}), "
                 f"time: {self.seconds:.0f} s ({self.seconds / max(self.cycles, 1):.1f} s per cycle)"]
        lines.append("kills per kind of change (the change reached / acknowledged before the kill):")
        for k in KINDS:
            ack = f", acknowledged first {self.acked_before_kill[k]}" if k in REQUEST_KINDS else ""
            lines.append(f"  {k:20s} {self.kills[k]:4d}  (reached {self.reached[k]}{ack})")
        lines.append(f"records verified after restarts: {self.records_verified} "
                     f"({self.records_acked} acknowledged in all), compacted-topic records {self.compacted_records_verified}")
        lines.append("transactions: " + ", ".join(f"{k} {v}" for k, v in sorted(self.txns.items())))
        lines.append(f"group offset commits verified: {self.commits_verified}; topics created {self.topics_created}, "
                     f"deleted {self.topics_deleted}; DeleteRecords acknowledged {self.delete_records}")
        f = self.files
        lines.append(f"files checked (after kills and after restarts): {f['segments']} segments, {f['batches']} batches, "
                     f"{f['index entries']} index entries, {f['txnindex entries']} txnindex entries, "
                     f"{f['producer snapshots']} producer snapshots, {f['state files']} state files; "
                     f"{self.archived_verified} archived segments verified; torn tails after kills "
                     f"{f['torn tails']}; orphan archive objects (last check) {f['orphan objects last']}")
        if self.startup_ms:
            lines.append(f"start to first answer: median {statistics.median(self.startup_ms):.0f} ms, "
                         f"max {max(self.startup_ms):.0f} ms")
        for call, n in self.blocked_clients.items():
            lines.append(f"client calls still blocked {2 * CLIENT_TIMEOUT_S:.0f} s after a kill (left behind): {n}x {call}")
        lines.append("time spent: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.phase_s.most_common()))
        lines.append(f"violations: {len(self.violations)}")
        lines += [f"  {v}" for v in self.violations[:50]]
        return "\n".join(lines)


def plain_value(topic: str, p: int, seq: int, rng: random.Random) -> bytes:
    return f"P|{topic}|{p}|{seq}|".encode() + b"x" * rng.randint(40, 400)


def parse_plain(value: bytes):
    try:
        _, topic, p, seq, _ = value.split(b"|", 4)
        return topic.decode(), int(p), int(seq)
    except ValueError:
        return None


class Campaign:
    def __init__(self, *, cycles: int, seed: int, binary: pathlib.Path, work_dir: pathlib.Path, out=print,
                 kinds: list[str] | None = None):
        self.cycles = cycles
        self.kinds = kinds
        self.rng = random.Random(seed)
        self.seed = seed
        self.out = out
        self.work_dir = work_dir
        self.data_dir = work_dir / "data"
        self.archive = work_dir / "archive"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = tier_config(work_dir, "local", local_dir=self.archive, **BROKER_PROPS)
        self.config_args = ("--config", str(config))
        self.broker = StrataBroker(binary, free_port(), self.data_dir, work_dir / "strata.log", self.config_args)
        self.checker = LogChecker(self.data_dir, self.archive, PREFIX)
        self.fig = Figures()
        self.lock = threading.RLock()
        self.topics: dict[str, TopicModel] = {}
        self.writes: dict[int, Write] = {}
        self.keys: dict[bytes, list[int]] = collections.defaultdict(list)
        self.next_wid = 0
        self.txns: list[Txn] = []
        self.commits = {(g, p): {"acked": None, "maybe": [], "next": 0} for g in GROUPS for p in range(3)}
        self.durations: dict[str, list[float]] = collections.defaultdict(list)
        self.cycle = 0
        self.producers: list[Producer] = []   # idempotent producers of the last workload, flushed after restart
        self.txn_producer: Producer | None = None
        self.fatal: list[str] = []

    # ------------------------------------------------------------------------------------ output

    def violation(self, what: str) -> None:
        with self.lock:
            self.fig.violations.append(f"cycle {self.cycle}: {what}")
        self.out(f"  VIOLATION cycle {self.cycle}: {what}")

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap, **QUIET})

    # ------------------------------------------------------------------------------------ the run

    def run(self) -> Figures:
        started = time.monotonic()
        kinds: list[str] = []
        try:
            self.start_broker()
            self.set_up()
            for self.cycle in range(1, self.cycles + 1):
                if not kinds:
                    kinds = list(reversed(self.kinds)) if self.kinds else list(KINDS)
                    if not self.kinds:
                        self.rng.shuffle(kinds)
                kind = kinds.pop()
                marks = [time.monotonic()]
                outcome = Workload(self, kind).run()
                self.fig.kills[kind] += 1
                self.fig.reached[kind] += outcome.reached
                self.fig.acked_before_kill[kind] += outcome.acked
                marks.append(time.monotonic())
                t = time.monotonic()
                self.check_files("after-crash")
                t = self.timed_phase("check files after the kill", t)
                self.start_broker()
                self.timed_phase("start the broker", t)
                marks.append(time.monotonic())
                self.resolve_and_verify()
                marks.append(time.monotonic())
                t = time.monotonic()
                self.check_files("running")
                self.timed_phase("check files after the restart", t)
                marks.append(time.monotonic())
                self.fig.cycles = self.cycle
                phases = "/".join(f"{b - a:.1f}" for a, b in zip(marks, marks[1:]))
                self.out(f"cycle {self.cycle:3d} {kind:20s} killed after {outcome.after_s:5.2f} s "
                         f"({'reached' if outcome.reached else 'not reached'}"
                         f"{', acknowledged first' if outcome.acked else ''}; flush {self.flush}); "
                         f"{marks[-1] - marks[0]:4.1f} s (workload/check+start/verify/check {phases}), "
                         f"violations so far {len(self.fig.violations)}")
        except Exception as e:  # a broker that does not come back, a client call that hangs
            self.violation(f"campaign stopped: {type(e).__name__}: {e}")
        finally:
            self.fig.seconds = time.monotonic() - started
            self.broker.shutdown_quietly()
        return self.fig

    def start_broker(self) -> None:
        self.flush = self.rng.choice(["os", "interval", "always"])
        self.broker.extra_args = self.config_args + ("--flush", self.flush)
        t0 = time.monotonic()
        self.broker.start()
        self.fig.startup_ms.append((time.monotonic() - t0) * 1000)

    def set_up(self) -> None:
        admin = self.admin()
        specs = [
            (BASE, 3, "base", {"segment.bytes": str(SEGMENT_BYTES)}),
            (TXN, 2, "txn", {"segment.bytes": str(SEGMENT_BYTES)}),
            (COMPACT, 2, "compact", {"cleanup.policy": "compact", "segment.bytes": "8192", "segment.ms": "500",
                                     "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}),
            ("rot-000-0", 2, "rotating", {"segment.bytes": str(SEGMENT_BYTES)}),
        ]
        futures = admin.create_topics([NewTopic(n, p, 1, config=c) for n, p, _, c in specs], request_timeout=15)
        for name, parts, role, _ in specs:
            futures[name].result(timeout=15)
            self.topics[name] = TopicModel(name, parts, role, "live", 0)
        self.txn_producer = self.new_txn_producer()
        # what TxnOffsetCommit names as the group (generation -1: no member)
        self.txn_group_consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": TXN_GROUP, **QUIET})
        self.txn_group_metadata = self.txn_group_consumer.consumer_group_metadata()

    def new_txn_producer(self) -> Producer:
        p = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": TRANSACTIONAL_ID,
                      "transaction.timeout.ms": 60000, "error_cb": self.on_client_error, **QUIET})
        p.init_transactions(60)
        return p

    def on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal.append(str(err))

    # ------------------------------------------------------------------------------------ after a restart

    def timed_phase(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.fig.phase_s[name] += now - since
        return now

    def resolve_and_verify(self) -> None:
        """Let the clients of the killed workload finish, then compare everything with the model."""
        t = time.monotonic()
        for p in self.producers:
            left = p.flush(60)
            if left:
                self.violation(f"{left} produced messages neither delivered nor failed 60 s after the restart")
        self.producers.clear()
        gc.collect()
        if self.fatal:
            self.violation(f"idempotent or transactional producer fatal errors: {self.fatal[:3]}")
            self.fatal.clear()
        t = self.timed_phase("flush the killed workload's producers", t)
        # the same transactional id: completes or aborts what the killed one left
        self.txn_producer = self.new_txn_producer()
        t = self.timed_phase("init_transactions", t)
        self.verify_topics()
        for topic in list(self.topics.values()):
            if topic.state == "live" and topic.role in ("base", "rotating"):
                self.verify_plain(topic)
        t = self.timed_phase("verify plain topics", t)
        self.verify_transactions()
        t = self.timed_phase("verify transactions", t)
        self.verify_compacted()
        t = self.timed_phase("verify the compacted topic", t)
        self.verify_commits()
        self.timed_phase("verify group offsets", t)

    def verify_topics(self) -> None:
        md = self.admin().list_topics(timeout=15)
        present = {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}
        for t in self.topics.values():
            there = t.name in present
            if t.state == "live" and not there:
                self.violation(f"topic {t.name}, created (acknowledged), is gone")
                t.state = "gone"
            elif t.state == "gone" and there:
                self.violation(f"topic {t.name}, deleted (or never created), exists")
            elif t.state == "creating":
                t.state = "live" if there else "gone"
                self.fig.topics_created += there
            elif t.state == "deleting":
                t.state = "live" if there else "gone"
                t.retiring = False
                self.fig.topics_deleted += not there
            if t.state == "live" and there and present[t.name] != t.partitions:
                self.violation(f"topic {t.name} has {present[t.name]} partitions, created with {t.partitions}")
        unknown = sorted(set(present) - set(self.topics))
        if unknown:
            self.violation(f"topics nobody created: {unknown}")

    def read_all(self, topic: str, partitions: int, isolation: str = "read_uncommitted"):
        """Every record of the topic from the log start, per partition, with their offsets."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "campaign-reader",
                             "enable.auto.commit": False, "enable.partition.eof": True,
                             "isolation.level": isolation, "auto.offset.reset": "error", **QUIET})
        got = {p: [] for p in range(partitions)}
        try:
            low_high = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15) for p in range(partitions)}
            pending = {p for p, (low, high) in low_high.items() if high > low}
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
            deadline = time.monotonic() + 120
            errors = []
            while pending:
                if time.monotonic() > deadline:
                    self.violation(f"{topic}: reading to the end timed out; partitions {sorted(pending)} unfinished; "
                                   f"errors {errors[:3]}")
                    break
                for m in consumer.consume(1000, timeout=0.5):
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard(m.partition())
                            if m.offset() < low_high[m.partition()][1]:
                                self.violation(f"{topic}/{m.partition()}: end of partition ({isolation}) at "
                                               f"{m.offset()}, below the high watermark {low_high[m.partition()][1]}")
                        else:
                            errors.append(str(err))
                        continue
                    got[m.partition()].append(m)
            if errors:
                self.violation(f"{topic}: errors while reading: {errors[:3]}")
            return got, low_high
        finally:
            consumer.close()

    def verify_plain(self, t: TopicModel) -> None:
        got, low_high = self.read_all(t.name, t.partitions)
        for p, pm in enumerate(t.parts):
            low, high = low_high[p]
            where = f"{t.name}/{p}"
            if low < pm.delete_acked:
                self.violation(f"{where}: log start {low} below the acknowledged DeleteRecords low watermark {pm.delete_acked}")
            if low > pm.delete_asked:
                self.violation(f"{where}: log start {low} beyond every DeleteRecords offset asked ({pm.delete_asked})")
            seen_values = set()
            last_seq = -1
            for m in got[p]:
                v, off = m.value(), m.offset()
                self.fig.records_verified += 1
                parsed = parse_plain(v or b"")
                if parsed is None or parsed[:2] != (t.name, p):
                    self.violation(f"{where}@{off}: a record nobody produced here: {(v or b'')[:40]!r}")
                    continue
                if v in seen_values:
                    self.violation(f"{where}@{off}: duplicate of {v[:30]!r}")
                    continue
                seen_values.add(v)
                if parsed[2] <= last_seq:
                    self.violation(f"{where}@{off}: sequence {parsed[2]} after {last_seq}: out of produce order")
                last_seq = parsed[2]
                if v in pm.gone:
                    self.violation(f"{where}@{off}: {v[:30]!r} was absent after an earlier restart and is back")
                elif v in pm.maybe:
                    pm.maybe.discard(v)
                    if off in pm.acked and pm.acked[off] != v:
                        self.violation(f"{where}@{off}: holds {v[:30]!r}, acknowledged there was {pm.acked[off][:30]!r}")
                    pm.acked[off] = v
                elif pm.acked.get(off) != v:
                    self.violation(f"{where}@{off}: {v[:30]!r}, acknowledged at another offset "
                                   f"({[o for o, x in pm.acked.items() if x == v][:1]})")
            missing = [(o, v) for o, v in pm.acked.items() if o >= low and v not in seen_values]
            if missing:
                self.violation(f"{where}: {len(missing)} acknowledged records missing (log {low}..{high}), "
                               f"e.g. {[(o, v[:24]) for o, v in missing[:3]]}")
            if pm.acked and max(pm.acked) >= high:
                self.violation(f"{where}: high watermark {high}, an acknowledged record is at {max(pm.acked)}")
            # what was not seen now is decided: it was never written (or lies below the log start)
            pm.gone |= pm.maybe
            pm.maybe.clear()
            pm.acked = {o: v for o, v in pm.acked.items() if o >= low}
            pm.delete_acked = max(pm.delete_acked, low)
            pm.delete_asked = max(pm.delete_asked, low)

    def verify_transactions(self) -> None:
        t = self.topics[TXN]
        got, _ = self.read_all(TXN, t.partitions, "read_committed")
        seen = collections.Counter()
        where = {}
        for p, msgs in got.items():
            for m in msgs:
                self.fig.records_verified += 1
                seen[m.value()] += 1
                where[m.value()] = (p, m.offset())
        dups = [v for v, n in seen.items() if n > 1]
        if dups:
            self.violation(f"transactional records read twice: {dups[:3]}")
        by_value = {}
        for txn in self.txns:
            for v in txn.values:
                by_value[v] = txn
            visible = [v for v in txn.values if v in seen]
            if txn.state == "committed":
                if len(visible) != len(txn.values):
                    self.violation(f"transaction {txn.serial} (commit acknowledged): {len(txn.values) - len(visible)} "
                                   f"of {len(txn.values)} records not visible read_committed")
            elif txn.state in ("aborted", "aborting", "open"):
                if visible:
                    self.violation(f"transaction {txn.serial} ({txn.state}): {len(visible)} of {len(txn.values)} "
                                   f"records visible read_committed")
                if txn.state != "aborted":
                    self.fig.txns[f"{txn.state} at the kill, aborted"] += 1
                    txn.state = "aborted"
            elif txn.state == "committing":
                if visible and len(visible) != len(txn.values):
                    self.violation(f"transaction {txn.serial} (commit interrupted): {len(visible)} of "
                                   f"{len(txn.values)} records visible, not all or nothing")
                outcome = "committed" if visible else "aborted"
                self.fig.txns[f"commit interrupted, {outcome}"] += 1
                txn.state = outcome
            for v in txn.values:
                p = where.get(v, (txn.values[v], None))[0]
                if p != txn.values[v]:
                    self.violation(f"transactional record {v!r} in partition {p}, produced to {txn.values[v]}")
        foreign = [v for v in seen if v not in by_value]
        if foreign:
            self.violation(f"records nobody produced in {TXN}: {foreign[:3]}")
        self.fig.txns["committed (verified)"] = sum(1 for x in self.txns if x.state == "committed")
        self.fig.txns["aborted (verified)"] = sum(1 for x in self.txns if x.state == "aborted")
        # offsets committed inside transactions: those of the last committed one that sent any
        want = max((x.serial for x in self.txns if x.state == "committed" and x.offsets), default=None)
        got_offset = self.committed_offsets(TXN_GROUP, [(TXN, 0)]).get((TXN, 0))
        self.fig.commits_verified += 1
        if (want is None and got_offset is not None) or (want is not None and got_offset != want):
            self.violation(f"{TXN_GROUP}: committed offset {got_offset}, the last committed transaction's is {want}")

    def committed_offsets(self, group: str, tps) -> dict:
        admin = self.admin()
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in tps])
        res = admin.list_consumer_group_offsets([req], request_timeout=15)[group].result(timeout=20)
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in res.topic_partitions}

    def verify_commits(self) -> None:
        for g in GROUPS:
            got = self.committed_offsets(g, [(BASE, p) for p in range(3)])
            for p in range(3):
                c = self.commits[(g, p)]
                have = got.get((BASE, p))
                self.fig.commits_verified += 1
                allowed = [c["acked"]] + c["maybe"]
                if have not in allowed:
                    self.violation(f"{g} {BASE}/{p}: committed offset {have}, expected the acknowledged "
                                   f"{c['acked']} or an interrupted {c['maybe']}")
                c["acked"], c["maybe"] = have, []

    def verify_compacted(self) -> None:
        t = self.topics[COMPACT]
        got, _ = self.read_all(COMPACT, t.partitions)
        seen: dict[int, tuple[int, int]] = {}      # wid -> (partition, offset)
        last_by_key: dict[bytes, int] = {}          # key -> wid of its last record
        offsets_by_key = collections.defaultdict(list)
        for p, msgs in got.items():
            last_wid = {}
            for m in msgs:
                self.fig.compacted_records_verified += 1
                headers = dict(m.headers() or [])
                try:
                    wid = int(headers.get("w", b"").decode())
                    w = self.writes[wid]
                except (ValueError, KeyError):
                    self.violation(f"{COMPACT}/{p}@{m.offset()}: a record nobody wrote (headers {headers})")
                    continue
                if wid in seen:
                    self.violation(f"{COMPACT}: write {wid} at {seen[wid]} and again at {(p, m.offset())}")
                    continue
                if w.partition != p or w.key != m.key() or w.value != m.value():
                    self.violation(f"{COMPACT}/{p}@{m.offset()}: write {wid} with other contents")
                if w.state == "gone":
                    self.violation(f"{COMPACT}/{p}@{m.offset()}: write {wid}, absent after an earlier restart, is back")
                if w.state == "acked" and w.offset != m.offset():
                    self.violation(f"{COMPACT}/{p}@{m.offset()}: write {wid} acknowledged at {w.offset}")
                if w.key in last_wid and last_wid[w.key] > wid:
                    self.violation(f"{COMPACT}/{p}@{m.offset()}: write {wid} after write {last_wid[w.key]} of the same key")
                last_wid[w.key] = wid
                seen[wid] = (p, m.offset())
                last_by_key[w.key] = wid
                offsets_by_key[w.key].append(m.offset())
        for wid, w in self.writes.items():
            if w.state == "maybe":
                if wid in seen:
                    w.state, w.offset = "landed", seen[wid][1]
                else:
                    w.state = "gone"            # never written, or written and compacted away: never again
        for key, wids in self.keys.items():
            known = [self.writes[w] for w in wids if self.writes[w].state in ("acked", "landed")]
            if not known:
                continue
            final = max(known, key=lambda w: w.wid)
            last = last_by_key.get(key)
            if last != final.wid:
                self.violation(f"{COMPACT}: key {key!r}: last record is write {last}, the last written is "
                               f"{final.wid} (offset {final.offset})")
            top = max(offsets_by_key.get(key, [-1]))
            for w in known:
                if w.wid not in seen and top <= w.offset:
                    self.violation(f"{COMPACT}: write {w.wid} of key {key!r} (offset {w.offset}) missing, "
                                   f"and no later record of the key")

    # ------------------------------------------------------------------------------------ files

    def check_files(self, mode: str) -> None:
        report = self.checker.check(mode)
        for k, v in report.counts.items():
            self.fig.files[k] += v
        self.fig.files["orphan objects last"] = report.counts["orphan objects"]
        self.fig.archived_verified = self.checker.objects_verified
        for v in report.violations:
            self.violation(f"files ({mode}): {v}")


@dataclasses.dataclass
class Outcome:
    reached: bool
    acked: bool
    after_s: float


class Workload:
    """One cycle's clients; `run` returns once the broker is killed and the clients gave up."""

    def __init__(self, c: Campaign, kind: str):
        self.c = c
        self.kind = kind
        self.rng = random.Random(c.rng.random())
        self.stop = threading.Event()
        self.fired = threading.Event()
        self.kill_delay = 0.0
        self.target_done = threading.Event()   # the targeted request was answered
        self.threads: list[threading.Thread] = []
        self.admin = c.admin()
        self.producer = Producer({"bootstrap.servers": c.bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "message.timeout.ms": 120000, "error_cb": c.on_client_error,
                                  **QUIET})
        c.producers.append(self.producer)

    # -------------------------------------------------------------------------------- the kill

    def fire(self, delay: float) -> bool:
        """The change this cycle is about is under way: kill after `delay` seconds."""
        if self.fired.is_set():
            return False
        self.kill_delay = delay
        self.fired.set()
        return True

    def request_delay(self, kind: str) -> float:
        """A random part of this kind of request's usual duration (so far)."""
        seen = self.c.durations[kind]
        typical = statistics.median(seen[-50:]) if seen else 0.01
        return self.rng.uniform(0, typical * 1.2)

    def timed(self, kind: str, started: float) -> None:
        self.c.durations[kind].append(time.monotonic() - started)

    def run(self) -> Outcome:
        t0 = time.monotonic()
        for target in (self.produce_loop, self.txn_loop, self.commit_loop, self.admin_ops, self.watcher):
            th = threading.Thread(target=target, daemon=True, name=target.__name__)
            th.start()
            self.threads.append(th)
        if self.kind == RANDOM:
            self.fire(self.rng.uniform(0.2, 4.0))
        reached = self.fired.wait(WAIT_FOR_TRIGGER_S)
        time.sleep(self.kill_delay if reached else 0)
        after = time.monotonic() - t0
        self.c.broker.kill()
        acked = self.target_done.is_set()
        self.stop.set()
        t = self.c.timed_phase("workload until the kill", t0)
        for th in self.threads:
            th.join(CLIENT_TIMEOUT_S * 2)
            if th.is_alive():
                # librdkafka's send_offsets_to_transaction can wait past its timeout for a
                # coordinator; what it sends after the restart is fenced or aborted by the new
                # producer's InitProducerId, and the thread stops once it returns
                frame = sys._current_frames().get(th.ident)
                where = traceback.format_stack(frame)[-1].strip().splitlines()[-1] if frame else "?"
                self.c.fig.blocked_clients[where] += 1
        if self.c.txn_producer is not None:
            self.c.txn_producer = None
        del self.admin
        gc.collect()
        self.c.timed_phase("clients giving up after the kill", t)
        return Outcome(reached if self.kind != RANDOM else True, acked, after)

    # -------------------------------------------------------------------------------- clients

    def on_delivery(self, t: TopicModel, p: int, value: bytes):
        c = self.c

        def cb(err, msg):
            with c.lock:
                t.outstanding -= 1
                if err is not None:
                    return                         # stays in maybe: decided after the restart
                pm = t.parts[p]
                off = msg.offset()
                if off in pm.acked and pm.acked[off] != value:
                    c.violation(f"{t.name}/{p}@{off}: acknowledged twice, for two records")
                pm.maybe.discard(value)
                pm.acked[off] = value
                c.fig.records_acked += 1
        return cb

    def on_compact_delivery(self, w: Write):
        def cb(err, msg):
            if err is None:
                with self.c.lock:
                    w.state, w.offset = "acked", msg.offset()
        return cb

    def produce_one(self, t: TopicModel) -> None:
        c = self.c
        p = self.rng.randrange(t.partitions)
        with c.lock:
            pm = t.parts[p]
            value = plain_value(t.name, p, pm.next_seq, self.rng)
            pm.next_seq += 1
            pm.maybe.add(value)
            t.outstanding += 1
        while True:
            try:
                self.producer.produce(t.name, value=value, partition=p, on_delivery=self.on_delivery(t, p, value))
                return
            except BufferError:
                self.producer.poll(0.01)

    def produce_compacted(self) -> None:
        c = self.c
        key = f"k{self.rng.randrange(KEYS):03d}".encode()
        with c.lock:
            wid = c.next_wid
            c.next_wid += 1
            value = None if self.rng.random() < 0.05 else f"C|{key.decode()}|{wid}|".encode() + b"c" * self.rng.randint(10, 200)
            w = Write(wid, key, value, int(key[1:]) % c.topics[COMPACT].partitions)
            c.writes[wid] = w
            c.keys[key].append(wid)
        while True:
            try:
                self.producer.produce(COMPACT, key=key, value=value, partition=w.partition, headers=[("w", str(wid))],
                                      on_delivery=self.on_compact_delivery(w))
                return
            except BufferError:
                self.producer.poll(0.01)

    def writable(self) -> list[TopicModel]:
        with self.c.lock:
            return [t for t in self.c.topics.values()
                    if t.role in ("base", "rotating") and t.state == "live" and not t.retiring]

    def produce_loop(self) -> None:
        burst_at = self.rng.uniform(0.3, 2.0) if self.kind == PRODUCE else None
        start = time.monotonic()
        sent = 0
        while not self.stop.is_set():
            topics = self.writable()
            if burst_at is not None and time.monotonic() - start >= burst_at:
                for _ in range(300):
                    self.produce_one(self.rng.choice(topics))
                self.producer.poll(0)
                self.fire(self.rng.uniform(0, 0.015))
                burst_at = None
            for _ in range(10):
                self.produce_one(self.rng.choice(topics))
            self.produce_compacted()
            sent += 10
            self.producer.poll(0)
            ahead = sent / PRODUCE_RATE - (time.monotonic() - start)
            if ahead > 0:
                self.stop.wait(ahead)

    def txn_loop(self) -> None:
        c = self.c
        tp = c.txn_producer
        target = self.rng.randint(1, 3) if self.kind in (TXN_COMMIT, TXN_ABORT) else None
        meta = c.txn_group_metadata
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                with c.lock:
                    txn = Txn(len(c.txns) + 1)
                    c.txns.append(txn)
                tp.begin_transaction()
                for i in range(self.rng.randint(3, 20)):
                    p = self.rng.randrange(c.topics[TXN].partitions)
                    value = f"T|{txn.serial}|{i}|".encode() + b"t" * self.rng.randint(10, 300)
                    txn.values[value] = p
                    tp.produce(TXN, value=value, partition=p)
                if self.rng.random() < 0.5:
                    tp.send_offsets_to_transaction([TopicPartition(TXN, 0, txn.serial)], meta, CLIENT_TIMEOUT_S)
                    txn.offsets = True
                if tp.flush(CLIENT_TIMEOUT_S) or self.stop.is_set():
                    return                          # a call that returns after the kill ends the loop
                if n == target:
                    commit = self.kind == TXN_COMMIT
                else:
                    commit = self.rng.random() < 0.6
                kind = TXN_COMMIT if commit else TXN_ABORT
                txn.state = "committing" if commit else "aborting"
                if n == target:
                    self.fire(self.request_delay(kind))
                t0 = time.monotonic()
                (tp.commit_transaction if commit else tp.abort_transaction)(CLIENT_TIMEOUT_S)
                self.timed(kind, t0)
                txn.state = "committed" if commit else "aborted"
                if n == target:
                    self.target_done.set()
                self.stop.wait(self.rng.uniform(0.01, 0.1))
        except KafkaException:
            return                                  # the broker is gone; the restart decides

    def commit_loop(self) -> None:
        c = self.c
        target = self.rng.randint(1, 10) if self.kind == COMMIT else None
        n = 0
        while not self.stop.is_set():
            n += 1
            g, p = self.rng.choice(GROUPS), self.rng.randrange(3)
            with c.lock:
                entry = c.commits[(g, p)]
                entry["next"] += 1
                offset = entry["next"]
                entry["maybe"].append(offset)
            if n == target:
                self.fire(self.request_delay(COMMIT))
            t0 = time.monotonic()
            req = ConsumerGroupTopicPartitions(g, [TopicPartition(BASE, p, offset)])
            try:
                res = self.admin.alter_consumer_group_offsets([req], request_timeout=CLIENT_TIMEOUT_S)[g].result(
                    timeout=CLIENT_TIMEOUT_S + 1)
            except Exception:
                return
            errors = [tp.error for tp in res.topic_partitions if tp.error is not None]
            if errors:
                return
            self.timed(COMMIT, t0)
            with c.lock:
                entry["acked"], entry["maybe"] = offset, []
            if n == target:
                self.target_done.set()
            self.stop.wait(self.rng.uniform(0.02, 0.08))

    def admin_ops(self) -> None:
        c = self.c
        ops = []
        rotating = [t for t in c.topics.values() if t.role == "rotating" and t.state == "live"]
        if self.kind == CREATE or (len(rotating) < 3 and self.rng.random() < 0.6):
            ops.append(CREATE)
        if self.kind == DELETE or (rotating and c.cycle - min(t.born for t in rotating) >= 4 and self.rng.random() < 0.6):
            ops.append(DELETE)
        if self.kind == DELETE_RECORDS or self.rng.random() < 0.8:
            ops.append(DELETE_RECORDS)
        self.rng.shuffle(ops)
        if self.kind in ops:
            ops.remove(self.kind)
            ops.insert(0, self.kind)
        for op in ops:
            if self.stop.wait(self.rng.uniform(0.2, 1.0)):
                return
            targeted = op == self.kind
            try:
                {CREATE: self.create_topic, DELETE: self.delete_topic, DELETE_RECORDS: self.delete_records}[op](targeted)
            except KafkaException:
                return

    def create_topic(self, targeted: bool) -> None:
        c = self.c
        name = f"rot-{c.cycle:03d}-{self.rng.randrange(1000):03d}"
        parts = self.rng.randint(1, 3)
        with c.lock:
            t = TopicModel(name, parts, "rotating", "creating", c.cycle)
            c.topics[name] = t
        if targeted:
            self.fire(self.request_delay(CREATE))
        t0 = time.monotonic()
        futures = self.admin.create_topics([NewTopic(name, parts, 1, config={"segment.bytes": str(SEGMENT_BYTES)})],
                                           operation_timeout=CLIENT_TIMEOUT_S, request_timeout=CLIENT_TIMEOUT_S)
        futures[name].result(timeout=CLIENT_TIMEOUT_S + 1)
        self.timed(CREATE, t0)
        with c.lock:
            t.state = "live"
            c.fig.topics_created += 1
        if targeted:
            self.target_done.set()

    def delete_topic(self, targeted: bool) -> None:
        c = self.c
        with c.lock:
            candidates = sorted((t for t in c.topics.values() if t.role == "rotating" and t.state == "live"),
                                key=lambda t: t.born)
            if not candidates:
                return
            t = candidates[0]
            t.retiring = True
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while t.outstanding > 0:                   # its produces answered first
            if time.monotonic() > deadline or self.stop.is_set():
                with c.lock:
                    t.retiring = False
                return
            time.sleep(0.01)
        with c.lock:
            t.state = "deleting"
        if targeted:
            self.fire(self.request_delay(DELETE))
        t0 = time.monotonic()
        futures = self.admin.delete_topics([t.name], operation_timeout=CLIENT_TIMEOUT_S, request_timeout=CLIENT_TIMEOUT_S)
        futures[t.name].result(timeout=CLIENT_TIMEOUT_S + 1)
        self.timed(DELETE, t0)
        with c.lock:
            t.state = "gone"
            c.fig.topics_deleted += 1
        if targeted:
            self.target_done.set()

    def delete_records(self, targeted: bool) -> None:
        c = self.c
        with c.lock:
            choices = [(t, p) for t in c.topics.values() if t.role in ("base", "rotating") and t.state == "live"
                       for p in range(t.partitions) if t.parts[p].acked]
            if not choices:
                return
            # the longest partition (what keeps the verification after each restart short)
            t, p = max(choices, key=lambda tp: (len(tp[0].parts[tp[1]].acked), self.rng.random()))
            pm = t.parts[p]
            low = max(pm.delete_acked, min(pm.acked))
            high = max(pm.acked) + 1
            offset = low + int((high - low) * self.rng.uniform(0.3, 0.9))
            if offset <= low:
                return
            pm.delete_asked = max(pm.delete_asked, offset)
        if targeted:
            self.fire(self.request_delay(DELETE_RECORDS))
        t0 = time.monotonic()
        futures = self.admin.delete_records([TopicPartition(t.name, p, offset)], request_timeout=CLIENT_TIMEOUT_S,
                                            operation_timeout=CLIENT_TIMEOUT_S)
        res = list(futures.values())[0].result(timeout=CLIENT_TIMEOUT_S + 1)
        self.timed(DELETE_RECORDS, t0)
        with c.lock:
            if res.low_watermark < offset:
                c.violation(f"DeleteRecords {t.name}/{p} to {offset} answered low watermark {res.low_watermark}")
            pm.delete_acked = max(pm.delete_acked, res.low_watermark)
            c.fig.delete_records += 1
        if targeted:
            self.target_done.set()

    # -------------------------------------------------------------------------------- file watchers

    def watch_dirs(self) -> list[pathlib.Path]:
        c = self.c
        with c.lock:
            live = [t for t in c.topics.values() if t.state == "live"]
        if self.kind == ROLL:
            return [c.data_dir / f"{t.name}-{p}" for t in live if t.role != "compact" for p in range(t.partitions)]
        if self.kind == COMPACTION:
            return [c.data_dir / f"{COMPACT}-{p}" for p in range(c.topics[COMPACT].partitions)]
        if self.kind == UPLOAD:
            root = c.archive / PREFIX
            names = {t.name for t in live}
            out = []
            for d in (root.iterdir() if root.is_dir() else []):
                if d.name.rsplit("-", 5)[0] in names:
                    out += [x for x in d.iterdir() if x.is_dir()]
            return out
        return []

    def watcher(self) -> None:
        """For kinds seen only on disk: fire as soon as the change shows."""
        if self.kind not in (ROLL, COMPACTION, UPLOAD):
            return

        def names(d):
            try:
                return set(os.listdir(d))
            except FileNotFoundError:
                return set()

        def interesting(new: set) -> bool:
            if self.kind == ROLL:
                return any(n.endswith(".log") for n in new)
            if self.kind == COMPACTION:
                return any(".cleaned" in n or ".swap" in n for n in new)
            return bool(new)

        dirs = self.watch_dirs()
        seen = {d: names(d) for d in dirs}
        refreshed = time.monotonic()
        while not self.stop.is_set() and not self.fired.is_set():
            for d in dirs:
                now = names(d)
                if interesting(now - seen[d]):
                    self.fire(self.rng.uniform(0, 0.003))
                    return
                seen[d] = now
            if time.monotonic() - refreshed > 0.2:
                dirs = self.watch_dirs()
                for d in dirs:
                    seen.setdefault(d, names(d))
                refreshed = time.monotonic()
            time.sleep(0.002)


def run(cycles: int, seed: int, binary=None, work_dir=None, out=print, kinds: list[str] | None = None) -> Figures:
    """Runs a campaign; `kinds` (in that order, repeated) instead of every kind in a shuffled turn."""
    binary = pathlib.Path(binary or os.environ.get("STRATA_BIN") or HERE.parent.parent / "target" / "release" / "strata").resolve()
    if not binary.is_file():
        raise SystemExit(f"strata binary not found at {binary}: run `cargo build --release` or set STRATA_BIN")
    work_dir = pathlib.Path(work_dir) if work_dir else pathlib.Path(tempfile.mkdtemp(prefix="strata-crash-"))
    out(f"crash campaign: {cycles} cycles, seed {seed}, binary {binary}, work dir {work_dir}")
    return Campaign(cycles=cycles, seed=seed, binary=binary, work_dir=work_dir, out=out, kinds=kinds).run()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--binary", help="the strata binary (default: $STRATA_BIN, else target/release/strata)")
    ap.add_argument("--work-dir", help="where the data dir, archive and broker log go (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir even when nothing was violated")
    ap.add_argument("--kinds", help=f"comma-separated kinds to use in turn (default: all): {', '.join(KINDS)}")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",")] if args.kinds else None
    if kinds and set(kinds) - set(KINDS):
        ap.error(f"unknown kinds {sorted(set(kinds) - set(KINDS))}")
    work_dir = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="strata-crash-"))
    fig = run(args.cycles, args.seed, args.binary, work_dir, kinds=kinds)
    print()
    print(fig.report())
    if fig.violations or args.keep or args.work_dir:
        print(f"work dir kept: {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if fig.violations else 0


if __name__ == "__main__":
    sys.exit(main())
