//! Every error code a response carries, for `/metrics`: the request's own code and each
//! topic's, partition's, group's or resource's where Kafka answers per item. One arm per
//! API Strata serves (the test below builds an erring response for each of them).
//!
//! No files, no state.

use kafka_protocol::messages::ResponseKind;

/// Calls `seen` with each error code in `body`, zeros included (the caller skips them).
pub fn each(body: &ResponseKind, seen: &mut dyn FnMut(i16)) {
    match body {
        // Data.
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| seen(p.error_code)),
        ResponseKind::Fetch(r) => {
            seen(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| seen(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| seen(p.error_code)),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| seen(p.error_code)),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| seen(p.error_code)),
        // Metadata and topics.
        ResponseKind::Metadata(r) => {
            seen(r.error_code);
            for t in &r.topics {
                seen(t.error_code);
                t.partitions.iter().for_each(|p| seen(p.error_code));
            }
        }
        ResponseKind::DescribeTopicPartitions(r) => {
            for t in &r.topics {
                seen(t.error_code);
                t.partitions.iter().for_each(|p| seen(p.error_code));
            }
        }
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| {
            seen(t.error_code);
            seen(t.topic_config_error_code);
        }),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| seen(t.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| seen(t.error_code)),
        ResponseKind::DescribeLogDirs(r) => {
            seen(r.error_code);
            r.results.iter().for_each(|d| seen(d.error_code));
        }
        ResponseKind::DescribeCluster(r) => seen(r.error_code),
        ResponseKind::ApiVersions(r) => seen(r.error_code),
        // Groups.
        ResponseKind::FindCoordinator(r) => {
            seen(r.error_code);
            r.coordinators.iter().for_each(|c| seen(c.error_code));
        }
        ResponseKind::JoinGroup(r) => seen(r.error_code),
        ResponseKind::SyncGroup(r) => seen(r.error_code),
        ResponseKind::Heartbeat(r) => seen(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            seen(r.error_code);
            r.members.iter().for_each(|m| seen(m.error_code));
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| seen(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            seen(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| seen(p.error_code));
            for g in &r.groups {
                seen(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| seen(p.error_code));
            }
        }
        ResponseKind::ListGroups(r) => seen(r.error_code),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| seen(g.error_code)),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| seen(g.error_code)),
        ResponseKind::OffsetDelete(r) => {
            seen(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| seen(p.error_code));
        }
        ResponseKind::ConsumerGroupHeartbeat(r) => seen(r.error_code),
        ResponseKind::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| seen(g.error_code)),
        // Transactions and producers.
        ResponseKind::InitProducerId(r) => seen(r.error_code),
        ResponseKind::AddPartitionsToTxn(r) => {
            seen(r.error_code);
            r.results_by_transaction
                .iter()
                .flat_map(|t| &t.topic_results)
                .flat_map(|t| &t.results_by_partition)
                .for_each(|p| seen(p.partition_error_code));
        }
        ResponseKind::AddOffsetsToTxn(r) => seen(r.error_code),
        ResponseKind::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| seen(p.error_code)),
        ResponseKind::EndTxn(r) => seen(r.error_code),
        ResponseKind::DescribeProducers(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| seen(p.error_code)),
        ResponseKind::ListTransactions(r) => seen(r.error_code),
        ResponseKind::DescribeTransactions(r) => {
            r.transaction_states.iter().for_each(|t| seen(t.error_code))
        }
        // Configs.
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|c| seen(c.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|c| seen(c.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|c| seen(c.error_code))
        }
        // Security.
        ResponseKind::DescribeAcls(r) => seen(r.error_code),
        ResponseKind::CreateAcls(r) => r.results.iter().for_each(|a| seen(a.error_code)),
        ResponseKind::DeleteAcls(r) => {
            for f in &r.filter_results {
                seen(f.error_code);
                f.matching_acls.iter().for_each(|a| seen(a.error_code));
            }
        }
        ResponseKind::DescribeUserScramCredentials(r) => {
            seen(r.error_code);
            r.results.iter().for_each(|u| seen(u.error_code));
        }
        ResponseKind::AlterUserScramCredentials(r) => {
            r.results.iter().for_each(|u| seen(u.error_code))
        }
        ResponseKind::SaslHandshake(r) => seen(r.error_code),
        ResponseKind::SaslAuthenticate(r) => seen(r.error_code),
        // Cluster-only admin, answered as a one-broker Kafka.
        ResponseKind::ElectLeaders(r) => {
            seen(r.error_code);
            r.replica_election_results
                .iter()
                .flat_map(|t| &t.partition_result)
                .for_each(|p| seen(p.error_code));
        }
        ResponseKind::ListPartitionReassignments(r) => seen(r.error_code),
        ResponseKind::AlterPartitionReassignments(r) => {
            seen(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| seen(p.error_code));
        }
        // APIs Strata does not serve (the versions table refuses them before a handler).
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kafka_protocol::messages::*;

    /// A response of `key` whose innermost error code (one per level) is set to `code`;
    /// `None` for an API Strata does not serve.
    pub(crate) fn erring(key: ApiKey, code: i16) -> Option<ResponseKind> {
        use ResponseKind as R;
        Some(match key {
            ApiKey::Produce => R::Produce(ProduceResponse::default().with_responses(vec![
                produce_response::TopicProduceResponse::default().with_partition_responses(
                    vec![produce_response::PartitionProduceResponse::default()
                        .with_error_code(code)],
                ),
            ])),
            ApiKey::Fetch => R::Fetch(FetchResponse::default().with_responses(vec![
                fetch_response::FetchableTopicResponse::default().with_partitions(vec![
                    fetch_response::PartitionData::default().with_error_code(code),
                ]),
            ])),
            ApiKey::ListOffsets => R::ListOffsets(ListOffsetsResponse::default().with_topics(
                vec![list_offsets_response::ListOffsetsTopicResponse::default()
                    .with_partitions(vec![
                        list_offsets_response::ListOffsetsPartitionResponse::default()
                            .with_error_code(code),
                    ])],
            )),
            ApiKey::DeleteRecords => {
                R::DeleteRecords(DeleteRecordsResponse::default().with_topics(vec![
                    delete_records_response::DeleteRecordsTopicResult::default().with_partitions(
                        vec![delete_records_response::DeleteRecordsPartitionResult::default()
                            .with_error_code(code)],
                    ),
                ]))
            }
            ApiKey::OffsetForLeaderEpoch => R::OffsetForLeaderEpoch(
                OffsetForLeaderEpochResponse::default().with_topics(vec![
                    offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                        .with_partitions(vec![
                            offset_for_leader_epoch_response::EpochEndOffset::default()
                                .with_error_code(code),
                        ]),
                ]),
            ),
            ApiKey::Metadata => R::Metadata(MetadataResponse::default().with_topics(vec![
                metadata_response::MetadataResponseTopic::default().with_error_code(code),
            ])),
            ApiKey::DescribeTopicPartitions => R::DescribeTopicPartitions(
                DescribeTopicPartitionsResponse::default().with_topics(vec![
                    describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(code),
                ]),
            ),
            ApiKey::CreateTopics => R::CreateTopics(CreateTopicsResponse::default().with_topics(
                vec![create_topics_response::CreatableTopicResult::default().with_error_code(code)],
            )),
            ApiKey::DeleteTopics => {
                R::DeleteTopics(DeleteTopicsResponse::default().with_responses(vec![
                    delete_topics_response::DeletableTopicResult::default().with_error_code(code),
                ]))
            }
            ApiKey::CreatePartitions => {
                R::CreatePartitions(CreatePartitionsResponse::default().with_results(vec![
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_error_code(code),
                ]))
            }
            ApiKey::DescribeLogDirs => {
                R::DescribeLogDirs(DescribeLogDirsResponse::default().with_error_code(code))
            }
            ApiKey::DescribeCluster => {
                R::DescribeCluster(DescribeClusterResponse::default().with_error_code(code))
            }
            ApiKey::ApiVersions => {
                R::ApiVersions(ApiVersionsResponse::default().with_error_code(code))
            }
            ApiKey::FindCoordinator => {
                R::FindCoordinator(FindCoordinatorResponse::default().with_coordinators(vec![
                    find_coordinator_response::Coordinator::default().with_error_code(code),
                ]))
            }
            ApiKey::JoinGroup => R::JoinGroup(JoinGroupResponse::default().with_error_code(code)),
            ApiKey::SyncGroup => R::SyncGroup(SyncGroupResponse::default().with_error_code(code)),
            ApiKey::Heartbeat => R::Heartbeat(HeartbeatResponse::default().with_error_code(code)),
            ApiKey::LeaveGroup => R::LeaveGroup(LeaveGroupResponse::default().with_members(vec![
                leave_group_response::MemberResponse::default().with_error_code(code),
            ])),
            ApiKey::OffsetCommit => {
                R::OffsetCommit(OffsetCommitResponse::default().with_topics(vec![
                    offset_commit_response::OffsetCommitResponseTopic::default().with_partitions(
                        vec![offset_commit_response::OffsetCommitResponsePartition::default()
                            .with_error_code(code)],
                    ),
                ]))
            }
            ApiKey::OffsetFetch => R::OffsetFetch(OffsetFetchResponse::default().with_groups(
                vec![offset_fetch_response::OffsetFetchResponseGroup::default().with_topics(
                    vec![offset_fetch_response::OffsetFetchResponseTopics::default()
                        .with_partitions(vec![
                            offset_fetch_response::OffsetFetchResponsePartitions::default()
                                .with_error_code(code),
                        ])],
                )],
            )),
            ApiKey::ListGroups => {
                R::ListGroups(ListGroupsResponse::default().with_error_code(code))
            }
            ApiKey::DescribeGroups => {
                R::DescribeGroups(DescribeGroupsResponse::default().with_groups(vec![
                    describe_groups_response::DescribedGroup::default().with_error_code(code),
                ]))
            }
            ApiKey::DeleteGroups => {
                R::DeleteGroups(DeleteGroupsResponse::default().with_results(vec![
                    delete_groups_response::DeletableGroupResult::default().with_error_code(code),
                ]))
            }
            ApiKey::OffsetDelete => {
                R::OffsetDelete(OffsetDeleteResponse::default().with_topics(vec![
                    offset_delete_response::OffsetDeleteResponseTopic::default().with_partitions(
                        vec![offset_delete_response::OffsetDeleteResponsePartition::default()
                            .with_error_code(code)],
                    ),
                ]))
            }
            ApiKey::ConsumerGroupHeartbeat => R::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default().with_error_code(code),
            ),
            ApiKey::ConsumerGroupDescribe => R::ConsumerGroupDescribe(
                ConsumerGroupDescribeResponse::default().with_groups(vec![
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_error_code(code),
                ]),
            ),
            ApiKey::InitProducerId => {
                R::InitProducerId(InitProducerIdResponse::default().with_error_code(code))
            }
            ApiKey::AddPartitionsToTxn => R::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_transaction(vec![
                    add_partitions_to_txn_response::AddPartitionsToTxnResult::default()
                        .with_topic_results(vec![
                            add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                                .with_results_by_partition(vec![
                                    add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_error_code(code),
                                ]),
                        ]),
                ]),
            ),
            ApiKey::AddOffsetsToTxn => {
                R::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
            }
            ApiKey::TxnOffsetCommit => {
                R::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(vec![
                    txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                        .with_partitions(vec![
                            txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                .with_error_code(code),
                        ]),
                ]))
            }
            ApiKey::EndTxn => R::EndTxn(EndTxnResponse::default().with_error_code(code)),
            ApiKey::DescribeProducers => {
                R::DescribeProducers(DescribeProducersResponse::default().with_topics(vec![
                    describe_producers_response::TopicResponse::default().with_partitions(vec![
                        describe_producers_response::PartitionResponse::default()
                            .with_error_code(code),
                    ]),
                ]))
            }
            ApiKey::ListTransactions => {
                R::ListTransactions(ListTransactionsResponse::default().with_error_code(code))
            }
            ApiKey::DescribeTransactions => R::DescribeTransactions(
                DescribeTransactionsResponse::default().with_transaction_states(vec![
                    describe_transactions_response::TransactionState::default()
                        .with_error_code(code),
                ]),
            ),
            ApiKey::DescribeConfigs => {
                R::DescribeConfigs(DescribeConfigsResponse::default().with_results(vec![
                    describe_configs_response::DescribeConfigsResult::default()
                        .with_error_code(code),
                ]))
            }
            ApiKey::AlterConfigs => {
                R::AlterConfigs(AlterConfigsResponse::default().with_responses(vec![
                    alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_error_code(code),
                ]))
            }
            ApiKey::IncrementalAlterConfigs => R::IncrementalAlterConfigs(
                IncrementalAlterConfigsResponse::default().with_responses(vec![
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_error_code(code),
                ]),
            ),
            ApiKey::DescribeAcls => {
                R::DescribeAcls(DescribeAclsResponse::default().with_error_code(code))
            }
            ApiKey::CreateAcls => R::CreateAcls(CreateAclsResponse::default().with_results(vec![
                create_acls_response::AclCreationResult::default().with_error_code(code),
            ])),
            ApiKey::DeleteAcls => {
                R::DeleteAcls(DeleteAclsResponse::default().with_filter_results(vec![
                    delete_acls_response::DeleteAclsFilterResult::default().with_matching_acls(
                        vec![delete_acls_response::DeleteAclsMatchingAcl::default()
                            .with_error_code(code)],
                    ),
                ]))
            }
            ApiKey::DescribeUserScramCredentials => R::DescribeUserScramCredentials(
                DescribeUserScramCredentialsResponse::default().with_results(vec![
                    describe_user_scram_credentials_response::DescribeUserScramCredentialsResult::default()
                        .with_error_code(code),
                ]),
            ),
            ApiKey::AlterUserScramCredentials => R::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(vec![
                    alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                        .with_error_code(code),
                ]),
            ),
            ApiKey::SaslHandshake => {
                R::SaslHandshake(SaslHandshakeResponse::default().with_error_code(code))
            }
            ApiKey::SaslAuthenticate => {
                R::SaslAuthenticate(SaslAuthenticateResponse::default().with_error_code(code))
            }
            ApiKey::ElectLeaders => {
                R::ElectLeaders(ElectLeadersResponse::default().with_replica_election_results(
                    vec![elect_leaders_response::ReplicaElectionResult::default()
                        .with_partition_result(vec![
                            elect_leaders_response::PartitionResult::default()
                                .with_error_code(code),
                        ])],
                ))
            }
            ApiKey::ListPartitionReassignments => R::ListPartitionReassignments(
                ListPartitionReassignmentsResponse::default().with_error_code(code),
            ),
            ApiKey::AlterPartitionReassignments => R::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default().with_responses(vec![
                    alter_partition_reassignments_response::ReassignableTopicResponse::default()
                        .with_partitions(vec![
                            alter_partition_reassignments_response::ReassignablePartitionResponse::default()
                                .with_error_code(code),
                        ]),
                ]),
            ),
            _ => return None,
        })
    }

    #[test]
    fn every_served_api_reports_the_error_codes_of_its_response() {
        for (key, _, _) in crate::protocol::versions::SUPPORTED {
            let body = erring(*key, 3).unwrap_or_else(|| panic!("no erring response for {key:?}"));
            let mut codes = Vec::new();
            each(&body, &mut |c| {
                if c != 0 {
                    codes.push(c)
                }
            });
            assert_eq!(codes, vec![3], "{key:?}");
        }
    }
}
