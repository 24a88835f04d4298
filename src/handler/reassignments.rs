//! ElectLeaders, ListPartitionReassignments and AlterPartitionReassignments, answered as a
//! one-broker Kafka answers them: every partition already has its preferred leader (this
//! broker), no reassignment is ever in progress, and the only replica set a partition can
//! be moved to is the one it has.
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx, Operation};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::*;

fn exists(ctx: &Ctx<'_>, topic: &str, partition: i32) -> bool {
    ctx.broker.partition(topic, partition).is_some()
}

/// Named partitions answer ELECTION_NOT_NEEDED (or UNKNOWN_TOPIC_OR_PARTITION); a request
/// for every partition (null) answers with none, as Kafka leaves out partitions that needed
/// no election.
pub fn elect_leaders(ctx: &Ctx<'_>, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let denied = !ctx.authorize_cluster(Operation::Alter);
    let results = req
        .topic_partitions
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|&p| {
                    let (error, message) = if denied {
                        (
                            ResponseError::ClusterAuthorizationFailed,
                            "Cluster authorization failed.",
                        )
                    } else if exists(ctx, &t.topic, p) {
                        (
                            ResponseError::ElectionNotNeeded,
                            "Leader election not needed for topic partition.",
                        )
                    } else {
                        (
                            ResponseError::UnknownTopicOrPartition,
                            "The partition does not exist.",
                        )
                    };
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(error.code())
                        .with_error_message(Some(str_bytes(message)))
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(t.topic)
                .with_partition_result(partitions)
        })
        .collect();
    let response = ElectLeadersResponse::default().with_replica_election_results(results);
    if denied {
        response.with_error_code(ResponseError::ClusterAuthorizationFailed.code())
    } else {
        response
    }
}

pub fn list_partition_reassignments(
    ctx: &Ctx<'_>,
    _req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !ctx.authorize_cluster(Operation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("Cluster authorization failed.")));
    }
    ListPartitionReassignmentsResponse::default()
}

pub fn alter_partition_reassignments(
    ctx: &Ctx<'_>,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if !ctx.authorize_cluster(Operation::Alter) {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("Cluster authorization failed.")));
    }
    let node = ctx.broker.node_id;
    let responses = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let refused = |e: ResponseError, m: String| {
                        answer
                            .clone()
                            .with_error_code(e.code())
                            .with_error_message(Some(str_bytes(&m)))
                    };
                    if !exists(ctx, &t.name, p.partition_index) {
                        return refused(
                            ResponseError::UnknownTopicOrPartition,
                            "The partition does not exist.".into(),
                        );
                    }
                    match &p.replicas {
                        None => refused(
                            ResponseError::NoReassignmentInProgress,
                            format!(
                                "No ongoing reassignment for {}-{}.",
                                t.name.0, p.partition_index
                            ),
                        ),
                        Some(r) if r.len() == 1 && r[0].0 == node => answer,
                        Some(r) => match r.iter().find(|b| b.0 != node) {
                            Some(other) => refused(
                                ResponseError::InvalidReplicaAssignment,
                                format!(
                                    "The manual partition assignment includes broker {}, but \
                                     no such broker is registered.",
                                    other.0
                                ),
                            ),
                            None => refused(
                                ResponseError::InvalidReplicaAssignment,
                                "The manual partition assignment includes an empty or \
                                 duplicated replica list."
                                    .into(),
                            ),
                        },
                    }
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}
