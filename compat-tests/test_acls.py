"""ACLs under Kafka's StandardAuthorizer semantics, driven by confluent-kafka (librdkafka).

On a PLAINTEXT listener every client is User:ANONYMOUS, so each test grants (or takes away)
permissions of User:ANONYMOUS through the AdminClient's ACL API and checks what a producer,
a consumer group, a transactional producer and the admin client can then do, and which error
each one reports when a permission is missing. (Without an authorizer the ACL APIs answer
SECURITY_DISABLED: test_cluster_admin.py covers that.) The Java Admin's ACL calls, what
kafka-acls.sh makes, run from java/AclsAdmin.java. On a SASL_PLAINTEXT listener two SCRAM
users, an admin in `super.users` and an application user, get what each is entitled to.

A broker under ACLs starts with nothing allowed, not even creating ACLs, so `acl_broker`
first runs it with `super.users=User:ANONYMOUS`, grants ALTER on the cluster (which lets the
client manage ACLs), and restarts it as an ordinary user: the grant has to survive the
restart to get that far.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import kafka.errors
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourcePatternType,
                                   ResourceType)

from kafka import KafkaAdminClient
from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter
from kafka.admin import ResourceType as KpResourceType

from clients import program_report, unique_topic
from test_java import java_command
from test_sasl import conf as sasl_conf
from test_sasl import sasl_broker  # noqa: F401 (fixture)

AUTHORIZER = "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ANON = "User:ANONYMOUS"
TIMEOUT = 15


def allow(restype, name, op, pattern=ResourcePatternType.LITERAL, principal=ANON, host="*"):
    return AclBinding(restype, name, pattern, principal, host, op, AclPermissionType.ALLOW)


def deny(restype, name, op, pattern=ResourcePatternType.LITERAL, principal=ANON, host="*"):
    return AclBinding(restype, name, pattern, principal, host, op, AclPermissionType.DENY)


def exactly(binding: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type, binding.principal,
                            binding.host, binding.operation, binding.permission_type)


class Acls:
    """The AdminClient's ACL calls, waited for."""

    def __init__(self, bootstrap: str):
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def grant(self, *bindings: AclBinding) -> None:
        for f in self.admin.create_acls(list(bindings), request_timeout=TIMEOUT).values():
            f.result(timeout=TIMEOUT)

    def revoke(self, *bindings: AclBinding) -> list[AclBinding]:
        removed = []
        for f in self.admin.delete_acls([exactly(b) for b in bindings], request_timeout=TIMEOUT).values():
            removed.extend(f.result(timeout=TIMEOUT))
        return removed

    def describe(self, flt: AclBindingFilter) -> list[AclBinding]:
        return self.admin.describe_acls(flt, request_timeout=TIMEOUT).result(timeout=TIMEOUT)

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        self.grant(allow(ResourceType.TOPIC, topic, AclOperation.CREATE))
        self.admin.create_topics([NewTopic(topic, partitions, 1)], request_timeout=TIMEOUT)[topic].result(
            timeout=TIMEOUT)
        self.revoke(allow(ResourceType.TOPIC, topic, AclOperation.CREATE))


ANY_ACL = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                           AclPermissionType.ANY)
MANAGE_ACLS = allow(ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER)


@pytest.fixture
def acl_broker(strata_factory):
    broker = strata_factory("--override", AUTHORIZER, "--override", f"super.users={ANON}")
    Acls(broker.bootstrap).grant(MANAGE_ACLS)
    broker.stop()
    broker.extra_args = ("--override", AUTHORIZER)
    return broker.start()


def error_code(exc: BaseException) -> int:
    assert isinstance(exc, KafkaException), repr(exc)
    return exc.args[0].code()


def produce_one(bootstrap: str, topic: str, value: bytes, **conf):
    """Produces one message; returns the delivery error (None when delivered)."""
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 10000,
                         "error_cb": lambda e: errors.append(e), **conf})
    result = []
    producer.produce(topic, value=value, on_delivery=lambda err, msg: result.append(err))
    producer.flush(TIMEOUT)
    assert result, f"no delivery report (errors: {errors})"
    return result[0], errors


