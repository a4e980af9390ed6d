//! Model-based property test: random appends, reads, clean reopens, and crashes that tear
//! or corrupt the tail. The recovered log must always be a prefix of what was appended,
//! offsets must stay dense, and every read must return whole, valid batches.

mod common;

use common::{append, batch, small_config};
use fjord_storage::batch::{set_base_offset, set_partition_leader_epoch, validate, BatchIter};
use fjord_storage::PartitionLog;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append { batches: Vec<(usize, usize)> },
    Read { at: f64, max_bytes: u64 },
    CleanReopen,
    CrashTear { at: f64 },
    CrashFlip { batch: f64, byte: f64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((1usize..6, 0usize..300), 1..4)
            .prop_map(|batches| Op::Append { batches }),
        4 => (0.0f64..=1.0, 1u64..3000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => Just(Op::CleanReopen),
        1 => (0.0f64..1.0).prop_map(|at| Op::CrashTear { at }),
        1 => (0.0f64..1.0, 0.0f64..1.0).prop_map(|(batch, byte)| Op::CrashFlip { batch, byte }),
    ]
}

/// The stored bytes of each batch, in offset order.
struct Model {
    batches: Vec<Vec<u8>>,
}

impl Model {
    fn end_offset(&self) -> i64 {
        self.batches
            .last()
            .map(|b| validate(b).expect("model batch").next_offset())
            .unwrap_or(0)
    }
}

fn last_segment_path(log: &PartitionLog) -> (i64, std::path::PathBuf) {
    let base = *log.segment_bases().last().expect("segment");
    (base, log.dir().join(format!("{base:020}.log")))
}

/// Model batches stored in the segment starting at `base`, with their byte positions.
fn batches_in_segment(model: &Model, base: i64) -> Vec<(usize, usize)> {
    let mut pos = 0;
    let mut out = Vec::new();
    for (i, b) in model.batches.iter().enumerate() {
        if validate(b).expect("model").base_offset >= base {
            out.push((i, pos));
            pos += b.len();
        }
    }
    out
}

fn check_read(log: &PartitionLog, model: &Model, offset: i64, max_bytes: u64) {
    let range = log.read(offset, max_bytes, i64::MAX, true).expect("read");
    let expected_first = model
        .batches
        .iter()
        .position(|b| validate(b).expect("model").last_offset() >= offset);
    match (range, expected_first) {
        (None, None) => {}
        (Some(range), Some(first)) => {
            let bytes = range.read().expect("bytes");
            let mut n = 0;
            for item in BatchIter::new(&bytes) {
                let (r, _) = item.expect("whole batches only");
                validate(&bytes[r.clone()]).expect("valid batch");
                assert_eq!(
                    &bytes[r],
                    &model.batches[first + n][..],
                    "read returns stored bytes"
                );
                n += 1;
            }
            assert!(n >= 1);
        }
        (got, want) => panic!(
            "read at {offset}: got {:?}, model expects batch {want:?}",
            got.map(|r| r.len)
        ),
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), small_config(), None).expect("open");
    let mut model = Model {
        batches: Vec::new(),
    };
    for op in ops {
        match op {
            Op::Append { batches } => {
                let mut buf = Vec::new();
                for (records, len) in batches {
                    buf.extend_from_slice(&batch(records, len, 1_000));
                }
                let expected_first = model.end_offset();
                let info = append(&mut log, &buf, 0, 0).expect("append");
                assert_eq!(info.first_offset, expected_first, "offsets are dense");
                // The model stamps its own copy: offsets continue densely, epoch 0.
                let mut next = expected_first;
                for item in BatchIter::new(&buf) {
                    let (r, h) = item.expect("batch");
                    let mut stored = buf[r].to_vec();
                    set_base_offset(&mut stored, next);
                    set_partition_leader_epoch(&mut stored, 0);
                    next += i64::from(h.last_offset_delta) + 1;
                    model.batches.push(stored);
                }
            }
            Op::Read { at, max_bytes } => {
                let end = model.end_offset();
                let offset = (at * end as f64) as i64;
                check_read(&log, &model, offset.min(end), max_bytes);
            }
            Op::CleanReopen => {
                log.close().expect("close");
                log = PartitionLog::open(dir.path(), small_config(), None).expect("reopen");
            }
            Op::CrashTear { at } => {
                let (base, path) = last_segment_path(&log);
                drop(log);
                let len = std::fs::metadata(&path).expect("meta").len();
                let cut = (at * len as f64) as u64;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(cut))
                    .expect("tear");
                let keep = batches_in_segment(&model, base)
                    .into_iter()
                    .take_while(|(i, pos)| (*pos + model.batches[*i].len()) as u64 <= cut)
                    .count();
                let first_in_seg = batches_in_segment(&model, base).first().map(|(i, _)| *i);
                if let Some(first) = first_in_seg {
                    model.batches.truncate(first + keep);
                }
                log = PartitionLog::open(dir.path(), small_config(), None).expect("recover");
            }
            Op::CrashFlip { batch, byte } => {
                let (base, path) = last_segment_path(&log);
                drop(log);
                let in_seg = batches_in_segment(&model, base);
                if !in_seg.is_empty() {
                    let pick = ((batch * in_seg.len() as f64) as usize).min(in_seg.len() - 1);
                    let (i, pos) = in_seg[pick];
                    let blen = model.batches[i].len();
                    // Bytes 16.. are the magic, CRC and everything the CRC covers.
                    let at = pos + 16 + ((byte * (blen - 16) as f64) as usize).min(blen - 17);
                    let mut bytes = std::fs::read(&path).expect("read");
                    bytes[at] ^= 0x5a;
                    std::fs::write(&path, &bytes).expect("write");
                    model.batches.truncate(i);
                }
                log = PartitionLog::open(dir.path(), small_config(), None).expect("recover");
            }
        }
        assert_eq!(
            log.log_end_offset(),
            model.end_offset(),
            "log end matches the model"
        );
        let end = model.end_offset();
        check_read(&log, &model, 0, 1 << 20);
        if end > 0 {
            check_read(&log, &model, end - 1, 1);
        }
    }
    // Finally, the whole log reads back as exactly the model.
    let mut offset = 0;
    let mut seen = 0;
    while let Some(range) = log.read(offset, 1 << 16, i64::MAX, true).expect("read") {
        let bytes = range.read().expect("bytes");
        for item in BatchIter::new(&bytes) {
            let (r, h) = item.expect("batch");
            assert_eq!(&bytes[r], &model.batches[seen][..]);
            seen += 1;
            offset = h.next_offset();
        }
    }
    assert_eq!(seen, model.batches.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn recovered_log_is_a_prefix_of_what_was_appended(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
