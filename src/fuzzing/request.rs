//! The `request` fuzz target: one connection's bytes read as `connection::serve` reads
//! them — frames within `socket.request.max.bytes`, request headers and bodies, the SASL
//! gate and exchanges — then what handlers decode further inside a body. This is the first
//! code a hostile client's bytes reach.
//!
//! Files: none of its own; the records of a Produce go to the `record_batch` target's
//! partition.

use super::record_batch::append;
use super::{config, NOW_MS};
use crate::connection::io::{Activity, FrameReader};
use crate::connection::RequestMemory;
use crate::protocol;
use crate::security::sasl::credentials::{Change, ScramCredential, ScramCredentials};
use crate::security::sasl::scram::ScramHash;
use crate::security::sasl::{Authenticator, Gate, ListenerSasl, RawReply};
use crate::security::Session;
use kafka_protocol::messages::RequestKind;
use std::sync::{Arc, OnceLock};

/// Frames of at most this size are read, as `socket.request.max.bytes` bounds them.
const MAX_FRAME: usize = 1 << 20;

/// The mechanisms of a SASL listener with every mechanism Strata offers, a PLAIN user and
/// a SCRAM user (alice / alice-secret), and unsecured OAUTHBEARER tokens.
fn sasl_listener() -> Arc<ListenerSasl> {
    static L: OnceLock<Arc<ListenerSasl>> = OnceLock::new();
    L.get_or_init(|| {
        let c = config(&[
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"alice-secret\";",
        ]);
        let scram = ScramCredentials::in_memory();
        let changes: Vec<Change> = ["SCRAM-SHA-256", "SCRAM-SHA-512"]
            .iter()
            .filter_map(|m| {
                let hash = ScramHash::for_mechanism(m)?;
                let salted = hash.salted_password(b"alice-secret", b"salt", 4096);
                Some(Change::Upsert {
                    user: "alice".into(),
                    mechanism: m.to_string(),
                    credential: ScramCredential::from_salted_password(
                        hash, b"salt", &salted, 4096,
                    ),
                })
            })
            .collect();
        scram.apply(&changes).expect("in-memory credentials");
        Arc::new(
            ListenerSasl::from_config(&c.props, "SASL_PLAINTEXT", &scram)
                .expect("the fuzzing SASL listener is valid"),
        )
    })
    .clone()
}

/// One connection's bytes, read as `connection::serve` reads them: frames up to the size
/// limit; with SASL (first byte odd), raw tokens after a v0 handshake and the
/// authentication gate; then each decoded request's body as its handler decodes it.
pub fn request(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let mut sasl = (mode & 1 == 1).then(|| Authenticator::new(sasl_listener()));
    let mut session = Session::local("localhost", 9092);
    let mut rd = FrameReader::new(stream);
    // Each frame's memory is given back before the next is read, so taking it never waits.
    let memory = RequestMemory::new(Some(MAX_FRAME), MAX_FRAME);
    let activity = Activity::new();
    loop {
        let read = rd.read_frame(MAX_FRAME, &memory, &activity);
        let (frame, _memory) = match futures::executor::block_on(read) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => return,
        };
        if let Some(auth) = sasl.as_mut().filter(|a| a.expects_raw_token()) {
            match auth.on_raw_token(&frame, &mut session, NOW_MS) {
                RawReply::Token(_) => continue,
                RawReply::Close => return,
            }
        }
        let Ok(request) = protocol::decode_request(frame) else {
            continue;
        };
        if let Some(auth) = sasl.as_mut() {
            match auth.on_request(
                request.api_key,
                request.version,
                &request.body,
                &mut session,
                NOW_MS,
            ) {
                Gate::Pass => {}
                Gate::Reply(_) => continue,
                Gate::ReplyAndClose(_) | Gate::Close => return,
            }
        }
        inner_decoding(&request.body, mode);
    }
}