def group_consumer(bootstrap: str, group: str, protocol: str = "classic") -> Consumer:
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False}
    if protocol == "classic":
        conf.update({"session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    else:  # KIP-848: the broker owns the session settings
        conf["group.protocol"] = protocol
    return Consumer(conf)


def consume_until(consumer: Consumer, want_values=None, want_error=None, timeout=30.0):
    """Polls until every wanted value arrived, or until a message error with `want_error` came."""
    got, errors = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            errors.append(msg.error())
            if want_error is not None and msg.error().code() == want_error:
                return got, errors
            continue
        got.append(msg.value())
        if want_values is not None and set(want_values) <= set(got):
            return got, errors
    raise AssertionError(f"timed out: got {got}, errors {[e.str() for e in errors]}")


def test_acls_are_created_described_deleted_and_kept_across_a_restart(acl_broker):
    acls = Acls(acl_broker.bootstrap)
    topic_read = allow(ResourceType.TOPIC, "orders", AclOperation.READ)
    prefixed_write = allow(ResourceType.TOPIC, "orders-", AclOperation.WRITE, ResourcePatternType.PREFIXED)
    wildcard_describe = allow(ResourceType.TOPIC, "*", AclOperation.DESCRIBE, principal="User:*")
    group_deny = deny(ResourceType.GROUP, "g1", AclOperation.ALL, principal="User:mallory", host="10.0.0.9")
    acls.grant(topic_read, prefixed_write, wildcard_describe, group_deny)

    everything = acls.describe(ANY_ACL)
    assert set(everything) == {MANAGE_ACLS, topic_read, prefixed_write, wildcard_describe, group_deny}
    # MATCH: every pattern that applies to the topic "orders-eu".
    match = AclBindingFilter(ResourceType.TOPIC, "orders-eu", ResourcePatternType.MATCH, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    assert set(acls.describe(match)) == {prefixed_write, wildcard_describe}
    by_principal = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:mallory", None,
                                    AclOperation.ANY, AclPermissionType.ANY)
    assert acls.describe(by_principal) == [group_deny]

    # Invalid ACLs are refused one by one with INVALID_REQUEST; the valid one is stored.
    bad_cluster = allow(ResourceType.BROKER, "other-cluster", AclOperation.ALTER)
    fine = allow(ResourceType.TRANSACTIONAL_ID, "tx-", AclOperation.WRITE, ResourcePatternType.PREFIXED)
    futures = acls.admin.create_acls([bad_cluster, fine], request_timeout=TIMEOUT)
    futures[fine].result(timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        futures[bad_cluster].result(timeout=TIMEOUT)
    assert error_code(e.value) == KafkaError.INVALID_REQUEST
    assert "kafka-cluster" in e.value.args[0].str()

    # Deleting with a filter answers the ACLs it removed.
    delete_topic_acls = AclBindingFilter(ResourceType.TOPIC, None, ResourcePatternType.ANY, None, None,
                                         AclOperation.ANY, AclPermissionType.ANY)
    removed = acls.admin.delete_acls([delete_topic_acls], request_timeout=TIMEOUT)[delete_topic_acls].result(
        timeout=TIMEOUT)
    assert set(removed) == {topic_read, prefixed_write, wildcard_describe}

    acl_broker.stop()
    acl_broker.start()
    assert set(Acls(acl_broker.bootstrap).describe(ANY_ACL)) == {MANAGE_ACLS, group_deny, fine}


def test_without_alter_on_the_cluster_acls_cannot_be_changed(acl_broker):
    acls = Acls(acl_broker.bootstrap)
    acls.revoke(MANAGE_ACLS)
    with pytest.raises(KafkaException) as e:
        acls.grant(MANAGE_ACLS)
    assert error_code(e.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as e:
        acls.revoke(MANAGE_ACLS)
    assert error_code(e.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # librdkafka drops DescribeAcls' error code; kafka-python reports it.
    kp_filter = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                          permission_type=ACLPermissionType.ANY,
                          resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None, ACLResourcePatternType.ANY))
    kp_admin = KafkaAdminClient(bootstrap_servers=acl_broker.bootstrap)
    try:
        with pytest.raises(kafka.errors.ClusterAuthorizationFailedError):
            kp_admin.describe_acls(kp_filter)
    finally:
        kp_admin.close()


def grants_for_app(topic: str, group: str):
    return [allow(ResourceType.TOPIC, topic, AclOperation.WRITE),
            allow(ResourceType.TOPIC, topic, AclOperation.READ),
            allow(ResourceType.GROUP, group, AclOperation.READ)]


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_a_producer_and_a_consumer_group_work_with_exactly_the_acls_they_need(acl_broker, protocol):
    bootstrap = acl_broker.bootstrap
    acls = Acls(bootstrap)
    topic, group = unique_topic("acl-app"), f"g-{uuid.uuid4().hex[:6]}"
    acls.create_topic(topic)
    acls.grant(*grants_for_app(topic, group))

    err, _ = produce_one(bootstrap, topic, b"hello")
    assert err is None, err
    consumer = group_consumer(bootstrap, group, protocol)
    try:
        consumer.subscribe([topic])
        got, _ = consume_until(consumer, want_values=[b"hello"])
        assert b"hello" in got
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)
        assert committed[0].offset == 1
    finally:
        consumer.close()


def test_without_write_on_the_topic_produce_fails_with_topic_authorization_failed(acl_broker):
    bootstrap = acl_broker.bootstrap
    acls = Acls(bootstrap)
    topic = unique_topic("acl-nowrite")
    acls.create_topic(topic)
    acls.grant(allow(ResourceType.TOPIC, topic, AclOperation.WRITE))
    assert produce_one(bootstrap, topic, b"allowed")[0] is None
    # Taken away from the running broker: the next producer is refused.
    acls.revoke(allow(ResourceType.TOPIC, topic, AclOperation.WRITE))
    acls.grant(allow(ResourceType.TOPIC, topic, AclOperation.DESCRIBE))
    err, _ = produce_one(bootstrap, topic, b"refused")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_without_read_on_the_topic_the_consumer_gets_topic_authorization_failed(acl_broker):
    bootstrap = acl_broker.bootstrap
    acls = Acls(bootstrap)
    topic, group = unique_topic("acl-noread"), f"g-{uuid.uuid4().hex[:6]}"
    acls.create_topic(topic)
    acls.grant(*grants_for_app(topic, group))
    assert produce_one(bootstrap, topic, b"x")[0] is None
    acls.revoke(allow(ResourceType.TOPIC, topic, AclOperation.READ))
    consumer = group_consumer(bootstrap, group)
    try:
        consumer.subscribe([topic])
        got, _ = consume_until(consumer, want_error=KafkaError.TOPIC_AUTHORIZATION_FAILED)
        assert got == []
    finally:
        consumer.close()


def test_a_regex_subscription_leaves_out_topics_the_member_may_not_describe(acl_broker):
    """KIP-848: the broker resolves the regex as the heartbeating member may see it, and
    ConsumerGroupDescribe hides a group whose assignment names a topic the caller may not see."""
    bootstrap = acl_broker.bootstrap
    acls = Acls(bootstrap)
    prefix, group = unique_topic("acl-regex"), f"g-{uuid.uuid4().hex[:6]}"
    visible, secret = f"{prefix}-visible", f"{prefix}-secret"
    for topic in (visible, secret):
        acls.create_topic(topic)
    acls.grant(*grants_for_app(visible, group), allow(ResourceType.TOPIC, secret, AclOperation.WRITE))
    assert produce_one(bootstrap, visible, b"seen")[0] is None
    assert produce_one(bootstrap, secret, b"unseen")[0] is None
    acls.revoke(allow(ResourceType.TOPIC, secret, AclOperation.WRITE))
    consumer = group_consumer(bootstrap, group, "consumer")
    try:
        consumer.subscribe([f"^{prefix}-.*"])
        got, errors = consume_until(consumer, want_values=[b"seen"])
        time.sleep(2)  # a few more heartbeats: the secret topic must not be assigned later
        while (msg := consumer.poll(0.2)) is not None:
            (errors if msg.error() else got).append(msg.error() or msg.value())
        assert got == [b"seen"], got
        assert not errors, [e.str() for e in errors]
        assert {tp.topic for tp in consumer.assignment()} == {visible}
        # what the broker assigned (ConsumerGroupDescribe), not only what the client kept
        acls.grant(allow(ResourceType.GROUP, group, AclOperation.DESCRIBE))
        described = acls.admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(
            timeout=TIMEOUT)
        assigned = {tp.topic for m in described.members for tp in m.assignment.topic_partitions}
        assert assigned == {visible}, assigned
        # A group whose assignment names a topic the client may not see is hidden, as Kafka does.
        acls.revoke(*grants_for_app(visible, group)[:2])
        with pytest.raises(KafkaException) as hidden:
            acls.admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
        assert error_code(hidden.value) == KafkaError.TOPIC_AUTHORIZATION_FAILED, hidden.value
    finally:
        consumer.close()


def test_group_config_operations_are_checked_and_reported(acl_broker):
    """Kafka 4's group configs: DESCRIBE_CONFIGS / ALTER_CONFIGS on the group (else
    GROUP_AUTHORIZATION_FAILED), and both among a group's authorized operations."""
    bootstrap = acl_broker.bootstrap
    acls = Acls(bootstrap)
    topic, group = unique_topic("acl-group-configs"), f"g-{uuid.uuid4().hex[:6]}"
    acls.create_topic(topic)
    acls.grant(*grants_for_app(topic, group))
    resource = ConfigResource(ResourceType.GROUP, group)
    change = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("consumer.session.timeout.ms", "50000", incremental_operation=AlterConfigOpType.SET)])

    with pytest.raises(KafkaException) as e:
        acls.admin.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)
    assert error_code(e.value) == KafkaError.GROUP_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as e:
        acls.admin.incremental_alter_configs([change], request_timeout=TIMEOUT)[change].result(timeout=TIMEOUT)
    assert error_code(e.value) == KafkaError.GROUP_AUTHORIZATION_FAILED

    acls.grant(allow(ResourceType.GROUP, group, AclOperation.ALTER_CONFIGS))  # implies DESCRIBE_CONFIGS
    acls.admin.incremental_alter_configs([change], request_timeout=TIMEOUT)[change].result(timeout=TIMEOUT)
    described = acls.admin.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)
    assert described["consumer.session.timeout.ms"].value == "50000"

    assert produce_one(bootstrap, topic, b"hello")[0] is None
    consumer = group_consumer(bootstrap, group)
    try:
        consumer.subscribe([topic])
        consume_until(consumer, want_values=[b"hello"])
        found = acls.admin.describe_consumer_groups([group], include_authorized_operations=True,
                                                    request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    finally:
        consumer.close()
    assert set(found.authorized_operations) == {AclOperation.READ, AclOperation.DESCRIBE,
                                                AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_without_read_on_the_group_the_consumer_gets_group_authorization_failed(acl_broker, protocol):
    bootstrap = acl_broker.bootstrap
    acls = Acls(bootstrap)
    topic, group = unique_topic("acl-nogroup"), f"g-{uuid.uuid4().hex[:6]}"
    acls.create_topic(topic)
    acls.grant(*grants_for_app(topic, group))
    assert produce_one(bootstrap, topic, b"x")[0] is None
    acls.revoke(allow(ResourceType.GROUP, group, AclOperation.READ))
    consumer = group_consumer(bootstrap, group, protocol)
    try:
        consumer.subscribe([topic])
        got, _ = consume_until(consumer, want_error=KafkaError.GROUP_AUTHORIZATION_FAILED)
        assert got == []
    finally:
        consumer.close()


def test_idempotent_producers_need_idempotent_write_or_write_on_some_topic(acl_broker):
    bootstrap = acl_broker.bootstrap
    acls = Acls(bootstrap)
    topic = unique_topic("acl-idem")
    acls.create_topic(topic)
    idempotent = {"enable.idempotence": True}

    # Only DESCRIBE: InitProducerId is refused with CLUSTER_AUTHORIZATION_FAILED.
    acls.grant(allow(ResourceType.TOPIC, topic, AclOperation.DESCRIBE))
    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, "error_cb": errors.append, **idempotent})
    producer.produce(topic, value=b"a")
    deadline = time.monotonic() + TIMEOUT
    while not errors and time.monotonic() < deadline:
        try:
            producer.poll(0.1)
        except KafkaException as e:
            errors.append(e.args[0])
    assert errors and errors[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, errors
    assert errors[0].fatal()

    # KIP-679: WRITE on any topic implies IDEMPOTENT_WRITE.
    acls.grant(allow(ResourceType.TOPIC, topic, AclOperation.WRITE))
    err, errors = produce_one(bootstrap, topic, b"b", **idempotent)
    assert err is None, (err, errors)

    # IDEMPOTENT_WRITE on the cluster alone gets a producer id, not the topic.
    acls.revoke(allow(ResourceType.TOPIC, topic, AclOperation.WRITE))
    acls.grant(allow(ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE))
    err, errors = produce_one(bootstrap, topic, b"c", **idempotent)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (err, errors)


def test_transactions_under_acls_and_without_write_on_the_transactional_id(acl_broker):
    bootstrap = acl_broker.bootstrap
    acls = Acls(bootstrap)
    topic, group, txn = unique_topic("acl-txn"), f"g-{uuid.uuid4().hex[:6]}", f"tx-{uuid.uuid4().hex[:6]}"
    acls.create_topic(topic)
    acls.grant(*grants_for_app(topic, group), allow(ResourceType.TRANSACTIONAL_ID, txn, AclOperation.WRITE))

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn})
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    producer.produce(topic, value=b"in-txn")
    consumer = group_consumer(bootstrap, group)
    try:
        producer.send_offsets_to_transaction([TopicPartition(topic, 0, 0)], consumer.consumer_group_metadata(),
                                             TIMEOUT)
        producer.commit_transaction(TIMEOUT)
        consumer.subscribe([topic])
        got, _ = consume_until(consumer, want_values=[b"in-txn"])
        assert got == [b"in-txn"]
    finally:
        consumer.close()

    acls.revoke(allow(ResourceType.TRANSACTIONAL_ID, txn, AclOperation.WRITE))
    refused = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn})
    with pytest.raises(KafkaException) as e:
        refused.init_transactions(TIMEOUT)
    assert error_code(e.value) == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_metadata_shows_only_topics_the_client_may_describe(acl_broker):
    bootstrap = acl_broker.bootstrap
    acls = Acls(bootstrap)
    visible, hidden = unique_topic("acl-visible"), unique_topic("acl-hidden")
    acls.create_topic(visible)
    acls.create_topic(hidden)
    acls.grant(allow(ResourceType.TOPIC, "acl-visible-", AclOperation.READ, ResourcePatternType.PREFIXED))

    listed = acls.admin.list_topics(timeout=TIMEOUT).topics
    assert visible in listed and hidden not in listed
    named = acls.admin.list_topics(topic=hidden, timeout=TIMEOUT).topics[hidden]
    assert named.error is not None and named.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # Authorized operations: READ and the DESCRIBE it implies.
    described = acls.admin.describe_topics(TopicCollection([visible]), include_authorized_operations=True)
    ops = set(described[visible].result(timeout=TIMEOUT).authorized_operations)
    assert ops == {AclOperation.READ, AclOperation.DESCRIBE}
    cluster = acls.admin.describe_cluster(include_authorized_operations=True).result(timeout=TIMEOUT)
    assert set(cluster.authorized_operations) == {AclOperation.ALTER, AclOperation.DESCRIBE}


