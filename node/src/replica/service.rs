//! The leader side of replication: a gRPC stream per follower broker. Each request lists
//! every partition that follower fetches from this broker; the answer carries raw
//! batches, or where the follower's log diverges.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_controller::ClusterMetadata;
use fjord_proto::v1::replication_server::{Replication, ReplicationServer};
use fjord_proto::v1::{
    AwaitMetadataRequest, AwaitMetadataResponse, ReplicaFetchPartitionData, ReplicaFetchRequest,
    ReplicaFetchResponse,
};
use fjord_proto::MAX_MESSAGE_BYTES;
use futures::future::select_all;
use futures::{FutureExt, Stream};
use kafka_protocol::error::ResponseError;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::throttle::Throttle;
use super::{Partition, ReplicaError, ReplicaManager};
use crate::kafka::errors::KafkaError;
use crate::time::now_ms;

/// The longest a peer may hold an AwaitMetadata call open.
const MAX_METADATA_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ReplicationService {
    replicas: Arc<ReplicaManager>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    throttle: Arc<Throttle>,
}

impl ReplicationService {
    pub fn new(
        replicas: Arc<ReplicaManager>,
        metadata: watch::Receiver<Arc<ClusterMetadata>>,
    ) -> Self {
        ReplicationService {
            replicas,
            metadata,
            throttle: Arc::new(Throttle::default()),
        }
    }

    pub fn into_server(self) -> ReplicationServer<Self> {
        ReplicationServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<ReplicaFetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Replication for ReplicationService {
    type FetchStream = FetchStream;

    async fn await_metadata(
        &self,
        request: Request<AwaitMetadataRequest>,
    ) -> Result<Response<AwaitMetadataResponse>, Status> {
        crate::security::check_peer(&request, None, &self.metadata.borrow(), "AwaitMetadata")?;
        let req = request.into_inner();
        let timeout = Duration::from_millis(u64::from(req.timeout_ms)).min(MAX_METADATA_WAIT);
        let applied = self.replicas.wait_applied(req.index, timeout).await;
        Ok(Response::new(AwaitMetadataResponse { applied }))
    }

    async fn fetch(
        &self,
        request: Request<Streaming<ReplicaFetchRequest>>,
    ) -> Result<Response<FetchStream>, Status> {
        // Every request of the stream must name the node its link proved.
        let caller = fjord_proto::peer::caller(&request);
        crate::security::check_peer(&request, None, &self.metadata.borrow(), "Fetch")?;
        let mut inbound = request.into_inner();
        let service = self.clone();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let req = match inbound.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) => {
                        debug!(error = %e, "replica fetch stream ended");
                        return;
                    }
                };
                let claimed = u64::try_from(req.replica_id).unwrap_or(u64::MAX);
                if let Err(why) = fjord_proto::peer::check_caller(caller, Some(claimed), |_| true) {
                    let _ = tx
                        .send(Err(crate::security::refuse_peer("Fetch", why)))
                        .await;
                    return;
                }
                let resp = serve(&service, req).await;
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

fn error_data(topic: &str, partition: i32, e: &KafkaError) -> ReplicaFetchPartitionData {
    ReplicaFetchPartitionData {
        topic: topic.to_string(),
        partition,
        error_code: i32::from(e.code()),
        high_watermark: -1,
        log_start_offset: -1,
        log_end_offset: -1,
        ..Default::default()
    }
}

/// Answers one follower fetch: records positions (which moves the high watermark), then
/// reads. With nothing to send, waits up to `max_wait_ms` for any partition to grow.
async fn serve(service: &ReplicationService, req: ReplicaFetchRequest) -> ReplicaFetchResponse {
    let replicas = &service.replicas;
    let targets: Vec<Option<Arc<Partition>>> = req
        .partitions
        .iter()
        .map(|p| replicas.get(&p.topic, p.partition))
        .collect();
    let limits = Limits::of(service, &req);
    // Watching starts before the first read: an append landing between the read and the
    // watch would otherwise go unseen until the next one (or `max_wait_ms`), and acks=all
    // producers would wait with it.
    let mut watchers: Vec<_> = targets
        .iter()
        .flatten()
        .filter(|r| r.is_leader())
        .map(|r| r.subscribe_log_end())
        .collect();
    let (mut resp, mut has_data) = read(&req, &targets, &limits);
    // A fetch offset is the follower's log end only when its log agrees with ours (no
    // divergence, no error): only then may it count toward the high watermark.
    let now = now_ms();
    for ((p, replica), data) in req
        .partitions
        .iter()
        .zip(&targets)
        .zip(resp.partitions.iter_mut())
    {
        if let Some(r) = replica {
            if data.error_code == 0 && !data.diverging {
                let _ = r.record_follower_fetch(req.replica_id, p.fetch_offset, now);
                data.high_watermark = r.high_watermark();
            }
        }
    }

    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let _parked = (!has_data && !watchers.is_empty()).then(Parked::new);
    while !has_data && !watchers.is_empty() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let changed = select_all(watchers.iter_mut().map(|w| w.changed().boxed()));
        match tokio::time::timeout(remaining, changed).await {
            Ok((Ok(()), _, _)) => (resp, has_data) = read(&req, &targets, &limits),
            _ => break,
        }
    }
    resp
}

/// Counts follower fetches waiting at this leader for data
/// (`fjord_replica_fetches_waiting`). It drops only after the last read of the wait, so a
/// reading of 0 means no parked fetch can still pick up an append.
struct Parked;

impl Parked {
    fn new() -> Self {
        crate::admin::REPLICA_FETCHES_WAITING.add(1);
        Parked
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        crate::admin::REPLICA_FETCHES_WAITING.add(-1);
    }
}

/// Which partitions of a fetch are throttled: those where the fetching broker is a
/// replica a reassignment is adding.
struct Limits<'a> {
    throttled: Vec<bool>,
    rate: i64,
    throttle: &'a Throttle,
}

