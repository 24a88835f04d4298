"""Consumer groups: subscribe, committed offsets that a later consumer resumes from, partitions split between members."""

import collections
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

from clients import Delivered, create_topic, produce_all, unique_topic

PARTITIONS = 3


def group_consumer(bootstrap, group, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    }
    conf.update(extra)
    return Consumer(conf)


def produce_values(bootstrap, topic, values):
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    produce_all(producer, [(v[-3:], v, None) for v in values], delivered, topic)
    assert not delivered.failed, list(delivered.failed.values())[:3]
    return delivered


def poll_values(consumers, count, timeout=60.0, settle=2.0):
    """Poll the consumers in turn until `count` messages arrived, then `settle` seconds more."""
    got = {id(c): [] for c in consumers}
    deadline = time.monotonic() + timeout
    settle_until = None
    while True:
        now = time.monotonic()
        total = sum(len(v) for v in got.values())
        if total >= count and settle_until is None:
            settle_until = now + settle
        if settle_until is not None and now >= settle_until:
            return got
        assert now < deadline, f"timed out with {total} of {count} messages"
        for c in consumers:
            for msg in c.consume(num_messages=500, timeout=0.05):
                if not msg.error():
                    got[id(c)].append(msg)


def test_a_new_consumer_in_the_group_resumes_after_the_committed_offsets(strata):
    topic = unique_topic("group-resume")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, PARTITIONS)
    first = [f"first-{i:04d}".encode() for i in range(300)]
    produce_values(strata.bootstrap, topic, first)

    c1 = group_consumer(strata.bootstrap, group)
    c1.subscribe([topic])
    got = poll_values([c1], len(first))[id(c1)]
    assert sorted(m.value() for m in got) == sorted(first)
    c1.commit(asynchronous=False)
    committed = c1.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    c1.close()
    per_partition = {p: sum(1 for m in got if m.partition() == p) for p in range(PARTITIONS)}
    assert {tp.partition: tp.offset for tp in committed} == per_partition

    second = [f"second-{i:04d}".encode() for i in range(100)]
    produce_values(strata.bootstrap, topic, second)
    c2 = group_consumer(strata.bootstrap, group)
    c2.subscribe([topic])
    got2 = poll_values([c2], len(second))[id(c2)]
    c2.close()
    assert sorted(m.value() for m in got2) == sorted(second), "the second consumer re-read committed messages"


def test_two_members_of_a_group_split_the_partitions_and_read_everything_once(strata):
    topic = unique_topic("group-split")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, PARTITIONS)
    a = group_consumer(strata.bootstrap, group)
    b = group_consumer(strata.bootstrap, group)
    a.subscribe([topic])
    b.subscribe([topic])

    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, f"no stable split: a={a.assignment()} b={b.assignment()}"
        a.poll(0.1)
        b.poll(0.1)
        pa = {tp.partition for tp in a.assignment()}
        pb = {tp.partition for tp in b.assignment()}
        if pa and pb and not (pa & pb) and (pa | pb) == set(range(PARTITIONS)):
            break

    values = [f"split-{i:04d}".encode() for i in range(600)]
    produce_values(strata.bootstrap, topic, values)
    got = poll_values([a, b], len(values))
    a.close()
    b.close()
    from_a, from_b = got[id(a)], got[id(b)]
    assert sorted(m.value() for m in from_a + from_b) == sorted(values)
    assert {m.partition() for m in from_a} <= pa and {m.partition() for m in from_b} <= pb


