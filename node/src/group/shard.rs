//! The coordinator of one `__consumer_offsets` partition, while this broker leads it.
//!
//! A shard owns the groups that hash to its partition. It loads them from the log when
//! leadership arrives, answers group and offset requests from memory, and writes every
//! change to the partition. Commits are acknowledged only once the high watermark has
//! passed them, and only if this replica still leads at the epoch that wrote them, so an
//! acknowledged commit survives any failover Kafka's replication survives.
//!
//! The group state machine is pure (see `state`); this file is the glue: a std mutex
//! around the tables (never held across an await), oneshot channels for JoinGroup and
//! SyncGroup calls that wait for the rest of the group, and appends to the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fjord_storage::batch::validate_records;
use fjord_storage::builder::{BatchBuilder, Record};
use kafka_protocol::error::ResponseError;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::offsets::{CommittedOffset, OffsetStore, TopicPartitionKey};
use super::records::{self, decode_entries, Entry, OffsetValue, RecordKey, VALUE_VERSION};
use super::state::{
    Answer, Effect, Group, GroupConfig, GroupPhase, JoinRequest, JoinResult, Member, MemberId,
    SyncResult,
};
use crate::replica::{IsolationLevel, Partition, Replication};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardStatus {
    Loading,
    Active,
    Closed,
}

/// An answer now, or one to wait for.
/// How long a SyncGroup answer waits for its group's metadata record to be replicated
/// (Kafka's `offsets.commit.timeout.ms` default).
const GROUP_PERSIST_TIMEOUT: Duration = Duration::from_secs(5);

pub enum Pending<T> {
    Ready(T),
    Waiting(oneshot::Receiver<T>),
}

/// Offsets appended to the log, to be applied once replicated.
#[derive(Debug)]
pub struct CommitTicket {
    group: String,
    last_offset: i64,
    entries: Vec<(TopicPartitionKey, Option<CommittedOffset>)>,
    /// A transactional commit's producer: its offsets wait for the COMMIT marker.
    producer_id: Option<i64>,
}

/// A transactional offset commit waiting for its producer's marker.
#[derive(Clone, Debug)]
struct PendingTxnOffset {
    group: String,
    topic: String,
    partition: i32,
    log_offset: i64,
    value: Option<CommittedOffset>,
}

/// One offset to commit.
#[derive(Clone, Debug)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Per topic, each requested partition with its committed offset, if any.
pub type TopicOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// Each partition with the outcome of an operation on it.
pub type PartitionResults = Vec<((String, i32), Result<(), ResponseError>)>;

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
    pub state: GroupPhase,
}

#[derive(Default)]
struct Tables {
    groups: HashMap<String, Group>,
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
    pub partition: i32,
    pub leader_epoch: i32,
    replica: Arc<Partition>,
    tables: Mutex<Tables>,
    status: watch::Sender<ShardStatus>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("partition", &self.partition)
            .field("leader_epoch", &self.leader_epoch)
            .field("status", &self.status())
            .finish()
    }
}

impl Shard {
    pub fn new(replica: Arc<Partition>) -> Self {
        Shard {
            partition: replica.tp.partition,
            leader_epoch: replica.leader_epoch(),
            replica,
            tables: Mutex::new(Tables::default()),
            status: watch::Sender::new(ShardStatus::Loading),
        }
    }

    pub fn status(&self) -> ShardStatus {
        *self.status.borrow()
    }

    /// Still the leader at the epoch this shard was made for.
    pub fn owns_partition(&self) -> bool {
        self.replica.is_leader() && self.replica.leader_epoch() == self.leader_epoch
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock would be a bug in the pure state machine; the
        // tables are still consistent row by row, so keep serving rather than poison.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn check_active(&self) -> Result<(), ResponseError> {
        match self.status() {
            ShardStatus::Loading => Err(ResponseError::CoordinatorLoadInProgress),
            ShardStatus::Closed => Err(ResponseError::NotCoordinator),
            ShardStatus::Active if !self.owns_partition() => Err(ResponseError::NotCoordinator),
            ShardStatus::Active => Ok(()),
        }
    }

