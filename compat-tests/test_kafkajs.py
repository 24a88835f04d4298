"""KafkaJS (pure JavaScript client, version pinned in js/package-lock.json) against strata.

js/produce_consume.js creates a 3-partition topic with the admin client, produces keyed
messages with headers and explicit timestamps in several sends (one GZIP-compressed),
checks the produce responses' base offsets and ListOffsets, then reads everything back
with a consumer group and checks each message exactly once. js/install.sh installs
kafkajs (idempotent).

- test_kafkajs_produce: admin + producer + ListOffsets only, no consumer group.
- test_kafkajs_produce_consume: the full round trip, then the group's committed offsets
  read back through the admin client. KafkaJS has no group-less consumer, so this one
  needs strata's group coordinator (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
  OffsetFetch, OffsetCommit, LeaveGroup).
- test_kafkajs_idempotent_produce_consume: the same with kafkajs' idempotent producer
  (InitProducerId, producer id/epoch/sequence in every batch).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from clients import program_report, tail

JS_DIR = pathlib.Path(__file__).resolve().parent / "js"
COUNT = 1000
PROGRAM_TIMEOUT_S = 60  # the program's own watchdog; the subprocess gets a margin on top


def _report(cmd: list[str], proc: subprocess.CompletedProcess, summary: dict | None) -> str:
    return program_report(cmd, proc, summary, "kafkajs log")


@pytest.fixture(scope="session")
def kafkajs_installed() -> pathlib.Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found on PATH (Node.js is needed for the kafkajs tests)", pytrace=False)
    install = subprocess.run(["bash", str(JS_DIR / "install.sh")], capture_output=True, text=True, timeout=600)
    if install.returncode != 0:
        pytest.fail(f"js/install.sh failed ({install.returncode}):\n{tail(install.stdout)}\n{tail(install.stderr)}",
                    pytrace=False)
    return JS_DIR / "produce_consume.js"


def run_produce_consume(script: pathlib.Path, bootstrap: str, topic: str, *, count: int = COUNT,
                        produce_only: bool = False, idempotent: bool = False) -> dict:
    cmd = ["node", str(script), bootstrap, topic, str(count), "--timeout", str(PROGRAM_TIMEOUT_S)]
    if produce_only:
        cmd.append("--produce-only")
    if idempotent:
        cmd.append("--idempotent")
    env = dict(os.environ)
    env.setdefault("KAFKAJS_LOG_LEVEL", "info")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROGRAM_TIMEOUT_S + 30, env=env,
                              cwd=JS_DIR)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"produce_consume.js did not finish in {PROGRAM_TIMEOUT_S + 30}s\n"
                    f"stdout:\n{tail(e.stdout or '')}\nstderr:\n{tail(e.stderr or '')}", pytrace=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else None
    if summary is None:
        pytest.fail(f"no JSON summary on stdout\n{_report(cmd, proc, summary)}\nstdout:\n{tail(proc.stdout)}",
                    pytrace=False)
    offsets = summary.get("offsets", {})
    checks = [
        (proc.returncode == 0, "exit status 0"),
        (summary["ok"] is True, "summary ok"),
        (summary["produced"] == count, f"produced == {count}"),
        (summary["gzip_messages"] > 0, "a GZIP send happened"),
        (summary["mismatches"] == 0, "no mismatches"),
        (summary["problems"] == [], "no problems"),
        (len(offsets) == 3, "ListOffsets for 3 partitions"),
        (sum(o["high"] - o["low"] for o in offsets.values()) == count, f"offsets add up to {count}"),
    ]
    if not produce_only:
        checks += [
            (summary["unique_consumed"] == count, f"{count} distinct messages consumed"),
            (summary["consumed"] == count, f"{count} messages consumed in all"),
            (summary["missing"] == 0, "none missing"),
            (summary["duplicates"] == 0, "no duplicates"),
            (summary["unexpected"] == 0, "nothing unexpected"),
            (summary.get("committed") == {p: o["high"] for p, o in offsets.items()},
             "committed offsets == end offsets"),
        ]
    failed = [what for ok, what in checks if not ok]
    if failed:
        pytest.fail(f"checks not met: {'; '.join(failed)}\n{_report(cmd, proc, summary)}", pytrace=False)
    return summary


def test_kafkajs_produce(strata, kafkajs_installed):
    """CreateTopics, Produce (plain and GZIP batches, keys, headers), ListOffsets; no group."""
    run_produce_consume(kafkajs_installed, strata.bootstrap, "kafkajs-produce", produce_only=True)


def test_kafkajs_produce_consume(strata, kafkajs_installed):
    """Full round trip; the consumer side needs the group coordinator."""
    run_produce_consume(kafkajs_installed, strata.bootstrap, "kafkajs-roundtrip")


def test_kafkajs_idempotent_produce_consume(strata, kafkajs_installed):
    """Idempotent producer (InitProducerId); the consumer side needs the group coordinator."""
    summary = run_produce_consume(kafkajs_installed, strata.bootstrap, "kafkajs-idempotent", idempotent=True)
    assert summary["idempotent"] is True, summary
