//! The share-partitions this broker keeps as partition leader: one per (share group,
//! topic-partition) a member fetched here, loaded from the share coordinator at the
//! partition's leader epoch and written back before any answer that depends on it.
//!
//! Each share-partition sits behind its own async mutex, held across the write of its
//! state: changes to one share-partition are then persisted in the order they were
//! made, and a failed write can simply drop the in-memory state, which the next request
//! reloads from the last state that was stored. A member is never told of an
//! acquisition or an acknowledgement that a failover could lose.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tracing::{debug, info, warn};

use super::batches;
use crate::group::share::{
    AcknowledgementBatch, AcquiredRecords, AutoOffsetReset, SharePartition, SharePartitionConfig,
    ShareSnapshot,
};
use crate::share_state::ShareKey;

/// Where share-partition state is stored (the share coordinator, on `__share_group_state`).
pub trait StateStore: Send + Sync {
    fn read(
        &self,
        key: &ShareKey,
        leader_epoch: i32,
    ) -> impl Future<Output = Result<Option<ShareSnapshot>, ResponseError>> + Send;
    fn write(
        &self,
        key: &ShareKey,
        leader_epoch: i32,
        snapshot: &ShareSnapshot,
    ) -> impl Future<Output = Result<(), ResponseError>> + Send;
}

/// The partition's log as a share-partition needs it.
pub trait ShareLog: Send + Sync {
    /// `Some(epoch)` while this broker leads the partition.
    fn leading_epoch(&self) -> Option<i32>;
    fn log_start_offset(&self) -> i64;
    /// The end of what members may read (the high watermark).
    fn readable_end(&self) -> i64;
    /// Whole batches from `offset`, at most about `max_bytes` (at least one batch).
    fn read(&self, offset: i64, max_bytes: u64) -> Result<Bytes, ResponseError>;
    /// The first readable offset whose record is at or after `timestamp_ms`.
    fn offset_for_timestamp(&self, timestamp_ms: i64) -> Option<i64>;
}

/// The settings one share-partition runs with (the group's, else the broker's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub partition: SharePartitionConfig,
    pub reset: AutoOffsetReset,
    /// `share.auto.offset.reset=by_duration:<duration>`: a new share-partition starts at
    /// the first record no older than this; `reset` then says nothing.
    pub by_duration_ms: Option<i64>,
}

/// What one acquisition handed a member.
#[derive(Clone, Debug, Default)]
pub struct Acquired {
    pub records: Bytes,
    pub runs: Vec<AcquiredRecords>,
}

#[derive(Default)]
struct Slot {
    /// Loaded at this leader epoch; `None` until loaded, and after a failed write.
    state: Option<(i32, SharePartition)>,
    /// When a request last used it, for forgetting share-partitions nobody fetches.
    last_used_ms: i64,
}

#[derive(Default)]
pub struct ShareLeader {
    slots: Mutex<HashMap<ShareKey, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl ShareLeader {
    fn slot(&self, key: &ShareKey) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(slots.entry(key.clone()).or_default())
    }

