//! How committed offsets and group metadata are stored as records of `__consumer_offsets`.
//!
//! Keys identify what a record is about, so compaction keeps exactly the latest offset per
//! (group, topic, partition) and the latest metadata per group; a record without a value
//! (a tombstone) deletes it. Keys and values are JSON: the topic is internal to Fjord, and
//! readable records make `fjord consume __consumer_offsets` a debugging tool. Every value
//! carries a version so the format can grow.

use fjord_storage::batch::BatchIter;
use fjord_storage::builder::{decode_records, Record};
use serde::{Deserialize, Serialize};

use super::consumer::ConsumerGroup;
use super::share::ShareGroup;
use super::state::GroupSnapshot;

/// What a record of `__consumer_offsets` is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum KeyRepr {
    /// `["offset", group, topic, partition]`
    Offset(String, String, String, i32),
    /// `["group", group]`
    Group(String, String),
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let repr = match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => KeyRepr::Offset("offset".into(), group.clone(), topic.clone(), *partition),
            RecordKey::Group { group } => KeyRepr::Group("group".into(), group.clone()),
        };
        // Serializing plain strings and integers cannot fail.
        serde_json::to_vec(&repr).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<RecordKey> {
        match serde_json::from_slice::<KeyRepr>(bytes).ok()? {
            KeyRepr::Offset(kind, group, topic, partition) if kind == "offset" => {
                Some(RecordKey::Offset {
                    group,
                    topic,
                    partition,
                })
            }
            KeyRepr::Group(kind, group) if kind == "group" => Some(RecordKey::Group { group }),
            _ => None,
        }
    }
}

/// A committed offset as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetValue {
    pub version: u16,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

/// Group metadata as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupValue {
    pub version: u16,
    #[serde(flatten)]
    pub group: GroupSnapshot,
}

/// A KIP-848 consumer group as stored, under the same key as a classic group's
/// metadata: a group is one or the other, and compaction keeps whichever came last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupValue {
    pub version: u16,
    pub consumer_group: ConsumerGroup,
}

/// A KIP-932 share group as stored, under the same key again: a group id names one
/// kind of group, and a tombstone of that key deletes whichever it is. Share groups
/// commit no offsets; their share-partitions' progress is not stored here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareGroupValue {
    pub version: u16,
    pub share_group: ShareGroup,
}

/// Any kind of group record; the consumer and share kinds are tried first, as only
/// they have the `consumer_group` or `share_group` field.
#[derive(Deserialize)]
#[serde(untagged)]
enum AnyGroupValue {
    Consumer(ConsumerGroupValue),
    Share(ShareGroupValue),
    Classic(GroupValue),
}

/// A group as loaded from its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredGroup {
    Classic(Box<GroupSnapshot>),
    Consumer(Box<ConsumerGroup>),
    Share(Box<ShareGroup>),
}

pub const VALUE_VERSION: u16 = 1;

pub fn offset_record(group: &str, topic: &str, partition: i32, value: &OffsetValue) -> Record {
    let key = RecordKey::Offset {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
    };
    Record::new(Some(key.encode()), serde_json::to_vec(value).ok())
}

pub fn group_record(snapshot: &GroupSnapshot) -> Record {
    let key = RecordKey::Group {
        group: snapshot.group_id.clone(),
    };
    let value = GroupValue {
        version: VALUE_VERSION,
        group: snapshot.clone(),
    };
    Record::new(Some(key.encode()), serde_json::to_vec(&value).ok())
}

pub fn consumer_group_record(group: &ConsumerGroup) -> Record {
    let key = RecordKey::Group {
        group: group.id.clone(),
    };
    let value = ConsumerGroupValue {
        version: VALUE_VERSION,
        consumer_group: group.clone(),
    };
    Record::new(Some(key.encode()), serde_json::to_vec(&value).ok())
}

pub fn share_group_record(group: &ShareGroup) -> Record {
    let key = RecordKey::Group {
        group: group.id.clone(),
    };
    let value = ShareGroupValue {
        version: VALUE_VERSION,
        share_group: group.clone(),
    };
    Record::new(Some(key.encode()), serde_json::to_vec(&value).ok())
}

