"""Listeners and TLS: Kafka's `listeners` / `advertised.listeners` /
`listener.security.protocol.map`, SSL listeners with PEM key and trust stores, mTLS with
`ssl.principal.mapping.rules`, certificate reload, and `${env:..}` / `${file:..}` secrets.

Every broker here has a PLAINTEXT listener on the port the fixtures wait on, plus an SSL
listener on a second port; the certificates come from `certs.TestPki` (a fresh CA per test).

- test_kcat_and_confluent_kafka_over_ssl: kcat produces and confluent-kafka consumes over
  SSL, both verifying the server certificate with the test CA.
- test_each_listener_advertises_its_own_address: kcat -L on each listener lists the broker
  at that listener's advertised address; listener-prefixed ssl.* settings, and
  ssl.client.auth=requested (with and without a client certificate).
- test_mtls_required_maps_the_certificate_to_a_principal: with ssl.client.auth=required a
  client with a certificate works and is logged as the mapped principal; one without fails.
- test_inline_pem_stores_from_overrides_and_yaml: KIP-651's inline PEM (key, chain,
  truststore) from --override values on one line (as a server.properties gives them) and from
  YAML block scalars (an encrypted key); confluent-kafka produces and consumes, with a client
  certificate checked against the inline truststore; one from another CA is refused.
- test_acls_apply_to_the_principal_a_certificate_maps_to: under ACLs, the principal mapped
  from alice's certificate may produce, bob's (no ACL) gets TOPIC_AUTHORIZATION_FAILED.
- test_wrong_protocol_on_either_port_fails_clearly: plaintext on the TLS port and TLS on the
  plaintext port each fail with a clear broker log line, and a good client keeps working.
- test_a_replaced_certificate_is_served_to_new_connections: new cert+key files (another
  subject) are served without a restart; a broken file keeps the previous certificate.
- test_java_client_over_ssl_with_a_pem_truststore: kafka-clients with ssl.truststore.type=PEM.
- test_secrets_from_the_environment_and_a_file: the keystore and truststore locations and
  the password of the (encrypted PKCS#8) key come from ${env:..} and ${file:..}; an unset
  variable stops the start with an error naming the property.
- test_enabled_protocols_limit_the_handshake: with ssl.enabled.protocols=TLSv1.3 a client
  that offers TLS 1.2 at most is refused and one offering 1.3 gets it; with TLSv1.2 the
  reverse, and librdkafka connects with its defaults either way.
- test_bad_listener_settings_stop_the_start_naming_the_key: a listener without a protocol,
  and a JKS keystore, are start-up errors that say what to do.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AclOperation, AdminClient
from confluent_kafka.admin import ResourceType as AclResource
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import kafka_wire
from certs import TestPki
from clients import (Delivered, create_topic, new_consumer, program_report, run_configured_java, tail,
                     unique_topic, wait_for, wait_until)
from conftest import StrataBroker, free_port, strata_binary
from test_acls import AUTHORIZER, Acls, allow, produce_one

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def keystore(pki_dir, issued, name="keystore.pem", password: bytes | None = None):
    """Kafka's PEM keystore: the private key (encrypted PKCS#8 with a password) and the
    certificate chain in one file."""
    path = pki_dir / name
    tmp = pki_dir / (name + ".tmp")
    key = issued.key.read_text()
    if password is not None:
        private = serialization.load_pem_private_key(key.encode(), None)
        key = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(password)).decode()
    tmp.write_text(key + issued.cert.read_text())
    os.replace(tmp, path)
    return path


def broker_log(broker) -> str:
    return ANSI.sub("", broker.log_path.read_text(errors="replace"))


@pytest.fixture
def tls_broker(request, tmp_path):
    """start(ssl_port, *overrides, yaml=None) -> a broker with PLAINTEXT on broker.port and SSL on
    ssl_port; `yaml`, when given, is its config file."""
    brokers: list[StrataBroker] = []
    request.node._strata_brokers = brokers

    def start(ssl_port: int, *overrides: str, advertised: str | None = None, yaml: str | None = None) -> StrataBroker:
        port = free_port()
        n = len(brokers)
        data_dir = tmp_path / f"data{n}"
        data_dir.mkdir()
        args = ["--override", f"listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port}"]
        if advertised:
            args += ["--override", f"advertised.listeners={advertised.format(port=port, ssl_port=ssl_port)}"]
        for o in overrides:
            args += ["--override", o]
        if yaml is not None:
            config = tmp_path / f"strata{n}.yaml"
            config.write_text(yaml)
            args += ["--config", str(config)]
        broker = StrataBroker(strata_binary(), port, data_dir, tmp_path / f"strata{n}.log", tuple(args))
        brokers.append(broker)
        return broker.start()

    yield start
    for b in brokers:
        b.shutdown_quietly()


def ssl_conf(pki, client=None):
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca_cert)}
    if client is not None:
        conf.update({"ssl.certificate.location": str(client.cert), "ssl.key.location": str(client.key)})
    return conf


def kcat(bootstrap, *args, conf=None, stdin=None, timeout=30, check=True):
    extra = [x for k, v in (conf or {}).items() for x in ("-X", f"{k}={v}")]
    proc = subprocess.run(["kcat", "-b", bootstrap, *extra, *args], input=stdin, capture_output=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, (f"kcat {' '.join(args)} exited {proc.returncode}\n"
                                      f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


def consume_values(bootstrap, topic, count, conf, timeout=20.0):
    consumer = new_consumer(bootstrap, **conf)
    try:
        from confluent_kafka import TopicPartition
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg.value())
        return got
    finally:
        consumer.close()


def server_certificate(port, ca) -> x509.Certificate:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))


def metadata_fails(bootstrap, conf):
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 1500, **conf})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=1.5)


def test_kcat_and_confluent_kafka_over_ssl(tls_broker, tmp_path):
    pki = TestPki(tmp_path / "pki")
    ks = keystore(pki.dir, pki.server())
    ssl_port = free_port()
    broker = tls_broker(ssl_port, f"ssl.keystore.location={ks}")
    ssl_bootstrap = f"127.0.0.1:{ssl_port}"
    topic = unique_topic("tls-kcat")
    lines = [f"message-{i}" for i in range(20)]
    kcat(ssl_bootstrap, "-P", "-t", topic, "-p", "0", conf=ssl_conf(pki), stdin=("\n".join(lines) + "\n").encode())
    got = consume_values(ssl_bootstrap, topic, len(lines), ssl_conf(pki))
    assert got == [line.encode() for line in lines]
    out = kcat(ssl_bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", conf=ssl_conf(pki))
    assert out.stdout.decode().split() == lines
    # the same data over the PLAINTEXT listener
    assert consume_values(broker.bootstrap, topic, len(lines), {}) == [line.encode() for line in lines]


def handshake(port: int, ca, lowest: ssl.TLSVersion, highest: ssl.TLSVersion) -> str:
    """The TLS version a Python client limited to [lowest, highest] negotiates with the port."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version, ctx.maximum_version = lowest, highest
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version()


