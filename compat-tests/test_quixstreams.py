"""quixstreams, a Python stream-processing library, runs on Strata unchanged.

- test_a_stateful_quixstreams_app_runs_and_restores_its_state: the app (quix/word_counts.py,
  in a venv of its own) creates its topics, including a compacted changelog, checks them
  with DescribeConfigs, counts 100 messages per key with RocksDB state and writes the
  counts out. Its local state is then deleted; a second run restores the counts from the
  changelog and carries on from them for 50 more messages. Run with quixstreams'
  at-least-once and exactly-once processing guarantees; with exactly-once every checkpoint
  is a transaction (outputs, changelog and input offsets together) and the outputs are
  read with read_committed.
- test_exactly_once_counts_survive_a_crash_mid_transaction: the exactly-once app is killed
  (SIGKILL) in the middle of a transaction after some checkpoints have committed; a new
  run with no local state restores from the changelog (once the broker has aborted the
  dead run's transaction) and finishes: read_committed, every key's counts are 1..20, each
  once, as if the crash had never happened.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import time

import pytest

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

HERE = pathlib.Path(__file__).resolve().parent
QUIX_PYTHON = HERE / "quix" / ".venv" / "bin" / "python"


def run_app(bootstrap: str, state_dir: pathlib.Path, produce: int, expect: int, guarantee: str) -> str:
    proc = subprocess.run([str(QUIX_PYTHON), str(HERE / "quix" / "word_counts.py"), bootstrap, str(state_dir),
                           "--produce", str(produce), "--expect", str(expect), "--timeout", "60",
                           "--guarantee", guarantee],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "quix-check"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def last_counts(bootstrap: str, expected: int) -> tuple[int, dict[str, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "quix-check", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.assign([TopicPartition("quix-counts", 0, OFFSET_BEGINNING)])
    seen, counts = 0, {}
    try:
        for _ in range(200):
            for msg in consumer.consume(500, timeout=0.5):
                assert msg.error() is None, msg.error()
                seen += 1
                counts[msg.key().decode()] = json.loads(msg.value())["count"]
            if seen >= expected:
                break
    finally:
        consumer.close()
    return seen, counts


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_stateful_quixstreams_app_runs_and_restores_its_state(strata, tmp_path, guarantee):
    state = tmp_path / "quix-state"
    assert "processed 100" in run_app(strata.bootstrap, state, produce=100, expect=100, guarantee=guarantee)
    seen, counts = last_counts(strata.bootstrap, 100)
    assert seen == 100
    assert counts == {f"w{i}": 20 for i in range(5)}

    # A fresh machine: no local state, only the changelog topic in the broker.
    subprocess.run(["rm", "-rf", str(state)], check=True)
    assert "processed 50" in run_app(strata.bootstrap, state, produce=50, expect=50, guarantee=guarantee)
    seen, counts = last_counts(strata.bootstrap, 150)
    assert seen == 150
    assert counts == {f"w{i}": 30 for i in range(5)}
    if guarantee == "exactly-once":
        # The outputs were written in transactions: their commit markers take offsets too.
        assert end_offset(strata.bootstrap, "quix-counts") > 150


def all_counts(bootstrap: str, expected: int = 0, timeout: float = 30.0) -> dict[str, list[int]]:
    """Every committed output, as the counts seen per key in offset order: what is there, or,
    with `expected`, once that many are (read_committed stops at an open transaction until
    the broker aborts it, `transaction.timeout.ms` after it began)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "quix-check", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    consumer.assign([TopicPartition("quix-counts", 0, OFFSET_BEGINNING)])
    counts: dict[str, list[int]] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                if sum(map(len, counts.values())) >= expected:
                    break
                continue
            counts.setdefault(msg.key().decode(), []).append(json.loads(msg.value())["count"])
    finally:
        consumer.close()
    return counts


def test_exactly_once_counts_survive_a_crash_mid_transaction(strata, tmp_path):
    state = tmp_path / "quix-state"
    crashed = subprocess.run([str(QUIX_PYTHON), str(HERE / "quix" / "word_counts.py"), strata.bootstrap, str(state),
                              "--produce", "100", "--crash-after", "60", "--delay", "0.02",
                              "--guarantee", "exactly-once", "--timeout", "60"],
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    committed = all_counts(strata.bootstrap)
    assert 0 < sum(map(len, committed.values())) < 60, "some checkpoints, not the open transaction, are visible"

    subprocess.run(["rm", "-rf", str(state)], check=True)
    proc = subprocess.run([str(QUIX_PYTHON), str(HERE / "quix" / "word_counts.py"), strata.bootstrap, str(state),
                           "--until-count", "20", "--guarantee", "exactly-once", "--timeout", "60"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = all_counts(strata.bootstrap, expected=100)
    assert got == {f"w{i}": list(range(1, 21)) for i in range(5)}, json.dumps([committed, got])
