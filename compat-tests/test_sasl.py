"""SASL authentication (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on SASL_PLAINTEXT and SASL_SSL listeners.

Every broker here runs with `listeners=SASL_PLAINTEXT://127.0.0.1:PORT` and PLAIN users from
`sasl.jaas.config` (admin, alice); SCRAM users are created through the admin API or the
`scram_users` start-up list.

- kcat, confluent-kafka, kafka-python, kafkajs and the Java client log in and produce/consume;
  kcat and confluent-kafka also over SASL_SSL (certificates from `certs.TestPki`).
- Per-listener mechanisms (`listener.name.<name>.sasl.enabled.mechanisms`): each listener
  accepts its own and refuses the other's with UNSUPPORTED_SASL_MECHANISM.
- SCRAM credentials made with confluent-kafka's AdminClient are usable at once, described with
  mechanism and iterations, kept across a restart, and gone when deleted; Kafka's errors for bad
  alterations.
- A wrong password fails clearly at the client while another client keeps working; the broker
  log names the client's address and user, never the password; the failed answer is held back
  by `connection.failed.authentication.delay.ms` while others log in.
- Hand-built frames: a request before authentication closes the connection; the pre-KIP-43
  unframed exchange; an unsupported mechanism; SaslHandshake on a PLAINTEXT listener;
  SaslAuthenticate v0 (no session lifetime) and v2 (flexible), succeeding and failing.
- KIP-368 re-authentication: librdkafka keeps producing across re-authentications, a
  re-authentication as another user fails, and a client that does not re-authenticate is
  disconnected once its session expired.
"""

from __future__ import annotations

import json
import pathlib
import re
import select
import socket
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialDeletion,
                                   UserScramCredentialUpsertion)

import kafka_wire
from clients import producing_meanwhile, program_report, run_configured_java, tail, unique_topic, wait_until
from certs import TestPki
from conftest import StrataBroker, free_port, strata_binary

HERE = pathlib.Path(__file__).resolve().parent
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
        'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')

API_SASL_HANDSHAKE = 17
API_SASL_AUTHENTICATE = 36
ERR_UNSUPPORTED_SASL_MECHANISM = 33
ERR_ILLEGAL_SASL_STATE = 34
ERR_SASL_AUTHENTICATION_FAILED = 58


@pytest.fixture
def sasl_broker(request, tmp_path):
    """start(*extra_args, yaml=None, ssl_port=None, listeners=None) -> a broker with SASL_PLAINTEXT
    on broker.port (and SASL_SSL on ssl_port); `listeners`, when given, replaces that list, with
    "{port}" standing for broker.port."""
    brokers: list[StrataBroker] = []
    request.node._strata_brokers = brokers

    def start(*extra_args: str, yaml: str | None = None, ssl_port: int | None = None,
              listeners: str | None = None) -> StrataBroker:
        n = len(brokers)
        data_dir = tmp_path / f"sasl-data{n}"
        data_dir.mkdir()
        port = free_port()
        if listeners is not None:
            listeners = listeners.format(port=port)
        else:
            listeners = f"SASL_PLAINTEXT://127.0.0.1:{port}"
        if ssl_port is not None:
            listeners += f",SASL_SSL://127.0.0.1:{ssl_port}"
        args = ["--override", f"listeners={listeners}", "--override", f"advertised.listeners={listeners}",
                "--override", f"sasl.jaas.config={JAAS}", *extra_args]
        if yaml is not None:
            path = tmp_path / f"strata-sasl{n}.yaml"
            path.write_text(yaml)
            args += ["--config", str(path)]
        broker = StrataBroker(strata_binary(), port, data_dir, tmp_path / f"strata-sasl{n}.log", tuple(args))
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.shutdown_quietly()


def conf(broker, mechanism="PLAIN", user="alice", password="alice-secret", **extra):
    return {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password, **extra}


def produce_and_consume(broker, topic, count=5, **login):
    """Produces `count` messages with confluent-kafka and reads them back; returns the values."""
    p = Producer(conf(broker, **login))
    for i in range(count):
        p.produce(topic, value=f"v{i}".encode())
    assert p.flush(30) == 0, "messages left unacknowledged"
    c = Consumer(conf(broker, **login, **{"group.id": f"{topic}-g", "auto.offset.reset": "earliest",
                                          "enable.auto.commit": False}))
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value().decode())
    c.close()
    return got