@pytest.mark.parametrize("enabled, refused_range, accepted_range", [
    ("TLSv1.3", (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2), (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)),
    ("TLSv1.2", (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3), (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)),
])
def test_enabled_protocols_limit_the_handshake(tls_broker, tmp_path, enabled, refused_range, accepted_range):
    pki = TestPki(tmp_path / "pki")
    ks = keystore(pki.dir, pki.server())
    ssl_port = free_port()
    tls_broker(ssl_port, f"ssl.keystore.location={ks}", f"ssl.enabled.protocols={enabled}")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(ssl_port, pki.ca_cert, *refused_range)
    assert handshake(ssl_port, pki.ca_cert, *accepted_range) == enabled
    kcat(f"127.0.0.1:{ssl_port}", "-L", conf=ssl_conf(pki))


def test_each_listener_advertises_its_own_address(tls_broker, tmp_path):
    pki = TestPki(tmp_path / "pki")
    ks = keystore(pki.dir, pki.server())
    ssl_port = free_port()
    carol = pki.client("CN=carol,O=Strata")
    # ssl.* set for the SSL listener only (listener.name.<name>.), client certificates optional
    broker = tls_broker(ssl_port, f"listener.name.ssl.ssl.keystore.location={ks}",
                        f"listener.name.SSL.ssl.truststore.location={pki.ca_cert}",
                        "listener.name.ssl.ssl.client.auth=requested",
                        advertised="PLAINTEXT://127.0.0.1:{port},SSL://localhost:{ssl_port}")
    plain = kcat(broker.bootstrap, "-L").stdout.decode()
    assert f"broker 0 at 127.0.0.1:{broker.port}" in plain, plain
    secure = kcat(f"127.0.0.1:{ssl_port}", "-L", conf=ssl_conf(pki)).stdout.decode()
    assert f"broker 0 at localhost:{ssl_port}" in secure, secure
    # with ssl.client.auth=requested a certificate, when given, names the principal
    kcat(f"127.0.0.1:{ssl_port}", "-L", conf=ssl_conf(pki, carol))
    wait_until(lambda: "principal=User:CN=carol,O=Strata" in broker_log(broker), 10, "carol's principal in the log")
    log = broker_log(broker)
    assert re.search(rf"listening listener=SSL protocol=\"SSL\" bound=127.0.0.1:{ssl_port} "
                     rf"advertised=localhost:{ssl_port}", log), tail(log)


