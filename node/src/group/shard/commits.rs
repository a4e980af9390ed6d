//! Offset commits on a shard: plain and transactional commits, their completion once
//! replicated, transaction markers, reads, deletion and expiry of offsets.

use std::time::Duration;

use fjord_storage::builder::Record;
use kafka_protocol::error::ResponseError;
use tracing::{info, warn};

use super::{describe, GroupDescription, Shard, ShardStatus, Tables, GROUP_PERSIST_TIMEOUT};
use crate::group::offsets::{CommittedOffset, TopicPartitionKey};
use crate::group::records::{self, OffsetValue, RecordKey, VALUE_VERSION};
use crate::group::state::{Group, GroupPhase};
use crate::replica::Replication;

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
pub(super) struct PendingTxnOffset {
    pub(super) group: String,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) log_offset: i64,
    pub(super) value: Option<CommittedOffset>,
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

impl Shard {
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
        self.core.check_active()?;
        let mut t = self.lock();
        // Share groups keep no committed offsets (Kafka: "not a consumer group").
        Self::refuse_share_group(&t, group_id)?;
        if let Some(g) = t.consumer.get(group_id) {
            // KIP-848: the generation field carries the member epoch.
            g.check_commit(member_id, generation)?;
            drop(t);
            return self.append_offsets(group_id, offsets, None, now_ms);
        }
        match t.groups.get(group_id) {
            Some(g) => g.check_commit(member_id, instance_id, generation)?,
            // Commits without group management ("simple" consumers) create the group;
            // a generation from a group this coordinator has never seen is stale.
            None if generation < 0 => {
                t.groups.insert(group_id.to_string(), Group::new(group_id));
            }
            None => return Err(ResponseError::IllegalGeneration),
        }
        self.append_offsets(group_id, offsets, None, now_ms)
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
        self.core.check_active()?;
        let t = self.lock();
        Self::refuse_share_group(&t, group_id)?;
        // KIP-447: a member-aware commit is fenced like a regular one; a producer without
        // group metadata (generation -1) commits as a "simple" consumer would.
        if generation >= 0 || !member_id.is_empty() {
            match (t.groups.get(group_id), t.consumer.get(group_id)) {
                (Some(g), _) => g.check_commit(member_id, instance_id, generation)?,
                (None, Some(g)) => g.check_commit(member_id, generation)?,
                (None, None) => return Err(ResponseError::IllegalGeneration),
            }
        }
        drop(t);
        self.append_offsets(
            group_id,
            offsets,
            Some((producer_id, producer_epoch)),
            now_ms,
        )
    }

    /// Appends the offsets, in a transactional batch of `producer` when given, and
    /// returns the ticket that applies them once they are replicated.
    fn append_offsets(
        &self,
        group_id: &str,
        offsets: Vec<OffsetCommit>,
        producer: Option<(i64, i16)>,
        now_ms: i64,
    ) -> Result<CommitTicket, ResponseError> {
        let (records_out, entries) = offset_records(group_id, offsets, now_ms);
        let last_offset = self.append_as(records_out, producer, now_ms)?;
        Ok(CommitTicket {
            group: group_id.to_string(),
            last_offset,
            entries,
            producer_id: producer.map(|(id, _)| id),
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
        self.core
            .check_active()
            .map_err(|_| ResponseError::NotLeaderOrFollower)?;
        let appended = match self.core.replica.write_marker(
            producer_id,
            producer_epoch,
            kind,
            coordinator_epoch,
            crate::time::now_ms(),
        ) {
            Ok(a) => a,
            // Kafka's code (INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED, ...):
            // the coordinator takes a superseded marker as done, a client is told.
            Err(e) => return Err(crate::kafka::errors::KafkaError::from(&e).code),
        };
        let outcome = self
            .core
            .replica
            .await_replication(
                appended.info.last_offset + 1,
                self.core.leader_epoch,
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
            .core
            .replica
            .await_replication(ticket.last_offset + 1, self.core.leader_epoch, timeout)
            .await;
        if outcome == Replication::LeadershipLost || self.core.status() == ShardStatus::Closed {
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
            let offset = PendingTxnOffset {
                group: ticket.group.clone(),
                topic,
                partition,
                log_offset,
                value,
            };
            apply_offset(&mut t, ticket.producer_id, offset);
        }
        Ok(())
    }

    /// OffsetFetch v9+ from a member of a consumer group: it must hold the current epoch.
    pub fn check_fetching_member(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        self.core.check_active()?;
        let t = self.lock();
        match t.consumer.get(group_id) {
            Some(g) => g.check_member_epoch(member_id, member_epoch),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Committed offsets of a group: of the given topics and partitions, or all of them.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<TopicOffsets, ResponseError> {
        self.core.check_active()?;
        let t = self.lock();
        Self::refuse_share_group(&t, group_id)?;
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
        self.core.check_active()?;
        let t = self.lock();
        Self::refuse_share_group(&t, group_id)?;
        let description = t.groups.get(group_id).map(describe);
        let consumer_topics = Self::consumer_subscriptions(&t, group_id);
        if description.is_none() && consumer_topics.is_none() && !t.offsets.has_offsets(group_id) {
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
                .is_some_and(|d| d.state != GroupPhase::Empty && subscribed(d, &topic))
                || consumer_topics.as_ref().is_some_and(|c| c.contains(&topic));
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
        self.core.check_active()?;
        let mut t = self.lock();
        let has_offsets = t.offsets.has_offsets(group_id);
        let Tables {
            groups,
            consumer,
            share,
            ..
        } = &mut *t;
        match (
            groups.get_mut(group_id),
            consumer.get_mut(group_id),
            share.get_mut(group_id),
        ) {
            (Some(g), _, _) => g.mark_dead()?,
            (None, Some(g), _) => g.mark_dead()?,
            // Only the group record goes: the share-partitions' state is kept apart
            // (by the share-state side), which cleans it up on its own.
            (None, None, Some(g)) => g.mark_dead()?,
            (None, None, None) if has_offsets => {}
            (None, None, None) => return Err(ResponseError::GroupIdNotFound),
        }
        let doomed: Vec<(String, i32)> = t
            .offsets
            .of_group(group_id)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        t.groups.remove(group_id);
        t.consumer.remove(group_id);
        t.share.remove(group_id);
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

    /// Every committed offset this coordinator holds: (group, topic, partition, offset).
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        if self.core.check_active().is_err() {
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

    /// Drops offsets of empty groups older than `retention_ms`, and empty groups left
    /// with no offsets (Kafka's offsets.retention.minutes).
    pub fn expire_offsets(&self, retention_ms: i64, now_ms: i64) {
        if self.core.check_active().is_err() {
            return;
        }
        let mut t = self.lock();
        let mut candidates: Vec<(String, i64)> = Vec::new();
        for (id, g) in &t.groups {
            if g.phase == GroupPhase::Empty {
                candidates.push((id.clone(), g.empty_since_ms.unwrap_or(now_ms)));
            }
        }
        for (id, g) in &t.consumer {
            if g.members.is_empty() {
                candidates.push((id.clone(), g.empty_since_ms.unwrap_or(now_ms)));
            }
        }
        for id in t.offsets.groups() {
            if !t.groups.contains_key(id) && !t.consumer.contains_key(id) {
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
                && (t
                    .groups
                    .get(&id)
                    .is_some_and(|g| g.phase == GroupPhase::Empty)
                    || t.consumer.get(&id).is_some_and(|g| g.members.is_empty()));
            if group_done {
                t.groups.remove(&id);
                t.consumer.remove(&id);
                tombstones.push(records::tombstone(&RecordKey::Group { group: id.clone() }));
            }
            if !expired.is_empty() || group_done {
                info!(group = %id, offsets = expired.len(), removed = group_done, "expired group offsets");
            }
        }
        drop(t);
        if !tombstones.is_empty() {
            if let Err(e) = self.append(tombstones, now_ms) {
                warn!(partition = self.core.partition, error = ?e, "writing expiry tombstones failed");
            }
        }
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

/// A replicated offset record takes effect: at once, or for a transactional commit
/// (`producer_id`) when its producer's COMMIT marker arrives.
pub(super) fn apply_offset(t: &mut Tables, producer_id: Option<i64>, offset: PendingTxnOffset) {
    match producer_id {
        Some(pid) => t.pending_txn.entry(pid).or_default().push(offset),
        None => t.offsets.apply(
            &offset.group,
            &offset.topic,
            offset.partition,
            offset.log_offset,
            offset.value,
        ),
    }
}

/// A producer's transaction ended: its pending offsets take effect (commit) or vanish.
pub(super) fn resolve_marker(t: &mut Tables, producer_id: i64, commit: bool) {
    let Some(pending) = t.pending_txn.remove(&producer_id) else {
        return;
    };
    if commit {
        for offset in pending {
            apply_offset(t, None, offset);
        }
    }
}