impl<'a> Limits<'a> {
    fn of(service: &'a ReplicationService, req: &ReplicaFetchRequest) -> Self {
        let md = service.metadata.borrow().clone();
        let rate = service
            .replicas
            .view(&md)
            .broker_i64("leader.replication.throttled.rate");
        let throttled = req
            .partitions
            .iter()
            .map(|p| {
                rate < i64::MAX
                    && md
                        .partition(&p.topic, p.partition)
                        .is_some_and(|s| s.adding.contains(&req.replica_id))
            })
            .collect();
        Limits {
            throttled,
            rate,
            throttle: &service.throttle,
        }
    }
}

fn read(
    req: &ReplicaFetchRequest,
    targets: &[Option<Arc<Partition>>],
    limits: &Limits<'_>,
) -> (ReplicaFetchResponse, bool) {
    let per_partition = if req.partition_max_bytes > 0 {
        req.partition_max_bytes as u64
    } else {
        (req.max_bytes.max(1) as u64 / req.partitions.len().max(1) as u64).max(64 * 1024)
    };
    let mut budget = req.max_bytes.max(1) as u64;
    // As in Kafka, only the first partition with records may exceed the limits (by its
    // first batch, so a batch larger than them still moves); after that the response
    // budget is a hard cap. Without this, a hundred lagging partitions would each add a
    // whole batch to one answer, far beyond `replica.fetch.response.max.bytes`.
    let mut min_one = true;
    let mut has_data = false;
    let mut out = Vec::with_capacity(req.partitions.len());
    for ((p, replica), throttled) in req.partitions.iter().zip(targets).zip(&limits.throttled) {
        // `None`: throttled with nothing left to send this time.
        let max_bytes = if *throttled {
            Some(per_partition.min(budget))
                .map(|m| m.min(limits.throttle.allowance(limits.rate)))
                .filter(|m| *m > 0)
        } else {
            Some(per_partition.min(budget))
        };
        let data = match replica {
            None => error_data(
                &p.topic,
                p.partition,
                &KafkaError::new(ResponseError::UnknownTopicOrPartition, ""),
            ),
            Some(r) => match read_one(r, p, max_bytes, min_one) {
                Ok(d) => d,
                Err(e) => error_data(&p.topic, p.partition, &KafkaError::from(&e)),
            },
        };
        if *throttled {
            limits.throttle.consume(data.records.len() as u64);
        }
        budget = budget.saturating_sub(data.records.len() as u64);
        min_one &= data.records.is_empty();
        has_data |= !data.records.is_empty() || data.diverging || data.error_code != 0;
        out.push(data);
    }
    (ReplicaFetchResponse { partitions: out }, has_data)
}

fn read_one(
    r: &Partition,
    p: &fjord_proto::v1::ReplicaFetchPartition,
    max_bytes: Option<u64>,
    min_one: bool,
) -> Result<ReplicaFetchPartitionData, ReplicaError> {
    if !r.is_leader() {
        return Err(ReplicaError::NotLeaderOrFollower);
    }
    r.check_leader_epoch(p.current_leader_epoch)?;
    let mut data = ReplicaFetchPartitionData {
        topic: p.topic.clone(),
        partition: p.partition,
        log_start_offset: r.log_start_offset(),
        log_end_offset: r.log_end_offset(),
        ..Default::default()
    };
    if p.last_fetched_epoch >= 0 {
        let (epoch, end) = r.end_offset_for_epoch(p.last_fetched_epoch)?;
        if epoch != p.last_fetched_epoch || end < p.fetch_offset {
            data.diverging = true;
            data.diverging_epoch = epoch;
            data.diverging_end_offset = end;
            data.high_watermark = r.high_watermark();
            return Ok(data);
        }
    }
    if p.fetch_offset < r.log_start_offset() || p.fetch_offset > r.log_end_offset() {
        data.error_code = i32::from(ResponseError::OffsetOutOfRange.code());
        data.high_watermark = r.high_watermark();
        return Ok(data);
    }
    let Some(max_bytes) = max_bytes else {
        // Throttled: positions only, no records this time.
        data.high_watermark = r.high_watermark();
        return Ok(data);
    };
    let result = r.read_for_follower(p.fetch_offset, max_bytes, min_one)?;
    data.high_watermark = result.high_watermark;
    data.log_start_offset = result.log_start_offset;
    data.records = result.records;
    Ok(data)
}
