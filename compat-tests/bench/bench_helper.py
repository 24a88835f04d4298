#!/usr/bin/env python3
"""Small helpers for bench.sh (standard library only).

Subcommands:
  freeport                       print a free TCP port on 127.0.0.1
  start LOG TIMEOUT -- CMD...    spawn CMD (stdout+stderr -> LOG), then send
                                 ApiVersions v0 requests over a raw socket until
                                 one is answered; prints "PID STARTUP_MS"
                                 (time from just before spawn to the first
                                 answered request, monotonic clock). The address
                                 probed is taken from the CMD's --listen value.
  probe HOST:PORT [TIMEOUT]      one ApiVersions round trip; prints RTT in ms
  delete-topic HOST:PORT TOPIC   DeleteTopics v1 request for TOPIC over a raw
                                 socket; exits non-zero (and prints the
                                 error_code) unless the broker answers 0
  produce-summary LOG            parse rdkafka_performance -P output
  consume-summary LOG            parse rdkafka_performance -C output
  pct FILE                       latency file (one value in microseconds per
                                 line) -> "COUNT P50 P99 P999 MAX" in ms
  rss PID                        prints "VmRSS_kB VmHWM_kB" from /proc/PID/status
  cpu PID                        prints the CPU time (user + system, seconds)
                                 PID has used so far, from /proc/PID/stat, or NA
  steal                          prints the steal time of all CPUs so far (seconds)
  range VALUE...                 prints "MIN-MAX, median MEDIAN (n=N)" of the values
  stop PID [TIMEOUT]             SIGTERM, then waits for PID to exit (a broker
                                 detached by `start`); SIGKILL after TIMEOUT s (30)

The other benchmark scripts import percentile, cpu_seconds, steal_seconds, memory_kib and
open_fds from here, so every figure they print is computed the same way.
"""

import math
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ports import free_port  # noqa: E402


def percentile(values, q):
    """Nearest-rank percentile (q in 0..1): the smallest value with at least q of
    the samples at or below it; NaN for no samples."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = int(math.ceil(q * len(s) - 1e-9))
    return s[min(len(s), max(1, k)) - 1]


def cpu_seconds(pid):
    """CPU time (user + system, seconds) PID has used so far, from /proc/PID/stat."""
    with open("/proc/%s/stat" % pid) as f:
        stat = f.read()
    # fields after the parenthesised command name; utime and stime are fields 14
    # and 15 of the whole line (11 and 12 after the name)
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_seconds():
    """CPU time the hypervisor has given to others while this machine's CPUs wanted to run
    (all CPUs, seconds so far), from /proc/stat: on a shared VM, a run with much of it was
    slowed by other tenants, not by the broker."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal ...
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def memory_kib(pid):
    """(VmRSS, VmHWM) of PID in KiB, from /proc/PID/status."""
    out = {}
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out["VmRSS"], out["VmHWM"]


def open_fds(pid):
    return len(os.listdir("/proc/%s/fd" % pid))


def api_versions_request(correlation_id):
    client_id = b"strata-bench"
    # Request header v1: api_key INT16, api_version INT16, correlation_id INT32,
    # client_id NULLABLE_STRING. ApiVersions v0 has an empty body.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return buf