    fn existing(&self, key: &ShareKey) -> Option<Arc<tokio::sync::Mutex<Slot>>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.get(key).cloned()
    }

    /// Hands `member_id` up to `max_records` records of the share-partition (records to
    /// redeliver first, then new ones), persisted before they are returned. Nothing
    /// acquired is an empty answer, not an error.
    #[allow(clippy::too_many_arguments)] // a ShareFetch without acknowledgements, spelled out
    pub async fn acquire(
        &self,
        store: &impl StateStore,
        log: &impl ShareLog,
        key: &ShareKey,
        settings: Settings,
        member_id: &str,
        max_records: usize,
        max_bytes: u64,
        now_ms: i64,
    ) -> Result<Acquired, ResponseError> {
        let request = FetchRequest {
            member_id,
            acks: &[],
            max_records,
            max_bytes,
            now_ms,
        };
        self.fetch(store, log, key, settings, request)
            .await
            .acquired
    }

    /// A ShareFetch on one share-partition: settles the acknowledgements that came with
    /// it, then acquires, and stores both in one write before either is answered.
    pub async fn fetch(
        &self,
        store: &impl StateStore,
        log: &impl ShareLog,
        key: &ShareKey,
        settings: Settings,
        request: FetchRequest<'_>,
    ) -> FetchOutcome {
        let slot = self.slot(key);
        let mut slot = slot.lock().await;
        slot.last_used_ms = request.now_ms;
        let acking = !request.acks.is_empty();
        let failed = |e: ResponseError| FetchOutcome {
            acked: acking.then_some(Err(e)),
            acquired: Err(e),
        };
        let epoch = match load(&mut slot, store, log, key, settings).await {
            Ok(epoch) => epoch,
            Err(e) => return failed(e),
        };
        let Some((_, partition)) = slot.state.as_mut() else {
            return failed(ResponseError::NotLeaderOrFollower);
        };
        let mut changed = false;
        let mut acked = None;
        if acking {
            // An acknowledgement refused (all or nothing) does not stop the fetch.
            acked = Some(
                partition
                    .acknowledge(request.member_id, request.acks, request.now_ms)
                    .map(|c| changed |= c),
            );
        }
        let acquired = take(partition, log, &request);
        changed |= acquired.as_ref().is_ok_and(|(_, _, c)| *c);
        if changed {
            let snapshot = partition.snapshot();
            if let Err(e) = persist(&mut slot, store, key, epoch, &snapshot).await {
                return FetchOutcome {
                    acked: acked.map(|a| a.and(Err(e))),
                    acquired: Err(e),
                };
            }
        }
        FetchOutcome {
            acked,
            acquired: acquired.map(|(runs, records, _)| Acquired { records, runs }),
        }
    }

    /// Settles records `member_id` holds; an ACCEPT or REJECT is stored before this
    /// returns, so it is never undone by a failover.
    #[allow(clippy::too_many_arguments)] // ShareAcknowledge's own fields, beside the store and log
    pub async fn acknowledge(
        &self,
        store: &impl StateStore,
        log: &impl ShareLog,
        key: &ShareKey,
        settings: Settings,
        member_id: &str,
        acks: &[AcknowledgementBatch],
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        let slot = self.slot(key);
        let mut slot = slot.lock().await;
        slot.last_used_ms = now_ms;
        let epoch = load(&mut slot, store, log, key, settings).await?;
        let Some((_, partition)) = slot.state.as_mut() else {
            return Err(ResponseError::NotLeaderOrFollower);
        };
        if partition.acknowledge(member_id, acks, now_ms)? {
            let snapshot = partition.snapshot();
            persist(&mut slot, store, key, epoch, &snapshot).await?;
        }
        Ok(())
    }

    /// A member's session ended: what it holds goes back at once rather than when its
    /// locks run out. Not persisted: a reload makes the same records available.
    pub async fn release(&self, key: &ShareKey, member_id: &str) {
        let Some(slot) = self.existing(key) else {
            return;
        };
        let mut slot = slot.lock().await;
        if let Some((_, partition)) = slot.state.as_mut() {
            if partition.release_member(member_id) {
                debug!(group = %key.group_id, partition = key.partition, member = member_id, "released a closed session's records");
            }
        }
    }

    /// The earliest lock deadline among loaded share-partitions of `keys`, for a
    /// waiting fetch to wake up when records come back.
    pub fn next_lock_deadline(&self, keys: &[ShareKey]) -> Option<i64> {
        keys.iter()
            .filter_map(|k| self.existing(k))
            .filter_map(|slot| {
                let slot = slot.try_lock().ok()?;
                slot.state.as_ref()?.1.next_lock_deadline()
            })
            .min()
    }

    /// Whether the share-partition has records to hand out again (released, expired).
    pub fn has_redeliveries(&self, key: &ShareKey, now_ms: i64) -> bool {
        self.existing(key).is_some_and(|slot| {
            slot.try_lock().ok().is_some_and(|slot| {
                slot.state.as_ref().is_some_and(|(_, p)| {
                    p.next_fetch_offset() < p.end_offset()
                        || p.next_lock_deadline().is_some_and(|d| d <= now_ms)
                })
            })
        })
    }

    /// Forgets share-partitions whose partition this broker no longer leads (their
    /// state is with the share coordinator) and those of deleted share groups.
    pub fn retain(&self, mut keep: impl FnMut(&ShareKey) -> bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let before = slots.len();
        slots.retain(|k, _| keep(k));
        let dropped = before - slots.len();
        if dropped > 0 {
            debug!(dropped, "share-partitions dropped");
        }
    }

    /// Forgets share-partitions no request has used for `idle_ms` and in which no
    /// record is locked: their state is stored, and a later fetch loads it again. This
    /// bounds memory by the groups actually fetching here, and drops what a group that
    /// was deleted, or reset elsewhere, left in memory.
    pub fn forget_idle(&self, idle_ms: i64, now_ms: i64) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let before = slots.len();
        slots.retain(|_, slot| {
            // A slot in use is busy, not idle.
            let Ok(slot) = slot.try_lock() else {
                return true;
            };
            let locked = slot
                .state
                .as_ref()
                .is_some_and(|(_, p)| p.next_lock_deadline().is_some());
            locked || now_ms.saturating_sub(slot.last_used_ms) <= idle_ms
        });
        let dropped = before - slots.len();
        if dropped > 0 {
            debug!(dropped, "idle share-partitions forgotten");
        }
    }

    /// How many share-partitions are held (loaded or loading).
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One member's ShareFetch on one share-partition.
#[derive(Clone, Copy, Debug)]
pub struct FetchRequest<'a> {
    pub member_id: &'a str,
    /// Acknowledgements to settle first (ShareFetch carries them).
    pub acks: &'a [AcknowledgementBatch],
    pub max_records: usize,
    pub max_bytes: u64,
    pub now_ms: i64,
}

/// What a ShareFetch did to one share-partition.
#[derive(Debug)]
pub struct FetchOutcome {
    /// `None` when no acknowledgements came.
    pub acked: Option<Result<(), ResponseError>>,
    pub acquired: Result<Acquired, ResponseError>,
}

