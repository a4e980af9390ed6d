//! The fast path of record reading. Nearly every produced record is well formed and
//! lies whole in the bytes at hand, so these readers take such records straight from a
//! slice, a few varints at a time, instead of a byte at a time through an `Input`.
//! They are a module of their own because of the promise they keep: they accept only
//! records that the byte reader (`read_record_slow`) accepts, with the same fields and
//! size, and leave every other record to it, which finds and reports what is wrong.
//! Their tests, here too, hold them to that promise.

use super::RecordFields;

/// A varint at `buf[pos..]` as [`varint`](super::varint) reads it, and the position
/// past it; `None` wherever [`varint`](super::varint) would fail, or where `buf` ends
/// first. One- and two-byte varints (every length below 8 KiB) take no loop.
#[inline(always)]
fn slice_varint(buf: &[u8], pos: usize, max_bytes: u32, bits: u32) -> Option<(i64, usize)> {
    let zigzag = |z: u64| ((z >> 1) as i64) ^ -((z & 1) as i64);
    let first = *buf.get(pos)?;
    if first < 0x80 {
        return Some((zigzag(u64::from(first)), pos + 1));
    }
    let second = *buf.get(pos + 1)?;
    if second < 0x80 && max_bytes >= 2 {
        let z = u64::from(first & 0x7f) | u64::from(second) << 7;
        return Some((zigzag(z), pos + 2));
    }
    let (z, next) = slice_varint_long(buf, pos, max_bytes, bits)?;
    Some((zigzag(z), next))
}

/// [`slice_varint`] past two bytes: the zigzag value, not yet decoded, and the position
/// past it.
#[inline(never)]
fn slice_varint_long(buf: &[u8], pos: usize, max_bytes: u32, bits: u32) -> Option<(u64, usize)> {
    let mut z: u64 = 0;
    for (i, &b) in buf.get(pos..)?.iter().take(max_bytes as usize).enumerate() {
        z |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if bits < 64 && z >> bits != 0 {
                return None;
            }
            return Some((z, pos + i + 1));
        }
    }
    None
}

/// The position past `n` bytes of `buf` from `pos`, if `buf` has them.
#[inline(always)]
fn slice_skip(buf: &[u8], pos: usize, n: i64) -> Option<usize> {
    let end = pos.checked_add(usize::try_from(n).ok()?)?;
    (end <= buf.len()).then_some(end)
}

/// The common case of [`read_record`](super::read_record), on the bytes at hand: a
/// well-formed record that lies whole in `buf`. Returns its fields and size in one pass
/// over its varints, and looks at no key, value or header byte. `None` for anything
/// else (a record cut by the end of `buf`, or malformed in any way);
/// [`read_record_slow`](super::read_record_slow) then reads it again and says what is
/// wrong. So this accepts only records that it accepts, with the same fields and size.
#[inline(always)]
pub(super) fn read_record_fast(buf: &[u8]) -> Option<(RecordFields, usize)> {
    match read_record_words(buf) {
        Some(record) => Some(record),
        None => read_record_fields(buf),
    }
}

