"""Small helpers around confluent-kafka (librdkafka) used by several scenarios."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
from confluent_kafka import (OFFSET_BEGINNING, Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException,
                             Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 15.0) -> None:
    """Create a topic with confluent-kafka's AdminClient and wait for the result."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=timeout, request_timeout=timeout)
    futures[topic].result(timeout=timeout)
    wait_for_partitions(bootstrap, topic, partitions, timeout)


def wait_for_partitions(bootstrap: str, topic: str, partitions: int, timeout: float = 15.0) -> None:
    """Poll metadata until the topic shows `partitions` partitions, each with a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=topic, timeout=5)
        t = md.topics.get(topic)
        last = t
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 and p.error is None for p in t.partitions.values()):
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} did not show {partitions} led partitions within {timeout}s: {last!r}")


@dataclass
class Delivered:
    """What delivery reports said: per message value, (partition, offset) or the error."""
    ok: dict = field(default_factory=dict)       # value(bytes) -> (partition, offset)
    failed: dict = field(default_factory=dict)   # value(bytes) -> KafkaError

    def callback(self, err, msg):
        if err is None:
            self.ok[msg.value()] = (msg.partition(), msg.offset())
        else:
            self.failed[msg.value()] = err


def produce_all(producer: Producer, messages, delivered: Delivered, topic: str, flush_timeout: float = 60.0) -> None:
    """Produce (key, value, headers) tuples, waiting for queue room when needed, then flush."""
    for key, value, headers in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered.callback)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(flush_timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {flush_timeout}s flush"


def new_consumer(bootstrap: str, **extra) -> Consumer:
    # librdkafka insists on a group.id even for manually assigned partitions; nothing is committed.
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"compat-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(extra)
    return Consumer(conf)


def high_watermarks(bootstrap: str, topic: str, partitions, timeout: float = 10.0) -> dict[int, int]:
    consumer = new_consumer(bootstrap)
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in partitions}
    finally:
        consumer.close()


def consume_partitions(bootstrap: str, topic: str, partitions, expected: int | None = None,
                       timeout: float = 60.0, settle: float = 1.0, **consumer_conf) -> dict[int, list]:
    """Assign the partitions from the beginning and read them.

    Stops when `expected` messages arrived (then keeps polling `settle` seconds more to catch
    anything extra), or, when expected is None, when every partition reached the high watermark
    it had when reading began. Returns {partition: [Message, ...]} in arrival order.
    """
    partitions = list(partitions)
    targets = None if expected is not None else high_watermarks(bootstrap, topic, partitions)
    consumer = new_consumer(bootstrap, **consumer_conf)
    got: dict[int, list] = {p: [] for p in partitions}
    errors = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout

        def done():
            if expected is not None:
                return sum(len(v) for v in got.values()) >= expected
            return all((got[p][-1].offset() + 1 if got[p] else 0) >= targets[p] for p in partitions)

        while not done():
            if time.monotonic() > deadline:
                counts = {p: len(v) for p, v in got.items()}
                raise AssertionError(f"timed out after {timeout}s consuming {topic}: got {counts} "
                                     f"(expected {expected if expected is not None else targets}); errors: {errors[:5]}")
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        errors.append(msg.error())
                    continue
                got[msg.partition()].append(msg)
        if expected is not None and settle > 0:
            end = time.monotonic() + settle
            while time.monotonic() < end:
                for msg in consumer.consume(num_messages=1000, timeout=0.2):
                    if not msg.error():
                        got[msg.partition()].append(msg)
    finally:
        consumer.close()
    return got


def first_message(bootstrap: str, topic: str, partition: int, timeout: float = 15.0, **consumer_conf):
    """The first message a fresh consumer reads from the partition's offset 0, or None within timeout."""
    consumer = new_consumer(bootstrap, **consumer_conf)
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                return msg
        return None
    finally:
        consumer.close()