/// Acquires from the log for `request`: the runs, the batches holding them, and whether
/// the share-partition changed. Nothing is stored here.
fn take(
    partition: &mut SharePartition,
    log: &impl ShareLog,
    request: &FetchRequest<'_>,
) -> Result<(Vec<AcquiredRecords>, Bytes, bool), ResponseError> {
    // Neither expiry nor a moved log start needs storing: a reload does the same.
    partition.expire_locks(request.now_ms);
    let from = partition.next_fetch_offset();
    if request.max_records == 0 || from >= log.readable_end() {
        return Ok((Vec::new(), Bytes::new(), false));
    }
    let read = match log.read(from, request.max_bytes) {
        Ok(bytes) => bytes,
        Err(ResponseError::OffsetOutOfRange) => {
            // Retention or DeleteRecords moved the log start past the SPSO since the
            // last look: those records are gone; the next fetch reads from the start.
            partition.advance_log_start(log.log_start_offset());
            return Ok((Vec::new(), Bytes::new(), false));
        }
        Err(e) => return Err(e),
    };
    let Some(covered) = batches::covered_offsets(&read) else {
        return Ok((Vec::new(), Bytes::new(), false));
    };
    let fetched: Range<i64> = covered.start..covered.end.min(log.readable_end());
    let (runs, acquired) = partition.acquire(
        request.member_id,
        fetched,
        request.max_records,
        request.now_ms,
    );
    let records = batches::holding(&read, &runs);
    Ok((runs, records, acquired))
}

/// Loads the share-partition at the partition's current leader epoch if it is not
/// loaded at that epoch. Returns the epoch.
async fn load(
    slot: &mut Slot,
    store: &impl StateStore,
    log: &impl ShareLog,
    key: &ShareKey,
    settings: Settings,
) -> Result<i32, ResponseError> {
    let Some(epoch) = log.leading_epoch() else {
        slot.state = None;
        return Err(ResponseError::NotLeaderOrFollower);
    };
    match slot.state.as_mut() {
        Some((at, partition)) if *at == epoch => {
            partition.set_config(settings.partition);
            partition.advance_log_start(log.log_start_offset());
            return Ok(epoch);
        }
        _ => slot.state = None,
    }
    let stored = store.read(key, epoch).await.map_err(persist_error)?;
    let partition = match stored {
        Some(snapshot) => match SharePartition::from_snapshot(&snapshot, settings.partition) {
            Ok(mut p) => {
                p.advance_log_start(log.log_start_offset());
                info!(group = %key.group_id, topic_id = %key.topic_id, partition = key.partition, epoch, start_offset = p.start_offset(), in_flight = p.in_flight(), "share-partition loaded");
                p
            }
            Err(e) => {
                // A state this broker cannot use is not silently replaced: that could
                // redeliver everything acknowledged. The operator resets it with
                // AlterShareGroupOffsets or deletes it.
                warn!(group = %key.group_id, partition = key.partition, error = %e, "stored share-partition state is unusable");
                return Err(ResponseError::UnknownServerError);
            }
        },
        None => {
            let fresh = match settings.by_duration_ms {
                Some(age) => {
                    let since = crate::time::now_ms().saturating_sub(age);
                    let end = log.readable_end();
                    // Nothing that recent: the partition starts at its end, as Kafka's
                    // by_duration does.
                    let start = log.offset_for_timestamp(since).unwrap_or(end);
                    SharePartition::new(settings.partition, AutoOffsetReset::Earliest, start, end)
                }
                None => SharePartition::new(
                    settings.partition,
                    settings.reset,
                    log.log_start_offset(),
                    log.readable_end(),
                ),
            };
            // Written at once, so `latest` means the end of the log when the group first
            // fetched, not whenever a later leader happens to look.
            store
                .write(key, epoch, &fresh.snapshot())
                .await
                .map_err(persist_error)?;
            info!(group = %key.group_id, topic_id = %key.topic_id, partition = key.partition, epoch, start_offset = fresh.start_offset(), reset = ?settings.reset, "share-partition initialized");
            fresh
        }
    };
    slot.state = Some((epoch, partition));
    Ok(epoch)
}

async fn persist(
    slot: &mut Slot,
    store: &impl StateStore,
    key: &ShareKey,
    epoch: i32,
    snapshot: &ShareSnapshot,
) -> Result<(), ResponseError> {
    if let Err(e) = store.write(key, epoch, snapshot).await {
        // Memory is now ahead of what is stored: forget it, and let the next request
        // start again from the stored state.
        slot.state = None;
        debug!(group = %key.group_id, partition = key.partition, error = ?e, "writing share-partition state failed");
        return Err(persist_error(e));
    }
    Ok(())
}

/// How a failure to reach the share coordinator is told to the member. A fenced
/// leader epoch means another broker leads now; anything transient is told the same
/// way, since a member's answer to NOT_LEADER_OR_FOLLOWER (refresh metadata, fetch
/// again) is exactly the retry that is wanted. A reset state epoch is passed on.
fn persist_error(e: ResponseError) -> ResponseError {
    match e {
        ResponseError::FencedStateEpoch => ResponseError::FencedStateEpoch,
        _ => ResponseError::NotLeaderOrFollower,
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
