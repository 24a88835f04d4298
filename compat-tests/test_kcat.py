"""kcat (Debian's, built on librdkafka 2.0.2) produces, consumes (by partition and in a group) and lists metadata."""

import json
import shutil
import subprocess

import pytest

from clients import unique_topic

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (run compat-tests/run.sh)")

AUTO_CREATE = ("--override", "auto.create.topics.enable=true", "--override", "num.partitions=1")


def kcat(bootstrap, *args, stdin=None, timeout=60):
    proc = subprocess.run(["kcat", "-b", bootstrap, *args], input=stdin, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, (f"kcat {' '.join(args)} exited {proc.returncode}\n"
                                  f"stderr: {proc.stderr.decode(errors='replace')[-3000:]}")
    return proc.stdout.decode()


def test_lines_produced_with_keys_come_back_in_order_with_their_keys(strata_factory):
    broker = strata_factory(*AUTO_CREATE)
    topic = unique_topic("kcat-lines")
    lines = [f"key-{i % 7}:line number {i}" for i in range(200)]

    kcat(broker.bootstrap, "-P", "-t", topic, "-K:", stdin=("\n".join(lines) + "\n").encode())
    out = kcat(broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k:%s\n")

    assert out.splitlines() == lines


def test_consumed_messages_carry_consecutive_offsets_from_zero(strata_factory):
    broker = strata_factory(*AUTO_CREATE)
    topic = unique_topic("kcat-offsets")
    kcat(broker.bootstrap, "-P", "-t", topic, "-p", "0", stdin=b"".join(b"v%d\n" % i for i in range(50)))

    out = kcat(broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%p %o %s\n")

    assert out.splitlines() == [f"0 {i} v{i}" for i in range(50)]


def test_consuming_from_an_offset_with_a_count_returns_exactly_that_slice(strata_factory):
    broker = strata_factory(*AUTO_CREATE)
    topic = unique_topic("kcat-slice")
    kcat(broker.bootstrap, "-P", "-t", topic, "-p", "0", stdin=b"".join(b"v%d\n" % i for i in range(30)))

    out = kcat(broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "10", "-c", "5", "-q", "-f", "%o %s\n")

    assert out.splitlines() == [f"{i} v{i}" for i in range(10, 15)]


def test_metadata_listing_shows_the_topic_and_the_broker(strata_factory):
    broker = strata_factory(*AUTO_CREATE)
    topic = unique_topic("kcat-meta")
    kcat(broker.bootstrap, "-P", "-t", topic, stdin=b"hello\n")

    text = kcat(broker.bootstrap, "-L")
    assert f'topic "{topic}"' in text, text

    meta = json.loads(kcat(broker.bootstrap, "-L", "-J"))
    topics = {t["topic"]: t for t in meta["topics"]}
    assert topic in topics, meta
    assert "error" not in topics[topic] or not topics[topic]["error"], topics[topic]
    assert [p["partition"] for p in topics[topic]["partitions"]] == [0]
    brokers = {b["id"]: b["name"] for b in meta["brokers"]}
    leader = topics[topic]["partitions"][0]["leader"]
    assert brokers.get(leader) == broker.bootstrap, meta["brokers"]


def test_a_group_consumer_commits_so_the_next_run_reads_only_new_lines(strata_factory):
    broker = strata_factory(*AUTO_CREATE)
    topic = unique_topic("kcat-group")
    group = unique_topic("kcat-g")
    first = [f"k{i}:first {i}" for i in range(20)]
    kcat(broker.bootstrap, "-P", "-t", topic, "-K:", stdin=("\n".join(first) + "\n").encode())

    group_read = ("-G", group, "-X", "auto.offset.reset=earliest", "-e", "-q", "-f", "%k:%s\n", topic)
    assert kcat(broker.bootstrap, *group_read).splitlines() == first

    second = [f"k{i}:second {i}" for i in range(5)]
    kcat(broker.bootstrap, "-P", "-t", topic, "-K:", stdin=("\n".join(second) + "\n").encode())
    assert kcat(broker.bootstrap, *group_read).splitlines() == second
