//! CreatePartitions, DescribeTopicPartitions, DescribeLogDirs: a topic's partitions as
//! Kafka's admin tools see and grow them.
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx, Operation, ResourceType};
use crate::broker::Topic;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
    TopicName,
};
use std::collections::{BTreeMap, BTreeSet};

/// Kafka's `max.request.partition.size.limit` default: the most partitions one
/// DescribeTopicPartitions answer holds, whatever the client asks.
const MAX_RESPONSE_PARTITIONS: i32 = 2000;

/// Kafka's internal topics (Strata keeps groups and transactions elsewhere, but a topic of
/// that name is still reported as internal, as Kafka would).
fn is_internal(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

#[tracing::instrument(name = "create_partitions", skip_all, fields(n = req.topics.len(), validate_only = req.validate_only))]
pub async fn create_partitions(
    ctx: &Ctx<'_>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut seen = BTreeMap::<String, usize>::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        if seen.get(&name).copied().unwrap_or(0) > 1 {
            continue;
        }
        let assignment = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let outcome = if ctx.authorize(Operation::Alter, ResourceType::Topic, &name) {
            ctx.broker
                .create_partitions(&name, t.count, assignment, req.validate_only)
                .await
        } else {
            Err((ResponseError::TopicAuthorizationFailed, None))
        };
        let entry = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        results.push(match outcome {
            Ok(()) => entry,
            Err((code, msg)) => entry
                .with_error_code(code.code())
                .with_error_message(msg.map(|m| str_bytes(&m))),
        });
    }
    // Duplicates are refused as Kafka's controller refuses them: one answer per name.
    for (name, n) in seen {
        if n > 1 {
            results.push(
                CreatePartitionsTopicResult::default()
                    .with_name(TopicName(str_bytes(&name)))
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("Duplicate topic name."))),
            );
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// DescribeTopicPartitions as Kafka's DescribeTopicPartitionsRequestHandler answers: topics
/// in name order from the cursor's topic on, at most `response_partition_limit` partitions
/// (capped at 2000), and a next cursor where the answer stopped.
pub fn describe_topic_partitions(
    ctx: &Ctx<'_>,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let broker = ctx.broker;
    let all = req.topics.is_empty();
    let cursor = req
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.0.to_string(), c.partition_index));
    let from = cursor.as_ref().map(|(t, _)| t.as_str()).unwrap_or("");
    let names: BTreeSet<String> = if all {
        broker
            .topics()
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| n.as_str() >= from)
            // Topics the client may not describe are left out of "all topics".
            .filter(|n| ctx.authorize(Operation::Describe, ResourceType::Topic, n))
            .collect()
    } else {
        req.topics
            .iter()
            .map(|t| t.name.0.to_string())
            .filter(|n| n.as_str() >= from)
            .collect()
    };
    if let Some((topic, _)) = &cursor {
        if !all && !names.contains(topic) {
            // Kafka throws InvalidRequestException; its error answer names every requested
            // topic with that code.
            tracing::debug!(cursor = %topic, "cursor topic not among the requested topics");
            let topics = req
                .topics
                .iter()
                .map(|t| {
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(t.name.clone()))
                        .with_error_code(ResponseError::InvalidRequest.code())
                })
                .collect();
            return DescribeTopicPartitionsResponse::default().with_topics(topics);
        }
    }
    let start_of = |name: &str| match &cursor {
        Some((t, p)) if t == name => *p,
        _ => 0,
    };
    let topics: Vec<_> = names
        .iter()
        .map(|n| (n.as_str(), broker.topic(n)))
        .collect();
    let limit = req.response_partition_limit.min(MAX_RESPONSE_PARTITIONS);
    let (entries, next) = paginate(ctx, &topics, start_of, limit, all);
    DescribeTopicPartitionsResponse::default()
        .with_topics(entries)
        .with_next_cursor(next.map(|(t, p)| {
            Cursor::default()
                .with_topic_name(TopicName(str_bytes(&t)))
                .with_partition_index(p)
        }))
}

/// Kafka's getTopicMetadataForDescribeTopicResponse: walks the topics in order, spending the
/// partition budget; stops with a cursor at the first partition that does not fit (or at
/// the start of the next topic when the budget ran out exactly). Unknown topics are
/// reported unless all topics were asked for.
fn paginate(
    ctx: &Ctx<'_>,
    topics: &[(&str, Option<std::sync::Arc<Topic>>)],
    start_of: impl Fn(&str) -> i32,
    limit: i32,
    all: bool,
) -> (
    Vec<DescribeTopicPartitionsResponseTopic>,
    Option<(String, i32)>,
) {
    let node = BrokerId(ctx.broker.node_id);
    let mut remaining = limit;
    let mut out = Vec::new();
    for (name, topic) in topics {
        if remaining == 0 {
            return (out, Some((name.to_string(), 0)));
        }
        if remaining < 0 {
            continue;
        }
        if !ctx.authorize(Operation::Describe, ResourceType::Topic, name) {
            out.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(str_bytes(name))))
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
            );
            continue;
        }
        let Some(topic) = topic else {
            if !all {
                let code = match crate::broker::topics::validate_name(name) {
                    Ok(()) => ResponseError::UnknownTopicOrPartition,
                    Err(_) => ResponseError::InvalidTopicException,
                };
                out.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(TopicName(str_bytes(name))))
                        .with_error_code(code.code())
                        .with_is_internal(is_internal(name)),
                );
            }
            continue;
        };
        let count = topic.partition_count;
        let start = start_of(name).max(0);
        let upper = (start as i64 + remaining as i64).min(count as i64) as i32;
        let partitions: Vec<_> = (start..upper)
            .map(|i| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(i)
                    .with_leader_id(node)
                    .with_leader_epoch(0)
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(Vec::new())
            })
            .collect();
        let used = partitions.len() as i32;
        out.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(name))))
                .with_topic_id(topic.id)
                .with_is_internal(is_internal(name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(
                    ctx.authorized_operations(ResourceType::Topic, name),
                ),
        );
        if upper < count {
            return (out, Some((name.to_string(), upper)));
        }
        remaining -= used;
    }
    (out, None)
}

