"""Consumer groups (classic protocol): subscribe, committed offsets that a later consumer resumes from,
partitions split between members, rebalances and dead members, static membership (KIP-345), and committed
offsets deleted (OffsetDelete, topic deletion), expired, or kept across broker restarts."""

import collections
import socket
import struct
import threading
import time
import uuid

import pytest
from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

import kafka_wire
from clients import (EAGER, Delivered, RecordingMember, committed_offsets, create_topic, group_consumer,
                     listed_groups, new_consumer, poll_values, produce_all, produce_values,
                     check_survivor_takes_over_a_killed_member, unique_topic, wait_until)

PARTITIONS = 3


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

    check_survivor_takes_over_a_killed_member(
        strata.bootstrap, topic, group, partitions, delivered, total, tmp_path, b_joins, 6.0,
        {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500, **EAGER}, **{"session.timeout.ms": 6000})


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


# ------------------------------------------------------------------------------------- static membership (KIP-345)

def static_member(name, bootstrap, group, topic, instance_id, **extra):
    return RecordingMember(name, bootstrap, group, topic, **{"group.instance.id": instance_id}, **extra)


def test_a_restarted_static_member_gets_its_partitions_back_and_a_duplicate_instance_id_is_fenced(strata):
    """Static members 'a' and 'b' share 4 partitions. 'b' closes (no LeaveGroup: it stays in the group)
    and a new consumer with group.instance.id 'b' starts within the session timeout: it gets b's
    partitions back, resumes after b's commits, and 'a' sees no rebalance. Then a second consumer with
    'a' while the first one still runs: the newcomer takes a's partitions and librdkafka reports a fatal
    FENCED_INSTANCE_ID error to the old one; 'b' sees no rebalance."""
    partitions = 4
    everything = set(range(partitions))
    topic = unique_topic("group-static")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, partitions)
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    first = [f"one-{i:04d}".encode() for i in range(200)]
    produce_values(strata.bootstrap, topic, first)

    a = static_member("a", strata.bootstrap, group, topic, "a")
    b = static_member("b", strata.bootstrap, group, topic, "b")
    members = [a, b]
    try:
        wait_until(lambda: a.assigned and b.assigned and a.assigned | b.assigned == everything, 30,
                   lambda: f"a and b to split the partitions: a {a.history()}, b {b.history()}")
        a_parts, b_parts = set(a.assigned), set(b.assigned)
        wait_until(lambda: set(first) <= set(a.values() + b.values()), 30, "the first messages to be read")
        a_history = a.history()
        old_b_id = {m.group_instance_id: m.member_id
                    for m in admin.describe_consumer_groups([group])[group].result(timeout=10).members}["b"]

        b.close()                      # commits in on_revoke, then closes without leaving the group
        closed_at = time.monotonic()
        second = [f"two-{i:04d}".encode() for i in range(200)]
        delivered = produce_values(strata.bootstrap, topic, second)
        b2 = static_member("b2", strata.bootstrap, group, topic, "b")
        members.append(b2)
        wait_until(lambda: b2.assigned, 8, lambda: f"the new 'b' to get an assignment: {b2.history()}")
        took = b2.last_assign_time() - closed_at
        assert set(b2.assigned) == b_parts, f"the new 'b' got {sorted(b2.assigned)}, the old one had {sorted(b_parts)}"
        assert took < 8, f"the new 'b' got its partitions {took:.1f}s after the old one closed"
        wait_until(lambda: set(second) <= set(a.values() + b2.values()), 30, "the second messages to be read")
        time.sleep(1.0)
        assert a.history() == a_history, f"'a' went through a rebalance when 'b' came back: {a.history()}"
        assert not a.errors and not b2.errors, (a.errors, b2.errors)
        assert sorted(b2.values()) == sorted(v for v in second if delivered.ok[v][0] in b_parts), (
            "the new 'b' did not resume exactly after the old one's commits")
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert described.state == ConsumerGroupState.STABLE
        ids = {m.group_instance_id: m.member_id for m in described.members}
        assert set(ids) == {"a", "b"} and ids["b"] != old_b_id, (ids, old_b_id)

        # A second live consumer with instance id 'a'.
        b2_history = b2.history()
        a2 = static_member("a2", strata.bootstrap, group, topic, "a")
        members.append(a2)
        wait_until(lambda: set(a2.assigned) == a_parts, 10,
                   lambda: f"the second 'a' to get a's partitions: {a2.history()}")
        wait_until(lambda: any(e.code() == KafkaError._FATAL for e in a.errors), 10,
                   lambda: f"a fatal error for the first 'a'; its errors {a.errors}, its history {a.history()}")
        fatal = next(e for e in a.errors if e.code() == KafkaError._FATAL)
        assert KafkaError(KafkaError.FENCED_INSTANCE_ID).str() in fatal.str(), fatal
        time.sleep(1.0)
        assert not a2.errors and not b2.errors, (a2.errors, b2.errors)
        assert b2.history() == b2_history, f"'b' went through a rebalance when the second 'a' came: {b2.history()}"
        ids = {m.group_instance_id: m.member_id
               for m in admin.describe_consumer_groups([group])[group].result(timeout=10).members}
        assert set(ids) == {"a", "b"}, ids
    finally:
        for m in members:
            if not m._closed.is_set():
                m.close()


