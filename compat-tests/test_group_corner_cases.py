"""Group coordinator corner cases that frameworks lean on, as Kafka answers them.

- test_a_killed_consumer_leaves_an_empty_deletable_group: a confluent-kafka consumer
  process (classic protocol, dynamic or static member, or the KIP-848 consumer protocol)
  is killed with SIGKILL; within its session timeout (plus the coordinator's check
  interval and a margin) DescribeGroups shows the group Empty and DeleteGroups succeeds.
- test_offset_commits_are_checked_against_the_member_and_generation: raw OffsetCommit v7
  (kafka_wire) around a raw JoinGroup/SyncGroup member: REBALANCE_IN_PROGRESS between join
  and sync, ILLEGAL_GENERATION for a stale generation, UNKNOWN_MEMBER_ID for strangers and
  for a member whose session expired, and generation -1 commits accepted once the group is
  empty or does not exist yet (simple consumers, admin clients), refused otherwise.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

import kafka_wire as kw
from clients import create_topic, produce_values, unique_topic

SESSION_MS = 2000
FAST_GROUPS = ("--override", "group.min.session.timeout.ms=500",
               "--override", "group.consumer.heartbeat.interval.ms=500",
               "--override", f"group.consumer.session.timeout.ms={SESSION_MS}")

# Joins the group, reads one message (so it owns a partition), prints "READY", idles.
CONSUMER = r"""
import json, sys
from confluent_kafka import Consumer
bootstrap, topic, group, conf = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", **conf})
c.subscribe([topic])
while True:
    m = c.poll(0.2)
    if m is not None and m.error() is None:
        break
c.commit(asynchronous=False)
print("READY", flush=True)
while True:
    c.poll(0.2)
"""


def group_state(admin: AdminClient, group: str):
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return desc.state, len(desc.members)


@pytest.mark.parametrize("kind", ["classic", "static", "consumer"])
def test_a_killed_consumer_leaves_an_empty_deletable_group(strata_factory, kind):
    broker = strata_factory(*FAST_GROUPS)
    topic, group = unique_topic("corner"), f"corner-{kind}-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 2)
    produce_values(broker.bootstrap, topic, [b"x", b"y"])
    conf = {"classic": {"session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500},
            "static": {"session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500,
                       "group.instance.id": "instance-1"},
            "consumer": {"group.protocol": "consumer"}}[kind]
    proc = subprocess.Popen([sys.executable, "-c", CONSUMER, broker.bootstrap, topic, group, json.dumps(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", f"consumer did not start: {line!r} {proc.stderr.read() if proc.poll() else ''}"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        state, members = group_state(admin, group)
        assert members == 1 and state != ConsumerGroupState.EMPTY, (state, members)
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        while True:
            state, members = group_state(admin, group)
            if state == ConsumerGroupState.EMPTY:
                break
            assert time.monotonic() - killed < SESSION_MS / 1000 + 2.0, \
                f"group still {state} with {members} member(s) after the session timeout"
            time.sleep(0.1)
        assert members == 0
        elapsed = time.monotonic() - killed
        assert elapsed > SESSION_MS / 1000 - 1.0, f"the dead member was dropped too early ({elapsed:.1f}s)"
        admin.delete_consumer_groups([group])[group].result(timeout=10)
        assert group not in {g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- raw group requests

JOIN_GROUP, SYNC_GROUP, OFFSET_COMMIT = 11, 14, 8
ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, MEMBER_ID_REQUIRED = 22, 25, 27, 79


class Wire:
    """One connection speaking non-flexible request versions (header v1)."""

    def __init__(self, bootstrap: str):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=15)
        self.correlation = 0

    def call(self, api_key: int, version: int, body: bytes) -> kw.Reader:
        self.correlation += 1
        self.sock.sendall(kw.frame(kw.header_v1(api_key, version, self.correlation) + body))
        r = kw.Reader(kw.recv_frame(self.sock))
        assert r.int32() == self.correlation
        return r

    def join(self, group: str, member_id: str, session_ms: int) -> tuple[int, int, str]:
        """JoinGroup v5; returns (error, generation, member id)."""
        meta = struct.pack(">hi", 0, 1) + kw.string("t") + struct.pack(">i", -1)
        body = (kw.string(group) + struct.pack(">ii", session_ms, 10_000) + kw.string(member_id)
                + kw.string(None) + kw.string("consumer") + struct.pack(">i", 1)
                + kw.string("range") + struct.pack(">i", len(meta)) + meta)
        r = self.call(JOIN_GROUP, 5, body)
        r.int32()  # throttle
        error, generation = r.int16(), r.int32()
        r.string()  # protocol
        r.string()  # leader
        return error, generation, r.string()

    def sync(self, group: str, generation: int, member_id: str) -> int:
        """SyncGroup v3, the leader assigning itself nothing; returns the error."""
        body = (kw.string(group) + struct.pack(">i", generation) + kw.string(member_id) + kw.string(None)
                + struct.pack(">i", 1) + kw.string(member_id) + struct.pack(">i", 0))
        r = self.call(SYNC_GROUP, 3, body)
        r.int32()
        return r.int16()

    def commit(self, group: str, generation: int, member_id: str, offset: int = 1) -> int:
        """OffsetCommit v7 of one partition; returns its error."""
        body = (kw.string(group) + struct.pack(">i", generation) + kw.string(member_id) + kw.string(None)
                + struct.pack(">i", 1) + kw.string("t") + struct.pack(">i", 1)
                + struct.pack(">iqi", 0, offset, -1) + kw.string(None))
        r = self.call(OFFSET_COMMIT, 7, body)
        r.int32()  # throttle
        assert r.int32() == 1
        r.string()
        assert r.int32() == 1
        r.int32()  # partition
        return r.int16()


def test_offset_commits_are_checked_against_the_member_and_generation(strata_factory):
    broker = strata_factory(*FAST_GROUPS)
    create_topic(broker.bootstrap, "t", 1)
    wire, group = Wire(broker.bootstrap), f"raw-{uuid.uuid4().hex[:6]}"

    # No group yet: a member's commit is refused (it must rejoin); an anonymous one creates it.
    assert wire.commit(f"{group}-absent", 3, "someone") == ILLEGAL_GENERATION
    assert wire.commit(f"{group}-simple", -1, "") == 0

    error, _, member = wire.join(group, "", 1000)
    assert error == MEMBER_ID_REQUIRED
    error, generation, member = wire.join(group, member, 1000)
    assert error == 0
    # Joined but not synced: the assignment is not known yet.
    assert wire.commit(group, generation, member) == REBALANCE_IN_PROGRESS
    assert wire.sync(group, generation, member) == 0
    assert wire.commit(group, generation, member) == 0
    assert wire.commit(group, generation - 1, member) == ILLEGAL_GENERATION
    assert wire.commit(group, generation + 1, member) == ILLEGAL_GENERATION
    assert wire.commit(group, generation, "stranger") == UNKNOWN_MEMBER_ID
    assert wire.commit(group, -1, "") == UNKNOWN_MEMBER_ID  # the group has a member

    # The member stops heartbeating: after its session it is gone and the group is empty.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    deadline = time.monotonic() + 5
    while group_state(admin, group)[0] != ConsumerGroupState.EMPTY:
        assert time.monotonic() < deadline, "the member's session never expired"
        time.sleep(0.1)
    assert wire.commit(group, generation, member) == UNKNOWN_MEMBER_ID
    assert wire.commit(group, -1, "", offset=5) == 0
    admin.delete_consumer_groups([group])[group].result(timeout=10)
