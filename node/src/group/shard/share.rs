//! The shard's side of KIP-932 share groups: runs ShareGroupHeartbeats through the pure
//! membership state machine (`group::share::group`), persists the group when it changed
//! and answers once that record is replicated, so a coordinator failover never hands an
//! epoch out twice. A group id names a classic, a consumer or a share group, never two;
//! unlike the other two kinds, a share group never gives its id away, not even while
//! empty: it goes only through DeleteGroups. Share groups commit no offsets here; where
//! their members are in each partition is the share-partitions' state, kept elsewhere.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tracing::{debug, info};
use uuid::Uuid;

use super::{Pending, Shard, Tables};
use crate::group::consumer::{TopicCatalog, LEAVE_EPOCH};
use crate::group::records;
use crate::group::share::{
    ShareGroup, ShareGroupConfig, ShareGroupState, ShareHeartbeat, ShareHeartbeatAnswer,
    ShareMember,
};
use crate::group::state::GroupPhase;

/// A share group as ShareGroupDescribe shows it.
#[derive(Clone, Debug)]
pub struct ShareGroupDescription {
    pub state: ShareGroupState,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// Each member with its current assignment (with no revocation in share groups,
    /// that is also its target).
    pub members: Vec<ShareMember>,
    pub topic_names: HashMap<Uuid, String>,
}

/// What the share-group admin APIs need of a share group.
#[derive(Clone, Debug)]
pub struct ShareGroupInfo {
    pub state: ShareGroupState,
    pub members: usize,
    /// The topics whose share-partitions may have state: id -> (name, partitions).
    pub topics_with_state: BTreeMap<Uuid, (String, i32)>,
}

pub type ShareHeartbeatOutcome = Result<ShareHeartbeatAnswer, ResponseError>;

impl Shard {
    /// Whether `group_id` names a live share group.
    pub(super) fn is_share_group(t: &Tables, group_id: &str) -> bool {
        t.share.get(group_id).is_some_and(|g| !g.dead)
    }

    /// The answer to a classic or consumer group request (offsets included) on a share
    /// group's id: Kafka's "Group ... is not a consumer group".
    pub(super) fn refuse_share_group(t: &Tables, group_id: &str) -> Result<(), ResponseError> {
        if Self::is_share_group(t, group_id) {
            Err(ResponseError::GroupIdNotFound)
        } else {
            Ok(())
        }
    }

    /// Whether `group_id` is taken by a group of another kind: a classic group (one
    /// that only committed offsets included) or a consumer group.
    fn is_other_kind(t: &Tables, group_id: &str) -> bool {
        t.groups
            .get(group_id)
            .is_some_and(|g| g.phase != GroupPhase::Dead)
            || t.consumer.get(group_id).is_some_and(|g| !g.dead)
            || t.offsets.has_offsets(group_id)
    }

