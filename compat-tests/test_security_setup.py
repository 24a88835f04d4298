"""The README's complete setup, run as written: `config/sasl-ssl-example.yaml` (SASL_SSL with
SCRAM-SHA-512, a loopback PLAINTEXT listener, ACLs with `super.users=User:admin`, the admin and
app users from `scram_users`).

The test supplies only what the example reads from the environment — a keystore made from its
own certificates (`certs.TestPki`) and two random passwords — and the two listeners' ports
(`--override listeners=...`, as a user running it on other ports would). As the admin it
creates the app user's ACLs (what `kafka-acls.sh --producer --consumer --topic app- --group app-
--resource-pattern-type prefixed` makes), then each client produces and consumes as the app
user over SASL_SSL, configured as the README shows:

- kcat and confluent-kafka (librdkafka), kafka-python, kafkajs (`js/sasl_client.js` with a CA
  file) and the Java client (`java/ConfiguredProduceConsume.java` with the README's properties),
  each reading back in a consumer group.
- Without one of its permissions the app gets Kafka's authorization error (a topic it may not
  write, a group it may not join, with confluent-kafka and the Java client).
- A wrong password fails while the app keeps producing; on the PLAINTEXT listener a client is
  User:ANONYMOUS and may do nothing.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import secrets
import subprocess
import types
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType,
                                   ResourceType)

from certs import TestPki
from clients import producing_meanwhile, program_report, run_configured_java, tail, unique_topic, wait_until
from conftest import REPO_ROOT, StrataBroker, free_port, strata_binary
from test_acls import consume_until, produce_one
from test_sasl import login_error
from test_tls import keystore

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLE = REPO_ROOT / "config" / "sasl-ssl-example.yaml"
TIMEOUT = 15


@dataclasses.dataclass
class Setup:
    broker: StrataBroker
    bootstrap: str  # the SASL_SSL listener
    ca: pathlib.Path
    admin_password: str
    app_password: str

    def conf(self, user="app", password=None) -> dict:
        """confluent-kafka's settings, as in the README."""
        return {"bootstrap.servers": self.bootstrap, "security.protocol": "SASL_SSL",
                "ssl.ca.location": str(self.ca), "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": user, "sasl.password": password or self.app_password}


