"""The tiered-storage test infrastructure itself, without a broker: moto as S3, the TCP proxy, tier_config.

If these fail, the tiered-storage tests' failures say nothing about strata.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import pytest
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from s3 import TcpProxy, make_s3_client, tier_config

MiB = 1024 * 1024


def error_code(e: ClientError) -> str:
    return e.response["Error"]["Code"]


# ---------------------------------------------------------------------------------------------- moto / boto3

def test_bucket_is_fresh_and_unique(moto, s3_bucket):
    assert s3_bucket.endpoint == moto.endpoint
    assert s3_bucket.bucket.startswith("strata-test-")
    assert s3_bucket.list_keys() == []
    names = [b["Name"] for b in s3_bucket.client.list_buckets()["Buckets"]]
    assert names.count(s3_bucket.bucket) == 1


def test_put_get_list(s3_bucket):
    objects = {
        "strata/topic-a/0/00000000000000000000.log": os.urandom(3000),
        "strata/topic-a/0/00000000000000000000.index": b"idx",
        "strata/topic-a/1/00000000000000000042.log": b"",
        "strata/topic-b/0/00000000000000000000.log": b"b" * 10,
        "other/x": b"x",
    }
    for key, body in objects.items():
        s3_bucket.put(key, body)

    assert s3_bucket.list_keys() == sorted(objects)
    assert s3_bucket.list_keys("strata/topic-a/") == sorted(k for k in objects if k.startswith("strata/topic-a/"))
    assert s3_bucket.list_keys("nothing/") == []
    assert s3_bucket.list_objects("strata/topic-b/") == {"strata/topic-b/0/00000000000000000000.log": 10}
    for key, body in objects.items():
        assert s3_bucket.get(key) == body
        head = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=key)
        assert head["ContentLength"] == len(body)

    with pytest.raises(ClientError) as e:
        s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key="strata/missing")
    assert error_code(e.value) == "NoSuchKey"

    s3_bucket.client.delete_object(Bucket=s3_bucket.bucket, Key="other/x")
    assert "other/x" not in s3_bucket.list_keys()


def test_list_keys_follows_pages(s3_bucket):
    keys = [f"p/{i:04d}" for i in range(25)]
    for key in keys:
        s3_bucket.put(key, b".")
    pages = list(s3_bucket.client.get_paginator("list_objects_v2").paginate(
        Bucket=s3_bucket.bucket, Prefix="p/", PaginationConfig={"PageSize": 7}))
    assert len(pages) == 4
    assert [o["Key"] for page in pages for o in page["Contents"]] == keys
    assert s3_bucket.list_keys("p/") == keys


def test_ranged_get(s3_bucket):
    body = bytes(range(256)) * 40  # 10240 bytes
    s3_bucket.put("seg.log", body)
    client, bucket = s3_bucket.client, s3_bucket.bucket

    resp = client.get_object(Bucket=bucket, Key="seg.log", Range="bytes=100-199")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert resp["ContentRange"] == f"bytes 100-199/{len(body)}"
    assert resp["Body"].read() == body[100:200]

    assert s3_bucket.get("seg.log", "bytes=10000-") == body[10000:]
    assert s3_bucket.get("seg.log", "bytes=-16") == body[-16:]
    assert s3_bucket.get("seg.log", f"bytes=10200-{len(body) + 500}") == body[10200:]  # end clipped
    with pytest.raises(ClientError) as e:
        s3_bucket.get("seg.log", f"bytes={len(body)}-")
    assert error_code(e.value) == "InvalidRange"


def test_multipart_upload(s3_bucket):
    client, bucket, key = s3_bucket.client, s3_bucket.bucket, "strata/big/00000000000000000000.log"
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(123_457)]  # S3's 5 MiB minimum part
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)
    upload_id = upload["UploadId"]
    ups = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in ups] == [(key, upload_id)]
    assert s3_bucket.list_keys() == []  # not visible before completion

    parts = []
    for number, data in enumerate(parts_data, start=1):
        resp = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
        parts.append({"PartNumber": number, "ETag": resp["ETag"]})
    listed = client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [p["Size"] for p in listed] == [len(d) for d in parts_data]

    done = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                            MultipartUpload={"Parts": parts})
    assert done["ETag"].strip('"').endswith(f"-{len(parts_data)}")  # S3's multipart ETag form
    whole = b"".join(parts_data)
    got = s3_bucket.get(key)
    assert len(got) == len(whole) and hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()
    # a ranged read across the part boundary
    assert s3_bucket.get(key, f"bytes={5 * MiB - 10}-{5 * MiB + 9}") == whole[5 * MiB - 10:5 * MiB + 10]
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_multipart_upload_rules(s3_bucket):
    """moto enforces the 5 MiB minimum for non-last parts, and an aborted upload leaves nothing."""
    client, bucket = s3_bucket.client, s3_bucket.bucket
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    parts = [{"PartNumber": n, "ETag": client.upload_part(Bucket=bucket, Key="small", UploadId=upload_id,
                                                          PartNumber=n, Body=b"x" * 10)["ETag"]}
             for n in (1, 2)]
    with pytest.raises(ClientError) as e:
        client.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
    assert error_code(e.value) == "EntityTooSmall"
    client.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=upload_id)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_bucket.list_keys() == []


def test_conditional_put_if_none_match(s3_bucket):
    """moto honours If-None-Match: * (create-only puts) and If-Match on PutObject: 412 PreconditionFailed."""
    client, bucket = s3_bucket.client, s3_bucket.bucket
    client.put_object(Bucket=bucket, Key="manifest", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=bucket, Key="manifest", Body=b"second", IfNoneMatch="*")
    assert error_code(e.value) == "PreconditionFailed"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3_bucket.get("manifest") == b"first"

    etag = client.head_object(Bucket=bucket, Key="manifest")["ETag"]
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=bucket, Key="manifest", Body=b"third", IfMatch='"0123456789abcdef"')
    assert error_code(e.value) == "PreconditionFailed"
    client.put_object(Bucket=bucket, Key="manifest", Body=b"fourth", IfMatch=etag)
    assert s3_bucket.get("manifest") == b"fourth"


# ---------------------------------------------------------------------------------------------- TCP proxy

@pytest.fixture
def echo_server():
    """A loopback TCP echo server (echoes until the client half-closes, then closes)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve(conn):
        with conn:
            conn.settimeout(10)
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def accept_loop():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def connection_is_dead(sock: socket.socket) -> bool:
    """True once the peer has reset or closed this connection."""
    try:
        sock.sendall(b"ping")
        return sock.recv(16) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_tcp_proxy_forwards_bytes_and_half_close(tcp_proxy, echo_server):
    proxy = tcp_proxy("127.0.0.1", echo_server)
    payload = os.urandom(2 * MiB)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        echoed = recv_exactly(s, len(payload) + 1)  # +1: must end with EOF, not more data
        sender.join(10)
    assert echoed == payload
    assert proxy.accepted == 1 and proxy.bytes_up == len(payload) and proxy.bytes_down == len(payload)


