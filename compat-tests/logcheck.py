"""Checks that the files of a Strata data directory (and its archive) agree with each other.

    from logcheck import LogChecker
    report = LogChecker(data_dir, archive_root=tmp / "archive").check(mode="stopped")
    assert not report.violations, report.summary()

or from a shell:  python logcheck.py DATA_DIR [--archive DIR] [--prefix strata] [--mode after-crash]

What is read, all in Kafka's (or Strata's documented) formats:
- every partition directory `<topic>-<n>`: each segment's `.log` is walked batch by batch
  (record batch v2: length, magic, CRC-32C, offsets increasing across batches and segments,
  inside the segment's range); its `.index` entries (relative offset, position) must point at
  a batch boundary whose batch ends at that offset; its `.timeindex` entries (timestamp,
  relative offset) must name a batch's last offset and max timestamp, both columns growing;
  its `.txnindex` entries must point at an ABORT marker of the same producer; every abort
  marker must have its `.txnindex` entry. `.snapshot` files (producer state), the
  `recovery-point`, `log-start-offset`, `cleaner-offset-checkpoint` and `partition.metadata`
  files must parse and agree with the log.
- `.strata/`: topic metadata (one YAML per topic; its partition directories must exist and
  name the topic's id), group and transaction state files (YAML), dynamic configs, ACLs and
  the producer-id block (every producer id in the logs lies below it).
- the archive (a local-directory object store): every manifest lists contiguous segments
  whose `.log`, `.index`, `.timeindex` (and `.txnindex`) objects exist, the `.log` with the
  size and CRC-32C the manifest states, holding batches from the entry's base offset to its
  end offset with its max timestamp; the archive and the local segments together cover the
  partition from its log start to its end with no hole; a closed local segment that is also
  archived has the archived bytes.

Modes say what may legitimately be half done:
- "stopped": the broker exited (or was killed long after its last write); nothing is excused.
- "after-crash": the broker was just killed; start-up recovery has not run. The last segment
  of a partition may end in a torn batch, with index entries beyond it; temporary files of
  replaced state files and the cleaner's uncommitted files may be there.
- "running": the broker is up but no client writes. Files may be replaced or deleted while
  they are read (retention, archiving, the cleaner): a segment is read until two reads agree.

Objects of the archive are immutable (a new upload gets a new segment id), so a LogChecker
verifies each object's contents once and afterwards only checks that it is still there with
the same size.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import os
import pathlib
import re
import struct
import sys
import time
from collections import Counter

import crc32c
import yaml

SEGMENT_RE = re.compile(r"^(\d{20})\.(log|index|timeindex|txnindex|snapshot)$")
CLEANER_RE = re.compile(r"^\d{20}\.(log|index|timeindex|txnindex|replaces)\.(cleaned|swap)$")
OBJECT_RE = re.compile(r"^(\d{20})-([0-9a-f-]{36})\.(log|index|timeindex|txnindex)$")
PARTITION_DIR_RE = re.compile(r"^(.+)-(\d+)$")
BATCH_HEADER = 61          # base offset .. record count
LOG_OVERHEAD = 12          # base offset + length
OFFSET_ENTRY = 8
TIME_ENTRY = 12
TXN_ENTRY = 34
SNAPSHOT_ENTRY = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8
CONTROL_ABORT, CONTROL_COMMIT = 0, 1
MODES = ("stopped", "after-crash", "running")


@dataclasses.dataclass
class Batch:
    position: int
    length: int            # whole batch, LOG_OVERHEAD included
    base_offset: int
    last_offset: int
    attributes: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int
    control_type: int | None  # CONTROL_ABORT / CONTROL_COMMIT for markers

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & 0x10)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & 0x20)


@dataclasses.dataclass
class ParsedLog:
    batches: list[Batch]
    valid_end: int            # bytes of whole, valid batches from the start
    size: int
    problem: str | None       # why the walk stopped before the end


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Zig-zag varint (Kafka's records): (value, next position)."""
    shift = raw = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        raw |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    return (raw >> 1) ^ -(raw & 1), pos


def _control_type(data: bytes, records_at: int, end: int) -> int | None:
    """The type (ABORT 0, COMMIT 1) in the key of a control batch's first record."""
    try:
        _, pos = _varint(data, records_at)          # record length
        pos += 1                                    # attributes
        _, pos = _varint(data, pos)                 # timestamp delta
        _, pos = _varint(data, pos)                 # offset delta
        key_len, pos = _varint(data, pos)
        if key_len < 4 or pos + 4 > end:
            return None
        _version, ctype = struct.unpack_from(">hh", data, pos)
        return ctype
    except (ValueError, struct.error):
        return None


