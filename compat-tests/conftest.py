"""Fixtures that run a real `strata` broker process for each test.

    def test_something(strata):              # a broker with default settings
        strata.bootstrap                     # "127.0.0.1:PORT"

    def test_other(strata_factory):          # a broker with extra command-line arguments
        broker = strata_factory("--flush", "always", "--override", "num.partitions=3")
        broker.stop()                        # SIGTERM, asserts exit status 0
        broker.start()                       # same port, same data dir
        broker.kill()                        # SIGKILL

The broker's stderr goes to a file in the test's tmp dir; when a test fails, the tail of
every broker log of that test is added to the failure report.
"""

from __future__ import annotations

import os
import pathlib
import resource
import signal
import socket
import subprocess
import time

import pytest

import kafka_wire
from ports import free_port  # noqa: F401  (re-exported to the tests and benchmarks)

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 10.0
# Brokers started by tests without --http-listen take any free port for /metrics, instead of
# contending for the default one.
os.environ.setdefault("STRATA_HTTP_LISTEN", "127.0.0.1:0")
STOP_TIMEOUT_S = 20.0


def strata_binary() -> pathlib.Path:
    # a relative STRATA_BIN is taken from the directory pytest runs in (brokers run in their tmp dirs)
    path = pathlib.Path(os.environ.get("STRATA_BIN") or REPO_ROOT / "target" / "release" / "strata").resolve()
    if not path.is_file():
        pytest.fail(f"strata binary not found at {path}: run `cargo build --release` or set STRATA_BIN", pytrace=False)
    return path