def produce_and_read_back_one(bootstrap: str, topic: str, value: bytes, timeout: float = 20.0) -> None:
    """A fresh librdkafka producer writes one message to partition 0 and a fresh consumer reads it back."""
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": int(timeout * 1000)})
    producer.produce(topic, value=value, key=b"probe", partition=0, on_delivery=delivered.callback)
    assert producer.flush(timeout) == 0, "probe message not delivered"
    assert value in delivered.ok, f"probe message failed: {delivered.failed.get(value)}"
    _, offset = delivered.ok[value]
    consumer = new_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            assert msg.offset() == offset and msg.value() == value, (
                f"read offset {msg.offset()} value {msg.value()!r}, expected offset {offset} value {value!r}")
            return
        raise AssertionError(f"probe message at {topic}/0@{offset} not readable within {timeout}s")
    finally:
        consumer.close()


def topic_id(bootstrap: str, topic: str) -> uuid.UUID:
    """The topic id the broker's metadata reports (kafka-python's admin client)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    assert described["error_code"] == 0, described
    raw = described.get("topic_id")
    tid = raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw)) if raw else None
    assert tid is not None and tid.int != 0, f"metadata gives no topic id for {topic}: {described}"
    return tid


def file_sizes(directory: pathlib.Path, suffix: str) -> list[tuple[str, int]]:
    """(name, size) of the files in `directory` ending in `suffix`. The broker deletes
    segments while it runs (retention, archiving), so a file listed may be gone when it is
    measured: such a file is left out."""
    found = []
    for p in directory.glob(f"*{suffix}"):
        try:
            found.append((p.name, p.stat().st_size))
        except FileNotFoundError:
            continue
    return found


def tail(text: str | bytes, lines: int = 80) -> str:
    if isinstance(text, bytes):  # TimeoutExpired carries bytes even with text=True
        text = text.decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def compile_java(tmp_path_factory, program_dir: pathlib.Path, sources, needed_for: str) -> str:
    """Installs program_dir's jars (its install.sh, idempotent) and compiles the sources into a
    temporary directory; returns the classpath (the jars, then the classes)."""
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found on PATH (a JDK 17 is needed for {needed_for})", pytrace=False)
    install = subprocess.run(["bash", str(program_dir / "install.sh")], capture_output=True, text=True, timeout=900)
    if install.returncode != 0:
        pytest.fail(f"{program_dir.name}/install.sh failed ({install.returncode}):\n{tail(install.stdout)}\n"
                    f"{tail(install.stderr)}", pytrace=False)
    classes = tmp_path_factory.mktemp(f"{program_dir.name}-classes")
    lib = f"{program_dir / 'lib'}{os.sep}*"
    javac = subprocess.run(["javac", "-cp", lib, "-d", str(classes), *map(str, sources)],
                           capture_output=True, text=True, timeout=300)
    if javac.returncode != 0:
        pytest.fail(f"javac failed ({javac.returncode}):\n{javac.stdout}\n{javac.stderr}", pytrace=False)
    return f"{lib}{os.pathsep}{classes}"


def run_configured_java(classpath: str, bootstrap: str, topic: str, count: int, properties: dict[str, str],
                        workdir: pathlib.Path, group: str | None = None, jvm_args: tuple[str, ...] = (),
                        timeout: int = 60) -> tuple[list[str], subprocess.CompletedProcess, dict | None]:
    """java/ConfiguredProduceConsume: the Java client creates `topic`, produces `count` messages
    and reads them back (in `group` when given), every client configured with `properties`
    (written to a properties file, as an application's config would be). Returns the command,
    the process and its JSON summary ({"ok", "produced", "consumed", "error", "phase"})."""
    java_dir = pathlib.Path(__file__).resolve().parent / "java"
    config = workdir / f"client-{uuid.uuid4().hex[:8]}.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
    cmd = ["java", f"-Dlog4j2.configurationFile={java_dir / 'log4j2.properties'}",
           f"-Dstrata.log.level={os.environ.get('STRATA_COMPAT_JAVA_LOG', 'WARN')}", *jvm_args,
           "-cp", classpath, "ConfiguredProduceConsume", "--bootstrap", bootstrap, "--topic", topic,
           "--count", str(count), "--client-config", str(config), "--timeout", str(timeout)]
    if group is not None:
        cmd += ["--group", group]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return cmd, proc, (json.loads(lines[-1]) if lines else None)


def program_report(cmd: list[str], proc: subprocess.CompletedProcess, summary: dict | None, log_name: str) -> str:
    """What a client program (js/, java/) did: exit status, JSON summary, problems, log tail."""
    problems = "\n".join(f"  - {p}" for p in (summary or {}).get("problems", []))
    rest = {k: v for k, v in (summary or {}).items() if k != "problems"}
    return (f"command: {' '.join(cmd)}\nexit status: {proc.returncode}\n"
            f"summary: {json.dumps(rest)}\nproblems:\n{problems or '  (none)'}\n"
            f"{log_name} (stderr, last lines):\n{tail(proc.stderr)}")


def wait_for(what: str, check, timeout: float = 30.0, interval: float = 0.2):
    """Polls check() -> (ok, detail) until ok and returns the detail; raises AssertionError
    with the last detail."""
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = check()
        if ok:
            return detail
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s; last seen: {detail}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------- group churn
# Shared by the group-churn tests of kafka-python (test_group_kafka_python.py), KafkaJS
# (test_group_kafkajs.py) and the Java client (test_java.py): members join and leave a group
# while a producer writes, and every message must be processed exactly once.

@contextlib.contextmanager
def producing_meanwhile(conf: dict, topic: str):
    """A producer writing b"more" to `topic` in a background thread while the block runs;
    yields its delivery errors as they come (None for each acknowledged message)."""
    stop = threading.Event()
    acked: list = []
    producer = Producer(conf)

    def keep_producing():
        while not stop.is_set():
            producer.produce(topic, value=b"more", on_delivery=lambda e, m: acked.append(e))
            producer.poll(0.05)
        producer.flush(10)

    t = threading.Thread(target=keep_producing)
    t.start()
    try:
        yield acked
    finally:
        stop.set()
        t.join(30)


def wait_until(predicate, timeout, what):
    """Poll `predicate` until true; `what` (a string, or a function giving one at failure time) names it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(0.05)


class PacedProducer:
    """A background thread that produces messages b"PREFIX-00000", b"PREFIX-00001", ... (keys
    b"key-0".."key-96", librdkafka, acks=all) in batches of `batch`, pausing `pause` seconds after
    each, so a consumer group can change while the messages arrive.

    It writes `total` messages, but never stops in the middle of something the test waits for:
    after hold_at(n) it slows down to a trickle (`trickle` messages per `pause`) once n messages
    are out, and goes on trickling — past `total` if need be — until hold_at() names a later mark
    or release() is called. So the total can end up above `total`; `.delivered.ok` (value ->
    (partition, offset)) has every message.
    """

    def __init__(self, bootstrap: str, topic: str, total: int, *, batch: int = 500, pause: float = 0.2,
                 trickle: int = 25, prefix: str = "churn"):
        self.bootstrap, self.topic, self.total = bootstrap, topic, total
        self.batch, self.pause, self.trickle, self.prefix = batch, pause, trickle, prefix
        self.delivered = Delivered()
        self.produced = 0                  # messages flushed (acknowledged) so far
        self.error: Exception | None = None
        self._hold: int | None = None      # trickle from this many messages on, until released
        self.thread = threading.Thread(target=self._run, name=f"produce-{topic}", daemon=True)

    def hold_at(self, n: int) -> None:
        self._hold = n

    def release(self) -> None:
        self._hold = None

    def start(self) -> "PacedProducer":
        self.thread.start()
        return self

    def _run(self):
        try:
            producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 5})
            i = 0
            while True:
                hold = self._hold
                if hold is None and i >= self.total:
                    break
                held = hold is not None and i >= hold
                n = self.trickle if held else min(self.batch, max(self.total - i, 0), (hold - i) if hold else self.batch)
                n = max(n, 1)
                produce_all(producer, [(f"key-{j % 97}".encode(), f"{self.prefix}-{j:05d}".encode(), None)
                                       for j in range(i, i + n)], self.delivered, self.topic, flush_timeout=30)
                i += n
                self.produced = i
                if self._hold is not None or i < self.total:
                    time.sleep(self.pause)
        except Exception as e:  # noqa: BLE001 - reported by wait_for / join
            self.error = e

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        wait_until(lambda: self.produced >= n or self.error is not None, timeout,
                   lambda: f"{n} messages to be produced (have {self.produced})")
        assert self.error is None, f"producer failed: {self.error!r}"

    def join(self, timeout: float = 60.0) -> None:
        """Release any hold, wait for the end and check every message was acknowledged."""
        self.release()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"producer still running after {timeout}s ({self.produced} produced)"
        assert self.error is None, f"producer failed: {self.error!r}"
        assert not self.delivered.failed, f"failed deliveries: {list(self.delivered.failed.items())[:3]}"
        assert len(self.delivered.ok) == self.produced >= self.total, (
            f"{len(self.delivered.ok)} of {self.produced} acknowledged, {self.total} wanted")


