"""How fast the client can consume on this machine at all (a benchmark, not a test).

    STRATA_BIN=target/release/strata compat-tests/.venv/bin/python -u \\
        compat-tests/bench/fetch_ceiling.py [GB] [ROUNDS]

A broker's part in a consume run is to answer each Fetch with bytes it already has. This
script measures what `rdkafka_performance -C` (librdkafka, the client's defaults) reaches
against the broker, and against a server that does the least any broker could: a replay
of answers recorded earlier, each found by its request's bytes and sent from one file in
the page cache with one `send` for its first 8 bytes (length and correlation id) and one
`sendfile` for the rest, from a blocking socket (no event loop) on a thread of its own.

1. A broker with its defaults takes GB gigabytes (default 3) of 1 KiB messages (acks=-1,
   one partition, `rdkafka_performance -P`).
2. The topic is read once through a recording proxy: every request's answer goes into the
   store, keyed by the request's bytes with the correlation id left out (librdkafka sends
   the same bytes for the same fetch position).
3. ROUNDS rounds (default 4), alternating which goes first: two reads of the whole topic
   from the broker itself, and two through the replay (which forwards to the broker any
   request it has no answer for; the count of those is printed).

Reported: MB/s of each read with the steal time during it and the server's CPU time (the
broker's, or this process's for the replay), then per side their range and median. The broker is restarted for each side, advertising the address the client is to
use. Data and the store go under TMPDIR.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench_helper import (CONS_RE, PROD_RE, api_versions_once, cpu_seconds,  # noqa: E402
                          recv_exact, steal_seconds)
from conftest import free_port  # noqa: E402

PERF = HERE / ".cache" / "bin" / "rdkafka_performance"
# Request header: length INT32, api_key INT16, api_version INT16, correlation_id INT32.
CORRELATION = slice(8, 12)


def read_frame(sock: socket.socket) -> bytes | None:
    """One length-prefixed frame, prefix included; None at a clean end of stream."""
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            if head:
                raise ConnectionError("connection closed inside a frame")
            return None
        head += chunk
    (size,) = struct.unpack(">i", head)
    if size < 0 or size > 256 << 20:
        raise ValueError(f"bad frame size {size}")
    return head + recv_exact(sock, size)


def key_of(request: bytes) -> bytes:
    return request[:8] + b"\0\0\0\0" + request[12:]


class Proxy:
    """Listens on a port; records answers (forwarding everything to the broker) or replays
    them (forwarding only requests it has no answer for)."""

    def __init__(self, port: int, upstream: tuple[str, int], store: pathlib.Path):
        self.port, self.upstream = port, upstream
        self.store = open(store, "a+b")
        self.index: dict[bytes, tuple[int, int]] = {}
        self.replaying = False
        self.forwarded = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            while (request := read_frame(client)) is not None:
                found = self.index.get(key_of(request)) if self.replaying else None
                if found is not None:
                    at, size = found
                    client.sendall(struct.pack(">i", size - 4) + request[CORRELATION],
                                   socket.MSG_MORE)
                    sent = 8
                    while sent < size:
                        n = os.sendfile(client.fileno(), self.store.fileno(), at + sent, size - sent)
                        if n == 0:
                            raise ConnectionError("store ends early")
                        sent += n
                    continue
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                upstream.sendall(request)
                answer = read_frame(upstream)
                if answer is None:
                    return
                client.sendall(answer)
                with self.lock:
                    if self.replaying:
                        self.forwarded += 1
                    else:
                        self.store.seek(0, os.SEEK_END)
                        at = self.store.tell()
                        self.store.write(answer)
                        self.store.flush()
                        self.index[key_of(request)] = (at, len(answer))
        except (ConnectionError, OSError):
            pass
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def close(self) -> None:
        self.listener.close()


def start_broker(binary: str, port: int, advertised: int, data: pathlib.Path,
                 log: pathlib.Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [binary, "--listen", f"127.0.0.1:{port}", "--advertised-listener",
         f"127.0.0.1:{advertised}", "--data-dir", str(data), "--http-listen", "none"],
        stdin=subprocess.DEVNULL, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if api_versions_once("127.0.0.1", port, 1.0):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"broker did not answer; see {log}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def perf(args: list[str]) -> str:
    done = subprocess.run([str(PERF), *args], capture_output=True, text=True, timeout=900)
    return done.stdout + done.stderr


def last(rx, out: str):
    found = None
    for line in out.splitlines():
        found = rx.match(line) or found
    return found


def server_cpu(broker: subprocess.Popen | None) -> float:
    """CPU seconds used so far by the broker, or by this process (the replay's threads)."""
    if broker is not None:
        return cpu_seconds(broker.pid)
    t = os.times()
    return t.user + t.system


def read_topic(port: int, count: int, broker: subprocess.Popen | None) -> tuple[float, float, float]:
    """(MB/s, steal s, server CPU s) of one read of the topic from its beginning through
    `port`, served by `broker` or, for None, by the replay."""
    steal0, cpu0 = steal_seconds(), server_cpu(broker)
    out = perf(["-C", "-t", "read", "-b", f"127.0.0.1:{port}", "-p", "0", "-o", "beginning",
                "-c", str(count), "-e"])
    steal, cpu = steal_seconds() - steal0, server_cpu(broker) - cpu0
    m = last(CONS_RE, out)
    if m is None or int(m.group(1)) != count:
        raise RuntimeError(f"read of {count} messages did not complete:\n{out[-2000:]}")
    return float(m.group(5)), steal, cpu


def main() -> None:
    gb = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    binary = os.environ.get("STRATA_BIN", "target/release/strata")
    if not PERF.exists():
        subprocess.run([str(HERE / "bench.sh"), "--build-only"], check=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="strata-ceiling-", dir=os.environ.get("TMPDIR")))
    data, log = work / "data", work / "broker.log"
    data.mkdir()
    broker_port, proxy_port = free_port(), free_port()
    count = int(gb * 1e9 / 1024)
    print(f"machine: {os.cpu_count()} cores; broker {binary}; data in {work}")
    results: dict[str, list[float]] = {"broker": [], "replay": []}
    cpus: dict[str, list[float]] = {"broker": [], "replay": []}
    proxy = None
    try:
        broker = start_broker(binary, broker_port, broker_port, data, log)
        try:
            out = perf(["-P", "-t", "read", "-b", f"127.0.0.1:{broker_port}", "-p", "0",
                        "-s", "1024", "-c", str(count), "-X", "acks=-1"])
            if (m := last(PROD_RE, out)) is None or int(m.group(3)) != count:
                raise RuntimeError(f"produce did not complete:\n{out[-2000:]}")
        finally:
            stop(broker)
        proxy = Proxy(proxy_port, ("127.0.0.1", broker_port), work / "answers")
        broker = start_broker(binary, broker_port, proxy_port, data, log)
        try:
            recorded = read_topic(proxy_port, count, broker)[0]
        finally:
            stop(broker)
        proxy.replaying = True
        print(f"recorded {len(proxy.index)} answers ({recorded:.0f} MB/s through the recording proxy)")
        for i in range(rounds):
            for side in (["broker", "replay"] if i % 2 == 0 else ["replay", "broker"]):
                advertised = broker_port if side == "broker" else proxy_port
                broker = start_broker(binary, broker_port, advertised, data, log)
                try:
                    server = broker if side == "broker" else None
                    reads = [read_topic(advertised, count, server) for _ in range(2)]
                finally:
                    stop(broker)
                results[side] += [mbs for mbs, _, _ in reads]
                cpus[side] += [cpu for _, _, cpu in reads]
                shown = ", ".join(f"{mbs:.0f} (steal {st:.2f} s, server CPU {cpu:.2f} s)"
                                  for mbs, st, cpu in reads)
                print(f"round {i + 1} {side:6} MB/s: {shown}", flush=True)
        print(f"requests the replay had no answer for (forwarded): {proxy.forwarded}")
    finally:
        if proxy is not None:
            proxy.close()
        shutil.rmtree(work, ignore_errors=True)
    print()
    for side, v in results.items():
        if v:
            c = cpus[side]
            print(f"{side:6} {min(v):.0f}-{max(v):.0f} MB/s, median {statistics.median(v):.0f} "
                  f"(n={len(v)}); server CPU per read {min(c):.2f}-{max(c):.2f} s, "
                  f"median {statistics.median(c):.2f}")


if __name__ == "__main__":
    main()
