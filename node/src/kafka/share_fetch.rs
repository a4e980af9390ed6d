//! ShareFetch and ShareAcknowledge (KIP-932): members of a share group fetch records
//! from partition leaders, which lock what they hand out, and settle them one by one.
//! The share-partitions and sessions are in `crate::share`; this is the wire, the
//! checks that need no state (authorization, shape), and the long poll.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_controller::ClusterMetadata;
use futures::future::select_all;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_acknowledge_response::{
    LeaderIdAndEpoch as AckLeader, NodeEndpoint as AckEndpoint, PartitionData as AckPartitionData,
    ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords as WireAcquired, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
    ShareFetchableTopicResponse,
};
use kafka_protocol::messages::{
    BrokerId, GroupId, ResponseKind, ShareAcknowledgeRequest, ShareAcknowledgeResponse,
    ShareFetchRequest, ShareFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::dispatch::Reply;
use crate::broker::Broker;
use crate::group::share::AcknowledgementBatch;
use crate::replica::Partition;
use crate::share::{Coordinator, FetchRequest, ReplicaLog, SessionOutcome, Settings};
use crate::share_state::ShareKey;
use crate::time::now_ms;

/// What a member asks for when it names no limit (librdkafka's and Kafka's default
/// `max.poll.records`).
const DEFAULT_MAX_RECORDS: usize = 500;

/// As Kafka answers while the `share.version` feature is 0.
const SHARE_OFF: &str = "share groups are off: share.version is 0";

/// One partition named in a request or in the member's session, resolved here.
struct Target {
    topic_id: Uuid,
    partition: i32,
    /// The partition's replica when this broker leads it and the member may read it.
    replica: Result<Arc<Partition>, ResponseError>,
}

/// How one partition ended up in an answer.
#[derive(Default)]
struct Outcome {
    error: Option<ResponseError>,
    /// Acknowledgements for the partition came with the request (answered even when
    /// they succeeded: a member matches its acknowledgements by the partitions named).
    acked: bool,
    ack_error: Option<ResponseError>,
    acquired: crate::share::Acquired,
}

/// The group and member a share request names, once the checks that need no state
/// pass: share groups on, both ids given, READ on the group.
fn who(
    ctx: &RequestContext,
    group_id: Option<&GroupId>,
    member_id: Option<&StrBytes>,
) -> Result<(String, String), (ResponseError, &'static str)> {
    if !super::features::share_groups_enabled(&ctx.broker.metadata()) {
        return Err((ResponseError::UnsupportedVersion, SHARE_OFF));
    }
    let group_id = group_id.map(|g| g.0.to_string()).unwrap_or_default();
    let member_id = member_id.map(|m| m.to_string()).unwrap_or_default();
    if group_id.is_empty() || member_id.is_empty() {
        return Err((
            ResponseError::InvalidRequest,
            "GroupId and MemberId are required",
        ));
    }
    if !authz::Check::new(ctx).group(Op::Read, &group_id) {
        return Err((ResponseError::GroupAuthorizationFailed, ""));
    }
    Ok((group_id, member_id))
}

pub fn fetch(ctx: &RequestContext, req: ShareFetchRequest) -> Reply {
    let (group_id, member_id) = match who(ctx, req.group_id.as_ref(), req.member_id.as_ref()) {
        Ok(ids) => ids,
        Err((e, why)) => return fetch_error(e, why),
    };
    let mut acks: BTreeMap<(Uuid, i32), Vec<AcknowledgementBatch>> = BTreeMap::new();
    let mut added = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            added.push((t.topic_id, p.partition_index));
            if !p.acknowledgement_batches.is_empty() {
                acks.insert(
                    (t.topic_id, p.partition_index),
                    p.acknowledgement_batches
                        .iter()
                        .map(|b| AcknowledgementBatch {
                            first_offset: b.first_offset,
                            last_offset: b.last_offset,
                            acknowledge_types: b.acknowledge_types.clone(),
                        })
                        .collect(),
                );
            }
        }
    }
    let forgotten: Vec<(Uuid, i32)> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect();
    // The session moves on in request order, before anything waits.
    let outcome = ctx.broker.share.sessions().fetch(
        &group_id,
        &member_id,
        req.share_session_epoch,
        &added,
        &forgotten,
        now_ms(),
    );
    tracing::debug!(group = %group_id, member = %member_id, epoch = req.share_session_epoch, acks = ?acks, forgotten = forgotten.len(), outcome = ?outcome, "share fetch");
    let (session, closing) = match outcome {
        Ok(SessionOutcome::Open(parts)) => (parts, false),
        Ok(SessionOutcome::Closed(parts)) => (parts, true),
        Err(e) => return fetch_error(e, ""),
    };
    let settings = settings_for(&ctx.broker, &group_id);
    let request = FetchRequestShape {
        max_wait: Duration::from_millis(req.max_wait_ms.max(0) as u64),
        max_bytes: if req.max_bytes > 0 {
            req.max_bytes as u64
        } else {
            u64::from(u32::MAX)
        }
        .min(ctx.broker.broker_i64("fetch.max.bytes").max(1024) as u64),
        max_records: usize::try_from(req.max_records)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MAX_RECORDS),
    };
    let md = ctx.broker.metadata();
    let targets: Vec<Target> = session
        .iter()
        .chain(acks.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|&(topic_id, partition)| resolve(ctx, &md, topic_id, partition))
        .collect();
    let broker = Arc::clone(&ctx.broker);
    let listener = ctx.listener.clone();
    let quota_user = Arc::clone(&ctx.principal);
    let client_id = ctx.client_id.clone();
    Reply::Later(Box::pin(async move {
        let mut outcomes: BTreeMap<(Uuid, i32), Outcome> = BTreeMap::new();
        let ctx = Ctx {
            broker: &broker,
            group_id: &group_id,
            member_id: &member_id,
            settings,
        };
        if closing {
            ctx.acknowledge_all(&targets, &acks, &mut outcomes).await;
            for t in &targets {
                broker.share.leader.release(&ctx.key(t), &member_id).await;
            }
        } else {
            // Every partition named is in the session now, acknowledged ones included.
            let fetchable: Vec<&Target> = targets.iter().collect();
            ctx.acquire_all(&fetchable, &acks, &request, &mut outcomes)
                .await;
        }
        let mut response = fetch_response(&broker, &listener, outcomes);
        response.acquisition_lock_timeout_ms =
            i32::try_from(settings.partition.record_lock_duration_ms).unwrap_or(i32::MAX);
        let bytes: u64 = response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
            .sum();
        // The records are locked for this member already, so an answer over the quota
        // still carries them; the member is told to wait before its next fetch.
        let client = crate::quota::Client {
            user: &quota_user,
            client_id: &client_id,
        };
        let throttle = crate::quota::fetch_throttle(&broker, client, bytes);
        response.throttle_time_ms = throttle.min(i32::MAX as u64) as i32;
        ResponseKind::ShareFetch(response)
    }))
}

