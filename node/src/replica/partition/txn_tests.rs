//! Transactions on one partition: KIP-890 guards, markers, the last stable offset, the
//! aborted index, and their reconstruction (with and without a snapshot) on reopen.

use fjord_storage::control::ControlType;
use fjord_storage::{
    validate_records, BatchBuilder, LogConfig, PartitionLog, Record, TopicPartition,
};

use super::{IsolationLevel, Partition, ReplicaSet};
use crate::producer::{snapshot, AbortedTxn, ProducerError};
use crate::replica::ReplicaError;

fn leader(dir: &std::path::Path) -> Partition {
    let log = PartitionLog::open(dir, LogConfig::default(), None).expect("open");
    let p = Partition::new(TopicPartition::new("t", 0), uuid::Uuid::nil(), log);
    let set = ReplicaSet {
        replicas: &[1],
        isr: &[1],
        partition_epoch: 0,
    };
    p.become_leader(1, 0, set, 0).expect("lead");
    p
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(0, 0)
        .producer(pid, epoch, seq)
        .transactional(true);
    for _ in 0..n {
        b.push(Record::new(None, Some(b"v".to_vec())));
    }
    b.build()
}

fn append(p: &Partition, bytes: &[u8]) -> Result<i64, ReplicaError> {
    let records = validate_records(bytes, usize::MAX).expect("valid");
    p.append_as_leader(&records, 0).map(|a| a.info.first_offset)
}

fn read_committed(p: &Partition) -> (usize, Vec<AbortedTxn>) {
    let r = p
        .read(0, 1 << 20, IsolationLevel::ReadCommitted, true)
        .expect("read");
    (r.records.len(), r.aborted)
}

#[test]
fn markers_end_transactions_and_the_state_survives_reopening() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = leader(dir.path());
    assert!(matches!(
        append(&p, &txn_batch(5, 0, 0, 2)),
        Err(ReplicaError::TransactionNotVerified(5))
    ));
    p.verify_transaction(5, 0).expect("guard");
    assert_eq!(append(&p, &txn_batch(5, 0, 0, 2)).expect("append"), 0);
    assert_eq!(p.high_watermark(), 2);
    assert_eq!(
        p.last_stable_offset(),
        0,
        "an open transaction holds the LSO"
    );
    assert_eq!(read_committed(&p), (0, Vec::new()));

    p.write_marker(5, 0, ControlType::Abort, 0, 0)
        .expect("abort marker");
    assert_eq!(p.last_stable_offset(), 3);
    let aborted = AbortedTxn {
        producer_id: 5,
        first_offset: 0,
        last_offset: 2,
    };
    let (bytes, listed) = read_committed(&p);
    assert!(bytes > 0);
    assert_eq!(listed, vec![aborted]);
    assert!(
        matches!(
            append(&p, &txn_batch(5, 0, 2, 1)),
            Err(ReplicaError::TransactionNotVerified(5))
        ),
        "a write after the marker cannot reopen the transaction by itself"
    );
    // A second transaction, left open, and a fencing marker at a newer epoch.
    p.verify_transaction(5, 0).expect("guard");
    assert_eq!(append(&p, &txn_batch(5, 0, 2, 1)).expect("append"), 3);
    assert_eq!(p.last_stable_offset(), 3);
    p.close();
    assert!(
        snapshot::read(dir.path()).is_some(),
        "closing writes a snapshot"
    );

    for with_snapshot in [true, false] {
        if !with_snapshot {
            snapshot::remove(dir.path());
        }
        let p = leader(dir.path());
        assert_eq!(p.last_stable_offset(), 3, "snapshot used: {with_snapshot}");
        assert_eq!(p.ongoing_transactions(), vec![(5, 3)]);
        assert_eq!(read_committed(&p).1, vec![aborted]);
        p.close();
    }
    let p = leader(dir.path());
    p.write_marker(5, 1, ControlType::Abort, 1, 0)
        .expect("fencing abort");
    assert!(matches!(
        p.write_marker(5, 0, ControlType::Commit, 1, 0),
        Err(ReplicaError::Producer(
            ProducerError::InvalidProducerEpoch { .. }
        ))
    ));
    assert_eq!(p.last_stable_offset(), p.log_end_offset());
    assert_eq!(read_committed(&p).1.len(), 2);

    // The last marker's coordinator epoch fences older coordinators, also after a reopen
    // (from the snapshot, or rebuilt from the markers in the log).
    p.close();
    for with_snapshot in [true, false] {
        if !with_snapshot {
            snapshot::remove(dir.path());
        }
        let p = leader(dir.path());
        assert!(
            matches!(
                p.write_marker(5, 1, ControlType::Abort, 0, 0),
                Err(ReplicaError::Producer(ProducerError::CoordinatorFenced {
                    current: 1,
                    got: 0
                }))
            ),
            "snapshot used: {with_snapshot}"
        );
        assert_eq!(p.describe_producers()[0].coordinator_epoch, 1);
        p.close();
    }
}
