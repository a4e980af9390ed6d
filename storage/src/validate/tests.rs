use super::*;
use crate::builder::{BatchBuilder, Record};
use crate::compression;

pub(super) const NOW: i64 = 1_700_000_000_000;

fn rules() -> ProduceRules {
    ProduceRules {
        max_batch_bytes: 1 << 20,
        require_keys: false,
        timestamps: None,
        max_inflated_bytes: MAX_INFLATED_BATCH_BYTES,
    }
}

pub(super) fn good(records: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(0, NOW);
    for i in 0..records {
        let mut r = Record::new(Some(format!("k{i}").into_bytes()), Some(vec![b'v'; 20]));
        r.headers.push(("h".into(), Some(b"x".to_vec())));
        r.timestamp_delta = i as i64;
        b.push(r);
    }
    b.build()
}

pub(super) fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A record's bytes with the given fields, as a producer might (mis)write them.
pub(super) fn record(offset_delta: i64, key: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    put_varint(&mut body, 0);
    put_varint(&mut body, offset_delta);
    match key {
        None => put_varint(&mut body, -1),
        Some(k) => {
            put_varint(&mut body, k.len() as i64);
            body.extend_from_slice(k);
        }
    }
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(value);
    put_varint(&mut body, 0);
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

/// A batch around `records` (already encoded, maybe compressed) with a correct CRC and
/// whatever counts the caller claims.
fn raw_batch(count: i32, last_offset_delta: i32, attributes: i16, records: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((batch::HEADER_SIZE - 12 + records.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&last_offset_delta.to_be_bytes());
    out.extend_from_slice(&NOW.to_be_bytes());
    out.extend_from_slice(&NOW.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(records);
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

fn three_records() -> Vec<u8> {
    let mut r = record(0, Some(b"a"), b"one");
    r.extend(record(1, Some(b"b"), b"two"));
    r.extend(record(2, Some(b"c"), b"three"));
    r
}

fn record_errors(e: StorageError) -> (RecordErrorKind, Vec<i32>) {
    match e {
        StorageError::RecordErrors { kind, errors } => {
            (kind, errors.iter().map(|e| e.batch_index).collect())
        }
        other => panic!("expected record errors, got {other}"),
    }
}

#[test]
fn well_formed_batches_pass_with_every_codec() {
    let plain = good(50);
    let v = validate_produce(&plain, &rules()).expect("valid");
    assert_eq!(v.record_count(), 50);
    let body = &plain[batch::HEADER_SIZE..];
    for (codec, bits) in [
        (Compression::Gzip, 1),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ] {
        let packed = compression::compress(codec, body, None).expect("compress");
        let batch = raw_batch(50, 49, bits, &packed);
        let v = validate_produce(&batch, &rules()).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(v.record_count(), 50);
    }
}

#[test]
fn counts_that_disagree_with_the_records_are_refused() {
    let recs = three_records();
    // records_count 1000 with 3 records.
    let e = validate_produce(&raw_batch(1000, 999, 0, &recs), &rules()).expect_err("refused");
    assert_eq!(record_errors(e).1, vec![3]);
    // last offset delta 2^31-1.
    let e = validate_produce(&raw_batch(3, i32::MAX, 0, &recs), &rules()).expect_err("refused");
    assert!(matches!(e, StorageError::InvalidRecord(_)), "{e}");
    // Fewer declared than present: bytes left over.
    let e = validate_produce(&raw_batch(2, 1, 0, &recs), &rules()).expect_err("refused");
    assert!(matches!(e, StorageError::InvalidRecord(_)), "{e}");
    // No records at all.
    let e = validate_produce(&raw_batch(0, 0, 0, &[]), &rules()).expect_err("refused");
    assert!(matches!(e, StorageError::InvalidRecord(_)), "{e}");
}

#[test]
fn malformed_records_are_refused_with_their_index() {
    let mut recs = record(0, Some(b"a"), b"one");
    // Record 1: a key length of -5.
    let mut bad = vec![0u8];
    put_varint(&mut bad, 0);
    put_varint(&mut bad, 1);
    put_varint(&mut bad, -5);
    put_varint(&mut bad, 0);
    put_varint(&mut bad, 0);
    let mut framed = Vec::new();
    put_varint(&mut framed, bad.len() as i64);
    framed.extend_from_slice(&bad);
    recs.extend(framed);
    let e = validate_produce(&raw_batch(2, 1, 0, &recs), &rules()).expect_err("refused");
    assert_eq!(record_errors(e), (RecordErrorKind::InvalidRecord, vec![1]));

    // An 11-byte varint as the first record's length.
    let mut long = vec![0xffu8; 10];
    long.push(0x01);
    let e = validate_produce(&raw_batch(1, 0, 0, &long), &rules()).expect_err("refused");
    assert_eq!(record_errors(e).1, vec![0]);

    // A record whose declared length disagrees with its fields.
    let mut r = record(0, None, b"value");
    r[0] += 2;
    r.extend_from_slice(&[0, 0]);
    let e = validate_produce(&raw_batch(1, 0, 0, &r), &rules()).expect_err("refused");
    assert_eq!(record_errors(e).1, vec![0]);

    // Garbage after a well-formed header.
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
    assert!(validate_produce(&raw_batch(5, 4, 0, &garbage), &rules()).is_err());
}

#[test]
fn offset_deltas_must_count_up_from_zero() {
    let mut recs = record(0, None, b"a");
    recs.extend(record(5, None, b"b"));
    let e = validate_produce(&raw_batch(2, 1, 0, &recs), &rules()).expect_err("refused");
    assert_eq!(record_errors(e).1, vec![1]);
}

#[test]
fn compacted_topics_get_one_error_per_keyless_record() {
    let mut recs = Vec::new();
    for i in 0..10 {
        let key: Option<&[u8]> = if i % 3 == 0 { None } else { Some(b"k") };
        recs.extend(record(i, key, b"v"));
    }
    let batch = raw_batch(10, 9, 0, &recs);
    validate_produce(&batch, &rules()).expect("keys are optional elsewhere");
    let compacted = ProduceRules {
        require_keys: true,
        ..rules()
    };
    let e = validate_produce(&batch, &compacted).expect_err("refused");
    assert_eq!(
        record_errors(e),
        (RecordErrorKind::InvalidRecord, vec![0, 3, 6, 9])
    );
}

#[test]
fn timestamps_outside_the_window_are_invalid_timestamps() {
    let batch = good(5); // timestamps NOW..NOW+4
    let window = |now_ms, before_ms, after_ms| ProduceRules {
        timestamps: Some(TimestampWindow {
            now_ms,
            before_ms,
            after_ms,
        }),
        ..rules()
    };
    validate_produce(&batch, &window(NOW, 0, 4)).expect("inside");
    let e = validate_produce(&batch, &window(NOW, 0, 2)).expect_err("late ones refused");
    assert_eq!(
        record_errors(e),
        (RecordErrorKind::InvalidTimestamp, vec![3, 4])
    );
}

#[test]
fn a_wrong_max_timestamp_is_corrected_not_trusted() {
    let mut batch = good(3);
    batch[35..43].copy_from_slice(&i64::MAX.to_be_bytes());
    let crc = batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    let v = validate_produce(&batch, &rules()).expect("valid");
    let header = v.batches()[0].1;
    assert_eq!(header.max_timestamp, NOW + 2);
    let head = batch::stamped_header(&batch, header.max_timestamp, 7, 1, None);
    let mut stored = head.to_vec();
    stored.extend_from_slice(&batch[batch::HEADER_SIZE..]);
    let h = batch::validate(&stored).expect("the stored batch has a valid CRC");
    assert_eq!(h.max_timestamp, NOW + 2);
}

#[test]
fn compressed_garbage_and_bombs_are_refused() {
    // A zstd payload that is not zstd.
    let e = validate_produce(&raw_batch(3, 2, 4, b"definitely not zstd"), &rules())
        .expect_err("refused");
    assert!(matches!(e, StorageError::CorruptBatch(_)), "{e}");
    // A valid gzip stream of something that is not records.
    let packed = compression::compress(Compression::Gzip, &[0xffu8; 100], None).expect("gz");
    assert!(validate_produce(&raw_batch(3, 2, 1, &packed), &rules()).is_err());
    // One record whose value inflates past the limit: refused, in bounded memory.
    let mut huge = Vec::new();
    let value_len = 8 << 20;
    let mut body = vec![0u8];
    put_varint(&mut body, 0);
    put_varint(&mut body, 0);
    put_varint(&mut body, -1);
    put_varint(&mut body, value_len);
    put_varint(&mut huge, body.len() as i64 + value_len + 1);
    huge.extend_from_slice(&body);
    huge.resize(huge.len() + value_len as usize, 0);
    huge.push(0);
    for (codec, bits) in [
        (Compression::Gzip, 1),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ] {
        let packed = compression::compress(codec, &huge, None).expect("compress");
        let batch = raw_batch(1, 0, bits, &packed);
        validate_produce(&batch, &rules())
            .unwrap_or_else(|e| panic!("{codec:?} under the cap: {e}"));
        let capped = ProduceRules {
            max_inflated_bytes: 1 << 20,
            ..rules()
        };
        let e = validate_produce(&batch, &capped).expect_err("over the cap");
        assert!(
            matches!(e, StorageError::InvalidRecord(_)),
            "{codec:?}: {e}"
        );
    }
}

#[test]
fn clients_may_not_write_control_or_unsequenced_batches_or_several_batches() {
    let mut control = good(1);
    control[21..23].copy_from_slice(&0x20i16.to_be_bytes());
    let crc = batch::compute_crc(&control);
    control[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        validate_produce(&control, &rules()),
        Err(StorageError::InvalidRecord(_))
    ));
    let mut two = good(1);
    two.extend(good(1));
    assert!(matches!(
        validate_produce(&two, &rules()),
        Err(StorageError::InvalidRecord(_))
    ));
    let big = good(100);
    assert!(matches!(
        validate_produce(
            &big,
            &ProduceRules {
                max_batch_bytes: 100,
                ..rules()
            }
        ),
        Err(StorageError::BatchTooLarge { .. })
    ));
}

#[test]
fn recompression_keeps_every_record_and_field() {
    let plain = good(40);
    let header = validate_produce(&plain, &rules()).expect("valid").batches()[0].1;
    let mut from = plain.clone();
    for target in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
        Compression::None,
    ] {
        let out = recompress(
            &from,
            &batch::BatchHeader::parse(&from).expect("header"),
            target,
            None,
            1 << 20,
        )
        .expect("recompresses");
        let h = batch::validate(&out).expect("a valid batch");
        assert_eq!(h.compression().expect("codec"), target);
        assert_eq!(
            (
                h.records_count,
                h.last_offset_delta,
                h.max_timestamp,
                h.base_timestamp
            ),
            (
                header.records_count,
                header.last_offset_delta,
                header.max_timestamp,
                header.base_timestamp
            )
        );
        assert_eq!(
            crate::builder::decode_records(&out).expect("decodes"),
            crate::builder::decode_records(&plain).expect("decodes"),
            "{target:?}"
        );
        validate_produce(&out, &rules()).expect("and passes validation again");
        from = out;
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes at all: never a panic, and whatever passes is a batch whose records
        /// decode to exactly the declared count.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(v) = validate_produce(&bytes, &rules()) {
                let recs = crate::builder::decode_records(v.bytes()).expect("decodes");
                prop_assert_eq!(recs.len() as i64, v.record_count());
            }
        }

        /// A well-formed batch with bytes of its records changed (CRC fixed up, so only
        /// the record checks stand between it and the log): never a panic, and anything
        /// accepted decodes to its declared count with offsets 0..n.
        #[test]
        fn mutated_records_are_caught(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            codec in 0i16..5,
        ) {
            let plain = good(8);
            let mut body = plain[batch::HEADER_SIZE..].to_vec();
            let compressed = codec != 0;
            if compressed {
                let c = Compression::from_attributes(codec).expect("codec");
                body = compression::compress(c, &body, None).expect("compress");
            }
            for (at, byte) in &flips {
                let i = at % body.len();
                body[i] = *byte;
            }
            let batch = raw_batch(8, 7, codec, &body);
            if let Ok(v) = validate_produce(&batch, &rules()) {
                let recs = crate::builder::decode_records(v.bytes()).expect("decodes");
                prop_assert_eq!(recs.len(), 8);
                for (i, r) in recs.iter().enumerate() {
                    prop_assert_eq!(r.offset, i as i64);
                }
            }
        }
    }
}
