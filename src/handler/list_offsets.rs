//! ListOffsets (earliest, latest, by timestamp, max timestamp, earliest local, latest
//! tiered; the replica manager looks them up) and OffsetForLeaderEpoch (a single broker is
//! always at leader epoch 0).
//!
//! No state, no files: see `handler`.

use super::{Ctx, Operation, ResourceType};
use crate::broker::replica_manager::OffsetSpec;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

#[tracing::instrument(name = "list_offsets", skip_all)]
pub async fn handle(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = ctx.broker.topic(t.name.0.as_str());
        let denied = !ctx.authorize(Operation::Describe, ResourceType::Topic, &t.name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            if denied {
                partitions
                    .push(base.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(p.partition_index))
            else {
                partitions
                    .push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let found = match OffsetSpec::from_timestamp(p.timestamp) {
                Some(spec) => {
                    ctx.broker
                        .replica_manager
                        .fetch_offset_for_timestamp(&partition, spec, req.isolation_level == 1)
                        .await
                }
                None => Err(ResponseError::InvalidRequest),
            };
            partitions.push(match found {
                Ok(Some((offset, ts))) => {
                    let epoch = if ctx.version >= 4 { 0 } else { -1 };
                    base.with_offset(offset)
                        .with_timestamp(ts)
                        .with_leader_epoch(epoch)
                }
                Ok(None) => base,
                Err(e) => base.with_error_code(e.code()),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

pub fn offset_for_leader_epoch(
    ctx: &Ctx<'_>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.broker.topic(t.topic.0.as_str());
            let denied = !ctx.authorize(Operation::Describe, ResourceType::Topic, &t.topic);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = EpochEndOffset::default().with_partition(p.partition);
                    match topic.as_ref().and_then(|t| t.partition(p.partition)) {
                        _ if denied => base
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                        None => base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                        Some(part) if p.leader_epoch <= 0 => base
                            .with_leader_epoch(0)
                            .with_end_offset(part.high_watermark()),
                        Some(_) => base.with_leader_epoch(-1).with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