def test_kafka_python_group_consumer_commits_and_a_successor_reads_the_rest(strata):
    topic = unique_topic("kp-group")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, PARTITIONS)
    first = [f"first-{i:04d}".encode() for i in range(150)]
    produce_values(strata.bootstrap, topic, first)

    def consume(n, timeout=60):
        consumer = KafkaConsumer(topic, bootstrap_servers=strata.bootstrap, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(records)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(records)
        consumer.commit()
        committed = {p: consumer.committed(KpTopicPartition(topic, p)) for p in range(PARTITIONS)}
        consumer.close()
        return got, committed

    got, committed = consume(len(first))
    assert sorted(r.value for r in got) == sorted(first)
    assert committed == {p: sum(1 for r in got if r.partition == p) for p in range(PARTITIONS)}

    second = [f"second-{i:04d}".encode() for i in range(50)]
    produce_values(strata.bootstrap, topic, second)
    got2, _ = consume(len(second))
    assert sorted(r.value for r in got2) == sorted(second)


def test_admin_lists_describes_and_deletes_groups(strata):
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    topic = unique_topic("admin-groups")
    create_topic(strata.bootstrap, topic, 1)
    produce_values(strata.bootstrap, topic, [f"v-{i:03d}" for i in range(10)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = group_consumer(strata.bootstrap, group)
    consumer.subscribe([topic])
    poll_values([consumer], 10, timeout=30, settle=0.5)
    consumer.commit(asynchronous=False)

    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    assert described.state == ConsumerGroupState.STABLE
    assert len(described.members) == 1
    # A group with members cannot be deleted.
    try:
        admin.delete_consumer_groups([group])[group].result(timeout=10)
        raise AssertionError("deleting a group with members succeeded")
    except Exception as e:  # KafkaException(NON_EMPTY_GROUP)
        assert "NON_EMPTY_GROUP" in str(e) or "not empty" in str(e).lower(), e

    consumer.close()
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(timeout=10).valid}
    assert group in listed and listed[group].state == ConsumerGroupState.EMPTY
    admin.delete_consumer_groups([group])[group].result(timeout=10)
    listed = {g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid}
    assert group not in listed
    # Its committed offsets went with it: a new member of that group starts from the beginning.
    again = group_consumer(strata.bootstrap, group)
    again.subscribe([topic])
    got = poll_values([again], 10, timeout=30, settle=0.5)
    again.close()
    assert len(got[id(again)]) == 10


# ------------------------------------------------------------------------------------- rebalances and failures

EAGER = {"partition.assignment.strategy": "range"}  # eager: every rebalance revokes everything first


class RecordingMember:
    """A group member polled by its own thread: it records every message it is handed, in order,
    and commits synchronously in its revoke callback (so the next owner resumes right after)."""

    def __init__(self, name, bootstrap, group, topic, **extra):
        self.name = name
        self.consumer = group_consumer(bootstrap, group, **EAGER, **extra)
        self.records = []             # (partition, offset, value, n-th assignment of this member)
        self.assigned = set()         # partitions currently assigned
        self.assign_events = []       # ("assign"|"revoke", sorted partitions, monotonic time)
        self.commit_errors = []       # KafkaError of a failed commit on revoke
        self.commits = 0
        self.assignments = 0
        self.errors = []              # non-fatal consume errors
        self.crash = None
        self._stop = threading.Event()
        self._closed = threading.Event()
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _on_assign(self, consumer, partitions):
        self.assigned = {tp.partition for tp in partitions}
        self.assignments += 1
        self.assign_events.append(("assign", sorted(self.assigned), time.monotonic()))

    def _on_revoke(self, consumer, partitions):
        self.assign_events.append(("revoke", sorted(tp.partition for tp in partitions), time.monotonic()))
        try:
            consumer.commit(asynchronous=False)
            self.commits += 1
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:
                self.commit_errors.append(e.args[0])
        self.assigned = set()

    def _run(self):
        try:
            while not self._stop.is_set():
                for msg in self.consumer.consume(num_messages=500, timeout=0.1):
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            self.errors.append(msg.error())
                        continue
                    self.records.append((msg.partition(), msg.offset(), msg.value(), self.assignments))
            self.consumer.close()     # revokes (and so commits) then leaves the group
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.crash = e
        finally:
            self._closed.set()

    def values(self):
        return [v for _, _, v, _ in self.records]

    def history(self):
        return [(kind, parts) for kind, parts, _ in self.assign_events]

    def close(self, timeout=30.0):
        self._stop.set()
        assert self._closed.wait(timeout), f"{self.name} did not close within {timeout}s"
        self.thread.join(5)
        assert self.crash is None, f"{self.name} crashed: {self.crash!r}"


def wait_until(predicate, timeout, what):
    """Poll `predicate` until true; `what` (a string, or a function giving one at failure time) names it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(0.05)


def test_members_join_and_leave_while_producing_and_commit_on_revoke_loses_and_repeats_nothing(strata):
    partitions, total = 6, 30_000
    topic = unique_topic("group-churn")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, partitions)

    delivered = Delivered()
    produced = [0]
    producer_error = []

    def produce():
        try:
            producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "all", "linger.ms": 5})
            for start in range(0, total, 500):
                batch = [(f"key-{i % 97}".encode(), f"churn-{i:05d}".encode(), None)
                         for i in range(start, start + 500)]
                produce_all(producer, batch, delivered, topic, flush_timeout=30)
                produced[0] = start + 500
                time.sleep(0.15)     # ~10 s of producing: the membership changes land mid-stream
        except Exception as e:  # noqa: BLE001
            producer_error.append(e)

    members = [RecordingMember("c1", strata.bootstrap, group, topic),
               RecordingMember("c2", strata.bootstrap, group, topic)]
    c1, c2 = members
    c3 = None
    try:
        wait_until(lambda: c1.assigned and c2.assigned and len(c1.assigned | c2.assigned) == partitions,
                   30, "c1 and c2 to split the partitions")
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()

        wait_until(lambda: produced[0] >= total // 3 or producer_error, 30, "a third of the messages")
        c3 = RecordingMember("c3", strata.bootstrap, group, topic)
        members.append(c3)
        wait_until(lambda: c3.assigned and len(c1.assigned | c2.assigned | c3.assigned) == partitions,
                   30, "c3 to get its share")

        wait_until(lambda: produced[0] >= 2 * total // 3 or producer_error, 30, "two thirds of the messages")
        c1.close()
        wait_until(lambda: c2.assigned and c3.assigned and c2.assigned | c3.assigned == set(range(partitions)),
                   30, "c2 and c3 to take over c1's partitions")

        producer.join(60)
        assert not producer.is_alive() and not producer_error, f"producer: {producer_error}"
        assert len(delivered.ok) == total and not delivered.failed

        wanted = set(delivered.ok)
        wait_until(lambda: wanted <= {v for m in members for v in m.values()}, 60,
                   "every message to be consumed")
        time.sleep(1.0)  # anything delivered twice would show up now
    finally:
        for m in members:
            if not m._closed.is_set():
                m.close()

    seen = [v for m in members for v in m.values()]
    assert set(seen) == set(delivered.ok), "messages were lost"
    dupes = sorted(v for v, n in collections.Counter(seen).items() if n > 1)
    assert not dupes, (
        f"{len(seen) - len(set(seen))} messages consumed twice (e.g. {dupes[:3]}); failed commits in "
        f"on_revoke: { {m.name: [str(e) for e in m.commit_errors] for m in members} }; "
        f"successful ones: { {m.name: m.commits for m in members} }; "
        f"rebalances: { {m.name: m.history() for m in members} }")
    assert all(not m.commit_errors for m in members), {m.name: m.commit_errors for m in members}
    # In order: within each assignment a member saw increasing offsets per partition.
    for m in members:
        last = {}
        for p, off, _, n in m.records:
            assert off > last.get((n, p), -1), f"{m.name} got {topic}/{p}@{off} after @{last[(n, p)]}"
            last[(n, p)] = off
    # every (partition, offset) a delivery report named was consumed with that value
    by_position = {(p, off): v for m in members for p, off, v, _ in m.records}
    assert all(by_position.get(pos) == v for v, pos in delivered.ok.items())

    # A fresh member of the group reads only what is produced now.
    after = [f"after-{i:03d}".encode() for i in range(60)]
    produce_values(strata.bootstrap, topic, after)
    fresh = group_consumer(strata.bootstrap, group, **EAGER)
    fresh.subscribe([topic])
    try:
        got = poll_values([fresh], len(after), timeout=30, settle=1.5)[id(fresh)]
    finally:
        fresh.close()
    assert sorted(m.value() for m in got) == sorted(after), (
        f"the fresh member re-read {len([m for m in got if not m.value().startswith(b'after-')])} old messages")


# Consumer A, in its own process: consume everything there is, commit only the first half of each
# partition, then report and keep heartbeating until it is killed.
CRASHING_CONSUMER = r"""
import json, sys, time
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic, group, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
              "partition.assignment.strategy": "range"})
