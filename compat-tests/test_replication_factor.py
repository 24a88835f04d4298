"""Topics created as apps written for a cluster create them.

- test_replication_factor_3_and_min_insync_2_work_as_on_a_cluster: AdminClient creates a
  topic with replication factor 3 and min.insync.replicas=2; it exists with one replica per
  partition (what Metadata reports), and an acks=all producer's messages are acknowledged
  and read back.
- test_kafka_python_creates_topics_with_replication_factor_3: the same through kafka-python.
- test_manual_assignments_naming_this_broker_are_accepted: replica assignments that name
  broker 0 create the topic with as many partitions as the assignment lists; one that does
  not name it is INVALID_REPLICA_ASSIGNMENT, and one given with a partition count too is
  INVALID_REQUEST.
- test_strict_mode_refuses_acks_all_when_min_insync_exceeds_the_one_replica: in strict mode
  min.insync.replicas=2 makes acks=all produces NOT_ENOUGH_REPLICAS, as on a one-broker Kafka;
  acks=1 lands.
- test_strict_replication_factor_refuses_as_a_one_broker_kafka: with
  `strict_replication_factor: true`, replication factor 3 is INVALID_REPLICATION_FACTOR;
  replication factor 0 is refused in either mode.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient

from clients import consume_partitions, unique_topic, wait_for_partitions


def create(bootstrap: str, *topics: NewTopic) -> dict[str, KafkaError | None]:
    """Creates the topics; topic -> None when created, else the error."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    out = {}
    for name, fut in admin.create_topics(list(topics), operation_timeout=15, request_timeout=15).items():
        try:
            fut.result(timeout=20)
            out[name] = None
        except KafkaException as e:
            out[name] = e.args[0]
    return out


def replicas(bootstrap: str, topic: str) -> dict[int, list[int]]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=topic, timeout=10)
    return {p: list(pm.replicas) for p, pm in md.topics[topic].partitions.items()}


def test_replication_factor_3_and_min_insync_2_work_as_on_a_cluster(strata):
    topic = unique_topic("rf3")
    got = create(strata.bootstrap, NewTopic(topic, num_partitions=3, replication_factor=3,
                                            config={"min.insync.replicas": "2"}))
    assert got == {topic: None}
    wait_for_partitions(strata.bootstrap, topic, 3)
    assert replicas(strata.bootstrap, topic) == {0: [0], 1: [0], 2: [0]}
    assert "a single broker keeps one replica" in strata.log_path.read_text(errors="replace")

    errors = []
    producer = Producer({"bootstrap.servers": strata.bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(300):
        producer.produce(topic, value=f"v{i}".encode(), partition=i % 3,
                         on_delivery=lambda err, msg: err and errors.append(err))
    assert producer.flush(30) == 0
    assert errors == []
    got = consume_partitions(strata.bootstrap, topic, [0, 1, 2], expected=300, timeout=30)
    assert sum(len(v) for v in got.values()) == 300


def test_kafka_python_creates_topics_with_replication_factor_3(strata):
    topic = unique_topic("rf3-kp")
    admin = KafkaAdminClient(bootstrap_servers=strata.bootstrap)
    try:
        result = admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 3}})
        assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(topic, 0)]
    finally:
        admin.close()
    wait_for_partitions(strata.bootstrap, topic, 2)


def test_manual_assignments_naming_this_broker_are_accepted(strata):
    ok, cluster, foreign, both = (unique_topic(p) for p in ("assign-ok", "assign-rf3", "assign-bad", "assign-both"))
    got = create(
        strata.bootstrap,
        NewTopic(ok, num_partitions=4, replica_assignment=[[0], [0], [0], [0]]),
        NewTopic(cluster, num_partitions=2, replica_assignment=[[0, 1, 2], [1, 2, 0]]),
        NewTopic(foreign, num_partitions=2, replica_assignment=[[1], [2]]),
    )
    assert got[ok] is None and got[cluster] is None, got
    assert got[foreign].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, got[foreign]
    wait_for_partitions(strata.bootstrap, ok, 4)
    wait_for_partitions(strata.bootstrap, cluster, 2)
    assert foreign not in AdminClient({"bootstrap.servers": strata.bootstrap}).list_topics(timeout=10).topics

    # kafka-python sends the partition count together with an assignment when asked to.
    from kafka.admin import NewTopic as KpNewTopic
    admin = KafkaAdminClient(bootstrap_servers=strata.bootstrap)
    try:
        result = admin.create_topics([KpNewTopic(both, num_partitions=2, replication_factor=1,
                                                 replica_assignments={0: [0], 1: [0]})],
                                     validate_only=True)
    except Exception as e:  # kafka-python raises the topic's error
        assert "InvalidRequest" in type(e).__name__, e
    else:
        codes = [t["error_code"] for t in result["topics"]]
        assert codes == [KafkaError.INVALID_REQUEST], result
    finally:
        admin.close()


@pytest.mark.parametrize("strict", [False, True])
def test_strict_replication_factor_refuses_as_a_one_broker_kafka(strata_factory, strict):
    broker = strata_factory("--override", f"strict_replication_factor={str(strict).lower()}")
    rf3, rf0 = unique_topic("strict-rf3"), unique_topic("strict-rf0")
    got = create(broker.bootstrap, NewTopic(rf3, num_partitions=1, replication_factor=3))
    if strict:
        assert got[rf3].code() == KafkaError.INVALID_REPLICATION_FACTOR, got
        assert "larger than available brokers: 1" in got[rf3].str()
    else:
        assert got[rf3] is None
    got = create(broker.bootstrap, NewTopic(rf0, num_partitions=1, replication_factor=0))
    assert got[rf0].code() == KafkaError.INVALID_REPLICATION_FACTOR, got


def test_strict_mode_refuses_acks_all_when_min_insync_exceeds_the_one_replica(strata_factory):
    """As a one-broker Kafka: acks=all needs min.insync.replicas in-sync replicas, and there
    is one, so such produces get NOT_ENOUGH_REPLICAS; acks=1 still lands."""
    broker = strata_factory("--override", "strict_replication_factor=true")
    topic = unique_topic("strict-misr")
    assert create(broker.bootstrap, NewTopic(topic, num_partitions=1, replication_factor=1,
                                             config={"min.insync.replicas": "2"})) == {topic: None}
    wait_for_partitions(broker.bootstrap, topic, 1)

    def produce(acks: str):
        results = []
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks, "retries": 0,
                      "enable.idempotence": False, "message.timeout.ms": 10000})
        p.produce(topic, value=b"v", on_delivery=lambda err, msg: results.append(err))
        assert p.flush(15) == 0
        return results

    [err] = produce("all")
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
    assert produce("1") == [None]
    got = consume_partitions(broker.bootstrap, topic, [0], expected=1, timeout=20)
    assert [m.value() for m in got[0]] == [b"v"]
