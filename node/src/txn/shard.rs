//! The transaction coordinator of one `__transaction_state` partition, while this broker
//! leads it: the metadata of every transactional id that hashes there, loaded from the
//! log when leadership arrives. A change takes effect only once it is replicated, so a
//! coordinator failover never forgets a decision it has acted on.
//!
//! One change per transactional id is in flight at a time; a request that arrives
//! meanwhile gets CONCURRENT_TRANSACTIONS and the client retries.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fjord_storage::batch::validate_records;
use fjord_storage::builder::BatchBuilder;
use kafka_protocol::error::ResponseError;
use tracing::{debug, info, warn};

use super::records;
use super::state::TxnMeta;
use crate::coordinator_shards::{ShardCore, ShardStatus};
use crate::replica::{Partition, Replication};
use crate::time::now_ms;

/// How long a metadata write waits for its replicas (Kafka's
/// `transaction.state.log` writes use the request timeout; 5 s matches offsets).
const PERSIST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Tables {
    txns: HashMap<String, TxnMeta>,
    /// Ids with a write in flight.
    pending: HashSet<String>,
    /// Ids whose markers a task is writing.
    completing: HashSet<String>,
}

pub struct TxnShard {
    /// Its leader epoch is the coordinator epoch written into markers.
    pub core: ShardCore,
    tables: Mutex<Tables>,
}

impl TxnShard {
    pub fn new(replica: Arc<Partition>) -> Self {
        TxnShard {
            core: ShardCore::new(replica),
            tables: Mutex::new(Tables::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the partition from its start (once everything on this leader is
    /// replicated) and starts answering. Returns false if leadership moved meanwhile.
    pub async fn load(&self) -> bool {
        let mut txns: HashMap<String, TxnMeta> = HashMap::new();
        let mut skipped = 0;
        let replayed = self.core.replay("transaction state", |bytes| {
            let decoded = records::decode(bytes);
            let next = decoded.next_offset?;
            skipped += decoded.skipped;
            for (id, meta) in decoded.entries {
                match meta {
                    Some(m) => txns.insert(id, m),
                    None => txns.remove(&id),
                };
            }
            Some(next)
        });
        if !replayed.await {
            return false;
        }
        let count = txns.len();
        {
            let mut t = self.lock();
            if self.core.status() == ShardStatus::Closed {
                return false;
            }
            t.txns = txns;
        }
        self.core.set_status(ShardStatus::Active);
        info!(
            partition = self.core.partition,
            epoch = self.core.leader_epoch,
            transactional_ids = count,
            skipped,
            "transaction coordinator loaded"
        );
        true
    }

    pub fn close(&self) {
        self.core.set_status(ShardStatus::Closed);
        self.lock().txns.clear();
    }

    pub fn get(&self, txn_id: &str) -> Option<TxnMeta> {
        self.lock().txns.get(txn_id).cloned()
    }

    pub fn all(&self) -> Vec<(String, TxnMeta)> {
        self.lock()
            .txns
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Claims the completion of `txn_id` for one task; false if another has it.
    pub fn claim_completion(&self, txn_id: &str) -> bool {
        self.lock().completing.insert(txn_id.to_string())
    }

    pub fn release_completion(&self, txn_id: &str) {
        self.lock().completing.remove(txn_id);
    }

    /// Applies `decide` to the id's current metadata. If it returns new metadata, that
    /// is written and takes effect once replicated; either way its answer is returned.
    pub async fn update<T>(
        &self,
        txn_id: &str,
        decide: impl FnOnce(Option<&TxnMeta>) -> Result<(Option<TxnMeta>, T), ResponseError>,
    ) -> Result<T, ResponseError> {
        let (last_offset, next, answer) = {
            self.core.check_active()?;
            let mut t = self.lock();
            if t.pending.contains(txn_id) {
                return Err(ResponseError::ConcurrentTransactions);
            }
            let (next, answer) = decide(t.txns.get(txn_id))?;
            let Some(next) = next else {
                return Ok(answer);
            };
            let last_offset = self.append(txn_id, Some(&next))?;
            t.pending.insert(txn_id.to_string());
            (last_offset, next, answer)
        };
        let outcome = self
            .core
            .replica
            .await_replication(last_offset + 1, self.core.leader_epoch, PERSIST_TIMEOUT)
            .await;
        let mut t = self.lock();
        t.pending.remove(txn_id);
        match outcome {
            Replication::Replicated if self.core.status() != ShardStatus::Closed => {
                debug!(txn_id, state = ?next.state, epoch = next.producer_epoch, "transaction state written");
                t.txns.insert(txn_id.to_string(), next);
                Ok(answer)
            }
            Replication::TimedOut => Err(ResponseError::CoordinatorNotAvailable),
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    /// Removes an idle transactional id (tombstone first).
    pub fn forget(&self, txn_id: &str) {
        let mut t = self.lock();
        if t.pending.contains(txn_id) || t.completing.contains(txn_id) {
            return;
        }
        if self.append(txn_id, None).is_ok() {
            t.txns.remove(txn_id);
        }
    }

    fn append(&self, txn_id: &str, meta: Option<&TxnMeta>) -> Result<i64, ResponseError> {
        if !self.core.owns_partition() {
            return Err(ResponseError::NotCoordinator);
        }
        let now = now_ms();
        let mut builder = BatchBuilder::new(0, now);
        builder.push(records::record(txn_id, meta));
        let bytes = builder.build();
        let validated = validate_records(&bytes, self.core.replica.max_message_bytes())
            .map_err(|_| ResponseError::UnknownServerError)?;
        match self.core.replica.append_as_leader(&validated, now) {
            Ok(appended) => Ok(appended.info.last_offset),
            Err(crate::replica::ReplicaError::NotLeaderOrFollower) => {
                Err(ResponseError::NotCoordinator)
            }
            Err(e) => {
                warn!(partition = self.core.partition, error = %e, "writing transaction state failed");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }
}
