"""Admin operations that only make sense on a cluster or with security, answered as a
one-broker Kafka without an authorizer answers them, so admin tools say "not enabled" or
"nothing to do" instead of failing on an unknown API.

- test_acl_apis_answer_security_disabled: CreateAcls and DeleteAcls through confluent-kafka,
  DescribeAcls through kafka-python: SECURITY_DISABLED, "No Authorizer is configured on the
  broker".
- test_scram_credentials_are_managed_on_a_plaintext_broker: as on Kafka, kafka-python alters
  and describes SCRAM credentials on a broker without SASL listeners (they are stored for
  when one is added); deleting one that does not exist is RESOURCE_NOT_FOUND.
- test_elect_leaders_is_never_needed: confluent-kafka and kafka-python: ELECTION_NOT_NEEDED
  for existing partitions, UNKNOWN_TOPIC_OR_PARTITION for a partition that does not exist.
- test_partition_reassignments: none is ever listed; moving a partition to broker 0 (where it
  is) succeeds, to another broker is INVALID_REPLICA_ASSIGNMENT, cancelling answers
  NO_REASSIGNMENT_IN_PROGRESS, an unknown partition UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

import kafka
import kafka.errors
import pytest
from confluent_kafka import ElectionType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)
from kafka import KafkaAdminClient
from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter,
                         ScramMechanism, UserScramCredentialDeletion, UserScramCredentialUpsertion)
from kafka.admin import ResourceType as KpResourceType

from clients import create_topic, unique_topic


@pytest.fixture
def kp_admin(strata):
    admin = KafkaAdminClient(bootstrap_servers=strata.bootstrap)
    yield admin
    admin.close()


def test_acl_apis_answer_security_disabled(strata, kp_admin):
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    binding = AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    match_all = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                 AclPermissionType.ANY)
    for futures in (admin.create_acls([binding]), admin.delete_acls([match_all])):
        for fut in futures.values():
            with pytest.raises(KafkaException) as e:
                fut.result(timeout=15)
            assert e.value.args[0].code() == KafkaError.SECURITY_DISABLED
            assert "No Authorizer is configured" in e.value.args[0].str()

    kp_filter = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                          permission_type=ACLPermissionType.ANY,
                          resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None, ACLResourcePatternType.ANY))
    with pytest.raises(kafka.errors.SecurityDisabledError, match="No Authorizer is configured"):
        kp_admin.describe_acls(kp_filter)


def test_scram_credentials_are_managed_on_a_plaintext_broker(kp_admin):
    user = unique_topic("scram-user")
    results = kp_admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion(user, ScramMechanism.SCRAM_SHA_256, "secret", iterations=8192),
        UserScramCredentialDeletion("nobody-" + user, ScramMechanism.SCRAM_SHA_512),
    ])
    assert results[user] is None, results
    assert "nobody-" + user in results and results["nobody-" + user], results
    described = kp_admin.describe_user_scram_credentials([user])
    assert described == {user: {"error": None, "credential_infos": [
        {"mechanism": ScramMechanism.SCRAM_SHA_256, "iterations": 8192}]}}, described


def test_elect_leaders_is_never_needed(strata, kp_admin):
    topic = unique_topic("elect")
    create_topic(strata.bootstrap, topic, 2)
    admin = AdminClient({"bootstrap.servers": strata.bootstrap})
    got = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0), TopicPartition(topic, 9)]).result(
        timeout=15)
    codes = {tp.partition: err.code() for tp, err in got.items()}
    assert codes == {0: KafkaError.ELECTION_NOT_NEEDED, 9: KafkaError.UNKNOWN_TOPIC_OR_PART}

    response = kp_admin.elect_leaders(0, {topic: [0, 1]}, raise_errors=False)
    codes = {(r.topic, p.partition_id): p.error_code
             for r in response.replica_election_results for p in r.partition_result}
    assert codes == {(topic, 0): 84, (topic, 1): 84}


def test_partition_reassignments(strata, kp_admin):
    topic = unique_topic("reassign")
    create_topic(strata.bootstrap, topic, 2)
    assert kp_admin.list_partition_reassignments() == {}
    results = kp_admin.alter_partition_reassignments({
        kafka.TopicPartition(topic, 0): [0],
        kafka.TopicPartition(topic, 1): [1],
        kafka.TopicPartition(topic, 7): [0],
    })
    assert results == {
        kafka.TopicPartition(topic, 0): None,
        kafka.TopicPartition(topic, 1): kafka.errors.InvalidReplicationAssignmentError,
        kafka.TopicPartition(topic, 7): kafka.errors.UnknownTopicOrPartitionError,
    }
    cancelled = kp_admin.alter_partition_reassignments({kafka.TopicPartition(topic, 0): None})
    assert cancelled == {kafka.TopicPartition(topic, 0): kafka.errors.NoReassignmentInProgressError}
    assert kp_admin.list_partition_reassignments() == {}
