"""Test infrastructure for tiered storage: an S3-compatible object store and a breakable link to it.

    MotoServer      a `moto_server` subprocess on a loopback port (an in-memory S3)
    S3Bucket        one bucket on it, with a boto3 client to look inside
    TcpProxy        an in-process TCP forwarder whose link can be cut (RST), stalled (silent) and restored
    make_s3_client  a boto3 S3 client with explicit credentials, path-style addressing, no env proxies
    tier_config     writes the broker's `--config` YAML (tier store none | local | s3, plus kafka props)

The fixtures that use these live in conftest.py (`moto`, `s3_bucket`, `tcp_proxy`).
Everything here stays on 127.0.0.1: the proxy refuses non-loopback targets.
"""

from __future__ import annotations

import http.client
import ipaddress
import itertools
import json
import os
import pathlib
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

from ports import free_port

ACCESS_KEY_ID = "test"
SECRET_ACCESS_KEY = "test"
REGION = "us-east-1"
DEFAULT_PREFIX = "strata"
MOTO_READY_TIMEOUT_S = 30.0
MOTO_STOP_TIMEOUT_S = 10.0

HERE = pathlib.Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------- boto3

def make_s3_client(endpoint: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                   max_attempts: int = 3):
    """A boto3 S3 client for `endpoint` with the test credentials, path-style, and no proxies from the env.

    For "fail fast" checks use e.g. connect_timeout=1, read_timeout=2, max_attempts=1 (no retries).
    """
    import boto3  # lazy: collecting the rest of the suite must not need boto3
    from botocore.config import Config

    config = Config(
        region_name=REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        proxies={},  # an explicit (empty) mapping: HTTP(S)_PROXY from the environment is not used
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=REGION,
        config=config,
    )


# ---------------------------------------------------------------------------------------------- moto

