//! The shard's side of KIP-848 consumer groups: runs heartbeats through the pure state
//! machine (`group::consumer`), persists the group when it changed and answers once that
//! record is replicated, so a coordinator failover never hands out an epoch or a
//! partition twice. A group id names a classic group or a consumer group, never both; an
//! empty group of one kind may become the other.

use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tracing::info;

use super::{Pending, Shard, Tables};
use crate::group::consumer::{
    Assignment, ConsumerGroup, ConsumerGroupConfig, ConsumerGroupState, ConsumerMember, Heartbeat,
    HeartbeatAnswer, TopicCatalog,
};
use crate::group::records;
use crate::group::state::GroupPhase;

/// A consumer group as ConsumerGroupDescribe shows it.
#[derive(Clone, Debug)]
pub struct ConsumerGroupDescription {
    pub state: ConsumerGroupState,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    /// Each member with its target assignment.
    pub members: Vec<(ConsumerMember, Assignment)>,
    pub topic_names: std::collections::HashMap<uuid::Uuid, String>,
}

pub type HeartbeatOutcome = Result<HeartbeatAnswer, ResponseError>;

impl Shard {
    /// JoinGroup on a group id: a consumer group in use keeps it; an empty one gives way.
    pub(super) fn take_over_from_consumer_group(
        t: &mut Tables,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        match t.consumer.get(group_id) {
            Some(g) if !g.members.is_empty() => Err(ResponseError::InconsistentGroupProtocol),
            Some(_) => {
                t.consumer.remove(group_id);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// ConsumerGroupHeartbeat. The answer waits for the group's record when the
    /// heartbeat changed the group.
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        hb: Heartbeat,
        catalog: &dyn TopicCatalog,
        config: &ConsumerGroupConfig,
        now_ms: i64,
    ) -> Result<Pending<HeartbeatOutcome>, ResponseError> {
        self.core.check_active()?;
        let mut t = self.lock();
        // A share group's id is not a consumer group's (Kafka: GROUP_ID_NOT_FOUND).
        Self::refuse_share_group(&t, group_id)?;
        if let Some(classic) = t.groups.get(group_id) {
            if !matches!(classic.phase, GroupPhase::Empty | GroupPhase::Dead) {
                // Kafka's answer when the group uses the classic protocol and no
                // migration is allowed.
                return Err(ResponseError::GroupIdNotFound);
            }
            t.groups.remove(group_id);
        }
        if hb.member_epoch != 0 && !t.consumer.contains_key(group_id) {
            // A member of a group this coordinator does not know (a record lost in a
            // failover): it must join again.
            return Err(ResponseError::UnknownMemberId);
        }
        let group = t
            .consumer
            .entry(group_id.to_string())
            .or_insert_with(|| ConsumerGroup::new(group_id, now_ms));
        let member = hb.member_id.clone();
        let epoch_before = group.group_epoch;
        let outcome = group.heartbeat(hb, catalog, config, now_ms);
        let pending = match outcome {
            Err(e) => {
                forget_if_unused(&mut t, group_id);
                return Ok(Pending::Ready(Err(e)));
            }
            Ok((answer, false)) => Pending::Ready(Ok(answer)),
            Ok((answer, true)) => {
                if group.group_epoch != epoch_before {
                    info!(
                        group = group_id,
                        member = %answer.member_id,
                        group_epoch = group.group_epoch,
                        members = group.members.len(),
                        "consumer group epoch moved"
                    );
                }
                let snapshot = group.clone();
                if let Err(e) = self.persist_consumer_group(&mut t, &snapshot) {
                    // Not durable, so not promised: the member retries, and its
                    // previous epoch is still accepted.
                    return Ok(Pending::Ready(Err(e)));
                }
                let (tx, rx) = oneshot::channel();
                self.deliver_persisted(&t, group_id, tx, Ok(answer), Err);
                Pending::Waiting(rx)
            }
        };
        tracing::debug!(group = group_id, member = %member, "consumer group heartbeat");
        Ok(pending)
    }

    fn persist_consumer_group(
        &self,
        t: &mut Tables,
        group: &ConsumerGroup,
    ) -> Result<(), ResponseError> {
        self.persist(t, &group.id, records::consumer_group_record(group))
    }

    /// ConsumerGroupDescribe: `Ok(None)` when there is no such group; an error when the
    /// id names a classic or share group.
    pub fn consumer_describe(
        &self,
        group_id: &str,
    ) -> Result<Option<ConsumerGroupDescription>, ResponseError> {
        self.core.check_active()?;
        let t = self.lock();
        if t.groups
            .get(group_id)
            .is_some_and(|g| g.phase != GroupPhase::Dead)
            || Self::is_share_group(&t, group_id)
        {
            return Err(ResponseError::GroupIdNotFound);
        }
        Ok(t.consumer
            .get(group_id)
            .filter(|g| !g.dead)
            .map(|g| ConsumerGroupDescription {
                state: g.state(),
                group_epoch: g.group_epoch,
                assignment_epoch: g.assignment_epoch,
                assignor: g.assignor.clone(),
                members: g
                    .members
                    .values()
                    .map(|m| {
                        let target = g.target.get(&m.member_id).cloned().unwrap_or_default();
                        (m.clone(), target)
                    })
                    .collect(),
                topic_names: g.topic_names(),
            }))
    }

    /// Whether `group_id` is a consumer group, and if so the topics it consumes (for
    /// OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC).
    pub(super) fn consumer_subscriptions(
        t: &Tables,
        group_id: &str,
    ) -> Option<std::collections::BTreeSet<String>> {
        t.consumer.get(group_id).map(|g| {
            if g.members.is_empty() {
                Default::default()
            } else {
                g.subscribed.keys().cloned().collect()
            }
        })
    }

    /// Expires silent members of the consumer groups here.
    /// Expires members of every group, each by its own config (`config_of` a group id).
    pub fn consumer_tick(&self, config_of: &dyn Fn(&str) -> ConsumerGroupConfig, now_ms: i64) {
        self.step_consumer_groups(|g| {
            let removed = g.tick(&config_of(&g.id), now_ms);
            for r in &removed {
                info!(group = %g.id, member = %r.member_id, reason = r.reason, "member removed from the consumer group");
            }
            !removed.is_empty()
        });
    }

    /// The topic catalog changed: groups whose subscribed topics were created, deleted or
    /// grew move to a new epoch; members learn their new targets at their next heartbeat.
    pub fn consumer_topics_changed(&self, catalog: &dyn TopicCatalog) {
        self.step_consumer_groups(|g| {
            let changed = !g.members.is_empty() && g.refresh_subscriptions(catalog);
            if changed {
                info!(group = %g.id, group_epoch = g.group_epoch, "consumer group's subscribed topics changed");
            }
            changed
        });
    }

    fn step_consumer_groups(&self, step: impl FnMut(&mut ConsumerGroup) -> bool) {
        self.step_member_groups(|t| &mut t.consumer, records::consumer_group_record, step);
    }
}

/// A consumer group that a failed first heartbeat created holds nothing worth keeping.
fn forget_if_unused(t: &mut Tables, group_id: &str) {
    let unused = t
        .consumer
        .get(group_id)
        .is_some_and(|g| g.members.is_empty() && g.group_epoch == 0);
    if unused && !t.offsets.has_offsets(group_id) {
        t.consumer.remove(group_id);
    }
}
