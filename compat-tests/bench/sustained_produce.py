"""Sustained writes at disk speed (a benchmark, not a test).

    STRATA_BIN=target/release/strata compat-tests/.venv/bin/python -u compat-tests/bench/sustained_produce.py [GB] [RUNS]

Starts a broker with its defaults (archive on, in a local directory inside the data dir,
`flush: os`), then produces GB gigabytes (default 3) of 1 KiB messages with acks=-1 to one
partition with librdkafka's `rdkafka_performance` (built by `bench.sh --build-only`), twice
per round, RUNS rounds (default 2):

- "in memory": the kernel's dirty-page thresholds are raised for the run (vm.dirty_ratio 60,
  vm.dirty_background_ratio 50; needs root), so no writeback starts before the run ends;
- "sustained": the machine's own thresholds, so the kernel writes back during the run.

Meanwhile a second producer sends 100-byte messages at 500 a second (acks=-1) to another
topic and records each delivery's latency. Reported per run: the produce rate, the ratio
of the sustained rate to the in-memory one, the latency p50/p99/max before and after the
kernel's background writeback threshold was crossed, the peak of dirty and writeback pages,
the broker's CPU, and whether the archive kept up (segments archived). The thresholds are
restored after every run, also on an error.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench_helper import cpu_seconds, percentile  # noqa: E402
from conftest import StrataBroker, free_port, strata_binary  # noqa: E402

PERF = HERE / ".cache" / "bin" / "rdkafka_performance"
SYSCTLS = ("vm.dirty_ratio", "vm.dirty_background_ratio")


def sysctl(name: str, value: str | None = None) -> str:
    path = pathlib.Path("/proc/sys") / name.replace(".", "/")
    if value is not None:
        path.write_text(value)
    return path.read_text().strip()


def meminfo() -> dict[str, int]:
    out = {}
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0]) // 1024
    return out


def background_threshold_mib() -> int:
    for line in pathlib.Path("/proc/vmstat").read_text().splitlines():
        k, v = line.split()
        if k == "nr_dirty_background_threshold":
            return int(v) * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    return 0


class LatencyProbe(threading.Thread):
    """100-byte messages at 500/s, acks=-1; (send time, latency ms) of each delivery."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                           "enable.idempotence": False})
        self.topic = topic
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        period = 1 / 500
        nxt = time.monotonic()
        while not self.stop.is_set():
            sent = time.monotonic()

            def done(err, _msg, sent=sent):
                if err is None:
                    self.samples.append((sent, (time.monotonic() - sent) * 1000))
            self.p.produce(self.topic, b"x" * 100, on_delivery=done)
            self.p.poll(0)
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.p.flush(30)