/// What handlers decode inside a request body beyond kafka-protocol's own decoding.
fn inner_decoding(body: &RequestKind, mode: u8) {
    match body {
        RequestKind::Produce(req) => {
            for topic in &req.topic_data {
                for p in &topic.partition_data {
                    if let Some(records) = &p.records {
                        let _ = append(records, mode >> 1);
                    }
                }
            }
        }
        RequestKind::JoinGroup(req) => {
            for p in &req.protocols {
                let _ = crate::broker::groups::classic::subscription_topics(&p.metadata);
            }
        }
        RequestKind::SyncGroup(req) => {
            for a in &req.assignments {
                let _ = crate::http::console::groups::classic_assignment(&a.assignment);
            }
        }
        RequestKind::ConsumerGroupHeartbeat(req) => {
            if let Some(re) = &req.subscribed_topic_regex {
                let _ = crate::broker::groups::consumer::compile(re);
            }
        }
        RequestKind::ListTransactions(req) => {
            if let Some(p) = &req.transactional_id_pattern {
                let _ = crate::handler::txn::compile_pattern(p);
            }
        }
        _ => {}
    }
}

/// Seed inputs: every advertised request at every version, and SASL exchanges of each
/// mechanism.
#[cfg(test)]
pub(super) mod seeds {
    use crate::fuzzing::seeds::{batches, save};
    use crate::protocol::versions::SUPPORTED;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn s(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_string())
    }

    fn frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Vec<u8> {
        try_frame(api_key, version, body).expect("encodes")
    }

    /// A length-prefixed request; `None` when the body sets fields `version` lacks.
    fn try_frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Option<Vec<u8>> {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(s("seed")))
            .encode(&mut buf, api_key.request_header_version(version))
            .ok()?;
        body.encode(&mut buf, version).ok()?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Some(buf.to_vec())
    }

    fn produce(version: i16, records: Vec<u8>) -> RequestKind {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(s(if version >= 13 { "" } else { "t" })))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(records)))])]),
        )
    }

    fn default_body(api_key: ApiKey) -> Option<RequestKind> {
        use RequestKind as R;
        Some(match api_key {
            ApiKey::ApiVersions => R::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name(s("seed"))
                    .with_client_software_version(s("1")),
            ),
            ApiKey::Metadata => R::Metadata(MetadataRequest::default().with_topics(Some(
                vec![metadata_request::MetadataRequestTopic::default(
                    )
                    .with_name(Some(TopicName(s("t"))))],
            ))),
            ApiKey::Fetch => R::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(500)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![fetch_request::FetchTopic::default()
                        .with_topic(TopicName(s("t")))
                        .with_partitions(vec![fetch_request::FetchPartition::default()
                            .with_partition_max_bytes(1 << 20)])]),
            ),
            ApiKey::ListOffsets => R::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_timestamp(-1),
                        ]),
                ])),
            ApiKey::CreateTopics => {
                R::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                    create_topics_request::CreatableTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_num_partitions(3)
                        .with_replication_factor(1)
                        .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("1000")))]),
                ]))
            }
            ApiKey::DeleteTopics => R::DeleteTopics(
                DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("t"))]),
            ),
            ApiKey::CreatePartitions => R::CreatePartitions(Default::default()),
            ApiKey::DescribeTopicPartitions => R::DescribeTopicPartitions(Default::default()),
            ApiKey::DescribeLogDirs => R::DescribeLogDirs(Default::default()),
            ApiKey::DeleteRecords => R::DeleteRecords(Default::default()),
            ApiKey::InitProducerId => R::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(s("tx"))))
                    .with_transaction_timeout_ms(60000),
            ),
            ApiKey::FindCoordinator => {
                R::FindCoordinator(FindCoordinatorRequest::default().with_key(s("g")))
            }
            ApiKey::JoinGroup => {
                let mut meta = BytesMut::new();
                meta.put_i16(1);
                meta.put_i32(2);
                for t in ["t", "u"] {
                    meta.put_i16(t.len() as i16);
                    meta.put_slice(t.as_bytes());
                }
                meta.put_i32(-1);
                R::JoinGroup(
                    JoinGroupRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_session_timeout_ms(10000)
                        .with_protocol_type(s("consumer"))
                        .with_protocols(vec![
                            join_group_request::JoinGroupRequestProtocol::default()
                                .with_name(s("range"))
                                .with_metadata(meta.freeze()),
                        ]),
                )
            }
            ApiKey::SyncGroup => {
                let mut a = BytesMut::new();
                a.put_i16(0);
                let body = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                    consumer_protocol_assignment::TopicPartition::default()
                        .with_topic(TopicName(s("t")))
                        .with_partitions(vec![0, 1]),
                ]);
                body.encode(&mut a, 0).expect("assignment");
                R::SyncGroup(
                    SyncGroupRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_member_id(s("m"))
                        .with_assignments(vec![
                            sync_group_request::SyncGroupRequestAssignment::default()
                                .with_member_id(s("m"))
                                .with_assignment(a.freeze()),
                        ]),
                )
            }
            ApiKey::Heartbeat => R::Heartbeat(Default::default()),
            ApiKey::LeaveGroup => R::LeaveGroup(Default::default()),
            ApiKey::OffsetCommit => R::OffsetCommit(Default::default()),
            ApiKey::OffsetFetch => R::OffsetFetch(Default::default()),
            ApiKey::ListGroups => R::ListGroups(Default::default()),
            ApiKey::DescribeGroups => R::DescribeGroups(
                DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
            ),
            ApiKey::DeleteGroups => R::DeleteGroups(
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            ),
            ApiKey::OffsetDelete => R::OffsetDelete(Default::default()),
            ApiKey::AddPartitionsToTxn => R::AddPartitionsToTxn(Default::default()),
            ApiKey::AddOffsetsToTxn => R::AddOffsetsToTxn(Default::default()),
            ApiKey::TxnOffsetCommit => R::TxnOffsetCommit(Default::default()),
            ApiKey::EndTxn => R::EndTxn(Default::default()),
            ApiKey::DescribeProducers => R::DescribeProducers(Default::default()),
            ApiKey::ListTransactions => R::ListTransactions(
                ListTransactionsRequest::default()
                    .with_transactional_id_pattern(Some(s("tx-[0-9]+"))),
            ),
            ApiKey::DescribeTransactions => R::DescribeTransactions(Default::default()),
            ApiKey::ConsumerGroupHeartbeat => R::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_member_id(s("m"))
                    .with_subscribed_topic_regex(Some(s("t.*|orders-[a-z]+"))),
            ),
            ApiKey::ConsumerGroupDescribe => R::ConsumerGroupDescribe(Default::default()),
            ApiKey::OffsetForLeaderEpoch => R::OffsetForLeaderEpoch(Default::default()),
            ApiKey::DescribeCluster => R::DescribeCluster(Default::default()),
            ApiKey::DescribeAcls => R::DescribeAcls(Default::default()),
            ApiKey::DescribeConfigs => R::DescribeConfigs(Default::default()),
            ApiKey::AlterConfigs => R::AlterConfigs(Default::default()),
            ApiKey::IncrementalAlterConfigs => R::IncrementalAlterConfigs(Default::default()),
            ApiKey::CreateAcls => R::CreateAcls(Default::default()),
            ApiKey::DeleteAcls => R::DeleteAcls(Default::default()),
            ApiKey::DescribeUserScramCredentials => {
                R::DescribeUserScramCredentials(Default::default())
            }
            ApiKey::AlterUserScramCredentials => R::AlterUserScramCredentials(Default::default()),
            ApiKey::SaslHandshake => {
                R::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s("PLAIN")))
            }
            ApiKey::SaslAuthenticate => R::SaslAuthenticate(
                SaslAuthenticateRequest::default()
                    .with_auth_bytes(Bytes::from_static(b"\0alice\0alice-secret")),
            ),
            ApiKey::ElectLeaders => R::ElectLeaders(Default::default()),
            ApiKey::ListPartitionReassignments => R::ListPartitionReassignments(Default::default()),
            ApiKey::AlterPartitionReassignments => {
                R::AlterPartitionReassignments(Default::default())
            }
            _ => return None,
        })
    }

    fn minimal(api_key: ApiKey) -> Option<RequestKind> {
        Some(match api_key {
            ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
            ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
            ApiKey::FindCoordinator => RequestKind::FindCoordinator(
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")]),
            ),
            ApiKey::Metadata => RequestKind::Metadata(Default::default()),
            ApiKey::ListTransactions => RequestKind::ListTransactions(Default::default()),
            ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
            _ => return None,
        })
    }

    fn sasl_exchange(mechanism: &str, tokens: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend(frame(
            ApiKey::ApiVersions,
            3,
            &default_body(ApiKey::ApiVersions).expect("body"),
        ));
        out.extend(frame(
            ApiKey::SaslHandshake,
            1,
            &RequestKind::SaslHandshake(
                SaslHandshakeRequest::default().with_mechanism(s(mechanism)),
            ),
        ));
        for t in tokens {
            out.extend(frame(
                ApiKey::SaslAuthenticate,
                2,
                &RequestKind::SaslAuthenticate(
                    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(t)),
                ),
            ));
        }
        out.extend(frame(
            ApiKey::Metadata,
            12,
            &default_body(ApiKey::Metadata).expect("body"),
        ));
        out
    }

    pub(in crate::fuzzing) fn request_seeds() {
        for &(api_key, min, max) in SUPPORTED {
            for version in min..=max {
                let body = if api_key == ApiKey::Produce {
                    produce(version, batches()[1].1.clone())
                } else {
                    match default_body(api_key) {
                        Some(b) => b,
                        None => continue,
                    }
                };
                // Fields a version lacks: then the same request with every field defaulted.
                let Some(bytes) = try_frame(api_key, version, &body)
                    .or_else(|| try_frame(api_key, version, &minimal(api_key)?))
                else {
                    continue;
                };
                let mut input = vec![0u8];
                input.extend(bytes);
                save("request", &format!("{api_key:?}-v{version}"), &input);
            }
        }
        for (name, batch) in batches() {
            let mut input = vec![0u8];
            input.extend(frame(ApiKey::Produce, 9, &produce(9, batch)));
            save("request", &format!("Produce-{name}"), &input);
        }
        save(
            "request",
            "sasl-plain",
            &sasl_exchange("PLAIN", &[b"\0alice\0alice-secret"]),
        );
        save("request", "sasl-scram-256", &sasl_exchange("SCRAM-SHA-256", &[b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL", b"c=biws,r=fyko+d2lbbFgONRv9qkxdawLserver,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="]));
        save(
            "request",
            "sasl-scram-512",
            &sasl_exchange("SCRAM-SHA-512", &[b"n,,n=alice,r=rOprNGfwEbeRWgbNEkqO"]),
        );
        // An unsecured JWT (alg none) with sub and exp.
        let jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OSwiaWF0IjoxNzAwMDAwMDAwfQ.";
        let token = format!("n,,\x01auth=Bearer {jwt}\x01\x01");
        save(
            "request",
            "sasl-oauthbearer",
            &sasl_exchange("OAUTHBEARER", &[token.as_bytes()]),
        );
        // SaslHandshake v0: the tokens that follow are unframed by Kafka's header.
        let mut v0 = vec![1u8];
        v0.extend(frame(
            ApiKey::SaslHandshake,
            0,
            &RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s("PLAIN"))),
        ));
        let raw = b"\0alice\0alice-secret";
        v0.extend((raw.len() as u32).to_be_bytes());
        v0.extend(raw);
        v0.extend(frame(
            ApiKey::Metadata,
            1,
            &default_body(ApiKey::Metadata).expect("body"),
        ));
        save("request", "sasl-plain-v0", &v0);
    }
}
