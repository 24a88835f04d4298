#!/usr/bin/env python3
"""Idle long-polling Fetch consumers for bench.sh --longpoll (standard library only).

Usage:
  longpoll_fetchers.py create HOST:PORT PREFIX COUNT
      CreateTopics v2: topics PREFIX-0 .. PREFIX-(COUNT-1), one partition each.
      Exits non-zero unless every topic is created (or already exists).
  longpoll_fetchers.py delete HOST:PORT PREFIX COUNT
      DeleteTopics v1 for the same topics. Exits non-zero unless each is
      deleted (or does not exist).
  longpoll_fetchers.py poll HOST:PORT PREFIX COUNT MAX_WAIT_MS READY_FILE
      Opens COUNT TCP connections; connection i fetches topic PREFIX-i,
      partition 0 with Fetch v4 (replica_id -1, max_wait_ms MAX_WAIT_MS,
      min_bytes 1, isolation_level 0) from the partition's end, reads the
      response and sends the next one, until SIGTERM or SIGINT. Once every
      connection has had one answer, it writes READY_FILE. On stop it prints
      one summary line:
        longpoll: conns=N fetches=F errors=E early=K mean_wait_ms=W;
                  while measuring: M fetches in S s = R/s; cpu_s=C [first_error=...]
      where `early` counts fetches answered in less than 90% of MAX_WAIT_MS
      (no data arrives on these topics, so each should wait the full time),
      "while measuring" is the time from READY_FILE to the stop signal, and
      cpu_s is this process's own CPU time. Exits 1 if any Fetch failed
      (non-zero error code, closed connection, malformed answer) or the stop
      came before every connection had an answer.

One asyncio loop (Protocol callbacks, no streams) and one outstanding request
per connection keep the client side cheap: 500 connections at 500 ms make
~1000 small requests a second.
"""

import asyncio
import resource
import signal
import socket
import struct
import sys
import time

from bench_helper import recv_exact

CLIENT_ID = b"strata-bench-longpoll"
API_FETCH, API_CREATE_TOPICS, API_DELETE_TOPICS = 1, 19, 20
ERR_TOPIC_ALREADY_EXISTS, ERR_UNKNOWN_TOPIC = 36, 3
BATCH = 100  # topics per CreateTopics / DeleteTopics request