def test_a_group_whose_static_members_all_time_out_becomes_empty(strata):
    topic = unique_topic("group-static-gone")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, 2)
    members = [static_member(name, strata.bootstrap, group, topic, name, **{"session.timeout.ms": 6000})
               for name in ("a", "b")]
    try:
        wait_until(lambda: all(m.assigned for m in members), 20, "both static members to get a partition")
    finally:
        for m in members:
            m.close()                  # static: no LeaveGroup, the members stay until their sessions expire
    time.sleep(6.0)
    states = []

    def empty():
        states.append(listed_groups(strata.bootstrap)[group].state)
        return states[-1] == ConsumerGroupState.EMPTY

    wait_until(empty, 5, lambda: f"the group to be Empty once both sessions expired; states seen: {states[-3:]}")


# ------------------------------------------------------------------------------------- offsets: delete, expire, keep

def produce_to_partitions(bootstrap, topic, per_partition):
    """`per_partition[p]` messages to partition p; returns {partition: [values in offset order]}."""
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    values = {p: [f"{topic}-{p}-{i:04d}".encode() for i in range(n)] for p, n in per_partition.items()}
    for p, vs in values.items():
        for v in vs:
            producer.produce(topic, value=v, partition=p, on_delivery=delivered.callback)
    assert producer.flush(30) == 0 and not delivered.failed
    return values


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_offset_delete_refuses_subscribed_topics_and_removes_offsets_of_an_empty_group(strata, protocol):
    from kafka import KafkaAdminClient
    from kafka.errors import GroupIdNotFoundError, GroupSubscribedToTopicError, NoError

    topic, other = unique_topic("offdel"), unique_topic("offdel-other")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, 2)
    create_topic(strata.bootstrap, other, 1)
    values = produce_to_partitions(strata.bootstrap, topic, {0: 20, 1: 20})
    kp_admin = KafkaAdminClient(bootstrap_servers=strata.bootstrap, request_timeout_ms=15000)
    consumer = group_consumer(strata.bootstrap, group, protocol)
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while len(consumer.assignment()) < 2:
            assert time.monotonic() < deadline, "the member got no assignment"
            consumer.poll(0.1)
        commit = {(topic, 0): 5, (topic, 1): 6, (other, 0): 7}
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in commit.items()], asynchronous=False)
        assert committed_offsets(strata.bootstrap, group) == commit

        # The member subscribes to `topic`: its offsets stay. Not to `other`: those can go.
        result = kp_admin.delete_group_offsets(group, [KpTopicPartition(topic, 0)])
        assert result == {KpTopicPartition(topic, 0): GroupSubscribedToTopicError}, result
        result = kp_admin.delete_group_offsets(group, [KpTopicPartition(other, 0)])
        assert result == {KpTopicPartition(other, 0): NoError}, result
        assert committed_offsets(strata.bootstrap, group) == {(topic, 0): 5, (topic, 1): 6}
    finally:
        consumer.close()

    with pytest.raises(GroupIdNotFoundError):
        kp_admin.delete_group_offsets(f"no-such-group-{uuid.uuid4().hex[:6]}", [KpTopicPartition(topic, 0)])

    # Empty now: the offsets of partition 0 can go, partition 1's stay.
    result = kp_admin.delete_group_offsets(group, [KpTopicPartition(topic, 0)])
    kp_admin.close()
    assert result == {KpTopicPartition(topic, 0): NoError}, result
    assert committed_offsets(strata.bootstrap, group) == {(topic, 1): 6}
    # A new member starts partition 0 from auto.offset.reset (earliest) and partition 1 after the commit.
    again = group_consumer(strata.bootstrap, group, protocol)
    again.subscribe([topic])
    try:
        got = poll_values([again], 20 + 14, timeout=30, settle=1.0)[id(again)]
    finally:
        again.close()
    read = {p: [m.value() for m in got if m.partition() == p] for p in (0, 1)}
    assert read == {0: values[0], 1: values[1][6:]}, {p: (len(v), v[:1]) for p, v in read.items()}


