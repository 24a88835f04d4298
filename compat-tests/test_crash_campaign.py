"""A short crash campaign (compat-tests/bench/crash_campaign.py has the long one), and the file
checker it relies on (logcheck.py) shown to find damage.

- test_a_short_crash_campaign_loses_nothing: five cycles with a fixed seed, one kill each
  while the cleaner swaps segments, an EndTxn(abort) is in flight, a DeleteTopics is in
  flight, an object is being archived and an OffsetCommit is in flight; after every kill
  and every restart nothing acknowledged is lost, duplicated or brought back and the files
  agree.
- test_logcheck_finds_damaged_files: a stopped broker's data dir and archive pass the check;
  copies with one thing broken each (a flipped byte in a closed segment, an index entry off
  a batch boundary, a closed segment's time index without its max timestamp, an abort
  marker without its .txnindex entry, a manifest naming the wrong size, an unparsable state
  file) are each reported.
"""

from __future__ import annotations

import json
import shutil
import struct

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.crash_campaign import COMPACTION, COMMIT, DELETE, TXN_ABORT, UPLOAD, run
from clients import wait_for
from conftest import strata_binary
from logcheck import BATCH_HEADER, TIME_ENTRY, LogChecker, parse_log
from s3 import tier_config


def test_a_short_crash_campaign_loses_nothing(tmp_path):
    lines = []
    fig = run(5, seed=20261201, binary=strata_binary(), work_dir=tmp_path,
              kinds=[COMPACTION, TXN_ABORT, DELETE, UPLOAD, COMMIT], out=lines.append)
    report = fig.report()
    print("\n".join(lines) + "\n" + report)
    assert sum(fig.kills.values()) == 5, report
    assert not fig.violations, report
    assert fig.records_verified > 0 and fig.commits_verified > 0, report


def _archived_broker(strata_factory, tmp_path):
    """A stopped broker whose data dir holds rolled segments, an aborted transaction and an
    archive: (broker, archive root)."""
    archive = tmp_path / "archive"
    config = tier_config(tmp_path, "local", local_dir=archive, **{
        "log.segment.bytes": 8192, "log.local.retention.ms": 600000, "log.retention.check.interval.ms": 200})
    broker = strata_factory("--config", str(config))
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("files", 1, 1, config={"segment.bytes": "8192"})])["files"].result(timeout=15)
    txn = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "logcheck"})
    txn.init_transactions(15)
    for i in range(30):
        txn.begin_transaction()
        for j in range(5):
            txn.produce("files", value=f"{i}-{j}-".encode() + b"v" * 300, partition=0)
        txn.flush(15)
        (txn.abort_transaction if i % 3 == 0 else txn.commit_transaction)(15)
    def archived():
        m = next(archive.rglob("manifest.json"), None)
        segments = json.loads(m.read_text())["segments"] if m else []
        return len(segments) >= 2, f"{len(segments)} segments archived"
    wait_for("two archived segments", archived, 30)
    broker.stop()
    return broker, archive


def _damaged(src_data, src_archive, tmp_path, name, damage) -> list[str]:
    data, archive = tmp_path / f"{name}-data", tmp_path / f"{name}-archive"
    shutil.copytree(src_data, data)
    shutil.copytree(src_archive, archive)
    damage(data, archive)
    return LogChecker(data, archive).check("stopped").violations


def test_logcheck_finds_damaged_files(strata_factory, tmp_path):
    broker, archive = _archived_broker(strata_factory, tmp_path)
    report = LogChecker(broker.data_dir, archive).check("stopped")
    assert not report.violations, report.summary()
    assert report.counts["archived segments"] >= 2 and report.counts["txnindex entries"] >= 1, report.summary()
    pdir = broker.data_dir / "files-0"
    closed = sorted(pdir.glob("*.log"))[0].stem  # not the active segment: retention keeps them all

    def flip_a_byte(data, _archive):
        log = data / "files-0" / f"{closed}.log"
        raw = bytearray(log.read_bytes())
        raw[BATCH_HEADER + 10] ^= 0xFF  # inside the first batch's records
        log.write_bytes(bytes(raw))

    def index_off_a_boundary(data, _archive):
        index = data / "files-0" / f"{closed}.index"
        raw = bytearray(index.read_bytes())
        rel, pos = struct.unpack_from(">II", raw, len(raw) - 8)
        struct.pack_into(">II", raw, len(raw) - 8, rel, pos + 1)
        index.write_bytes(bytes(raw))

    def time_index_without_its_max(data, _archive):
        ti = data / "files-0" / f"{closed}.timeindex"
        ti.write_bytes(ti.read_bytes()[:-TIME_ENTRY])

    def abort_without_txnindex(data, _archive):
        for t in (data / "files-0").glob("*.txnindex"):
            t.write_bytes(b"")

    def manifest_wrong_size(_data, archive):
        m = next(archive.rglob("manifest.json"))
        doc = json.loads(m.read_text())
        doc["segments"][0]["size"] += 1
        m.write_text(json.dumps(doc))

    def state_file_garbage(data, _archive):
        (data / ".strata" / "topics" / "files.yaml").write_text("name: [files\n")

    cases = {
        "flip": (flip_a_byte, "CRC-32C"),
        "index": (index_off_a_boundary, "not a batch boundary"),
        "timeindex": (time_index_without_its_max, "its max timestamp"),
        "txnindex": (abort_without_txnindex, "no .txnindex entry"),
        "manifest": (manifest_wrong_size, "the manifest says"),
        "state": (state_file_garbage, "does not parse"),
    }
    assert len(parse_log((pdir / f"{closed}.log").read_bytes()).batches) > 1
    for name, (damage, expected) in cases.items():
        found = _damaged(broker.data_dir, archive, tmp_path, name, damage)
        assert any(expected in v for v in found), f"{name}: expected a violation about {expected!r}, got {found}"
