//! The follower side of replication: one task per leader broker, fetching every partition
//! this broker follows there over one gRPC stream.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_controller::network::ChannelPool;
use fjord_proto::v1::replication_client::ReplicationClient;
use fjord_proto::v1::{ReplicaFetchPartition, ReplicaFetchPartitionData, ReplicaFetchRequest};
use fjord_proto::MAX_MESSAGE_BYTES;
use fjord_storage::batch::validate_records;
use fjord_storage::{StorageError, TopicPartition};
use kafka_protocol::error::ResponseError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::partition::FollowerTerm;
use super::{FollowPlan, Partition, ReplicaError};
use crate::broker::Broker;
use crate::time::now_ms;

struct Fetcher {
    addr: String,
    partitions: watch::Sender<BTreeSet<TopicPartition>>,
    task: JoinHandle<()>,
}

/// Keeps `num.replica.fetchers` fetcher tasks per leader this broker follows, in line
/// with the metadata. Each fetcher has a share of that leader's partitions.
pub struct FetcherManager {
    broker: Arc<Broker>,
    pool: ChannelPool,
    /// By (leader, slot).
    fetchers: Mutex<HashMap<(i32, usize), Fetcher>>,
}

/// Which of `slots` fetchers fetches `tp`: a partition stays on one stream (its fetches
/// must stay in order), and a topic's partitions spread over all of them.
fn slot_of(tp: &TopicPartition, slots: usize) -> usize {
    let topic = tp
        .topic
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (topic.wrapping_add(tp.partition as u32) as usize) % slots.max(1)
}

/// Splits each leader's partitions over `slots` fetchers; empty shares are left out.
fn split_plan(
    plan: FollowPlan,
    slots: usize,
) -> HashMap<(i32, usize), (String, BTreeSet<TopicPartition>)> {
    let mut out: HashMap<(i32, usize), (String, BTreeSet<TopicPartition>)> = HashMap::new();
    for (leader, (addr, parts)) in plan {
        for tp in parts {
            out.entry((leader, slot_of(&tp, slots)))
                .or_insert_with(|| (addr.clone(), BTreeSet::new()))
                .1
                .insert(tp);
        }
    }
    out
}

