#!/usr/bin/env python3
"""Connections at scale and hostile clients: the broker's memory, measured.

Usage (from the repository, with the compat-tests venv for the second part):
  compat-tests/bench/connections.py [--connections 10000] [--skip-idle] [--skip-hostile]

Starts target/release/strata (or $STRATA_BIN) on a free port with a fresh data directory
for each part, and prints its figures.

1. Idle connections: opens N TCP connections, each with a real Kafka ApiVersions v3 round
   trip (flexible request header, client software name and version, as librdkafka and the
   Java client send it), then leaves them idle. Prints the broker's RSS (VmRSS) before and
   after, per connection, and checks on a sample that the connections are still served.
2. Hostile clients, with the default limits (socket.request.max.bytes 100 MiB,
   queued.max.request.bytes 256 MiB): 20 connections send 100 MiB frames whole, again and
   again; 10 announce a 100 MiB frame and stall; 20 pipeline 1 MiB Fetch requests and never
   read an answer. Meanwhile a librdkafka producer and consumer move 20,000 1 KiB messages.
   Prints the broker's peak RSS (VmHWM) and the normal clients' figures.

The client side of part 1 is one asyncio loop; its own process needs N open files (the
broker raises its soft open-file limit to the hard one by itself).
"""

import argparse
import asyncio
import os
import pathlib
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "compat-tests"))
import kafka_wire  # noqa: E402
from bench_helper import memory_kib, open_fds  # noqa: E402
from conftest import free_port  # noqa: E402

CLIENT_ID = "strata-bench-connections"


def api_versions_v3(correlation_id):
    # Request header v2: api_key, api_version, correlation_id, client_id (nullable string),
    # tagged fields; body v3: client_software_name, client_software_version (compact
    # strings), tagged fields.
    head = kafka_wire.header_v2(18, 3, correlation_id, CLIENT_ID)
    body = kafka_wire.compact_string("strata-bench") + kafka_wire.compact_string("1.0") + b"\0"
    return kafka_wire.frame(head + body)


def api_versions_ok(frame, correlation_id):
    # Response header v0 (correlation id), then the v3 body starting with its error code.
    cid, error = struct.unpack(">ih", frame[:6])
    return cid == correlation_id and error == 0


class Broker:
    def __init__(self, binary, *overrides):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="strata-bench-conn-")
        self.log = open(os.path.join(self.dir, "strata.log"), "wb")
        args = [str(binary), "--listen", f"127.0.0.1:{self.port}", "--advertised-listener",
                f"127.0.0.1:{self.port}", "--data-dir", os.path.join(self.dir, "data"),
                "--http-listen", "none"]
        for o in overrides:
            args += ["--override", o]
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(api_versions_v3(1))
                    if api_versions_ok(kafka_wire.recv_frame(s), 1):
                        return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("strata did not start; see " + self.log.name)

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------- idle connections

async def open_one(port, i, sem, conns):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(api_versions_v3(i))
        await writer.drain()
        size = struct.unpack(">i", await reader.readexactly(4))[0]
        if not api_versions_ok(await reader.readexactly(size), i):
            raise RuntimeError(f"connection {i}: ApiVersions failed")
        conns.append((reader, writer))


