//! Issue 32, item 7: Kafka sends a null error_message where there is nothing to say (on
//! success, and for errors without detail); an empty string is a different value, and
//! clients print it ("... : " with nothing after). One test walks every API the node
//! advertises, at its highest version: each gets a request that succeeds where that is
//! possible (on a topic with records, a group with commits, a SCRAM user, a quota) and
//! a default one otherwise, and no answer may carry a nullable message field set to "".

use std::collections::BTreeMap;

use fjord_tests::wire::Wire;
use fjord_tests::{create_topic, run_cli, Node};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Every nullable string field set to "" in a decoded answer, by its Debug form (the
/// kafka-protocol crate prints `Some("")` for them); non-nullable fields print `""`.
fn empty_messages(debug: &str) -> Vec<String> {
    let needle = ": Some(\"\")";
    let mut found = Vec::new();
    let mut rest = debug;
    while let Some(at) = rest.find(needle) {
        let field = rest[..at]
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("?");
        found.push(field.to_string());
        rest = &rest[at + needle.len()..];
    }
    found
}

struct Walk {
    wire: Wire,
    versions: BTreeMap<i16, i16>,
    checked: Vec<i16>,
    offenders: Vec<String>,
}

impl Walk {
    fn call<R: Request + std::fmt::Debug>(&mut self, req: R) -> Option<R::Response>
    where
        R::Response: std::fmt::Debug,
    {
        self.call_part(req, |r| format!("{r:?}"))
    }

    /// As [`Self::call`], checking only the part of the answer `part` prints: fields a
    /// version does not carry decode to the crate's default, which may be `Some("")`.
    fn call_part<R: Request + std::fmt::Debug>(
        &mut self,
        req: R,
        part: impl Fn(&R::Response) -> String,
    ) -> Option<R::Response> {
        let key = R::KEY;
        let version = *self.versions.get(&key)?;
        let resp = self.wire.call(version, &req);
        let debug = part(&resp);
        let empty = empty_messages(&debug);
        if !empty.is_empty() {
            self.offenders.push(format!(
                "{:?} v{version}: {} set to \"\" in {debug}",
                ApiKey::try_from(key).map_or_else(|_| key.to_string(), |k| format!("{k:?}")),
                empty.join(", ")
            ));
        }
        self.checked.push(key);
        Some(resp)
    }
}

#[test]
fn no_answer_carries_an_empty_string_for_a_null_message() {
    let node = Node::start();
    let boot = node.bootstrap();
    create_topic(&boot, "nm", 1, &[]);
    let produced = run_cli(&node, &["produce", "--topic", "nm"], Some("a\nb\nc\n"));
    assert!(produced.status.success(), "{produced:?}");
    let mut wire = Wire::connect(&boot);
    let advertised = wire.call(3, &ApiVersionsRequest::default());
    let versions: BTreeMap<i16, i16> = advertised
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.max_version))
        .collect();
    let mut w = Walk {
        wire,
        versions,
        checked: Vec::new(),
        offenders: Vec::new(),
    };
    let topic = || TopicName(s("nm"));

    w.call(ApiVersionsRequest::default());
    w.call(MetadataRequest::default().with_topics(None));
    w.call(DescribeClusterRequest::default());
    w.call(CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("nm-new")))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]));
    w.call(
        CreatePartitionsRequest::default()
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(TopicName(s("nm-new")))
                    .with_count(2),
            ])
            .with_timeout_ms(10_000),
    );
    w.call(DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("nm")),
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("1")),
        ]));
    w.call(
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("nm"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s("3600000"))),
                ]),
        ]),
    );
    w.call(AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("nm"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("7200000")))]),
        ]));
    w.call(ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic())
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                    .with_timestamp(-1)]),
        ]));
    w.call(
        DeleteRecordsRequest::default()
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic())
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default().with_offset(1),
                ])])
            .with_timeout_ms(10_000),
    );
    w.call(
        ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
            )
            .with_topic(topic())
            .with_partitions(vec![0])]))
            .with_timeout_ms(10_000),
    );
    w.call(ListPartitionReassignmentsRequest::default().with_topics(None));
    w.call(
        AlterPartitionReassignmentsRequest::default()
            .with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(topic())
                    .with_partitions(vec![
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_replicas(Some(vec![BrokerId(1)])),
                    ]),
            ])
            .with_timeout_ms(10_000),
    );
    w.call(DescribeLogDirsRequest::default().with_topics(None));
    w.call(DescribeTopicPartitionsRequest::default().with_topics(vec![
        describe_topic_partitions_request::TopicRequest::default().with_name(topic()),
    ]));
    w.call(DescribeQuorumRequest::default().with_topics(vec![
        describe_quorum_request::TopicData::default()
            .with_topic_name(TopicName(s("__cluster_metadata")))
            .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
    ]));
    w.call(ListConfigResourcesRequest::default());
    w.call(DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(topic())
                .with_partition_indexes(vec![0]),
        ]));
    w.call(ListTransactionsRequest::default());
    w.call(
        DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s("nm-unknown"))]),
    );
    w.call(
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );

    // Quotas and SCRAM users.
    w.call(AlterClientQuotasRequest::default().with_entries(vec![
            alter_client_quotas_request::EntryData::default()
                .with_entity(vec![alter_client_quotas_request::EntityData::default()
                    .with_entity_type(s("user"))
                    .with_entity_name(Some(s("nm-user")))])
                .with_ops(vec![alter_client_quotas_request::OpData::default()
                    .with_key(s("producer_byte_rate"))
                    .with_value(1_048_576.0)]),
        ]));
    w.call(DescribeClientQuotasRequest::default());
    w.call(
        AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                .with_name(s("nm-user"))
                .with_mechanism(1)
                .with_iterations(4096)
                .with_salt(bytes::Bytes::from_static(b"0123456789abcdef"))
                .with_salted_password(bytes::Bytes::from(vec![7u8; 32])),
        ]),
    );
    w.call(DescribeUserScramCredentialsRequest::default().with_users(None));
    w.call(
        DescribeAclsRequest::default()
            .with_resource_type_filter(1)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1),
    );

    // A group with commits, then its offsets and the group deleted.
    w.call(
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("nm-group")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic())
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_committed_offset(2)
                            .with_committed_leader_epoch(-1),
                    ]),
            ]),
    );
    w.call(OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("nm-group")))
                .with_topics(None),
        ]));
    w.call(ListGroupsRequest::default());
    w.call(DescribeGroupsRequest::default().with_groups(vec![GroupId(s("nm-group"))]));
    w.call(ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("nm-group"))]));
    w.call(
        OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("nm-group")))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(topic())
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default(),
                    ]),
            ]),
    );
    w.call(DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("nm-group"))]));
    // v4+ answers in `coordinators`; the top-level message is not on the wire.
    w.call_part(
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s("nm-other-group")]),
        |r| format!("{:?}", r.coordinators),
    );
    // A KIP-848 member joins.
    w.call(
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("nm-848")))
            .with_member_id(s("nm-member-1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("nm"))]))
            .with_topic_partitions(Some(vec![])),
    );
    w.call(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(fjord_tests::record_batch(
                            2,
                            8,
                            1_700_000_000_000,
                            None,
                        ))),
                ])]),
    );
    // KIP-932: a share group member joins, fetches and acknowledges.
    let nm_id = w
        .call(MetadataRequest::default().with_topics(None))
        .and_then(|m| {
            m.topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "nm"))
                .map(|t| t.topic_id)
        })
        .unwrap_or_default();
    let share_group = || GroupId(s("nm-share"));
    w.call(
        ShareGroupHeartbeatRequest::default()
            .with_group_id(share_group())
            .with_member_id(s("nm-share-member"))
            .with_member_epoch(0)
            .with_subscribed_topic_names(Some(vec![topic()])),
    );
    w.call(ShareGroupDescribeRequest::default().with_group_ids(vec![share_group()]));
    w.call(
        ShareFetchRequest::default()
            .with_group_id(Some(share_group()))
            .with_member_id(Some(s("nm-share-member")))
            .with_share_session_epoch(0)
            .with_max_bytes(1 << 20)
            .with_max_records(10)
            .with_topics(vec![share_fetch_request::FetchTopic::default()
                .with_topic_id(nm_id)
                .with_partitions(vec![
                    share_fetch_request::FetchPartition::default().with_partition_index(0),
                ])]),
    );
    w.call(
        ShareAcknowledgeRequest::default()
            .with_group_id(Some(share_group()))
            .with_member_id(Some(s("nm-share-member")))
            .with_share_session_epoch(1)
            .with_topics(vec![share_acknowledge_request::AcknowledgeTopic::default()
                .with_topic_id(nm_id)
                .with_partitions(vec![
                    share_acknowledge_request::AcknowledgePartition::default()
                        .with_partition_index(0)
                        .with_acknowledgement_batches(vec![
                            share_acknowledge_request::AcknowledgementBatch::default()
                                .with_first_offset(0)
                                .with_last_offset(0)
                                .with_acknowledge_types(vec![1]),
                        ]),
                ])]),
    );
    w.call(
        DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(share_group())
                .with_topics(None),
        ]),
    );
    // The member is still in: refused with NON_EMPTY_GROUP, and no message to say.
    w.call(
        AlterShareGroupOffsetsRequest::default()
            .with_group_id(share_group())
            .with_topics(vec![
                alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(topic())
                    .with_partitions(vec![
                        alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default()
                            .with_partition_index(0)
                            .with_start_offset(0),
                    ]),
            ]),
    );
    w.call(
        DeleteShareGroupOffsetsRequest::default()
            .with_group_id(share_group())
            .with_topics(vec![
                delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(topic()),
            ]),
    );
    // Without an authorizer ACL changes are refused, with a message that says so.
    w.call(CreateAclsRequest::default().with_creations(vec![
            create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(s("nm"))
                .with_resource_pattern_type(3)
                .with_principal(s("User:alice"))
                .with_host(s("*"))
                .with_operation(3)
                .with_permission_type(3),
        ]));
    w.call(DeleteAclsRequest::default().with_filters(vec![
            delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        ]));
    w.call(
        DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(s("nm-new"))])
            .with_timeout_ms(10_000),
    );

    let unchecked: Vec<String> = w
        .versions
        .keys()
        .filter(|k| !w.checked.contains(k))
        .map(|k| ApiKey::try_from(*k).map_or_else(|_| k.to_string(), |a| format!("{a:?}")))
        .collect();
    println!(
        "checked {} APIs; not walked here: {unchecked:?}",
        w.checked.len()
    );
    assert!(
        w.offenders.is_empty(),
        "answers with \"\" for a null message:\n{}",
        w.offenders.join("\n")
    );
}
