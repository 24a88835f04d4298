//! Fetch: sessionless (a session id of 0 tells clients to send full requests), long-polling
//! on the broker's append signal until `min_bytes` are there or `max_wait_ms` passes.

use super::Ctx;
use crate::broker::Topic;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId};
use std::sync::Arc;
use std::time::Duration;

struct Wanted {
    topic: Option<Arc<Topic>>,
    missing: ResponseError,
    partitions: Vec<(i32, i64, i32)>,
}

fn error_partition(index: i32, error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

/// Reads below the local log start from the archive, giving up (with an empty answer the
/// client simply repeats) after `wait`; the read goes on and warms the chunk cache.
async fn read_archive(
    broker: &crate::broker::Broker,
    topic: &Arc<Topic>,
    partition: &Arc<crate::broker::partition::Partition>,
    offset: i64,
    limit: usize,
    min_one: bool,
    wait: Duration,
) -> Result<crate::broker::partition::FetchData, ResponseError> {
    let (Some(tier), Some(manifest)) = (broker.tier.clone(), partition.manifest()) else {
        return Err(ResponseError::OffsetOutOfRange);
    };
    let Some(seg) = manifest.find(offset).cloned() else {
        return Err(ResponseError::OffsetOutOfRange);
    };
    // One archive read per partition at a time; while it runs, fetches answer at once.
    if partition
        .archive_read_in_flight
        .swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        return Ok(crate::broker::partition::FetchData {
            records: Bytes::new(),
            high_watermark: partition.high_watermark(),
            log_start_offset: partition.log_start_offset(),
        });
    }
    let (name, id, index) = (topic.name.clone(), topic.id, partition.index);
    let p = partition.clone();
    let read = tokio::spawn(async move {
        let want = crate::tier::ReadWant {
            offset,
            max_bytes: limit,
            min_one,
        };
        let tp = crate::tier::TopicIdPartition::new(name, id, index);
        let r = tier.read(&tp, &seg, want).await;
        p.archive_read_in_flight
            .store(false, std::sync::atomic::Ordering::Release);
        r
    });
    let records = match tokio::time::timeout(wait, read).await {
        Ok(Ok(Ok(bytes))) => bytes,
        Ok(Ok(Err(e))) => {
            tracing::warn!(topic = %topic.name, partition = index, offset, error = %e, "archive read failed");
            Bytes::new()
        }
        _ => Bytes::new(),
    };
    Ok(crate::broker::partition::FetchData {
        records,
        high_watermark: partition.high_watermark(),
        log_start_offset: partition.log_start_offset(),
    })
}

#[tracing::instrument(name = "fetch", skip_all, fields(max_wait_ms = req.max_wait_ms, min_bytes = req.min_bytes))]
pub async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> FetchResponse {
    let broker = ctx.broker;
    let by_id = ctx.version >= 13;
    let wanted: Vec<Wanted> = req
        .topics
        .iter()
        .map(|t| {
            let (topic, missing) = if by_id {
                (
                    broker.topic_by_id(t.topic_id),
                    ResponseError::UnknownTopicId,
                )
            } else {
                (
                    broker.topic(t.topic.0.as_str()),
                    ResponseError::UnknownTopicOrPartition,
                )
            };
            Wanted {
                topic,
                missing,
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| (p.partition, p.fetch_offset, p.partition_max_bytes))
                    .collect(),
            }
        })
        .collect();
    let read_committed = req.isolation_level == 1;
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX
    } else {
        req.max_bytes
    } as usize;
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut appends = broker.subscribe_appends();
    // A slow archive must not hold up the local partitions of the same response.
    let remote_wait = Duration::from_millis(req.max_wait_ms.clamp(100, 1000) as u64);
    loop {
        appends.borrow_and_update();
        let mut remaining = max_bytes;
        let mut total = 0usize;
        let mut errors = false;
        let mut min_one = true;
        let mut responses = Vec::with_capacity(wanted.len());
        for (w, t) in wanted.iter().zip(&req.topics) {
            let mut parts = Vec::with_capacity(w.partitions.len());
            for &(index, offset, part_max) in &w.partitions {
                let partition = match &w.topic {
                    None => None,
                    Some(topic) => topic.partition(index),
                };
                let Some(partition) = partition else {
                    errors = true;
                    let e = if w.topic.is_none() {
                        w.missing
                    } else {
                        ResponseError::UnknownTopicOrPartition
                    };
                    parts.push(error_partition(index, e));
                    continue;
                };
                let limit = remaining.min(part_max.max(0) as usize);
                let mut result = partition.read(offset, limit, min_one, read_committed);
                if let (Err(ResponseError::OffsetMovedToTieredStorage), Some(topic)) =
                    (&result, &w.topic)
                {
                    result = read_archive(
                        broker,
                        topic,
                        &partition,
                        offset,
                        limit,
                        min_one,
                        remote_wait,
                    )
                    .await;
                }
                match result {
                    Ok(data) => {
                        let n = data.records.len();
                        if n > 0 {
                            min_one = false;
                        }
                        remaining = remaining.saturating_sub(n);
                        total += n;
                        let lso = partition.last_stable_offset();
                        // The aborted transactions the returned records may belong to, so a
                        // read_committed consumer can drop them.
                        let aborted = read_committed.then(|| {
                            let to = if n > 0 { lso } else { offset };
                            partition
                                .aborted_between(offset, to)
                                .into_iter()
                                .map(|(pid, first)| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(pid))
                                        .with_first_offset(first)
                                })
                                .collect()
                        });
                        parts.push(
                            PartitionData::default()
                                .with_partition_index(index)
                                .with_high_watermark(data.high_watermark)
                                .with_last_stable_offset(lso)
                                .with_log_start_offset(data.log_start_offset)
                                .with_aborted_transactions(aborted)
                                .with_preferred_read_replica(BrokerId(-1))
                                .with_records(Some(data.records)),
                        );
                    }
                    Err(error) => {
                        errors = true;
                        let mut p = error_partition(index, error);
                        p.high_watermark = partition.high_watermark();
                        p.last_stable_offset = partition.last_stable_offset();
                        p.log_start_offset = partition.log_start_offset();
                        parts.push(p);
                    }
                }
            }
            let mut resp = FetchableTopicResponse::default().with_partitions(parts);
            if by_id {
                resp = resp.with_topic_id(t.topic_id);
            } else {
                resp = resp.with_topic(t.topic.clone());
            }
            responses.push(resp);
        }
        let done = total >= min_bytes || errors;
        if done || tokio::time::Instant::now() >= deadline || wanted.is_empty() {
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
        tokio::select! {
            changed = appends.changed() => {
                if changed.is_err() {
                    return FetchResponse::default().with_responses(responses);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
