"""Before and after: two broker binaries measured in turn on the produce and fetch paths
(a benchmark, not a test).

    compat-tests/.venv/bin/python -u compat-tests/bench/ab.py BEFORE AFTER [--rounds N]
        [--small N] [--large N] [--consume-gb GB] [--reads N]

On this 2-core machine one run of the same binary can differ from the next by 20% or more
(which core each thread lands on, the VM), so a change on the produce or fetch path is
judged by many short runs of both binaries, alternated, not by one run of each. Each round
runs BEFORE then AFTER, and the next round AFTER then BEFORE:

- produce: a fresh broker (its defaults, a new data dir) takes `--small` 100-byte messages
  (default 5,000,000) and then `--large` 1 KiB messages (default 1,000,000, about 1 GB, which
  stays in memory) with librdkafka's `rdkafka_performance` (acks=-1, linger.ms=5, one
  partition); reported: MB/s and the broker's CPU seconds for each;
- consume: a topic of `--consume-gb` GB of 1 KiB messages (default 3; 0 skips this), written
  once by BEFORE, is read from the beginning `--reads` times (default 3) by
  `rdkafka_performance -C` with the client's defaults, by each binary started on that data dir
  in turn; reported: MB/s and the broker's CPU seconds per read.

Prints every run and, per binary and measure, the runs' range and median, with the CPU time
the hypervisor gave to other tenants during each run (steal, from /proc/stat): a run with
much of it was slowed by the machine, not by the binary. The data dirs are
made under TMPDIR (put it on the disk the broker should use). Needs `rdkafka_performance`,
built by `bench.sh --build-only` when missing.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench_helper import (PROD_RE, cpu_seconds, last_line_match,  # noqa: E402
                          rdkafka_performance, steal_seconds, timed_read)
from conftest import StrataBroker, free_port  # noqa: E402


def produce(broker: StrataBroker, topic: str, size: int, count: int) -> tuple[float, float, float]:
    """(MB/s, broker CPU s, steal s) of one produce run."""
    cpu0, steal0 = cpu_seconds(broker.proc.pid), steal_seconds()
    out = rdkafka_performance(["-P", "-t", topic, "-b", broker.bootstrap, "-p", "0", "-s", str(size),
                "-c", str(count), "-X", "acks=-1", "-X", "linger.ms=5"], timeout=600)
    cpu, steal = cpu_seconds(broker.proc.pid) - cpu0, steal_seconds() - steal0
    m = last_line_match(PROD_RE, out)
    if m is None or int(m.group(3)) != count:
        raise RuntimeError(f"produce of {count} x {size} B did not complete:\n{out[-2000:]}")
    return float(m.group(8)), cpu, steal


def consume(broker: StrataBroker, topic: str, count: int) -> tuple[float, float, float]:
    """(MB/s, broker CPU s, steal s) of one read of the topic from its beginning."""
    return timed_read(broker.bootstrap, topic, count, lambda: cpu_seconds(broker.proc.pid))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=pathlib.Path)
    ap.add_argument("after", type=pathlib.Path)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--small", type=int, default=5_000_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    ap.add_argument("--consume-gb", type=float, default=3.0)
    ap.add_argument("--reads", type=int, default=3)
    a = ap.parse_args()
    binaries = {"before": a.before.resolve(), "after": a.after.resolve()}
    work = pathlib.Path(tempfile.mkdtemp(prefix="strata-ab-", dir=os.environ.get("TMPDIR")))
    print(f"machine: {os.cpu_count()} cores; data in {work}")
    for label, path in binaries.items():
        print(f"{label}: {path}")
    results: dict[tuple[str, str], list[float]] = {}

    def record(label: str, measure: str, mbs: float, cpu: float, steal: float) -> None:
        results.setdefault((label, f"{measure} MB/s"), []).append(mbs)
        results.setdefault((label, f"{measure} broker CPU s"), []).append(cpu)
        results.setdefault((label, f"{measure} steal s"), []).append(steal)

    def order(i: int) -> list[str]:
        return ["before", "after"] if i % 2 == 0 else ["after", "before"]

    def broker_on(label: str, data: pathlib.Path) -> StrataBroker:
        return StrataBroker(binaries[label], free_port(), data, work / f"{label}.log",
                            ("--http-listen", "none")).start()

    try:
        for i in range(a.rounds if a.small or a.large else 0):
            for label in order(i):
                data = work / "produce"
                shutil.rmtree(data, ignore_errors=True)
                data.mkdir()
                broker = broker_on(label, data)
                try:
                    small = produce(broker, "small", 100, a.small) if a.small else None
                    large = produce(broker, "large", 1024, a.large) if a.large else None
                finally:
                    broker.shutdown_quietly()
                line = f"round {i + 1} {label:6} produce:"
                for name, r in (("100 B", small), ("1 KiB", large)):
                    if r is not None:
                        record(label, f"produce {name}", *r)
                        line += f"  {name} {r[0]:8.1f} MB/s, broker {r[1]:.2f} CPU s, steal {r[2]:.2f} s"
                print(line, flush=True)
        shutil.rmtree(work / "produce", ignore_errors=True)
        if a.consume_gb > 0:
            data = work / "consume"
            data.mkdir()
            count = int(a.consume_gb * 1e9 / 1024)
            broker = broker_on("before", data)
            try:
                produce(broker, "read", 1024, count)
            finally:
                broker.shutdown_quietly()
            for i in range(a.rounds):
                for label in order(i):
                    broker = broker_on(label, data)
                    try:
                        reads = [consume(broker, "read", count) for _ in range(a.reads)]
                    finally:
                        broker.shutdown_quietly()
                    for r in reads:
                        record(label, "consume 1 KiB", *r)
                    shown = ", ".join(f"{mbs:.0f} (steal {steal:.2f} s)" for mbs, _, steal in reads)
                    print(f"round {i + 1} {label:6} consume MB/s: {shown}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'measure':32} {'before (range, median)':30} {'after (range, median)':30}")
    for measure in dict.fromkeys(m for _, m in results):
        cells = []
        for label in ("before", "after"):
            v = results.get((label, measure), [])
            d = 0 if measure.endswith("MB/s") else 2
            cells.append(f"{min(v):.{d}f}-{max(v):.{d}f}, median {statistics.median(v):.{d}f} "
                         f"(n={len(v)})" if v else "-")
        print(f"{measure:32} {cells[0]:30} {cells[1]:30}")


if __name__ == "__main__":
    main()