/// Eight bytes of `buf` from `pos`, little-endian, if it has them.
#[inline(always)]
fn word_at(buf: &[u8], pos: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(pos..pos.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// A varint of one to three bytes at the low end of `w` (bytes in little-endian order),
/// decoded, and its size; `None` for a longer one. Three bytes hold 21 bits, so it is
/// what [`varint`](super::varint) reads for an int or a long alike.
#[inline(always)]
fn word_varint(w: u64) -> Option<(i64, usize)> {
    let (z, size) = if w & 0x80 == 0 {
        (w & 0x7f, 1)
    } else if w & 0x8000 == 0 {
        ((w & 0x7f) | (w >> 1) & 0x3f80, 2)
    } else if w & 0x80_0000 == 0 {
        ((w & 0x7f) | (w >> 1) & 0x3f80 | (w >> 2) & 0x1f_c000, 3)
    } else {
        return None;
    };
    Some((((z >> 1) as i64) ^ -((z & 1) as i64), size))
}

/// The commonest records, as [`read_record_fields`] reads them but from a few
/// eight-byte words instead of a byte at a time: varints of three bytes at most, no
/// headers, 16 bytes at hand from the start and eight from the value length. `None`
/// for anything else.
#[inline(always)]
fn read_record_words(buf: &[u8]) -> Option<(RecordFields, usize)> {
    // Length, attributes, timestamp and offset deltas and key length: 13 bytes at most.
    let head: &[u8; 16] = buf.first_chunk()?;
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(*head.get(at..)?.first_chunk::<8>()?))
    };
    let (len, pos) = word_varint(word(0)?)?;
    let end = pos.checked_add(usize::try_from(len).ok()?)?;
    if end > buf.len() {
        return None;
    }
    // The attributes byte at `pos`, then the timestamp and offset deltas.
    let w = word(pos + 1)?;
    let (timestamp_delta, ts_size) = word_varint(w)?;
    let (offset_delta, offset_size) = word_varint(w >> (8 * ts_size))?;
    let deltas = ts_size + offset_size;
    let pos = pos + 1 + deltas;
    // The key length: in the same word when the deltas leave three bytes of it.
    let (key_len, size) = word_varint(if deltas <= 5 {
        w >> (8 * deltas)
    } else {
        word_at(buf, pos)?
    })?;
    if key_len < -1 {
        return None;
    }
    let pos = (pos + size).checked_add(key_len.max(0) as usize)?;
    let (value_len, size) = word_varint(word_at(buf, pos)?)?;
    if value_len < -1 {
        return None;
    }
    let pos = (pos + size).checked_add(value_len.max(0) as usize)?;
    // No headers, and the fields end where the record does.
    if pos + 1 != end || *buf.get(pos)? != 0 {
        return None;
    }
    Some((
        RecordFields {
            timestamp_delta,
            offset_delta,
            has_key: key_len >= 0,
        },
        end,
    ))
}

