//! The coordinator of one `__consumer_offsets` partition, while this broker leads it.
//!
//! A shard owns the groups that hash to its partition. It loads them from the log when
//! leadership arrives, answers group and offset requests from memory, and writes every
//! change to the partition. Commits are acknowledged only once the high watermark has
//! passed them, and only if this replica still leads at the epoch that wrote them, so an
//! acknowledged commit survives any failover Kafka's replication survives.
//!
//! The group state machine is pure (see `state`); this module is the glue: a std mutex
//! around the tables (never held across an await), oneshot channels for JoinGroup and
//! SyncGroup calls that wait for the rest of the group, and appends to the log. Offset
//! commits live in `commits`, rebuilding the tables from the log in `load`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fjord_storage::batch::validate_records;
use fjord_storage::builder::{BatchBuilder, Record};
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

mod commits;
mod consumer;
mod load;
mod share;

use commits::PendingTxnOffset;
pub use commits::{CommitTicket, OffsetCommit, PartitionResults, TopicOffsets};

pub use consumer::ConsumerGroupDescription;
pub use share::ShareGroupDescription;

use super::consumer::ConsumerGroup;
use super::offsets::OffsetStore;
use super::records;
use super::share::ShareGroup;
use super::state::{
    Answer, Effect, Group, GroupConfig, GroupPhase, JoinRequest, JoinResult, Member, MemberId,
    SyncResult,
};
use crate::coordinator_shards::{ShardCore, ShardStatus};
use crate::replica::{Partition, Replication};

/// How long a SyncGroup answer waits for its group's metadata record to be replicated
/// (Kafka's `offsets.commit.timeout.ms` default).
const GROUP_PERSIST_TIMEOUT: Duration = Duration::from_secs(5);

/// An answer now, or one to wait for.
pub enum Pending<T> {
    Ready(T),
    Waiting(oneshot::Receiver<T>),
}

/// A group as DescribeGroups shows it.
#[derive(Clone, Debug)]
pub struct GroupDescription {
    pub state: GroupPhase,
    pub protocol_type: String,
    pub protocol_name: String,
    /// Each member with its metadata for the chosen protocol.
    pub members: Vec<(Member, Vec<u8>)>,
}

/// A group as ListGroups shows it.
#[derive(Clone, Debug)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// As ListGroups v4+ names it.
    pub state: &'static str,
    /// "classic", "consumer" or "share" (ListGroups v5).
    pub group_type: &'static str,
}

#[derive(Default)]
struct Tables {
    groups: HashMap<String, Group>,
    /// KIP-848 groups; a group id is in `groups` or here, never both.
    consumer: HashMap<String, ConsumerGroup>,
    /// KIP-932 share groups; a group id here is in neither of the above.
    share: HashMap<String, ShareGroup>,
    offsets: OffsetStore,
    joins: HashMap<(String, MemberId), oneshot::Sender<JoinResult>>,
    syncs: HashMap<(String, MemberId), oneshot::Sender<SyncResult>>,
    /// Log offset of each group's last metadata record: SyncGroup answers wait until it
    /// is replicated, so no member owns partitions in a generation a failover could lose
    /// (a new coordinator would hand the same generation number out again).
    persisted: HashMap<String, i64>,
    /// Transactional commits by producer id, applied by a COMMIT marker and dropped by
    /// an ABORT.
    pending_txn: HashMap<i64, Vec<PendingTxnOffset>>,
}

pub struct Shard {
    pub core: ShardCore,
    tables: Mutex<Tables>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("partition", &self.core.partition)
            .field("leader_epoch", &self.core.leader_epoch)
            .field("status", &self.core.status())
            .finish()
    }
}

