//! ListOffsets (earliest, latest, by timestamp through the time index, max timestamp) and
//! OffsetForLeaderEpoch (a single broker is always at leader epoch 0).

use super::Ctx;
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

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL: i64 = -4;
pub const LATEST_TIERED: i64 = -5;

#[tracing::instrument(name = "list_offsets", skip_all)]
pub async fn handle(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = ctx.broker.topic(t.name.0.as_str());
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let (Some(topic), Some(partition)) = (
                topic.as_ref(),
                topic.as_ref().and_then(|t| t.partition(p.partition_index)),
            ) else {
                partitions
                    .push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let found = match p.timestamp {
                LATEST if req.isolation_level == 1 => {
                    Ok(Some((partition.last_stable_offset(), -1)))
                }
                LATEST => Ok(Some((partition.high_watermark(), -1))),
                EARLIEST => Ok(Some((partition.log_start_offset(), -1))),
                EARLIEST_LOCAL => Ok(Some((partition.local_log_start_offset(), -1))),
                LATEST_TIERED => Ok(Some((partition.remote_end().max(0) - 1, -1))),
                MAX_TIMESTAMP => Ok(partition.max_timestamp().map(|(ts, off)| (off, ts))),
                ts if ts >= 0 => by_timestamp(ctx, topic, &partition, ts).await,
                _ => Err(ResponseError::InvalidRequest),
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

/// The archive is searched first when it holds a record that recent, then the local log.
async fn by_timestamp(
    ctx: &Ctx<'_>,
    topic: &crate::broker::Topic,
    partition: &crate::broker::partition::Partition,
    ts: i64,
) -> Result<Option<(i64, i64)>, ResponseError> {
    if let (Some(tier), Some(manifest)) = (ctx.broker.tier.as_ref(), partition.manifest()) {
        let local_start = partition.local_log_start_offset();
        let in_archive = manifest
            .segments
            .iter()
            .any(|s| s.max_timestamp >= ts && s.base_offset < local_start);
        if in_archive {
            let tp =
                crate::tier::TopicIdPartition::new(topic.name.clone(), topic.id, partition.index);
            match tier.offset_for_timestamp(&tp, &manifest, ts).await {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(topic = %topic.name, error = %e, "archive timestamp lookup failed");
                    return Err(ResponseError::KafkaStorageError);
                }
            }
        }
    }
    partition.offset_for_timestamp(ts)
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
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = EpochEndOffset::default().with_partition(p.partition);
                    match topic.as_ref().and_then(|t| t.partition(p.partition)) {
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
