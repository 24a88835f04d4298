"""Kafka Connect 4.3.0 in distributed mode runs on Strata unchanged.

connect/ConnectWorker.java starts a distributed worker as `connect-distributed.sh` does,
minus the REST server (the jars at hand lack Jetty 12's security jar), and submits
connectors through the herder, as a REST PUT would. Jars: connect/install.sh.

- test_connect_file_source_to_file_sink_survives_a_worker_restart: the worker creates its
  config, offset and status topics compacted and checks their cleanup.policy with
  DescribeConfigs; a file source connector feeds a topic that a file sink connector writes
  out. The worker is stopped, lines are appended, the worker is started again with no
  connector given: the connectors come back from the config topic, the source goes on
  from its stored offset and the sink from its group's committed offset, so the sink file
  holds every line exactly once. Run with the worker's default source delivery and with
  exactly-once source support (KIP-618: transactional source tasks, their producers fenced
  through the admin API, the config topic written transactionally by the leader).
"""

from __future__ import annotations

import pathlib
import queue
import re
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from clients import compile_java, tail, wait_until

CONNECT_DIR = pathlib.Path(__file__).resolve().parent / "connect"
LOG4J = pathlib.Path(__file__).resolve().parent / "java" / "log4j2.properties"


@pytest.fixture(scope="session")
def connect_classpath(tmp_path_factory) -> str:
    return compile_java(tmp_path_factory, CONNECT_DIR, [CONNECT_DIR / "ConnectWorker.java"], "Kafka Connect")


class Worker:
    """A ConnectWorker process; stdout lines are collected by a thread, stderr goes to a file."""

    def __init__(self, classpath: str, args: list[str], log_path: pathlib.Path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
             f"-Dlog4j2.configurationFile={LOG4J}", "-Dstrata.log.level=INFO",
             "-cp", classpath, "ConnectWorker", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 60.0) -> list[str]:
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"worker exited ({self.proc.returncode}):\n{self.log_tail()}"
                continue
            seen.append(line)
            if line == "READY":
                return seen
        pytest.fail(f"worker not ready in {timeout}s; stdout {seen}\n{self.log_tail()}", pytrace=False)

    def wait_connectors_running(self) -> None:
        """Waits for READY; the file source and sink and their tasks must be running by then."""
        ready = self.wait_ready()
        assert "CONNECTOR file-source RUNNING tasks=[RUNNING]" in ready, ready
        assert "CONNECTOR file-sink RUNNING tasks=[RUNNING]" in ready, ready

    def stop(self, timeout: float = 30.0) -> None:
        """Closes stdin: the worker stops its herder (committing offsets) and exits."""
        self.proc.stdin.close()
        assert self.proc.wait(timeout) == 0, self.log_tail()
        self.log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def log_tail(self) -> str:
        self.log.flush()
        return tail(self.log_path.read_text(errors="replace"))


def write_props(path: pathlib.Path, props: dict[str, str]) -> pathlib.Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def sink_lines(path: pathlib.Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def check_worker_log(path: pathlib.Path) -> None:
    """Connect checked its topics' cleanup.policy with DescribeConfigs (a failed check is
    logged at INFO as "Unable to use admin client to verify", a wrong policy stops the
    worker) and logged no error."""
    lines = path.read_text(errors="replace").splitlines()
    unverified = [line for line in lines if "Unable to use admin client to verify" in line]
    assert not unverified, unverified
    complaints = [line for line in lines if re.search(r"\b(WARN|ERROR)\b", line)
                  and re.search(r"cleanup\.policy|compact", line)]
    assert not complaints, complaints
    errors = [line for line in lines if re.search(r"^\S+ ERROR ", line)]
    assert not errors, errors


@pytest.mark.parametrize("source_guarantee", ["at-least-once", "exactly-once"])
def test_connect_file_source_to_file_sink_survives_a_worker_restart(strata, connect_classpath, tmp_path,
                                                                    source_guarantee):
    run = uuid.uuid4().hex[:8]
    topics = {"config": f"connect-configs-{run}", "offset": f"connect-offsets-{run}", "status": f"connect-status-{run}"}
    source_file, sink_file, data_topic = tmp_path / "in.txt", tmp_path / "out.txt", f"lines-{run}"
    worker_props = write_props(tmp_path / "worker.properties", {
        "bootstrap.servers": strata.bootstrap,
        "group.id": f"connect-{run}",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        **{f"{kind}.storage.topic": name for kind, name in topics.items()},
        **{f"{kind}.storage.replication.factor": "1" for kind in topics},
        "offset.storage.partitions": "5",
        "offset.flush.interval.ms": "500",
        "plugin.discovery": "service_load",
        # KIP-618: source records and their offsets written in one transaction per batch,
        # the task's producer fenced (FenceProducers) whenever the task moves
        **({"exactly.once.source.support": "enabled"} if source_guarantee == "exactly-once" else {}),
    })
    source = write_props(tmp_path / "source.properties", {
        "name": "file-source",
        "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "tasks.max": "1", "file": str(source_file), "topic": data_topic,
    })
    sink = write_props(tmp_path / "sink.properties", {
        "name": "file-sink",
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max": "1", "file": str(sink_file), "topics": data_topic,
    })

    def append(lines):
        with open(source_file, "a") as f:
            f.writelines(f"{line}\n" for line in lines)

    def wait_for_sink(expected):
        wait_until(lambda: sink_lines(sink_file) == expected, 30,
                   lambda: f"the sink file to hold {len(expected)} lines, it has {sink_lines(sink_file)}")

    append([f"line-{i}" for i in range(5)])
    first = Worker(connect_classpath, [str(worker_props), str(source), str(sink)], tmp_path / "worker1.log")
    try:
        first.wait_connectors_running()
        wait_for_sink([f"line-{i}" for i in range(5)])
        append([f"line-{i}" for i in range(5, 10)])
        wait_for_sink([f"line-{i}" for i in range(10)])
        first.stop()
    finally:
        first.kill()

    # Connect created its topics compacted; the broker reports them so.
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in topics.values()]
    for resource, future in admin.describe_configs(resources).items():
        assert future.result(timeout=10)["cleanup.policy"].value == "compact", resource
    check_worker_log(tmp_path / "worker1.log")

    # Lines written while no worker runs are picked up after the restart, once each.
    append([f"line-{i}" for i in range(10, 15)])
    second = Worker(connect_classpath, [str(worker_props)], tmp_path / "worker2.log")
    try:
        second.wait_connectors_running()
        wait_for_sink([f"line-{i}" for i in range(15)])
        append([f"line-{i}" for i in range(15, 20)])
        wait_for_sink([f"line-{i}" for i in range(20)])
        time.sleep(1.0)  # nothing more arrives: no line is delivered twice
        assert sink_lines(sink_file) == [f"line-{i}" for i in range(20)]
        second.stop()
    finally:
        second.kill()
    check_worker_log(tmp_path / "worker2.log")