def parse_log(data: bytes, base_offset: int = 0) -> ParsedLog:
    """Walks the record batches of a segment; stops at the first one that is not whole and valid."""
    batches: list[Batch] = []
    pos, size = 0, len(data)
    expected = base_offset
    problem = None
    while pos < size:
        if pos + BATCH_HEADER > size:
            problem = f"{size - pos} bytes at {pos} are less than a batch header"
            break
        first, length = struct.unpack_from(">qi", data, pos)
        total = LOG_OVERHEAD + length
        if length < BATCH_HEADER - LOG_OVERHEAD:
            problem = f"batch at {pos}: length {length}"
            break
        if pos + total > size:
            problem = f"batch at {pos}: {total} bytes announced, {size - pos} there"
            break
        _epoch, magic, crc, attributes, last_delta = struct.unpack_from(">ibIhi", data, pos + 12)
        (_base_ts, max_ts, producer_id, producer_epoch, base_seq,
         record_count) = struct.unpack_from(">qqqhii", data, pos + 27)
        if magic != 2:
            problem = f"batch at {pos}: magic {magic}"
            break
        if crc32c.crc32c(data[pos + 21:pos + total]) != crc:
            problem = f"batch at {pos} (offset {first}): CRC-32C mismatch"
            break
        if last_delta < 0 or record_count < 0 or record_count > last_delta + 1:
            problem = f"batch at {pos} (offset {first}): {record_count} records, last offset delta {last_delta}"
            break
        if first < expected:
            problem = f"batch at {pos}: base offset {first} below {expected}"
            break
        control = None
        if attributes & 0x20 and attributes & 0x07 == 0 and record_count > 0:
            control = _control_type(data, pos + BATCH_HEADER, pos + total)
        batches.append(Batch(pos, total, first, first + last_delta, attributes, max_ts, producer_id,
                             producer_epoch, base_seq, record_count, control))
        expected = first + last_delta + 1
        pos += total
    return ParsedLog(batches, pos, size, problem)