def test_mtls_required_maps_the_certificate_to_a_principal(tls_broker, tmp_path):
    pki = TestPki(tmp_path / "pki")
    ks = keystore(pki.dir, pki.server())
    alice = pki.client("CN=Alice,OU=dev,O=Strata")
    ssl_port = free_port()
    broker = tls_broker(ssl_port, f"ssl.keystore.location={ks}", f"ssl.truststore.location={pki.ca_cert}",
                        "ssl.client.auth=required",
                        "ssl.principal.mapping.rules=RULE:^CN=([^,]+),OU=dev,.*$/$1/L,DEFAULT")
    ssl_bootstrap = f"127.0.0.1:{ssl_port}"
    topic = unique_topic("tls-mtls")
    kcat(ssl_bootstrap, "-P", "-t", topic, "-p", "0", conf=ssl_conf(pki, alice), stdin=b"a\nb\n")
    wait_until(lambda: "principal=User:alice" in broker_log(broker), 10, "the mapped principal in the broker log")
    # no client certificate: the handshake is refused and logged
    metadata_fails(ssl_bootstrap, ssl_conf(pki))
    wait_until(lambda: "TLS handshake failed" in broker_log(broker) and "no certificates" in broker_log(broker),
               10, "the refused handshake in the broker log")
    # a certificate from another CA is refused too
    other = TestPki(tmp_path / "other", name="other").client("CN=mallory,OU=dev,O=Strata")
    metadata_fails(ssl_bootstrap, ssl_conf(pki, other))
    assert consume_values(ssl_bootstrap, topic, 2, ssl_conf(pki, alice)) == [b"a", b"b"]


def one_line(pem: str) -> str:
    """A PEM value as a Kafka server.properties gives it when its lines are continued with
    `\\`: one line, the line breaks become spaces."""
    return " ".join(pem.split())