def moto_server_binary() -> pathlib.Path:
    """`moto_server` from the venv running pytest, else compat-tests/.venv."""
    candidates = [pathlib.Path(sys.executable).parent / "moto_server", HERE / ".venv" / "bin" / "moto_server"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(f"moto_server not found (looked at {', '.join(map(str, candidates))}): "
                            f"install compat-tests/requirements.txt into compat-tests/.venv")


class MotoServer:
    """A `moto_server -H 127.0.0.1 -p PORT` subprocess; its output goes to `log_path`."""

    def __init__(self, log_path: pathlib.Path, binary: pathlib.Path | None = None):
        self.binary = binary or moto_server_binary()
        self.log_path = pathlib.Path(log_path)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, attempts: int = 3) -> "MotoServer":
        last_error: Exception | None = None
        for _ in range(attempts):  # the free port can be taken between probe and bind: try another one
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                log.write(f"\n===== moto_server on port {self.port}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [str(self.binary), "-H", "127.0.0.1", "-p", str(self.port)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"})  # request lines reach the log at once
            try:
                self._wait_ready()
                return self
            except RuntimeError as e:
                last_error = e
                self.stop()
        raise RuntimeError(f"moto_server did not start: {last_error}")

    def _wait_ready(self) -> None:
        """Any HTTP answer on / counts: moto answers ListBuckets there."""
        deadline = time.monotonic() + MOTO_READY_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with status {self.proc.returncode}\n{self.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
            try:
                conn.request("GET", "/")
                conn.getresponse().read()
                return
            except (OSError, http.client.HTTPException) as e:
                last_error = e
            finally:
                conn.close()
            time.sleep(0.1)
        raise RuntimeError(f"moto_server did not answer HTTP on {self.endpoint} within "
                           f"{MOTO_READY_TIMEOUT_S}s (last error: {last_error!r})\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it hangs. Never raises."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=MOTO_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def reset(self) -> None:
        """Drops every bucket and object on the server (moto's own reset API)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10.0)
        try:
            conn.request("POST", "/moto-api/reset")
            conn.getresponse().read()
        finally:
            conn.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no moto_server log)"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)


class S3Bucket:
    """One bucket on the moto server plus a boto3 client for it."""

    def __init__(self, endpoint: str, bucket: str, client):
        self.endpoint = endpoint
        self.bucket = bucket
        self.client = client

    @property
    def port(self) -> int:
        """The object store's port (for tcp_proxy("127.0.0.1", s3_bucket.port))."""
        return int(self.endpoint.rsplit(":", 1)[1].split("/", 1)[0])

    @classmethod
    def create(cls, endpoint: str, name: str | None = None) -> "S3Bucket":
        client = make_s3_client(endpoint)
        bucket = name or f"strata-test-{uuid.uuid4().hex[:16]}"
        client.create_bucket(Bucket=bucket)  # us-east-1: no CreateBucketConfiguration
        return cls(endpoint, bucket, client)

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key under `prefix`, sorted (all pages)."""
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)

    def list_objects(self, prefix: str = "") -> dict[str, int]:
        """key -> size in bytes for every object under `prefix`."""
        out: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.update({obj["Key"]: obj["Size"] for obj in page.get("Contents", [])})
        return out

    def get(self, key: str, byte_range: str | None = None) -> bytes:
        kwargs = {"Range": byte_range} if byte_range else {}
        return self.client.get_object(Bucket=self.bucket, Key=key, **kwargs)["Body"].read()

    def put(self, key: str, body: bytes, **kwargs) -> dict:
        return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **kwargs)

    def wait_for_keys(self, predicate, timeout: float = 30.0, prefix: str = "", interval: float = 0.2) -> list[str]:
        """Polls list_keys(prefix) until predicate(keys) is true; returns the keys, or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            keys = self.list_keys(prefix)
            if predicate(keys):
                return keys
            if time.monotonic() >= deadline:
                raise TimeoutError(f"after {timeout}s the keys under {prefix!r} in {self.bucket} are {keys}")
            time.sleep(interval)

    def destroy(self) -> None:
        """Best effort: abort multipart uploads, delete all objects, delete the bucket. Never raises."""
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket):
                for up in page.get("Uploads", []):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
            keys = self.list_keys()
            for i in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=self.bucket,
                                           Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
            self.client.delete_bucket(Bucket=self.bucket)
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------- TCP proxy

def _loopback_address(host: str) -> str:
    """host resolved to an IPv4/IPv6 loopback address; anything else is refused."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = ipaddress.ip_address(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0])
    if not addr.is_loopback:
        raise ValueError(f"tcp_proxy only forwards to loopback addresses, not {host!r} ({addr})")
    return str(addr)


def _reset_and_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so the peer gets an RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Link:
    """One client connection and its upstream connection, pumped by one thread."""

    POLL_S = 0.05
    SEND_TIMEOUT_S = 10.0

    def __init__(self, proxy: "TcpProxy", client: socket.socket, upstream: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.reset = threading.Event()  # set by cut(): end with RSTs on both sides
        self.parked = threading.Event()  # set while stall() holds this link: it forwards nothing
        self.thread = threading.Thread(target=self._run, name=f"tcp-proxy-{proxy.port}-link", daemon=True)

    def _run(self) -> None:
        peer = {self.client: self.upstream, self.upstream: self.client}
        readers = [self.client, self.upstream]
        for s in readers:
            s.settimeout(self.SEND_TIMEOUT_S)
        abort = False
        try:
            while readers and not self.reset.is_set() and not self.proxy._closed.is_set():
                if self.proxy._stalled.is_set():  # hold both sockets open, read and send nothing
                    self.parked.set()
                    time.sleep(self.POLL_S)
                    continue
                self.parked.clear()  # before select: a stall() that sees `parked` gets no more bytes
                ready, _, _ = select.select(readers, [], [], self.POLL_S)
                for s in ready:
                    data = s.recv(65536)
                    if data:
                        peer[s].sendall(data)
                        self.proxy._count(s is self.client, len(data))
                    else:  # EOF one way: pass the half-close on, keep the other direction going
                        readers.remove(s)
                        try:
                            peer[s].shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
        except OSError:
            abort = True  # one side reset or timed out: reset the other
        finally:
            if abort or self.reset.is_set():
                _reset_and_close(self.client)
                _reset_and_close(self.upstream)
            else:
                self.client.close()
                self.upstream.close()
            self.proxy._forget(self)


class TcpProxy:
    """A TCP forwarder on 127.0.0.1:port -> target (loopback only), running in background threads.

    cut()     resets every live connection (RST both ways) and resets each new one right after accept,
              until restore(). Returns once the live connections are gone.
    stall()   a black hole that keeps connections: live and new connections stay open (new ones are
              accepted and connected upstream) but no byte is forwarded either way, until restore().
              Returns once every live connection has stopped forwarding. Clients see their requests
              hang (read timeouts), not errors. cut() while stalled resets everything as usual.
    restore() ends cut and stall: new connections are forwarded again, and stalled connections
              resume where they stopped (bytes sent meanwhile are delivered then; a side that gave up
              and closed meanwhile has its close passed on).
    close()   stops listening and resets everything; idempotent.
    """

    ACCEPT_POLL_S = 0.05
    CONNECT_TIMEOUT_S = 2.0

    def __init__(self, target_host: str, target_port: int):
        self.target_host = _loopback_address(target_host)
        self.target_port = int(target_port)
        family = socket.AF_INET6 if ":" in self.target_host else socket.AF_INET
        self._target_family = family
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(self.ACCEPT_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._cut = threading.Event()
        self._stalled = threading.Event()
        self._closed = threading.Event()
        # counters, for tests that want to see traffic went through
        self.accepted = 0
        self.refused = 0
        self.bytes_up = 0    # client -> target
        self.bytes_down = 0  # target -> client
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"tcp-proxy-{self.port}", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """http://127.0.0.1:PORT, for pointing an HTTP (S3) client through the proxy."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    @property
    def is_stalled(self) -> bool:
        return self._stalled.is_set()

    @property
    def live_connections(self) -> int:
        with self._lock:
            return len(self._links)

    def _count(self, upward: bool, n: int) -> None:
        with self._lock:
            if upward:
                self.bytes_up += n
            else:
                self.bytes_down += n

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(self.ACCEPT_POLL_S)
                continue
            if self._cut.is_set() or self._closed.is_set():
                with self._lock:
                    self.refused += 1
                _reset_and_close(client)
                continue
            try:
                upstream = socket.create_connection((self.target_host, self.target_port),
                                                    timeout=self.CONNECT_TIMEOUT_S)
            except OSError:
                with self._lock:
                    self.refused += 1
                _reset_and_close(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, upstream)
            with self._lock:
                if self._cut.is_set():  # cut() ran while we were connecting
                    self.refused += 1
                    _reset_and_close(client)
                    _reset_and_close(upstream)
                    continue
                self.accepted += 1
                self._links.add(link)
            link.thread.start()

    def _reset_all(self, timeout: float = 5.0) -> None:
        with self._lock:
            links = list(self._links)
        for link in links:
            link.reset.set()
        deadline = time.monotonic() + timeout
        for link in links:
            link.thread.join(max(0.0, deadline - time.monotonic()))

    def cut(self) -> None:
        """Reset all live connections; reset new ones until restore()."""
        with self._lock:
            self._cut.set()
        self._reset_all()

    def stall(self, timeout: float = 15.0) -> None:
        """Stop forwarding on every connection, live and new, but keep them open; until restore().

        Returns once each live connection's pump is parked (a chunk it was forwarding when called
        is finished first). Raises if one is still busy after `timeout` s (stuck in a send to a
        peer that reads nothing: _Link.SEND_TIMEOUT_S ends that).
        """
        self._stalled.set()
        with self._lock:
            links = list(self._links)
        deadline = time.monotonic() + timeout
        for link in links:
            while not (link.parked.is_set() or not link.thread.is_alive()):
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"{self!r}: a connection was still forwarding {timeout}s after stall()")
                time.sleep(0.01)

    def restore(self) -> None:
        """Ends cut() and stall(): forwarding resumes on stalled connections and new ones."""
        self._cut.clear()
        self._stalled.clear()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._acceptor.join(5.0)
        try:
            self._listener.close()
        except OSError:
            pass
        self._reset_all()

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = ("closed" if self._closed.is_set() else "cut" if self.is_cut
                 else "stalled" if self.is_stalled else "forwarding")
        return f"TcpProxy({self.address} -> {self.target_host}:{self.target_port}, {state})"


