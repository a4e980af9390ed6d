//! Records of `__transaction_state`: the key is Kafka's (version 0, transactional id);
//! the value is Fjord's own JSON of [`TxnMeta`] (Kafka's readers never see this topic's
//! values, and JSON keeps the format readable and easy to extend). A null value is a
//! tombstone for an expired transactional id.

use fjord_storage::batch::BatchIter;
use fjord_storage::builder::{decode_records, Record};

use super::state::TxnMeta;

const KEY_VERSION: i16 = 0;

pub fn record(txn_id: &str, meta: Option<&TxnMeta>) -> Record {
    let mut key = Vec::with_capacity(4 + txn_id.len());
    key.extend_from_slice(&KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&(txn_id.len().min(i16::MAX as usize) as i16).to_be_bytes());
    key.extend_from_slice(txn_id.as_bytes());
    let value = meta.and_then(|m| serde_json::to_vec(m).ok());
    Record::new(Some(key), value)
}

fn decode_key(key: &[u8]) -> Option<String> {
    if key.len() < 4 || i16::from_be_bytes([key[0], key[1]]) != KEY_VERSION {
        return None;
    }
    let len = i16::from_be_bytes([key[2], key[3]]);
    let body = key.get(4..4 + usize::try_from(len).ok()?)?;
    String::from_utf8(body.to_vec()).ok()
}

/// What a run of batches held: each transactional id with its latest metadata (`None`
/// for a tombstone), the number of records that could not be read, and where the next
/// read starts.
#[derive(Debug, Default)]
pub struct Decoded {
    pub entries: Vec<(String, Option<TxnMeta>)>,
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
            let Some(id) = r.key.as_deref().and_then(decode_key) else {
                out.skipped += 1;
                continue;
            };
            match r.value.as_deref().map(serde_json::from_slice::<TxnMeta>) {
                None => out.entries.push((id, None)),
                Some(Ok(m)) => out.entries.push((id, Some(m))),
                Some(Err(_)) => out.skipped += 1,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::state::TxnState;
    use fjord_storage::BatchBuilder;

    #[test]
    fn records_round_trip() {
        let meta = TxnMeta {
            producer_id: 5,
            producer_epoch: 2,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("t".to_string(), 1)].into_iter().collect(),
            start_ms: 10,
            update_ms: 11,
        };
        let mut b = BatchBuilder::new(0, 0);
        b.push(record("app-1", Some(&meta)));
        b.push(record("app-2", None));
        let decoded = decode(&b.build());
        assert_eq!(decoded.skipped, 0);
        assert_eq!(decoded.next_offset, Some(2));
        assert_eq!(
            decoded.entries,
            vec![
                ("app-1".to_string(), Some(meta)),
                ("app-2".to_string(), None)
            ]
        );
    }
}