class JsonLinesProcess:
    """A client program in a child process that reports one JSON object per line on stdout;
    each parsed line goes to on_message(), anything else to .bad_lines. Its stderr (the
    client's log) goes to `log_path`."""

    def __init__(self, name: str, cmd: list[str], log_path, *, cwd=None, env=None):
        self.name = name
        self.cmd = cmd
        self.log_path = pathlib.Path(log_path)
        self.bad_lines: list[str] = []
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                         text=True, cwd=cwd, env=env)
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def on_message(self, obj: dict) -> None:
        raise NotImplementedError

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                self.bad_lines.append(line)
                continue
            self.on_message(obj)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class MemberProcess(JsonLinesProcess):
    """A consumer-group member in a child process (java/GroupMember.java, js/group_member.js).

    The program prints {"p": P, "o": O, "v": VALUE} for each message it processed, and
    {"event": ..., ...} for the rest (started, assigned, revoked, commit, commit-failed, closed,
    error, ...); an event with an "assignment" list says which partitions the member owns from
    then on. SIGTERM asks it to leave the group cleanly: commit, close, print {"event": "closed"}
    and exit with status 0.
    """

    def __init__(self, name: str, cmd: list[str], log_path, *, cwd=None, env=None):
        self.records: list[tuple[int, int, bytes]] = []   # (partition, offset, value), in processing order
        self.events: list[dict] = []
        self.assignment: set[int] = set()
        super().__init__(name, cmd, log_path, cwd=cwd, env=env)

    def on_message(self, obj: dict) -> None:
        if "p" in obj:
            self.records.append((obj["p"], obj["o"], obj["v"].encode()))
        else:
            self.events.append(obj)
            if "assignment" in obj:
                self.assignment = set(obj["assignment"])

    def events_of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == kind]

    def stop(self, timeout: float = 45.0) -> None:
        """SIGTERM, then assert the member left cleanly (exit status 0, a "closed" event)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout}s of SIGTERM\n{self.describe()}")
        self._reader.join(10)
        assert code == 0 and self.events_of("closed"), (
            f"{self.name} did not leave the group cleanly (exit status {code})\n{self.describe()}")

    def describe(self, events: int = 60) -> str:
        try:
            log = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            log = ""
        shown = "\n".join(f"    {json.dumps(e)}" for e in self.events[-events:])
        return (f"--- {self.name}: exit status {self.proc.poll()}, {len(self.records)} messages processed, "
                f"owns {sorted(self.assignment)}; last events:\n{shown}\n"
                + (f"  unparsable stdout lines: {self.bad_lines[:5]}\n" if self.bad_lines else "")
                + f"  stderr ({self.log_path.name}), last lines:\n{tail(log, 30)}")


@dataclass
class ChurnRun:
    topic: str
    partitions: int
    producer: PacedProducer
    members: list                      # every member that took part, in start order


def run_group_churn(bootstrap: str, topic: str, start_member, *, partitions: int = 6, total: int = 20_000,
                    pause: float = 0.2, join_timeout: float = 30.0, consume_timeout: float = 60.0) -> ChurnRun:
    """The scenario the group-churn tests share, for any kind of member.

    `start_member(name)` returns a running group member with .name, .assignment (the partitions it
    owns now), .records ([(partition, offset, value)] it processed), .stop() (leave the group cleanly,
    and assert it did), .kill() (cleanup after a failure) and .describe() (for failure messages).

    m1 and m2 split the topic's partitions; a producer writes `total` messages over several seconds;
    after a quarter of them m3 joins and must get a share; after half of them m1 leaves and m2 and
    m3 must own every partition between them; when everything has been consumed m2 and m3 leave
    too. Messages keep coming while each membership change is under way however long it takes (on
    a loaded machine a JVM can take seconds to start): the producer trickles on (past `total` if
    need be) until the change is complete. The topic must exist with `partitions` partitions.
    Check the outcome with check_group_churn().
    """
    everything = set(range(partitions))
    producer = PacedProducer(bootstrap, topic, total, pause=pause)
    members: list = []

    def owned(ms):
        return set().union(*(m.assignment for m in ms))

    def state():
        return "; ".join(f"{m.name} owns {sorted(m.assignment)}, processed {len(m.records)}" for m in members)

    try:
        m1 = start_member("m1")
        members.append(m1)
        m2 = start_member("m2")
        members.append(m2)
        wait_until(lambda: m1.assignment and m2.assignment and owned([m1, m2]) == everything, join_timeout,
                   lambda: f"m1 and m2 to split the partitions ({state()})")
        producer.hold_at(total // 4)
        producer.start()

        producer.wait_for(total // 4)
        m3 = start_member("m3")
        members.append(m3)
        producer.hold_at(total // 2)
        wait_until(lambda: m3.assignment and m1.assignment and m2.assignment
                   and owned(members) == everything, join_timeout,
                   lambda: f"m3 to get a share of the partitions ({state()})")

        producer.wait_for(total // 2)
        producer.hold_at(3 * total // 4)
        m1.stop()
        wait_until(lambda: m2.assignment and m3.assignment and owned([m2, m3]) == everything, join_timeout,
                   lambda: f"m2 and m3 to take over m1's partitions ({state()})")

        producer.join()
        wanted = set(producer.delivered.ok)

        def consumed():
            return {v for m in members for _, _, v in m.records}

        wait_until(lambda: wanted <= consumed(), consume_timeout,
                   lambda: f"every message to be consumed ({len(wanted - consumed())} of {len(wanted)} missing; {state()})")
        time.sleep(1.0)  # a message delivered twice would show up now
        m2.stop()
        m3.stop()
    except AssertionError as e:
        raise AssertionError(f"{e}\n\n" + "\n".join(m.describe() for m in members)) from None
    finally:
        for m in members:
            m.kill()
    return ChurnRun(topic, partitions, producer, members)


def check_group_churn(run: ChurnRun) -> None:
    """Every acknowledged message was processed, by one member, once, at the partition and offset its
    delivery report named; every member did some of the work."""
    placed = run.producer.delivered.ok                     # value -> (partition, offset)
    by_value: dict[bytes, list] = {}
    for m in run.members:
        for p, o, v in m.records:
            by_value.setdefault(v, []).append((m.name, p, o))
    details = "\n" + "\n".join(m.describe(events=30) for m in run.members)

    missing = sorted(set(placed) - set(by_value))
    assert not missing, (f"{len(missing)} of {len(placed)} messages never processed, e.g. "
                         f"{[(v, placed[v]) for v in missing[:5]]}{details}")
    unexpected = sorted(set(by_value) - set(placed))
    assert not unexpected, f"processed messages nobody produced: {unexpected[:5]}{details}"
    misplaced = [(v, where, placed[v]) for v, seen in by_value.items() for where in seen
                 if (where[1], where[2]) != placed[v]]
    assert not misplaced, f"messages read at another partition/offset than produced: {misplaced[:5]}{details}"
    dupes = {v: seen for v, seen in by_value.items() if len(seen) > 1}
    if dupes:
        per_partition = collections.Counter(seen[0][1] for seen in dupes.values())
        examples = [f"{v.decode()} at {seen[0][1]}/{seen[0][2]} by {[name for name, _, _ in seen]}"
                    for v, seen in sorted(dupes.items())[:8]]
        raise AssertionError(f"{len(dupes)} messages processed more than once (per partition: "
                             f"{dict(sorted(per_partition.items()))}); e.g. {examples}{details}")
    idle = [m.name for m in run.members if not m.records]
    assert not idle, f"members that processed nothing: {idle}{details}"


def check_group_resumes(bootstrap: str, topic: str, start_member, *, count: int = 60, members: int = 1,
                        timeout: float = 45.0) -> None:
    """After the group's members left: `count` new messages, then `members` new members of the same
    group must process exactly those — nothing committed before comes back."""
    fresh_producer = PacedProducer(bootstrap, topic, count, batch=count, prefix="after").start()
    fresh_producer.join()
    fresh = []
    try:
        for i in range(members):
            fresh.append(start_member(f"fresh{i + 1}"))

        def values():
            return [v for m in fresh for _, _, v in m.records]

        wait_until(lambda: set(fresh_producer.delivered.ok) <= set(values()), timeout,
                   lambda: f"the new members to process the {count} new messages (have {len(values())})")
        time.sleep(1.5)  # anything re-read from before the commit would show up now
        for m in fresh:
            m.stop()
    except AssertionError as e:
        raise AssertionError(f"{e}\n\n" + "\n".join(m.describe() for m in fresh)) from None
    finally:
        for m in fresh:
            m.kill()
    got = [v for m in fresh for _, _, v in m.records]
    old = [v for v in got if not v.startswith(b"after-")]
    assert not old, (f"the restarted group re-read {len(old)} committed messages, e.g. {old[:5]}\n"
                     + "\n".join(m.describe(events=20) for m in fresh))
    assert sorted(got) == sorted(fresh_producer.delivered.ok), (
        f"the restarted group read {len(got)} messages ({len(set(got))} distinct), expected the {count} new ones")


# ---------------------------------------------------------------------------------------------- consumer groups
# librdkafka group members for test_consumer_group.py (classic protocol) and test_consumer_protocol.py
# (KIP-848), and what the admin API says about groups and their committed offsets.
# (collections, threading and wait_until come from the group-churn section above.)

EAGER = {"partition.assignment.strategy": "range"}  # classic protocol, eager: every rebalance revokes everything first


def group_consumer(bootstrap, group, protocol="classic", **extra):
    """A subscribing consumer that commits only when told to and starts at the beginning without a commit.

    classic: session.timeout.ms 10 s, heartbeats every 500 ms. consumer (KIP-848): those two are the
    broker's (group.consumer.*) and librdkafka refuses them, as it refuses partition.assignment.strategy.
    """
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if protocol == "classic":
        conf.update({"session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    else:
        conf["group.protocol"] = protocol
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


def committed_offsets(bootstrap, group, timeout=10.0) -> dict[tuple[str, int], int]:
    """{(topic, partition): offset} of everything the group has committed (OffsetFetch for all partitions)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=timeout)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []}