def test_tcp_proxy_cut_resets_live_and_new_connections(tcp_proxy, echo_server):
    proxy = tcp_proxy("localhost", echo_server)
    live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    live.sendall(b"hello")
    assert recv_exactly(live, 5) == b"hello"

    proxy.cut()
    assert proxy.is_cut and proxy.live_connections == 0
    assert connection_is_dead(live)
    live.close()
    # The kernel completes the handshake, then the proxy resets the connection; the reset
    # may already arrive while connect() returns.
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            assert connection_is_dead(s)
    except ConnectionResetError:
        pass
    assert proxy.refused >= 1

    proxy.restore()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"again")
        assert recv_exactly(s, 5) == b"again"


def test_tcp_proxy_only_forwards_to_loopback():
    for host in ("192.0.2.1", "10.1.2.3", "8.8.8.8"):  # rejected before any socket is opened
        with pytest.raises(ValueError, match="loopback"):
            TcpProxy(host, 80)
    with TcpProxy("127.0.0.2", 9) as proxy:  # all of 127.0.0.0/8 is fine
        assert proxy.port > 0


def test_tcp_proxy_close_is_idempotent(tcp_proxy, echo_server):
    proxy = tcp_proxy("127.0.0.1", echo_server)
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.sendall(b"x")
    assert recv_exactly(s, 1) == b"x"
    proxy.close()
    proxy.close()
    assert connection_is_dead(s)
    s.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()


def test_s3_through_tcp_proxy_cut_and_restore(s3_bucket, tcp_proxy):
    proxy = tcp_proxy("127.0.0.1", s3_bucket.port)
    # short timeouts, no retries: a cut link must fail the call at once, not after a back-off
    client = make_s3_client(proxy.endpoint, connect_timeout=1, read_timeout=2, max_attempts=1)
    bucket = s3_bucket.bucket

    client.put_object(Bucket=bucket, Key="via-proxy", Body=b"through the proxy")
    assert client.get_object(Bucket=bucket, Key="via-proxy")["Body"].read() == b"through the proxy"
    assert s3_bucket.list_keys() == ["via-proxy"]  # the direct client sees it: same store
    assert proxy.accepted >= 1 and proxy.bytes_up > 0 and proxy.bytes_down > 0

    proxy.cut()  # the client's pooled keep-alive connection is reset, new ones too
    for attempt in range(3):
        started = time.monotonic()
        with pytest.raises((BotoCoreError, ClientError)):
            client.get_object(Bucket=bucket, Key="via-proxy")["Body"].read()
        assert time.monotonic() - started < 3.0, f"attempt {attempt}: a cut link should fail fast"
    with pytest.raises((BotoCoreError, ClientError)):
        client.put_object(Bucket=bucket, Key="while-cut", Body=b"lost")
    assert "while-cut" not in s3_bucket.list_keys()

    proxy.restore()
    client.put_object(Bucket=bucket, Key="after-restore", Body=b"back")
    assert client.get_object(Bucket=bucket, Key="after-restore")["Body"].read() == b"back"
    assert s3_bucket.list_keys() == ["after-restore", "via-proxy"]