pub fn acknowledge(ctx: &RequestContext, req: ShareAcknowledgeRequest) -> Reply {
    let (group_id, member_id) = match who(ctx, req.group_id.as_ref(), req.member_id.as_ref()) {
        Ok(ids) => ids,
        Err((e, why)) => return ack_error(e, why),
    };
    let outcome = ctx.broker.share.sessions().acknowledge(
        &group_id,
        &member_id,
        req.share_session_epoch,
        now_ms(),
    );
    tracing::debug!(group = %group_id, member = %member_id, epoch = req.share_session_epoch, topics = req.topics.len(), outcome = ?outcome, "share acknowledge");
    let (session, closing) = match outcome {
        Ok(SessionOutcome::Open(parts)) => (parts, false),
        Ok(SessionOutcome::Closed(parts)) => (parts, true),
        Err(e) => return ack_error(e, ""),
    };
    let mut acks: BTreeMap<(Uuid, i32), Vec<AcknowledgementBatch>> = BTreeMap::new();
    for t in &req.topics {
        for p in &t.partitions {
            acks.entry((t.topic_id, p.partition_index))
                .or_default()
                .extend(
                    p.acknowledgement_batches
                        .iter()
                        .map(|b| AcknowledgementBatch {
                            first_offset: b.first_offset,
                            last_offset: b.last_offset,
                            acknowledge_types: b.acknowledge_types.clone(),
                        }),
                );
        }
    }
    let md = ctx.broker.metadata();
    let targets: Vec<Target> = acks
        .keys()
        .map(|&(topic_id, partition)| resolve(ctx, &md, topic_id, partition))
        .collect();
    let released: Vec<Target> = if closing {
        session
            .iter()
            .map(|&(topic_id, partition)| resolve(ctx, &md, topic_id, partition))
            .collect()
    } else {
        Vec::new()
    };
    let settings = settings_for(&ctx.broker, &group_id);
    let broker = Arc::clone(&ctx.broker);
    let listener = ctx.listener.clone();
    Reply::Later(Box::pin(async move {
        let ctx = Ctx {
            broker: &broker,
            group_id: &group_id,
            member_id: &member_id,
            settings,
        };
        let mut outcomes: BTreeMap<(Uuid, i32), Outcome> = BTreeMap::new();
        ctx.acknowledge_all(&targets, &acks, &mut outcomes).await;
        for t in &released {
            broker.share.leader.release(&ctx.key(t), &member_id).await;
        }
        ResponseKind::ShareAcknowledge(ack_response(&broker, &listener, outcomes))
    }))
}