/// DescribeLogDirs: the data directory is the one log dir. Partitions named in the request
/// but not hosted here are left out, as Kafka leaves them out.
pub async fn describe_log_dirs(
    ctx: &Ctx<'_>,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if !ctx.authorize_cluster(Operation::Describe) {
        return DescribeLogDirsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let broker = ctx.broker.clone();
    let space = tokio::task::spawn_blocking(move || broker.log_dir_space())
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    let broker = ctx.broker;
    let dir = match space {
        Ok((path, total, usable)) => DescribeLogDirsResult::default()
            .with_log_dir(str_bytes(&path))
            .with_total_bytes(total)
            .with_usable_bytes(usable),
        Err(e) => {
            tracing::error!(error = %e, "reading the data directory's file system");
            let path = broker.config.data_dir.to_string_lossy().into_owned();
            return DescribeLogDirsResponse::default().with_results(vec![
                DescribeLogDirsResult::default()
                    .with_log_dir(str_bytes(&path))
                    .with_error_code(ResponseError::KafkaStorageError.code()),
            ]);
        }
    };
    let wanted: Option<BTreeMap<String, BTreeSet<i32>>> = req.topics.map(|ts| {
        let mut m = BTreeMap::<String, BTreeSet<i32>>::new();
        for t in ts {
            m.entry(t.topic.0.to_string())
                .or_default()
                .extend(t.partitions.iter().copied());
        }
        m
    });
    let mut topics = Vec::new();
    for topic in broker.topics() {
        let chosen: Option<&BTreeSet<i32>> = match &wanted {
            None => None,
            Some(m) => match m.get(&topic.name) {
                Some(set) => Some(set),
                None => continue,
            },
        };
        let partitions: Vec<_> = topic
            .partitions
            .iter()
            .filter(|p| chosen.is_none_or(|s| s.contains(&p.index)))
            .map(|p| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.index)
                    .with_partition_size(i64::try_from(p.local_size()).unwrap_or(i64::MAX))
                    .with_offset_lag(0)
                    .with_is_future_key(false)
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(str_bytes(&topic.name)))
                    .with_partitions(partitions),
            );
        }
    }
    DescribeLogDirsResponse::default().with_results(vec![dir.with_topics(topics)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::Session;
    use kafka_protocol::messages::describe_topic_partitions_request::{
        Cursor as ReqCursor, TopicRequest,
    };

    fn ctx<'a>(broker: &'a crate::broker::Broker, session: &'a Session) -> Ctx<'a> {
        Ctx {
            broker,
            version: 0,
            client_id: "test",
            session,
        }
    }

    fn walk(
        broker: &crate::broker::Broker,
        topics: &[&str],
        limit: i32,
    ) -> (Vec<(String, i32)>, Vec<i16>, usize) {
        let mut cursor: Option<ReqCursor> = None;
        let mut seen = Vec::new();
        let mut errors = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            let req = DescribeTopicPartitionsRequest::default()
                .with_topics(
                    topics
                        .iter()
                        .map(|t| TopicRequest::default().with_name(TopicName(str_bytes(t))))
                        .collect(),
                )
                .with_response_partition_limit(limit)
                .with_cursor(cursor.take());
            let resp =
                describe_topic_partitions(&ctx(broker, &Session::local("localhost", 9092)), req);
            for t in resp.topics {
                let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
                if t.error_code != 0 {
                    errors.push(t.error_code);
                }
                for p in t.partitions {
                    seen.push((name.clone(), p.partition_index));
                }
            }
            match resp.next_cursor {
                Some(c) => {
                    cursor = Some(
                        ReqCursor::default()
                            .with_topic_name(c.topic_name)
                            .with_partition_index(c.partition_index),
                    )
                }
                None => return (seen, errors, pages),
            }
            assert!(pages < 100, "the cursor does not advance");
        }
    }

    #[tokio::test]
    async fn a_small_partition_limit_walks_every_partition_once_through_the_cursor() {
        let (_dir, broker) = crate::broker::test_broker();
        for (name, n) in [("a", 3), ("b", 2), ("c", 4)] {
            broker
                .create_topic(name, n, 1, vec![], false)
                .await
                .expect("topic");
        }
        let expected: Vec<(String, i32)> = [("a", 3), ("b", 2), ("c", 4)]
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |i| (t.to_string(), i)))
            .collect();
        for limit in [1, 2, 3, 5, 9, 100] {
            let (seen, errors, _) = walk(&broker, &[], limit);
            assert_eq!(seen, expected, "limit {limit}");
            assert!(errors.is_empty());
        }
        // Exactly filling a topic moves the cursor to the next topic's partition 0:
        // a0-a2 | b0-b1 c0 | c1-c3.
        let (_, _, pages) = walk(&broker, &[], 3);
        assert_eq!(pages, 3);
        let (seen, errors, _) = walk(&broker, &["c", "a", "nope"], 2);
        assert_eq!(seen.len(), 7);
        assert_eq!(errors, vec![ResponseError::UnknownTopicOrPartition.code()]);
    }

    #[tokio::test]
    async fn a_cursor_naming_a_topic_not_requested_is_an_invalid_request() {
        let (_dir, broker) = crate::broker::test_broker();
        broker
            .create_topic("a", 1, 1, vec![], false)
            .await
            .expect("topic");
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                TopicRequest::default().with_name(TopicName(str_bytes("a")))
            ])
            .with_cursor(Some(
                ReqCursor::default().with_topic_name(TopicName(str_bytes("b"))),
            ));
        let resp =
            describe_topic_partitions(&ctx(&broker, &Session::local("localhost", 9092)), req);
        assert_eq!(resp.topics.len(), 1);
        assert_eq!(
            resp.topics[0].error_code,
            ResponseError::InvalidRequest.code()
        );
    }

    #[tokio::test]
    async fn log_dirs_report_every_partition_or_only_those_asked_for() {
        use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
        let (_dir, broker) = crate::broker::test_broker();
        broker
            .create_topic("a", 2, 1, vec![], false)
            .await
            .expect("topic");
        // Null topics: every partition (an empty list asks for none).
        let all = describe_log_dirs(
            &ctx(&broker, &Session::local("localhost", 9092)),
            DescribeLogDirsRequest::default().with_topics(None),
        )
        .await;
        assert_eq!(all.results.len(), 1);
        let r = &all.results[0];
        assert_eq!(r.error_code, 0);
        assert!(r.total_bytes > 0 && r.usable_bytes >= 0 && r.usable_bytes <= r.total_bytes);
        assert_eq!(r.topics.len(), 1);
        assert_eq!(r.topics[0].partitions.len(), 2);
        let some = describe_log_dirs(
            &ctx(&broker, &Session::local("localhost", 9092)),
            DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(TopicName(str_bytes("a")))
                    .with_partitions(vec![1, 7]),
                DescribableLogDirTopic::default()
                    .with_topic(TopicName(str_bytes("missing")))
                    .with_partitions(vec![0]),
            ])),
        )
        .await;
        let topics = &some.results[0].topics;
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].partitions.len(), 1);
        assert_eq!(topics[0].partitions[0].partition_index, 1);
    }

    #[tokio::test]
    async fn create_partitions_grows_topics_and_refuses_as_kafka() {
        use kafka_protocol::messages::create_partitions_request::{
            CreatePartitionsAssignment, CreatePartitionsTopic,
        };
        let (_dir, broker) = crate::broker::test_broker();
        broker
            .create_topic("a", 1, 1, vec![], false)
            .await
            .expect("topic");
        let topic = |name: &str, count: i32| {
            CreatePartitionsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_count(count)
                .with_assignments(None)
        };
        let resp = create_partitions(
            &ctx(&broker, &Session::local("localhost", 9092)),
            CreatePartitionsRequest::default()
                .with_validate_only(true)
                .with_topics(vec![topic("a", 3)]),
        )
        .await;
        assert_eq!(resp.results[0].error_code, 0);
        let before = broker.topic("a").expect("a");
        assert_eq!(before.partition_count, 1);
        let loops_before = broker.maintenance.topic_task_count(before.id);
        let resp = create_partitions(
            &ctx(&broker, &Session::local("localhost", 9092)),
            CreatePartitionsRequest::default().with_topics(vec![
                topic("a", 3).with_assignments(Some(vec![
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(0)]),
                    CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(0)]),
                ])),
                topic("missing", 2),
                topic("dup", 2),
                topic("dup", 3),
            ]),
        )
        .await;
        let codes: Vec<_> = resp
            .results
            .iter()
            .map(|r| (r.name.0.to_string(), r.error_code))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("a".to_string(), 0),
                (
                    "missing".to_string(),
                    ResponseError::UnknownTopicOrPartition.code()
                ),
                ("dup".to_string(), ResponseError::InvalidRequest.code()),
            ]
        );
        let a = broker.topic("a").expect("a");
        assert_eq!(a.partition_count, 3);
        assert_eq!(a.partitions.len(), 3);
        // Each new partition gets its archiver or retention loop.
        assert!(broker.maintenance.topic_task_count(a.id) >= loops_before + 2);
    }
}
