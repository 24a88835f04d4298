"""The command line, its environment variables and the config file, as an operator uses them.

- test_environment_variables_configure_the_broker: STRATA_CONFIG (a file naming the
  cluster id), STRATA_LISTEN, STRATA_ADVERTISED_LISTENER, STRATA_DATA_DIR, STRATA_FLUSH and
  STRATA_HTTP_LISTEN alone start a broker that a client reaches, that reports the file's
  cluster id, keeps its partitions in that directory and answers /health.
- test_override_beats_flags_which_beat_the_environment: the same setting given by the
  file, the environment, a flag and --override takes --override's value, and without
  --override the flag's.
- test_a_taken_default_http_port_is_only_a_warning: with the HTTP listener left at its
  default and that port taken, the broker serves Kafka clients and says it runs without it.
"""

from __future__ import annotations

import socket
import urllib.request

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from clients import unique_topic
from conftest import StrataBroker, free_port, strata_binary


class BareBroker(StrataBroker):
    """A broker started with exactly the arguments given, nothing added."""

    @property
    def command(self) -> list[str]:
        return [str(self.binary), *self.extra_args]


@pytest.fixture
def bare(tmp_path):
    brokers: list[BareBroker] = []

    def start(port: int, data_dir, *args: str) -> BareBroker:
        data_dir.mkdir(exist_ok=True)
        broker = BareBroker(strata_binary(), port, data_dir, tmp_path / f"strata{len(brokers)}.log", args)
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.shutdown_quietly()


def produce_one(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, b"v")
    assert producer.flush(20) == 0


def serving_line(broker: StrataBroker) -> str:
    return next(line for line in broker.log_path.read_text().splitlines() if "strata is serving" in line)


def test_environment_variables_configure_the_broker(tmp_path, monkeypatch, bare):
    port, http_port = free_port(), free_port()
    config = tmp_path / "strata.yaml"
    config.write_text("cluster_id: from-the-file\n")
    data_dir = tmp_path / "env-data"
    monkeypatch.setenv("STRATA_CONFIG", str(config))
    monkeypatch.setenv("STRATA_LISTEN", f"127.0.0.1:{port}")
    monkeypatch.setenv("STRATA_ADVERTISED_LISTENER", f"127.0.0.1:{port}")
    monkeypatch.setenv("STRATA_DATA_DIR", str(data_dir))
    monkeypatch.setenv("STRATA_FLUSH", "always")
    monkeypatch.setenv("STRATA_HTTP_LISTEN", f"127.0.0.1:{http_port}")
    broker = bare(port, data_dir)

    topic = unique_topic("env")
    produce_one(broker.bootstrap, topic)
    assert (data_dir / f"{topic}-0").is_dir()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    cluster = admin.describe_cluster().result(timeout=15)
    assert cluster.cluster_id == "from-the-file"
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=5) as answer:
        assert answer.read() == b"ok\n"
    assert "flush=Always" in serving_line(broker)


def test_override_beats_flags_which_beat_the_environment(tmp_path, monkeypatch, bare):
    config = tmp_path / "strata.yaml"
    config.write_text(f"flush: interval\ndata_dir: {tmp_path / 'file-data'}\n")
    monkeypatch.setenv("STRATA_FLUSH", "interval")
    monkeypatch.setenv("STRATA_DATA_DIR", str(tmp_path / "env-data"))

    port = free_port()
    flags = ("--config", str(config), "--listen", f"127.0.0.1:{port}",
             "--advertised-listener", f"127.0.0.1:{port}", "--http-listen", "none")
    broker = bare(port, tmp_path / "flag-data", *flags, "--flush", "os", "--data-dir", str(tmp_path / "flag-data"))
    topic = unique_topic("flags")
    produce_one(broker.bootstrap, topic)
    assert (tmp_path / "flag-data" / f"{topic}-0").is_dir()
    assert "flush=Os" in serving_line(broker)
    broker.stop()

    port = free_port()
    flags = ("--config", str(config), "--listen", f"127.0.0.1:{port}",
             "--advertised-listener", f"127.0.0.1:{port}", "--http-listen", "none")
    broker = bare(port, tmp_path / "override-data", *flags, "--flush", "os", "--data-dir", str(tmp_path / "flag-data"),
                  "--override", "flush=always", "--override", f"data_dir={tmp_path / 'override-data'}")
    topic = unique_topic("override")
    produce_one(broker.bootstrap, topic)
    assert (tmp_path / "override-data" / f"{topic}-0").is_dir()
    assert not (tmp_path / "flag-data" / f"{topic}-0").exists()
    assert "flush=Always" in serving_line(broker)
    for unused in ("file-data", "env-data"):
        assert not (tmp_path / unused).exists()


def test_a_taken_default_http_port_is_only_a_warning(tmp_path, monkeypatch, bare):
    monkeypatch.delenv("STRATA_HTTP_LISTEN", raising=False)
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 9644))
        holder.listen(1)
    except OSError:
        pass  # something else has it: taken either way
    try:
        port = free_port()
        broker = bare(port, tmp_path / "data", "--listen", f"127.0.0.1:{port}",
                      "--advertised-listener", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data"))
        produce_one(broker.bootstrap, unique_topic("no-http"))
        log = broker.log_path.read_text()
        assert "binding the HTTP listener on 127.0.0.1:9644" in log
        assert "running without it" in log
    finally:
        holder.close()