def login_error(broker, **login) -> str:
    """The error librdkafka reports for a failed login (it waits for metadata that never comes)."""
    errors = []
    p = Producer(conf(broker, **login, error_cb=lambda e: errors.append(str(e))))

    def failed():
        p.poll(0.2)
        return any("Authentication failed" in e for e in errors)

    wait_until(failed, 20, "a failed login at the client")
    return "\n".join(errors)


def admin(broker) -> AdminClient:
    return AdminClient(conf(broker, user="admin", password="admin-secret"))


def upsert_scram(broker, user, password, mechanism=ScramMechanism.SCRAM_SHA_512, iterations=4096):
    client = admin(broker)  # kept alive until the answer is in
    futures = client.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, iterations), password.encode())])
    futures[user].result(timeout=15)


# ------------------------------------------------------------------------------ hand-built frames

def sasl_handshake(sock, mechanism, version=1, correlation_id=1):
    sock.sendall(kafka_wire.frame(kafka_wire.header_v1(API_SASL_HANDSHAKE, version, correlation_id)
                                  + kafka_wire.string(mechanism)))
    payload = kafka_wire.recv_frame(sock)
    assert struct.unpack(">i", payload[:4])[0] == correlation_id
    (error,) = struct.unpack(">h", payload[4:6])
    (n,) = struct.unpack(">i", payload[6:10])
    mechanisms, pos = [], 10
    for _ in range(n):
        (length,) = struct.unpack(">h", payload[pos:pos + 2])
        mechanisms.append(payload[pos + 2:pos + 2 + length].decode())
        pos += 2 + length
    return error, mechanisms


def send_sasl_authenticate(sock, token: bytes, correlation_id=2):
    sock.sendall(kafka_wire.frame(kafka_wire.header_v1(API_SASL_AUTHENTICATE, 1, correlation_id)
                                  + struct.pack(">i", len(token)) + token))


def sasl_authenticate(sock, token: bytes, correlation_id=2):
    """SaslAuthenticate v1: (error, message, auth_bytes, session_lifetime_ms)."""
    send_sasl_authenticate(sock, token, correlation_id)
    return read_sasl_authenticate(sock, correlation_id)


def read_sasl_authenticate(sock, correlation_id=2):
    payload = kafka_wire.recv_frame(sock)
    assert struct.unpack(">i", payload[:4])[0] == correlation_id
    (error, mlen) = struct.unpack(">hh", payload[4:8])
    pos = 8
    message = None
    if mlen >= 0:
        message = payload[pos:pos + mlen].decode()
        pos += mlen
    (blen,) = struct.unpack(">i", payload[pos:pos + 4])
    auth = payload[pos + 4:pos + 4 + blen]
    pos += 4 + blen
    (lifetime,) = struct.unpack(">q", payload[pos:pos + 8])
    return error, message, auth, lifetime


def sasl_authenticate_at(sock, token: bytes, version: int, correlation_id=2):
    """SaslAuthenticate v0, v1 or v2 (flexible: compact fields, tagged-field sections):
    (error, message, auth_bytes, session_lifetime_ms or None for v0). The answer is read to
    its last byte: a field the version does not have would be left over."""
    if version >= 2:
        body = kafka_wire.header_v2(API_SASL_AUTHENTICATE, version, correlation_id)
        body += kafka_wire.uvarint(len(token) + 1) + token + kafka_wire.uvarint(0)
    else:
        body = kafka_wire.header_v1(API_SASL_AUTHENTICATE, version, correlation_id)
        body += struct.pack(">i", len(token)) + token
    sock.sendall(kafka_wire.frame(body))
    r = kafka_wire.Reader(kafka_wire.recv_frame(sock))
    assert r.int32() == correlation_id
    if version >= 2:
        r.skip_tags()  # response header v1
    error = r.int16()
    if version >= 2:
        message = r.compact_string()
        auth = r.take(r.uvarint() - 1)
    else:
        message = r.string()
        auth = r.take(r.int32())
    lifetime = r.int64() if version >= 1 else None
    if version >= 2:
        r.skip_tags()
    assert r.remaining() == 0, f"{r.remaining()} bytes left after a v{version} SaslAuthenticate answer"
    return error, message, auth, lifetime