assigned = []
c.subscribe([topic], on_assign=lambda _c, ps: assigned.append(sorted(tp.partition for tp in ps)))
got = {}
deadline = time.monotonic() + 40
while time.monotonic() < deadline and (not assigned or sum(len(v) for v in got.values()) < total):
    for m in c.consume(num_messages=500, timeout=0.2):
        if not m.error():
            got.setdefault(m.partition(), []).append(m.offset())
commit = {p: offs[len(offs) // 2] for p, offs in got.items()}
c.commit(offsets=[TopicPartition(topic, p, o) for p, o in commit.items()], asynchronous=False)
print(json.dumps({"assigned": [tp.partition for tp in c.assignment()], "committed": commit,
                  "consumed": sum(len(v) for v in got.values())}), flush=True)
while True:
    c.poll(0.2)
"""


@pytest.mark.parametrize("b_joins", ["after_the_kill", "before_the_kill"])
def test_a_killed_members_partitions_go_to_the_survivor_after_the_session_timeout(strata, b_joins, tmp_path):
    """A (its own process, session.timeout.ms=6000) reads everything, commits half of each partition
    and is SIGKILLed. B — a replacement started after the kill, or a member that already shared the
    partitions with A — owns every partition within the session timeout + 5 s and reads exactly what
    A had not committed."""
    partitions, total = 4, 400
    topic = unique_topic("group-crash")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, partitions)
    values = [f"crash-{i:04d}".encode() for i in range(total)]
    delivered = produce_values(strata.bootstrap, topic, values)

    a_log = tmp_path / "consumer_a.log"
    with open(a_log, "w") as a_stderr:
        a = subprocess.Popen([sys.executable, "-c", CRASHING_CONSUMER, strata.bootstrap, topic, group, str(total)],
                             stdout=subprocess.PIPE, stderr=a_stderr, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: ([lines.put(line) for line in a.stdout], lines.put("")), daemon=True).start()
    b = None
    try:
        try:
            line = lines.get(timeout=45)
        except queue.Empty:
            line = ""
        if not line:
            a.kill()
            a.wait()
            raise AssertionError(f"consumer A reported nothing within 45s (exit status {a.returncode}); "
                                 f"its stderr: {a_log.read_text()[-2000:]}")
        report = json.loads(line)
        assert sorted(report["assigned"]) == list(range(partitions)), report
        assert report["consumed"] == total, report
        committed = {int(p): o for p, o in report["committed"].items()}

        if b_joins == "before_the_kill":
            b = RecordingMember("b", strata.bootstrap, group, topic, **{"session.timeout.ms": 6000})
            wait_until(lambda: b.assigned and len(b.assigned) < partitions, 30,
                       lambda: f"B to share the partitions with A; B's assignment history: {b.assign_events}")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed_at = time.monotonic()

        if b_joins == "after_the_kill":
            b = RecordingMember("b", strata.bootstrap, group, topic, **{"session.timeout.ms": 6000})
        limit = 6.0 + 5.0
        wait_until(lambda: b.assigned == set(range(partitions)), limit + 1,
                   lambda: f"B to own all partitions (A was SIGKILLed with session.timeout.ms=6000); "
                           f"B's assignment history: {b.assign_events}")
        took = b.assign_events[-1][2] - killed_at
        assert took <= limit, f"B got A's partitions {took:.1f}s after the kill, expected within {limit}s"

        uncommitted = {v for v, (p, off) in delivered.ok.items() if off >= committed.get(p, 0)}
        wait_until(lambda: uncommitted <= set(b.values()), 20, "B to read what A had not committed")
        time.sleep(1.0)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
        if b is not None:
            b.close()
    got = b.values()
    assert set(got) == uncommitted, (
        f"B missed {len(uncommitted - set(got))} uncommitted messages and read {len(set(got) - uncommitted)} "
        f"committed ones")
    dupes = sorted(v for v, n in collections.Counter(got).items() if n > 1)
    assert not dupes, (f"B read {len(got) - len(set(got))} messages twice (e.g. {dupes[:3]}); its failed commits "
                       f"in on_revoke: {[str(e) for e in b.commit_errors]}; its rebalances: {b.history()}")
    first = {}
    for p, off, _, _ in b.records:
        first.setdefault(p, off)
    assert first == committed, f"B started at {first}, A had committed {committed}"


def test_committed_offsets_survive_a_broker_kill(strata):
    partitions = 3
    topic = unique_topic("group-kill9")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, partitions)
    values = [f"k9-{i:04d}".encode() for i in range(600)]
    delivered = produce_values(strata.bootstrap, topic, values)
    ends = {p: 1 + max(off for q, off in delivered.ok.values() if q == p) for p in range(partitions)}
    assert all(ends.values())

    c1 = group_consumer(strata.bootstrap, group, **EAGER)
    c1.subscribe([topic])
    got = poll_values([c1], len(values), timeout=30, settle=0.5)[id(c1)]
    assert len(got) == len(values)
    # commit a different point in each partition: one third, half, all but one
    commit = {0: ends[0] // 3, 1: ends[1] // 2, 2: ends[2] - 1}
    c1.commit(offsets=[TopicPartition(topic, p, o) for p, o in commit.items()], asynchronous=False)
    seen = c1.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    assert {tp.partition: tp.offset for tp in seen} == commit
    c1.close()

    strata.kill()
    strata.start()

    c2 = group_consumer(strata.bootstrap, group, **EAGER)
    c2.subscribe([topic])
    try:
        expected = sum(ends[p] - commit[p] for p in range(partitions))
        got2 = poll_values([c2], expected, timeout=30, settle=1.0)[id(c2)]
        after = c2.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        c2.close()
    assert {tp.partition: tp.offset for tp in after} == commit
    resumed = {}
    for m in got2:
        resumed.setdefault(m.partition(), []).append(m.offset())
    assert resumed == {p: list(range(commit[p], ends[p])) for p in range(partitions)}
