//! The transaction state machine of one transactional id, as the coordinator keeps it.
//!
//! Pure: each request maps the current metadata to the next (to be written to
//! `__transaction_state` before it takes effect) or to a Kafka error, so every rule is
//! unit-tested without a log.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// The name Kafka's DescribeTransactions and ListTransactions use.
    pub fn kafka_name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Markers are being written: the outcome is decided but not yet everywhere.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions in the current transaction, `__consumer_offsets` ones included.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the current transaction began (-1 when none is open).
    pub start_ms: i64,
    pub update_ms: i64,
}

/// What InitProducerId leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitStep {
    /// Write this and answer with its producer id and epoch.
    Ready(TxnMeta),
    /// An open transaction of an older producer must be aborted first (written here with
    /// a bumped epoch, which fences that producer); the client retries after
    /// CONCURRENT_TRANSACTIONS.
    AbortFirst(TxnMeta),
}

/// What EndTxn leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndStep {
    /// Write this PrepareCommit/PrepareAbort; markers follow.
    Prepare(TxnMeta),
    /// A retry of an EndTxn that already completed.
    AlreadyDone,
}

fn check_producer(m: &TxnMeta, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
    if producer_id != m.producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if epoch != m.producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    Ok(())
}

/// InitProducerId with a transactional id. `fresh_id` is a new producer id, used for a new
/// transactional id or when the epoch is exhausted. `expected` is KIP-360's (producer id,
/// epoch) of a producer that re-initialises itself.
pub fn init(
    current: Option<&TxnMeta>,
    fresh_id: i64,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    now_ms: i64,
) -> Result<InitStep, ResponseError> {
    let Some(m) = current else {
        return Ok(InitStep::Ready(TxnMeta {
            producer_id: fresh_id,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            update_ms: now_ms,
        }));
    };
    if m.state.is_preparing() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if let Some((pid, epoch)) = expected {
        if pid != m.producer_id || epoch != m.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
    }
    let mut next = m.clone();
    next.update_ms = now_ms;
    if m.state == TxnState::Ongoing {
        next.producer_epoch = m.producer_epoch.saturating_add(1);
        next.state = TxnState::PrepareAbort;
        return Ok(InitStep::AbortFirst(next));
    }
    if m.producer_epoch >= i16::MAX - 1 {
        next.producer_id = fresh_id;
        next.producer_epoch = 0;
    } else {
        next.producer_epoch = m.producer_epoch + 1;
    }
    next.timeout_ms = timeout_ms;
    next.state = TxnState::Empty;
    next.partitions.clear();
    next.start_ms = -1;
    Ok(InitStep::Ready(next))
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition). `None`
/// when every partition is already in the open transaction: nothing to write.
pub fn add_partitions(
    m: &TxnMeta,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<Option<TxnMeta>, ResponseError> {
    check_producer(m, producer_id, epoch)?;
    if m.state.is_preparing() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = m.clone();
    if m.state != TxnState::Ongoing {
        next.partitions.clear();
        next.start_ms = now_ms;
    }
    next.state = TxnState::Ongoing;
    next.partitions.extend(partitions.iter().cloned());
    next.update_ms = now_ms;
    Ok(Some(next))
}

/// KIP-890: whether a partition leader may accept the first transactional write of
/// `producer_id` at `epoch` to `partition`.
pub fn verify(
    m: &TxnMeta,
    producer_id: i64,
    epoch: i16,
    partition: &(String, i32),
) -> Result<(), ResponseError> {
    check_producer(m, producer_id, epoch)?;
    if m.state == TxnState::Ongoing && m.partitions.contains(partition) {
        Ok(())
    } else {
        Err(ResponseError::InvalidTxnState)
    }
}

pub fn end(
    m: &TxnMeta,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndStep, ResponseError> {
    check_producer(m, producer_id, epoch)?;
    match (m.state, commit) {
        (TxnState::Ongoing, _) => {
            let mut next = m.clone();
            next.state = if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            next.update_ms = now_ms;
            Ok(EndStep::Prepare(next))
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Ok(EndStep::AlreadyDone)
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(ResponseError::ConcurrentTransactions)
        }
        _ => Err(ResponseError::InvalidTxnState),
    }
}

/// Every marker is written: the transaction is over.
pub fn complete(m: &TxnMeta, now_ms: i64) -> TxnMeta {
    let mut next = m.clone();
    next.state = match m.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        _ => TxnState::CompleteAbort,
    };
    next.partitions.clear();
    next.start_ms = -1;
    next.update_ms = now_ms;
    next
}

/// An open transaction past its timeout is aborted, and its producer fenced by an epoch
/// bump so it cannot carry on writing into a transaction that no longer exists.
pub fn expire(m: &TxnMeta, now_ms: i64) -> Option<TxnMeta> {
    if m.state != TxnState::Ongoing || now_ms <= m.start_ms + i64::from(m.timeout_ms) {
        return None;
    }
    let mut next = m.clone();
    next.producer_epoch = m.producer_epoch.saturating_add(1);
    next.state = TxnState::PrepareAbort;
    next.update_ms = now_ms;
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    fn ready(step: InitStep) -> TxnMeta {
        match step {
            InitStep::Ready(m) => m,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    #[test]
    fn a_full_commit_cycle() {
        let m = ready(init(None, 9, 60_000, None, 0).expect("init"));
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.state),
            (9, 0, TxnState::Empty)
        );
        let m = add_partitions(&m, 9, 0, &[tp("a", 0)], 10)
            .expect("add")
            .expect("changed");
        assert_eq!(m.state, TxnState::Ongoing);
        assert_eq!(m.start_ms, 10);
        assert_eq!(add_partitions(&m, 9, 0, &[tp("a", 0)], 11), Ok(None));
        assert_eq!(verify(&m, 9, 0, &tp("a", 0)), Ok(()));
        assert_eq!(
            verify(&m, 9, 0, &tp("b", 0)),
            Err(ResponseError::InvalidTxnState)
        );
        let EndStep::Prepare(m) = end(&m, 9, 0, true, 20).expect("end") else {
            panic!("expected Prepare");
        };
        assert_eq!(m.state, TxnState::PrepareCommit);
        assert_eq!(
            end(&m, 9, 0, true, 21),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            add_partitions(&m, 9, 0, &[tp("b", 0)], 21),
            Err(ResponseError::ConcurrentTransactions)
        );
        let m = complete(&m, 30);
        assert_eq!(m.state, TxnState::CompleteCommit);
        assert!(m.partitions.is_empty());
        assert_eq!(end(&m, 9, 0, true, 31), Ok(EndStep::AlreadyDone));
        assert_eq!(
            end(&m, 9, 0, false, 31),
            Err(ResponseError::InvalidTxnState)
        );
    }

    #[test]
    fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
        let m = ready(init(None, 9, 60_000, None, 0).expect("init"));
        let m = add_partitions(&m, 9, 0, &[tp("a", 0)], 1)
            .expect("add")
            .expect("changed");
        let InitStep::AbortFirst(m) = init(Some(&m), 10, 60_000, None, 2).expect("init") else {
            panic!("expected an abort first");
        };
        assert_eq!((m.producer_epoch, m.state), (1, TxnState::PrepareAbort));
        assert_eq!(
            init(Some(&m), 10, 60_000, None, 3),
            Err(ResponseError::ConcurrentTransactions)
        );
        let m = complete(&m, 4);
        let m = ready(init(Some(&m), 10, 60_000, None, 5).expect("init"));
        assert_eq!((m.producer_id, m.producer_epoch), (9, 2));
        // The zombie at epoch 0 is fenced everywhere.
        assert_eq!(
            add_partitions(&m, 9, 0, &[tp("a", 0)], 6),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(end(&m, 9, 0, true, 6), Err(ResponseError::ProducerFenced));
        assert_eq!(
            add_partitions(&m, 8, 2, &[tp("a", 0)], 6),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn epochs_roll_over_to_a_new_producer_id() {
        let mut m = ready(init(None, 9, 60_000, None, 0).expect("init"));
        m.producer_epoch = i16::MAX - 1;
        let m = ready(init(Some(&m), 77, 60_000, None, 1).expect("init"));
        assert_eq!((m.producer_id, m.producer_epoch), (77, 0));
    }

    #[test]
    fn kip_360_reinit_must_name_the_current_epoch() {
        let m = ready(init(None, 9, 60_000, None, 0).expect("init"));
        assert_eq!(
            init(Some(&m), 10, 60_000, Some((9, 3)), 1),
            Err(ResponseError::ProducerFenced)
        );
        let m = ready(init(Some(&m), 10, 60_000, Some((9, 0)), 1).expect("init"));
        assert_eq!(m.producer_epoch, 1);
    }

    #[test]
    fn timed_out_transactions_are_aborted_with_a_bumped_epoch() {
        let m = ready(init(None, 9, 1_000, None, 0).expect("init"));
        let m = add_partitions(&m, 9, 0, &[tp("a", 0)], 100)
            .expect("add")
            .expect("changed");
        assert_eq!(expire(&m, 1_100), None);
        let aborted = expire(&m, 1_101).expect("expired");
        assert_eq!(aborted.state, TxnState::PrepareAbort);
        assert_eq!(aborted.producer_epoch, 1);
        assert_eq!(
            end(&aborted, 9, 0, true, 2_000),
            Err(ResponseError::ProducerFenced)
        );
    }
}
