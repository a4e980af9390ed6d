//! The API versions this broker serves, advertised in ApiVersions.
//!
//! Each range is what current librdkafka, Java 3.x/4.x and kafka-python clients ask for,
//! bounded by what the codec supports. A request outside its range is refused (see
//! `frame`).

use kafka_protocol::messages::ApiKey;

/// `(api, min, max)` for every API this broker serves.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    // Capped below the KIP-890 part 2 versions (epoch bump per transaction), which
    // clients use only when the broker finalizes transaction.version 2.
    (ApiKey::AddPartitionsToTxn, 0, 4),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    // From admins only (kafka-transactions.sh abort); v0 is gone from Kafka 4 and v2
    // belongs to KIP-890 part 2, which is not served.
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::UpdateFeatures, 0, 2),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    // After v0 of SaslHandshake the SASL tokens travel bare, outside Kafka's framing;
    // current clients send v1 and then SaslAuthenticate (librdkafka wants v0 listed).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ListConfigResources, 0, 1),
    // KIP-848 (group.protocol=consumer).
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    // KIP-932 share groups (share.version 1).
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::DescribeShareGroupOffsets, 0, 0),
    (ApiKey::AlterShareGroupOffsets, 0, 0),
    (ApiKey::DeleteShareGroupOffsets, 0, 0),
];

pub fn range(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|(_, lo, hi)| (*lo, *hi))
}