impl FetcherManager {
    pub fn new(broker: Arc<Broker>) -> Self {
        FetcherManager {
            pool: ChannelPool::new(crate::security::peer_links(
                &broker.security,
                broker.node_id,
            )),
            broker,
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Starts, retargets and stops fetchers so that exactly `plan` is followed.
    pub fn apply(&self, plan: FollowPlan) {
        let slots = self.broker.broker_i64("num.replica.fetchers").clamp(1, 64) as usize;
        let plan = split_plan(plan, slots);
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        fetchers.retain(|key, f| {
            let keep = plan.get(key).is_some_and(|(addr, _)| *addr == f.addr);
            if !keep {
                f.task.abort();
            }
            keep
        });
        for (key, (addr, parts)) in plan {
            let leader = key.0;
            match fetchers.get(&key) {
                Some(f) => {
                    f.partitions.send_if_modified(|current| {
                        let changed = *current != parts;
                        *current = parts.clone();
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(parts);
                    let task = tokio::spawn(run(
                        leader,
                        addr.clone(),
                        rx,
                        Arc::clone(&self.broker),
                        self.pool.clone(),
                    ));
                    info!(leader, slot = key.1, %addr, "started replica fetcher");
                    fetchers.insert(
                        key,
                        Fetcher {
                            addr,
                            partitions: tx,
                            task,
                        },
                    );
                }
            }
        }
    }

    pub fn stop_all(&self) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|p| p.into_inner());
        for (_, f) in fetchers.drain() {
            f.task.abort();
        }
    }
}

/// Why a fetch session ended without an error.
enum SessionEnd {
    /// This leader has no fetcher any more.
    Stopped,
    /// The partition set changed while a fetch was out: the next session asks at once
    /// for the new set instead of letting it wait out a long poll on the old one.
    PartitionsChanged,
}

/// One leader's fetch loop: (re)connect, then request, apply, repeat.
async fn run(
    leader: i32,
    addr: String,
    mut parts: watch::Receiver<BTreeSet<TopicPartition>>,
    broker: Arc<Broker>,
    pool: ChannelPool,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match session(leader, &addr, &mut parts, &broker, &pool).await {
            Ok(SessionEnd::Stopped) => return,
            Ok(SessionEnd::PartitionsChanged) => backoff = Duration::from_millis(50),
            Err(e) => {
                debug!(leader, %addr, error = %e, "replica fetch session ended; reconnecting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn session(
    leader: i32,
    addr: &str,
    parts: &mut watch::Receiver<BTreeSet<TopicPartition>>,
    broker: &Broker,
    pool: &ChannelPool,
) -> Result<SessionEnd, String> {
    let channel = pool.channel(addr).map_err(|e| e.to_string())?;
    let mut client = ReplicationClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel(1);
    let mut responses = client
        .fetch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let max_wait = broker
        .broker_i64("replica.fetch.wait.max.ms")
        .clamp(0, 60_000) as i32;
    let max_bytes = broker
        .broker_i64("replica.fetch.response.max.bytes")
        .clamp(1, i64::from(i32::MAX)) as i32;
    let partition_max_bytes = broker
        .broker_i64("replica.fetch.max.bytes")
        .clamp(1, i64::from(i32::MAX)) as i32;
    // Handles looked up once per session, not on every fetch.
    let label = leader.to_string();
    let fetch_wait =
        metrics::histogram!("fjord_replica_fetch_wait_seconds", "leader" => label.clone());
    let apply_time = metrics::histogram!("fjord_replica_apply_seconds", "leader" => label.clone());
    let fetched = metrics::counter!("fjord_replica_fetched_bytes_total", "leader" => label);
    let mut idle = Duration::from_millis(20);
    loop {
        let wanted: Vec<(Arc<Partition>, ReplicaFetchPartition)> = parts
            .borrow_and_update()
            .iter()
            .filter_map(|tp| {
                let p = broker.replicas.get(&tp.topic, tp.partition)?;
                if p.is_leader() || p.leader_id() != leader {
                    return None;
                }
                let (fetch_offset, last_fetched_epoch) = p.fetch_position().ok()?;
                let req = ReplicaFetchPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    fetch_offset,
                    last_fetched_epoch,
                    current_leader_epoch: p.leader_epoch(),
                };
                Some((p, req))
            })
            .collect();
        if wanted.is_empty() {
            if parts.changed().await.is_err() {
                return Ok(SessionEnd::Stopped);
            }
            continue;
        }
        let request = ReplicaFetchRequest {
            replica_id: broker.node_id,
            broker_epoch: broker.broker_epoch(),
            max_wait_ms: max_wait,
            max_bytes,
            partition_max_bytes,
            partitions: wanted.iter().map(|(_, r)| r.clone()).collect(),
        };
        let sent = std::time::Instant::now();
        tx.send(request)
            .await
            .map_err(|_| "request stream closed".to_string())?;
        let wait = Duration::from_millis(max_wait as u64) + Duration::from_secs(30);
        let answer = tokio::select! {
            answer = tokio::time::timeout(wait, responses.message()) => answer,
            // A new partition (a topic just created, say) would otherwise wait up to
            // `replica.fetch.wait.max.ms` for this poll, and acks=all producers with it.
            // Dropping the stream cancels the poll at the leader; nothing of its answer
            // was applied, so the next fetch asks from the same positions.
            changed = parts.changed() => {
                return Ok(if changed.is_err() {
                    SessionEnd::Stopped
                } else {
                    SessionEnd::PartitionsChanged
                });
            }
        };
        let response = match answer {
            Err(_) => return Err("fetch response timed out".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(None)) => return Err("leader closed the fetch stream".into()),
            Ok(Ok(Some(r))) => r,
        };
        fetch_wait.record(sent.elapsed().as_secs_f64());
        let bytes: usize = response.partitions.iter().map(|d| d.records.len()).sum();
        fetched.increment(bytes as u64);
        let applying = std::time::Instant::now();
        let mut progressed = false;
        let mut failed = false;
        for data in &response.partitions {
            let Some((p, req)) = wanted
                .iter()
                .find(|(_, r)| r.topic == data.topic && r.partition == data.partition)
            else {
                continue;
            };
            let term = FollowerTerm {
                leader,
                epoch: req.current_leader_epoch,
            };
            match apply(p, term, req.fetch_offset, data) {
                Ok(moved) => progressed |= moved,
                // Leadership moved while the fetch was out; the next one asks anew.
                Err(ReplicaError::StaleFetch) => {}
                // The partition was deleted here while the fetch was out; the metadata
                // change that removed it also ends this fetcher's interest in it.
                Err(ReplicaError::UnknownTopicOrPartition) => {
                    failed = true;
                    debug!(partition = %p.tp, "fetched data for a partition no longer hosted");
                }
                Err(e) => {
                    failed = true;
                    warn!(partition = %p.tp, error = %e, "applying fetched data failed");
                }
            }
        }
        apply_time.record(applying.elapsed().as_secs_f64());
        // Only errors came back (a leader change in flight), or what came could not be
        // applied (the same answer would come again at once): wait a little, or for new
        // metadata, before asking again, instead of spinning and logging in a loop.
        if progressed {
            idle = Duration::from_millis(20);
        } else if failed || response.partitions.iter().all(|d| d.error_code != 0) {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                changed = parts.changed() => if changed.is_err() { return Ok(SessionEnd::Stopped) },
            }
            idle = (idle * 2).min(Duration::from_millis(500));
        }
    }
}

/// Applies one partition's answer. Returns whether anything moved.
fn apply(
    p: &Partition,
    term: FollowerTerm,
    fetch_offset: i64,
    d: &ReplicaFetchPartitionData,
) -> Result<bool, ReplicaError> {
    if d.error_code != 0 {
        if d.error_code == i32::from(ResponseError::OffsetOutOfRange.code()) {
            if fetch_offset < d.log_start_offset {
                p.restart_at(term, d.log_start_offset)?;
                return Ok(true);
            }
            if d.log_end_offset >= 0 && fetch_offset > d.log_end_offset {
                p.truncate_to(term, d.log_end_offset)?;
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if d.diverging {
        // Truncate to where our copy of that epoch ends, or the leader's, whichever is
        // lower: everything after it was never the leader's.
        let target = if d.diverging_epoch < 0 {
            d.log_start_offset.max(0)
        } else {
            let (mine, my_end) = p.end_offset_for_epoch(d.diverging_epoch)?;
            if mine < 0 {
                d.diverging_end_offset.min(fetch_offset)
            } else {
                d.diverging_end_offset.min(my_end)
            }
        };
        if target < p.log_start_offset() {
            p.restart_at(term, d.log_start_offset.max(target))?;
        } else {
            p.truncate_to(term, target)?;
        }
        return Ok(true);
    }
    let mut moved = false;
    if !d.records.is_empty() {
        let validated = validate_records(&d.records, usize::MAX)?;
        match p.append_as_follower(term, &validated, now_ms()) {
            Ok(()) => moved = true,
            // Our log changed under this fetch (a truncation raced it); the next fetch
            // starts from the new end.
            Err(ReplicaError::Storage(StorageError::NonContiguousAppend { .. })) => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        }
    }
    p.follow_leader_offsets(term, d.high_watermark, d.log_start_offset)?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(leaders: &[(i32, &[(&str, i32)])]) -> FollowPlan {
        leaders
            .iter()
            .map(|(leader, parts)| {
                let set = parts
                    .iter()
                    .map(|(t, p)| TopicPartition::new(t.to_string(), *p))
                    .collect();
                (*leader, (format!("node-{leader}:9093"), set))
            })
            .collect()
    }

    #[test]
    fn one_slot_keeps_each_leader_whole() {
        let split = split_plan(plan(&[(2, &[("a", 0), ("a", 1)]), (3, &[("b", 0)])]), 1);
        assert_eq!(split.len(), 2);
        assert_eq!(split[&(2, 0)].1.len(), 2);
        assert_eq!(split[&(3, 0)].0, "node-3:9093");
    }

    #[test]
    fn slots_share_a_leaders_partitions_and_lose_none() {
        let parts: Vec<(&str, i32)> = (0..12).map(|p| ("orders", p)).collect();
        let split = split_plan(plan(&[(2, &parts)]), 4);
        // A topic's consecutive partitions land on every slot.
        assert_eq!(split.len(), 4);
        let total: usize = split.values().map(|(_, s)| s.len()).sum();
        assert_eq!(total, 12);
        // The same partition always maps to the same slot.
        let tp = TopicPartition::new("orders".to_string(), 5);
        assert_eq!(slot_of(&tp, 4), slot_of(&tp, 4));
        assert!(split[&(2, slot_of(&tp, 4))].1.contains(&tp));
    }
}
