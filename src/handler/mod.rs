//! Handlers, one module per API family: thin translations between Kafka messages and calls
//! on the broker's state. Every partition gets its own error code; nothing a client sends
//! fails a whole request unless Kafka would fail it too.
//!
//! Handlers write no files and hold no state of their own: what a request changes is
//! changed (and persisted) by the broker.

pub mod acls;
pub mod admin;
pub mod api_versions;
pub mod configs;
pub mod consumer_groups;
pub mod delete_records;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod partitions;
pub mod produce;
pub mod reassignments;
pub mod sasl;
pub mod scram_credentials;
pub mod txn;

use crate::broker::Broker;
use crate::protocol::RequestFrame;
use crate::security::authorizer::acl::CLUSTER_NAME;
pub use crate::security::authorizer::{Operation, ResourceType};
use crate::security::Session;
use std::future::Future;
use std::pin::Pin;

pub type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

/// What the connection sends back, in request order.
pub enum Reply {
    /// Ready now.
    Now(Box<ResponseKind>),
    /// Ready once the future resolves (an acknowledgement waiting for the disk). Later
    /// requests on the connection are handled meanwhile, but answered after it.
    Later(Boxed<ResponseKind>),
    /// A Fetch answer some of whose records are still in segment files: `files` has one
    /// entry per partition, in the order of the response; where it holds a range, that
    /// partition's `records` is None and the connection writes the range in its place.
    Spliced {
        body: Box<ResponseKind>,
        files: Vec<Option<crate::log::FileRange>>,
    },
    /// acks=0 produce: Kafka sends nothing.
    Nothing,
    /// acks=0 produce that failed somewhere: Kafka closes the connection, the one signal
    /// such a producer gets, so that it refreshes its metadata.
    Close,
}

fn now(body: ResponseKind) -> Reply {
    Reply::Now(Box::new(body))
}

/// Per-request facts handlers need besides the body.
pub struct Ctx<'a> {
    pub broker: &'a Broker,
    pub version: i16,
    pub client_id: &'a str,
    /// The connection's listener and principal.
    pub session: &'a Session,
}