def test_tcp_proxy_stall_holds_connections_then_resumes(tcp_proxy, echo_server):
    proxy = tcp_proxy("127.0.0.1", echo_server)
    live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    live.sendall(b"before")
    assert recv_exactly(live, 6) == b"before"

    proxy.stall()
    assert proxy.is_stalled and not proxy.is_cut
    up, down = proxy.bytes_up, proxy.bytes_down
    live.sendall(b"held")
    fresh = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)  # accepted, then held too
    fresh.sendall(b"new")
    for s in (live, fresh):
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):  # silence: neither an echo nor a reset
            s.recv(16)
    assert (proxy.bytes_up, proxy.bytes_down) == (up, down)
    assert proxy.live_connections == 2

    proxy.restore()
    for s, sent in ((live, b"held"), (fresh, b"new")):
        s.settimeout(5)
        assert recv_exactly(s, len(sent)) == sent  # what was sent during the stall arrives now
        s.close()


def test_s3_through_tcp_proxy_stall_and_restore(s3_bucket, tcp_proxy):
    proxy = tcp_proxy("127.0.0.1", s3_bucket.port)
    client = make_s3_client(proxy.endpoint, connect_timeout=1, read_timeout=2, max_attempts=1)
    bucket = s3_bucket.bucket
    client.put_object(Bucket=bucket, Key="via-proxy", Body=b"through the proxy")

    proxy.stall()
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):  # the request hangs: no error, no answer
        client.get_object(Bucket=bucket, Key="via-proxy")["Body"].read()
    waited = time.monotonic() - started
    assert 1.5 <= waited < 10, f"a stalled call should hang until the 2 s read timeout, not {waited:.1f}s"
    assert proxy.live_connections >= 1, "stall() must keep connections open"

    proxy.restore()
    assert client.get_object(Bucket=bucket, Key="via-proxy")["Body"].read() == b"through the proxy"
    client.put_object(Bucket=bucket, Key="after-stall", Body=b"back")
    assert s3_bucket.list_keys() == ["after-stall", "via-proxy"]


# ---------------------------------------------------------------------------------------------- tier_config

def test_tier_config_s3(tmp_path, s3_bucket, tcp_proxy):
    yaml = pytest.importorskip("yaml")
    proxy = tcp_proxy("127.0.0.1", s3_bucket.port)
    path = tier_config(tmp_path, "s3", s3_bucket, endpoint=proxy.endpoint,
                       **{"log.segment.bytes": 65536}, log_local_retention_ms=250, segment_ms=None)
    assert path.parent == tmp_path and path.suffix == ".yaml"
    assert yaml.safe_load(path.read_text()) == {
        "tier": {
            "store": "s3",
            "bucket": s3_bucket.bucket,
            "prefix": "strata",
            "region": "us-east-1",
            "endpoint": proxy.endpoint,
            "path_style": True,
            "allow_http": True,
            "access_key_id": "test",
            "secret_access_key": "test",
        },
        "kafka": {"log.segment.bytes": 65536, "log.local.retention.ms": 250},
    }
    direct = yaml.safe_load(tier_config(tmp_path, "s3", s3_bucket, prefix="p/q").read_text())
    assert direct["tier"]["endpoint"] == s3_bucket.endpoint and direct["tier"]["prefix"] == "p/q"
    assert direct["kafka"] == {"log.segment.bytes": 1048576, "log.local.retention.ms": 1000}


def test_tier_config_local_and_none(tmp_path):
    yaml = pytest.importorskip("yaml")
    local = yaml.safe_load(tier_config(tmp_path, "local").read_text())
    assert local["tier"] == {"store": "local", "local_dir": str(tmp_path / "tier")}
    none = yaml.safe_load(tier_config(tmp_path, "none", **{"log.local.retention.ms": None}).read_text())
    assert none == {"tier": {"store": "none"}, "kafka": {"log.segment.bytes": 1048576}}
    with pytest.raises(ValueError):
        tier_config(tmp_path, "s3")
    with pytest.raises(ValueError):
        tier_config(tmp_path, "gcs")