def test_offsets_of_a_group_that_stays_empty_expire_after_the_retention(strata_factory):
    """offsets.retention.minutes=1: the offsets of a group that has been empty for a minute and of a
    commit made without group membership a minute ago are gone (OffsetFetch answers nothing, ListGroups
    no longer shows the groups) — no sooner; the offsets of a group with a member stay."""
    retention = 60.0
    broker = strata_factory("--override", "offsets.retention.minutes=1",
                            "--override", "offsets.retention.check.interval.ms=1000")
    topic = unique_topic("group-expiry")
    create_topic(broker.bootstrap, topic, 2)
    produce_to_partitions(broker.bootstrap, topic, {0: 10, 1: 10})
    empty, standalone, active = (f"{kind}-{uuid.uuid4().hex[:6]}" for kind in ("empty", "standalone", "active"))

    def subscribed(group):
        c = group_consumer(broker.bootstrap, group)
        c.subscribe([topic])
        deadline = time.monotonic() + 20
        while len(c.assignment()) < 2:
            assert time.monotonic() < deadline, f"no assignment in {group}"
            c.poll(0.1)
        c.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 4)], asynchronous=False)
        return c

    keeper = subscribed(active)
    c = subscribed(empty)
    c.close()                          # LeaveGroup: the group is empty from now on
    since = {empty: time.monotonic()}
    c = new_consumer(broker.bootstrap, **{"group.id": standalone})  # assign() + commit: no group membership
    c.assign([TopicPartition(topic, 0)])
    c.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    since[standalone] = time.monotonic()
    c.close()
    expected = {empty: {(topic, 0): 3, (topic, 1): 4}, standalone: {(topic, 0): 5},
                active: {(topic, 0): 3, (topic, 1): 4}}
    try:
        assert {g: committed_offsets(broker.bootstrap, g) for g in expected} == expected
        assert {empty, standalone, active} <= set(listed_groups(broker.bootstrap))

        gone_after = {}
        deadline = time.monotonic() + retention + 20
        while len(gone_after) < 2 and time.monotonic() < deadline:
            keeper.poll(0.5)
            for g in (empty, standalone):
                if g not in gone_after and not committed_offsets(broker.bootstrap, g):
                    gone_after[g] = time.monotonic() - since[g]
                    assert g not in listed_groups(broker.bootstrap), f"{g} has no offsets left but is still listed"
        assert set(gone_after) == {empty, standalone}, (
            f"offsets still there {retention + 20:.0f}s after: {[g for g in since if g not in gone_after]}")
        for g, took in gone_after.items():
            assert took >= retention - 2, f"{g}'s offsets expired after {took:.0f}s, the retention is {retention:.0f}s"
        assert committed_offsets(broker.bootstrap, active) == expected[active], "the active group lost its offsets"
        assert listed_groups(broker.bootstrap)[active].state == ConsumerGroupState.STABLE
    finally:
        keeper.close()

    # The expired group starts over from auto.offset.reset.
    again = group_consumer(broker.bootstrap, empty)
    again.subscribe([topic])
    try:
        got = poll_values([again], 20, timeout=30, settle=1.0)[id(again)]
    finally:
        again.close()
    assert len(got) == 20