struct FetchRequestShape {
    max_wait: Duration,
    max_bytes: u64,
    max_records: usize,
}

/// What every partition of one request shares.
struct Ctx<'a> {
    broker: &'a Arc<Broker>,
    group_id: &'a str,
    member_id: &'a str,
    settings: Settings,
}

impl Ctx<'_> {
    fn key(&self, t: &Target) -> ShareKey {
        ShareKey {
            group_id: self.group_id.to_string(),
            topic_id: t.topic_id,
            partition: t.partition,
        }
    }

    async fn acknowledge_all(
        &self,
        targets: &[Target],
        acks: &BTreeMap<(Uuid, i32), Vec<AcknowledgementBatch>>,
        outcomes: &mut BTreeMap<(Uuid, i32), Outcome>,
    ) {
        let store = Coordinator(self.broker);
        let now = now_ms();
        for t in targets {
            let Some(batches) = acks.get(&(t.topic_id, t.partition)) else {
                continue;
            };
            let result = match &t.replica {
                Err(e) => Err(*e),
                Ok(replica) => {
                    self.broker
                        .share
                        .leader
                        .acknowledge(
                            &store,
                            &ReplicaLog(replica),
                            &self.key(t),
                            self.settings,
                            self.member_id,
                            batches,
                            now,
                        )
                        .await
                }
            };
            if let Err(e) = &result {
                tracing::debug!(group = self.group_id, member = self.member_id, partition = t.partition, error = ?e, "share acknowledgement refused");
            }
            let outcome = outcomes.entry((t.topic_id, t.partition)).or_default();
            outcome.acked = true;
            outcome.ack_error = result.err();
        }
    }

    /// Acquires from every fetchable partition; waits (up to `max_wait`) while there is
    /// nothing, woken by a high watermark that moves or a lock that runs out.
    async fn acquire_all(
        &self,
        targets: &[&Target],
        acks: &BTreeMap<(Uuid, i32), Vec<AcknowledgementBatch>>,
        shape: &FetchRequestShape,
        outcomes: &mut BTreeMap<(Uuid, i32), Outcome>,
    ) {
        // Watching starts before the first look, so a write in between is not missed.
        let mut watchers: Vec<_> = targets
            .iter()
            .filter_map(|t| t.replica.as_ref().ok().map(|r| r.subscribe()))
            .collect();
        let keys: Vec<ShareKey> = targets.iter().map(|t| self.key(t)).collect();
        let deadline = Instant::now() + shape.max_wait;
        // Acknowledgements are settled in the first pass, in the same write as what it
        // acquires.
        let none = BTreeMap::new();
        let mut acks = acks;
        loop {
            let found = self.acquire_once(targets, acks, shape, outcomes).await;
            acks = &none;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if found || remaining.is_zero() || watchers.is_empty() {
                return;
            }
            // Records locked by others come back when their locks run out.
            let until_lock = self
                .broker
                .share
                .leader
                .next_lock_deadline(&keys)
                .map(|d| Duration::from_millis(d.saturating_sub(now_ms()).max(1) as u64));
            let wait = until_lock.map_or(remaining, |l| l.min(remaining));
            let changed = select_all(watchers.iter_mut().map(|w| w.changed().boxed()));
            if let Ok((Err(_), _, _)) = tokio::time::timeout(wait, changed).await {
                return; // the partition went away
            }
        }
    }

    /// One pass over the partitions. True when the answer should go now: records were
    /// acquired, or a partition failed.
    async fn acquire_once(
        &self,
        targets: &[&Target],
        acks: &BTreeMap<(Uuid, i32), Vec<AcknowledgementBatch>>,
        shape: &FetchRequestShape,
        outcomes: &mut BTreeMap<(Uuid, i32), Outcome>,
    ) -> bool {
        let store = Coordinator(self.broker);
        let now = now_ms();
        let mut bytes = 0u64;
        let mut records = 0usize;
        let mut found = false;
        // Each pass starts somewhere else, so a member whose answers fill up on its
        // first partitions does not starve the others.
        let first = usize::try_from(now).unwrap_or(0) % targets.len().max(1);
        for t in targets.iter().cycle().skip(first).take(targets.len()) {
            let outcome = outcomes.entry((t.topic_id, t.partition)).or_default();
            let acked = acks
                .get(&(t.topic_id, t.partition))
                .map_or(&[][..], Vec::as_slice);
            let replica = match &t.replica {
                Err(e) => {
                    outcome.error = Some(*e);
                    if !acked.is_empty() {
                        outcome.acked = true;
                        outcome.ack_error = Some(*e);
                    }
                    found = true;
                    continue;
                }
                Ok(r) => r,
            };
            let spent = records >= shape.max_records || bytes >= shape.max_bytes;
            if spent && acked.is_empty() {
                continue;
            }
            let request = FetchRequest {
                member_id: self.member_id,
                acks: acked,
                // A full answer still settles what the member acknowledged here.
                max_records: if spent {
                    0
                } else {
                    shape.max_records - records
                },
                max_bytes: shape.max_bytes.saturating_sub(bytes),
                now_ms: now,
            };
            let result = self
                .broker
                .share
                .leader
                .fetch(
                    &store,
                    &ReplicaLog(replica),
                    &self.key(t),
                    self.settings,
                    request,
                )
                .await;
            if let Some(Err(e)) = &result.acked {
                tracing::debug!(group = self.group_id, member = self.member_id, partition = t.partition, error = ?e, "share acknowledgement refused");
            }
            if let Some(a) = result.acked {
                outcome.acked = true;
                outcome.ack_error = a.err();
            }
            match result.acquired {
                Ok(acquired) if acquired.runs.is_empty() => {}
                Ok(acquired) => {
                    bytes += acquired.records.len() as u64;
                    records += acquired
                        .runs
                        .iter()
                        .map(|r| (r.last_offset - r.first_offset + 1) as usize)
                        .sum::<usize>();
                    outcome.acquired = acquired;
                    found = true;
                }
                Err(e) => {
                    outcome.error = Some(e);
                    found = true;
                }
            }
        }
        found
    }
}

