//! InitProducerId and the transaction APIs, translated to the transaction coordinator.
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx, Operation, ResourceType};
use crate::broker::groups::CommittedOffset;
use crate::clock::now_ms;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;

/// KIP-588: requests from before PRODUCER_FENCED existed get INVALID_PRODUCER_EPOCH.
fn downgrade(e: ResponseError, version: i16, fenced_since: i16) -> ResponseError {
    if e == ResponseError::ProducerFenced && version < fenced_since {
        ResponseError::InvalidProducerEpoch
    } else {
        e
    }
}

/// Idempotent producers get a fresh, never reused id at epoch 0; a transactional id keeps
/// its producer id and gets the next epoch, fencing its previous producer.
#[tracing::instrument(name = "init_producer_id", skip_all, fields(transactional_id = ?req.transactional_id))]
pub async fn init_producer_id(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let fail = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(downgrade(e, ctx.version, 4).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let tid = req.transactional_id.as_ref().filter(|t| !t.is_empty());
    match tid {
        // KIP-679: IDEMPOTENT_WRITE on the cluster, or WRITE on any topic.
        None if !ctx.authorize_cluster(Operation::IdempotentWrite)
            && !ctx.authorize_any(Operation::Write, ResourceType::Topic) =>
        {
            return fail(ResponseError::ClusterAuthorizationFailed)
        }
        Some(t) if !ctx.authorize(Operation::Write, ResourceType::TransactionalId, t) => {
            return fail(ResponseError::TransactionalIdAuthorizationFailed)
        }
        _ => {}
    }
    let result = match tid {
        None => ctx.broker.allocate_producer_id().map(|id| (id, 0)),
        Some(tid) => {
            let expected =
                (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
            ctx.broker
                .init_transactional(tid.as_str(), req.transaction_timeout_ms, expected)
                .await
        }
    };
    match result {
        Ok((id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(e) => fail(e),
    }
}

/// One transaction's AddPartitionsToTxn (v4+ batches several): its per-topic results.
async fn add_partitions_to_one(
    ctx: &Ctx<'_>,
    tid: &str,
    pid: i64,
    epoch: i16,
    verify_only: bool,
    topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let (broker, version) = (ctx.broker, ctx.version);
    let mut wanted = Vec::new();
    let mut unknown = Vec::new();
    let mut denied = Vec::new();
    let tid_denied = !ctx.authorize(Operation::Write, ResourceType::TransactionalId, tid);
    for t in topics {
        let topic = broker.topic(t.name.0.as_str());
        if !ctx.authorize(Operation::Write, ResourceType::Topic, &t.name) {
            denied.push(t.name.0.to_string());
            continue;
        }
        for p in &t.partitions {
            let key = (t.name.0.to_string(), *p);
            if topic.as_ref().and_then(|tp| tp.partition(*p)).is_none() {
                unknown.push(key);
            } else {
                wanted.push(key);
            }
        }
    }
    let outcome = if tid_denied {
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !denied.is_empty() || !unknown.is_empty() {
        Err(ResponseError::OperationNotAttempted)
    } else if verify_only {
        match broker.txns.has_partitions(tid, pid, epoch, &wanted) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ResponseError::InvalidTxnState),
            Err(e) => Err(e),
        }
    } else {
        broker.txns.add_partitions(tid, pid, epoch, &wanted).await
    };
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let e = if tid_denied {
                                outcome
                            } else if denied.contains(&t.name.0.to_string()) {
                                Err(ResponseError::TopicAuthorizationFailed)
                            } else if unknown.contains(&(t.name.0.to_string(), *p)) {
                                Err(ResponseError::UnknownTopicOrPartition)
                            } else {
                                outcome
                            };
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(
                                    e.err()
                                        .map(|e| downgrade(e, version, 2).code())
                                        .unwrap_or(0),
                                )
                        })
                        .collect(),
                )
        })
        .collect::<Vec<_>>()
}

pub async fn add_partitions(
    ctx: &Ctx<'_>,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version <= 3 {
        let results = add_partitions_to_one(
            ctx,
            req.v3_and_below_transactional_id.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            &req.v3_and_below_topics,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    // v4+ batches come from brokers only: Kafka requires CLUSTER_ACTION.
    if !ctx.authorize_cluster(Operation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut results = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let topic_results = add_partitions_to_one(
            ctx,
            t.transactional_id.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            t.verify_only,
            &t.topics,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

pub async fn add_offsets(ctx: &Ctx<'_>, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    if !ctx.authorize(
        Operation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    ) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if !ctx.authorize(Operation::Read, ResourceType::Group, &req.group_id) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let r = ctx
        .broker
        .txns
        .add_offsets(
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.group_id.0.as_str(),
        )
        .await;
    AddOffsetsToTxnResponse::default().with_error_code(
        r.err()
            .map(|e| downgrade(e, ctx.version, 2).code())
            .unwrap_or(0),
    )
}

pub async fn txn_offset_commit(
    ctx: &Ctx<'_>,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let now = now_ms();
    let refused = if !ctx.authorize(
        Operation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    ) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !ctx.authorize(Operation::Read, ResourceType::Group, &req.group_id) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    let readable = |t: &str| ctx.authorize(Operation::Read, ResourceType::Topic, t);
    let offsets: Vec<(String, i32, CommittedOffset)> = req
        .topics
        .iter()
        .filter(|t| readable(&t.name))
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_timestamp: now,
                    },
                )
            })
        })
        .collect();
    // v3+ names the member (KIP-447): a zombie of an old generation must not commit.
    // Older versions carry no member (generation -1, empty member id), which passes.
    let member_check = ctx.broker.groups.check_txn_member(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
    );
    let r = match (refused, member_check) {
        (Some(e), _) => Err(e),
        (None, Ok(())) => {
            ctx.broker
                .txns
                .commit_offsets(
                    req.transactional_id.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    req.group_id.0.as_str(),
                    offsets,
                    ctx.version >= 5,
                )
                .await
        }
        (None, Err(e)) => Err(e),
    };
    let code = r
        .err()
        .map(|e| downgrade(e, ctx.version, 3).code())
        .unwrap_or(0);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let code = if refused.is_none() && !readable(&t.name) {
                ResponseError::TopicAuthorizationFailed.code()
            } else {
                code
            };
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