def foreign_certificate_refused(port, pki, client) -> bool:
    """Python's ssl presents `client`'s certificate whatever CAs the broker names; True when
    the broker then ends the connection instead of answering ApiVersions."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(client.cert), str(client.key))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(kafka_wire.api_versions_v0_request(1))
                kafka_wire.recv_frame(s)
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return False


def produce_values(bootstrap, topic, values, conf, timeout=20.0):
    delivered = Delivered()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **conf})
    for v in values:
        producer.produce(topic, value=v, partition=0, on_delivery=delivered.callback)
    assert producer.flush(timeout) == 0 and not delivered.failed, delivered.failed
    producer.close()


def test_inline_pem_stores_from_overrides_and_yaml(tls_broker, tmp_path):
    """KIP-651: ssl.keystore.certificate.chain, ssl.keystore.key and
    ssl.truststore.certificates hold the PEM itself."""
    pki = TestPki(tmp_path / "pki")
    server, alice = pki.server(), pki.client("CN=alice,O=Strata")
    mallory = TestPki(tmp_path / "other", name="other").client("CN=mallory,O=Strata")
    # --override, each value on one line as server.properties gives it; client certificates
    # required and checked against the inline truststore
    ssl_port = free_port()
    broker = tls_broker(ssl_port, f"ssl.keystore.certificate.chain={one_line(server.cert.read_text())}",
                        f"ssl.keystore.key={one_line(server.key.read_text())}",
                        f"ssl.truststore.certificates={one_line(pki.ca_cert.read_text())}",
                        "ssl.client.auth=required")
    ssl_bootstrap = f"127.0.0.1:{ssl_port}"
    topic = unique_topic("tls-inline")
    values = [f"inline-{i}".encode() for i in range(10)]
    produce_values(ssl_bootstrap, topic, values, ssl_conf(pki, alice))
    assert consume_values(ssl_bootstrap, topic, len(values), ssl_conf(pki, alice)) == values
    wait_until(lambda: "principal=User:CN=alice,O=Strata" in broker_log(broker), 10, "alice's principal in the log")
    # a certificate from a CA the inline truststore does not hold is refused: librdkafka does
    # not even offer it (the broker names only the inline CA), Python's ssl sends it anyway
    metadata_fails(ssl_bootstrap, ssl_conf(pki, mallory))
    assert foreign_certificate_refused(ssl_port, pki, mallory)
    wait_until(lambda: re.search(r"TLS handshake failed; closing peer=127.0.0.1:\d+ listener=SSL "
                                 r"error=invalid peer certificate: UnknownIssuer", broker_log(broker)), 10,
               "the refused certificate in the broker log")
    assert "principal=User:CN=mallory" not in broker_log(broker)

    # YAML block scalars keep the line breaks; the key is encrypted, opened with ssl.key.password
    encrypted_key = serialization.load_pem_private_key(server.key.read_bytes(), None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"inline key pass")).decode()

    def block(pem: str) -> str:
        return "|\n" + "".join(f"    {line}\n" for line in pem.splitlines())

    yaml_port = free_port()
    from_yaml = tls_broker(yaml_port, yaml=(
        "kafka:\n"
        f"  ssl.keystore.certificate.chain: {block(server.cert.read_text())}"
        f"  ssl.keystore.key: {block(encrypted_key)}"
        "  ssl.key.password: inline key pass\n"))
    yaml_bootstrap = f"127.0.0.1:{yaml_port}"
    produce_values(yaml_bootstrap, topic, values, ssl_conf(pki))
    assert consume_values(yaml_bootstrap, topic, len(values), ssl_conf(pki)) == values
    for b in (broker, from_yaml):
        # (the test's own "===== start" line holds the command line)
        written = [line for line in broker_log(b).splitlines() if not line.startswith("===== start")]
        assert not [line for line in written if "BEGIN" in line], "a PEM value was logged"


def test_acls_apply_to_the_principal_a_certificate_maps_to(tls_broker, tmp_path):
    """mTLS under ACLs: ssl.principal.mapping.rules turns CN=alice,... into User:alice, whose
    ACLs let her produce; bob's certificate maps to User:bob, who has none."""
    pki = TestPki(tmp_path / "pki")
    ks = keystore(pki.dir, pki.server())
    alice, bob = pki.client("CN=alice,OU=apps,O=Strata"), pki.client("CN=bob,OU=apps,O=Strata")
    ssl_port = free_port()
    # the PLAINTEXT listener's User:ANONYMOUS administers; SSL clients are who their certificates say
    broker = tls_broker(ssl_port, f"ssl.keystore.location={ks}", f"ssl.truststore.location={pki.ca_cert}",
                        "ssl.client.auth=required", "ssl.principal.mapping.rules=RULE:^CN=([^,]+),.*$/$1/L,DEFAULT",
                        AUTHORIZER, "super.users=User:ANONYMOUS")
    ssl_bootstrap = f"127.0.0.1:{ssl_port}"
    topic = unique_topic("tls-acl")
    create_topic(broker.bootstrap, topic, 1)
    Acls(broker.bootstrap).grant(allow(AclResource.TOPIC, topic, AclOperation.WRITE, principal="User:alice"),
                                 allow(AclResource.TOPIC, topic, AclOperation.DESCRIBE, principal="User:alice"))

    err, errors = produce_one(ssl_bootstrap, topic, b"from-alice", **ssl_conf(pki, alice))
    assert err is None, (err, errors)
    err, errors = produce_one(ssl_bootstrap, topic, b"from-bob", **ssl_conf(pki, bob))
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (err, errors)
    assert consume_values(broker.bootstrap, topic, 1, {}) == [b"from-alice"]
    log = broker_log(broker)
    assert "principal=User:alice" in log and "principal=User:bob" in log, tail(log)