    /// Reads the partition from its start and rebuilds groups and offsets, then starts
    /// answering. Returns false if leadership moved away meanwhile.
    pub async fn load(&self, now_ms: impl Fn() -> i64) -> bool {
        let started = std::time::Instant::now();
        let target = self.replica.log_end_offset();
        // Everything this leader has is what the group must see, but it may read only what
        // is replicated: wait for the followers in the ISR to confirm it.
        let mut hw = self.replica.subscribe();
        loop {
            if !self.owns_partition() || self.status() == ShardStatus::Closed {
                return false;
            }
            if *hw.borrow_and_update() >= target {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), hw.changed()).await;
        }
        let mut position = self.replica.log_start_offset();
        let mut loaded = 0usize;
        let mut skipped = 0usize;
        let mut tables = Tables::default();
        let now = now_ms();
        while position < target {
            if !self.owns_partition() {
                return false;
            }
            let read = self
                .replica
                .read(position, 4 << 20, IsolationLevel::ReadUncommitted, true);
            let bytes = match read {
                Ok(r) => r.records,
                Err(e) => {
                    warn!(partition = self.partition, error = %e, "reading group metadata failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let decoded = decode_entries(&bytes);
            let Some(next) = decoded.next_offset else {
                break;
            };
            loaded += decoded.entries.len();
            skipped += decoded.skipped;
            for (offset, entry) in decoded.entries {
                apply_entry(&mut tables, offset, entry, now);
            }
            position = next;
        }
        {
            let mut t = self.lock();
            if self.status() == ShardStatus::Closed {
                return false;
            }
            t.groups = tables.groups;
            t.offsets = tables.offsets;
            t.pending_txn = tables.pending_txn;
        }
        self.status.send_replace(ShardStatus::Active);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if loaded > 0 || skipped > 0 {
            info!(
                partition = self.partition,
                epoch = self.leader_epoch,
                records = loaded,
                skipped,
                elapsed_ms,
                "group coordinator loaded"
            );
        } else {
            debug!(
                partition = self.partition,
                epoch = self.leader_epoch,
                elapsed_ms,
                "group coordinator loaded (empty)"
            );
        }
        true
    }

    /// Leadership moved away: everyone waiting is told to find the new coordinator.
    pub fn close(&self) {
        self.status.send_replace(ShardStatus::Closed);
        let mut t = self.lock();
        for ((_, member), tx) in t.joins.drain() {
            let _ = tx.send(JoinResult::error(ResponseError::NotCoordinator, &member));
        }
        for (_, tx) in t.syncs.drain() {
            let _ = tx.send(SyncResult::error(ResponseError::NotCoordinator));
        }
        t.groups.clear();
    }

    pub fn join(
        &self,
        group_id: &str,
        req: JoinRequest,
        config: &GroupConfig,
        now_ms: i64,
    ) -> Result<Pending<JoinResult>, ResponseError> {
        self.check_active()?;
        let mut t = self.lock();
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
        self.check_active()?;
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
        self.check_active()?;
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
        self.check_active()?;
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

    /// Validates a commit and appends it; the caller awaits [`Shard::complete_commit`]
    /// to learn whether it was replicated. Per-partition problems are the caller's.
    pub fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<OffsetCommit>,
        now_ms: i64,
    ) -> Result<CommitTicket, ResponseError> {
        self.check_active()?;
        let mut t = self.lock();
        match t.groups.get(group_id) {
            Some(g) => g.check_commit(member_id, instance_id, generation)?,
            // Commits without group management ("simple" consumers) create the group;
            // a generation from a group this coordinator has never seen is stale.
            None if generation < 0 => {
                t.groups.insert(group_id.to_string(), Group::new(group_id));
            }
            None => return Err(ResponseError::IllegalGeneration),
        }
        let (records_out, entries) = offset_records(group_id, offsets, now_ms);
        let last_offset = self.append(records_out, now_ms)?;
        Ok(CommitTicket {
            group: group_id.to_string(),
            last_offset,
            entries,
            producer_id: None,
        })
    }

    /// TxnOffsetCommit: appends the offsets in a transactional batch of the producer;
    /// they become visible when its transaction commits. The producer must already have
    /// been checked against its transaction coordinator (KIP-890).
    #[allow(clippy::too_many_arguments)] // TxnOffsetCommit's own fields, as OffsetCommit's `commit` takes them plus the producer
    pub fn txn_commit(
        &self,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<OffsetCommit>,
        now_ms: i64,
    ) -> Result<CommitTicket, ResponseError> {
        self.check_active()?;
        let t = self.lock();
        // KIP-447: a member-aware commit is fenced like a regular one; a producer without
        // group metadata (generation -1) commits as a "simple" consumer would.
        if generation >= 0 || !member_id.is_empty() {
            match t.groups.get(group_id) {
                Some(g) => g.check_commit(member_id, instance_id, generation)?,
                None => return Err(ResponseError::IllegalGeneration),
            }
        }
        drop(t);
        let (records_out, entries) = offset_records(group_id, offsets, now_ms);
        let last_offset =
            self.append_as(records_out, Some((producer_id, producer_epoch)), now_ms)?;
        Ok(CommitTicket {
            group: group_id.to_string(),
            last_offset,
            entries,
            producer_id: Some(producer_id),
        })
    }

    /// Writes a transaction marker to this partition for the coordinator, and once it is
    /// replicated applies (COMMIT) or drops (ABORT) the producer's pending offsets.
    pub async fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        kind: fjord_storage::control::ControlType,
        coordinator_epoch: i32,
    ) -> Result<(), ResponseError> {
        self.check_active()
            .map_err(|_| ResponseError::NotLeaderOrFollower)?;
        let appended = match self.replica.write_marker(
            producer_id,
            producer_epoch,
            kind,
            coordinator_epoch,
            crate::time::now_ms(),
        ) {
            Ok(a) => a,
            Err(crate::replica::ReplicaError::Producer(
                crate::producer::ProducerError::InvalidProducerEpoch { .. },
            )) => return Ok(()),
            Err(_) => return Err(ResponseError::NotLeaderOrFollower),
        };
        let outcome = self
            .replica
            .await_replication(
                appended.info.last_offset + 1,
                self.leader_epoch,
                GROUP_PERSIST_TIMEOUT,
            )
            .await;
        match outcome {
            Replication::Replicated => {}
            Replication::LeadershipLost => return Err(ResponseError::NotLeaderOrFollower),
            Replication::TimedOut => return Err(ResponseError::RequestTimedOut),
        }
        let mut t = self.lock();
        resolve_marker(
            &mut t,
            producer_id,
            kind == fjord_storage::control::ControlType::Commit,
        );
        Ok(())
    }

    /// Whether a transaction holds an undecided commit for the group (KIP-447's
    /// require_stable: its offsets must not be read until the transaction ends).
    pub fn has_pending_txn_offsets(&self, group_id: &str) -> bool {
        self.lock()
            .pending_txn
            .values()
            .flatten()
            .any(|p| p.group == group_id)
    }

    /// Waits until an appended change is replicated, then applies it. A change whose
    /// writer lost leadership first is reported NOT_COORDINATOR: the client retries
    /// against the new coordinator, which may or may not have the record.
    pub async fn complete_commit(
        &self,
        ticket: CommitTicket,
        timeout: Duration,
    ) -> Result<(), ResponseError> {
        let outcome = self
            .replica
            .await_replication(ticket.last_offset + 1, self.leader_epoch, timeout)
            .await;
        if outcome == Replication::LeadershipLost || self.status() == ShardStatus::Closed {
            return Err(ResponseError::NotCoordinator);
        }
        if outcome == Replication::TimedOut {
            // Kafka's mapping of a replication timeout on the offsets topic.
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mut t = self.lock();
        let first = ticket.last_offset + 1 - ticket.entries.len() as i64;
        for (i, ((topic, partition), value)) in ticket.entries.into_iter().enumerate() {
            let log_offset = first + i as i64;
            let value = value.map(|mut v| {
                v.log_offset = log_offset;
                v
            });
            match ticket.producer_id {
                Some(pid) => t
                    .pending_txn
                    .entry(pid)
                    .or_default()
                    .push(PendingTxnOffset {
                        group: ticket.group.clone(),
                        topic,
                        partition,
                        log_offset,
                        value,
                    }),
                None => t
                    .offsets
                    .apply(&ticket.group, &topic, partition, log_offset, value),
            }
        }
        Ok(())
    }

    /// Committed offsets of a group: of the given topics and partitions, or all of them.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<TopicOffsets, ResponseError> {
        self.check_active()?;
        let t = self.lock();
        Ok(match wanted {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .into_iter()
                        .map(|p| (p, t.offsets.get(group_id, &topic, p).cloned()))
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: TopicOffsets = Vec::new();
                for ((topic, partition), c) in t.offsets.of_group(group_id) {
                    match by_topic.last_mut() {
                        Some((name, list)) if *name == topic => list.push((partition, Some(c))),
                        _ => by_topic.push((topic, vec![(partition, Some(c))])),
                    }
                }
                by_topic
            }
        })
    }

