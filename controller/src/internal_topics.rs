//! What no client may do to an internal topic (`__consumer_offsets`,
//! `__transaction_state`, `__share_group_state`): delete it, add partitions to it (a
//! group, transactional id or share-partition is hashed onto a partition by the
//! partition count, so a new count loses every coordinator's state), or lower its
//! replication factor. Reassignments that keep or
//! raise the replica count stay allowed: drains and balancing move these replicas too.
//!
//! Refusals use Kafka's INVALID_TOPIC_EXCEPTION ("cannot append to internal topic" is the
//! same code). The controller checks before proposing, so the apply step, which replays
//! old log entries, is unchanged.

use crate::metadata::{ClusterMetadata, MetadataError, Reassignment};

fn internal(md: &ClusterMetadata, topic: &str) -> bool {
    md.topics.get(topic).is_some_and(|t| t.internal)
}

/// Why `topic` may not be deleted, if it may not.
pub fn deletion_refused(md: &ClusterMetadata, topic: &str) -> Option<MetadataError> {
    internal(md, topic).then(|| {
        MetadataError::InvalidTopic(format!(
            "topic {topic} is internal: it cannot be deleted (it holds the cluster's group offsets or transaction state)"
        ))
    })
}

/// Why `topic` may not get more partitions, if it may not.
pub fn new_partitions_refused(md: &ClusterMetadata, topic: &str) -> Option<MetadataError> {
    internal(md, topic).then(|| {
        MetadataError::InvalidTopic(format!(
            "topic {topic} is internal: its partition count cannot change (groups and transactional ids are hashed onto its partitions)"
        ))
    })
}

/// Why `change` may not run, if it may not: a target with fewer replicas than an
/// internal partition has now.
pub fn reassignment_refused(md: &ClusterMetadata, change: &Reassignment) -> Option<MetadataError> {
    let target = change.target.as_ref()?;
    if !internal(md, &change.topic) {
        return None;
    }
    let current = md
        .partition(&change.topic, change.partition)?
        .original_replicas()
        .len();
    (target.len() < current).then(|| {
        MetadataError::InvalidTopic(format!(
            "topic {} is internal: its replication factor cannot be lowered ({current} replicas, target {target:?})",
            change.topic
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionState, TopicState};

    fn md() -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        for (name, internal) in [("__consumer_offsets", true), ("orders", false)] {
            md.topics.insert(
                name.to_string(),
                TopicState {
                    name: name.to_string(),
                    id: uuid::Uuid::new_v4(),
                    configs: Default::default(),
                    partitions: vec![PartitionState::new(vec![1, 2, 3])],
                    internal,
                },
            );
        }
        md
    }

    fn move_to(topic: &str, target: Vec<i32>) -> Reassignment {
        Reassignment {
            topic: topic.into(),
            partition: 0,
            target: Some(target),
        }
    }

    #[test]
    fn internal_topics_cannot_be_deleted_or_grown() {
        let md = md();
        assert!(deletion_refused(&md, "__consumer_offsets").is_some());
        assert!(new_partitions_refused(&md, "__consumer_offsets").is_some());
        assert!(deletion_refused(&md, "orders").is_none());
        assert!(new_partitions_refused(&md, "orders").is_none());
        assert!(deletion_refused(&md, "missing").is_none());
    }

    #[test]
    fn internal_replicas_may_move_but_not_shrink() {
        let md = md();
        assert!(reassignment_refused(&md, &move_to("__consumer_offsets", vec![2, 3, 4])).is_none());
        assert!(
            reassignment_refused(&md, &move_to("__consumer_offsets", vec![1, 2, 3, 4])).is_none()
        );
        assert!(reassignment_refused(&md, &move_to("__consumer_offsets", vec![1, 2])).is_some());
        assert!(reassignment_refused(&md, &move_to("orders", vec![1])).is_none());
        let cancel = Reassignment {
            topic: "__consumer_offsets".into(),
            partition: 0,
            target: None,
        };
        assert!(reassignment_refused(&md, &cancel).is_none());
    }
}