def listed_groups(bootstrap, timeout=10.0) -> dict:
    """{group id: ConsumerGroupListing (.state, .type)} from ListGroups."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return {g.group_id: g for g in admin.list_consumer_groups(request_timeout=timeout).result(timeout=timeout).valid}


class PartitionOwners:
    """Which member holds each partition, as the members' own rebalance callbacks say.

    A member takes a partition in on_assign and gives it up in on_revoke (or on_lost); a partition
    handed to one member while another still holds it is an overlap: two members reading it at once.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.owner = {}
        self.overlaps = []            # (partition, holder, taker)

    def take(self, name, partitions):
        with self._lock:
            for p in partitions:
                holder = self.owner.get(p)
                if holder is not None and holder != name:
                    self.overlaps.append((p, holder, name))
                self.owner[p] = name

    def release(self, name, partitions):
        with self._lock:
            for p in partitions:
                if self.owner.get(p) == name:
                    del self.owner[p]


class RecordingMember:
    """A group member polled by its own thread: it records every message it is handed, in order,
    and commits synchronously in its revoke callback (so the next owner resumes right after).

    protocol="classic" uses the eager range assignor (on_assign gets the whole new assignment, on_revoke
    all of it); protocol="consumer" is KIP-848, where both callbacks get only the partitions that change.
    `assigned` follows either way. With `owners` (a PartitionOwners shared by the members of a group)
    every hand-over is checked against the other members' callbacks.
    """

    def __init__(self, name, bootstrap, group, topic, protocol="classic", owners=None, **extra):
        self.name = name
        self.incremental = protocol != "classic"
        strategy = {} if self.incremental else EAGER
        self.consumer = group_consumer(bootstrap, group, protocol, **strategy, **extra)
        self.owners = owners
        self.records = []             # (partition, offset, value, n-th time this member got that partition)
        self.assigned = frozenset()   # partitions currently assigned (replaced, never mutated)
        self.assign_events = []       # ("assign"|"revoke"|"lost", sorted partitions, monotonic time)
        self.generation = collections.Counter()   # partition -> how many times this member got it
        self.unowned = []             # (partition, offset) handed over while not assigned to this member
        self.commit_errors = []       # KafkaError of a failed commit on revoke
        self.commits = 0
        self.assignments = 0
        self.errors = []              # consume errors other than partition EOF
        self.crash = None
        self._stop = threading.Event()
        self._closed = threading.Event()
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _on_assign(self, consumer, partitions):
        got = {tp.partition for tp in partitions}
        if self.incremental and not got:
            return                    # librdkafka reports an empty incremental assignment now and then
        if self.owners is not None:
            self.owners.take(self.name, got)
        self.generation.update(got)
        self.assigned = frozenset(self.assigned | got if self.incremental else got)
        self.assignments += 1
        self.assign_events.append(("assign", sorted(got), time.monotonic()))

    def _on_revoke(self, consumer, partitions):
        gone = {tp.partition for tp in partitions}
        if self.incremental and not gone:
            return
        self.assign_events.append(("revoke", sorted(gone), time.monotonic()))
        try:
            consumer.commit(asynchronous=False)
            self.commits += 1
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:
                self.commit_errors.append(e.args[0])
        self.assigned = frozenset(self.assigned - gone if self.incremental else ())
        if self.owners is not None:
            self.owners.release(self.name, gone)

    def _on_lost(self, consumer, partitions):
        gone = {tp.partition for tp in partitions}
        self.assign_events.append(("lost", sorted(gone), time.monotonic()))
        self.assigned = frozenset(self.assigned - gone if self.incremental else ())
        if self.owners is not None:
            self.owners.release(self.name, gone)

    def _run(self):
        try:
            while not self._stop.is_set():
                for msg in self.consumer.consume(num_messages=500, timeout=0.1):
                    if msg.error():
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            self.errors.append(msg.error())
                        continue
                    p = msg.partition()
                    if p not in self.assigned:
                        self.unowned.append((p, msg.offset()))
                    self.records.append((p, msg.offset(), msg.value(), self.generation[p]))
            self.consumer.close()     # revokes (and so commits) then leaves the group
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.crash = e
        finally:
            self._closed.set()

    def values(self):
        return [v for _, _, v, _ in self.records]

    def history(self):
        return [(kind, parts) for kind, parts, _ in self.assign_events]

    def last_assign_time(self):
        return max(t for kind, parts, t in self.assign_events if kind == "assign")

    def close(self, timeout=30.0):
        self._stop.set()
        assert self._closed.wait(timeout), f"{self.name} did not close within {timeout}s"
        self.thread.join(5)
        assert self.crash is None, f"{self.name} crashed: {self.crash!r}"