def metadata_v1(sock, correlation_id) -> bytes:
    """Metadata v1 for every topic; returns the response payload."""
    sock.sendall(kafka_wire.frame(kafka_wire.header_v1(kafka_wire.API_METADATA, 1, correlation_id)
                                  + struct.pack(">i", -1)))
    payload = kafka_wire.recv_frame(sock)
    assert struct.unpack(">i", payload[:4])[0] == correlation_id
    return payload


def plain_token(user, password, authzid="") -> bytes:
    return f"{authzid}\0{user}\0{password}".encode()


def connect(broker) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    s.settimeout(5)
    return s


# ------------------------------------------------------------------------------ clients

def test_kcat_plain_produce_and_consume(sasl_broker):
    broker = sasl_broker()
    topic = unique_topic("sasl-kcat")
    login = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
             "-X", "sasl.username=alice", "-X", "sasl.password=alice-secret"]
    produced = subprocess.run(["kcat", "-b", broker.bootstrap, *login, "-t", topic, "-P"],
                              input="one\ntwo\nthree\n", capture_output=True, text=True, timeout=30)
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(["kcat", "-b", broker.bootstrap, *login, "-t", topic, "-C", "-e", "-o", "beginning",
                               "-q"], capture_output=True, text=True, timeout=30)
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.split() == ["one", "two", "three"]


def test_confluent_kafka_plain_and_a_wrong_password_beside_it(sasl_broker):
    broker = sasl_broker()
    topic = unique_topic("sasl-plain")
    assert produce_and_consume(broker, topic) == [f"v{i}" for i in range(5)]

    # a wrong password while another client keeps producing on the same broker
    with producing_meanwhile(conf(broker), topic) as acked:
        error = login_error(broker, password="not-the-secret")
        assert "Authentication failed: Invalid username or password" in error, error
        wait_until(lambda: len([e for e in acked if e is None]) >= 5, 30, "the other client's messages acknowledged")
    assert all(e is None for e in acked), acked
    # what the broker wrote (the test's own "===== start" lines hold its command line)
    log = "\n".join(line for line in broker.log_path.read_text(errors="replace").splitlines()
                    if not line.startswith("===== start"))
    failures = [line for line in log.splitlines() if "failed authentication" in line]
    assert failures, tail(log)
    assert any("127.0.0.1" in line and "alice" in line for line in failures), failures
    assert "not-the-secret" not in log
    assert "alice-secret" not in log


