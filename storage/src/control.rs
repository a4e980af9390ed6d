//! Transaction markers: the control batches that end a producer's transaction on a
//! partition. Kafka's format: one record whose key is (version: i16 = 0, type: i16) with
//! type 0 for abort and 1 for commit, and whose value is (version: i16 = 0,
//! coordinator epoch: i32).

use crate::batch::BatchHeader;
use crate::builder::{decode_records, BatchBuilder, Record};
use crate::error::StorageError;
use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
}

/// A marker batch for `producer_id` at `producer_epoch`, offset 0 (the log assigns it).
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    kind: ControlType,
    coordinator_epoch: i32,
    now_ms: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.code().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut builder = BatchBuilder::new(0, now_ms)
        .producer(producer_id, producer_epoch, -1)
        .transactional(true)
        .control(true);
    builder.push(Record::new(Some(key), Some(value)));
    builder.build()
}

/// A transaction marker as its control record holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    pub kind: ControlType,
    /// The epoch of the coordinator that wrote it (-1 when the record has none): a
    /// partition refuses later markers from older coordinators, as Kafka does.
    pub coordinator_epoch: i32,
}

/// The kind of a control batch, read from its first record's key. `None` for control
/// types other than transaction markers (Kafka has others; none end a transaction).
pub fn control_type(batch: &[u8]) -> Result<Option<ControlType>> {
    Ok(marker(batch)?.map(|m| m.kind))
}

/// The transaction marker of a control batch: its kind from the first record's key and
/// its coordinator epoch from the value. `None` for other control types.
pub fn marker(batch: &[u8]) -> Result<Option<Marker>> {
    let header = BatchHeader::parse(batch)?;
    if !header.is_control() {
        return Err(StorageError::CorruptBatch("not a control batch".into()));
    }
    let records = decode_records(batch)?;
    let first = records
        .first()
        .ok_or_else(|| StorageError::CorruptBatch("control batch without a record".into()))?;
    let key = first
        .key
        .as_deref()
        .ok_or_else(|| StorageError::CorruptBatch("control batch without a key".into()))?;
    if key.len() < 4 {
        return Err(StorageError::CorruptBatch(format!(
            "control record key of {} bytes",
            key.len()
        )));
    }
    let kind = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        _ => return Ok(None),
    };
    // A value too short to hold the epoch fences nothing; it still ends the transaction,
    // which is what matters to readers, so it is not treated as corrupt.
    let coordinator_epoch = match first.value.as_deref() {
        Some([_, _, a, b, c, d, ..]) => i32::from_be_bytes([*a, *b, *c, *d]),
        _ => -1,
    };
    Ok(Some(Marker {
        kind,
        coordinator_epoch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate;

    #[test]
    fn markers_round_trip_and_validate() {
        for kind in [ControlType::Abort, ControlType::Commit] {
            let b = marker_batch(42, 3, kind, 7, 1_000);
            let h = validate(&b).expect("valid batch");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch), (42, 3));
            assert_eq!(control_type(&b).expect("decodes"), Some(kind));
            assert_eq!(
                marker(&b).expect("decodes"),
                Some(Marker {
                    kind,
                    coordinator_epoch: 7
                })
            );
        }
    }

    #[test]
    fn data_batches_are_not_markers() {
        let mut b = BatchBuilder::new(0, 0);
        b.push(Record::new(None, Some(b"x".to_vec())));
        assert!(control_type(&b.build()).is_err());
    }
}