def test_committed_offsets_survive_a_clean_broker_restart_and_a_running_member_resumes_from_them(strata):
    """A member commits a different point in each partition and keeps running while the broker stops
    (SIGTERM) and starts again: it rejoins and reads again from the committed offsets; after it left, a
    new member reads only what came after its last commit."""
    partitions = 3
    topic = unique_topic("group-restart")
    group = f"g-{uuid.uuid4().hex[:6]}"
    create_topic(strata.bootstrap, topic, partitions)
    values = produce_to_partitions(strata.bootstrap, topic, {0: 90, 1: 60, 2: 30})
    commit = {0: 30, 1: 30, 2: 29}

    history = []
    member = group_consumer(strata.bootstrap, group, **EAGER)
    member.subscribe([topic], on_assign=lambda _c, ps: history.append(("assign", sorted(p.partition for p in ps))),
                     on_revoke=lambda _c, ps: history.append(("revoke", sorted(p.partition for p in ps))),
                     on_lost=lambda _c, ps: history.append(("lost", sorted(p.partition for p in ps))))
    try:
        got = poll_values([member], 180, timeout=30, settle=0.5)[id(member)]
        assert len(got) == 180
        member.commit(offsets=[TopicPartition(topic, p, o) for p, o in commit.items()], asynchronous=False)
        assert committed_offsets(strata.bootstrap, group) == {(topic, p): o for p, o in commit.items()}

        strata.stop()
        strata.start()

        assert committed_offsets(strata.bootstrap, group) == {(topic, p): o for p, o in commit.items()}
        assert group in listed_groups(strata.bootstrap)
        rest = sum(len(values[p]) - o for p, o in commit.items())
        try:
            reread = poll_values([member], rest, timeout=40, settle=1.0)[id(member)]
        except AssertionError as e:
            raise AssertionError(f"{e}; the member's rebalances: {history}") from None
        member.commit(asynchronous=False)
    finally:
        member.close()
    by_partition = {p: [m.value() for m in reread if m.partition() == p] for p in range(partitions)}
    assert by_partition == {p: values[p][o:] for p, o in commit.items()}, (
        {p: len(v) for p, v in by_partition.items()}, history)

    strata.stop()
    strata.start()
    more = produce_to_partitions(strata.bootstrap, topic, {0: 5, 1: 5, 2: 5})
    fresh = group_consumer(strata.bootstrap, group)
    fresh.subscribe([topic])
    try:
        later = poll_values([fresh], 15, timeout=30, settle=1.0)[id(fresh)]
    finally:
        fresh.close()
    assert sorted(m.value() for m in later) == sorted(v for vs in more.values() for v in vs)