@pytest.mark.parametrize("mechanism", [ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512],
                         ids=["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_user_from_the_admin_api_logs_in_at_once_survives_a_restart_and_deletion_ends_it(sasl_broker,
                                                                                               mechanism):
    broker = sasl_broker()
    name = "SCRAM-SHA-256" if mechanism == ScramMechanism.SCRAM_SHA_256 else "SCRAM-SHA-512"
    upsert_scram(broker, "carol", "carol-secret", mechanism, iterations=8192)
    topic = unique_topic("sasl-scram")
    login = {"mechanism": name, "user": "carol", "password": "carol-secret"}
    assert produce_and_consume(broker, topic, **login) == [f"v{i}" for i in range(5)]

    a = admin(broker)
    described = a.describe_user_scram_credentials(["carol"])["carol"].result(timeout=15)
    infos = [(i.mechanism, i.iterations) for i in described.scram_credential_infos]
    assert infos == [(mechanism, 8192)]

    broker.stop()
    broker.start()
    assert produce_and_consume(broker, topic, count=5, **login)[:5] == [f"v{i}" for i in range(5)]
    stored = (broker.data_dir / ".strata" / "scram-credentials.json").read_text()
    assert "carol" in stored and "carol-secret" not in stored

    a = admin(broker)
    futures = a.alter_user_scram_credentials([UserScramCredentialDeletion("carol", mechanism)])
    futures["carol"].result(timeout=15)
    error = login_error(broker, **login)
    assert f"invalid credentials with SASL mechanism {name}" in error, error


def test_scram_alterations_get_kafkas_errors(sasl_broker):
    broker = sasl_broker()
    a = admin(broker)
    with pytest.raises(KafkaException) as e:
        a.describe_user_scram_credentials(["nobody"])["nobody"].result(timeout=15)
    assert "RESOURCE_NOT_FOUND" in str(e.value) or "does not exist" in str(e.value)

    few = a.alter_user_scram_credentials([UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"pw")])
    with pytest.raises(KafkaException) as e:
        few["dave"].result(timeout=15)
    assert "Too few iterations" in str(e.value)

    twice = a.alter_user_scram_credentials([
        UserScramCredentialUpsertion("erin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw"),
        UserScramCredentialUpsertion("erin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"pw")])
    with pytest.raises(KafkaException) as e:
        twice["erin"].result(timeout=15)
    assert "cannot be altered twice" in str(e.value)

    gone = a.alter_user_scram_credentials([UserScramCredentialDeletion("frank", ScramMechanism.SCRAM_SHA_512)])
    with pytest.raises(KafkaException) as e:
        gone["frank"].result(timeout=15)
    assert "does not exist" in str(e.value)
    # nothing was stored by the refused requests
    assert a.describe_user_scram_credentials().result(timeout=15) == {}


def test_scram_users_from_the_startup_list(sasl_broker, monkeypatch):
    monkeypatch.setenv("STRATA_TEST_GINA_PASSWORD", "gina-secret")  # inherited by the broker
    broker = sasl_broker(yaml="scram_users:\n"
                              "  - {name: gina, mechanism: SCRAM-SHA-256, password: gina-secret}\n"
                              "  - {name: gina, mechanism: SCRAM-SHA-512, iterations: 8192,\n"
                              "     password: '${env:STRATA_TEST_GINA_PASSWORD}'}\n")
    topic = unique_topic("sasl-startup")
    assert produce_and_consume(broker, topic, mechanism="SCRAM-SHA-256", user="gina",
                               password="gina-secret") == [f"v{i}" for i in range(5)]
    a = admin(broker)
    described = a.describe_user_scram_credentials(["gina"])["gina"].result(timeout=15)
    assert sorted((i.mechanism, i.iterations) for i in described.scram_credential_infos) == [
        (ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 8192)]
    assert "gina-secret" not in (broker.data_dir / ".strata" / "scram-credentials.json").read_text()
    assert produce_and_consume(broker, topic, mechanism="SCRAM-SHA-512", user="gina",
                               password="gina-secret")[:5] == [f"v{i}" for i in range(5)]


def test_sasl_ssl_with_plain_and_scram(sasl_broker, tmp_path):
    pki = TestPki(tmp_path / "pki")
    server = pki.server()
    keystore = pki.dir / "keystore.pem"
    keystore.write_text(server.key.read_text() + server.cert.read_text())
    ssl_port = free_port()
    broker = sasl_broker("--override", f"ssl.keystore.location={keystore}", ssl_port=ssl_port)
    upsert_scram(broker, "kim", "kim-secret")
    tls = {"bootstrap.servers": f"127.0.0.1:{ssl_port}", "security.protocol": "SASL_SSL",
           "ssl.ca.location": str(pki.ca_cert)}
    topic = unique_topic("sasl-ssl")
    p = Producer({**tls, "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "kim", "sasl.password": "kim-secret"})
    for i in range(5):
        p.produce(topic, value=f"v{i}".encode())
    assert p.flush(30) == 0
    out = subprocess.run(["kcat", "-b", f"127.0.0.1:{ssl_port}", "-X", "security.protocol=SASL_SSL",
                          "-X", f"ssl.ca.location={pki.ca_cert}", "-X", "sasl.mechanisms=PLAIN",
                          "-X", "sasl.username=alice", "-X", "sasl.password=alice-secret",
                          "-C", "-t", topic, "-o", "beginning", "-e", "-q"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"v{i}" for i in range(5)]
    # the principal is SASL's, on the SASL_SSL listener
    log = re.sub(r"\x1b\[[0-9;]*m", "", broker.log_path.read_text(errors="replace"))
    assert re.search(r"listener=SASL_SSL.*authentication succeeded.*principal=User:kim", log), tail(log)


def client_errors(config, until, timeout=20.0) -> list:
    """The errors a fresh confluent-kafka producer with this configuration reports, once one
    of them satisfies `until`."""
    errors = []
    p = Producer({**config, "error_cb": errors.append})

    def seen():
        p.poll(0.2)
        return any(until(e) for e in errors)

    try:
        wait_until(seen, timeout, lambda: f"the client's error (errors so far: {[e.str() for e in errors]})")
    finally:
        p.close()
    return errors


def test_each_listener_offers_its_own_mechanisms(sasl_broker):
    """`listener.name.<name>.sasl.enabled.mechanisms`: PLAIN on one listener, SCRAM-SHA-512 on
    the other; a client asking a listener for the other one's mechanism is refused with
    UNSUPPORTED_SASL_MECHANISM, and the answer lists that listener's mechanisms only."""
    outside_port = free_port()
    broker = sasl_broker(
        "--override", "listener.security.protocol.map=INSIDE:SASL_PLAINTEXT,OUTSIDE:SASL_PLAINTEXT",
        "--override", "listener.name.inside.sasl.enabled.mechanisms=PLAIN",
        "--override", "listener.name.outside.sasl.enabled.mechanisms=SCRAM-SHA-512",
        listeners=f"INSIDE://127.0.0.1:{{port}},OUTSIDE://127.0.0.1:{outside_port}")
    inside, outside = broker.bootstrap, f"127.0.0.1:{outside_port}"
    upsert_scram(broker, "lee", "lee-secret")  # as the PLAIN admin, on the inside listener
    topic = unique_topic("sasl-per-listener")

    def login(bootstrap, mechanism):
        user, password = ("alice", "alice-secret") if mechanism == "PLAIN" else ("lee", "lee-secret")
        return {**conf(broker, mechanism, user, password), "bootstrap.servers": bootstrap}

    for bootstrap, mechanism, offered in [(inside, "SCRAM-SHA-512", "PLAIN"), (outside, "PLAIN", "SCRAM-SHA-512")]:
        errors = client_errors(login(bootstrap, mechanism), lambda e: e.code() == KafkaError._AUTHENTICATION)
        refused = [e.str() for e in errors if e.code() == KafkaError._AUTHENTICATION]
        assert any(f"SASL {mechanism} mechanism handshake failed: Broker: Unsupported SASL mechanism: "
                   f"broker's supported mechanisms: {offered}" in e for e in refused), refused

    for bootstrap, mechanism, value in [(inside, "PLAIN", b"by-plain"), (outside, "SCRAM-SHA-512", b"by-scram")]:
        p = Producer(login(bootstrap, mechanism))
        p.produce(topic, value=value)
        assert p.flush(30) == 0, f"{mechanism} on {bootstrap}: message left unacknowledged"
        p.close()
    c = Consumer({**login(outside, "SCRAM-SHA-512"), "group.id": f"{topic}-g", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got == [b"by-plain", b"by-scram"]

    # the broker's own answer, per listener
    for port, asked, offered in [(broker.port, "SCRAM-SHA-512", ["PLAIN"]), (outside_port, "PLAIN", ["SCRAM-SHA-512"])]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            assert sasl_handshake(s, asked) == (ERR_UNSUPPORTED_SASL_MECHANISM, offered)
            assert kafka_wire.connection_closed_by_peer(s, timeout=5)


def test_kafka_python_scram_sha_512(sasl_broker):
    from kafka import KafkaConsumer, KafkaProducer
    broker = sasl_broker()
    upsert_scram(broker, "hank", "hank-secret")
    topic = unique_topic("sasl-kp")
    login = dict(bootstrap_servers=broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                 sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="hank", sasl_plain_password="hank-secret")
    producer = KafkaProducer(**login)
    for i in range(5):
        producer.send(topic, f"v{i}".encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **login)
    got = []
    for m in consumer:
        got.append(m.value.decode())
        if len(got) == 5:
            break
    consumer.close()
    assert got == [f"v{i}" for i in range(5)]


def test_kafkajs_scram_sha_512(sasl_broker):
    broker = sasl_broker()
    upsert_scram(broker, "ivy", "ivy-secret")
    cmd = ["node", str(HERE / "js" / "sasl_client.js"), broker.bootstrap, unique_topic("sasl-js"), "20",
           "scram-sha-512", "ivy", "ivy-secret"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=HERE / "js")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else None
    assert proc.returncode == 0 and summary and summary["ok"], f"{summary}\n{tail(proc.stderr)}"
    assert summary["consumed"] == 20


def test_java_scram_sha_512(sasl_broker, java_classpath, tmp_path):
    broker = sasl_broker()
    upsert_scram(broker, "jack", "jack-secret")

    def run(password):
        return run_configured_java(java_classpath, broker.bootstrap, unique_topic("sasl-java"), 20, {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
                                f'username="jack" password="{password}";',
        }, tmp_path)

    cmd, proc, summary = run("jack-secret")
    assert proc.returncode == 0 and summary and summary["ok"], program_report(cmd, proc, summary, "client log")
    cmd, proc, summary = run("wrong")
    assert summary is not None and "SaslAuthenticationException" in summary.get("error", ""), \
        program_report(cmd, proc, summary, "client log")
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in summary["error"]


# ------------------------------------------------------------------------------ the exchange itself

def test_a_request_before_authentication_closes_the_connection(sasl_broker):
    broker = sasl_broker()
    with connect(broker) as s:
        # ApiVersions is answered before authentication
        s.sendall(kafka_wire.api_versions_v0_request(1))
        _, error, apis = kafka_wire.parse_api_versions_v0(kafka_wire.recv_frame(s))
        assert error == 0 and API_SASL_HANDSHAKE in apis and API_SASL_AUTHENTICATE in apis
        s.sendall(kafka_wire.frame(kafka_wire.header_v1(kafka_wire.API_METADATA, 1, 2) + struct.pack(">i", -1)))
        assert kafka_wire.connection_closed_by_peer(s, timeout=5)
    with connect(broker) as s:
        assert sasl_handshake(s, "PLAIN") == (0, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
        error, message, _, _ = sasl_authenticate(s, plain_token("alice", "alice-secret"))
        assert (error, message) == (0, None)
        assert metadata_v1(s, 3)


def test_unsupported_mechanism_and_handshake_without_sasl(sasl_broker, strata):
    broker = sasl_broker()
    with connect(broker) as s:
        assert sasl_handshake(s, "GSSAPI") == (ERR_UNSUPPORTED_SASL_MECHANISM,
                                               ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
        assert kafka_wire.connection_closed_by_peer(s, timeout=5)
    # a PLAINTEXT listener: ILLEGAL_SASL_STATE, and requests go on being served
    with socket.create_connection(("127.0.0.1", strata.port), timeout=5) as s:
        s.settimeout(5)
        assert sasl_handshake(s, "PLAIN")[0] == ERR_ILLEGAL_SASL_STATE
        assert metadata_v1(s, 2)


def test_pre_kip43_unframed_exchange(sasl_broker):
    broker = sasl_broker()
    with connect(broker) as s:
        assert sasl_handshake(s, "PLAIN", version=0)[0] == 0
        s.sendall(kafka_wire.frame(plain_token("alice", "alice-secret")))
        (size,) = struct.unpack(">i", kafka_wire.recv_exact(s, 4))
        assert size == 0  # PLAIN's empty final token, length-prefixed
        assert metadata_v1(s, 2)
    with connect(broker) as s:
        assert sasl_handshake(s, "PLAIN", version=0)[0] == 0
        s.sendall(kafka_wire.frame(plain_token("alice", "wrong")))
        assert kafka_wire.connection_closed_by_peer(s, timeout=5)


def test_a_large_frame_before_authentication_closes_the_connection(sasl_broker):
    broker = sasl_broker()
    with connect(broker) as s:
        sasl_handshake(s, "PLAIN")
        # over sasl.server.max.receive.size (512 KiB), far under socket.request.max.bytes
        s.sendall(struct.pack(">i", 600_000) + b"\0" * 1024)
        assert kafka_wire.connection_closed_by_peer(s, timeout=5)
    assert "exceeds sasl.server.max.receive.size" in broker.log_path.read_text(errors="replace")


def test_failed_authenticate_answers_the_reason_and_closes(sasl_broker):
    broker = sasl_broker("--override", "connection.failed.authentication.delay.ms=2000")
    with connect(broker) as s, connect(broker) as other:
        sasl_handshake(s, "PLAIN")
        sasl_handshake(other, "PLAIN")
        sent = time.monotonic()
        send_sasl_authenticate(s, plain_token("alice", "wrong"))
        # while the failed answer is held back, another client logs in at once
        assert sasl_authenticate(other, plain_token("alice", "alice-secret"))[0] == 0
        assert not select.select([s], [], [], 0)[0], "the failed answer came before the other client's"
        error, message, _, _ = read_sasl_authenticate(s)
        assert time.monotonic() - sent >= 1.9, "connection.failed.authentication.delay.ms was not applied"
        assert (error, message) == (ERR_SASL_AUTHENTICATION_FAILED,
                                    "Authentication failed: Invalid username or password")
        assert kafka_wire.connection_closed_by_peer(s, timeout=5)


def test_sasl_authenticate_v0_and_v2_frames(sasl_broker):
    """v0 has no session_lifetime_ms; v2 is flexible and carries it."""
    broker = sasl_broker("--override", "connections.max.reauth.ms=45000")
    with connect(broker) as s:
        sasl_handshake(s, "PLAIN")
        assert sasl_authenticate_at(s, plain_token("alice", "alice-secret"), version=0) == (0, None, b"", None)
        assert metadata_v1(s, 3)
    with connect(broker) as s:
        sasl_handshake(s, "PLAIN")
        assert sasl_authenticate_at(s, plain_token("alice", "wrong"), version=0) == (
            ERR_SASL_AUTHENTICATION_FAILED, "Authentication failed: Invalid username or password", b"", None)
        assert kafka_wire.connection_closed_by_peer(s, timeout=5)
    with connect(broker) as s:
        sasl_handshake(s, "PLAIN")
        assert sasl_authenticate_at(s, plain_token("alice", "alice-secret"), version=2) == (0, None, b"", 45000)
        assert metadata_v1(s, 3)
    with connect(broker) as s:
        sasl_handshake(s, "PLAIN")
        assert sasl_authenticate_at(s, plain_token("nobody", "x"), version=2) == (
            ERR_SASL_AUTHENTICATION_FAILED, "Authentication failed: Invalid username or password", b"", 0)
        assert kafka_wire.connection_closed_by_peer(s, timeout=5)


# ------------------------------------------------------------------------------ re-authentication

def test_librdkafka_keeps_producing_across_reauthentications(sasl_broker):
    broker = sasl_broker("--override", "connections.max.reauth.ms=1000")
    topic = unique_topic("sasl-reauth")
    p = Producer(conf(broker, **{"linger.ms": 5}))
    acked, errors = [], []

    def delivered(err, msg):
        (errors if err else acked).append(err)

    def reauths():
        return broker.log_path.read_text(errors="replace").count("re-authentication succeeded")

    # produce until the broker has seen three re-authentications of the producer's connection
    deadline = time.monotonic() + 60
    while reauths() < 3 and time.monotonic() < deadline:
        p.produce(topic, value=b"x", on_delivery=delivered)
        p.poll(0.1)
    assert p.flush(30) == 0
    assert reauths() >= 3, tail(broker.log_path.read_text(errors="replace"))
    assert errors == [] and len(acked) > 0
    assert "session expired" not in broker.log_path.read_text(errors="replace")


def test_a_client_that_does_not_reauthenticate_is_disconnected(sasl_broker):
    broker = sasl_broker("--override", "connections.max.reauth.ms=1000")
    with connect(broker) as s:
        sasl_handshake(s, "PLAIN")
        error, _, _, lifetime = sasl_authenticate(s, plain_token("alice", "alice-secret"))
        assert (error, lifetime) == (0, 1000)
        assert metadata_v1(s, 3)
        time.sleep(1.5)  # past the session's end
        s.sendall(kafka_wire.frame(kafka_wire.header_v1(kafka_wire.API_METADATA, 1, 4) + struct.pack(">i", -1)))
        assert kafka_wire.connection_closed_by_peer(s, timeout=5)
    assert "expired without re-authentication" in broker.log_path.read_text(errors="replace")


def test_reauthentication_as_another_user_fails(sasl_broker):
    broker = sasl_broker("--override", "connections.max.reauth.ms=60000")
    with connect(broker) as s:
        sasl_handshake(s, "PLAIN")
        assert sasl_authenticate(s, plain_token("alice", "alice-secret"))[0] == 0
        assert metadata_v1(s, 3)
        # the same user again: fine, and requests go on
        assert sasl_handshake(s, "PLAIN", correlation_id=4)[0] == 0
        assert sasl_authenticate(s, plain_token("alice", "alice-secret"), correlation_id=5)[0] == 0
        assert metadata_v1(s, 6)
        # another user: refused, and closed
        assert sasl_handshake(s, "PLAIN", correlation_id=7)[0] == 0
        error, message, _, _ = sasl_authenticate(s, plain_token("admin", "admin-secret"), correlation_id=8)
        assert error == ERR_SASL_AUTHENTICATION_FAILED
        assert message == "Cannot change principals during re-authentication from User.alice: User.admin"
        assert kafka_wire.connection_closed_by_peer(s, timeout=5)