def split_hostport(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def kstring(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request(api_key, version, corr, body):
    """Size-prefixed request with header v1 (non-flexible versions only)."""
    head = struct.pack(">hhih", api_key, version, corr, len(CLIENT_ID)) + CLIENT_ID
    return struct.pack(">i", len(head) + len(body)) + head + body


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        vals = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return vals if len(vals) > 1 else vals[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode(errors="replace")
        self.pos += n
        return s

    def skip(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated response")
        self.pos += n


def round_trip(sock, req, corr):
    sock.sendall(req)
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    r = Reader(recv_exact(sock, size))
    if r.take(">i") != corr:
        raise ValueError("correlation id mismatch")
    return r


def topic_names(prefix, count):
    return ["%s-%d" % (prefix, i) for i in range(count)]


def cmd_create(addr, prefix, count):
    names = topic_names(prefix, count)
    failed = []
    with socket.create_connection(split_hostport(addr), timeout=60) as s:
        for start in range(0, len(names), BATCH):
            chunk = names[start:start + BATCH]
            # CreateTopics v2: topics ARRAY(name, num_partitions INT32,
            # replication_factor INT16, assignments ARRAY, configs ARRAY),
            # timeout_ms INT32, validate_only BOOLEAN
            body = struct.pack(">i", len(chunk))
            for n in chunk:
                body += kstring(n) + struct.pack(">ihii", 1, 1, 0, 0)
            body += struct.pack(">ib", 30000, 0)
            corr = start + 1
            r = round_trip(s, request(API_CREATE_TOPICS, 2, corr, body), corr)
            # response v2: throttle_time_ms, topics ARRAY(name, error_code, error_message)
            r.take(">i")
            for _ in range(r.take(">i")):
                name, err, msg = r.string(), r.take(">h"), r.string()
                if err not in (0, ERR_TOPIC_ALREADY_EXISTS):
                    failed.append("%s: error_code %d %s" % (name, err, msg or ""))
    if failed:
        sys.exit("CreateTopics failed for %d topics, first: %s" % (len(failed), failed[0]))


def cmd_delete(addr, prefix, count):
    names = topic_names(prefix, count)
    failed = []
    with socket.create_connection(split_hostport(addr), timeout=60) as s:
        for start in range(0, len(names), BATCH):
            chunk = names[start:start + BATCH]
            # DeleteTopics v1: topic_names ARRAY(STRING), timeout_ms INT32
            body = struct.pack(">i", len(chunk)) + b"".join(kstring(n) for n in chunk)
            body += struct.pack(">i", 30000)
            corr = start + 1
            r = round_trip(s, request(API_DELETE_TOPICS, 1, corr, body), corr)
            # response v1: throttle_time_ms, responses ARRAY(name, error_code)
            r.take(">i")
            for _ in range(r.take(">i")):
                name, err = r.string(), r.take(">h")
                if err not in (0, ERR_UNKNOWN_TOPIC):
                    failed.append("%s: error_code %d" % (name, err))
    if failed:
        sys.exit("DeleteTopics failed for %d topics, first: %s" % (len(failed), failed[0]))


def fetch_v4(corr, topic, offset, max_wait_ms):
    # Fetch v4: replica_id INT32, max_wait_ms INT32, min_bytes INT32,
    # max_bytes INT32, isolation_level INT8, topics ARRAY(topic STRING,
    # partitions ARRAY(partition INT32, fetch_offset INT64, partition_max_bytes INT32))
    body = struct.pack(">iiiib", -1, max_wait_ms, 1, 1 << 20, 0)
    body += struct.pack(">i", 1) + kstring(topic)
    body += struct.pack(">iiqi", 1, 0, offset, 1 << 20)
    return request(API_FETCH, 4, corr, body)


def parse_fetch_v4(r, topic):
    """-> (error_code, high_watermark) of partition 0 of TOPIC."""
    r.take(">i")  # throttle_time_ms
    result = None
    for _ in range(r.take(">i")):
        name = r.string()
        for _ in range(r.take(">i")):
            index, err, hw, _lso = r.take(">ihqq")
            aborted = r.take(">i")
            if aborted > 0:
                r.skip(16 * aborted)  # producer_id INT64, first_offset INT64
            nrec = r.take(">i")
            if nrec > 0:
                r.skip(nrec)
            if name == topic and index == 0:
                result = (err, hw)
    if result is None:
        raise ValueError("no partition 0 of %s in the Fetch response" % topic)
    return result


class Stats:
    def __init__(self, count):
        self.count = count
        self.fetches = 0
        self.errors = 0
        self.early = 0
        self.wait_total = 0.0
        self.first_error = None
        self.unanswered = set(range(count))
        self.all_answered = asyncio.Event()

    def fail(self, what):
        self.errors += 1
        if self.first_error is None:
            self.first_error = what


class Poller(asyncio.Protocol):
    """One connection, one outstanding Fetch at a time. A Protocol rather
    than streams: less work per response, so the client stays cheap."""

    def __init__(self, i, topic, max_wait_ms, stats, stopping):
        self.i, self.topic, self.max_wait_ms = i, topic, max_wait_ms
        self.stats, self.stopping = stats, stopping
        self.early_s = 0.9 * max_wait_ms / 1000.0
        self.offset, self.corr = 0, 0
        self.buf = bytearray()
        self.transport = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.send()

    def send(self):
        if self.stopping.is_set():
            self.transport.close()
            return
        self.corr += 1
        self.sent = time.monotonic()
        self.transport.write(fetch_v4(self.corr, self.topic, self.offset, self.max_wait_ms))

    def data_received(self, data):
        self.buf += data
        if len(self.buf) < 4:
            return
        (size,) = struct.unpack_from(">i", self.buf)
        if len(self.buf) < 4 + size:
            return
        payload = bytes(self.buf[4:4 + size])
        del self.buf[:4 + size]
        took = time.monotonic() - self.sent
        st = self.stats
        try:
            r = Reader(payload)
            if r.take(">i") != self.corr:
                raise ValueError("correlation id mismatch")
            err, hw = parse_fetch_v4(r, self.topic)
        except (ValueError, struct.error) as e:
            st.fail("%s: bad Fetch response: %s" % (self.topic, e))
            self.transport.close()
            return
        st.fetches += 1
        st.wait_total += took
        if took < self.early_s:
            st.early += 1
        if self.i in st.unanswered:
            st.unanswered.discard(self.i)
            if not st.unanswered:
                st.all_answered.set()
        if err != 0:
            st.fail("%s: Fetch error_code %d" % (self.topic, err))
            # don't spin on errors
            asyncio.get_running_loop().call_later(self.max_wait_ms / 1000.0, self.send)
            return
        if hw > self.offset:
            self.offset = hw  # keep fetching at the end: the fetch stays idle
        self.send()

    def connection_lost(self, exc):
        if not self.stopping.is_set():
            self.stats.fail("%s: connection lost (%s)" % (self.topic, exc or "closed by peer"))
        if not self.closed.done():
            self.closed.set_result(None)


async def cmd_poll(addr, prefix, count, max_wait_ms, ready_file):
    host, port = split_hostport(addr)
    loop = asyncio.get_running_loop()
    stats = Stats(count)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pollers = []
    for i, name in enumerate(topic_names(prefix, count)):
        _, proto = await loop.create_connection(
            lambda i=i, name=name: Poller(i, name, max_wait_ms, stats, stop), host, port)
        pollers.append(proto)
    ready_task = asyncio.create_task(stats.all_answered.wait())
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({ready_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    t_ready = time.monotonic()
    at_ready = stats.fetches
    if ready_task.done():
        with open(ready_file, "w") as f:
            f.write("ready\n")
        await stop_task
    else:
        ready_task.cancel()
    secs = time.monotonic() - t_ready
    during = stats.fetches - at_ready
    for p in pollers:
        p.transport.close()
    await asyncio.gather(*(p.closed for p in pollers))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    line = ("longpoll: conns=%d fetches=%d errors=%d early=%d mean_wait_ms=%.0f; "
            "while measuring: %d fetches in %.1f s = %.0f/s; cpu_s=%.2f" % (
                count, stats.fetches, stats.errors, stats.early,
                1000.0 * stats.wait_total / max(stats.fetches, 1),
                during, secs, during / max(secs, 1e-9), ru.ru_utime + ru.ru_stime))
    if stats.first_error:
        line += " first_error=%s" % stats.first_error.replace(" ", "_")
    print(line, flush=True)
    return 1 if stats.errors or not ready_task.done() else 0


def main():
    argv = sys.argv[1:]
    if len(argv) == 4 and argv[0] in ("create", "delete"):
        fn = cmd_create if argv[0] == "create" else cmd_delete
        fn(argv[1], argv[2], int(argv[3]))
    elif len(argv) == 6 and argv[0] == "poll":
        sys.exit(asyncio.run(cmd_poll(argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