impl Shard {
    pub fn new(replica: Arc<Partition>) -> Self {
        Shard {
            core: ShardCore::new(replica),
            tables: Mutex::new(Tables::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock would be a bug in the pure state machine; the
        // tables are still consistent row by row, so keep serving rather than poison.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leadership moved away: everyone waiting is told to find the new coordinator.
    pub fn close(&self) {
        self.core.set_status(ShardStatus::Closed);
        let mut t = self.lock();
        for ((_, member), tx) in t.joins.drain() {
            let _ = tx.send(JoinResult::error(ResponseError::NotCoordinator, &member));
        }
        for (_, tx) in t.syncs.drain() {
            let _ = tx.send(SyncResult::error(ResponseError::NotCoordinator));
        }
        t.groups.clear();
        t.consumer.clear();
        t.share.clear();
    }

    pub fn join(
        &self,
        group_id: &str,
        req: JoinRequest,
        config: &GroupConfig,
        now_ms: i64,
    ) -> Result<Pending<JoinResult>, ResponseError> {
        self.core.check_active()?;
        let mut t = self.lock();
        if Self::is_share_group(&t, group_id) {
            // Kafka's answer to JoinGroup on a share group's id.
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        Self::take_over_from_consumer_group(&mut t, group_id)?;
        let group = t
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        let (answer, effects) = group.join(req, config, now_ms);
        self.carry_out(&mut t, group_id, effects);
        let pending = match answer {
            Answer::Now(r) => Pending::Ready(r),
            Answer::Parked(member) => {
                let (tx, rx) = oneshot::channel();
                t.joins.insert((group_id.to_string(), member), tx);
                Pending::Waiting(rx)
            }
        };
        self.sweep(&mut t, group_id);
        forget_if_unused(&mut t, group_id);
        Ok(pending)
    }

    pub fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(MemberId, Vec<u8>)>,
        now_ms: i64,
    ) -> Result<Pending<SyncResult>, ResponseError> {
        self.core.check_active()?;
        let mut t = self.lock();
        let Some(group) = t.groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        let (answer, effects) = group.sync(member_id, instance_id, generation, assignments, now_ms);
        self.carry_out(&mut t, group_id, effects);
        let pending = match answer {
            Answer::Now(r) => {
                let (tx, rx) = oneshot::channel();
                self.deliver_sync(&t, group_id, tx, r);
                Pending::Waiting(rx)
            }
            Answer::Parked(member) => {
                let (tx, rx) = oneshot::channel();
                t.syncs.insert((group_id.to_string(), member), tx);
                Pending::Waiting(rx)
            }
        };
        self.sweep(&mut t, group_id);
        Ok(pending)
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        self.core.check_active()?;
        let mut t = self.lock();
        match t.groups.get_mut(group_id) {
            Some(g) => g.heartbeat(member_id, instance_id, generation, now_ms),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// LeaveGroup for each (member id, instance id); one result per member.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        self.core.check_active()?;
        let mut t = self.lock();
        if !t.groups.contains_key(group_id) {
            return Ok(members
                .iter()
                .map(|_| Err(ResponseError::UnknownMemberId))
                .collect());
        }
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let Some(group) = t.groups.get_mut(group_id) else {
                results.push(Err(ResponseError::UnknownMemberId));
                continue;
            };
            let (result, effects) = group.leave(member_id, instance_id.as_deref(), now_ms);
            if result.is_ok() {
                info!(group = group_id, member = %member_id, "member left the group");
            }
            self.carry_out(&mut t, group_id, effects);
            results.push(result);
        }
        self.sweep(&mut t, group_id);
        Ok(results)
    }

    pub fn describe(&self, group_id: &str) -> Result<Option<GroupDescription>, ResponseError> {
        self.core.check_active()?;
        let t = self.lock();
        if t.consumer.get(group_id).is_some_and(|g| !g.dead) || Self::is_share_group(&t, group_id) {
            // Kafka's answer for a KIP-848 or share group: not a classic group (clients
            // then ask with ConsumerGroupDescribe or ShareGroupDescribe).
            return Err(ResponseError::GroupIdNotFound);
        }
        Ok(match t.groups.get(group_id) {
            Some(g) => Some(describe(g)),
            // Offsets without group metadata: an empty group as far as clients can tell.
            None if t.offsets.has_offsets(group_id) => Some(GroupDescription {
                state: GroupPhase::Empty,
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
            }),
            None => None,
        })
    }

    pub fn list(&self) -> Vec<GroupListing> {
        if self.core.check_active().is_err() {
            return Vec::new();
        }
        let t = self.lock();
        let mut out: Vec<GroupListing> = t
            .groups
            .values()
            .filter(|g| g.phase != GroupPhase::Dead)
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.phase.name(),
                group_type: "classic",
            })
            .collect();
        out.extend(
            t.consumer
                .values()
                .filter(|g| !g.dead)
                .map(|g| GroupListing {
                    group_id: g.id.clone(),
                    protocol_type: "consumer".to_string(),
                    state: g.state().name(),
                    group_type: "consumer",
                }),
        );
        out.extend(t.share.values().filter(|g| !g.dead).map(|g| GroupListing {
            group_id: g.id.clone(),
            protocol_type: "share".to_string(),
            state: g.state().name(),
            group_type: "share",
        }));
        for g in t.offsets.groups() {
            if !t.groups.contains_key(g) && !t.consumer.contains_key(g) {
                out.push(GroupListing {
                    group_id: g.clone(),
                    protocol_type: String::new(),
                    state: GroupPhase::Empty.name(),
                    group_type: "classic",
                });
            }
        }
        out
    }

    /// Rebalances the groups here that consume a topic in `resized`.
    pub fn topics_resized(&self, resized: &BTreeSet<String>, now_ms: i64) {
        for id in self.step_groups(|group| group.topics_resized(resized, now_ms)) {
            info!(group = %id, topics = ?resized, "rebalancing: a subscribed topic gained partitions");
        }
    }

    /// Ends overdue rebalance phases and expires silent members.
    pub fn tick(&self, now_ms: i64) {
        self.step_groups(|group| group.tick(now_ms));
    }

    /// Runs `step` on every group here and carries out what it returns; the ids of the
    /// groups that had something to do.
    fn step_groups(&self, mut step: impl FnMut(&mut Group) -> Vec<Effect>) -> Vec<String> {
        if self.core.check_active().is_err() {
            return Vec::new();
        }
        let mut t = self.lock();
        let ids: Vec<String> = t.groups.keys().cloned().collect();
        let mut stepped = Vec::new();
        for id in ids {
            let Some(group) = t.groups.get_mut(&id) else {
                continue;
            };
            let effects = step(group);
            if !effects.is_empty() {
                self.carry_out(&mut t, &id, effects);
                self.sweep(&mut t, &id);
                stepped.push(id);
            }
        }
        stepped
    }

    /// Appends records to the partition as its leader; returns the last offset.
    fn append(&self, records_out: Vec<Record>, now_ms: i64) -> Result<i64, ResponseError> {
        self.append_as(records_out, None, now_ms)
    }

    /// Appends records, in a transactional batch of `producer` when given.
    fn append_as(
        &self,
        records_out: Vec<Record>,
        producer: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<i64, ResponseError> {
        if !self.core.owns_partition() {
            return Err(ResponseError::NotCoordinator);
        }
        let mut builder = BatchBuilder::new(0, now_ms);
        if let Some((pid, epoch)) = producer {
            builder = builder.producer(pid, epoch, -1).transactional(true);
        }
        for r in records_out {
            builder.push(r);
        }
        let bytes = builder.build();
        let validated = validate_records(&bytes, self.core.replica.max_message_bytes())
            .map_err(|_| ResponseError::InvalidCommitOffsetSize)?;
        match self.core.replica.append_as_leader(&validated, now_ms) {
            Ok(appended) => Ok(appended.info.last_offset),
            Err(e) => {
                debug!(partition = self.core.partition, error = %e, "group append failed");
                Err(match e {
                    crate::replica::ReplicaError::NotLeaderOrFollower => {
                        ResponseError::NotCoordinator
                    }
                    crate::replica::ReplicaError::Storage(
                        fjord_storage::StorageError::BatchTooLarge { .. },
                    ) => ResponseError::InvalidCommitOffsetSize,
                    _ => ResponseError::CoordinatorNotAvailable,
                })
            }
        }
    }

    /// Sends a SyncGroup answer once the group's last metadata record is replicated (at
    /// once if it already is), or an error if that does not happen in time.
    fn deliver_sync(
        &self,
        t: &Tables,
        group_id: &str,
        tx: oneshot::Sender<SyncResult>,
        result: SyncResult,
    ) {
        self.deliver_persisted(t, group_id, tx, result, SyncResult::error);
    }

    /// Sends `result` once the group's last metadata record is replicated, or
    /// `failed(error)` if that does not happen in time.
    fn deliver_persisted<T: Send + 'static>(
        &self,
        t: &Tables,
        group_id: &str,
        tx: oneshot::Sender<T>,
        result: T,
        failed: fn(ResponseError) -> T,
    ) {
        let Some(target) = t.persisted.get(group_id).map(|o| o + 1) else {
            let _ = tx.send(result);
            return;
        };
        // High watermark first, then leadership (see `Partition::await_replication`).
        if self.core.replica.high_watermark() >= target && self.core.owns_partition() {
            let _ = tx.send(result);
            return;
        }
        let replica = Arc::clone(&self.core.replica);
        let epoch = self.core.leader_epoch;
        let mut status = self.core.subscribe();
        tokio::spawn(async move {
            // Losing the partition ends the wait at once: the record may never be
            // replicated then.
            let outcome = tokio::select! {
                o = replica.await_replication(target, epoch, GROUP_PERSIST_TIMEOUT) => o,
                _ = status.wait_for(|s| *s == ShardStatus::Closed) => Replication::LeadershipLost,
            };
            let answer = match outcome {
                Replication::Replicated => result,
                Replication::LeadershipLost => failed(ResponseError::NotCoordinator),
                Replication::TimedOut => failed(ResponseError::CoordinatorNotAvailable),
            };
            let _ = tx.send(answer);
        });
    }

    /// Delivers answers to parked callers and persists group metadata.
    fn carry_out(&self, t: &mut Tables, group_id: &str, effects: Vec<Effect>) {
        // Persist first, so that SyncGroup answers of this step can wait for the record.
        let (persists, others): (Vec<Effect>, Vec<Effect>) = effects
            .into_iter()
            .partition(|e| matches!(e, Effect::Persist(_)));
        for effect in persists.into_iter().chain(others) {
            match effect {
                Effect::Join(member, result) => {
                    if let Some(tx) = t.joins.remove(&(group_id.to_string(), member)) {
                        let _ = tx.send(result);
                    }
                }
                Effect::Sync(member, result) => {
                    if let Some(tx) = t.syncs.remove(&(group_id.to_string(), member)) {
                        self.deliver_sync(t, group_id, tx, result);
                    }
                }
                Effect::Dropped(member, reason) => {
                    info!(group = group_id, member = %member, reason, "member removed from the group");
                }
                Effect::Persist(snapshot) => {
                    info!(
                        group = group_id,
                        generation = snapshot.generation,
                        members = snapshot.members.len(),
                        protocol = snapshot.protocol_name.as_deref().unwrap_or(""),
                        "group state changed"
                    );
                    // A failure is logged; SyncGroup answers then do not wait for it.
                    let _ = self.persist(t, group_id, records::group_record(&snapshot));
                }
            }
        }
    }

    /// Appends a group's metadata record and remembers its offset, so answers that
    /// promise it wait until it is replicated.
    /// Runs `step` on every group of one kind (`table`), and writes each group it
    /// changed (as `record` makes it). Shared by the KIP-848 and share group timers.
    fn step_member_groups<G: Clone>(
        &self,
        table: fn(&mut Tables) -> &mut HashMap<String, G>,
        record: fn(&G) -> Record,
        mut step: impl FnMut(&mut G) -> bool,
    ) {
        if self.core.check_active().is_err() {
            return;
        }
        let mut t = self.lock();
        let changed: Vec<(String, G)> = table(&mut t)
            .iter_mut()
            .filter_map(|(id, g)| step(g).then(|| (id.clone(), g.clone())))
            .collect();
        for (id, g) in &changed {
            // A failure is logged; the next change writes the whole group again.
            let _ = self.persist(&mut t, id, record(g));
        }
    }

    fn persist(&self, t: &mut Tables, group_id: &str, record: Record) -> Result<(), ResponseError> {
        match self.append(vec![record], crate::time::now_ms()) {
            Ok(offset) => {
                t.persisted.insert(group_id.to_string(), offset);
                Ok(())
            }
            Err(e) => {
                warn!(group = group_id, error = ?e, "persisting group metadata failed");
                Err(e)
            }
        }
    }

    /// Answers parked callers the group no longer waits for (removed members, members
    /// replaced by a newer call), so no request hangs until its client times out.
    fn sweep(&self, t: &mut Tables, group_id: &str) {
        let group = t.groups.get(group_id);
        let stale_joins: Vec<(String, MemberId)> = t
            .joins
            .keys()
            .filter(|(g, m)| g == group_id && !group.is_some_and(|g| g.is_awaiting_join(m)))
            .cloned()
            .collect();
        let stale_syncs: Vec<(String, MemberId)> = t
            .syncs
            .keys()
            .filter(|(g, m)| g == group_id && !group.is_some_and(|g| g.is_awaiting_sync(m)))
            .cloned()
            .collect();
        for key in stale_joins {
            if let Some(tx) = t.joins.remove(&key) {
                let _ = tx.send(JoinResult::error(ResponseError::UnknownMemberId, &key.1));
            }
        }
        for key in stale_syncs {
            if let Some(tx) = t.syncs.remove(&key) {
                let _ = tx.send(SyncResult::error(ResponseError::RebalanceInProgress));
            }
        }
    }
}

fn describe(g: &Group) -> GroupDescription {
    GroupDescription {
        state: g.phase,
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol_name: if g.phase == GroupPhase::Stable {
            g.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        },
        members: g.described_members(),
    }
}

/// A group that a failed first join created holds nothing worth keeping.
fn forget_if_unused(t: &mut Tables, group_id: &str) {
    let unused = t.groups.get(group_id).is_some_and(|g| {
        g.phase == GroupPhase::Empty
            && g.members.is_empty()
            && g.generation == 0
            && g.pending.is_empty()
    });
    if unused && !t.offsets.has_offsets(group_id) {
        t.groups.remove(group_id);
    }
}