def test_cluster_authorized_operations_need_describe_on_the_cluster(acl_broker):
    """As Kafka: a principal that may not DESCRIBE the cluster is told no operations at all,
    even those it holds there."""
    acls = Acls(acl_broker.bootstrap)
    acls.grant(allow(ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE))
    cluster = acls.admin.describe_cluster(include_authorized_operations=True).result(timeout=TIMEOUT)
    assert set(cluster.authorized_operations) == {AclOperation.ALTER, AclOperation.DESCRIBE,
                                                  AclOperation.IDEMPOTENT_WRITE}
    acls.revoke(MANAGE_ACLS)  # ALTER, and the DESCRIBE it implied
    # librdkafka shows 0 and "not asked" alike (None); kafka-python shows 0 as no operations.
    kp_admin = KafkaAdminClient(bootstrap_servers=acl_broker.bootstrap)
    try:
        assert kp_admin.describe_cluster()["authorized_operations"] == []
    finally:
        kp_admin.close()


def test_allow_everyone_if_no_acl_found_opens_resources_without_acls(strata_factory):
    broker = strata_factory("--override", AUTHORIZER, "--override", "allow.everyone.if.no.acl.found=true")
    bootstrap = broker.bootstrap
    topic = unique_topic("acl-open")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=TIMEOUT)
    assert produce_one(bootstrap, topic, b"open")[0] is None
    # An ACL on the topic for someone else: the topic now has ACLs, and none for us.
    Acls(bootstrap).grant(allow(ResourceType.TOPIC, topic, AclOperation.ALL, principal="User:bob"))
    err, _ = produce_one(bootstrap, topic, b"closed")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_super_users_bypass_every_acl(strata_factory):
    broker = strata_factory("--override", AUTHORIZER, "--override", f"super.users=User:admin;{ANON}")
    bootstrap = broker.bootstrap
    acls = Acls(bootstrap)
    topic, group = unique_topic("acl-super"), f"g-{uuid.uuid4().hex[:6]}"
    acls.admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=TIMEOUT)
    acls.grant(deny(ResourceType.TOPIC, "*", AclOperation.ALL), deny(ResourceType.GROUP, "*", AclOperation.ALL))
    assert produce_one(bootstrap, topic, b"super")[0] is None
    consumer = group_consumer(bootstrap, group)
    try:
        consumer.subscribe([topic])
        assert consume_until(consumer, want_values=[b"super"])[0] == [b"super"]
    finally:
        consumer.close()