#[tracing::instrument(name = "end_txn", skip_all, fields(transactional_id = %req.transactional_id.as_str(), commit = req.committed))]
pub async fn end_txn(ctx: &Ctx<'_>, req: EndTxnRequest) -> EndTxnResponse {
    let broker = ctx.broker;
    if !ctx.authorize(
        Operation::Write,
        ResourceType::TransactionalId,
        &req.transactional_id,
    ) {
        return EndTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let alloc = || broker.allocate_producer_id();
    let r = match broker
        .txns
        .prepare_end(
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
            ctx.version >= 5,
            &alloc,
        )
        .await
    {
        Ok((Some(plan), pid, epoch)) => broker.finish_or_stall(&plan).await.map(|_| (pid, epoch)),
        Ok((None, pid, epoch)) => Ok((pid, epoch)),
        Err(e) => Err(e),
    };
    match r {
        // v5 (protocol 2) tells the producer the epoch it continues with.
        Ok((pid, epoch)) if ctx.version >= 5 => EndTxnResponse::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Ok(_) => EndTxnResponse::default()
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
        Err(e) => EndTxnResponse::default()
            .with_error_code(downgrade(e, ctx.version, 2).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

pub fn describe_producers(
    ctx: &Ctx<'_>,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    use describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = ctx.broker.topic(t.name.0.as_str());
            let denied = !ctx.authorize(Operation::Read, ResourceType::Topic, &t.name);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&i| match topic.as_ref().and_then(|tp| tp.partition(i)) {
                    _ if denied => PartitionResponse::default()
                        .with_partition_index(i)
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                    None => PartitionResponse::default()
                        .with_partition_index(i)
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    Some(p) => PartitionResponse::default()
                        .with_partition_index(i)
                        .with_active_producers(
                            p.producers()
                                .into_iter()
                                .map(|(pid, epoch, seq, ts, open)| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(pid))
                                        .with_producer_epoch(epoch as i32)
                                        .with_last_sequence(seq)
                                        .with_last_timestamp(ts)
                                        .with_coordinator_epoch(0)
                                        .with_current_txn_start_offset(open.unwrap_or(-1))
                                })
                                .collect(),
                        ),
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// A ListTransactions `TransactionalIdPattern`, matching whole ids as Kafka's does.
pub(crate) fn compile_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

pub fn list_transactions(ctx: &Ctx<'_>, req: ListTransactionsRequest) -> ListTransactionsResponse {
    use crate::broker::transactions::TxnState;
    const STATES: [TxnState; 6] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];
    let unknown: Vec<_> = req
        .state_filters
        .iter()
        .filter(|f| !STATES.iter().any(|s| s.name() == f.as_str()))
        .cloned()
        .collect();
    let pattern = match req
        .transactional_id_pattern
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(p) => match compile_pattern(p) {
            Ok(re) => Some(re),
            Err(_) => {
                return ListTransactionsResponse::default()
                    .with_error_code(ResponseError::InvalidRegularExpression.code())
            }
        },
    };
    let now = now_ms();
    let states = ctx
        .broker
        .txns
        .all()
        .into_iter()
        .filter(|m| {
            req.state_filters.is_empty()
                || req
                    .state_filters
                    .iter()
                    .any(|f| f.as_str() == m.state.name())
        })
        .filter(|m| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.iter().any(|p| p.0 == m.producer_id)
        })
        .filter(|m| {
            req.duration_filter < 0
                || (m.state == TxnState::Ongoing && now - m.start_ms >= req.duration_filter)
        })
        .filter(|m| pattern.as_ref().is_none_or(|re| re.is_match(&m.id)))
        .filter(|m| ctx.authorize(Operation::Describe, ResourceType::TransactionalId, &m.id))
        .map(|m| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(&m.id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(str_bytes(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}

pub fn describe_transactions(
    ctx: &Ctx<'_>,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    use describe_transactions_response::{TopicData, TransactionState};
    let states = req
        .transactional_ids
        .into_iter()
        .map(|tid| match ctx.broker.txns.get(tid.as_str()) {
            _ if !ctx.authorize(Operation::Describe, ResourceType::TransactionalId, &tid) => {
                TransactionState::default()
                    .with_transactional_id(tid)
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_state(str_bytes(""))
            }
            None => TransactionState::default()
                .with_transactional_id(tid)
                .with_error_code(ResponseError::TransactionalIdNotFound.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_state(str_bytes("")),
            Some(m) => {
                let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
                // Topics the client may not describe are left out, as Kafka leaves them.
                for (t, p) in &m.partitions {
                    if ctx.authorize(Operation::Describe, ResourceType::Topic, t) {
                        by_topic.entry(t.clone()).or_default().push(*p);
                    }
                }
                TransactionState::default()
                    .with_transactional_id(tid)
                    .with_transaction_state(str_bytes(m.state.name()))
                    .with_transaction_timeout_ms(m.timeout_ms)
                    .with_transaction_start_time_ms(m.start_ms)
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.epoch)
                    .with_topics(
                        by_topic
                            .into_iter()
                            .map(|(t, ps)| {
                                TopicData::default()
                                    .with_topic(TopicName(str_bytes(&t)))
                                    .with_partitions(ps)
                            })
                            .collect(),
                    )
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
