//! Committed offsets of the groups one coordinator partition owns: a pure in-memory
//! table rebuilt from the log, with Kafka's expiry rule.

use std::collections::{BTreeMap, HashMap};

/// A committed offset, with the log offset of the record that stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
    /// Where the commit sits in `__consumer_offsets`: concurrent commits of one partition
    /// are applied in log order whatever order their replication finishes in.
    pub log_offset: i64,
}

pub type TopicPartitionKey = (String, i32);

#[derive(Debug, Default)]
pub struct OffsetStore {
    groups: HashMap<String, BTreeMap<TopicPartitionKey, CommittedOffset>>,
}

impl OffsetStore {
    /// Applies a stored commit (or, with `None`, a deletion) found at `log_offset`.
    /// An older record never overwrites a newer one.
    pub fn apply(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        log_offset: i64,
        value: Option<CommittedOffset>,
    ) {
        let key = (topic.to_string(), partition);
        let offsets = self.groups.entry(group.to_string()).or_default();
        if offsets.get(&key).is_some_and(|c| c.log_offset > log_offset) {
            return;
        }
        match value {
            Some(v) => {
                offsets.insert(key, v);
            }
            None => {
                offsets.remove(&key);
            }
        }
        if offsets.is_empty() {
            self.groups.remove(group);
        }
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.groups.get(group)?.get(&(topic.to_string(), partition))
    }

    /// Every committed offset of a group, in topic and partition order.
    pub fn of_group(&self, group: &str) -> Vec<(TopicPartitionKey, CommittedOffset)> {
        self.groups
            .get(group)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn has_offsets(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    pub fn groups(&self) -> impl Iterator<Item = &String> {
        self.groups.keys()
    }

    pub fn remove_group(&mut self, group: &str) -> Vec<TopicPartitionKey> {
        self.groups
            .remove(group)
            .map(|o| o.into_keys().collect())
            .unwrap_or_default()
    }

    /// Offsets of an empty group that have outlived `offsets.retention.minutes`, counted
    /// from the later of their commit and the moment the group became empty (KIP-211): a
    /// group that is still consuming never loses its offsets.
    pub fn expired(
        &self,
        group: &str,
        empty_since_ms: i64,
        retention_ms: i64,
        now_ms: i64,
    ) -> Vec<TopicPartitionKey> {
        let Some(offsets) = self.groups.get(group) else {
            return Vec::new();
        };
        offsets
            .iter()
            .filter(|(_, c)| {
                let since = c.commit_timestamp_ms.max(empty_since_ms);
                now_ms.saturating_sub(since) >= retention_ms
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(offset: i64, at: i64, log_offset: i64) -> Option<CommittedOffset> {
        Some(CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: at,
            log_offset,
        })
    }

    #[test]
    fn later_log_records_win_whatever_the_apply_order() {
        let mut s = OffsetStore::default();
        s.apply("g", "t", 0, 10, commit(5, 0, 10));
        s.apply("g", "t", 0, 9, commit(4, 0, 9));
        assert_eq!(s.get("g", "t", 0).map(|c| c.offset), Some(5));
        s.apply("g", "t", 0, 11, None);
        assert!(s.get("g", "t", 0).is_none());
        assert!(!s.has_offsets("g"));
    }

    #[test]
    fn expiry_counts_from_the_later_of_commit_and_emptiness() {
        let mut s = OffsetStore::default();
        s.apply("g", "t", 0, 1, commit(1, 1_000, 1));
        s.apply("g", "t", 1, 2, commit(1, 5_000, 2));
        // Empty since 2_000, retention 4_000: partition 0 expires at 6_000, 1 at 9_000.
        assert!(s.expired("g", 2_000, 4_000, 5_999).is_empty());
        assert_eq!(
            s.expired("g", 2_000, 4_000, 6_000),
            vec![("t".to_string(), 0)]
        );
        assert_eq!(s.expired("g", 2_000, 4_000, 9_000).len(), 2);
    }
}
