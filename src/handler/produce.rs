//! Produce: each partition's records go through the replica manager; with `flush: always`
//! the answer waits for the fsync that covers them (group commit).
//!
//! No state, no files: see `handler`.

use super::{Ctx, Operation, Reply, ResourceType};
use crate::broker::replica_manager::Appended;
use crate::clock::now_ms;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use std::sync::Arc;

fn partition_error(index: i32, error: ResponseError) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

fn has_zstd(records: &[u8]) -> bool {
    crate::log::record_batch::BatchHeaders::new(records)
        .any(|b| b.is_ok_and(|b| b.compression() == crate::log::codec::Compression::Zstd.id()))
}

#[tracing::instrument(name = "produce", skip_all, fields(acks = req.acks, topics = req.topic_data.len()))]
pub async fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> Reply {
    let broker = ctx.broker;
    let acks = req.acks;
    let valid_acks = matches!(acks, -1..=1);
    let now = now_ms();
    // Kafka refuses the whole request when the transactional id is not writable.
    let txn_denied = req
        .transactional_id
        .as_ref()
        .filter(|t| !t.is_empty())
        .is_some_and(|t| !ctx.authorize(Operation::Write, ResourceType::TransactionalId, t));
    let mut waits = Vec::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic_data in req.topic_data {
        let topic = if ctx.version >= 13 {
            broker.topic_by_id(topic_data.topic_id)
        } else {
            broker.topic(topic_data.name.0.as_str())
        };
        let missing = if ctx.version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let name_for_acl = match (&topic, ctx.version >= 13) {
            (Some(t), _) => Some(t.name.as_str()),
            (None, false) => Some(topic_data.name.0.as_str()),
            (None, true) => None,
        };
        let denied = if txn_denied {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        } else {
            name_for_acl
                .filter(|n| !ctx.authorize(Operation::Write, ResourceType::Topic, n))
                .map(|_| ResponseError::TopicAuthorizationFailed)
        };
        let mut parts = Vec::with_capacity(topic_data.partition_data.len());
        for pd in topic_data.partition_data {
            if let Some(error) = denied {
                parts.push(partition_error(pd.index, error));
                continue;
            }
            if !valid_acks {
                parts.push(partition_error(
                    pd.index,
                    ResponseError::InvalidRequiredAcks,
                ));
                continue;
            }
            let Some(topic) = topic.as_ref() else {
                parts.push(partition_error(pd.index, missing));
                continue;
            };
            let Some(partition) = topic.partition(pd.index) else {
                parts.push(partition_error(
                    pd.index,
                    ResponseError::UnknownTopicOrPartition,
                ));
                continue;
            };
            let records = pd.records.unwrap_or_default();
            // zstd came with Produce v7 (KIP-110): older requests may not carry it.
            if ctx.version < 7 && has_zstd(&records) {
                parts.push(partition_error(
                    pd.index,
                    ResponseError::UnsupportedCompressionType,
                ));
                continue;
            }
            let (name, index) = (topic.name.as_str(), pd.index);
            let in_txn = |pid: i64, epoch: i16| {
                if req.transactional_id.as_ref().is_none_or(|t| t.is_empty()) {
                    return Err(ResponseError::InvalidRecord);
                }
                // v12+ comes from a producer of transaction protocol 2 (KIP-890), which
                // sends no AddPartitionsToTxn: the first batch enrols the partition.
                if ctx.version >= 12 {
                    broker
                        .txns
                        .add_partition_implicitly(pid, epoch, name, index)
                        .map_err(|e| match e {
                            ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
                            e => e,
                        })?;
                }
                broker.txns.verify_produce(pid, epoch, name, index)
            };
            let appended = broker
                .replica_manager
                .append_records(topic, &partition, &records, acks, now, &in_txn);
            match appended {
                Ok(Appended { info, durable_at }) => {
                    if let Some(offset) = durable_at {
                        waits.push((parts.len(), responses.len(), Arc::clone(&partition), offset));
                    }
                    parts.push(
                        PartitionProduceResponse::default()
                            .with_index(pd.index)
                            .with_base_offset(info.base_offset)
                            .with_log_append_time_ms(info.log_append_time)
                            .with_log_start_offset(info.log_start_offset),
                    );
                }
                Err(error) => {
                    tracing::debug!(topic = %topic.name, partition = pd.index, ?error, "produce refused");
                    parts.push(partition_error(pd.index, error));
                }
            }
        }
        let mut resp = TopicProduceResponse::default().with_partition_responses(parts);
        if ctx.version >= 13 {
            resp = resp.with_topic_id(topic_data.topic_id);
        } else {
            resp = resp.with_name(topic_data.name);
        }
        responses.push(resp);
    }
    if acks == 0 {
        let failed = responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .any(|p| p.error_code != 0);
        if !waits.is_empty() {
            // Nobody waits for the answer, but consumers wait for the fsync.
            tokio::spawn(async move {
                for (_, _, partition, offset) in waits {
                    let _ = partition.make_durable(offset).await;
                }
            });
        }
        return if failed { Reply::Close } else { Reply::Nothing };
    }
    let response = ProduceResponse::default().with_responses(responses);
    if waits.is_empty() {
        return Reply::Now(Box::new(ResponseKind::Produce(response)));
    }
    Reply::Later(Box::pin(async move {
        let mut response = response;
        for (part_idx, topic_idx, partition, offset) in waits {
            if let Err(error) = partition.make_durable(offset).await {
                if let Some(p) = response
                    .responses
                    .get_mut(topic_idx)
                    .and_then(|t| t.partition_responses.get_mut(part_idx))
                {
                    *p = partition_error(p.index, error);
                }
            }
        }
        ResponseKind::Produce(response)
    }))
}