    /// ShareGroupHeartbeat. The answer waits for the group's record when the heartbeat
    /// changed the group.
    pub fn share_heartbeat(
        &self,
        group_id: &str,
        hb: ShareHeartbeat,
        catalog: &dyn TopicCatalog,
        config: &ShareGroupConfig,
        now_ms: i64,
    ) -> Result<Pending<ShareHeartbeatOutcome>, ResponseError> {
        self.core.check_active()?;
        let mut t = self.lock();
        if Self::is_other_kind(&t, group_id) {
            // Kafka's answer: "Group ... is not a share group." No migration exists
            // between share groups and the other kinds.
            return Err(ResponseError::GroupIdNotFound);
        }
        if hb.member_epoch != 0 && !t.share.contains_key(group_id) {
            // A member of a group this coordinator does not know (its record lost in a
            // failover): UNKNOWN_MEMBER_ID makes it join again, where Kafka's
            // GROUP_ID_NOT_FOUND would be fatal to the client.
            return Err(ResponseError::UnknownMemberId);
        }
        let group = t
            .share
            .entry(group_id.to_string())
            .or_insert_with(|| ShareGroup::new(group_id));
        let member = hb.member_id.clone();
        let epoch_before = group.group_epoch;
        let pending = match group.heartbeat(hb, catalog, config, now_ms) {
            Err(e) => {
                debug!(group = group_id, member = %member, error = ?e, "share group heartbeat refused");
                forget_if_unused(&mut t, group_id);
                return Ok(Pending::Ready(Err(e)));
            }
            Ok((answer, false)) => Pending::Ready(Ok(answer)),
            Ok((answer, true)) => {
                if answer.member_epoch == LEAVE_EPOCH {
                    info!(group = group_id, member = %answer.member_id, "member left the share group");
                }
                if group.group_epoch != epoch_before {
                    info!(
                        group = group_id,
                        member = %answer.member_id,
                        group_epoch = group.group_epoch,
                        members = group.members.len(),
                        "share group epoch moved"
                    );
                }
                let snapshot = group.clone();
                if let Err(e) = self.persist_share_group(&mut t, &snapshot) {
                    // Not durable, so not promised: the member retries with the epoch
                    // it holds, which is still accepted.
                    return Ok(Pending::Ready(Err(e)));
                }
                let (tx, rx) = oneshot::channel();
                self.deliver_persisted(&t, group_id, tx, Ok(answer), Err);
                Pending::Waiting(rx)
            }
        };
        debug!(group = group_id, member = %member, "share group heartbeat");
        Ok(pending)
    }

    fn persist_share_group(&self, t: &mut Tables, group: &ShareGroup) -> Result<(), ResponseError> {
        self.persist(t, &group.id, records::share_group_record(group))
    }

    /// ShareGroupDescribe: `Ok(None)` when there is no such group; GROUP_ID_NOT_FOUND
    /// when the id names a group of another kind.
    pub fn share_describe(
        &self,
        group_id: &str,
    ) -> Result<Option<ShareGroupDescription>, ResponseError> {
        self.core.check_active()?;
        let t = self.lock();
        if Self::is_other_kind(&t, group_id) {
            return Err(ResponseError::GroupIdNotFound);
        }
        Ok(t.share
            .get(group_id)
            .filter(|g| !g.dead)
            .map(|g| ShareGroupDescription {
                state: g.state(),
                group_epoch: g.group_epoch,
                assignment_epoch: g.assignment_epoch,
                members: g.members.values().cloned().collect(),
                topic_names: g.topic_names(),
            }))
    }

    /// The share group `group_id` for the admin APIs: `Ok(None)` when no share group has
    /// that id (none at all, or one of another kind).
    pub fn share_group_info(
        &self,
        group_id: &str,
    ) -> Result<Option<ShareGroupInfo>, ResponseError> {
        self.core.check_active()?;
        let t = self.lock();
        Ok(t.share
            .get(group_id)
            .filter(|g| !g.dead)
            .map(|g| ShareGroupInfo {
                state: g.state(),
                members: g.members.len(),
                topics_with_state: g.topics_with_state(),
            }))
    }

    /// AlterShareGroupOffsets wrote state for share-partitions of `topics` (id, name,
    /// partitions): the group remembers them, so that describing all its offsets and
    /// deleting the group find that state. Stored without waiting for replication: a
    /// lost record only hides state from those two, which the next alter or join
    /// records again.
    pub fn note_share_state_topics(
        &self,
        group_id: &str,
        topics: &[(Uuid, String, i32)],
    ) -> Result<(), ResponseError> {
        self.core.check_active()?;
        let mut t = self.lock();
        let Some(group) = t.share.get_mut(group_id).filter(|g| !g.dead) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let mut changed = false;
        for (id, name, partitions) in topics {
            changed |= group.note_state_topic(*id, name, *partitions);
        }
        if !changed {
            return Ok(());
        }
        let snapshot = group.clone();
        self.persist_share_group(&mut t, &snapshot)
    }

