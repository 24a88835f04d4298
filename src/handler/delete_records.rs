//! DeleteRecords (v0-v2): moves partitions' log start offsets, as the AdminClient's
//! `deleteRecords` asks; each partition answers with its new low watermark or its own error.
//! A one-broker Kafka has no replicas to wait for, so `timeout_ms` is never reached.
//!
//! No state, no files: see `handler` (the partition checkpoints its log start).

use super::{Ctx, Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

#[tracing::instrument(name = "delete_records", skip_all)]
pub async fn handle(ctx: &Ctx<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let broker = ctx.broker;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = broker.topic(t.name.0.as_str());
        let denied = !ctx.authorize(Operation::Delete, ResourceType::Topic, &t.name);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            if denied {
                partitions
                    .push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let found = topic
                .as_ref()
                .and_then(|topic| Some((topic, topic.partition(p.partition_index)?)));
            let Some((topic, partition)) = found else {
                partitions
                    .push(result.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let deleted = broker
                .replica_manager
                .delete_records(topic, &partition, p.offset, &broker.config)
                .await;
            partitions.push(match deleted {
                Ok(low_watermark) => result.with_low_watermark(low_watermark),
                Err(e) => result.with_error_code(e.code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