/// Finds the partition: an error unless this broker leads it and the member may read it.
fn resolve(ctx: &RequestContext, md: &ClusterMetadata, topic_id: Uuid, partition: i32) -> Target {
    let replica = match md.topic_by_id(&topic_id) {
        None => Err(ResponseError::UnknownTopicId),
        Some(t) if !authz::Check::new(ctx).topic(Op::Read, &t.name) => {
            Err(ResponseError::TopicAuthorizationFailed)
        }
        Some(t) => match ctx.broker.replicas.get(&t.name, partition) {
            Some(r) if r.is_leader() => Ok(r),
            _ if md.partition(&t.name, partition).is_some() => {
                Err(ResponseError::NotLeaderOrFollower)
            }
            _ => Err(ResponseError::UnknownTopicOrPartition),
        },
    };
    Target {
        topic_id,
        partition,
        replica,
    }
}

/// The group's share-partition settings (its GROUP configs, else the broker's).
fn settings_for(broker: &Broker, group_id: &str) -> Settings {
    let (partition, reset) = crate::group::coordinator::share_partition_settings(broker, group_id);
    let by_duration_ms = broker
        .metadata()
        .group_configs
        .get(group_id)
        .and_then(|c| c.get("share.auto.offset.reset"))
        .and_then(|v| v.trim().strip_prefix("by_duration:"))
        .and_then(|d| crate::time::parse_iso8601_duration_ms(d).ok());
    Settings {
        partition,
        reset,
        by_duration_ms,
    }
}

/// Where the partition's leader is now, for an answer that sends the member there.
fn current_leader(md: &ClusterMetadata, topic_id: Uuid, partition: i32) -> Option<(i32, i32)> {
    let t = md.topic_by_id(&topic_id)?;
    let p = md.partition(&t.name, partition)?;
    (p.leader >= 0).then_some((p.leader, p.leader_epoch))
}