def api_versions_once(host, port, timeout):
    """Returns True if a well-formed ApiVersions v0 answer came back."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(api_versions_request(7))
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        if size < 6 or size > 1 << 20:
            raise ValueError("bad response size %d" % size)
        payload = recv_exact(s, size)
        corr, err = struct.unpack(">ih", payload[:6])
        if corr != 7:
            raise ValueError("correlation id %d != 7" % corr)
        if err != 0:
            raise ValueError("ApiVersions error_code %d" % err)
        return True


def delete_topics_request(correlation_id, topics, timeout_ms):
    client_id = b"strata-bench"
    # Request header v1 as above, api_key 20 (DeleteTopics), api_version 1.
    # Body v1: topic_names ARRAY(STRING) (INT32 count, then INT16 length +
    # bytes each), timeout_ms INT32.
    body = struct.pack(">hhih", 20, 1, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", len(topics))
    for t in topics:
        name = t.encode()
        body += struct.pack(">h", len(name)) + name
    body += struct.pack(">i", timeout_ms)
    return struct.pack(">i", len(body)) + body


def delete_topic_once(host, port, topic, timeout):
    """Returns the error_code the broker gave for TOPIC (0 = deleted)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(delete_topics_request(9, [topic], int(timeout * 1000)))
        (size,) = struct.unpack(">i", recv_exact(s, 4))
        if size < 12 or size > 1 << 20:
            raise ValueError("bad response size %d" % size)
        payload = recv_exact(s, size)
        # Response: correlation_id INT32; body v1: throttle_time_ms INT32,
        # responses ARRAY(name STRING, error_code INT16).
        corr, _throttle, count = struct.unpack(">iii", payload[:12])
        if corr != 9:
            raise ValueError("correlation id %d != 9" % corr)
        pos = 12
        for _ in range(count):
            (nlen,) = struct.unpack(">h", payload[pos:pos + 2])
            pos += 2
            name = None
            if nlen >= 0:
                name = payload[pos:pos + nlen].decode(errors="replace")
                pos += nlen
            (err,) = struct.unpack(">h", payload[pos:pos + 2])
            pos += 2
            if name == topic:
                return err
        raise ValueError("no result for topic %r in DeleteTopics response" % topic)