# ---------------------------------------------------------------------------------------------- broker config

_config_counter = itertools.count()


def _yaml_scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


DEFAULT_TIER_KAFKA_PROPS = {
    "log.segment.bytes": 1048576,
    "log.local.retention.ms": 1000,
}


def tier_config(tmp_path, store: str, s3_bucket: S3Bucket | None = None, *, endpoint: str | None = None,
                prefix: str = DEFAULT_PREFIX, local_dir=None, **kafka_props) -> pathlib.Path:
    """Writes a broker config YAML under tmp_path and returns its path (pass as `--config PATH`).

    store: "none" | "local" | "s3".
      local: local_dir defaults to tmp_path / "tier" (not created here: the broker should create it).
      s3:    bucket/endpoint from `s3_bucket`; `endpoint=` overrides the endpoint, e.g. a tcp_proxy's
             `.endpoint`, so the broker's S3 traffic goes through the proxy.
    kafka_props: the `kafka:` section, on top of DEFAULT_TIER_KAFKA_PROPS. Dotted names go in as
      `**{"log.segment.bytes": 4096}`; as keywords, underscores become dots (log_segment_bytes=4096).
      A value of None drops the key.
    Each call writes a new file (tier-config-N.yaml), so one test can make several.
    """
    tmp_path = pathlib.Path(tmp_path)
    lines = ["tier:", f"  store: {_yaml_scalar(store)}"]
    if store == "none":
        pass
    elif store == "local":
        lines.append(f"  local_dir: {_yaml_scalar(str(local_dir or tmp_path / 'tier'))}")
    elif store == "s3":
        if s3_bucket is None:
            raise ValueError('tier_config(store="s3") needs the s3_bucket fixture')
        lines += [
            f"  bucket: {_yaml_scalar(s3_bucket.bucket)}",
            f"  prefix: {_yaml_scalar(prefix)}",
            f"  region: {_yaml_scalar(REGION)}",
            f"  endpoint: {_yaml_scalar(endpoint or s3_bucket.endpoint)}",
            "  path_style: true",
            "  allow_http: true",
            f"  access_key_id: {_yaml_scalar(ACCESS_KEY_ID)}",
            f"  secret_access_key: {_yaml_scalar(SECRET_ACCESS_KEY)}",
        ]
    else:
        raise ValueError(f"store must be none, local or s3, not {store!r}")

    props = dict(DEFAULT_TIER_KAFKA_PROPS)
    for key, value in kafka_props.items():
        props[key if "." in key else key.replace("_", ".")] = value
    props = {k: v for k, v in props.items() if v is not None}
    if props:
        lines.append("kafka:")
        lines += [f"  {k}: {_yaml_scalar(v)}" for k, v in props.items()]

    path = tmp_path / f"tier-config-{next(_config_counter)}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
