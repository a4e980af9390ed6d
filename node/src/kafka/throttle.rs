//! `throttle_time_ms` of any response: the quotas set it (KIP-13, KIP-124) and the
//! connection reads it back to hold the client (KIP-219). Older versions of some APIs
//! have no such field; they are throttled by the held connection alone.

use kafka_protocol::messages::ResponseKind;

/// Applies `$body` to the `throttle_time_ms` of every response type that has one, with
/// the first version that carries it.
macro_rules! with_throttle {
    ($response:expr, |$field:ident, $first:ident| $body:expr, $none:expr) => {
        match $response {
            ResponseKind::Produce(r) => {
                let $first = 1;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::Fetch(r) => {
                let $first = 1;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::ListOffsets(r) => {
                let $first = 2;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::Metadata(r) => {
                let $first = 3;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::OffsetCommit(r) => {
                let $first = 3;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::OffsetFetch(r) => {
                let $first = 3;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::FindCoordinator(r) => {
                let $first = 1;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::JoinGroup(r) => {
                let $first = 2;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::Heartbeat(r) => {
                let $first = 1;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::LeaveGroup(r) => {
                let $first = 1;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::SyncGroup(r) => {
                let $first = 1;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DescribeGroups(r) => {
                let $first = 1;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::ListGroups(r) => {
                let $first = 1;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::ApiVersions(r) => {
                let $first = 1;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::CreateTopics(r) => {
                let $first = 2;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DeleteTopics(r) => {
                let $first = 1;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DeleteRecords(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::InitProducerId(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::OffsetForLeaderEpoch(r) => {
                let $first = 2;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::AddPartitionsToTxn(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::AddOffsetsToTxn(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::EndTxn(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::TxnOffsetCommit(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DescribeAcls(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::CreateAcls(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DeleteAcls(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DescribeConfigs(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::AlterConfigs(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::CreatePartitions(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DescribeCluster(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::ElectLeaders(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::IncrementalAlterConfigs(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::AlterPartitionReassignments(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::ListPartitionReassignments(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::OffsetDelete(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DeleteGroups(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DescribeProducers(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DescribeTransactions(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::ListTransactions(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DescribeClientQuotas(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::AlterClientQuotas(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DescribeUserScramCredentials(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::AlterUserScramCredentials(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DescribeLogDirs(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::AlterReplicaLogDirs(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::DescribeTopicPartitions(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::ListConfigResources(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::ConsumerGroupHeartbeat(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            ResponseKind::ConsumerGroupDescribe(r) => {
                let $first = 0;
                let $field = &mut r.throttle_time_ms;
                $body
            }
            _ => $none,
        }
    };
}

/// Raises the response's `throttle_time_ms` to `ms` where `version` has the field.
pub fn raise(response: &mut ResponseKind, version: i16, ms: u64) {
    let ms = ms.min(i32::MAX as u64) as i32;
    with_throttle!(
        response,
        |field, first| {
            if version >= first && *field < ms {
                *field = ms;
            }
        },
        ()
    )
}

/// The response's `throttle_time_ms` (0 when it has none).
pub fn get(response: &mut ResponseKind) -> u64 {
    with_throttle!(response, |field, _first| (*field).max(0) as u64, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::frame::encode_response;
    use crate::kafka::versions::SUPPORTED;
    use kafka_protocol::messages::*;

    /// A default response of `api`, to set the field on.
    fn empty(api: ApiKey) -> Option<ResponseKind> {
        macro_rules! kinds {
            ($($k:ident => $t:ty),* $(,)?) => {
                match api {
                    $(ApiKey::$k => Some(ResponseKind::$k(<$t>::default())),)*
                    _ => None,
                }
            };
        }
        kinds!(
            Produce => ProduceResponse, Fetch => FetchResponse, ListOffsets => ListOffsetsResponse,
            Metadata => MetadataResponse, OffsetCommit => OffsetCommitResponse,
            OffsetFetch => OffsetFetchResponse, FindCoordinator => FindCoordinatorResponse,
            JoinGroup => JoinGroupResponse, Heartbeat => HeartbeatResponse,
            LeaveGroup => LeaveGroupResponse, SyncGroup => SyncGroupResponse,
            DescribeGroups => DescribeGroupsResponse, ListGroups => ListGroupsResponse,
            ApiVersions => ApiVersionsResponse, CreateTopics => CreateTopicsResponse,
            DeleteTopics => DeleteTopicsResponse, DeleteRecords => DeleteRecordsResponse,
            InitProducerId => InitProducerIdResponse,
            OffsetForLeaderEpoch => OffsetForLeaderEpochResponse,
            AddPartitionsToTxn => AddPartitionsToTxnResponse,
            AddOffsetsToTxn => AddOffsetsToTxnResponse, EndTxn => EndTxnResponse,
            TxnOffsetCommit => TxnOffsetCommitResponse, DescribeAcls => DescribeAclsResponse,
            CreateAcls => CreateAclsResponse, DeleteAcls => DeleteAclsResponse,
            DescribeConfigs => DescribeConfigsResponse, AlterConfigs => AlterConfigsResponse,
            CreatePartitions => CreatePartitionsResponse,
            DescribeCluster => DescribeClusterResponse, ElectLeaders => ElectLeadersResponse,
            IncrementalAlterConfigs => IncrementalAlterConfigsResponse,
            AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
            ListPartitionReassignments => ListPartitionReassignmentsResponse,
            OffsetDelete => OffsetDeleteResponse, DeleteGroups => DeleteGroupsResponse,
            DescribeProducers => DescribeProducersResponse,
            DescribeTransactions => DescribeTransactionsResponse,
            ListTransactions => ListTransactionsResponse,
            WriteTxnMarkers => WriteTxnMarkersResponse,
            UpdateFeatures => UpdateFeaturesResponse,
            DescribeClientQuotas => DescribeClientQuotasResponse,
            AlterClientQuotas => AlterClientQuotasResponse,
            DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
            AlterUserScramCredentials => AlterUserScramCredentialsResponse,
            DescribeLogDirs => DescribeLogDirsResponse,
            AlterReplicaLogDirs => AlterReplicaLogDirsResponse,
            DescribeQuorum => DescribeQuorumResponse,
            DescribeTopicPartitions => DescribeTopicPartitionsResponse,
            ListConfigResources => ListConfigResourcesResponse,
            ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
            ConsumerGroupDescribe => ConsumerGroupDescribeResponse,
        )
    }

    /// The table's first versions are the codec's: from them on a throttle encodes, and
    /// before them `raise` leaves the response encodable.
    #[test]
    fn every_served_version_takes_a_throttle_where_it_has_the_field() {
        for (api, lo, hi) in SUPPORTED {
            let Some(mut probe) = empty(*api) else {
                continue;
            };
            for version in *lo..=*hi {
                let mut r = probe.clone();
                raise(&mut r, version, 250);
                encode_response(*api, version, 1, &r)
                    .unwrap_or_else(|e| panic!("{api:?} v{version}: {e:#}"));
                let carried = get(&mut r) == 250;
                // Whether the field exists at this version, asked of the codec: a value
                // set on it survives encoding and decoding only if it does.
                with_throttle!(&mut probe, |field, _first| *field = 250, ());
                let mut buf = bytes::BytesMut::new();
                probe.encode(&mut buf, version).expect("encodes");
                let mut decoded = ResponseKind::decode(*api, &mut buf.freeze(), version)
                    .unwrap_or_else(|e| panic!("{api:?} v{version}: {e:#}"));
                let exists = get(&mut decoded) == 250;
                with_throttle!(&mut probe, |field, _first| *field = 0, ());
                assert_eq!(carried, exists, "{api:?} v{version}");
            }
        }
    }
}
