#!/usr/bin/env python3
"""Log compaction: cleaning throughput, and produce latency while the cleaner runs vs not.

Driven by compaction_bench.sh (a benchmark, not a test). Steps:
1. Starts strata with the cleaner off and fills a compacted topic (one partition, 64 MiB
   segments) with MIB MiB of 1 KiB values over KEYS keys.
2. Restarts it with the cleaner on (log.cleaner.backoff.ms=500, unthrottled unless
   --io-limit is given) and, from the restart until the broker logs the end of its first
   pass ("cleaned log", with bytes read and elapsed time), measures the produce latency of a
   second producer (acks=all, one 1 KiB message per ms) on another topic.
3. Measures the same produce latency for 8 s more with the cleaner idle.
Prints the cleaning MB/s (log bytes before cleaning / the pass's duration, and the bytes the
pass read — the dirty part twice: once for the offset map, once to rewrite it — per second;
MB = 10^6 bytes), how much the log shrank, and p50/p99 of both latency runs.
"""

import argparse
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench_helper import percentile
from ports import free_port


def start(binary, port, data, log, *overrides):
    args = [binary, "--listen", f"127.0.0.1:{port}", "--advertised-listener", f"127.0.0.1:{port}",
            "--data-dir", str(data)]
    for o in overrides:
        args += ["--override", o]
    env = dict(os.environ, RUST_LOG="info")
    proc = subprocess.Popen(args, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("broker did not start")


def fill(bootstrap, topic, mib, keys):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "1",
                  "batch.size": 1 << 20, "queue.buffering.max.kbytes": 1 << 20})
    value = b"v" * 1000
    n = mib * 1024
    for i in range(n):
        while True:
            try:
                p.produce(topic, key=b"key-%08d" % (i % keys), value=value)
                break
            except BufferError:
                p.poll(0.01)
        if i % 10000 == 0:
            p.poll(0)
    assert p.flush(120) == 0


def latency_run(bootstrap, topic, seconds, stop=None):
    """One 1 KiB message per ms for `seconds` (or until `stop()` says so, checked every
    100 ms); returns sorted latencies in ms."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    lat = []

    def done_at(sent):
        def done(err, msg):
            if not err:
                lat.append((time.perf_counter() - sent) * 1000)
        return done

    value = b"l" * 1024
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        if stop and i % 100 == 0 and stop():
            break
        target = start + i / 1000
        now = time.perf_counter()
        if now < target:
            p.poll(target - now)
            continue
        p.produce(topic, key=b"k", value=value, on_delivery=done_at(time.perf_counter()))
        i += 1
        p.poll(0)
    p.flush(30)
    return sorted(lat)


def dir_bytes(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).glob("*.log"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--keys", type=int, default=20000)
    ap.add_argument("--io-limit", default=None, help="log.cleaner.io.max.bytes.per.second")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="strata-compaction-bench."))
    data, log = work / "data", work / "broker.log"
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    proc = start(args.binary, port, data, log, "log.cleaner.enable=false")
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        cfg = {"cleanup.policy": "compact", "segment.bytes": str(64 << 20),
               "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}
        admin.create_topics([NewTopic("compacted", 1, 1, config=cfg),
                             NewTopic("latency", 1, 1)])["compacted"].result(15)
        time.sleep(1)
        t0 = time.time()
        fill(bootstrap, "compacted", args.mib, args.keys)
        print(f"filled {args.mib} MiB in {time.time() - t0:.1f} s", flush=True)
        proc.terminate()
        proc.wait(60)
        before = dir_bytes(data / "compacted-0")
        overrides = ["log.cleaner.backoff.ms=500"]
        if args.io_limit:
            overrides.append(f"log.cleaner.io.max.bytes.per.second={args.io_limit}")
        # The active (last) segment is left alone; the closed ones before it are cleaned.
        log_start = log.stat().st_size
        proc = start(args.binary, port, data, log, *overrides)
        def cleaned_line():
            text = log.read_bytes()[log_start:].decode(errors="replace")
            text = re.sub(r"\x1b\[[0-9;]*m", "", text)
            for l in text.splitlines():
                if "cleaned log" in l and "topic=compacted" in l and "groups=0" not in l:
                    return l
            return None

        # From the broker's start to the end of its first pass.
        during = latency_run(bootstrap, "latency", 600, stop=cleaned_line)
        deadline = time.time() + 600
        line = None
        while time.time() < deadline and line is None:
            line = cleaned_line()
            time.sleep(0.5)
        if line is None:
            raise SystemExit("no cleaning pass logged")
        read = int(re.search(r"bytes_read=(\d+)", line).group(1))
        ms = int(re.search(r"elapsed_ms=(\d+)", line).group(1))
        after = dir_bytes(data / "compacted-0")
        idle = latency_run(bootstrap, "latency", 8)
        print(f"cleaning: {before / 1e6:.0f} MB of log in {ms / 1000:.2f} s = {before / 1e3 / max(ms, 1):.0f} MB/s "
              f"({read / 1e6:.0f} MB read by the pass, {read / 1e3 / max(ms, 1):.0f} MB/s); "
              f"log {before / 1e6:.0f} MB -> {after / 1e6:.1f} MB")
        print(f"produce latency while cleaning:            p50 {percentile(during, 0.5):.2f} ms, "
              f"p99 {percentile(during, 0.99):.2f} ms ({len(during)} msgs)")
        print(f"produce latency cleaner idle:              p50 {percentile(idle, 0.5):.2f} ms, "
              f"p99 {percentile(idle, 0.99):.2f} ms ({len(idle)} msgs)")
    finally:
        proc.terminate()
        proc.wait(60)
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    sys.exit(main())