def test_deleting_a_topic_deletes_its_committed_offsets_from_every_group(strata):
    """Two groups commit on two topics; one topic is deleted: its offsets are gone from both groups, the
    other topic's stay, and a member of a topic re-created with that name starts from the beginning."""
    doomed, kept = unique_topic("doomed"), unique_topic("kept")
    groups = [f"g-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    create_topic(strata.bootstrap, doomed, 2)
    create_topic(strata.bootstrap, kept, 1)
    produce_to_partitions(strata.bootstrap, doomed, {0: 30, 1: 30})
    produce_to_partitions(strata.bootstrap, kept, {0: 30})
    for i, group in enumerate(groups):
        c = group_consumer(strata.bootstrap, group)
        c.subscribe([doomed, kept])
        deadline = time.monotonic() + 20
        while len(c.assignment()) < 3:
            assert time.monotonic() < deadline, "no assignment"
            c.poll(0.1)
        c.commit(offsets=[TopicPartition(doomed, 0, 10 + i), TopicPartition(doomed, 1, 20 + i),
                          TopicPartition(kept, 0, 5 + i)], asynchronous=False)
        c.close()
    assert committed_offsets(strata.bootstrap, groups[1]) == {(doomed, 0): 11, (doomed, 1): 21, (kept, 0): 6}

    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    admin.delete_topics([doomed], operation_timeout=15)[doomed].result(timeout=20)
    wait_until(lambda: all((doomed, 0) not in committed_offsets(strata.bootstrap, g) for g in groups), 10,
               lambda: f"the deleted topic's offsets to go: {[committed_offsets(strata.bootstrap, g) for g in groups]}")
    assert [committed_offsets(strata.bootstrap, g) for g in groups] == [{(kept, 0): 5}, {(kept, 0): 6}]

    create_topic(strata.bootstrap, doomed, 2)
    fresh = produce_to_partitions(strata.bootstrap, doomed, {0: 15, 1: 25})
    c = group_consumer(strata.bootstrap, groups[0])
    c.subscribe([doomed])
    try:
        got = poll_values([c], 40, timeout=30, settle=1.0)[id(c)]
    finally:
        c.close()
    read = {p: [m.value() for m in got if m.partition() == p] for p in (0, 1)}
    assert read == fresh, f"the re-created topic was read from {({p: len(v) for p, v in read.items()})}"


class RawMember:
    """A classic group member speaking JoinGroup v1 / SyncGroup v0 / LeaveGroup v0 over its own
    socket, so a test can hold the group in each state of a rebalance for as long as it likes."""

    def __init__(self, bootstrap: str, group: str):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.group = group
        self.member_id = ""
        self.generation = -1
        self.correlation = 0

    def send(self, api_key: int, version: int, body: bytes) -> None:
        self.correlation += 1
        self.sock.sendall(kafka_wire.frame(kafka_wire.header_v1(api_key, version, self.correlation) + body))

    def receive(self) -> kafka_wire.Reader:
        r = kafka_wire.Reader(kafka_wire.recv_frame(self.sock))
        assert r.int32() == self.correlation
        return r

    def send_join(self) -> None:
        body = (kafka_wire.string(self.group) + struct.pack(">ii", 10_000, 10_000) + kafka_wire.string(self.member_id)
                + kafka_wire.string("consumer") + struct.pack(">i", 1) + kafka_wire.string("range")
                + struct.pack(">i", 0))
        self.send(11, 1, body)

    def finish_join(self) -> str:
        r = self.receive()
        assert r.int16() == 0, "JoinGroup failed"
        self.generation = r.int32()
        r.string()  # protocol
        leader = r.string()
        self.member_id = r.string()
        return leader

    def sync(self, assignments: dict[str, bytes]) -> None:
        body = kafka_wire.string(self.group) + struct.pack(">i", self.generation) + kafka_wire.string(self.member_id)
        body += struct.pack(">i", len(assignments))
        for member, data in assignments.items():
            body += kafka_wire.string(member) + struct.pack(">i", len(data)) + data
        self.send(14, 0, body)
        assert self.receive().int16() == 0, "SyncGroup failed"

    def leave(self) -> None:
        self.send(13, 0, kafka_wire.string(self.group) + kafka_wire.string(self.member_id))
        assert self.receive().int16() == 0, "LeaveGroup failed"
        self.sock.close()


def test_described_states_follow_a_rebalance_through_every_state_kafka_reports(strata):
    """Empty → CompletingRebalance (joined, no SyncGroup yet) → Stable → PreparingRebalance (a
    second member waits for the first to rejoin) → Empty after both leave → Dead once deleted,
    each as an AdminClient describes and lists it."""
    group = f"g-states-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})

    def state():
        try:
            return admin.describe_consumer_groups([group])[group].result(10).state
        except KafkaException as e:
            if e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                return ConsumerGroupState.DEAD
            raise

    def listed():
        groups = admin.list_consumer_groups().result(10).valid
        return {g.group_id: g.state for g in groups}.get(group)

    a = RawMember(strata.bootstrap, group)
    a.send_join()
    assert a.finish_join() == a.member_id, "the first member leads"
    assert state() == ConsumerGroupState.COMPLETING_REBALANCING
    assert listed() == ConsumerGroupState.COMPLETING_REBALANCING
    a.sync({a.member_id: b""})
    assert state() == ConsumerGroupState.STABLE

    b = RawMember(strata.bootstrap, group)
    b.send_join()  # held until a rejoins
    wait_until(lambda: state() == ConsumerGroupState.PREPARING_REBALANCING, 10, "PreparingRebalance")
    assert listed() == ConsumerGroupState.PREPARING_REBALANCING
    a.send_join()
    a.finish_join()
    b.finish_join()
    assert state() == ConsumerGroupState.COMPLETING_REBALANCING
    a.sync({a.member_id: b"", b.member_id: b""})
    b.sync({})
    assert state() == ConsumerGroupState.STABLE
    a.leave()
    b.leave()
    assert state() == ConsumerGroupState.EMPTY
    admin.delete_consumer_groups([group])[group].result(10)
    assert state() == ConsumerGroupState.DEAD
    assert listed() is None