def test_java_admin_manages_acls_as_kafka_acls_sh_does(acl_broker, java_classpath):
    cmd = java_command(java_classpath, "AclsAdmin", "--bootstrap", acl_broker.bootstrap, "--principal", "User:java")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else None
    assert proc.returncode == 0 and summary and summary["ok"], program_report(cmd, proc, summary, "AclsAdmin")
    read = "TOPIC:PREFIXED:java- User:java * READ ALLOW"
    deny = "TOPIC:LITERAL:java-secret User:java * WRITE DENY"
    assert summary["invalid"][0] == "InvalidRequestException", summary["invalid"]
    assert "kafka-cluster" in summary["invalid"][1]
    assert summary["mine"] == [deny, read]
    assert summary["match"] == [read]
    assert summary["deleted"] == [deny]
    assert summary["after"] == [read]


def test_scram_users_are_told_apart_an_admin_in_super_users_and_an_app_user(sasl_broker):
    broker = sasl_broker("--override", AUTHORIZER, "--override", "super.users=User:admin",
                         yaml="scram_users:\n"
                              "  - {name: admin, mechanism: SCRAM-SHA-512, password: admin-pw}\n"
                              "  - {name: app, mechanism: SCRAM-SHA-256, password: app-pw}\n")
    as_admin = sasl_conf(broker, mechanism="SCRAM-SHA-512", user="admin", password="admin-pw")
    as_app = sasl_conf(broker, mechanism="SCRAM-SHA-256", user="app", password="app-pw")
    topic, other, group = unique_topic("acl-scram"), unique_topic("acl-scram-other"), f"g-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(as_admin)
    for t in (topic, other):
        admin.create_topics([NewTopic(t, 1, 1)])[t].result(timeout=TIMEOUT)
    app = "User:app"
    for f in admin.create_acls([allow(ResourceType.TOPIC, topic, AclOperation.WRITE, principal=app),
                                allow(ResourceType.TOPIC, topic, AclOperation.READ, principal=app),
                                allow(ResourceType.GROUP, group, AclOperation.READ, principal=app)]).values():
        f.result(timeout=TIMEOUT)

    def produce(login, t, value):
        result = []
        p = Producer({**login, "message.timeout.ms": 10000})
        p.produce(t, value=value, on_delivery=lambda err, msg: result.append(err))
        p.flush(TIMEOUT)
        assert result, "no delivery report"
        return result[0]

    assert produce(as_app, topic, b"from-app") is None
    err = produce(as_app, other, b"not-allowed")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    assert produce(as_admin, other, b"from-admin") is None  # a super user needs no ACL

    consumer = Consumer({**as_app, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        assert consume_until(consumer, want_values=[b"from-app"])[0] == [b"from-app"]
    finally:
        consumer.close()

    # The app may not manage ACLs; the ACLs it was given name it, not the admin.
    app_admin = AdminClient(as_app)  # kept alive until the answer is in
    with pytest.raises(KafkaException) as e:
        for f in app_admin.create_acls([allow(ResourceType.TOPIC, "*", AclOperation.ALL, principal=app)]).values():
            f.result(timeout=TIMEOUT)
    assert error_code(e.value) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    by_app = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, app, None, AclOperation.ANY,
                              AclPermissionType.ANY)
    assert len(admin.describe_acls(by_app).result(timeout=TIMEOUT)) == 3