pub fn tombstone(key: &RecordKey) -> Record {
    Record::new(Some(key.encode()), None)
}

/// One decoded record of the partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        /// `None` deletes the committed offset.
        value: Option<OffsetValue>,
        /// Set for a transactional commit (TxnOffsetCommit): it takes effect only when
        /// that producer's COMMIT marker follows.
        producer_id: Option<i64>,
    },
    /// A transaction marker: `commit` applies the producer's pending offsets, an abort
    /// drops them.
    Marker { producer_id: i64, commit: bool },
    Group {
        group: String,
        /// `None` deletes the group.
        value: Option<StoredGroup>,
    },
}

/// What a run of batches held.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Each entry with its log offset.
    pub entries: Vec<(i64, Entry)>,
    /// Records Fjord could not read (foreign keys, corrupt values).
    pub skipped: usize,
    /// The offset after the last whole batch, where the next read starts.
    pub next_offset: Option<i64>,
}

/// Decodes the records of a run of batches read from the partition. Records Fjord cannot
/// read are skipped and counted, never fatal: a coordinator must load what it can.
pub fn decode_entries(bytes: &[u8]) -> Decoded {
    let mut entries = Vec::new();
    let mut skipped = 0;
    let mut next_offset = None;
    for batch in BatchIter::new(bytes) {
        let Ok((range, header)) = batch else {
            skipped += 1;
            break;
        };
        next_offset = Some(header.next_offset());
        if header.is_control() {
            if let Ok(Some(kind)) = fjord_storage::control::control_type(&bytes[range]) {
                entries.push((
                    header.base_offset,
                    Entry::Marker {
                        producer_id: header.producer_id,
                        commit: kind == fjord_storage::control::ControlType::Commit,
                    },
                ));
            }
            continue;
        }
        let txn_producer = header.is_transactional().then_some(header.producer_id);
        let Ok(records) = decode_records(&bytes[range]) else {
            skipped += header.records_count.max(0) as usize;
            continue;
        };
        for r in records {
            match r.key.as_deref().and_then(RecordKey::decode) {
                Some(RecordKey::Offset {
                    group,
                    topic,
                    partition,
                }) => {
                    let value = match r.value.as_deref() {
                        None => None,
                        Some(v) => match serde_json::from_slice::<OffsetValue>(v) {
                            Ok(v) => Some(v),
                            Err(_) => {
                                skipped += 1;
                                continue;
                            }
                        },
                    };
                    entries.push((
                        r.offset,
                        Entry::Offset {
                            group,
                            topic,
                            partition,
                            value,
                            producer_id: txn_producer,
                        },
                    ));
                }
                Some(RecordKey::Group { group }) => {
                    let value = match r.value.as_deref() {
                        None => None,
                        Some(v) => match serde_json::from_slice::<AnyGroupValue>(v) {
                            Ok(AnyGroupValue::Classic(v)) => {
                                Some(StoredGroup::Classic(Box::new(v.group)))
                            }
                            Ok(AnyGroupValue::Consumer(v)) => {
                                Some(StoredGroup::Consumer(Box::new(v.consumer_group)))
                            }
                            Ok(AnyGroupValue::Share(v)) => {
                                Some(StoredGroup::Share(Box::new(v.share_group)))
                            }
                            Err(_) => {
                                skipped += 1;
                                continue;
                            }
                        },
                    };
                    entries.push((r.offset, Entry::Group { group, value }));
                }
                None => skipped += 1,
            }
        }
    }
    Decoded {
        entries,
        skipped,
        next_offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_storage::builder::BatchBuilder;

    #[test]
    fn keys_round_trip_and_differ_by_kind() {
        let o = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        let g = RecordKey::Group { group: "g".into() };
        assert_eq!(RecordKey::decode(&o.encode()), Some(o.clone()));
        assert_eq!(RecordKey::decode(&g.encode()), Some(g.clone()));
        assert_ne!(o.encode(), g.encode());
        assert_eq!(RecordKey::decode(b"[\"other\",\"g\"]"), None);
        assert_eq!(RecordKey::decode(b"garbage"), None);
    }

    #[test]
    fn entries_decode_from_batches_with_tombstones() {
        let value = OffsetValue {
            version: VALUE_VERSION,
            offset: 42,
            leader_epoch: 1,
            metadata: Some("m".into()),
            commit_timestamp_ms: 7,
        };
        let snapshot = GroupSnapshot {
            group_id: "g".into(),
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            generation: 4,
            leader: None,
            members: Vec::new(),
            empty_since_ms: None,
        };
        let mut b = BatchBuilder::new(100, 0);
        b.push(offset_record("g", "t", 0, &value));
        b.push(group_record(&snapshot));
        b.push(tombstone(&RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        }));
        b.push(Record::new(
            Some(b"not a key".to_vec()),
            Some(b"x".to_vec()),
        ));
        let Decoded {
            entries,
            skipped,
            next_offset,
        } = decode_entries(&b.build());
        assert_eq!(skipped, 1);
        assert_eq!(next_offset, Some(104));
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[0],
            (
                100,
                Entry::Offset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 0,
                    value: Some(value),
                    producer_id: None,
                }
            )
        );
        assert!(
            matches!(&entries[1], (101, Entry::Group { value: Some(StoredGroup::Classic(s)), .. }) if s.generation == 4)
        );
        assert!(matches!(
            &entries[2],
            (102, Entry::Offset { value: None, .. })
        ));
    }

    /// A share group's record decodes as a share group (not as the classic or consumer
    /// kind stored under the same key), with its members, epochs and assignments, and
    /// its tombstone deletes it.
    #[test]
    fn share_group_records_round_trip() {
        use crate::group::consumer::{TopicCatalog, TopicInfo};
        use crate::group::share::{ShareGroupConfig, ShareHeartbeat};

        struct One;
        impl TopicCatalog for One {
            fn by_name(&self, name: &str) -> Option<TopicInfo> {
                (name == "t").then(|| TopicInfo {
                    name: "t".into(),
                    id: uuid::Uuid::from_u128(7),
                    partitions: 3,
                })
            }
            fn visible(&self, _: &str, _: &str, _: &str) -> bool {
                true
            }
            fn names(&self) -> Vec<String> {
                vec!["t".into()]
            }
        }
        let mut group = ShareGroup::new("sg");
        for member in ["m1", "m2"] {
            let hb = ShareHeartbeat {
                member_id: member.into(),
                member_epoch: 0,
                rack_id: Some("r1".into()),
                subscribed_topic_names: Some(vec!["t".into()]),
                client_id: "c".into(),
                client_host: "/h".into(),
            };
            group
                .heartbeat(hb, &One, &ShareGroupConfig::default(), 1_000)
                .expect("joins");
        }
        let mut b = BatchBuilder::new(10, 0);
        b.push(share_group_record(&group));
        b.push(tombstone(&RecordKey::Group { group: "sg".into() }));
        let decoded = decode_entries(&b.build());
        assert_eq!(decoded.skipped, 0);
        let [(
            10,
            Entry::Group {
                group: id,
                value: Some(StoredGroup::Share(stored)),
            },
        ), (11, Entry::Group { value: None, .. })] = decoded.entries.as_slice()
        else {
            panic!("{:?}", decoded.entries);
        };
        assert_eq!(id, "sg");
        // The session clock is not stored: a loaded group restarts every session.
        let restored = stored.as_ref().clone().restore(1_000);
        assert_eq!(restored, group);
        assert_eq!(restored.members.len(), 2);
        assert_eq!(restored.group_epoch, 2);
        let assigned: usize = restored
            .members
            .values()
            .flat_map(|m| m.assigned.values())
            .map(|ps| ps.len())
            .sum();
        assert!(assigned >= 3, "every partition assigned: {restored:?}");
    }
}