def one_run(broker: StrataBroker, label: str, gb: float, raise_thresholds: bool, n: int) -> dict:
    topic, probe_topic = f"sustained-{n}", f"probe-{n}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1), NewTopic(probe_topic, 1, 1)]).values():
        f.result(30)
    saved = {k: sysctl(k) for k in SYSCTLS}
    subprocess.run(["sync"], check=True)
    time.sleep(2)
    try:
        if raise_thresholds:
            sysctl("vm.dirty_ratio", "60")
            sysctl("vm.dirty_background_ratio", "50")
        threshold = background_threshold_mib()
        probe = LatencyProbe(broker.bootstrap, probe_topic)
        if os.environ.get("PROBE", "1") != "0":
            probe.start()
        time.sleep(1)
        count = int(gb * 1e9 / 1024)
        cpu0 = cpu_seconds(broker.proc.pid)
        crossed_at = None
        peak_dirty = peak_wb = 0
        started = time.monotonic()
        perf = subprocess.Popen(
            [str(PERF), "-P", "-t", topic, "-b", broker.bootstrap, "-p", "0", "-s", "1024",
             "-c", str(count), "-X", "acks=-1", "-X", "linger.ms=5"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.extend(perf.stdout), daemon=True)
        reader.start()
        while perf.poll() is None:
            m = meminfo()
            peak_dirty = max(peak_dirty, m["Dirty"])
            peak_wb = max(peak_wb, m["Writeback"])
            if crossed_at is None and m["Dirty"] >= threshold:
                crossed_at = time.monotonic()
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        reader.join(10)
        cpu = cpu_seconds(broker.proc.pid) - cpu0
        time.sleep(1)
        probe.stop.set()
        if probe.is_alive():
            probe.join(60)
    finally:
        for k, v in saved.items():
            sysctl(k, v)
    text = "".join(out)
    rates = re.findall(r"delivered.*?([0-9.]+) MB/s", text)
    delivered = re.findall(r"(\d+) delivered", text)
    if not rates or not delivered or int(delivered[-1]) < count:
        raise SystemExit(f"{label}: run incomplete\n{text[-2000:]}")
    before = [ms for t, ms in probe.samples if started <= t and (crossed_at is None or t < crossed_at)]
    after = [ms for t, ms in probe.samples if crossed_at is not None and t >= crossed_at and t <= started + elapsed]
    tier = pathlib.Path(broker.data_dir) / "tier"
    archived = sum(1 for p in tier.rglob("*.log") if f"/{topic}-" in str(p))
    for f in admin.delete_topics([topic, probe_topic]).values():
        f.result(30)
    return {
        "label": label, "mbs": float(rates[-1]), "seconds": elapsed, "cpu": cpu,
        "threshold": threshold, "crossed": None if crossed_at is None else crossed_at - started,
        "peak_dirty": peak_dirty, "peak_wb": peak_wb, "before": before, "after": after,
        "archived": archived,
    }


def show(r: dict) -> None:
    def lat(v: list[float]) -> str:
        if not v:
            return "-"
        return f"p50 {statistics.median(v):.2f} p99 {percentile(v, 0.99):.2f} max {max(v):.1f} ms ({len(v)})"
    crossed = "never" if r["crossed"] is None else f"at {r['crossed']:.1f} s"
    print(f"  {r['label']:<10} {r['mbs']:7.0f} MB/s in {r['seconds']:.1f} s, broker CPU "
          f"{r['cpu']:.1f} s ({100 * r['cpu'] / r['seconds']:.0f}% of a core); dirty peak "
          f"{r['peak_dirty']} MiB, writeback peak {r['peak_wb']} MiB; background threshold "
          f"{r['threshold']} MiB crossed {crossed}; segments archived {r['archived']}")
    print(f"  {'':<10} probe latency before the threshold: {lat(r['before'])}; after: {lat(r['after'])}")


def main() -> None:
    gb = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    if not PERF.exists():
        subprocess.run([str(HERE / "bench.sh"), "--build-only"], check=True)
    binary = strata_binary()
    work = pathlib.Path(tempfile.mkdtemp(prefix="strata-sustained-", dir=os.environ.get("TMPDIR")))
    port = free_port()
    broker = StrataBroker(binary, port, work / "data", work / "broker.log")
    print(f"machine: {os.cpu_count()} cores, {meminfo()['MemTotal'] // 1024} GiB; binary {binary}")
    print(f"{gb:g} GB of 1 KiB messages, acks=-1, one partition, defaults (archive in a local "
          f"directory, flush: os); data in {work}")
    results = []
    try:
        broker.start()
        n = 0
        for i in range(rounds):
            for label, raised in (("in memory", True), ("sustained", False)):
                n += 1
                r = one_run(broker, label, gb, raised, n)
                show(r)
                results.append(r)
    finally:
        broker.shutdown_quietly()
        shutil.rmtree(work, ignore_errors=True)
    mem = [r["mbs"] for r in results if r["label"] == "in memory"]
    sus = [r["mbs"] for r in results if r["label"] == "sustained"]
    print(f"in memory {min(mem):.0f}-{max(mem):.0f} MB/s, sustained {min(sus):.0f}-{max(sus):.0f} MB/s, "
          f"sustained/in memory {100 * statistics.mean(sus) / statistics.mean(mem):.0f}%")


if __name__ == "__main__":
    main()