pub fn is_supported(api: ApiKey, version: i16) -> bool {
    range(api).is_some_and(|(lo, hi)| (lo..=hi).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    /// Every advertised range must be one the codec can decode and encode.
    #[test]
    fn advertised_ranges_fit_the_codec() {
        fn check<Req: Message, Resp: Message>(api: ApiKey) {
            let (lo, hi) = range(api).expect("advertised");
            assert!(
                lo >= Req::VERSIONS.min && hi <= Req::VERSIONS.max,
                "{api:?} request"
            );
            assert!(
                lo >= Resp::VERSIONS.min && hi <= Resp::VERSIONS.max,
                "{api:?} response"
            );
        }
        check::<ProduceRequest, ProduceResponse>(ApiKey::Produce);
        check::<FetchRequest, FetchResponse>(ApiKey::Fetch);
        check::<ListOffsetsRequest, ListOffsetsResponse>(ApiKey::ListOffsets);
        check::<MetadataRequest, MetadataResponse>(ApiKey::Metadata);
        check::<ApiVersionsRequest, ApiVersionsResponse>(ApiKey::ApiVersions);
        check::<CreateTopicsRequest, CreateTopicsResponse>(ApiKey::CreateTopics);
        check::<DeleteTopicsRequest, DeleteTopicsResponse>(ApiKey::DeleteTopics);
        check::<DeleteRecordsRequest, DeleteRecordsResponse>(ApiKey::DeleteRecords);
        check::<InitProducerIdRequest, InitProducerIdResponse>(ApiKey::InitProducerId);
        check::<OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse>(
            ApiKey::OffsetForLeaderEpoch,
        );
        check::<DescribeConfigsRequest, DescribeConfigsResponse>(ApiKey::DescribeConfigs);
        check::<AlterConfigsRequest, AlterConfigsResponse>(ApiKey::AlterConfigs);
        check::<CreatePartitionsRequest, CreatePartitionsResponse>(ApiKey::CreatePartitions);
        check::<IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse>(
            ApiKey::IncrementalAlterConfigs,
        );
        check::<DescribeClusterRequest, DescribeClusterResponse>(ApiKey::DescribeCluster);
        check::<ElectLeadersRequest, ElectLeadersResponse>(ApiKey::ElectLeaders);
        check::<AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse>(
            ApiKey::AlterPartitionReassignments,
        );
        check::<ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse>(
            ApiKey::ListPartitionReassignments,
        );
        check::<FindCoordinatorRequest, FindCoordinatorResponse>(ApiKey::FindCoordinator);
        check::<JoinGroupRequest, JoinGroupResponse>(ApiKey::JoinGroup);
        check::<SyncGroupRequest, SyncGroupResponse>(ApiKey::SyncGroup);
        check::<HeartbeatRequest, HeartbeatResponse>(ApiKey::Heartbeat);
        check::<LeaveGroupRequest, LeaveGroupResponse>(ApiKey::LeaveGroup);
        check::<OffsetCommitRequest, OffsetCommitResponse>(ApiKey::OffsetCommit);
        check::<OffsetFetchRequest, OffsetFetchResponse>(ApiKey::OffsetFetch);
        check::<AddPartitionsToTxnRequest, AddPartitionsToTxnResponse>(ApiKey::AddPartitionsToTxn);
        check::<AddOffsetsToTxnRequest, AddOffsetsToTxnResponse>(ApiKey::AddOffsetsToTxn);
        check::<EndTxnRequest, EndTxnResponse>(ApiKey::EndTxn);
        check::<TxnOffsetCommitRequest, TxnOffsetCommitResponse>(ApiKey::TxnOffsetCommit);
        check::<DescribeProducersRequest, DescribeProducersResponse>(ApiKey::DescribeProducers);
        check::<WriteTxnMarkersRequest, WriteTxnMarkersResponse>(ApiKey::WriteTxnMarkers);
        check::<UpdateFeaturesRequest, UpdateFeaturesResponse>(ApiKey::UpdateFeatures);
        check::<DescribeTransactionsRequest, DescribeTransactionsResponse>(
            ApiKey::DescribeTransactions,
        );
        check::<ListTransactionsRequest, ListTransactionsResponse>(ApiKey::ListTransactions);
        check::<DescribeClientQuotasRequest, DescribeClientQuotasResponse>(
            ApiKey::DescribeClientQuotas,
        );
        check::<AlterClientQuotasRequest, AlterClientQuotasResponse>(ApiKey::AlterClientQuotas);
        check::<SaslHandshakeRequest, SaslHandshakeResponse>(ApiKey::SaslHandshake);
        check::<SaslAuthenticateRequest, SaslAuthenticateResponse>(ApiKey::SaslAuthenticate);
        check::<CreateAclsRequest, CreateAclsResponse>(ApiKey::CreateAcls);
        check::<DescribeAclsRequest, DescribeAclsResponse>(ApiKey::DescribeAcls);
        check::<DeleteAclsRequest, DeleteAclsResponse>(ApiKey::DeleteAcls);
        check::<DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse>(
            ApiKey::DescribeUserScramCredentials,
        );
        check::<AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse>(
            ApiKey::AlterUserScramCredentials,
        );
        check::<OffsetDeleteRequest, OffsetDeleteResponse>(ApiKey::OffsetDelete);
        check::<DescribeGroupsRequest, DescribeGroupsResponse>(ApiKey::DescribeGroups);
        check::<ListGroupsRequest, ListGroupsResponse>(ApiKey::ListGroups);
        check::<DeleteGroupsRequest, DeleteGroupsResponse>(ApiKey::DeleteGroups);
        check::<DescribeLogDirsRequest, DescribeLogDirsResponse>(ApiKey::DescribeLogDirs);
        check::<AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse>(
            ApiKey::AlterReplicaLogDirs,
        );
        check::<DescribeQuorumRequest, DescribeQuorumResponse>(ApiKey::DescribeQuorum);
        check::<DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse>(
            ApiKey::DescribeTopicPartitions,
        );
        check::<ListConfigResourcesRequest, ListConfigResourcesResponse>(
            ApiKey::ListConfigResources,
        );
        check::<ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse>(
            ApiKey::ShareGroupHeartbeat,
        );
        check::<ShareGroupDescribeRequest, ShareGroupDescribeResponse>(ApiKey::ShareGroupDescribe);
        check::<DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse>(
            ApiKey::DescribeShareGroupOffsets,
        );
        check::<AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse>(
            ApiKey::AlterShareGroupOffsets,
        );
        check::<DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse>(
            ApiKey::DeleteShareGroupOffsets,
        );
    }
}