def app_acls() -> list[AclBinding]:
    """What `kafka-acls.sh --add --allow-principal User:app --producer --consumer --topic app-
    --group app- --resource-pattern-type prefixed` creates."""
    def allow(restype, op):
        return AclBinding(restype, "app-", ResourcePatternType.PREFIXED, "User:app", "*", op,
                          AclPermissionType.ALLOW)
    return [allow(ResourceType.TOPIC, op) for op in
            (AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.CREATE, AclOperation.READ)] + [
        allow(ResourceType.GROUP, AclOperation.READ)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security-setup")
    pki = TestPki(tmp / "pki")
    env = {"STRATA_KEYSTORE": str(keystore(pki.dir, pki.server())),
           "STRATA_ADMIN_PASSWORD": secrets.token_urlsafe(12),
           "STRATA_APP_PASSWORD": secrets.token_urlsafe(12)}
    plain_port, ssl_port = free_port(), free_port()
    listeners = f"SASL_SSL://127.0.0.1:{ssl_port},PLAINTEXT://127.0.0.1:{plain_port}"
    data_dir = tmp / "data"
    data_dir.mkdir()
    broker = StrataBroker(strata_binary(), plain_port, data_dir, tmp / "strata.log",
                          ("--config", str(EXAMPLE), "--override", f"listeners={listeners}",
                           "--override", f"advertised.listeners={listeners}"))
    with pytest.MonkeyPatch.context() as mp:  # the broker inherits them
        for k, v in env.items():
            mp.setenv(k, v)
        broker.start()
    s = Setup(broker, f"127.0.0.1:{ssl_port}", pki.ca_cert, env["STRATA_ADMIN_PASSWORD"],
              env["STRATA_APP_PASSWORD"])
    try:
        admin = AdminClient(s.conf("admin", s.admin_password))
        for f in admin.create_acls(app_acls(), request_timeout=TIMEOUT).values():
            f.result(timeout=TIMEOUT)
        yield s
    finally:
        broker.shutdown_quietly()


@pytest.fixture(autouse=True)
def broker_log_on_failure(request, setup):
    request.node._strata_brokers = [setup.broker]


def values(n, prefix="v"):
    return [f"{prefix}{i}" for i in range(n)]


# ------------------------------------------------------------------------------ each client as the app user

def test_kcat_produces_and_reads_in_a_group(setup):
    topic, group = unique_topic("app-kcat"), f"app-{uuid.uuid4().hex[:6]}"
    login = ["-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={setup.ca}",
             "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=app",
             "-X", f"sasl.password={setup.app_password}"]
    produced = subprocess.run(["kcat", "-b", setup.bootstrap, *login, "-t", topic, "-P"],
                              input="\n".join(values(5)) + "\n", capture_output=True, text=True, timeout=30)
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(["kcat", "-b", setup.bootstrap, *login, "-G", group, "-X", "auto.offset.reset=earliest",
                               "-e", "-q", topic], capture_output=True, text=True, timeout=30)
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.split() == values(5)


def test_confluent_kafka_produces_and_commits_in_a_group(setup):
    topic, group = unique_topic("app-ck"), f"app-{uuid.uuid4().hex[:6]}"
    producer = Producer(setup.conf())
    for v in values(5):
        producer.produce(topic, value=v.encode())
    assert producer.flush(30) == 0, "messages left unacknowledged"
    consumer = Consumer({**setup.conf(), "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        got, _ = consume_until(consumer, want_values=[v.encode() for v in values(5)])
        assert got == [v.encode() for v in values(5)]
        consumer.commit(asynchronous=False)
        assert consumer.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)[0].offset == 5
    finally:
        consumer.close()


def test_kafka_python_produces_and_reads_in_a_group(setup):
    from kafka import KafkaConsumer, KafkaProducer
    topic, group = unique_topic("app-kp"), f"app-{uuid.uuid4().hex[:6]}"
    login = dict(bootstrap_servers=setup.bootstrap, security_protocol="SASL_SSL", ssl_cafile=str(setup.ca),
                 sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="app", sasl_plain_password=setup.app_password)
    producer = KafkaProducer(**login)
    for v in values(5):
        producer.send(topic, v.encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=15000, **login)
    got = []
    for m in consumer:
        got.append(m.value.decode())
        if len(got) == 5:
            break
    consumer.commit()
    consumer.close()
    assert got == values(5)


def test_kafkajs_produces_and_reads_in_a_group(setup):
    # sasl_client.js: ssl: { ca: [CA_FILE] }, sasl: { mechanism: 'scram-sha-512', ... }; group TOPIC-group
    cmd = ["node", str(HERE / "js" / "sasl_client.js"), setup.bootstrap, unique_topic("app-js"), "20",
           "scram-sha-512", "app", setup.app_password, str(setup.ca)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=HERE / "js")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else None
    assert proc.returncode == 0 and summary and summary["ok"], f"{summary}\n{tail(proc.stderr)}"
    assert summary["produced"] == summary["consumed"] == 20


def run_java(setup, java_classpath, tmp_path, topic, group):
    """ConfiguredProduceConsume with the README's client properties."""
    return run_configured_java(java_classpath, setup.bootstrap, topic, 20, {
        "security.protocol": "SASL_SSL",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": setup.ca,
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
                            f'username="app" password="{setup.app_password}";',
    }, tmp_path, group=group)


def test_java_client_produces_and_commits_in_a_group(setup, java_classpath, tmp_path):
    group = f"app-{uuid.uuid4().hex[:6]}"
    cmd, proc, summary = run_java(setup, java_classpath, tmp_path, unique_topic("app-java"), group)
    assert proc.returncode == 0 and summary and summary["ok"], program_report(cmd, proc, summary, "client log")
    assert summary["produced"] == summary["consumed"] == 20
    admin = AdminClient(setup.conf("admin", setup.admin_password))
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(timeout=TIMEOUT)
    assert [tp.offset for tp in offsets.topic_partitions] == [20]


# ------------------------------------------------------------------------------ what the app may not do

def test_without_write_on_a_topic_the_app_gets_topic_authorization_failed(setup):
    topic = unique_topic("app-readonly")
    admin = AdminClient(setup.conf("admin", setup.admin_password))
    deny_write = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:app", "*",
                            AclOperation.WRITE, AclPermissionType.DENY)
    for f in admin.create_acls([deny_write], request_timeout=TIMEOUT).values():
        f.result(timeout=TIMEOUT)
    err, _ = produce_one(setup.bootstrap, topic, b"refused", **setup.conf())
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # the admin, a super user, still writes there, and the app may read what it wrote
    err, _ = produce_one(setup.bootstrap, topic, b"from-admin", **setup.conf("admin", setup.admin_password))
    assert err is None, err
    consumer = Consumer({**setup.conf(), "group.id": f"app-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        assert consume_until(consumer, want_values=[b"from-admin"])[0] == [b"from-admin"]
    finally:
        consumer.close()


def test_a_group_outside_its_prefix_gets_group_authorization_failed(setup):
    topic = unique_topic("app-nogroup")
    assert produce_one(setup.bootstrap, topic, b"x", **setup.conf())[0] is None
    consumer = Consumer({**setup.conf(), "group.id": f"other-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        _, errors = consume_until(consumer, want_error=KafkaError.GROUP_AUTHORIZATION_FAILED)
        assert errors[-1].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        consumer.close()


def test_java_client_on_a_topic_outside_its_prefix_gets_topic_authorization_failed(setup, java_classpath,
                                                                                    tmp_path):
    cmd, proc, summary = run_java(setup, java_classpath, tmp_path, unique_topic("other"), "app-g")
    assert summary is not None and not summary["ok"], program_report(cmd, proc, summary, "client log")
    assert summary["phase"] == "create-topic"
    assert "TopicAuthorizationException" in summary["error"], summary


def test_the_plaintext_listener_is_anonymous_and_allowed_nothing(setup):
    err, _ = produce_one(setup.broker.bootstrap, unique_topic("app-plain"), b"x")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_a_wrong_password_fails_while_the_app_keeps_producing(setup):
    topic = unique_topic("app-wrongpw")
    with producing_meanwhile(setup.conf(), topic) as acked:
        wrong = {k: v for k, v in setup.conf().items() if not k.startswith("sasl.")}
        error = login_error(types.SimpleNamespace(bootstrap=setup.bootstrap), mechanism="SCRAM-SHA-512",
                            user="app", password="not-" + setup.app_password, **wrong)
        assert "Authentication failed" in error and "SCRAM-SHA-512" in error, error
        delivered = len(acked)
        wait_until(lambda: len(acked) >= delivered + 5, 30, "the app's messages still acknowledged")
    assert acked and all(e is None for e in acked), acked
    assert setup.app_password not in setup.broker.log_path.read_text(errors="replace")
