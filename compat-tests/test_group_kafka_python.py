"""kafka-python (3.0.12) group members joining and leaving while messages arrive.

Each member is a KafkaConsumer (group_id, subscribe, enable_auto_commit=False) polled by its own
thread; it "processes" a message by writing it down and commits what it processed when partitions
are revoked and when it closes. In kafka-python 3 the rebalance listener runs on the client's IO
thread, where a blocking commit() is refused ("Cannot block on net.run() from the IO thread"),
so the listener is the documented AsyncConsumerRebalanceListener and awaits commit_async().

- test_kafka_python_group_churn_processes_every_message_once: three members over a 6-partition
  topic (two start, a third joins after a quarter of 20,000 messages, the first leaves after half,
  messages keep coming during each change): every message processed once, none twice; then new members of the same group read
  only messages produced after the others left.
"""

from __future__ import annotations

import threading
import time
import uuid

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata

from clients import check_group_churn, check_group_resumes, create_topic, run_group_churn, unique_topic


class KafkaPythonMember:
    """A kafka-python group member in a thread, with the interface run_group_churn() expects:
    .assignment, .records [(partition, offset, value)], .stop(), .kill(), .describe()."""

    def __init__(self, name: str, bootstrap: str, group: str, topic: str):
        self.name = name
        self.records: list[tuple[int, int, bytes]] = []
        self.events: list[tuple] = []         # (kind, detail, monotonic time)
        self.assignment: set[int] = set()
        self.commit_errors: list[str] = []
        self.crash: BaseException | None = None
        self.closed = False
        self._processed = {}                  # TopicPartition -> next offset to process (owned partitions)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id=f"kp-{name}",
                                       enable_auto_commit=False, auto_offset_reset="earliest",
                                       session_timeout_ms=10000, heartbeat_interval_ms=500, max_poll_records=200)
        self._consumer.subscribe([topic], listener=self._Listener(self))
        self.thread = threading.Thread(target=self._run, name=f"kp-{name}", daemon=True)
        self.thread.start()

    def _event(self, kind, detail=None):
        self.events.append((kind, detail, time.monotonic()))

    async def _commit(self, partitions, why):
        with self._lock:
            offsets = {tp: OffsetAndMetadata(self._processed[tp], "", -1)
                       for tp in partitions if tp in self._processed}
        if not offsets:
            return
        try:
            await self._consumer.commit_async(offsets)
            self._event("commit", (why, {tp.partition: o.offset for tp, o in offsets.items()}))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.commit_errors.append(f"{why}: {e!r}")
            self._event("commit-failed", (why, repr(e)))

    class _Listener(AsyncConsumerRebalanceListener):
        def __init__(self, member):
            self.member = member

        async def on_partitions_revoked(self, revoked):
            m = self.member
            await m._commit(revoked, "revoke")
            with m._lock:
                for tp in revoked:
                    m._processed.pop(tp, None)
            m.assignment = m.assignment - {tp.partition for tp in revoked}
            m._event("revoked", sorted(tp.partition for tp in revoked))

        async def on_partitions_assigned(self, assigned):
            m = self.member
            m.assignment = m.assignment | {tp.partition for tp in assigned}
            m._event("assigned", sorted(tp.partition for tp in assigned))

        async def on_partitions_lost(self, lost):
            # evicted from the group: a commit would be refused; the next owner re-reads
            m = self.member
            with m._lock:
                for tp in lost:
                    m._processed.pop(tp, None)
            m.assignment = m.assignment - {tp.partition for tp in lost}
            m._event("lost", sorted(tp.partition for tp in lost))

    def _run(self):
        consumer = self._consumer
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=200)
                with self._lock:
                    for tp, records in batches.items():
                        for r in records:
                            self.records.append((r.partition, r.offset, r.value))
                            self._processed[tp] = r.offset + 1
            # commit at close (from this thread: a blocking commit is fine here)
            with self._lock:
                offsets = {tp: OffsetAndMetadata(o, "", -1) for tp, o in self._processed.items()}
            if offsets:
                consumer.commit(offsets)
                self._event("commit", ("close", {tp.partition: o.offset for tp, o in offsets.items()}))
            consumer.close(autocommit=False)   # revokes (the listener commits again) and leaves the group
            self.assignment = set()
            self.closed = True
            self._event("closed")
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.crash = e
            self._event("crash", repr(e))
        finally:
            self._done.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Leave the group cleanly (commit, close) and assert it did."""
        self._stop.set()
        assert self._done.wait(timeout), f"{self.name} did not close within {timeout}s\n{self.describe()}"
        self.thread.join(5)
        assert self.crash is None and self.closed, f"{self.name} did not close cleanly\n{self.describe()}"
        assert not self.commit_errors, f"{self.name}: commits failed\n{self.describe()}"

    def kill(self) -> None:
        if not self._done.is_set():
            self._stop.set()
            self._done.wait(30)

    def describe(self, events: int = 40) -> str:
        t0 = self.events[0][2] if self.events else 0.0
        shown = "\n".join(f"    +{t - t0:6.2f}s {kind} {detail if detail is not None else ''}"
                          for kind, detail, t in self.events[-events:])
        return (f"--- {self.name}: {len(self.records)} messages processed, owns {sorted(self.assignment)}, "
                f"crash {self.crash!r}, failed commits {self.commit_errors}; last events:\n{shown}")


def test_kafka_python_group_churn_processes_every_message_once(strata):
    topic = unique_topic("kp-churn")
    group = f"kp-churn-{uuid.uuid4().hex[:8]}"
    create_topic(strata.bootstrap, topic, 6)

    def start_member(name):
        return KafkaPythonMember(name, strata.bootstrap, group, topic)

    run = run_group_churn(strata.bootstrap, topic, start_member)
    check_group_churn(run)
    for m in run.members:
        assert [kind for kind, _, _ in m.events].count("commit") >= 1, m.describe()
        assert "lost" not in [kind for kind, _, _ in m.events], m.describe()
    # two consumers restarted in the same group: nothing already committed comes back
    check_group_resumes(strata.bootstrap, topic, start_member, members=2)
