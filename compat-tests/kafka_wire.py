"""Hand-written Kafka wire-protocol pieces for tests that talk to the broker over a raw socket.

Only what the tests need: request headers (v1 and v2), size-prefixed frames, reading one
response frame, zig-zag varints, and a magic-v2 record batch encoder.
"""

from __future__ import annotations

import socket
import struct
import time

import crc32c

API_PRODUCE = 0
API_METADATA = 3
API_VERSIONS = 18

ERR_NONE = 0
ERR_CORRUPT_MESSAGE = 2
ERR_UNSUPPORTED_VERSION = 35


# ----------------------------------------------------------------------------- primitives

def string(s: str | None) -> bytes:
    """Kafka (nullable) STRING: int16 length + UTF-8 bytes, -1 for null."""
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def uvarint(n: int) -> bytes:
    """Unsigned LEB128 varint, as used by compact arrays and tagged fields."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def compact_string(s: str | None) -> bytes:
    """COMPACT_(NULLABLE_)STRING of flexible versions: uvarint(length + 1), 0 for null."""
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def varint(n: int) -> bytes:
    """Signed zig-zag varint (record fields)."""
    return uvarint((n << 1) ^ (n >> 63))


def varlong(n: int) -> bytes:
    return uvarint((n << 1) ^ (n >> 63))


# ----------------------------------------------------------------------------- requests

def header_v1(api_key: int, api_version: int, correlation_id: int, client_id: str | None = "strata-compat-tests") -> bytes:
    """Request header v1: int16 api_key, int16 api_version, int32 correlation_id, nullable string client_id."""
    return struct.pack(">hhi", api_key, api_version, correlation_id) + string(client_id)


def header_v2(api_key: int, api_version: int, correlation_id: int, client_id: str | None = "strata-compat-tests") -> bytes:
    """Request header v2 (flexible requests): header v1 followed by an empty tagged-field section."""
    return header_v1(api_key, api_version, correlation_id, client_id) + uvarint(0)


def frame(payload: bytes) -> bytes:
    """Prefix a request with its int32 size."""
    return struct.pack(">i", len(payload)) + payload


def api_versions_v0_request(correlation_id: int) -> bytes:
    return frame(header_v1(API_VERSIONS, 0, correlation_id))


# ----------------------------------------------------------------------------- responses

def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    """Read one size-prefixed response and return what follows the size (header + body)."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    if size < 4 or size > 64 * 1024 * 1024:
        raise ValueError(f"implausible response size {size}")
    return recv_exact(sock, size)


def connection_closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the peer closes (EOF or reset) within `timeout` seconds; any data it sends is skipped."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not data:
            return True