    /// OffsetDelete. `subscribed` tells whether a topic is one the group still consumes;
    /// those offsets stay (GROUP_SUBSCRIBED_TO_TOPIC).
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
        subscribed: impl Fn(&GroupDescription, &str) -> bool,
        now_ms: i64,
    ) -> Result<(PartitionResults, Option<CommitTicket>), ResponseError> {
        self.check_active()?;
        let t = self.lock();
        let description = t.groups.get(group_id).map(describe);
        if description.is_none() && !t.offsets.has_offsets(group_id) {
            return Err(ResponseError::GroupIdNotFound);
        }
        if let Some(d) = &description {
            if d.state != GroupPhase::Empty && d.protocol_type != "consumer" {
                return Err(ResponseError::NonEmptyGroup);
            }
        }
        let mut results = Vec::new();
        let mut doomed = Vec::new();
        for (topic, partition) in partitions {
            let still_used = description
                .as_ref()
                .is_some_and(|d| d.state != GroupPhase::Empty && subscribed(d, &topic));
            if still_used {
                results.push((
                    (topic, partition),
                    Err(ResponseError::GroupSubscribedToTopic),
                ));
            } else {
                if t.offsets.get(group_id, &topic, partition).is_some() {
                    doomed.push((topic.clone(), partition));
                }
                results.push(((topic, partition), Ok(())));
            }
        }
        drop(t);
        if doomed.is_empty() {
            return Ok((results, None));
        }
        let ticket = self.write_tombstones(group_id, doomed, false, now_ms)?;
        Ok((results, Some(ticket)))
    }

    /// DeleteGroups for one group: only an empty one; its offsets go with it.
    pub fn delete_group(&self, group_id: &str, now_ms: i64) -> Result<CommitTicket, ResponseError> {
        self.check_active()?;
        let mut t = self.lock();
        let has_offsets = t.offsets.has_offsets(group_id);
        match t.groups.get_mut(group_id) {
            Some(g) => g.mark_dead()?,
            None if has_offsets => {}
            None => return Err(ResponseError::GroupIdNotFound),
        }
        let doomed: Vec<(String, i32)> = t
            .offsets
            .of_group(group_id)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        t.groups.remove(group_id);
        drop(t);
        info!(group = group_id, "group deleted");
        self.write_tombstones(group_id, doomed, true, now_ms)
    }

    /// Appends tombstones for offsets (and the group record) and forgets them at once:
    /// a deleted offset must not be served again even before replication finishes.
    fn write_tombstones(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
        with_group: bool,
        now_ms: i64,
    ) -> Result<CommitTicket, ResponseError> {
        let mut out: Vec<Record> = partitions
            .iter()
            .map(|(topic, partition)| {
                records::tombstone(&RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                })
            })
            .collect();
        if with_group {
            out.push(records::tombstone(&RecordKey::Group {
                group: group_id.to_string(),
            }));
        }
        let last_offset = self.append(out, now_ms)?;
        let mut t = self.lock();
        for (topic, partition) in &partitions {
            t.offsets
                .apply(group_id, topic, *partition, last_offset, None);
        }
        Ok(CommitTicket {
            group: group_id.to_string(),
            last_offset,
            entries: Vec::new(),
            producer_id: None,
        })
    }

    pub fn describe(&self, group_id: &str) -> Result<Option<GroupDescription>, ResponseError> {
        self.check_active()?;
        let t = self.lock();
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

    /// Every committed offset this coordinator holds: (group, topic, partition, offset).
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        if self.check_active().is_err() {
            return Vec::new();
        }
        let t = self.lock();
        let groups: Vec<String> = t.offsets.groups().cloned().collect();
        groups
            .into_iter()
            .flat_map(|g| {
                t.offsets
                    .of_group(&g)
                    .into_iter()
                    .map(move |((topic, partition), c)| (g.clone(), topic, partition, c.offset))
            })
            .collect()
    }

    pub fn list(&self) -> Vec<GroupListing> {
        if self.check_active().is_err() {
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
                state: g.phase,
            })
            .collect();
        for g in t.offsets.groups() {
            if !t.groups.contains_key(g) {
                out.push(GroupListing {
                    group_id: g.clone(),
                    protocol_type: String::new(),
                    state: GroupPhase::Empty,
                });
            }
        }
        out
    }

    /// Ends overdue rebalance phases and expires silent members.
    pub fn tick(&self, now_ms: i64) {
        if self.check_active().is_err() {
            return;
        }
        let mut t = self.lock();
        let ids: Vec<String> = t.groups.keys().cloned().collect();
        for id in ids {
            let Some(group) = t.groups.get_mut(&id) else {
                continue;
            };
            let effects = group.tick(now_ms);
            if !effects.is_empty() {
                self.carry_out(&mut t, &id, effects);
                self.sweep(&mut t, &id);
            }
        }
    }

    /// Drops offsets of empty groups older than `retention_ms`, and empty groups left
    /// with no offsets (Kafka's offsets.retention.minutes).
    pub fn expire_offsets(&self, retention_ms: i64, now_ms: i64) {
        if self.check_active().is_err() {
            return;
        }
        let mut t = self.lock();
        let mut candidates: Vec<(String, i64)> = Vec::new();
        for (id, g) in &t.groups {
            if g.phase == GroupPhase::Empty {
                candidates.push((id.clone(), g.empty_since_ms.unwrap_or(now_ms)));
            }
        }
        for id in t.offsets.groups() {
            if !t.groups.contains_key(id) {
                candidates.push((id.clone(), 0));
            }
        }
        let mut tombstones = Vec::new();
        for (id, empty_since) in candidates {
            let expired = t.offsets.expired(&id, empty_since, retention_ms, now_ms);
            for (topic, partition) in &expired {
                t.offsets.apply(&id, topic, *partition, i64::MAX, None);
                tombstones.push(records::tombstone(&RecordKey::Offset {
                    group: id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                }));
            }
            let group_done = !t.offsets.has_offsets(&id)
                && t.groups
                    .get(&id)
                    .is_some_and(|g| g.phase == GroupPhase::Empty);
            if group_done {
                t.groups.remove(&id);
                tombstones.push(records::tombstone(&RecordKey::Group { group: id.clone() }));
            }
            if !expired.is_empty() || group_done {
                info!(group = %id, offsets = expired.len(), removed = group_done, "expired group offsets");
            }
        }
        drop(t);
        if !tombstones.is_empty() {
            if let Err(e) = self.append(tombstones, now_ms) {
                warn!(partition = self.partition, error = ?e, "writing expiry tombstones failed");
            }
        }
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
        if !self.owns_partition() {
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
        let validated = validate_records(&bytes, self.replica.max_message_bytes())
            .map_err(|_| ResponseError::InvalidCommitOffsetSize)?;
        match self.replica.append_as_leader(&validated, now_ms) {
            Ok(appended) => Ok(appended.info.last_offset),
            Err(e) => {
                debug!(partition = self.partition, error = %e, "group append failed");
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
        let Some(target) = t.persisted.get(group_id).map(|o| o + 1) else {
            let _ = tx.send(result);
            return;
        };
        // High watermark first, then leadership (see `Partition::await_replication`).
        if self.replica.high_watermark() >= target && self.owns_partition() {
            let _ = tx.send(result);
            return;
        }
        let replica = Arc::clone(&self.replica);
        let epoch = self.leader_epoch;
        let mut status = self.status.subscribe();
        tokio::spawn(async move {
            // Losing the partition ends the wait at once: the record may never be
            // replicated then.
            let outcome = tokio::select! {
                o = replica.await_replication(target, epoch, GROUP_PERSIST_TIMEOUT) => o,
                _ = status.wait_for(|s| *s == ShardStatus::Closed) => Replication::LeadershipLost,
            };
            let answer = match outcome {
                Replication::Replicated => result,
                Replication::LeadershipLost => SyncResult::error(ResponseError::NotCoordinator),
                Replication::TimedOut => SyncResult::error(ResponseError::CoordinatorNotAvailable),
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
                Effect::Persist(snapshot) => {
                    info!(
                        group = group_id,
                        generation = snapshot.generation,
                        members = snapshot.members.len(),
                        protocol = snapshot.protocol_name.as_deref().unwrap_or(""),
                        "group state changed"
                    );
                    match self.append(
                        vec![records::group_record(&snapshot)],
                        crate::time::now_ms(),
                    ) {
                        Ok(offset) => {
                            t.persisted.insert(group_id.to_string(), offset);
                        }
                        Err(e) => {
                            warn!(group = group_id, error = ?e, "persisting group metadata failed");
                        }
                    }
                }
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

/// The records to append for `offsets`, and the entries to apply once they are replicated.
fn offset_records(
    group_id: &str,
    offsets: Vec<OffsetCommit>,
    now_ms: i64,
) -> (
    Vec<Record>,
    Vec<(TopicPartitionKey, Option<CommittedOffset>)>,
) {
    let mut records_out = Vec::with_capacity(offsets.len());
    let mut entries = Vec::with_capacity(offsets.len());
    for o in offsets {
        let value = OffsetValue {
            version: VALUE_VERSION,
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
            commit_timestamp_ms: now_ms,
        };
        records_out.push(records::offset_record(
            group_id,
            &o.topic,
            o.partition,
            &value,
        ));
        entries.push((
            (o.topic, o.partition),
            Some(CommittedOffset {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata,
                commit_timestamp_ms: now_ms,
                log_offset: -1,
            }),
        ));
    }
    (records_out, entries)
}

/// A producer's transaction ended: its pending offsets take effect (commit) or vanish.
fn resolve_marker(t: &mut Tables, producer_id: i64, commit: bool) {
    let Some(pending) = t.pending_txn.remove(&producer_id) else {
        return;
    };
    if commit {
        for p in pending {
            t.offsets
                .apply(&p.group, &p.topic, p.partition, p.log_offset, p.value);
        }
    }
}

fn apply_entry(t: &mut Tables, log_offset: i64, entry: Entry, now_ms: i64) {
    match entry {
        Entry::Offset {
            group,
            topic,
            partition,
            value,
            producer_id,
        } => {
            let value = value.map(|v| CommittedOffset {
                offset: v.offset,
                leader_epoch: v.leader_epoch,
                metadata: v.metadata,
                commit_timestamp_ms: v.commit_timestamp_ms,
                log_offset,
            });
            match producer_id {
                Some(pid) => t
                    .pending_txn
                    .entry(pid)
                    .or_default()
                    .push(PendingTxnOffset {
                        group,
                        topic,
                        partition,
                        log_offset,
                        value,
                    }),
                None => t
                    .offsets
                    .apply(&group, &topic, partition, log_offset, value),
            }
        }
        Entry::Marker {
            producer_id,
            commit,
        } => resolve_marker(t, producer_id, commit),
        Entry::Group { group, value } => match value {
            Some(snapshot) => {
                t.groups.insert(group, Group::restore(&snapshot, now_ms));
            }
            None => {
                t.groups.remove(&group);
            }
        },
    }
}
