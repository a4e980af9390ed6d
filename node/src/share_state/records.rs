//! Records of `__share_group_state`. The key follows Kafka's `ShareSnapshotKey` (version
//! 0, group id, topic id, partition), so compaction keeps one record per share-partition;
//! the value is Fjord's own JSON of [`Stored`] (only share coordinators read this topic,
//! and JSON keeps it readable and easy to extend, as `__transaction_state` does). A null
//! value is a tombstone: the state was deleted.

use fjord_storage::batch::BatchIter;
use fjord_storage::builder::{decode_records, Record};

use super::shard::Stored;
use super::ShareKey;

/// Kafka's `ShareSnapshotKey` version. Kafka's `ShareUpdateKey` (version 1) carries
/// deltas; Fjord always writes whole snapshots, so it never writes nor expects one.
const KEY_VERSION: i16 = 0;

pub fn record(key: &ShareKey, stored: Option<&Stored>) -> Record {
    Record::new(
        Some(encode_key(key)),
        stored.and_then(|s| serde_json::to_vec(s).ok()),
    )
}

fn encode_key(key: &ShareKey) -> Vec<u8> {
    let group = key.group_id.as_bytes();
    let group = &group[..group.len().min(i16::MAX as usize)];
    let mut out = Vec::with_capacity(2 + 2 + group.len() + 16 + 4);
    out.extend_from_slice(&KEY_VERSION.to_be_bytes());
    out.extend_from_slice(&(group.len() as i16).to_be_bytes());
    out.extend_from_slice(group);
    out.extend_from_slice(key.topic_id.as_bytes());
    out.extend_from_slice(&key.partition.to_be_bytes());
    out
}

fn decode_key(bytes: &[u8]) -> Option<ShareKey> {
    let version = i16::from_be_bytes(bytes.get(0..2)?.try_into().ok()?);
    if version != KEY_VERSION {
        return None;
    }
    let len = usize::try_from(i16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)).ok()?;
    let group_end = 4 + len;
    let group_id = String::from_utf8(bytes.get(4..group_end)?.to_vec()).ok()?;
    let topic_id = uuid::Uuid::from_slice(bytes.get(group_end..group_end + 16)?).ok()?;
    let rest = bytes.get(group_end + 16..)?;
    if rest.len() != 4 {
        return None;
    }
    let partition = i32::from_be_bytes(rest.try_into().ok()?);
    Some(ShareKey {
        group_id,
        topic_id,
        partition,
    })
}

/// What a run of batches held: each share-partition with its latest state (`None` for a
/// tombstone), the number of records that could not be read, and where the next read
/// starts. `offset` is that of the record, so a shard knows what to wait for.
#[derive(Debug, Default)]
pub struct Decoded {
    pub entries: Vec<(ShareKey, Option<Stored>, i64)>,
    pub skipped: usize,
    pub next_offset: Option<i64>,
}

pub fn decode(bytes: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    for batch in BatchIter::new(bytes) {
        let Ok((range, header)) = batch else {
            out.skipped += 1;
            break;
        };
        out.next_offset = Some(header.next_offset());
        if header.is_control() {
            continue;
        }
        let Ok(records) = decode_records(&bytes[range]) else {
            out.skipped += header.records_count.max(0) as usize;
            continue;
        };
        for r in records {
            let Some(key) = r.key.as_deref().and_then(decode_key) else {
                out.skipped += 1;
                continue;
            };
            let offset = r.offset;
            match r.value.as_deref().map(serde_json::from_slice::<Stored>) {
                None => out.entries.push((key, None, offset)),
                Some(Ok(s)) => out.entries.push((key, Some(s), offset)),
                Some(Err(_)) => out.skipped += 1,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::share::{ShareSnapshot, StateBatch};
    use fjord_storage::BatchBuilder;

    fn key(group: &str, partition: i32) -> ShareKey {
        ShareKey {
            group_id: group.to_string(),
            topic_id: uuid::Uuid::from_u128(0x1234_5678_9abc),
            partition,
        }
    }

    fn stored() -> Stored {
        Stored {
            leader_epoch: 4,
            snapshot: ShareSnapshot {
                snapshot_epoch: 7,
                state_epoch: 2,
                start_offset: 100,
                state_batches: vec![StateBatch {
                    first_offset: 100,
                    last_offset: 104,
                    delivery_state: 2,
                    delivery_count: 1,
                }],
            },
        }
    }

    #[test]
    fn records_round_trip_with_tombstones() {
        let mut b = BatchBuilder::new(10, 0);
        b.push(record(&key("g1", 0), Some(&stored())));
        b.push(record(&key("g2", 3), None));
        b.push(record(&key("", -1), Some(&stored())));
        let decoded = decode(&b.build());
        assert_eq!(decoded.skipped, 0);
        assert_eq!(decoded.next_offset, Some(13));
        assert_eq!(
            decoded.entries,
            vec![
                (key("g1", 0), Some(stored()), 10),
                (key("g2", 3), None, 11),
                (key("", -1), Some(stored()), 12),
            ]
        );
    }

    #[test]
    fn unreadable_keys_and_values_are_skipped() {
        let good = encode_key(&key("g", 1));
        let mut other_version = good.clone();
        other_version[1] = 1;
        let mut trailing = good.clone();
        trailing.push(0);
        let mut b = BatchBuilder::new(0, 0);
        b.push(Record::new(None, Some(b"{}".to_vec())));
        b.push(Record::new(Some(vec![0, 0, 0x7f]), None));
        b.push(Record::new(Some(other_version), None));
        b.push(Record::new(Some(good[..good.len() - 1].to_vec()), None));
        b.push(Record::new(Some(trailing), None));
        b.push(Record::new(Some(good.clone()), Some(b"not json".to_vec())));
        b.push(record(&key("g", 1), Some(&stored())));
        let decoded = decode(&b.build());
        assert_eq!(decoded.skipped, 6);
        assert_eq!(decoded.next_offset, Some(7));
        assert_eq!(decoded.entries, vec![(key("g", 1), Some(stored()), 6)]);
    }
}