# Consumer A, in its own process: consume everything there is, commit only the first half of each
# partition, then report and keep heartbeating until it is killed.
HALF_COMMITTING_CONSUMER = r"""
import json, sys, time
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic, group, total, extra = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "enable.auto.commit": False, **extra})
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


def start_half_committing_consumer(bootstrap, topic, group, total, log_path, conf, timeout=45.0):
    """Run HALF_COMMITTING_CONSUMER with consumer settings `conf`; returns (process, its report), the
    report being {"assigned": [...], "committed": {partition: offset}, "consumed": n}."""
    with open(log_path, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", HALF_COMMITTING_CONSUMER, bootstrap, topic, group, str(total),
                                 json.dumps(conf)], stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: ([lines.put(line) for line in proc.stdout], lines.put("")), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        line = ""
    if not line:
        proc.kill()
        proc.wait()
        raise AssertionError(f"consumer A reported nothing within {timeout}s (exit status {proc.returncode}); "
                             f"its stderr: {log_path.read_text()[-2000:]}")
    report = json.loads(line)
    report["committed"] = {int(p): o for p, o in report["committed"].items()}
    return proc, report


def check_survivor_takes_over_a_killed_member(bootstrap, topic, group, partitions, delivered, total, tmp_path,
                                              b_joins, session_timeout_s, a_conf, **b_kwargs):
    """A (its own process, settings `a_conf`) reads everything, commits half of each partition and is
    SIGKILLed. B (RecordingMember with `b_kwargs`) — started after the kill, or already sharing the
    partitions with A — gets nothing while dead A is still a member, owns every partition within the
    session timeout + 5 s, and reads exactly what A had not committed, once, from A's commits on."""
    a, report = start_half_committing_consumer(bootstrap, topic, group, total, tmp_path / "consumer_a.log", a_conf)
    b = None
    try:
        assert sorted(report["assigned"]) == list(range(partitions)), report
        assert report["consumed"] == total, report
        committed = report["committed"]

        if b_joins == "before_the_kill":
            b = RecordingMember("b", bootstrap, group, topic, **b_kwargs)
            wait_until(lambda: len(b.assigned) == partitions // 2, 30,
                       lambda: f"B to get half of the partitions from A; B's history: {b.history()}")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed_at = time.monotonic()

        if b_joins == "after_the_kill":
            b = RecordingMember("b", bootstrap, group, topic, **b_kwargs)
            time.sleep(session_timeout_s / 2)
            assert not b.assigned, f"B got {sorted(b.assigned)} while A, which owned them, was still a member"
        limit = session_timeout_s + 5.0
        wait_until(lambda: b.assigned == set(range(partitions)), limit + 1,
                   lambda: f"B to own all partitions (A was SIGKILLed, session timeout {session_timeout_s}s); "
                           f"B's history: {b.history()}")
        took = b.last_assign_time() - killed_at
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
