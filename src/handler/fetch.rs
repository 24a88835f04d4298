//! Fetch: sessionless (a session id of 0 tells clients to send full requests). The replica
//! manager reads and long-polls; this module only translates. On a plaintext connection
//! local records stay in their segment files: the answer carries the file ranges beside the
//! message, and the connection sends them from the page cache (`Reply::Spliced`).
//!
//! No state, no files: see `handler`.

use super::Reply;
use super::{Ctx, Operation, ResourceType};
use crate::broker::replica_manager::{
    FetchParams, FetchPartition, FetchPartitionData, FetchedRecords,
};
use crate::log::codec::Compression;
use crate::log::FileRange;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, ResponseKind};
use std::io;
use std::time::Duration;

#[tracing::instrument(name = "fetch", skip_all, fields(max_wait_ms = req.max_wait_ms, min_bytes = req.min_bytes))]
pub async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> Reply {
    let broker = ctx.broker;
    let by_id = ctx.version >= 13;
    let mut wanted = Vec::new();
    for t in &req.topics {
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
        let name = match &topic {
            Some(topic) => Some(topic.name.as_str()),
            None if !by_id => Some(t.topic.0.as_str()),
            None => None,
        };
        let denied = name.is_some_and(|n| !ctx.authorize(Operation::Read, ResourceType::Topic, n));
        for p in &t.partitions {
            let partition = match &topic {
                _ if denied => Err(ResponseError::TopicAuthorizationFailed),
                None => Err(missing),
                // Fetch below v10 predates zstd (KIP-110); Kafka goes by the topic's codec.
                Some(topic)
                    if ctx.version < 10 && topic.rules().compression == Some(Compression::Zstd) =>
                {
                    Err(ResponseError::UnsupportedCompressionType)
                }
                Some(topic) => topic
                    .partition(p.partition)
                    .ok_or(ResponseError::UnknownTopicOrPartition),
            };
            wanted.push(FetchPartition {
                partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
            });
        }
    }
    let params = FetchParams {
        max_wait: Duration::from_millis(req.max_wait_ms.max(0) as u64),
        min_bytes: req.min_bytes.max(0) as usize,
        // Kafka's broker-side cap (`fetch.max.bytes`): what one answer can make the broker
        // send (and, on a TLS connection, read into memory), whatever the client asks.
        max_bytes: if req.max_bytes <= 0 {
            i32::MAX as usize
        } else {
            req.max_bytes as usize
        }
        .min(broker.config.props.int("fetch.max.bytes").max(0) as usize),
        read_committed: req.isolation_level == 1,
        // Kafka sends records from the page cache only where no TLS needs the bytes.
        zero_copy: !ctx.session.listener.protocol.uses_tls(),
    };
    let mut files = Vec::new();
    let mut results = broker
        .replica_manager
        .fetch_messages(&params, &wanted)
        .await
        .into_iter();
    let responses = req
        .topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .zip(results.by_ref())
                .map(|(p, data)| partition_data(p.partition, data, &mut files))
                .collect();
            let resp = FetchableTopicResponse::default().with_partitions(parts);
            if by_id {
                resp.with_topic_id(t.topic_id)
            } else {
                resp.with_topic(t.topic.clone())
            }
        })
        .collect();
    let body = Box::new(ResponseKind::Fetch(
        FetchResponse::default()
            .with_session_id(0)
            .with_responses(responses),
    ));
    if files.iter().any(Option::is_some) {
        Reply::Spliced { body, files }
    } else {
        Reply::Now(body)
    }
}

/// Reads the file ranges of a spliced answer into its records: the answer as bytes, for a
/// writer that needs them. An error when a file no longer holds its range.
pub fn fill_records(body: &mut ResponseKind, files: Vec<Option<FileRange>>) -> io::Result<()> {
    let ResponseKind::Fetch(resp) = body else {
        return Err(io::Error::other("only Fetch answers carry file ranges"));
    };
    let mut files = files.into_iter();
    for p in resp
        .responses
        .iter_mut()
        .flat_map(|t| t.partitions.iter_mut())
    {
        if let Some(range) = files.next().flatten() {
            p.records = Some(range.read()?);
        }
    }
    Ok(())
}

/// One partition's answer; local records left in their file are pushed to `files` (one
/// entry per partition, in the order of the response) and the partition's `records` left
/// None until the connection writes them.
fn partition_data(
    index: i32,
    data: FetchPartitionData,
    files: &mut Vec<Option<FileRange>>,
) -> PartitionData {
    let (records, file) = match data.records {
        FetchedRecords::Bytes(b) => (Some(b), None),
        FetchedRecords::File { range, .. } => (None, Some(range)),
    };
    files.push(file);
    let aborted = data.aborted_transactions.map(|all| {
        all.into_iter()
            .map(|(pid, first)| {
                AbortedTransaction::default()
                    .with_producer_id(ProducerId(pid))
                    .with_first_offset(first)
            })
            .collect()
    });
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(data.error.map(|e| e.code()).unwrap_or(0))
        .with_high_watermark(data.high_watermark)
        .with_last_stable_offset(data.last_stable_offset)
        .with_log_start_offset(data.log_start_offset)
        .with_aborted_transactions(aborted)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(records)
}
