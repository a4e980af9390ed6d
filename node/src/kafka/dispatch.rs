//! Routes a decoded request to the file that handles its API family.

use std::future::Future;
use std::pin::Pin;

use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::context::RequestContext;
use super::{
    acls, api_versions, cluster, config_resources, configs, consumer_groups, elections, features,
    fetch, find_coordinator, group_admin, groups, leader_epoch, list_offsets, log_dirs, metadata,
    offset_commit, produce, producer_id, quorum, quotas, reassignments, records, scram_users,
    share_admin, share_fetch, share_groups, topic_partitions, topics, txn, txn_admin, txn_markers,
};

/// A handler's answer. Work that must happen in request order (appends, metadata writes)
/// is done before returning; waiting (acks=all, fetch long-poll) is returned as `Later`,
/// so the connection can read the next request while responses still go out in order.
pub enum Reply {
    Now(Box<ResponseKind>),
    Later(Pin<Box<dyn Future<Output = ResponseKind> + Send>>),
    /// acks=0 produce: Kafka sends no response at all.
    Nothing,
    /// The request cannot be served; close the connection with this reason.
    Close(String),
}

impl From<ResponseKind> for Reply {
    fn from(r: ResponseKind) -> Self {
        Reply::Now(Box::new(r))
    }
}

pub async fn dispatch(ctx: &RequestContext, request: RequestKind) -> Reply {
    match request {
        RequestKind::ApiVersions(r) => api_versions::handle(ctx, r).into(),
        RequestKind::Metadata(r) => metadata::handle(ctx, r).await.into(),
        RequestKind::Produce(r) => produce::handle(ctx, r).await,
        RequestKind::Fetch(r) => fetch::handle(ctx, r).await,
        RequestKind::ListOffsets(r) => list_offsets::handle(ctx, r).into(),
        RequestKind::CreateTopics(r) => topics::create_topics(ctx, r).await.into(),
        RequestKind::DeleteTopics(r) => topics::delete_topics(ctx, r).await.into(),
        RequestKind::CreatePartitions(r) => topics::create_partitions(ctx, r).await.into(),
        RequestKind::DescribeConfigs(r) => configs::describe(ctx, r).into(),
        RequestKind::AlterConfigs(r) => configs::alter(ctx, r).await.into(),
        RequestKind::IncrementalAlterConfigs(r) => configs::incremental_alter(ctx, r).await.into(),
        RequestKind::DescribeCluster(r) => cluster::describe(ctx, r).into(),
        RequestKind::DeleteRecords(r) => records::delete_records(ctx, r).into(),
        RequestKind::OffsetForLeaderEpoch(r) => leader_epoch::handle(ctx, r).into(),
        RequestKind::InitProducerId(r) => producer_id::init_producer_id(ctx, r).await.into(),
        RequestKind::ElectLeaders(r) => elections::elect_leaders(ctx, r).await.into(),
        RequestKind::AlterPartitionReassignments(r) => reassignments::alter(ctx, r).await.into(),
        RequestKind::ListPartitionReassignments(r) => reassignments::list(ctx, r).into(),
        RequestKind::FindCoordinator(r) => find_coordinator::handle(ctx, r).await.into(),
        RequestKind::JoinGroup(r) => groups::join(ctx, r),
        RequestKind::SyncGroup(r) => groups::sync(ctx, r),
        RequestKind::Heartbeat(r) => groups::heartbeat(ctx, r).into(),
        RequestKind::LeaveGroup(r) => groups::leave(ctx, r).into(),
        RequestKind::OffsetCommit(r) => offset_commit::commit(ctx, r),
        RequestKind::OffsetFetch(r) => offset_commit::fetch(ctx, r).into(),
        RequestKind::OffsetDelete(r) => offset_commit::delete(ctx, r),
        RequestKind::DescribeGroups(r) => group_admin::describe(ctx, r).into(),
        RequestKind::ListGroups(r) => group_admin::list(ctx, r).into(),
        RequestKind::DeleteGroups(r) => group_admin::delete(ctx, r),
        RequestKind::AddPartitionsToTxn(r) => txn::add_partitions(ctx, r).await.into(),
        RequestKind::AddOffsetsToTxn(r) => txn::add_offsets(ctx, r).await.into(),
        RequestKind::EndTxn(r) => txn::end(ctx, r).await.into(),
        RequestKind::TxnOffsetCommit(r) => txn::txn_offset_commit(ctx, r),
        RequestKind::DescribeProducers(r) => txn_admin::describe_producers(ctx, r).into(),
        RequestKind::DescribeTransactions(r) => txn_admin::describe(ctx, r).into(),
        RequestKind::ListTransactions(r) => txn_admin::list(ctx, r).into(),
        RequestKind::WriteTxnMarkers(r) => txn_markers::write(ctx, r).await.into(),
        RequestKind::UpdateFeatures(r) => features::update(ctx, r).await.into(),
        RequestKind::DescribeClientQuotas(r) => quotas::describe(ctx, r).into(),
        RequestKind::CreateAcls(r) => acls::create(ctx, r).await.into(),
        RequestKind::DescribeAcls(r) => acls::describe(ctx, r).into(),
        RequestKind::DeleteAcls(r) => acls::delete(ctx, r).await.into(),
        RequestKind::DescribeUserScramCredentials(r) => scram_users::describe(ctx, r).into(),
        RequestKind::AlterUserScramCredentials(r) => scram_users::alter(ctx, r).await.into(),
        RequestKind::AlterClientQuotas(r) => quotas::alter(ctx, r).await.into(),
        RequestKind::DescribeLogDirs(r) => log_dirs::describe(ctx, r).into(),
        RequestKind::AlterReplicaLogDirs(r) => log_dirs::alter(ctx, r).into(),
        RequestKind::DescribeQuorum(r) => quorum::describe(ctx, r).await.into(),
        RequestKind::DescribeTopicPartitions(r) => topic_partitions::describe(ctx, r).into(),
        RequestKind::ListConfigResources(r) => config_resources::list(ctx, r).into(),
        RequestKind::ConsumerGroupHeartbeat(r) => consumer_groups::heartbeat(ctx, r),
        RequestKind::ConsumerGroupDescribe(r) => consumer_groups::describe(ctx, r).into(),
        RequestKind::ShareGroupHeartbeat(r) => share_groups::heartbeat(ctx, r),
        RequestKind::ShareGroupDescribe(r) => share_groups::describe(ctx, r).into(),
        RequestKind::ShareFetch(r) => share_fetch::fetch(ctx, r),
        RequestKind::ShareAcknowledge(r) => share_fetch::acknowledge(ctx, r),
        RequestKind::DescribeShareGroupOffsets(r) => share_admin::describe_offsets(ctx, r),
        RequestKind::AlterShareGroupOffsets(r) => share_admin::alter_offsets(ctx, r),
        RequestKind::DeleteShareGroupOffsets(r) => share_admin::delete_offsets(ctx, r),
        // `frame::decode` only lets through the APIs listed in `versions::SUPPORTED`,
        // all of which are matched above.
        other => unsupported(other),
    }
}

fn unsupported(request: RequestKind) -> Reply {
    Reply::Close(format!("no handler for {request:?}"))
}