impl Ctx<'_> {
    pub fn client_host(&self) -> &str {
        &self.session.client_host
    }

    /// May this connection's principal perform `op` on the named resource? Always, without
    /// an authorizer.
    pub fn authorize(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        match &self.broker.authorizer {
            None => true,
            Some(a) => a.authorize(
                &self.session.principal,
                &self.session.client_host,
                op,
                rt,
                name,
            ),
        }
    }

    /// `op` on the cluster resource.
    pub fn authorize_cluster(&self, op: Operation) -> bool {
        self.authorize(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Kafka's `authorizeByResourceType`: `op` on at least one resource of the type.
    pub fn authorize_any(&self, op: Operation, rt: ResourceType) -> bool {
        match &self.broker.authorizer {
            None => true,
            Some(a) => a.authorize_by_resource_type(
                &self.session.principal,
                &self.session.client_host,
                op,
                rt,
            ),
        }
    }

    /// The `*_authorized_operations` bit field; every operation of the type without an
    /// authorizer, as Kafka reports it.
    pub fn authorized_operations(&self, rt: ResourceType, name: &str) -> i32 {
        match &self.broker.authorizer {
            None => rt.all_operations_bits(),
            Some(a) => a.authorized_operations(
                &self.session.principal,
                &self.session.client_host,
                rt,
                name,
            ),
        }
    }

    /// `cluster_authorized_operations` as Kafka fills it (`AuthHelper`, DescribeCluster and
    /// Metadata v8–v10): the schema default `i32::MIN` when the client did not ask, 0 when
    /// the principal may not DESCRIBE the cluster (whatever else it may do there), else the
    /// cluster operations it may perform.
    pub fn cluster_authorized_operations(&self, requested: bool) -> i32 {
        if !requested {
            i32::MIN
        } else if !self.authorize_cluster(Operation::Describe) {
            0
        } else {
            self.authorized_operations(ResourceType::Cluster, CLUSTER_NAME)
        }
    }
}

/// Routes a decoded request to its handler. The versions table already refused anything
/// not advertised, so every arm here is reachable exactly for the advertised APIs.
pub async fn dispatch(broker: &Broker, frame: RequestFrame, session: &Session) -> Reply {
    let client_id = frame
        .header
        .client_id
        .as_ref()
        .map(|s| s.as_str())
        .unwrap_or("")
        .to_string();
    let ctx = Ctx {
        broker,
        version: frame.version,
        client_id: &client_id,
        session,
    };
    match frame.body {
        RequestKind::ApiVersions(req) => {
            now(ResponseKind::ApiVersions(api_versions::handle(&ctx, req)))
        }
        RequestKind::Metadata(req) => {
            now(ResponseKind::Metadata(metadata::handle(&ctx, req).await))
        }
        RequestKind::Produce(req) => produce::handle(&ctx, req).await,
        RequestKind::Fetch(req) => fetch::handle(&ctx, req).await,
        RequestKind::ListOffsets(req) => now(ResponseKind::ListOffsets(
            list_offsets::handle(&ctx, req).await,
        )),
        RequestKind::CreateTopics(req) => now(ResponseKind::CreateTopics(
            admin::create_topics(&ctx, req).await,
        )),
        RequestKind::DeleteTopics(req) => now(ResponseKind::DeleteTopics(
            admin::delete_topics(&ctx, req).await,
        )),
        RequestKind::DeleteRecords(req) => now(ResponseKind::DeleteRecords(
            delete_records::handle(&ctx, req).await,
        )),
        RequestKind::DescribeCluster(req) => now(ResponseKind::DescribeCluster(
            admin::describe_cluster(&ctx, req),
        )),
        RequestKind::CreatePartitions(req) => now(ResponseKind::CreatePartitions(
            partitions::create_partitions(&ctx, req).await,
        )),
        RequestKind::DescribeTopicPartitions(req) => now(ResponseKind::DescribeTopicPartitions(
            partitions::describe_topic_partitions(&ctx, req),
        )),
        RequestKind::DescribeLogDirs(req) => now(ResponseKind::DescribeLogDirs(
            partitions::describe_log_dirs(&ctx, req).await,
        )),
        RequestKind::InitProducerId(req) => now(ResponseKind::InitProducerId(
            txn::init_producer_id(&ctx, req).await,
        )),
        RequestKind::AddPartitionsToTxn(req) => now(ResponseKind::AddPartitionsToTxn(
            txn::add_partitions(&ctx, req).await,
        )),
        RequestKind::AddOffsetsToTxn(req) => now(ResponseKind::AddOffsetsToTxn(
            txn::add_offsets(&ctx, req).await,
        )),
        RequestKind::TxnOffsetCommit(req) => now(ResponseKind::TxnOffsetCommit(
            txn::txn_offset_commit(&ctx, req).await,
        )),
        RequestKind::EndTxn(req) => now(ResponseKind::EndTxn(txn::end_txn(&ctx, req).await)),
        RequestKind::DescribeProducers(req) => now(ResponseKind::DescribeProducers(
            txn::describe_producers(&ctx, req),
        )),
        RequestKind::ListTransactions(req) => now(ResponseKind::ListTransactions(
            txn::list_transactions(&ctx, req),
        )),
        RequestKind::DescribeTransactions(req) => now(ResponseKind::DescribeTransactions(
            txn::describe_transactions(&ctx, req),
        )),
        RequestKind::OffsetForLeaderEpoch(req) => now(ResponseKind::OffsetForLeaderEpoch(
            list_offsets::offset_for_leader_epoch(&ctx, req),
        )),
        RequestKind::FindCoordinator(req) => now(ResponseKind::FindCoordinator(
            groups::find_coordinator(&ctx, req),
        )),
        RequestKind::JoinGroup(req) => now(ResponseKind::JoinGroup(groups::join(&ctx, req).await)),
        RequestKind::SyncGroup(req) => now(ResponseKind::SyncGroup(groups::sync(&ctx, req).await)),
        RequestKind::Heartbeat(req) => now(ResponseKind::Heartbeat(groups::heartbeat(&ctx, req))),
        RequestKind::LeaveGroup(req) => now(ResponseKind::LeaveGroup(groups::leave(&ctx, req))),
        RequestKind::OffsetCommit(req) => now(ResponseKind::OffsetCommit(
            offsets::offset_commit(&ctx, req).await,
        )),
        RequestKind::OffsetFetch(req) => {
            now(ResponseKind::OffsetFetch(offsets::offset_fetch(&ctx, req)))
        }
        RequestKind::ListGroups(req) => {
            now(ResponseKind::ListGroups(groups::list_groups(&ctx, req)))
        }
        RequestKind::DescribeGroups(req) => now(ResponseKind::DescribeGroups(
            groups::describe_groups(&ctx, req),
        )),
        RequestKind::DeleteGroups(req) => now(ResponseKind::DeleteGroups(
            groups::delete_groups(&ctx, req).await,
        )),
        RequestKind::OffsetDelete(req) => now(ResponseKind::OffsetDelete(
            offsets::offset_delete(&ctx, req).await,
        )),
        RequestKind::ConsumerGroupHeartbeat(req) => now(ResponseKind::ConsumerGroupHeartbeat(
            consumer_groups::consumer_group_heartbeat(&ctx, req),
        )),
        RequestKind::ConsumerGroupDescribe(req) => now(ResponseKind::ConsumerGroupDescribe(
            consumer_groups::consumer_group_describe(&ctx, req),
        )),
        RequestKind::DescribeConfigs(req) => now(ResponseKind::DescribeConfigs(
            configs::describe_configs(&ctx, req),
        )),
        RequestKind::AlterConfigs(req) => now(ResponseKind::AlterConfigs(
            configs::alter_configs(&ctx, req).await,
        )),
        RequestKind::IncrementalAlterConfigs(req) => now(ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter_configs(&ctx, req).await,
        )),
        RequestKind::DescribeAcls(req) => {
            now(ResponseKind::DescribeAcls(acls::describe_acls(&ctx, req)))
        }
        RequestKind::CreateAcls(req) => now(ResponseKind::CreateAcls(acls::create_acls(&ctx, req))),
        RequestKind::DeleteAcls(req) => now(ResponseKind::DeleteAcls(acls::delete_acls(&ctx, req))),
        RequestKind::DescribeUserScramCredentials(req) => now(
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(&ctx, req)),
        ),
        RequestKind::AlterUserScramCredentials(req) => now(
            ResponseKind::AlterUserScramCredentials(scram_credentials::alter(&ctx, req)),
        ),
        RequestKind::SaslHandshake(_) => now(ResponseKind::SaslHandshake(sasl::handshake())),
        RequestKind::SaslAuthenticate(_) => {
            now(ResponseKind::SaslAuthenticate(sasl::authenticate()))
        }
        RequestKind::ElectLeaders(req) => now(ResponseKind::ElectLeaders(
            reassignments::elect_leaders(&ctx, req),
        )),
        RequestKind::ListPartitionReassignments(req) => {
            now(ResponseKind::ListPartitionReassignments(
                reassignments::list_partition_reassignments(&ctx, req),
            ))
        }
        RequestKind::AlterPartitionReassignments(req) => {
            now(ResponseKind::AlterPartitionReassignments(
                reassignments::alter_partition_reassignments(&ctx, req),
            ))
        }
        other => {
            // Unreachable while the versions table and this match agree; a test checks that.
            tracing::error!(request = ?std::mem::discriminant(&other), "advertised API without a handler");
            Reply::Nothing
        }
    }
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record_batch::tests::make_batch;
    use crate::protocol::{decode_request, encode_response, versions::SUPPORTED};
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Encodable;

    fn frame(api_key: ApiKey, version: i16, body: &RequestKind) -> bytes::Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(str_bytes("test")))
            .encode(&mut buf, api_key.request_header_version(version))
            .expect("header");
        body.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    async fn answer(
        broker: &Broker,
        api_key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Option<ResponseKind> {
        let req = decode_request(frame(api_key, version, &body)).expect("decodes");
        let session = Session::local("localhost", 9092);
        let reply = dispatch(broker, req, &session).await;
        let body = match reply {
            Reply::Now(b) => *b,
            Reply::Later(f) => f.await,
            Reply::Spliced { mut body, files } => {
                fetch::fill_records(&mut body, files).expect("records read");
                *body
            }
            Reply::Nothing | Reply::Close => return None,
        };
        encode_response(api_key, version, 7, &body)
            .unwrap_or_else(|e| panic!("{api_key:?} v{version} response does not encode: {e:#}"));
        Some(body)
    }

    fn sample(api_key: ApiKey, version: i16, topic: &crate::broker::Topic) -> RequestKind {
        let name = TopicName(str_bytes(&topic.name));
        match api_key {
            ApiKey::Produce => {
                let mut b = BytesMut::new();
                b.put_slice(&make_batch(1_000, &[b"x", b"y"]));
                RequestKind::Produce(
                    ProduceRequest::default()
                        .with_acks(1)
                        .with_timeout_ms(1000)
                        .with_topic_data(vec![TopicProduceData::default()
                            .with_name(if version >= 13 {
                                TopicName::default()
                            } else {
                                name
                            })
                            .with_topic_id(if version >= 13 {
                                topic.id
                            } else {
                                uuid::Uuid::nil()
                            })
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(b.freeze()))])]),
                )
            }
            ApiKey::Fetch => RequestKind::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(10)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(if version >= 13 {
                            TopicName::default()
                        } else {
                            name
                        })
                        .with_topic_id(if version >= 13 {
                            topic.id
                        } else {
                            uuid::Uuid::nil()
                        })
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(0)
                            .with_partition_max_bytes(1 << 20)])]),
            ),
            ApiKey::ListOffsets => RequestKind::ListOffsets(
                ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name)
                    .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])]),
            ),
            ApiKey::Metadata => {
                RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name)),
                ])))
            }
            other => RequestKind::Metadata(MetadataRequest::default()).pipe_default(other),
        }
    }

    trait PipeDefault {
        fn pipe_default(self, api_key: ApiKey) -> RequestKind;
    }
    impl PipeDefault for RequestKind {
        fn pipe_default(self, api_key: ApiKey) -> RequestKind {
            match api_key {
                ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
                ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
                ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
                ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
                ApiKey::DescribeTopicPartitions => {
                    RequestKind::DescribeTopicPartitions(Default::default())
                }
                ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(Default::default()),
                ApiKey::DeleteRecords => RequestKind::DeleteRecords(Default::default()),
                ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
                ApiKey::FindCoordinator => {
                    RequestKind::FindCoordinator(FindCoordinatorRequest::default())
                }
                ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
                ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
                ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
                ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
                ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
                ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
                ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
                ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
                ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
                ApiKey::OffsetDelete => RequestKind::OffsetDelete(Default::default()),
                ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(Default::default()),
                ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(Default::default()),
                ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(Default::default()),
                ApiKey::EndTxn => RequestKind::EndTxn(Default::default()),
                ApiKey::DescribeProducers => RequestKind::DescribeProducers(Default::default()),
                ApiKey::ListTransactions => RequestKind::ListTransactions(Default::default()),
                ApiKey::DescribeTransactions => {
                    RequestKind::DescribeTransactions(Default::default())
                }
                ApiKey::ConsumerGroupHeartbeat => {
                    RequestKind::ConsumerGroupHeartbeat(Default::default())
                }
                ApiKey::ConsumerGroupDescribe => {
                    RequestKind::ConsumerGroupDescribe(Default::default())
                }
                ApiKey::OffsetForLeaderEpoch => {
                    RequestKind::OffsetForLeaderEpoch(Default::default())
                }
                ApiKey::DescribeCluster => RequestKind::DescribeCluster(Default::default()),
                ApiKey::DescribeAcls => RequestKind::DescribeAcls(Default::default()),
                ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
                ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
                ApiKey::IncrementalAlterConfigs => {
                    RequestKind::IncrementalAlterConfigs(Default::default())
                }
                ApiKey::CreateAcls => RequestKind::CreateAcls(Default::default()),
                ApiKey::DeleteAcls => RequestKind::DeleteAcls(Default::default()),
                ApiKey::DescribeUserScramCredentials => {
                    RequestKind::DescribeUserScramCredentials(Default::default())
                }
                ApiKey::AlterUserScramCredentials => {
                    RequestKind::AlterUserScramCredentials(Default::default())
                }
                ApiKey::SaslHandshake => RequestKind::SaslHandshake(Default::default()),
                ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
                    SaslAuthenticateRequest::default()
                        .with_auth_bytes(bytes::Bytes::from_static(b"\0u\0p")),
                ),
                ApiKey::ElectLeaders => RequestKind::ElectLeaders(Default::default()),
                ApiKey::ListPartitionReassignments => {
                    RequestKind::ListPartitionReassignments(Default::default())
                }
                ApiKey::AlterPartitionReassignments => {
                    RequestKind::AlterPartitionReassignments(Default::default())
                }
                _ => self,
            }
        }
    }

    /// A broker under `StandardAuthorizer` where User:ANONYMOUS holds `ops` on the cluster.
    fn broker_allowing_on_the_cluster(ops: &[Operation]) -> (tempfile::TempDir, Broker) {
        use crate::security::authorizer::acl::{AclBinding, PatternType, Permission};
        let dir = tempfile::tempdir().expect("tmp");
        let overrides = crate::config::Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            properties: vec![format!(
                "authorizer.class.name={}",
                crate::security::authorizer::STANDARD_AUTHORIZER
            )],
            ..Default::default()
        };
        let broker = Broker::open(crate::config::Config::load(None, overrides).expect("config"))
            .expect("broker");
        let acls: Vec<AclBinding> = ops
            .iter()
            .map(|&operation| AclBinding {
                resource_type: ResourceType::Cluster,
                resource_name: CLUSTER_NAME.into(),
                pattern_type: PatternType::Literal,
                principal: "User:ANONYMOUS".into(),
                host: "*".into(),
                operation,
                permission: Permission::Allow,
            })
            .collect();
        broker
            .authorizer
            .as_ref()
            .expect("an authorizer")
            .create(&acls)
            .expect("stored");
        (dir, broker)
    }

    /// (DescribeCluster's, Metadata's) cluster_authorized_operations at `version` of Metadata.
    async fn cluster_operations(broker: &Broker, metadata_version: i16) -> (i32, i32) {
        let described = answer(
            broker,
            ApiKey::DescribeCluster,
            1,
            RequestKind::DescribeCluster(
                DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
            ),
        )
        .await;
        let Some(ResponseKind::DescribeCluster(described)) = described else {
            panic!("no DescribeCluster answer");
        };
        let metadata = answer(
            broker,
            ApiKey::Metadata,
            metadata_version,
            RequestKind::Metadata(
                MetadataRequest::default()
                    .with_topics(Some(vec![]))
                    .with_include_cluster_authorized_operations(true),
            ),
        )
        .await;
        let Some(ResponseKind::Metadata(metadata)) = metadata else {
            panic!("no Metadata answer");
        };
        (
            described.cluster_authorized_operations,
            metadata.cluster_authorized_operations,
        )
    }

    #[tokio::test]
    async fn cluster_authorized_operations_need_describe_on_the_cluster_as_in_kafka() {
        let bits = |ops: &[Operation]| ops.iter().fold(0, |b, op| b | (1 << op.code()));
        // Operations on the cluster, but not DESCRIBE: Kafka answers 0.
        let (_dir, broker) =
            broker_allowing_on_the_cluster(&[Operation::IdempotentWrite, Operation::Create]);
        assert_eq!(cluster_operations(&broker, 10).await, (0, 0));
        // With DESCRIBE: every operation the principal may perform.
        let (_dir, broker) = broker_allowing_on_the_cluster(&[
            Operation::IdempotentWrite,
            Operation::Create,
            Operation::Describe,
        ]);
        let allowed = bits(&[
            Operation::IdempotentWrite,
            Operation::Create,
            Operation::Describe,
        ]);
        assert_eq!(cluster_operations(&broker, 8).await, (allowed, allowed));
        // Metadata v11+ has no such field (a v11+ frame cannot even carry the flag): the
        // schema default, whatever the decoded request holds.
        let session = Session::local("localhost", 9092);
        let ctx = Ctx {
            broker: &broker,
            version: 12,
            client_id: "t",
            session: &session,
        };
        let asked = MetadataRequest::default()
            .with_topics(Some(vec![]))
            .with_include_cluster_authorized_operations(true);
        let v12 = metadata::handle(&ctx, asked).await;
        assert_eq!(v12.cluster_authorized_operations, i32::MIN);
        // Not asked for: the schema default.
        assert_eq!(ctx.cluster_authorized_operations(false), i32::MIN);
        // Without an authorizer: every cluster operation.
        let (_dir, open) = crate::broker::test_broker();
        let every = ResourceType::Cluster.all_operations_bits();
        assert_eq!(cluster_operations(&open, 9).await, (every, every));
    }

    #[tokio::test]
    async fn every_advertised_api_and_version_is_handled_and_answers_encode() {
        let (_dir, broker) = crate::broker::test_broker();
        let topic = broker
            .create_topic("t", 1, 1, vec![], false)
            .await
            .expect("topic");
        for &(api_key, min, max) in SUPPORTED {
            for version in min..=max {
                let body = sample(api_key, version, &topic);
                assert!(
                    answer(&broker, api_key, version, body).await.is_some(),
                    "{api_key:?} v{version} is advertised but not answered"
                );
            }
        }
        // Every produce above landed: one two-record batch per Produce version.
        let p = topic.partition(0).expect("partition");
        assert_eq!(p.high_watermark(), 2 * (13 - 3 + 1));
    }
}