def test_wrong_protocol_on_either_port_fails_clearly(tls_broker, tmp_path):
    pki = TestPki(tmp_path / "pki")
    ks = keystore(pki.dir, pki.server())
    ssl_port = free_port()
    broker = tls_broker(ssl_port, f"ssl.keystore.location={ks}")
    ssl_bootstrap = f"127.0.0.1:{ssl_port}"
    metadata_fails(ssl_bootstrap, {})                     # plaintext client on the TLS port
    metadata_fails(broker.bootstrap, ssl_conf(pki))       # TLS client on the plaintext port
    wait_until(lambda: (
        "a TLS handshake (ClientHello) arrived on a listener without TLS" in broker_log(broker)
        and re.search(r"TLS handshake failed; closing peer=127.0.0.1:\d+ listener=SSL", broker_log(broker))),
        10, "both mistakes in the broker log")
    topic = unique_topic("tls-still-served")
    create_topic(broker.bootstrap, topic, 1)
    kcat(ssl_bootstrap, "-P", "-t", topic, "-p", "0", conf=ssl_conf(pki), stdin=b"ok\n")
    assert consume_values(broker.bootstrap, topic, 1, {}) == [b"ok"]
    assert broker.is_running()


def test_a_replaced_certificate_is_served_to_new_connections(tls_broker, tmp_path):
    pki = TestPki(tmp_path / "pki")
    first = pki.server()
    ks = keystore(pki.dir, first)
    ssl_port = free_port()
    broker = tls_broker(ssl_port, f"ssl.keystore.location={ks}")
    before = server_certificate(ssl_port, pki.ca_cert)
    assert before.subject.rfc4514_string() == "CN=localhost,O=Strata"
    # a broken file: the previous certificate stays in use, and the log says why
    ks.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    # (the files are checked when a client connects, at most every few seconds)
    wait_until(lambda: (server_certificate(ssl_port, pki.ca_cert).serial_number == before.serial_number
                        and "do not load; keeping the previous ones" in broker_log(broker)), 15,
               "the load error in the broker log, the previous certificate still served")
    # a new certificate with another subject and serial
    keystore(pki.dir, pki.server("server2", "CN=localhost,O=Reloaded"))
    after = wait_for("the new certificate on a new connection", lambda: (
        lambda c: (c.serial_number != before.serial_number, c))(server_certificate(ssl_port, pki.ca_cert)),
        timeout=15)
    assert after.subject.rfc4514_string() == "CN=localhost,O=Reloaded"
    assert "TLS certificates changed on disk; new connections use them listener=SSL certificate=CN=localhost,O=Reloaded" \
        in broker_log(broker), tail(broker_log(broker))
    out = kcat(f"127.0.0.1:{ssl_port}", "-L", conf=ssl_conf(pki)).stdout.decode()
    assert f"broker 0 at 127.0.0.1:{ssl_port}" in out


