//! What a share fetch read from the log, in offsets: the range it covers (to acquire
//! from) and the cut of it worth sending (the batches holding acquired records).

use std::ops::Range;

use bytes::Bytes;
use fjord_storage::batch::BatchIter;

use crate::group::share::AcquiredRecords;

/// The offsets the batches in `bytes` cover, from the first batch's base offset to one
/// past the last batch's last offset. `None` when there is no whole batch.
pub fn covered_offsets(bytes: &[u8]) -> Option<Range<i64>> {
    let mut first: Option<i64> = None;
    let mut end: Option<i64> = None;
    for batch in BatchIter::new(bytes) {
        let Ok((_, header)) = batch else { break };
        first.get_or_insert(header.base_offset);
        end = Some(header.next_offset());
    }
    Some(first?..end?)
}

/// The batches of `bytes` that hold any acquired offset, as one contiguous slice (the
/// batches between two acquired ones are kept: the member skips what it did not
/// acquire, and the slice costs no copy). Empty when nothing was acquired.
pub fn holding(bytes: &Bytes, acquired: &[AcquiredRecords]) -> Bytes {
    let (Some(first), Some(last)) = (
        acquired.iter().map(|a| a.first_offset).min(),
        acquired.iter().map(|a| a.last_offset).max(),
    ) else {
        return Bytes::new();
    };
    let mut start: Option<usize> = None;
    let mut end = 0usize;
    for batch in BatchIter::new(bytes) {
        let Ok((range, header)) = batch else { break };
        if header.last_offset() < first {
            continue;
        }
        if header.base_offset > last {
            break;
        }
        start.get_or_insert(range.start);
        end = range.end;
    }
    match start {
        Some(s) => bytes.slice(s..end),
        None => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_storage::builder::{BatchBuilder, Record};

    fn batches(runs: &[(i64, usize)]) -> Bytes {
        let mut out = Vec::new();
        for &(base, n) in runs {
            let mut b = BatchBuilder::new(base, 1_700_000_000_000);
            for i in 0..n {
                b.push(Record::new(None, Some(vec![i as u8; 10])));
            }
            out.extend_from_slice(&b.build());
        }
        Bytes::from(out)
    }

    fn run(first: i64, last: i64) -> AcquiredRecords {
        AcquiredRecords {
            first_offset: first,
            last_offset: last,
            delivery_count: 1,
        }
    }

    #[test]
    fn covered_offsets_span_whole_batches() {
        let bytes = batches(&[(10, 5), (15, 3)]);
        assert_eq!(covered_offsets(&bytes), Some(10..18));
        assert_eq!(covered_offsets(&[]), None);
        // A torn tail counts only the whole batches before it.
        let torn = &bytes[..bytes.len() - 3];
        assert_eq!(covered_offsets(torn), Some(10..15));
    }

    #[test]
    fn only_batches_with_acquired_records_are_sent() {
        let bytes = batches(&[(0, 5), (5, 5), (10, 5), (15, 5)]);
        let one = batches(&[(5, 5)]);
        let cut = holding(&bytes, &[run(6, 7)]);
        assert_eq!(cut.len(), one.len());
        assert_eq!(covered_offsets(&cut), Some(5..10));
        let cut = holding(&bytes, &[run(4, 4), run(12, 13)]);
        assert_eq!(covered_offsets(&cut), Some(0..15));
        assert!(holding(&bytes, &[]).is_empty());
        assert!(holding(&bytes, &[run(30, 31)]).is_empty());
    }
}