def check_offset_index(raw: bytes, base: int, log: ParsedLog, excuse_past: int | None) -> list[str]:
    """`.index` entries against the batches. Entries at or past `excuse_past` (a torn tail) are skipped."""
    problems = []
    if len(raw) % OFFSET_ENTRY:
        problems.append(f".index is {len(raw)} bytes, not whole entries")
    by_position = {b.position: b for b in log.batches}
    last = None
    for i in range(len(raw) // OFFSET_ENTRY):
        rel, position = struct.unpack_from(">II", raw, i * OFFSET_ENTRY)
        if last is not None and (rel <= last[0] or position <= last[1]):
            problems.append(f".index entry {i} ({rel}, {position}) not above the previous {last}")
        last = (rel, position)
        if excuse_past is not None and position >= excuse_past:
            continue
        b = by_position.get(position)
        if b is None:
            problems.append(f".index entry {i}: position {position} is not a batch boundary "
                            f"(log {log.size} bytes, valid to {log.valid_end})")
        elif base + rel != b.last_offset:
            problems.append(f".index entry {i}: offset {base + rel} at position {position}, "
                            f"where the batch ends at offset {b.last_offset}")
    return problems


def check_time_index(raw: bytes, base: int, log: ParsedLog, excuse_past_offset: int | None) -> list[str]:
    """`.timeindex` entries, by what a lookup relies on: both columns grow, the offset lies in
    the segment, and no batch before that offset holds a later timestamp than the entry's (a
    search for a timestamp starts at the last entry below it and must miss nothing)."""
    problems = []
    if len(raw) % TIME_ENTRY:
        problems.append(f".timeindex is {len(raw)} bytes, not whole entries")
    ends = [b.last_offset for b in log.batches]
    prefix_max, running = [], -1
    for b in log.batches:
        running = max(running, b.max_timestamp)
        prefix_max.append(running)
    last_offset = ends[-1] if ends else base - 1
    last = None
    for i in range(len(raw) // TIME_ENTRY):
        ts, rel = struct.unpack_from(">qI", raw, i * TIME_ENTRY)
        off = base + rel
        if last is not None and (ts <= last[0] or off < last[1]):
            problems.append(f".timeindex entry {i} ({ts}, {off}) not above the previous {last}")
        last = (ts, off)
        if excuse_past_offset is not None and off >= excuse_past_offset:
            continue
        if off > last_offset:
            problems.append(f".timeindex entry {i}: offset {off} beyond the segment's last offset {last_offset}")
            continue
        before = bisect.bisect_left(ends, off)          # batches wholly before `off`
        if before and prefix_max[before - 1] > ts:
            problems.append(f".timeindex entry {i}: timestamp {ts} at offset {off}, but a batch before it "
                            f"has {prefix_max[before - 1]}")
    return problems


class TxnWalk:
    """Transactions seen while walking a partition's batches in order, to know which aborts
    need a `.txnindex` entry."""

    def __init__(self):
        self.open: dict[int, int] = {}      # producer id -> first offset of its open transaction
        self.known: set[int] = set()        # producers seen closing a transaction: later firsts are sure

    def walk(self, batches: list[Batch]) -> list[tuple[int, int | None, int]]:
        """(producer id, first offset or None if the transaction may have begun before the walk,
        abort marker offset) of each transaction the batches show aborted. A marker closing
        nothing (a coordinator repeating an abort after a restart) needs no entry, as in Kafka."""
        out = []
        for b in batches:
            if b.is_control:
                first = self.open.pop(b.producer_id, None)
                if first is not None and b.control_type == CONTROL_ABORT:
                    out.append((b.producer_id, first if b.producer_id in self.known else None, b.base_offset))
                self.known.add(b.producer_id)
            elif b.is_transactional:
                self.open.setdefault(b.producer_id, b.base_offset)
        return out


def missing_txn_entries(aborts, entries) -> list[str]:
    have = {(pid, first, last) for _v, pid, first, last, _lso in entries}
    loose = {(pid, last) for _v, pid, _first, last, _lso in entries}
    return [f"transaction of producer {pid} aborted at offset {off} (first offset {first}) has no .txnindex entry"
            for pid, first, off in aborts
            if ((pid, first, off) not in have if first is not None else (pid, off) not in loose)]


def check_closed_time_index(raw: bytes, log: ParsedLog) -> list[str]:
    """A closed segment's last `.timeindex` entry carries its max timestamp (Kafka appends it
    when the segment stops being active): after a restart that entry is where the segment's
    max timestamp comes from, for time lookups, retention and the archive's manifest."""
    top = max((b.max_timestamp for b in log.batches), default=-1)
    last = struct.unpack_from(">q", raw, len(raw) - len(raw) % TIME_ENTRY - TIME_ENTRY)[0] if len(raw) >= TIME_ENTRY else -1
    if top > last:
        return [f"closed segment: last .timeindex timestamp {last}, its max timestamp is {top}"]
    return []


def parse_txn_index(raw: bytes) -> tuple[list[tuple[int, int, int, int]], bool]:
    """(producer id, first offset, last offset, last stable offset) per entry; whether whole."""
    out = []
    for i in range(len(raw) // TXN_ENTRY):
        version, pid, first, last, lso = struct.unpack_from(">hqqqq", raw, i * TXN_ENTRY)
        out.append((version, pid, first, last, lso))
    return out, len(raw) % TXN_ENTRY == 0


def parse_snapshot(raw: bytes) -> list[tuple[int, int, int, int]] | None:
    """Kafka's producer snapshot (version 1): (producer id, epoch, last sequence, last offset) per
    producer; None if it is not whole (bad CRC, length)."""
    if len(raw) < 10:
        return None
    version, crc = struct.unpack_from(">hI", raw, 0)
    body = raw[6:]
    if version != 1 or crc32c.crc32c(body) != crc:
        return None
    (count,) = struct.unpack_from(">i", body, 0)
    entries = body[4:]
    if count < 0 or len(entries) != count * SNAPSHOT_ENTRY:
        return None
    out = []
    for i in range(count):
        pid, epoch, last_seq, last_offset = struct.unpack_from(">qhiq", entries, i * SNAPSHOT_ENTRY)
        out.append((pid, epoch, last_seq, last_offset))
    return out


def kafka_uuid(u: str) -> str:
    """A UUID as Kafka prints topic ids: URL-safe base64 without padding."""
    import base64
    import uuid
    return base64.urlsafe_b64encode(uuid.UUID(u).bytes).decode().rstrip("=")


@dataclasses.dataclass
class Report:
    mode: str
    violations: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    counts: Counter = dataclasses.field(default_factory=Counter)

    def violation(self, where: str, what: str) -> None:
        self.violations.append(f"{where}: {what}")

    def note(self, where: str, what: str) -> None:
        self.notes.append(f"{where}: {what}")

    def summary(self, limit: int = 20) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        lines = [f"logcheck ({self.mode}): {len(self.violations)} violations; {counts}"]
        lines += [f"  VIOLATION {v}" for v in self.violations[:limit]]
        if len(self.violations) > limit:
            lines.append(f"  ... {len(self.violations) - limit} more")
        lines += [f"  note {n}" for n in self.notes[:limit]]
        if len(self.notes) > limit:
            lines.append(f"  ... {len(self.notes) - limit} more notes")
        return "\n".join(lines)


def _read(path: pathlib.Path) -> bytes | None:
    """The file's bytes; None when it is not there (or went away meanwhile)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _identity(path: pathlib.Path):
    try:
        st = path.stat()
        return (st.st_ino, st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        return None


@dataclasses.dataclass
class Segment:
    base: int
    log: bytes
    index: bytes
    timeindex: bytes
    txnindex: bytes | None


@dataclasses.dataclass
class PartitionView:
    """What the check learnt about one local partition, for the archive's cross-checks."""
    topic: str
    index: int
    bases: list[int]            # local segment base offsets (listing)
    end_offset: int | None      # next offset after the last valid batch
    log_start: int | None       # log-start-offset checkpoint
    closed_crc: dict            # base -> (size, crc32c) of closed local segments
    producer_ids: set


class LogChecker:
    def __init__(self, data_dir, archive_root=None, prefix: str = "strata"):
        self.data_dir = pathlib.Path(data_dir)
        self.archive_root = pathlib.Path(archive_root) if archive_root else None
        self.prefix = prefix
        # archive objects whose contents were verified: key -> (size, mtime_ns)
        self._verified: dict[str, tuple[int, int]] = {}

    @property
    def objects_verified(self) -> int:
        """Archived segments whose contents were verified so far."""
        return len(self._verified)

    # ------------------------------------------------------------------------------- entry point

    def check(self, mode: str = "stopped") -> Report:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        r = Report(mode)
        topics = self._check_state_files(r)
        views = self._check_partitions(r, topics)
        if self.archive_root is not None:
            self._check_archive(r, topics, views)
        block = self._producer_id_block
        if block is not None:
            for v in views.values():
                above = sorted(p for p in v.producer_ids if p >= block)
                if above:
                    r.violation(f"{v.topic}-{v.index}", f"producer ids {above[:3]} at or above the "
                                f"persisted producer-id block end {block}")
        return r

    # ------------------------------------------------------------------------------- .strata

    def _check_state_files(self, r: Report) -> dict[str, dict]:
        """Parses every state file; returns the topics' metadata by name."""
        meta = self.data_dir / ".strata"
        topics: dict[str, dict] = {}
        self._producer_id_block = None
        if not meta.is_dir():
            r.note(str(meta), "no .strata directory")
            return topics
        for path in sorted((meta / "topics").glob("*")):
            if path.suffix == ".tmp":
                self._leftover_tmp(r, path)
                continue
            doc = self._yaml(r, path)
            if doc is None:
                continue
            r.counts["state files"] += 1
            if not isinstance(doc, dict) or not {"name", "id", "partitions"} <= doc.keys():
                r.violation(str(path), f"topic metadata without name, id and partitions: {doc!r:.200}")
                continue
            if path.stem != doc["name"]:
                r.violation(str(path), f"names topic {doc['name']!r}")
            topics[doc["name"]] = doc
        for sub in ("groups", "transactions"):
            for path in sorted((meta / sub).glob("*")):
                if path.suffix == ".tmp":
                    self._leftover_tmp(r, path)
                    continue
                doc = self._yaml(r, path)
                if doc is None:
                    continue
                r.counts["state files"] += 1
                key = doc.get("group") if sub == "groups" else doc.get("id")
                try:
                    named = bytes.fromhex(path.stem).decode()
                except ValueError:
                    named = None
                if key is None or named != key:
                    r.violation(str(path), f"file name is not the hex of the key it holds ({key!r})")
        for name in ("dynamic-configs.yaml", "acls.yaml"):
            path = meta / name
            if path.exists() and self._yaml(r, path) is not None:
                r.counts["state files"] += 1
        path = meta / "producer-id-block"
        raw = _read(path)
        if raw is not None:
            try:
                self._producer_id_block = int(raw.decode().strip())
                r.counts["state files"] += 1
            except ValueError:
                r.violation(str(path), f"not an integer: {raw[:40]!r}")
        for path in meta.glob("*.tmp"):
            self._leftover_tmp(r, path)
        return topics

    def _yaml(self, r: Report, path: pathlib.Path):
        raw = _read(path)
        if raw is None:
            return None
        try:
            return yaml.safe_load(raw.decode())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            r.violation(str(path), f"does not parse: {e}")
            return None

    def _leftover_tmp(self, r: Report, path: pathlib.Path) -> None:
        r.counts["temporary files"] += 1
        if r.mode == "stopped":
            r.note(str(path), "temporary file of a replacement left behind")

    # ------------------------------------------------------------------------------- partitions

    def _check_partitions(self, r: Report, topics: dict[str, dict]) -> dict[tuple[str, int], PartitionView]:
        views = {}
        dirs = {}
        for entry in sorted(os.scandir(self.data_dir), key=lambda e: e.name):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            m = PARTITION_DIR_RE.match(entry.name)
            if not m:
                continue
            dirs[(m.group(1), int(m.group(2)))] = pathlib.Path(entry.path)
        for name, doc in topics.items():
            for i in range(int(doc["partitions"])):
                if (name, i) not in dirs:
                    # metadata first, directories after: a crash in between leaves them to the next start
                    (r.note if r.mode == "after-crash" else r.violation)(
                        f"{name}-{i}", "topic metadata names this partition, its directory is missing")
        for (name, i), path in dirs.items():
            doc = topics.get(name)
            if doc is None or i >= int(doc["partitions"]):
                r.counts["leftover partition directories"] += 1
                r.note(str(path), "directory of a topic (or partition) that does not exist")
                continue
            compacted = "compact" in str((doc.get("configs") or {}).get("cleanup.policy", "delete"))
            views[(name, i)] = self._check_partition(r, path, name, i, doc, compacted)
        return views

    def _read_segment(self, pdir: pathlib.Path, base: int, running: bool) -> Segment | None:
        """The segment's files, indexes read before the log (appends write the log first). While
        the broker runs, read again until a file's identity is the same before and after."""
        stem = f"{base:020d}"
        paths = [pdir / f"{stem}.{ext}" for ext in ("index", "timeindex", "txnindex", "log")]
        for _attempt in range(20 if running else 1):
            before = [_identity(p) for p in paths]
            if before[3] is None:
                return None
            data = [_read(p) for p in paths]
            after = [_identity(p) for p in paths]
            if not running or before == after:
                if data[3] is None:
                    return None
                return Segment(base, data[3], data[0] or b"", data[1] or b"", data[2])
            time.sleep(0.05)
        raise RuntimeError(f"{pdir}/{stem}: files kept changing while read")

    def _check_partition(self, r: Report, pdir: pathlib.Path, topic: str, index: int, doc: dict,
                         compacted: bool) -> PartitionView:
        where = f"{topic}-{index}"
        r.counts["partitions"] += 1
        names = sorted(os.listdir(pdir))
        bases = sorted({int(m.group(1)) for n in names if (m := SEGMENT_RE.match(n)) and m.group(2) == "log"})
        for n in names:
            m = SEGMENT_RE.match(n)
            if m:
                if m.group(2) in ("index", "timeindex", "txnindex") and int(m.group(1)) not in bases:
                    # a segment whose deletion (the .log first) was cut short; a segment created
                    # later at the same base starts its indexes afresh
                    r.counts["index files without a .log"] += 1
                continue
            if CLEANER_RE.match(n):
                r.counts["cleaner files"] += 1
                continue
            if n.endswith(".tmp"):
                self._leftover_tmp(r, pdir / n)
                continue
            if n not in ("partition.metadata", "recovery-point", "log-start-offset", "cleaner-offset-checkpoint"):
                r.note(where, f"unknown file {n}")
        running = r.mode == "running"
        # A compaction swap committed (`<base>.replaces.swap`) and cut short by a kill: its new
        # files are renamed over segment `base` one by one, the .log last; start-up finishes it.
        swapping = {int(n[:20]) for n in names if n.endswith(".replaces.swap")} if r.mode == "after-crash" else set()
        r.counts["compaction swaps cut short"] += len(swapping)
        view = PartitionView(topic, index, bases, None, None, {}, set())
        end = None            # next offset after the last valid batch seen so far
        aborts = []                # aborted transactions seen in the batches: each needs a .txnindex entry
        walk = TxnWalk()
        all_entries = []
        for k, base in enumerate(bases):
            seg = self._read_segment(pdir, base, running)
            if seg is None:
                if running or r.mode == "after-crash":
                    continue
                r.violation(where, f"segment {base} vanished in a stopped broker's directory")
                continue
            last = k == len(bases) - 1
            next_base = bases[k + 1] if not last else None
            swhere = f"{where}/{base:020d}"
            r.counts["segments"] += 1
            parsed = parse_log(seg.log, base)
            r.counts["batches"] += len(parsed.batches)
            excuse = None
            if parsed.problem:
                if last and r.mode == "after-crash":
                    r.counts["torn tails"] += 1
                    excuse = parsed.valid_end
                else:
                    r.violation(swhere, f".log: {parsed.problem}")
            if parsed.batches:
                first, final = parsed.batches[0], parsed.batches[-1]
                if first.base_offset < base:
                    r.violation(swhere, f"first batch at offset {first.base_offset}, below the segment's base")
                if not compacted and first.base_offset != base:
                    r.violation(swhere, f"first batch at offset {first.base_offset}, not the segment's base")
                if end is not None and first.base_offset < end:
                    r.violation(swhere, f"first batch at offset {first.base_offset} overlaps the previous segment (ends {end})")
                if next_base is not None and final.last_offset >= next_base:
                    r.violation(swhere, f"last offset {final.last_offset} reaches into the next segment {next_base}")
                end = final.last_offset + 1
            elif not last and not compacted:
                r.violation(swhere, "an empty segment that is not the last")
            if end is None or (not parsed.batches and last):
                end = max(end or 0, base)
            for b in parsed.batches:
                if not compacted and b.record_count != b.last_offset - b.base_offset + 1:
                    r.violation(swhere, f"batch at offset {b.base_offset}: {b.record_count} records for "
                                        f"{b.last_offset - b.base_offset + 1} offsets")
                if b.producer_id >= 0:
                    view.producer_ids.add(b.producer_id)
            aborts += walk.walk(parsed.batches)
            excuse_offset = (parsed.batches[-1].last_offset + 1 if parsed.batches else base) if excuse is not None else None
            if base in swapping:
                continue
            for p in check_offset_index(seg.index, base, parsed, excuse):
                r.violation(swhere, p)
            for p in check_time_index(seg.timeindex, base, parsed, excuse_offset):
                r.violation(swhere, p)
            if not last:
                for p in check_closed_time_index(seg.timeindex, parsed):
                    r.violation(swhere, p)
            r.counts["index entries"] += len(seg.index) // OFFSET_ENTRY + len(seg.timeindex) // TIME_ENTRY
            if seg.txnindex is not None:
                entries, whole = parse_txn_index(seg.txnindex)
                if not whole and not (last and r.mode == "after-crash"):
                    r.violation(swhere, f".txnindex is {len(seg.txnindex)} bytes, not whole entries")
                markers = {b.base_offset: b for b in parsed.batches if b.is_control}
                for version, pid, first_off, last_off, _lso in entries:
                    r.counts["txnindex entries"] += 1
                    all_entries.append((version, pid, first_off, last_off, _lso))
                    m = markers.get(last_off)
                    if version != 0 or first_off > last_off:
                        r.violation(swhere, f".txnindex entry {(version, pid, first_off, last_off)} malformed")
                    elif m is None:
                        if excuse is None or last_off < excuse_offset:
                            r.violation(swhere, f".txnindex names an abort marker at {last_off}; no marker there")
                    elif m.producer_id != pid or m.control_type != CONTROL_ABORT:
                        r.violation(swhere, f".txnindex entry for producer {pid} at {last_off}: the marker there is "
                                            f"producer {m.producer_id}, type {m.control_type}")
            if not last:
                view.closed_crc[base] = (len(seg.log), crc32c.crc32c(seg.log))
        if r.mode != "after-crash":
            for p in missing_txn_entries(aborts, all_entries):
                r.violation(where, p)
        view.end_offset = end
        self._check_partition_files(r, pdir, where, doc, view)
        return view

    def _check_partition_files(self, r: Report, pdir: pathlib.Path, where: str, doc: dict, view: PartitionView) -> None:
        raw = _read(pdir / "partition.metadata")
        if raw is None:
            # written right after the directory is made; the next start writes it if a kill came between
            (r.note if r.mode == "after-crash" else r.violation)(where, "no partition.metadata")
        else:
            want = f"version: 0\ntopic_id: {kafka_uuid(str(doc['id']))}\n"
            if raw.decode(errors="replace") != want:
                r.violation(where, f"partition.metadata is {raw[:80]!r}, expected {want!r}")
        end = view.end_offset
        for name in ("recovery-point", "log-start-offset", "cleaner-offset-checkpoint"):
            raw = _read(pdir / name)
            if raw is None:
                continue
            try:
                value = int(raw.decode().strip())
            except ValueError:
                r.violation(where, f"{name} is not an integer: {raw[:40]!r}")
                continue
            r.counts["state files"] += 1
            if name == "log-start-offset":
                view.log_start = value
                if value < 0:
                    r.violation(where, f"log-start-offset {value}")
            elif name == "recovery-point" and end is not None and value > end:
                r.violation(where, f"recovery point {value} beyond the log end {end}")
        for n in sorted(os.listdir(pdir)) if pdir.exists() else []:
            m = SEGMENT_RE.match(n)
            if not m or m.group(2) != "snapshot":
                continue
            raw = _read(pdir / n)
            if raw is None:
                continue
            entries = parse_snapshot(raw)
            r.counts["producer snapshots"] += 1
            if entries is None:
                (r.note if r.mode == "after-crash" else r.violation)(where, f"{n} is not a whole snapshot")
                continue
            at = int(m.group(1))
            if end is not None and at > end:
                r.violation(where, f"{n} describes offset {at}, beyond the log end {end}")
            for pid, _epoch, _seq, last_offset in entries:
                if last_offset >= at:
                    r.violation(where, f"{n}: producer {pid} last offset {last_offset} not below the snapshot's {at}")

    # ------------------------------------------------------------------------------- archive

    def _check_archive(self, r: Report, topics: dict[str, dict], views: dict) -> None:
        # deleted topics whose objects the broker is still deleting (read before the archive:
        # a deletion that finishes meanwhile removes its objects before its record)
        pending = set()
        for path in (self.data_dir / ".strata" / "archive-deletions").glob("*.yaml"):
            doc = self._yaml(r, path)
            if isinstance(doc, dict) and "id" in doc:
                pending.add(str(doc["id"]))
                r.counts["state files"] += 1
        root = self.archive_root / self.prefix
        if not root.is_dir():
            return
        by_dir = {f"{name}-{doc['id']}": name for name, doc in topics.items()}
        for tdir in sorted(p for p in root.iterdir() if p.is_dir()):
            name = by_dir.get(tdir.name)
            if name is None:
                files = [p for p in tdir.rglob("*") if p.is_file()]
                staging = [p for p in files if "#" in p.name]
                r.counts["store staging files"] += len(staging)
                if len(files) == len(staging):
                    # empty directories, and the staging files of puts a kill cut short, which
                    # the local-directory store lists as no object: all a deleted topic leaves
                    continue
                if tdir.name[-36:] in pending:
                    r.counts["archived topics being deleted"] += 1
                else:
                    r.violation(str(tdir), "objects of a topic that does not exist, and no deletion of them pending")
                continue
            doc = topics[name]
            meta = _read(tdir / "topic.yaml")
            if meta is not None:
                try:
                    head = yaml.safe_load(meta.decode())
                    if head.get("name") != name or str(head.get("id")) != str(doc["id"]):
                        r.violation(str(tdir), f"topic.yaml names {head.get('name')!r} {head.get('id')}")
                except (yaml.YAMLError, UnicodeDecodeError, AttributeError) as e:
                    r.violation(str(tdir / "topic.yaml"), f"does not parse: {e}")
            for i in range(int(doc["partitions"])):
                self._check_archived_partition(r, tdir / str(i), f"{name}-{i}", views.get((name, i)))

    def _check_archived_partition(self, r: Report, pdir: pathlib.Path, where: str, view: PartitionView | None) -> None:
        raw = _read(pdir / "manifest.json")
        if raw is None:
            return
        try:
            manifest = json.loads(raw)
            segments = manifest["segments"]
            start = manifest.get("log_start_offset")
        except (ValueError, KeyError, TypeError) as e:
            r.violation(f"{where} manifest", f"does not parse: {e}")
            return
        r.counts["manifests"] += 1
        listed = set()
        prev = None
        for s in segments:
            try:
                base, end, sid, size, crc = (s["base_offset"], s["end_offset"], s["segment_id"], s["size"], s["crc32c"])
                max_ts, has_txn = s["max_timestamp"], s.get("txn_index", False)
            except (KeyError, TypeError) as e:
                r.violation(f"{where} manifest", f"entry {s!r:.200} lacks {e}")
                continue
            swhere = f"{where} archived {base:020d}-{sid}"
            r.counts["archived segments"] += 1
            if prev is not None and base != prev + 1:
                r.violation(swhere, f"follows an entry ending at {prev}: not contiguous")
            if end < base or size <= 0:
                r.violation(swhere, f"offsets {base}..{end}, {size} bytes")
            prev = end
            stem = f"{base:020d}-{sid}"
            exts = ["log", "index", "timeindex"] + (["txnindex"] if has_txn else [])
            paths = {ext: pdir / f"{stem}.{ext}" for ext in exts}
            listed.update(p.name for p in paths.values())
            ids = {ext: _identity(p) for ext, p in paths.items()}
            missing = [ext for ext, i in ids.items() if i is None]
            if missing:
                r.violation(swhere, f"listed in the manifest, objects missing: {missing}")
                continue
            if ids["log"][1] != size:
                r.violation(swhere, f".log object is {ids['log'][1]} bytes, the manifest says {size}")
                continue
            key = str(paths["log"])
            if self._verified.get(key) == (ids["log"][1], ids["log"][2]):
                continue
            body = _read(paths["log"])
            if body is None:
                r.violation(swhere, ".log object vanished")
                continue
            if crc32c.crc32c(body) != crc:
                r.violation(swhere, f".log CRC-32C {crc32c.crc32c(body):#x}, the manifest says {crc:#x}")
                continue
            parsed = parse_log(body, base)
            r.counts["archived batches verified"] += len(parsed.batches)
            ok = True
            if parsed.problem:
                r.violation(swhere, f".log object: {parsed.problem}")
                ok = False
            elif not parsed.batches:
                r.violation(swhere, ".log object holds no batch")
                ok = False
            else:
                if parsed.batches[0].base_offset != base or parsed.batches[-1].last_offset != end:
                    r.violation(swhere, f"holds offsets {parsed.batches[0].base_offset}..{parsed.batches[-1].last_offset}, "
                                        f"the manifest says {base}..{end}")
                    ok = False
                top = max(b.max_timestamp for b in parsed.batches)
                if top != max_ts:
                    r.violation(swhere, f"max timestamp {top}, the manifest says {max_ts}")
                    ok = False
            for p in check_offset_index(_read(paths["index"]) or b"", base, parsed, None):
                r.violation(swhere, "object " + p)
                ok = False
            entries, _ = parse_txn_index(_read(paths["txnindex"]) or b"") if has_txn else ([], True)
            for p in missing_txn_entries(TxnWalk().walk(parsed.batches), entries):
                r.violation(swhere, "object " + p)
                ok = False
            timeindex = _read(paths["timeindex"]) or b""
            for p in check_time_index(timeindex, base, parsed, None) + check_closed_time_index(timeindex, parsed):
                r.violation(swhere, "object " + p)
                ok = False
            if view is not None and base in view.closed_crc and view.closed_crc[base] != (size, crc):
                r.violation(swhere, f"differs from the local segment {base} (size, CRC {view.closed_crc[base]})")
                ok = False
            if ok:
                self._verified[key] = (ids["log"][1], ids["log"][2])
        if start is not None and segments and not (segments[0]["base_offset"] <= start <= segments[-1]["end_offset"] + 1):
            r.violation(f"{where} manifest", f"log_start_offset {start} outside {segments[0]['base_offset']}.."
                                             f"{segments[-1]['end_offset'] + 1}")
        try:
            orphans = [n for n in os.listdir(pdir) if n not in listed and n != "manifest.json"]
        except FileNotFoundError:
            orphans = []
        r.counts["store staging files"] += sum("#" in n for n in orphans)
        r.counts["orphan objects"] += sum("#" not in n for n in orphans)
        if view is not None and segments:
            self._check_coverage(r, where, view, segments, start)

    def _check_coverage(self, r: Report, where: str, view: PartitionView, segments: list[dict],
                        manifest_start: int | None) -> None:
        """From the log start to the local end every offset is archived or local."""
        if view.end_offset is None:
            return
        if segments[-1]["end_offset"] >= view.end_offset:
            r.violation(where, f"archived up to offset {segments[-1]['end_offset']}, the local log ends "
                               f"before {view.end_offset}")
        covered = max(view.log_start or 0, manifest_start or 0)
        local = [(b, view.bases[k + 1] - 1 if k + 1 < len(view.bases) else view.end_offset - 1)
                 for k, b in enumerate(view.bases)]
        ranges = sorted([(s["base_offset"], s["end_offset"]) for s in segments] + local)
        for lo, hi in ranges:
            if hi < covered:
                continue
            if lo > covered:
                r.violation(where, f"offsets {covered}..{lo - 1} are neither archived nor local "
                                   f"(manifest {segments[0]['base_offset']}..{segments[-1]['end_offset']}, "
                                   f"local bases {view.bases[:3]}...)")
                return
            covered = hi + 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("--archive", help="the local-directory object store's root (tier.local_dir)")
    ap.add_argument("--prefix", default="strata")
    ap.add_argument("--mode", choices=MODES, default="stopped")
    args = ap.parse_args(argv)
    report = LogChecker(args.data_dir, args.archive, args.prefix).check(args.mode)
    print(report.summary(limit=100))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