def test_java_client_over_ssl_with_a_pem_truststore(tls_broker, tmp_path, java_classpath):
    pki = TestPki(tmp_path / "pki")
    ks = keystore(pki.dir, pki.server())
    ssl_port = free_port()
    tls_broker(ssl_port, f"ssl.keystore.location={ks}")
    cmd, proc, summary = run_configured_java(
        java_classpath, f"127.0.0.1:{ssl_port}", unique_topic("tls-java"), 200,
        {"security.protocol": "SSL", "ssl.truststore.type": "PEM", "ssl.truststore.location": pki.ca_cert},
        tmp_path)
    assert proc.returncode == 0 and summary and summary["ok"], program_report(cmd, proc, summary, "client log")
    assert summary["produced"] == summary["consumed"] == 200


def test_secrets_from_the_environment_and_a_file(tls_broker, tmp_path, monkeypatch):
    pki = TestPki(tmp_path / "pki")
    ks = keystore(pki.dir, pki.server(), password=b"key pass 1")
    bob = pki.client("CN=bob,O=Strata")
    secrets = tmp_path / "secrets.properties"
    secrets.write_text(f"# where the trust store is\ntruststore={pki.ca_cert}\nkeypass = key pass 1\n")
    monkeypatch.setenv("STRATA_TEST_KEYSTORE", str(ks))
    ssl_port = free_port()
    broker = tls_broker(ssl_port, "ssl.keystore.location=${env:STRATA_TEST_KEYSTORE}",
                        f"ssl.truststore.location=${{file:{secrets}:truststore}}", "ssl.client.auth=required",
                        f"ssl.key.password=${{file:{secrets}:keypass}}",
                        "config.providers=env,file")
    out = kcat(f"127.0.0.1:{ssl_port}", "-L", conf=ssl_conf(pki, bob)).stdout.decode()
    assert f"broker 0 at 127.0.0.1:{ssl_port}" in out
    wait_until(lambda: "principal=User:CN=bob,O=Strata" in broker_log(broker), 10, "bob's principal in the log")
    # an unset variable: the broker does not start, and says which property needed it
    monkeypatch.delenv("STRATA_TEST_KEYSTORE")
    proc = subprocess.run([str(strata_binary()), "--data-dir", str(tmp_path / "never"), "--override",
                           f"listeners=SSL://127.0.0.1:{free_port()}", "--override",
                           "ssl.keystore.location=${env:STRATA_TEST_KEYSTORE}"],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2, proc.stderr
    assert "ssl.keystore.location" in proc.stderr and "STRATA_TEST_KEYSTORE is not set" in proc.stderr, proc.stderr


def test_bad_listener_settings_stop_the_start_naming_the_key(tmp_path):
    def start(*overrides):
        args = [x for o in overrides for x in ("--override", o)]
        return subprocess.run([str(strata_binary()), "--data-dir", str(tmp_path / "never"), *args],
                              capture_output=True, text=True, timeout=20)

    proc = start(f"listeners=CLIENT://127.0.0.1:{free_port()}")
    assert proc.returncode == 2, proc.stderr
    assert "listener.security.protocol.map" in proc.stderr and "CLIENT" in proc.stderr, proc.stderr
    proc = start(f"listeners=SSL://127.0.0.1:{free_port()}", "ssl.keystore.type=JKS",
                 "ssl.keystore.location=/nonexistent.jks")
    assert proc.returncode != 0
    assert "listener SSL" in proc.stderr and "keytool" in proc.stderr and "openssl pkcs12" in proc.stderr, proc.stderr
    proc = start(f"advertised.listeners=PLAINTEXT://0.0.0.0:{free_port()}")
    assert proc.returncode == 2 and "advertised.listeners" in proc.stderr, proc.stderr