def split_hostport(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def cmd_freeport():
    print(free_port())


def cmd_start(argv):
    log, timeout = argv[0], float(argv[1])
    if argv[2] != "--":
        sys.exit("usage: start LOG TIMEOUT -- CMD...")
    cmd = argv[3:]
    listen = None
    for i, a in enumerate(cmd):
        if a == "--listen" and i + 1 < len(cmd):
            listen = cmd[i + 1]
        elif a.startswith("--listen="):
            listen = a.split("=", 1)[1]
    if not listen:
        sys.exit("start: no --listen in command")
    host, port = split_hostport(listen)
    logf = open(log, "ab")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = t0 + timeout
    last_err = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print("%d -1" % proc.pid)
            sys.stderr.write("broker exited with code %s during startup\n" % proc.returncode)
            sys.exit(2)
        try:
            api_versions_once(host, port, 1.0)
            t1 = time.monotonic()
            print("%d %.1f" % (proc.pid, (t1 - t0) * 1000.0))
            return
        except (OSError, ValueError, ConnectionError) as e:
            last_err = e
            time.sleep(0.002)
    print("%d -1" % proc.pid)
    sys.stderr.write("no ApiVersions answer within %.0fs: %s\n" % (timeout, last_err))
    sys.exit(3)


def cmd_probe(argv):
    host, port = split_hostport(argv[0])
    timeout = float(argv[1]) if len(argv) > 1 else 2.0
    t0 = time.monotonic()
    api_versions_once(host, port, timeout)
    print("%.2f" % ((time.monotonic() - t0) * 1000.0))


def cmd_delete_topic(argv):
    if len(argv) != 2:
        sys.exit("usage: delete-topic HOST:PORT TOPIC")
    host, port = split_hostport(argv[0])
    err = delete_topic_once(host, port, argv[1], 30.0)
    if err != 0:
        print("DeleteTopics %s: error_code %d" % (argv[1], err))
        sys.exit(1)


PROD_RE = re.compile(
    r"^% (\d+) messages produced \((\d+) bytes\), (\d+) delivered "
    r"\(offset (-?\d+), (\d+) failed\) in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s")
CONS_RE = re.compile(
    r"^% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)")


def last_line_match(rx, text):
    """The match of the last line of `text` that `rx` matches, or None."""
    found = None
    for line in text.splitlines():
        found = rx.match(line) or found
    return found


def last_match(path, rx):
    with open(path, errors="replace") as f:
        return last_line_match(rx, f.read())


BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PERF_BIN = os.path.join(BENCH_DIR, ".cache", "bin", "rdkafka_performance")


def rdkafka_performance(args, timeout):
    """Runs librdkafka's rdkafka_performance (built by bench.sh --build-only when missing)
    with `args`; returns what it printed."""
    if not os.path.exists(PERF_BIN):
        subprocess.run([os.path.join(BENCH_DIR, "bench.sh"), "--build-only"], check=True)
    done = subprocess.run([PERF_BIN, *args], capture_output=True, text=True, timeout=timeout)
    return done.stdout + done.stderr


def timed_read(bootstrap, topic, count, server_cpu):
    """(MB/s, server CPU s, steal s) of one read of partition 0 of `topic` from its
    beginning by `rdkafka_performance -C` with the client's defaults; `server_cpu()` gives
    the CPU seconds the server has used so far."""
    cpu0, steal0 = server_cpu(), steal_seconds()
    out = rdkafka_performance(["-C", "-t", topic, "-b", bootstrap, "-p", "0", "-o", "beginning",
                               "-c", str(count), "-e"], 900)
    cpu, steal = server_cpu() - cpu0, steal_seconds() - steal0
    m = last_line_match(CONS_RE, out)
    if m is None or int(m.group(1)) != count:
        raise RuntimeError(f"read of {count} messages did not complete:\n{out[-2000:]}")
    return float(m.group(5)), cpu, steal


def cmd_produce_summary(argv):
    """-> "DELIVERED FAILED MS MSGS_PER_S MB_PER_S" or "NA"."""
    m = last_match(argv[0], PROD_RE)
    if not m:
        print("NA")
        return
    produced, _bytes, delivered, _off, failed, ms, mps, mbs = m.groups()
    print(delivered, failed, ms, mps, mbs)


def cmd_consume_summary(argv):
    """-> "MSGS MS MSGS_PER_S MB_PER_S" or "NA"."""
    m = last_match(argv[0], CONS_RE)
    if not m:
        print("NA")
        return
    msgs, _bytes, ms, mps, mbs = m.groups()
    print(msgs, ms, mps, mbs)


def cmd_pct(argv):
    vals = []
    try:
        with open(argv[0]) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        vals.append(int(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    if not vals:
        print("0 NA NA NA NA")
        return
    vals.sort()

    def q(p):
        return percentile(vals, p) / 1000.0

    print("%d %.2f %.2f %.2f %.2f" % (len(vals), q(0.50), q(0.99), q(0.999), vals[-1] / 1000.0))


def cmd_rss(argv):
    try:
        rss, hwm = memory_kib(argv[0])
    except (OSError, KeyError, ValueError):
        rss = hwm = "NA"
    print(rss, hwm)


def cmd_cpu(argv):
    try:
        print("%.2f" % cpu_seconds(argv[0]))
    except (OSError, ValueError, IndexError):
        print("NA")


def cmd_steal(argv):
    try:
        print("%.2f" % steal_seconds())
    except (OSError, ValueError):
        print("NA")


def cmd_range(argv):
    v = sorted(float(x) for x in argv)
    if not v:
        print("no values")
        return
    print("%.0f-%.0f, median %.0f (n=%d)" % (v[0], v[-1], statistics.median(v), len(v)))


def cmd_stop(argv):
    pid, timeout = int(argv[0]), float(argv[1]) if len(argv) > 1 else 30.0
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        sys.stderr.write("pid %d still running %.0f s after SIGTERM; killed\n" % (pid, timeout))
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "freeport":
        cmd_freeport()
    elif cmd == "start":
        cmd_start(argv)
    elif cmd == "probe":
        cmd_probe(argv)
    elif cmd == "delete-topic":
        cmd_delete_topic(argv)
    elif cmd == "produce-summary":
        cmd_produce_summary(argv)
    elif cmd == "consume-summary":
        cmd_consume_summary(argv)
    elif cmd == "pct":
        cmd_pct(argv)
    elif cmd == "rss":
        cmd_rss(argv)
    elif cmd == "cpu":
        cmd_cpu(argv)
    elif cmd == "steal":
        cmd_steal(argv)
    elif cmd == "range":
        cmd_range(argv)
    elif cmd == "stop":
        cmd_stop(argv)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