async def still_served(conns, sample):
    for n, (reader, writer) in enumerate(conns[:: max(1, len(conns) // sample)]):
        writer.write(api_versions_v3(1_000_000 + n))
        await writer.drain()
        size = struct.unpack(">i", await reader.readexactly(4))[0]
        if not api_versions_ok(await reader.readexactly(size), 1_000_000 + n):
            return False
    return True


async def idle_part(binary, count):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    broker = Broker(binary)
    pid = broker.proc.pid
    try:
        time.sleep(0.5)
        before, _ = memory_kib(pid)
        conns = []
        sem = asyncio.Semaphore(256)
        start = time.monotonic()
        await asyncio.gather(*(open_one(broker.port, i, sem, conns) for i in range(count)))
        opened_s = time.monotonic() - start
        await asyncio.sleep(2)
        after, hwm = memory_kib(pid)
        fds = open_fds(pid)
        ok = await still_served(conns, 100)
        for _, writer in conns:
            writer.close()
        await asyncio.sleep(2)
        closed_rss, _ = memory_kib(pid)
    finally:
        broker.stop()
    per_conn = (after - before) / count
    print(f"idle connections: {count} opened in {opened_s:.1f} s (each with an ApiVersions v3 round trip), "
          f"broker open files {fds}")
    print(f"  broker RSS before {before / 1024:.1f} MiB, with them open {after / 1024:.1f} MiB "
          f"(peak {hwm / 1024:.1f} MiB), after they closed {closed_rss / 1024:.1f} MiB")
    print(f"  per connection: {per_conn:.2f} KiB; a sample of 100 still served: {'yes' if ok else 'NO'}")
    return ok


# ------------------------------------------------------------------------------- hostile clients

def fetch_v4(correlation_id, topic, max_bytes):
    t = topic.encode()
    body = struct.pack(">iiiib", -1, 0, 0, max_bytes, 0)
    body += struct.pack(">ih", 1, len(t)) + t + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, max_bytes)
    head = kafka_wire.header_v1(1, 4, correlation_id, CLIENT_ID)
    return struct.pack(">i", len(head) + len(body)) + head + body


def hostile_part(binary, seconds):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    broker = Broker(binary)
    pid = broker.proc.pid
    stop = threading.Event()
    stats = {"frames": 0, "deaf_blocked": 0}
    lock = threading.Lock()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for t in ("hostile-data", "normal"):
            admin.create_topics([NewTopic(t, 1, 1)])[t].result(15)
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
        for _ in range(8000):
            p.produce("hostile-data", b"x" * 1024)
            p.poll(0)
        p.flush(60)
        time.sleep(0.5)
        base_rss, _ = memory_kib(pid)
        frame_max = 100 << 20

        def sender():
            head = kafka_wire.header_v1(18, 0, 1, CLIENT_ID)
            chunk = b"\0" * (1 << 20)
            try:
                with socket.create_connection(("127.0.0.1", broker.port)) as s:
                    while not stop.is_set():
                        s.sendall(struct.pack(">i", frame_max) + head)
                        left = frame_max - len(head)
                        while left > 0 and not stop.is_set():
                            n = min(left, len(chunk))
                            s.sendall(chunk[:n])
                            left -= n
                        with lock:
                            stats["frames"] += 1
            except OSError:
                pass

        def staller():
            with socket.create_connection(("127.0.0.1", broker.port)) as s:
                s.sendall(struct.pack(">i", frame_max) + b"\0\x12\0\0")
                stop.wait()

        def deaf():
            with socket.create_connection(("127.0.0.1", broker.port)) as s:
                s.settimeout(2)
                cid = 0
                try:
                    while not stop.is_set():
                        cid += 1
                        s.sendall(fetch_v4(cid, "hostile-data", 1 << 20))
                except socket.timeout:
                    with lock:
                        stats["deaf_blocked"] += 1
                stop.wait()

        threads = ([threading.Thread(target=sender) for _ in range(20)]
                   + [threading.Thread(target=staller) for _ in range(10)]
                   + [threading.Thread(target=deaf) for _ in range(20)])
        for t in threads:
            t.start()
        time.sleep(2)
        # The normal clients, while all of that goes on.
        start = time.monotonic()
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
        n, delivered = 20000, [0]

        def done(err, _msg):
            if err is None:
                delivered[0] += 1

        for i in range(n):
            while True:
                try:
                    p.produce("normal", b"%08d" % i + b"n" * 1016, on_delivery=done)
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        p.flush(120)
        produced_s = time.monotonic() - start
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "bench", "enable.auto.commit": False})
        c.assign([TopicPartition("normal", 0, 0)])
        got, cstart = 0, time.monotonic()
        while got < n and time.monotonic() - cstart < 120:
            got += sum(1 for m in c.consume(1000, 0.5) if not m.error())
        consumed_s = time.monotonic() - cstart
        c.close()
        remaining = seconds - (time.monotonic() - start)
        if remaining > 0:
            time.sleep(remaining)
        rss, hwm = memory_kib(pid)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        broker.stop()
    print("hostile clients (defaults: socket.request.max.bytes 100 MiB, queued.max.request.bytes 256 MiB):")
    print(f"  20 senders of 100 MiB frames ({stats['frames']} frames read), 10 stalled 100 MiB frames, "
          f"20 clients pipelining 1 MiB fetches without reading ({stats['deaf_blocked']} of 20 no longer read from)")
    print(f"  broker RSS before {base_rss / 1024:.1f} MiB, peak {hwm / 1024:.1f} MiB, at the end {rss / 1024:.1f} MiB")
    print(f"  meanwhile: {delivered[0]} of {n} 1 KiB messages produced (acks=all) in {produced_s:.1f} s, "
          f"{got} consumed in {consumed_s:.1f} s")
    return delivered[0] == n and got >= n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--hostile-seconds", type=float, default=15)
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--skip-hostile", action="store_true")
    args = ap.parse_args()
    binary = pathlib.Path(os.environ.get("STRATA_BIN") or REPO / "target" / "release" / "strata")
    print(f"machine: {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / (1 << 30):.0f} GiB; binary {binary}")
    ok = True
    if not args.skip_idle:
        ok &= asyncio.run(idle_part(binary, args.connections))
    if not args.skip_hostile:
        ok &= hostile_part(binary, args.hostile_seconds)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