class StrataBroker:
    """One strata process, restartable on the same port and data directory."""

    def __init__(self, binary: pathlib.Path, port: int, data_dir: pathlib.Path, log_path: pathlib.Path,
                 extra_args: tuple[str, ...] = (), advertised_port: int | None = None):
        self.binary = binary
        self.port = port
        # the port Metadata names (a proxy in front of the broker), if not its own
        self.advertised_port = advertised_port or port
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.http_port = free_port()
        # RLIMIT_NOFILE (soft and hard) for the process, to run it under a small limit
        self.open_file_limit: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The HTTP listener (/metrics, /health, /ready)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def command(self) -> list[str]:
        http = [] if "--http-listen" in self.extra_args else ["--http-listen", f"127.0.0.1:{self.http_port}"]
        return [str(self.binary),
                "--listen", self.bootstrap,
                "--advertised-listener", f"127.0.0.1:{self.advertised_port}",
                "--data-dir", str(self.data_dir),
                *http,
                *self.extra_args]

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "StrataBroker":
        assert not self.is_running(), "broker is already running"
        self.starts += 1
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command)}\n".encode())
            log.flush()
            limit = self.open_file_limit
            preexec = None if limit is None else (
                lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, cwd=self.data_dir.parent, preexec_fn=preexec)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Poll until the port accepts a connection and answers an ApiVersions v0 request."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error: Exception | None = None
        correlation_id = 1
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"strata exited with status {self.proc.returncode} during start-up\n"
                                   f"{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    s.settimeout(2.0)
                    s.sendall(kafka_wire.api_versions_v0_request(correlation_id))
                    payload = kafka_wire.recv_frame(s)
                    if payload[:4] == correlation_id.to_bytes(4, "big"):
                        return
                    last_error = RuntimeError(f"ApiVersions answer with wrong correlation id: {payload[:16]!r}")
            except (OSError, ValueError, ConnectionError) as e:
                last_error = e
            correlation_id += 1
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"strata did not answer on {self.bootstrap} within {READY_TIMEOUT_S}s "
                           f"(last error: {last_error!r})\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait, and assert a clean exit (status 0)."""
        assert self.is_running(), "stop() on a broker that is not running"
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"strata did not exit within {timeout}s of SIGTERM\n{self.log_tail()}")
        assert code == 0, f"strata exited with status {code} after SIGTERM, expected 0\n{self.log_tail()}"
        return code

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush anything."""
        if self.is_running():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def shutdown_quietly(self) -> None:
        """Teardown: SIGTERM and wait; SIGKILL if it hangs. Never raises."""
        if not self.is_running():
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no broker log)"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)


@pytest.fixture
def strata_factory(request, tmp_path):
    """Returns start(*extra_args) -> a running StrataBroker with its own port and data dir."""
    binary = strata_binary()
    brokers: list[StrataBroker] = []
    request.node._strata_brokers = brokers

    def start(*extra_args: str) -> StrataBroker:
        n = len(brokers)
        data_dir = tmp_path / f"data{n}"
        data_dir.mkdir()
        broker = StrataBroker(binary, free_port(), data_dir, tmp_path / f"strata{n}.log", extra_args)
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.shutdown_quietly()


@pytest.fixture
def strata(strata_factory):
    """A broker with default settings."""
    return strata_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for broker in getattr(item, "_strata_brokers", []):
            state = "running" if broker.is_running() else (
                f"exited with {broker.proc.returncode}" if broker.proc else "never started")
            report.sections.append((f"strata on {broker.bootstrap} ({state})", broker.log_tail()))
        moto_server = getattr(item, "_moto_server", None)  # set by the s3_bucket fixture
        if moto_server is not None:
            report.sections.append((f"moto_server on {moto_server.endpoint}", moto_server.log_tail(30)))


# ---------------------------------------------------------------------------------------------- tiered storage
# An S3-compatible store (moto_server) and a breakable TCP link, for brokers run with `--config FILE`:
#
#     def test_tiering(strata_factory, s3_bucket, tcp_proxy, tmp_path):
#         proxy = tcp_proxy("127.0.0.1", s3_bucket.port)         # optional: route S3 traffic through it
#         config = tier_config(tmp_path, "s3", s3_bucket, endpoint=proxy.endpoint,
#                              **{"log.segment.bytes": 65536})
#         broker = strata_factory("--config", str(config))
#         ...
#         s3_bucket.list_keys("strata/")                           # what the broker uploaded
#         proxy.cut(); ...; proxy.restore()                        # object store unreachable, then back
#
# `tier_config` is a plain helper (from s3 import tier_config); the fixtures below are `moto`
# (session), `s3_bucket` (per test, a fresh bucket) and `tcp_proxy` (per test, a factory).

from s3 import MotoServer, S3Bucket, TcpProxy, tier_config  # noqa: E402,F401  (tier_config re-exported)


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """One moto_server for the whole session: `.endpoint` is "http://127.0.0.1:PORT"."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto_server.log")
    try:
        server.start()
    except (RuntimeError, FileNotFoundError) as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(request, moto):
    """A fresh, uniquely named bucket on the session's moto server; emptied and deleted afterwards.

    .endpoint, .bucket, .client (boto3), .port (the store's, for tcp_proxy),
    .list_keys(prefix=""), .list_objects(prefix=""),
    .get(key, byte_range=None), .put(key, body), .wait_for_keys(predicate, timeout=30, prefix="")
    """
    bucket = S3Bucket.create(moto.endpoint)
    request.node._moto_server = moto
    yield bucket
    bucket.destroy()


@pytest.fixture
def tcp_proxy():
    """Returns start(target_host, target_port) -> a running TcpProxy (loopback targets only).

    proxy.port / .endpoint, proxy.cut(), proxy.restore(), proxy.close(); all closed at test end.
    """
    proxies: list[TcpProxy] = []

    def start(target_host: str, target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_host, target_port)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()



@pytest.fixture(scope="session")
def java_classpath(tmp_path_factory) -> str:
    """Every program under java/ compiled once per run, with the jars install.sh fetched."""
    from clients import compile_java
    java_dir = pathlib.Path(__file__).resolve().parent / "java"
    return compile_java(tmp_path_factory, java_dir, sorted(java_dir.glob("*.java")), "the Java client tests")