    /// Expires silent members of the share groups here, each group by its own config
    /// (`config_of` a group id).
    pub fn share_tick(&self, config_of: &dyn Fn(&str) -> ShareGroupConfig, now_ms: i64) {
        self.step_share_groups(|g| {
            let removed = g.tick(&config_of(&g.id), now_ms);
            for r in &removed {
                info!(group = %g.id, member = %r.member_id, reason = r.reason, "member removed from the share group");
            }
            !removed.is_empty()
        });
    }

    /// The topic catalog changed: share groups whose subscribed topics were created,
    /// deleted or grew move to a new epoch; members learn their new assignments at their
    /// next heartbeat.
    pub fn share_topics_changed(&self, catalog: &dyn TopicCatalog) {
        self.step_share_groups(|g| {
            let changed = !g.members.is_empty() && g.refresh_subscriptions(catalog);
            if changed {
                info!(group = %g.id, group_epoch = g.group_epoch, "share group's subscribed topics changed");
            }
            changed
        });
    }

    fn step_share_groups(&self, step: impl FnMut(&mut ShareGroup) -> bool) {
        self.step_member_groups(|t| &mut t.share, records::share_group_record, step);
    }
}

/// A share group that a failed first heartbeat created holds nothing worth keeping.
fn forget_if_unused(t: &mut Tables, group_id: &str) {
    if t.share
        .get(group_id)
        .is_some_and(|g| g.members.is_empty() && g.group_epoch == 0)
    {
        t.share.remove(group_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::consumer::ConsumerGroup;
    use crate::group::offsets::CommittedOffset;
    use crate::group::state::Group;

    fn tables() -> Tables {
        let mut t = Tables::default();
        t.share.insert("share".into(), ShareGroup::new("share"));
        t.consumer
            .insert("consumer".into(), ConsumerGroup::new("consumer", 0));
        t.groups.insert("classic".into(), Group::new("classic"));
        t.offsets.apply(
            "simple",
            "t",
            0,
            1,
            Some(CommittedOffset {
                offset: 5,
                leader_epoch: 0,
                metadata: None,
                commit_timestamp_ms: 0,
                log_offset: 1,
            }),
        );
        t
    }

    /// A group id is one kind of group: the share kind refuses the others' requests, and
    /// a share heartbeat is refused on any other kind (an offsets-only "simple" group
    /// included), as Kafka answers GROUP_ID_NOT_FOUND for both.
    #[test]
    fn share_group_ids_are_exclusive() {
        let mut t = tables();
        assert!(Shard::is_share_group(&t, "share"));
        assert_eq!(
            Shard::refuse_share_group(&t, "share"),
            Err(ResponseError::GroupIdNotFound)
        );
        for other in ["consumer", "classic", "simple", "unknown"] {
            assert!(!Shard::is_share_group(&t, other), "{other}");
            assert_eq!(Shard::refuse_share_group(&t, other), Ok(()), "{other}");
        }
        for other in ["consumer", "classic", "simple"] {
            assert!(Shard::is_other_kind(&t, other), "{other}");
        }
        assert!(!Shard::is_other_kind(&t, "share"));
        assert!(!Shard::is_other_kind(&t, "unknown"));
        // A deleted share group no longer holds its id.
        if let Some(g) = t.share.get_mut("share") {
            g.mark_dead().expect("an empty group may be deleted");
        }
        assert!(!Shard::is_share_group(&t, "share"));
    }

    #[test]
    fn only_a_share_group_that_never_started_is_forgotten() {
        let mut t = tables();
        forget_if_unused(&mut t, "share");
        assert!(!t.share.contains_key("share"));
        let mut used = ShareGroup::new("used");
        used.group_epoch = 3;
        t.share.insert("used".into(), used);
        forget_if_unused(&mut t, "used");
        assert!(
            t.share.contains_key("used"),
            "an empty group keeps its epoch"
        );
    }
}