class Reader:
    """Sequential reader over a response body."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"response too short: need {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def int16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def int64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def string(self) -> str | None:
        n = self.int16()
        if n < 0:
            return None
        return self.take(n).decode()

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def compact_array_len(self) -> int:
        return self.uvarint() - 1

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def parse_api_versions_v0(payload: bytes) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """Parse an ApiVersions response with a v0 header and a v0 body.

    Returns (correlation_id, error_code, {api_key: (min_version, max_version)}).
    Raises ValueError when bytes are missing or left over: a v0 body has nothing after the array.
    """
    r = Reader(payload)
    correlation_id = r.int32()
    error_code = r.int16()
    count = r.int32()
    if count < 0 or count > 1000:
        raise ValueError(f"implausible api_keys array length {count}")
    keys = {}
    for _ in range(count):
        key, lo, hi = r.int16(), r.int16(), r.int16()
        keys[key] = (lo, hi)
    if r.remaining():
        raise ValueError(f"{r.remaining()} bytes left after a v0 ApiVersions body: {payload[r.pos:]!r}")
    return correlation_id, error_code, keys


# ----------------------------------------------------------------------------- record batches

def record_batch(records: list[tuple[bytes | None, bytes | None]], base_timestamp_ms: int | None = None,
                 corrupt_crc: bool = False) -> bytes:
    """Encode an uncompressed magic-v2 record batch of (key, value) records, without producer id.

    With corrupt_crc the stored CRC-32C is deliberately wrong (everything else is valid).
    """
    if base_timestamp_ms is None:
        base_timestamp_ms = int(time.time() * 1000)
    body = bytearray()
    for i, (key, value) in enumerate(records):
        rec = bytearray()
        rec += struct.pack(">b", 0)          # attributes
        rec += varlong(0)                    # timestamp delta
        rec += varint(i)                     # offset delta
        if key is None:
            rec += varint(-1)
        else:
            rec += varint(len(key)) + key
        if value is None:
            rec += varint(-1)
        else:
            rec += varint(len(value)) + value
        rec += varint(0)                     # headers
        body += varint(len(rec)) + rec
    after_crc = struct.pack(
        ">hiqqqhii",
        0,                     # attributes: no compression, create time, not transactional
        len(records) - 1,      # last offset delta
        base_timestamp_ms,     # base timestamp
        base_timestamp_ms,     # max timestamp
        -1,                    # producer id
        -1,                    # producer epoch
        -1,                    # base sequence
        len(records),          # record count
    ) + bytes(body)
    crc = crc32c.crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    after_length = struct.pack(">ibI", -1, 2, crc) + after_crc   # partition leader epoch, magic, crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def produce_v3_request(correlation_id: int, topic: str, partition: int, batch: bytes, acks: int = -1,
                       timeout_ms: int = 10000) -> bytes:
    """Produce v3 (non-flexible): one topic, one partition, one record set."""
    body = string(None) + struct.pack(">hi", acks, timeout_ms)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", partition) + struct.pack(">i", len(batch)) + batch
    return frame(header_v1(API_PRODUCE, 3, correlation_id) + body)


def parse_produce_v3_response(payload: bytes) -> tuple[int, list[tuple[str, int, int, int]]]:
    """Returns (correlation_id, [(topic, partition, error_code, base_offset)])."""
    r = Reader(payload)
    correlation_id = r.int32()
    out = []
    for _ in range(r.int32()):
        topic = r.string()
        for _ in range(r.int32()):
            partition = r.int32()
            error_code = r.int16()
            base_offset = r.int64()
            r.int64()  # log append time
            out.append((topic, partition, error_code, base_offset))
    r.int32()  # throttle time
    return correlation_id, out


def read_segment_batches(path) -> list[dict]:
    """Walk the record batches of a Kafka .log segment file and return their headers."""
    data = open(path, "rb").read()
    pos = 0
    batches = []
    while pos + 61 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, pos)
        if length <= 0 or pos + 12 + length > len(data):
            break
        _epoch, magic, crc, attributes, last_delta = struct.unpack_from(">ibIhi", data, pos + 12)
        base_ts, max_ts, producer_id, producer_epoch, base_sequence, record_count = struct.unpack_from(
            ">qqqhii", data, pos + 27)
        batches.append({
            "base_offset": base_offset,
            "length": length,
            "magic": magic,
            "crc_ok": crc32c.crc32c(data[pos + 21:pos + 12 + length]) == crc,
            "compression": attributes & 0x07,
            "last_offset_delta": last_delta,
            "record_count": record_count,
            "attributes": attributes,
            "base_timestamp": base_ts,
            "max_timestamp": max_ts,
            "producer_id": producer_id,
            "producer_epoch": producer_epoch,
            "base_sequence": base_sequence,
        })
        pos += 12 + length
    return batches


API_FETCH = 1
ERR_OFFSET_OUT_OF_RANGE = 1
ERR_KAFKA_STORAGE_ERROR = 56


def fetch_v4_request(correlation_id: int, topic: str, partition: int, offset: int, max_wait_ms: int = 500,
                     min_bytes: int = 1, max_bytes: int = 1 << 20, isolation_level: int = 0) -> bytes:
    """Fetch v4 (non-flexible): one topic, one partition."""
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, isolation_level)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, max_bytes)
    return frame(header_v1(API_FETCH, 4, correlation_id) + body)


def parse_fetch_v4_response(payload: bytes) -> tuple[int, list[dict]]:
    """Returns (correlation_id, [{topic, partition, error_code, high_watermark, records}])."""
    r = Reader(payload)
    correlation_id = r.int32()
    r.int32()  # throttle time
    out = []
    for _ in range(r.int32()):
        topic = r.string()
        for _ in range(r.int32()):
            partition = r.int32()
            error_code = r.int16()
            high_watermark = r.int64()
            r.int64()  # last stable offset
            for _ in range(max(r.int32(), 0)):  # aborted transactions (nullable array)
                r.int64()
                r.int64()
            n = r.int32()
            records = r.take(n) if n > 0 else b""
            out.append({"topic": topic, "partition": partition, "error_code": error_code,
                        "high_watermark": high_watermark, "records": records})
    return correlation_id, out


def first_batch_base_offset(records: bytes) -> int | None:
    """The base offset of the first record batch in a fetched record set."""
    return struct.unpack(">q", records[:8])[0] if len(records) >= 8 else None