fn fetch_response(
    broker: &Broker,
    listener: &str,
    outcomes: BTreeMap<(Uuid, i32), Outcome>,
) -> ShareFetchResponse {
    let md = broker.metadata();
    let mut topics: Vec<ShareFetchableTopicResponse> = Vec::new();
    let mut leaders = BTreeSet::new();
    for ((topic_id, partition), o) in outcomes {
        if !o.acked && o.error.is_none() && o.acquired.runs.is_empty() {
            // Partitions with nothing to say are left out, as in Kafka's answers.
            continue;
        }
        let mut data = PartitionData::default()
            .with_partition_index(partition)
            .with_error_message(None)
            .with_acknowledge_error_message(None)
            .with_records(Some(Bytes::new()));
        if let Some(e) = o.error {
            data.error_code = e.code();
            if e == ResponseError::NotLeaderOrFollower {
                if let Some((leader, epoch)) = current_leader(&md, topic_id, partition) {
                    data.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(leader)
                        .with_leader_epoch(epoch);
                    leaders.insert(leader);
                }
            }
        }
        if let Some(e) = o.ack_error {
            data.acknowledge_error_code = e.code();
        }
        data.acquired_records = o
            .acquired
            .runs
            .iter()
            .map(|r| {
                WireAcquired::default()
                    .with_first_offset(r.first_offset)
                    .with_last_offset(r.last_offset)
                    .with_delivery_count(r.delivery_count)
            })
            .collect();
        data.records = Some(o.acquired.records);
        match topics.last_mut() {
            Some(t) if t.topic_id == topic_id => t.partitions.push(data),
            _ => topics.push(
                ShareFetchableTopicResponse::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    let node_endpoints = endpoints(&md, listener, leaders, |id, host, port, rack| {
        NodeEndpoint::default()
            .with_node_id(id)
            .with_host(host)
            .with_port(port)
            .with_rack(rack)
    });
    ShareFetchResponse::default()
        .with_error_message(None)
        .with_responses(topics)
        .with_node_endpoints(node_endpoints)
}

fn ack_response(
    broker: &Broker,
    listener: &str,
    outcomes: BTreeMap<(Uuid, i32), Outcome>,
) -> ShareAcknowledgeResponse {
    let md = broker.metadata();
    let mut topics: Vec<ShareAcknowledgeTopicResponse> = Vec::new();
    let mut leaders = BTreeSet::new();
    for ((topic_id, partition), o) in outcomes {
        let mut data = AckPartitionData::default()
            .with_partition_index(partition)
            .with_error_message(None);
        if let Some(e) = o.ack_error {
            data.error_code = e.code();
            if e == ResponseError::NotLeaderOrFollower {
                if let Some((leader, epoch)) = current_leader(&md, topic_id, partition) {
                    data.current_leader = AckLeader::default()
                        .with_leader_id(leader)
                        .with_leader_epoch(epoch);
                    leaders.insert(leader);
                }
            }
        }
        match topics.last_mut() {
            Some(t) if t.topic_id == topic_id => t.partitions.push(data),
            _ => topics.push(
                ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    let node_endpoints = endpoints(&md, listener, leaders, |id, host, port, rack| {
        AckEndpoint::default()
            .with_node_id(id)
            .with_host(host)
            .with_port(port)
            .with_rack(rack)
    });
    ShareAcknowledgeResponse::default()
        .with_error_message(None)
        .with_responses(topics)
        .with_node_endpoints(node_endpoints)
}

/// The addresses on `listener` of the leaders an answer names, made into either
/// answer's NodeEndpoint by `make`.
fn endpoints<T>(
    md: &ClusterMetadata,
    listener: &str,
    leaders: BTreeSet<i32>,
    make: impl Fn(BrokerId, StrBytes, i32, Option<StrBytes>) -> T,
) -> Vec<T> {
    leaders
        .into_iter()
        .filter_map(|id| {
            let b = md.brokers.get(&id)?;
            let l = b.listener(listener)?;
            Some(make(
                BrokerId(id),
                StrBytes::from_string(l.host.clone()),
                i32::from(l.port),
                b.rack.clone().map(StrBytes::from_string),
            ))
        })
        .collect()
}

fn message(why: &str) -> Option<StrBytes> {
    (!why.is_empty()).then(|| StrBytes::from_string(why.to_string()))
}

fn fetch_error(e: ResponseError, why: &str) -> Reply {
    ResponseKind::ShareFetch(
        ShareFetchResponse::default()
            .with_error_code(e.code())
            .with_error_message(message(why)),
    )
    .into()
}

fn ack_error(e: ResponseError, why: &str) -> Reply {
    ResponseKind::ShareAcknowledge(
        ShareAcknowledgeResponse::default()
            .with_error_code(e.code())
            .with_error_message(message(why)),
    )
    .into()
}
