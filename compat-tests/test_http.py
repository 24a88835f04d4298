"""The HTTP listener: /health, /ready, /metrics, and how it is configured.

- /health answers while the process serves; /ready once recovery is done and the Kafka
  listener accepts; the docker compose file's healthcheck command, run as written against
  a broker, passes.
- /metrics is Prometheus' text format (parsed with the prometheus_client package): request
  counts and latencies per API and error codes move as kcat produces and reads; connections
  are counted open and closed; the process reports its uptime, RSS and open files.
- The console's archive page lists failed archive steps (the store's directory replaced by
  a file).
- `--http-listen none` runs without it; an explicit address that cannot be bound stops the
  start with a clear error.
"""

from __future__ import annotations

import pathlib
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import kafka_wire as w
from clients import unique_topic, wait_until
from conftest import REPO_ROOT, free_port


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(broker) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    status, text = get(f"{broker.http_url}/metrics")
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def kcat(broker, *args, stdin: bytes | None = None):
    proc = subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=stdin, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc


def test_health_and_ready_answer_once_the_broker_serves(strata):
    assert get(f"{strata.http_url}/health") == (200, "ok\n")
    assert get(f"{strata.http_url}/ready") == (200, "ready\n")
    assert get(f"{strata.http_url}/no-such-page")[0] == 404


def test_the_compose_files_healthcheck_passes_against_a_running_broker(strata):
    compose = yaml.safe_load((REPO_ROOT / "docker" / "compose.yaml").read_text())
    check = compose["services"]["strata"]["healthcheck"]["test"]
    assert check[0] == "CMD"
    command = [part.replace("9644", str(strata.http_port)) for part in check[1:]]
    assert subprocess.run(command, timeout=10).returncode == 0
    # and it fails where nothing is ready
    idle = free_port()
    wrong = [part.replace("9644", str(idle)) for part in check[1:]]
    assert subprocess.run(wrong, timeout=10, stderr=subprocess.DEVNULL).returncode != 0


def test_request_metrics_move_as_a_client_produces_and_reads(strata):
    before = scrape(strata)
    topic = unique_topic("http-metrics")
    kcat(strata, "-P", "-t", topic, stdin=b"one\ntwo\nthree\n")
    consumed = kcat(strata, "-C", "-t", topic, "-e", "-o", "beginning", "-q").stdout.split()
    assert consumed == [b"one", b"two", b"three"]
    # a produce to a partition that does not exist gets an error code, counted by name
    s = socket.create_connection(("127.0.0.1", strata.port), timeout=5)
    s.sendall(w.produce_v3_request(1, topic, 9, w.record_batch([(b"k", b"v")])))
    _, results = w.parse_produce_v3_response(w.recv_frame(s))
    assert results[0][2] == 3  # UNKNOWN_TOPIC_OR_PARTITION
    s.close()

    wait_until(lambda: value(scrape(strata), "strata_requests_total", api="Produce")
               >= value(before, "strata_requests_total", api="Produce") + 2, 10, "Produce requests counted")
    after = scrape(strata)
    assert value(after, "strata_requests_total", api="Fetch") > value(before, "strata_requests_total", api="Fetch")
    assert value(after, "strata_request_duration_seconds_count", api="Produce") == \
        value(after, "strata_requests_total", api="Produce")
    assert value(after, "strata_request_errors_total", api="Produce", error="UNKNOWN_TOPIC_OR_PARTITION") == 1
    # the partition's offsets, as a consumer sees them
    assert value(after, "strata_partition_log_end_offset", topic=topic, partition="0") == 3
    assert value(after, "strata_partition_high_watermark", topic=topic, partition="0") == 3
    assert value(after, "strata_partition_local_size_bytes", topic=topic, partition="0") > 0
    # connections: kcat's came and went; the raw socket's close is counted as the client's
    assert value(after, "strata_connections_accepted_total", listener="PLAINTEXT") >= 3
    assert value(after, "strata_connections_closed_total", reason="client") >= 2
    assert value(after, "strata_uptime_seconds") > 0
    assert value(after, "strata_process_resident_memory_bytes") > 1 << 20
    assert value(after, "strata_process_open_fds") > 3


def test_http_listen_none_runs_without_it(strata_factory):
    broker = strata_factory("--http-listen", "none")
    kcat(broker, "-L")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.http_port), timeout=2).close()


def test_an_address_that_cannot_be_bound_stops_the_start(tmp_path, strata):
    binary = pathlib.Path(strata.binary)
    taken = f"127.0.0.1:{strata.http_port}"
    proc = subprocess.run([str(binary), "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d"),
                           "--http-listen", taken], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert f"binding the HTTP listener on {taken}" in proc.stderr, proc.stderr


def test_with_acls_on_the_console_shows_no_records(strata_factory):
    broker = strata_factory("--override", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                            "--override", "super.users=User:ANONYMOUS")
    topic = unique_topic("http-acl")
    kcat(broker, "-P", "-t", topic, stdin=b"secret\n")
    status, body = get(f"{broker.http_url}/topics/{topic}/0")
    assert status == 403 and "secret" not in body, body
    assert get(f"{broker.http_url}/topics")[0] == 200


def test_the_archive_page_lists_failed_archive_steps(strata_factory, tmp_path):
    from s3 import tier_config
    archive = tmp_path / "archive"
    broker = strata_factory("--config", str(tier_config(tmp_path, "local", local_dir=archive,
                                                        **{"log.segment.bytes": 4096})))
    assert get(f"{broker.http_url}/archive")[0] == 200
    # The store breaks: its directory becomes a file, so every upload fails.
    archive.rename(tmp_path / "archive-away")
    archive.write_text("not a directory")
    topic = unique_topic("http-archive-errors")
    kcat(broker, "-P", "-t", topic, stdin=b"".join(b"%05d %s\n" % (i, b"x" * 200) for i in range(200)))
    wait_until(lambda: f"{topic}-" in get(f"{broker.http_url}/archive")[1].split('id="archive-errors"')[-1],
               30, "a failed archive step on the archive page")
    errors = get(f"{broker.http_url}/archive")[1].split('id="archive-errors"')[-1]
    assert "Not a directory" in errors, errors
