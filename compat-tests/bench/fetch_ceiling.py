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
import sys
import tempfile
import threading

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import kafka_wire  # noqa: E402
from bench_helper import (PROD_RE, cpu_seconds, last_line_match,  # noqa: E402
                          rdkafka_performance, timed_read)
from conftest import StrataBroker, free_port  # noqa: E402

# Request header: length INT32, api_key INT16, api_version INT16, correlation_id INT32.
CORRELATION = slice(8, 12)


def read_frame(sock: socket.socket) -> bytes:
    """One length-prefixed frame, prefix included (`ConnectionError` once the peer closes)."""
    payload = kafka_wire.recv_frame(sock)
    return struct.pack(">i", len(payload)) + payload


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
            while True:
                request = read_frame(client)
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
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def close(self) -> None:
        self.listener.close()


def replay_cpu() -> float:
    """CPU seconds this process (the replay's threads) has used so far."""
    t = os.times()
    return t.user + t.system


def main() -> None:
    gb = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    binary = pathlib.Path(os.environ.get("STRATA_BIN", "target/release/strata")).resolve()
    work = pathlib.Path(tempfile.mkdtemp(prefix="strata-ceiling-", dir=os.environ.get("TMPDIR")))
    data, log = work / "data", work / "broker.log"
    data.mkdir()
    broker_port, proxy_port = free_port(), free_port()
    count = int(gb * 1e9 / 1024)
    print(f"machine: {os.cpu_count()} cores; broker {binary}; data in {work}")
    results: dict[str, list[float]] = {"broker": [], "replay": []}
    cpus: dict[str, list[float]] = {"broker": [], "replay": []}
    proxy = None

    def broker_on(advertised: int) -> StrataBroker:
        """The broker, started with Metadata naming `advertised` as its address."""
        return StrataBroker(binary, broker_port, data, log, ("--http-listen", "none"),
                            advertised_port=advertised).start()

    def broker_cpu(broker: StrataBroker):
        return lambda: cpu_seconds(broker.proc.pid)

    try:
        broker = broker_on(broker_port)
        try:
            out = rdkafka_performance(["-P", "-t", "read", "-b", broker.bootstrap, "-p", "0",
                                       "-s", "1024", "-c", str(count), "-X", "acks=-1"], 900)
            if (m := last_line_match(PROD_RE, out)) is None or int(m.group(3)) != count:
                raise RuntimeError(f"produce did not complete:\n{out[-2000:]}")
        finally:
            broker.shutdown_quietly()
        proxy = Proxy(proxy_port, ("127.0.0.1", broker_port), work / "answers")
        broker = broker_on(proxy_port)
        try:
            recorded = timed_read(f"127.0.0.1:{proxy_port}", "read", count, broker_cpu(broker))[0]
        finally:
            broker.shutdown_quietly()
        proxy.replaying = True
        print(f"recorded {len(proxy.index)} answers ({recorded:.0f} MB/s through the recording proxy)")
        for i in range(rounds):
            for side in (["broker", "replay"] if i % 2 == 0 else ["replay", "broker"]):
                advertised = broker_port if side == "broker" else proxy_port
                broker = broker_on(advertised)
                try:
                    server_cpu = broker_cpu(broker) if side == "broker" else replay_cpu
                    reads = [timed_read(f"127.0.0.1:{advertised}", "read", count, server_cpu)
                             for _ in range(2)]
                finally:
                    broker.shutdown_quietly()
                results[side] += [mbs for mbs, _, _ in reads]
                cpus[side] += [cpu for _, cpu, _ in reads]
                shown = ", ".join(f"{mbs:.0f} (steal {st:.2f} s, server CPU {cpu:.2f} s)"
                                  for mbs, cpu, st in reads)
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