/// [`read_record_fast`] for any record that lies whole in `buf`: headers, long varints.
#[inline(never)]
fn read_record_fields(buf: &[u8]) -> Option<(RecordFields, usize)> {
    let (len, pos) = slice_varint(buf, 0, 5, 32)?;
    let end = slice_skip(buf, pos, len)?;
    // The fields must end where the record does: read them inside it.
    let record = &buf[..end];
    let pos = slice_skip(record, pos, 1)?; // attributes
    let (timestamp_delta, pos) = slice_varint(record, pos, 10, 64)?;
    let (offset_delta, pos) = slice_varint(record, pos, 5, 32)?;
    let (key_len, mut pos) = slice_varint(record, pos, 5, 32)?;
    if key_len < -1 {
        return None;
    }
    if key_len > 0 {
        pos = slice_skip(record, pos, key_len)?;
    }
    let (value_len, mut pos) = slice_varint(record, pos, 5, 32)?;
    if value_len < -1 {
        return None;
    }
    if value_len > 0 {
        pos = slice_skip(record, pos, value_len)?;
    }
    let (headers, mut pos) = slice_varint(record, pos, 5, 32)?;
    if headers < 0 {
        return None;
    }
    // Each header takes two bytes at least, so a huge count runs out of record soon.
    for _ in 0..headers {
        let (key, next) = slice_varint(record, pos, 5, 32)?;
        if key < 0 {
            return None;
        }
        let (value, next) = slice_varint(record, slice_skip(record, next, key)?, 5, 32)?;
        if value < -1 {
            return None;
        }
        pos = if value > 0 {
            slice_skip(record, next, value)?
        } else {
            next
        };
    }
    if pos != end {
        return None;
    }
    Some((
        RecordFields {
            timestamp_delta,
            offset_delta,
            has_key: key_len >= 0,
        },
        end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch;
    use crate::builder::{BatchBuilder, Record};
    use crate::validate::tests::{good, put_varint, record, NOW};
    use crate::validate::{read_record_slow, varint, SliceInput};

    /// Every way of reading a varint from a slice: the byte-at-a-time reader the stream
    /// path uses, and the slice fast path. Each is `Some((value, bytes))` or `None`.
    fn both_varints(bytes: &[u8], max_bytes: u32, bits: u32) -> [Option<(i64, usize)>; 2] {
        let mut input = SliceInput { buf: bytes, pos: 0 };
        let slow = varint(&mut input, max_bytes, bits)
            .ok()
            .map(|v| (v, input.pos));
        [slow, slice_varint(bytes, 0, max_bytes, bits)]
    }

    #[test]
    fn the_varint_fast_path_reads_what_the_byte_reader_reads() {
        let edges = [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            8191,
            -8192,
            8192,
            1 << 20,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN) - 1,
            i64::MAX,
            i64::MIN,
            i64::MAX - 1,
            i64::MIN + 1,
        ];
        for v in edges {
            let mut enc = Vec::new();
            put_varint(&mut enc, v);
            let fits32 = i32::try_from(v).is_ok();
            for (max_bytes, bits) in [(5, 32), (10, 64)] {
                let [slow, fast] = both_varints(&enc, max_bytes, bits);
                assert_eq!(fast, slow, "{v} in {max_bytes} bytes");
                if bits == 64 || fits32 {
                    assert_eq!(fast, Some((v, enc.len())), "{v} in {max_bytes} bytes");
                } else {
                    assert_eq!(fast, None, "{v} does not fit 32 bits");
                }
                // Cut anywhere: an error, never a panic.
                for cut in 0..enc.len() {
                    assert_eq!(both_varints(&enc[..cut], max_bytes, bits), [None, None]);
                }
                // Followed by more bytes: read the same and stop where it ends.
                let mut padded = enc.clone();
                padded.extend_from_slice(&[0xff; 12]);
                assert_eq!(
                    both_varints(&padded, max_bytes, bits),
                    [fast, fast],
                    "{v} padded"
                );
            }
        }
        // i32::MAX and i32::MIN take all five bytes; i64's take ten.
        let mut enc = Vec::new();
        put_varint(&mut enc, i64::from(i32::MIN));
        assert_eq!(enc.len(), 5);
        enc.clear();
        put_varint(&mut enc, i64::MIN);
        assert_eq!(enc.len(), 10);
        // Too long: six bytes for an int, eleven for a long, or a padded small value.
        for (bytes, max_bytes, bits) in [
            (&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00][..], 5, 32),
            (&[0x81, 0x80, 0x80, 0x80, 0x80, 0x00][..], 5, 32),
            (&[0xff; 11][..], 10, 64),
            (
                &[
                    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
                ][..],
                10,
                64,
            ),
            // Five bytes whose value needs 33 bits or more.
            (&[0xff, 0xff, 0xff, 0xff, 0x1f][..], 5, 32),
            (&[0x80, 0x80, 0x80, 0x80, 0x7f][..], 5, 32),
        ] {
            assert_eq!(
                both_varints(bytes, max_bytes, bits),
                [None, None],
                "{bytes:?}"
            );
        }
        // Zero-padded but within the limit: both take it, as Kafka's reader does.
        assert_eq!(
            both_varints(&[0x82, 0x80, 0x00], 5, 32),
            [Some((1, 3)), Some((1, 3))]
        );
    }

    /// The record fast path against the byte reader on the same bytes: whatever the fast
    /// path accepts, the byte reader accepts with the same fields and size.
    fn fast_agrees_with_slow(bytes: &[u8]) -> std::result::Result<(), String> {
        let fast = read_record_fast(bytes);
        // Both fast readers on their own, and the one in front when both take it.
        let (words, fields) = (read_record_words(bytes), read_record_fields(bytes));
        if words.is_some() && words != fields {
            return Err(format!("words {words:?}, fields {fields:?}"));
        }
        if fast != words.or(fields) {
            return Err(format!("fast {fast:?}"));
        }
        for (fields, size) in [words, fields].into_iter().flatten() {
            let mut input = SliceInput { buf: bytes, pos: 0 };
            match read_record_slow(&mut input) {
                Ok(slow) if slow == fields && input.pos == size => {}
                Ok(slow) => {
                    return Err(format!(
                        "fast {fields:?} in {size} bytes, slow {slow:?} in {}",
                        input.pos
                    ))
                }
                Err(_) => return Err(format!("fast accepts {fields:?}, slow refuses")),
            }
        }
        Ok(())
    }

    #[test]
    fn the_record_fast_path_takes_well_formed_records_and_leaves_the_rest() {
        let plain = good(20);
        let body = &plain[batch::HEADER_SIZE..];
        let mut pos = 0;
        for i in 0..20 {
            let (fields, size) = read_record_fast(&body[pos..]).expect("well formed");
            assert_eq!(fields.offset_delta, i);
            assert_eq!(fields.timestamp_delta, i);
            assert!(fields.has_key);
            fast_agrees_with_slow(&body[pos..]).expect("agrees");
            pos += size;
        }
        assert_eq!(pos, body.len());
        // A record cut anywhere is left to the byte reader.
        let one = record(0, None, b"value");
        assert_eq!(
            read_record_fast(&one).map(|(f, n)| (f.has_key, n)),
            Some((false, one.len()))
        );
        for cut in 0..one.len() {
            assert!(read_record_fast(&one[..cut]).is_none(), "cut at {cut}");
        }
        // Without headers and with eight bytes at hand, the word reader takes it too.
        let mut padded = one.clone();
        padded.extend_from_slice(&[0xff; 8]);
        assert_eq!(read_record_words(&padded), read_record_fields(&padded));
        assert!(read_record_words(&padded).is_some());
        // Three-byte varints too, and four-byte ones are left to the field reader.
        for (offset_delta, words) in [(8192, true), (1 << 20, false)] {
            let mut r = record(offset_delta, Some(b"k"), &[b'v'; 100]);
            r.extend_from_slice(&[0; 8]);
            assert_eq!(read_record_words(&r).is_some(), words, "{offset_delta}");
            let (fields, _) = read_record_fast(&r).expect("well formed");
            assert_eq!(fields.offset_delta, offset_delta);
            fast_agrees_with_slow(&r).expect("agrees");
        }
        // A length that disagrees with the fields, either way.
        let mut long = one.clone();
        long[0] += 2; // one more byte declared
        long.push(0);
        assert!(read_record_fast(&long).is_none());
        let mut short = one.clone();
        short[0] -= 2;
        assert!(read_record_fast(&short).is_none());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Any bytes: the record fast path never accepts what the byte reader refuses,
            /// and agrees with it on what both accept.
            #[test]
            fn the_record_fast_path_is_a_subset_of_the_byte_reader(
                bytes in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                prop_assert_eq!(fast_agrees_with_slow(&bytes), Ok(()));
            }

            /// Records with fields of any size (headers too), whole or mutated: same answer.
            #[test]
            fn the_record_fast_path_agrees_on_records_of_any_shape(
                ts in any::<i64>(),
                key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
                value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                headers in proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 0..20),
                     proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20))),
                    0..4,
                ),
                flip in proptest::option::of((any::<usize>(), any::<u8>())),
            ) {
                let mut r = Record::new(key, value);
                r.timestamp_delta = ts;
                r.headers = headers
                    .into_iter()
                    .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                    .collect();
                let mut b = BatchBuilder::new(0, NOW);
                b.push(r);
                let batch = b.build();
                let mut body = batch[batch::HEADER_SIZE..].to_vec();
                let whole = read_record_fast(&body).is_some();
                prop_assert!(whole, "the builder's record is well formed");
                if let Some((at, byte)) = flip {
                    let i = at % body.len();
                    body[i] = byte;
                }
                body.extend_from_slice(&[0x80; 8]);
                prop_assert_eq!(fast_agrees_with_slow(&body), Ok(()));
            }
        }
    }
}
