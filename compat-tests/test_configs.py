"""DescribeConfigs as admin clients and tools read it.

- test_topic_configs_with_sources_and_synonyms: confluent-kafka describes a topic created
  with segment.bytes set, on a broker started with log.retention.ms overridden: the topic's
  own value is DYNAMIC_TOPIC_CONFIG, the broker's STATIC_BROKER_CONFIG, the rest
  DEFAULT_CONFIG, each with the synonyms it was resolved through; an unknown topic is
  UNKNOWN_TOPIC_OR_PARTITION.
- test_broker_and_group_configs: the broker's configs under its id (read-only except the
  topic defaults), and a group's KIP-848 settings.
- test_kafka_python_describe_configs: kafka-python with include_synonyms, and only the
  keys asked for.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic, ResourceType
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType

from clients import unique_topic, wait_for_partitions


@pytest.fixture
def broker(strata_factory):
    return strata_factory("--override", "log.retention.ms=3600000", "--override", "log.cleaner.min.cleanable.ratio=0.25")


def describe(bootstrap: str, resource: ConfigResource) -> dict:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_configs([resource], request_timeout=15)[resource].result(timeout=20)


def test_topic_configs_with_sources_and_synonyms(broker):
    topic = unique_topic("configs")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"segment.bytes": "1048576"})])[topic].result(timeout=15)
    wait_for_partitions(broker.bootstrap, topic, 1)

    configs = describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, topic))
    for name in ("cleanup.policy", "retention.ms", "segment.bytes", "max.message.bytes", "min.insync.replicas",
                 "message.timestamp.type", "compression.type", "delete.retention.ms", "min.compaction.lag.ms"):
        assert name in configs, f"{name} missing from {sorted(configs)}"

    seg = configs["segment.bytes"]
    assert (seg.value, seg.source) == ("1048576", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert not seg.is_read_only and not seg.is_sensitive
    assert [(s.name, s.source) for s in seg.synonyms.values()] == [
        ("segment.bytes", ConfigSource.DYNAMIC_TOPIC_CONFIG.value),
        ("log.segment.bytes", ConfigSource.DEFAULT_CONFIG.value)]

    ret = configs["retention.ms"]
    assert (ret.value, ret.source) == ("3600000", ConfigSource.STATIC_BROKER_CONFIG.value)
    ratio = configs["min.cleanable.dirty.ratio"]
    assert (ratio.value, ratio.source) == ("0.25", ConfigSource.STATIC_BROKER_CONFIG.value)
    assert "log.cleaner.min.cleanable.ratio" in ratio.synonyms
    policy = configs["cleanup.policy"]
    assert (policy.value, policy.source) == ("delete", ConfigSource.DEFAULT_CONFIG.value)

    with pytest.raises(KafkaException) as e:
        describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, unique_topic("no-such")))
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_broker_and_group_configs(broker):
    configs = describe(broker.bootstrap, ConfigResource(ResourceType.BROKER, "0"))
    assert configs["log.retention.ms"].value == "3600000"
    assert configs["log.retention.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert not configs["log.retention.ms"].is_read_only
    ratio = configs["log.cleaner.min.cleanable.ratio"]
    assert (ratio.value, ratio.source, ratio.is_read_only) == ("0.25", ConfigSource.STATIC_BROKER_CONFIG.value, False)
    assert configs["log.cleaner.delete.retention.ms"].value == "86400000"
    assert configs["num.partitions"].value == "1"
    assert configs["num.partitions"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["num.partitions"].is_read_only

    group = describe(broker.bootstrap, ConfigResource(ResourceType.GROUP, "any-group"))
    assert group["consumer.session.timeout.ms"].value == "45000"
    assert group["consumer.heartbeat.interval.ms"].value == "5000"


def test_kafka_python_describe_configs(broker):
    topic = unique_topic("configs-kp")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "60000"})])[topic].result(timeout=15)
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        result = kp.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, topic,
                                                       configs=["retention.ms", "cleanup.policy"])],
                                     include_synonyms=True, config_filter="all")
    finally:
        kp.close()
    configs = result["topic"][topic]
    assert sorted(configs) == ["cleanup.policy", "retention.ms"]
    assert configs["retention.ms"]["value"] == "60000"
    assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert [s["source"] for s in configs["retention.ms"]["synonyms"]] == [
        "DYNAMIC_TOPIC_CONFIG", "STATIC_BROKER_CONFIG", "DEFAULT_CONFIG"]
