"""KIP-848 consumer groups (librdkafka with group.protocol=consumer): the broker assigns partitions with
its "uniform" or "range" assignor and moves them incrementally, members that stop heartbeating are
removed after group.consumer.session.timeout.ms, admin clients see the group's type, state, members and
assignments, and committed offsets survive a broker restart."""

import collections
import time
import uuid

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType
from confluent_kafka.admin import AdminClient

from clients import (PacedProducer, PartitionOwners, RecordingMember, committed_offsets, create_topic,
                     group_consumer, listed_groups, poll_values, produce_values, check_survivor_takes_over_a_killed_member,
                     unique_topic, wait_until)

SESSION_TIMEOUT_S = 6.0
# The broker decides session timeout and heartbeat interval under this protocol: make both short.
FAST_GROUPS = ("--override", "group.consumer.heartbeat.interval.ms=500",
               "--override", f"group.consumer.session.timeout.ms={int(SESSION_TIMEOUT_S * 1000)}")


@pytest.fixture
def broker(strata_factory):
    return strata_factory(*FAST_GROUPS)


def new_group():
    return f"g-{uuid.uuid4().hex[:6]}"


def test_members_join_and_leave_while_producing_and_nothing_is_lost_repeated_or_read_by_two(broker):
    """Three KIP-848 members (c3 joins and c1 leaves while 30,000 messages arrive) commit in on_revoke:
    every message is read once, no partition is handed to a member before its previous owner revoked
    it, and a new generation of members reads only what comes after."""
    partitions, total = 6, 30_000
    everything = set(range(partitions))
    topic = unique_topic("kip848-churn")
    group = new_group()
    create_topic(broker.bootstrap, topic, partitions)
    owners = PartitionOwners()

    def member(name):
        return RecordingMember(name, broker.bootstrap, group, topic, protocol="consumer", owners=owners)

    def state():
        return "; ".join(f"{m.name} owns {sorted(m.assigned)}, read {len(m.records)}, history {m.history()}"
                         for m in members)

    producer = PacedProducer(broker.bootstrap, topic, total, pause=0.15)
    members = [member("c1"), member("c2")]
    c1, c2 = members
    try:
        wait_until(lambda: c1.assigned and c2.assigned and c1.assigned | c2.assigned == everything, 30,
                   lambda: f"c1 and c2 to split the partitions ({state()})")
        producer.start()

        producer.wait_for(total // 3)
        c3 = member("c3")
        members.append(c3)
        wait_until(lambda: c3.assigned and c1.assigned and c2.assigned
                   and c1.assigned | c2.assigned | c3.assigned == everything, 30,
                   lambda: f"c3 to get its share ({state()})")

        producer.wait_for(2 * total // 3)
        c1.close()
        wait_until(lambda: c2.assigned and c3.assigned and c2.assigned | c3.assigned == everything, 30,
                   lambda: f"c2 and c3 to take over c1's partitions ({state()})")

        producer.join()
        wanted = set(producer.delivered.ok)
        wait_until(lambda: wanted <= {v for m in members for v in m.values()}, 60,
                   lambda: f"every message to be consumed ({state()})")
        time.sleep(1.0)  # anything delivered twice would show up now
    finally:
        for m in members:
            if not m._closed.is_set():
                m.close()

    assert not owners.overlaps, (f"partitions handed to a member while another still owned them "
                                 f"(partition, owner, new owner): {owners.overlaps}; {state()}")
    assert all(not m.unowned for m in members), {m.name: m.unowned[:5] for m in members}
    assert all(m.history() and all(kind != "lost" for kind, _ in m.history()) for m in members), state()
    assert all(not m.commit_errors for m in members), {m.name: [str(e) for e in m.commit_errors] for m in members}
    seen = [v for m in members for v in m.values()]
    assert set(seen) == set(producer.delivered.ok), "messages were lost"
    dupes = sorted(v for v, n in collections.Counter(seen).items() if n > 1)
    assert not dupes, (f"{len(seen) - len(set(seen))} messages consumed twice (e.g. {dupes[:3]}); "
                       f"commits on revoke: { {m.name: m.commits for m in members} }; {state()}")
    for m in members:     # in order: each time a member got a partition, it read increasing offsets
        last = {}
        for p, off, _, n in m.records:
            assert off > last.get((n, p), -1), f"{m.name} got {topic}/{p}@{off} after @{last[(n, p)]}"
            last[(n, p)] = off
    by_position = {(p, off): v for m in members for p, off, v, _ in m.records}
    assert all(by_position.get(pos) == v for v, pos in producer.delivered.ok.items())

    # Everyone has left; a new generation of members reads only what is produced now.
    fresh = [member("f1"), member("f2")]
    try:
        wait_until(lambda: all(m.assigned for m in fresh) and fresh[0].assigned | fresh[1].assigned == everything,
                   30, lambda: f"the new members to split the partitions: {[m.history() for m in fresh]}")
        after = [f"after-{i:03d}".encode() for i in range(60)]
        produce_values(broker.bootstrap, topic, after)
        wait_until(lambda: set(after) <= {v for m in fresh for v in m.values()}, 30,
                   lambda: f"the new members to read the new messages: {[m.history() for m in fresh]}")
        time.sleep(1.5)  # anything re-read from before the commits would show up now
    finally:
        for m in fresh:
            m.close()
    read = [v for m in fresh for v in m.values()]
    assert sorted(read) == sorted(after), (
        f"the new members re-read {len([v for v in read if not v.startswith(b'after-')])} committed messages "
        f"and read {len(read) - len(set(read))} new ones twice")


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_the_server_side_assignor_splits_six_partitions_three_and_three(broker, assignor):
    partitions = 6
    topic = unique_topic(f"kip848-{assignor}")
    group = new_group()
    create_topic(broker.bootstrap, topic, partitions)
    a = RecordingMember("a", broker.bootstrap, group, topic, protocol="consumer",
                        **{"group.remote.assignor": assignor})
    b = RecordingMember("b", broker.bootstrap, group, topic, protocol="consumer",
                        **{"group.remote.assignor": assignor})
    try:
        wait_until(lambda: len(a.assigned) == 3 and len(b.assigned) == 3, 20,
                   lambda: f"a 3+3 split: a {a.history()}, b {b.history()}")
        pa, pb = set(a.assigned), set(b.assigned)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
        time.sleep(1.5)  # three heartbeats more: the split is final, nothing moves
        assert (set(a.assigned), set(b.assigned)) == (pa, pb), f"a {a.history()}, b {b.history()}"
    finally:
        a.close()
        b.close()
    assert not pa & pb and pa | pb == set(range(partitions)), (pa, pb)
    if assignor == "range":
        for parts in (pa, pb):
            assert sorted(parts) == list(range(min(parts), max(parts) + 1)), f"range gave {sorted(parts)}"
    assert described.partition_assignor == assignor
    assert {frozenset(tp.partition for tp in m.assignment.topic_partitions) for m in described.members} == {
        frozenset(pa), frozenset(pb)}


@pytest.mark.parametrize("b_joins", ["after_the_kill", "before_the_kill"])
def test_a_killed_members_partitions_go_to_the_survivor_after_the_session_timeout(broker, b_joins, tmp_path):
    """A (its own process) reads everything, commits half of each partition and is SIGKILLed. B — a
    member that already shared the partitions with A, or one started after the kill, which gets
    nothing A has not released — owns every partition within the broker's session timeout (6 s) + 5 s
    and reads exactly what A had not committed."""
    partitions, total = 4, 400
    topic = unique_topic("kip848-crash")
    group = new_group()
    create_topic(broker.bootstrap, topic, partitions)
    values = [f"crash-{i:04d}".encode() for i in range(total)]
    delivered = produce_values(broker.bootstrap, topic, values)

    check_survivor_takes_over_a_killed_member(
        broker.bootstrap, topic, group, partitions, delivered, total, tmp_path, b_joins, SESSION_TIMEOUT_S,
        {"group.protocol": "consumer"}, protocol="consumer")


def test_admin_client_lists_and_describes_a_consumer_protocol_group(broker):
    partitions = 4
    topic = unique_topic("kip848-admin")
    group, classic_group = new_group(), new_group()
    create_topic(broker.bootstrap, topic, partitions)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    classic = group_consumer(broker.bootstrap, classic_group)  # for contrast: a classic group, same topic
    classic.subscribe([topic])
    members = [RecordingMember(name, broker.bootstrap, group, topic, protocol="consumer", **{"client.id": name})
               for name in ("a", "b")]
    try:
        wait_until(lambda: all(len(m.assigned) == 2 for m in members), 20,
                   lambda: f"two members with two partitions each: {[m.history() for m in members]}")
        deadline = time.monotonic() + 20
        while len(classic.assignment()) < partitions:
            assert time.monotonic() < deadline, "the classic consumer got no assignment within 20s"
            classic.poll(0.1)

        listed = listed_groups(broker.bootstrap)
        assert listed[group].type == ConsumerGroupType.CONSUMER, listed[group]
        assert listed[group].state == ConsumerGroupState.STABLE, listed[group]
        assert not listed[group].is_simple_consumer_group
        assert listed[classic_group].type == ConsumerGroupType.CLASSIC, listed[classic_group]
        only_consumer = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(timeout=10).valid
        assert group in {g.group_id for g in only_consumer}
        assert classic_group not in {g.group_id for g in only_consumer}

        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert described.type == ConsumerGroupType.CONSUMER
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor == "uniform"
        assert len({m.member_id for m in described.members}) == 2
        by_client = {m.client_id: {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
                     for m in described.members}
        assert by_client == {m.name: {(topic, p) for p in m.assigned} for m in members}, (
            by_client, [m.history() for m in members])
        for m in described.members:
            target = {(tp.topic, tp.partition) for tp in m.target_assignment.topic_partitions}
            assert target == by_client[m.client_id], "a stable group's target assignment is its assignment"
    finally:
        for m in members:
            m.close()
        classic.close()

    wait_until(lambda: listed_groups(broker.bootstrap)[group].state == ConsumerGroupState.EMPTY, 10,
               lambda: f"the group to be Empty after its members left: {listed_groups(broker.bootstrap)[group]}")
    described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    assert described.state == ConsumerGroupState.EMPTY and not described.members, described
    assert described.type == ConsumerGroupType.CONSUMER


def test_committed_offsets_of_a_consumer_protocol_group_survive_a_clean_restart(broker):
    """A member commits, the broker restarts (SIGTERM): the member, still running, gets its partitions
    back and reads only what is new; after it leaves, a new member resumes where it committed."""
    partitions = 3
    topic = unique_topic("kip848-restart")
    group = new_group()
    create_topic(broker.bootstrap, topic, partitions)
    first = [f"first-{i:04d}".encode() for i in range(300)]
    produce_values(broker.bootstrap, topic, first)

    survivor = group_consumer(broker.bootstrap, group, "consumer")
    survivor.subscribe([topic])
    try:
        got = poll_values([survivor], len(first), timeout=30, settle=0.5)[id(survivor)]
        assert sorted(m.value() for m in got) == sorted(first)
        survivor.commit(asynchronous=False)
        ends = {p: sum(1 for m in got if m.partition() == p) for p in range(partitions)}
        assert committed_offsets(broker.bootstrap, group) == {(topic, p): ends[p] for p in range(partitions)}

        broker.stop()
        broker.start()

        assert committed_offsets(broker.bootstrap, group) == {(topic, p): ends[p] for p in range(partitions)}
        assert listed_groups(broker.bootstrap)[group].type == ConsumerGroupType.CONSUMER
        second = [f"second-{i:04d}".encode() for i in range(100)]
        produce_values(broker.bootstrap, topic, second)
        got = poll_values([survivor], len(second), timeout=30, settle=1.5)[id(survivor)]
        assert sorted(m.value() for m in got) == sorted(second), (
            f"after the restart the member re-read {len([m for m in got if m.value().startswith(b'first-')])} "
            f"committed messages")
        survivor.commit(asynchronous=False)
        resume_at = committed_offsets(broker.bootstrap, group)
    finally:
        survivor.close()
    assert resume_at == {(topic, p): ends[p] + sum(1 for m in got if m.partition() == p) for p in range(partitions)}

    broker.stop()
    broker.start()
    assert committed_offsets(broker.bootstrap, group) == resume_at
    third = [f"third-{i:04d}".encode() for i in range(100)]
    delivered = produce_values(broker.bootstrap, topic, third)
    fresh = group_consumer(broker.bootstrap, group, "consumer")
    fresh.subscribe([topic])
    try:
        got = poll_values([fresh], len(third), timeout=30, settle=1.5)[id(fresh)]
    finally:
        fresh.close()
    assert sorted(m.value() for m in got) == sorted(third), "the new member re-read committed messages"
    first = {}
    for m in got:
        assert m.offset() == delivered.ok[m.value()][1]
        first.setdefault(m.partition(), m.offset())
    assert first == {p: resume_at[(topic, p)] for p in first}, f"resumed at {first}, committed {resume_at}"
