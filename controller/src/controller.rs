use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_proto::v1::ForwardRequest;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, SnapshotPolicy};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::decisions::brokers_to_fence;
use crate::error::ControllerError;
use crate::metadata::{
    ClusterMetadata, CommandOutcome, MetadataCommand, MetadataError, NewTopicSpec, TopicOutcome,
};
use crate::network::{ChannelPool, ControllerGrpc, RaftNetworkFactoryImpl, Routing};
use crate::placement::{assign_replicas, Candidate};
use crate::requests::{
    ControllerRequest, ControllerResponse, CreateTopicRequest, QuorumNode, QuorumStatus,
};
use crate::store::{RaftLogStore, StateMachineStore};
use crate::types::{NodeId, Raft};

/// How to start the local controller.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub node_id: NodeId,
    /// Directory for the Raft log and sled state (`<data-dir>/controller`).
    pub dir: PathBuf,
    /// Every voter's id and gRPC address.
    pub voters: BTreeMap<NodeId, String>,
    /// Lower bound of the randomized election timeout; the upper bound is twice this.
    pub election_timeout: Duration,
    /// How long a metadata write may wait for a leader and a commit.
    pub request_timeout: Duration,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout: Duration,
    /// `auto.leader.rebalance.enable`, `leader.imbalance.check.interval.seconds` and
    /// `leader.imbalance.per.broker.percentage`.
    pub auto_leader_rebalance: bool,
    pub leader_imbalance_check_interval: Duration,
    pub leader_imbalance_per_broker_percentage: u32,
    /// `auto.balance.enable` with `auto.balance.grace.ms`: `Some(grace)` turns automatic
    /// replica balancing on.
    pub auto_balance: Option<Duration>,
}

/// How often automatic balancing looks for work.
const AUTO_BALANCE_INTERVAL_MS: u64 = 5_000;

/// Parses `1@host:port,2@host:port`.
pub fn parse_voters(spec: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut out = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| format!("voter '{part}' must look like ID@HOST:PORT"))?;
        let id: NodeId = id
            .parse()
            .map_err(|_| format!("voter id '{id}' in '{part}' is not a number"))?;
        if !addr.contains(':') {
            return Err(format!("voter address '{addr}' needs a port"));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(format!("voter {id} is listed twice"));
        }
    }
    if out.is_empty() {
        return Err("the voter list is empty".into());
    }
    Ok(out)
}

/// The local controller: a Raft node over the metadata log, plus the active-controller
/// logic that turns requests into commands. Cheap to clone.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: NodeId,
    raft: Raft,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    pool: ChannelPool,
    request_timeout: Duration,
    /// Varies the start of replica placement between topics, as Kafka's random start does.
    placement_seed: AtomicU64,
    /// Voter addresses from the command line: where to find the quorum before this node
    /// knows a leader (a new learner, say).
    bootstrap_voters: BTreeMap<NodeId, String>,
    session_timeout: Duration,
    rebalance: Option<(Duration, u32)>,
    auto_balance: Option<Duration>,
    liveness: Mutex<Liveness>,
    started: Instant,
    _db: sled::Db,
}

/// Broker heartbeats, held only by the active controller and only in memory.
#[derive(Default)]
struct Liveness {
    /// When this node last became the active controller (ms since start); every broker
    /// gets a full session from then before it can be fenced.
    grace_start_ms: u64,
    last_heartbeat_ms: HashMap<i32, u64>,
    /// Registrations that asked for a controlled shutdown: their heartbeats must not
    /// unfence them again.
    shutting_down: HashSet<(i32, i64)>,
    /// When leader balance was last checked (ms since start).
    last_rebalance_ms: u64,
    /// When this controller first saw each currently fenced broker fenced (ms since start).
    fenced_since_ms: HashMap<i32, u64>,
    /// When automatic balancing last looked (ms since start).
    last_auto_balance_ms: u64,
}

fn storage_err(e: impl std::fmt::Display) -> ControllerError {
    ControllerError::Storage(e.to_string())
}

/// Opens the sled state. Its file lock outlives `shutdown` by a moment while Raft's
/// background tasks drop their handles, so a restart in the same process (or right after
/// the previous process) waits for the lock for a bounded time instead of failing.
async fn open_state(path: &std::path::Path) -> Result<sled::Db, ControllerError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::Config::new()
            .path(path)
            .flush_every_ms(Some(200))
            .open()
        {
            Ok(db) => return Ok(db),
            // sled reports the held lock as an I/O error of its own wording.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await; // lock poll, bounded by the deadline
            }
            Err(e) => return Err(storage_err(e)),
        }
    }
}

impl Controller {
    /// Opens the durable state, starts Raft, and initializes the cluster when this node is
    /// the lowest-id voter and has never been initialized.
    pub async fn start(config: ControllerConfig) -> Result<Self, ControllerError> {
        std::fs::create_dir_all(&config.dir).map_err(storage_err)?;
        let db = open_state(&config.dir.join("state")).await?;
        let log_store = RaftLogStore::open(
            &config.dir.join("raft-log"),
            db.open_tree("raft").map_err(storage_err)?,
        )
        .map_err(storage_err)?;
        let state_machine =
            StateMachineStore::open(db.open_tree("state_machine").map_err(storage_err)?)
                .map_err(storage_err)?;
        let metadata = state_machine.subscribe();

        let election_ms = config.election_timeout.as_millis().max(50) as u64;
        let raft_config = Config {
            cluster_name: "fjord-metadata".into(),
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 2,
            heartbeat_interval: (election_ms / 4).max(10),
            enable_pre_vote: Some(true),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(10_000),
            max_in_snapshot_log_to_keep: 1_000,
            ..Config::default()
        }
        .validate()
        .map_err(|e| ControllerError::Fatal(e.to_string()))?;

        let pool = ChannelPool::default();
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            RaftNetworkFactoryImpl::new(
                pool.clone(),
                Routing {
                    me: config.node_id,
                    metadata: metadata.clone(),
                },
            ),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ControllerError::Fatal(e.to_string()))?;

        let lowest_voter = config.voters.keys().next().copied();
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::Fatal(e.to_string()))?;
        if !initialized && lowest_voter == Some(config.node_id) {
            let members: BTreeMap<NodeId, BasicNode> = config
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
                .collect();
            info!(voters = ?config.voters, "initializing the metadata quorum");
            if let Err(e) = raft.initialize(members).await {
                // Another start of this node may have raced us; that is harmless.
                warn!(error = %e, "raft initialize refused");
            }
        }

        let controller = Controller {
            inner: Arc::new(Inner {
                node_id: config.node_id,
                raft,
                metadata,
                pool,
                request_timeout: config.request_timeout,
                placement_seed: AtomicU64::new(u64::from(Uuid::new_v4().as_u128() as u32)),
                bootstrap_voters: config.voters.clone(),
                session_timeout: config.session_timeout,
                rebalance: config.auto_leader_rebalance.then_some((
                    config.leader_imbalance_check_interval,
                    config.leader_imbalance_per_broker_percentage,
                )),
                auto_balance: config.auto_balance,
                liveness: Mutex::new(Liveness::default()),
                started: Instant::now(),
                _db: db,
            }),
        };
        controller.spawn_leader_duties();
        Ok(controller)
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// A receiver of every new metadata image.
    pub fn metadata(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.inner.metadata.clone()
    }

    pub fn current(&self) -> Arc<ClusterMetadata> {
        self.inner.metadata.borrow().clone()
    }

    pub fn grpc(&self) -> ControllerGrpc {
        ControllerGrpc::new(self.clone())
    }

    /// The node id of the active controller, if one is known.
    pub fn active_controller(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow_watched().current_leader
    }

    pub fn is_active(&self) -> bool {
        self.inner.raft.is_leader()
    }

    /// Waits until the local image holds at least everything committed before this node
    /// restarted. Until then an absent topic may simply not be replayed yet, so callers
    /// must not treat absence as deletion. Returns false on timeout.
    pub async fn wait_for_recovery(&self, timeout: Duration) -> bool {
        // A node with no Raft state has nothing to recover (and may not be a member yet).
        if !self.inner.raft.is_initialized().await.unwrap_or(false) {
            return true;
        }
        self.inner
            .raft
            .wait_for_recovery(Some(timeout))
            .await
            .is_ok()
    }

    /// Hands Raft leadership to another voter before this node stops, so the quorum does
    /// not wait out an election timeout. Bounded: gives up after `timeout`.
    pub async fn step_down(&self, timeout: Duration) {
        if !self.is_active() {
            return;
        }
        let target = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow_watched();
            let target = m
                .membership_config
                .membership()
                .voter_ids()
                .find(|id| *id != self.inner.node_id);
            target
        };

        let Some(target) = target else { return };
        if let Err(e) = self.inner.raft.trigger().transfer_leader(target).await {
            warn!(error = %e, "leadership transfer failed");
            return;
        }
        let mut metrics = self.inner.raft.metrics();
        let _ = tokio::time::timeout(timeout, async {
            while metrics.borrow_watched().current_leader == Some(self.inner.node_id) {
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        info!(to = target, "handed over the active controller role");
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            warn!(error = %e, "raft shutdown failed");
        }
    }

    fn now_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }

    fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.inner
            .liveness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Work only the active controller does: the cluster id, and fencing brokers that
    /// missed their session. Re-checked on every Raft state change and on a short tick.
    fn spawn_leader_duties(&self) {
        let this = self.clone();
        let tick = (self.inner.session_timeout / 8)
            .clamp(Duration::from_millis(25), Duration::from_millis(500));
        tokio::spawn(async move {
            let mut metrics = this.inner.raft.metrics();
            let mut last_leader = None;
            let mut was_active = false;
            loop {
                let leader = metrics.borrow_watched().current_leader;
                if leader != last_leader {
                    info!(node = this.inner.node_id, leader = ?leader, "active controller changed");
                    last_leader = leader;
                }
                let active = this.is_active();
                if active && !was_active {
                    let mut l = this.liveness();
                    l.grace_start_ms = this.now_ms();
                    l.last_heartbeat_ms.clear();
                    l.shutting_down.clear();
                }
                was_active = active;
                if active {
                    this.leader_tick().await;
                }
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(tick) => {}
                }
            }
        });
    }

    async fn leader_tick(&self) {
        if self.current().cluster_id.is_none() {
            let cluster_id = new_cluster_id();
            match self
                .propose(MetadataCommand::InitializeCluster { cluster_id })
                .await
            {
                Ok(CommandOutcome::ClusterInitialized { cluster_id }) => {
                    info!(%cluster_id, "cluster initialized")
                }
                Ok(other) => debug!(?other, "unexpected outcome of cluster init"),
                // Expected right after an election, until this leader's term commits.
                Err(e) => debug!(error = %e, "could not initialize the cluster id yet"),
            }
        }
        let doomed = {
            let l = self.liveness();
            brokers_to_fence(
                &self.current(),
                &l.last_heartbeat_ms,
                l.grace_start_ms,
                self.now_ms(),
                self.inner.session_timeout.as_millis() as u64,
            )
        };
        for (broker_id, epoch) in doomed {
            warn!(broker = broker_id, "broker missed its session; fencing it");
            if let Err(e) = self
                .propose(MetadataCommand::FenceBroker { broker_id, epoch })
                .await
            {
                warn!(broker = broker_id, error = %e, "fencing failed");
            }
        }
        if let Some(grace) = self.inner.auto_balance {
            self.auto_balance_tick(grace).await;
        }
        if let Some((interval, percentage)) = self.inner.rebalance {
            let due = {
                let now = self.now_ms();
                let mut l = self.liveness();
                let due = now.saturating_sub(l.last_rebalance_ms) >= interval.as_millis() as u64;
                if due {
                    l.last_rebalance_ms = now;
                }
                due
            };
            if due {
                let elections = crate::decisions::rebalance_elections(&self.current(), percentage);
                if !elections.is_empty() {
                    info!(
                        partitions = elections.len(),
                        "moving leadership back to preferred replicas"
                    );
                    if let Err(e) = self
                        .propose(MetadataCommand::ElectLeaders { elections })
                        .await
                    {
                        warn!(error = %e, "preferred leader election failed");
                    }
                }
            }
        }
    }

    /// One step of automatic balancing, every few seconds (see `auto_balance`).
    async fn auto_balance_tick(&self, grace: Duration) {
        let md = self.current();
        let now = self.now_ms();
        let step = {
            let mut l = self.liveness();
            let fenced: HashSet<i32> = md
                .brokers
                .values()
                .filter(|b| b.fenced)
                .map(|b| b.id)
                .collect();
            l.fenced_since_ms.retain(|b, _| fenced.contains(b));
            for b in fenced {
                l.fenced_since_ms.entry(b).or_insert(now);
            }
            if now.saturating_sub(l.last_auto_balance_ms) < AUTO_BALANCE_INTERVAL_MS {
                return;
            }
            l.last_auto_balance_ms = now;
            crate::auto_balance::next_step(&md, &l.fenced_since_ms, now, grace.as_millis() as u64)
        };
        if step.is_empty() {
            return;
        }
        info!(
            partitions = step.len(),
            "automatic balancing: moving replicas"
        );
        if let Err(e) = self
            .propose(MetadataCommand::AlterReassignments { changes: step })
            .await
        {
            warn!(error = %e, "automatic balancing step failed");
        }
    }

    fn address_of(&self, node: NodeId) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        let from_membership = metrics
            .borrow_watched()
            .membership_config
            .get_node(&node)
            .map(|n| n.addr.clone());
        from_membership.or_else(|| self.inner.bootstrap_voters.get(&node).cloned())
    }

    /// Sends a metadata write to the active controller, here or over gRPC, retrying
    /// through elections until `request_timeout` passes.
    pub async fn submit(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        self.submit_within(request, self.inner.request_timeout)
            .await
    }

    /// [`submit`](Self::submit) with its own deadline (heartbeats use a short one).
    pub async fn submit_within(
        &self,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<ControllerResponse, ControllerError> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(20);
        loop {
            let attempt = match self.handle_as_leader(request.clone()).await {
                Err(ControllerError::NotController {
                    leader: Some(leader),
                }) if leader != self.inner.node_id => {
                    self.forward_while_leading(leader, &request).await
                }
                Err(ControllerError::NotController { leader: None }) => {
                    self.forward_to_any_voter(&request).await
                }
                other => other,
            };
            match attempt {
                Err(ControllerError::NotController { .. })
                | Err(ControllerError::Unavailable(_)) => {
                    if Instant::now() + backoff > deadline {
                        return Err(ControllerError::Timeout);
                    }
                    // Wait for a leader change, or a short backoff, whichever is first.
                    let mut metrics = self.inner.raft.metrics();
                    let _ = tokio::time::timeout(backoff, metrics.changed()).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Forwards to `leader`, giving up as soon as the quorum elects someone else: a call
    /// to a controller that died can hang until connection keep-alive notices, and by
    /// then its successor could have answered. The request may or may not have reached
    /// the old leader, so the caller hears an indeterminate outcome.
    async fn forward_while_leading(
        &self,
        leader: NodeId,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        let mut metrics = self.inner.raft.metrics();
        let replaced = async move {
            loop {
                let current = metrics.borrow_watched().current_leader;
                if current.is_some_and(|l| l != leader) {
                    return;
                }
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            result = self.forward(leader, request) => result,
            () = replaced => Err(ControllerError::Indeterminate(format!(
                "controller {leader} was replaced while the request was in flight"
            ))),
        }
    }

    /// Without a known leader (a node that has not joined yet), ask the configured voters:
    /// one of them is the leader, or knows who is.
    async fn forward_to_any_voter(
        &self,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        let mut last = ControllerError::NotController { leader: None };
        for (&voter, addr) in &self.inner.bootstrap_voters {
            if voter == self.inner.node_id {
                continue;
            }
            match self.forward_to(addr, request).await {
                Err(ControllerError::NotController { leader: Some(l) })
                    if l != self.inner.node_id =>
                {
                    return self.forward(l, request).await;
                }
                Err(
                    e @ (ControllerError::NotController { .. } | ControllerError::Unavailable(_)),
                ) => last = e,
                other => return other,
            }
        }
        Err(last)
    }

    async fn forward(
        &self,
        leader: NodeId,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        let addr = self.address_of(leader).ok_or_else(|| {
            ControllerError::Unavailable(format!("no address known for controller {leader}"))
        })?;
        self.forward_to(&addr, request).await
    }

    async fn forward_to(
        &self,
        addr: &str,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        let mut client = self
            .inner
            .pool
            .client(addr)
            .map_err(|e| ControllerError::Unavailable(e.to_string()))?;
        let body =
            serde_json::to_vec(request).map_err(|e| ControllerError::Fatal(e.to_string()))?;
        let mut req = tonic::Request::new(ForwardRequest {
            request: body.into(),
            origin_node: self.inner.node_id,
        });
        req.set_timeout(self.inner.request_timeout);
        let resp = client.forward(req).await.map_err(|e| match e.code() {
            // Nothing reached the leader: safe to try again.
            tonic::Code::Unavailable => {
                ControllerError::Unavailable(format!("forward to {addr}: {e}"))
            }
            // The leader may have applied it before the answer was lost.
            _ => ControllerError::Indeterminate(format!("forward to {addr}: {e}")),
        })?;
        serde_json::from_slice::<Result<ControllerResponse, ControllerError>>(
            &resp.into_inner().response,
        )
        .map_err(|e| ControllerError::Unavailable(format!("bad forward response: {e}")))?
    }

    async fn propose(&self, cmd: MetadataCommand) -> Result<CommandOutcome, ControllerError> {
        match self.inner.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ControllerError::NotController {
                    leader: f.leader_id,
                })
            }
            // The entry was appended and then discarded by a leader change: it may or may
            // not commit. Retrying could apply it twice, so the client hears a retriable
            // error and decides.
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => {
                Err(ControllerError::Indeterminate(format!(
                    "leader changed to {:?} during the write",
                    f.leader_id
                )))
            }
            Err(RaftError::APIError(e)) => Err(ControllerError::Unavailable(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(ControllerError::Fatal(f.to_string())),
        }
    }

    fn membership_error<E: std::fmt::Display>(
        e: RaftError<crate::types::TypeConfig, ClientWriteError<crate::types::TypeConfig>>,
        what: E,
    ) -> ControllerError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                ControllerError::NotController {
                    leader: f.leader_id,
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                MetadataError::InvalidVoterChange(format!("{what}: {c}")).into()
            }
            RaftError::APIError(other) => ControllerError::Unavailable(other.to_string()),
            RaftError::Fatal(f) => ControllerError::Fatal(f.to_string()),
        }
    }

    /// The newest metadata index this controller knows to be committed (or applied).
    fn known_index(&self) -> u64 {
        let committed = self
            .inner
            .raft
            .metrics()
            .borrow_watched()
            .local_committed
            .map(|c| c.index())
            .unwrap_or(0);
        committed.max(self.current().last_applied_index)
    }

    fn quorum_status(&self) -> QuorumStatus {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = m.last_log_index;
        let nodes = membership
            .nodes()
            .map(|(id, node)| {
                let matched = if *id == self.inner.node_id {
                    last
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index())
                };
                QuorumNode {
                    node_id: *id,
                    rpc_address: node.addr.clone(),
                    voter: voters.contains(id),
                    matched_index: matched,
                    lag: match (last, matched) {
                        (Some(l), Some(x)) => Some(l.saturating_sub(x)),
                        (Some(l), None) => Some(l + 1),
                        _ => None,
                    },
                }
            })
            .collect();
        QuorumStatus {
            leader: self.inner.node_id,
            term: m.current_term,
            last_log_index: last,
            committed_index: m.local_committed.map(|c| c.index()),
            nodes,
        }
    }

    async fn change_voters(
        &self,
        node_id: NodeId,
        add: bool,
        force: bool,
    ) -> Result<ControllerResponse, ControllerError> {
        let (voters, known) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow_watched();
            let membership = m.membership_config.membership();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            (voters, membership.get_node(&node_id).is_some())
        };
        if add == voters.contains(&node_id) {
            return Ok(ControllerResponse::Done);
        }
        if add && !known {
            return Err(MetadataError::InvalidVoterChange(format!(
                "node {node_id} is not a learner of the quorum yet; start it so it joins, then add it"
            ))
            .into());
        }
        let after = if add {
            voters.len() + 1
        } else {
            voters.len() - 1
        };
        if after == 0 {
            return Err(
                MetadataError::InvalidVoterChange("cannot remove the last voter".into()).into(),
            );
        }
        if after % 2 == 0 && !force {
            return Err(MetadataError::InvalidVoterChange(format!(
                "this would leave {after} voters; an even number tolerates no more failures than one fewer. Use --force to do it anyway"
            ))
            .into());
        }
        let ids = BTreeSet::from([node_id]);
        let change = if add {
            ChangeMembers::AddVoterIds(ids)
        } else {
            ChangeMembers::RemoveVoters(ids)
        };
        self.inner
            .raft
            .change_membership(change, true)
            .await
            .map_err(|e| Self::membership_error(e, format!("changing voter {node_id}")))?;
        info!(node = node_id, add, voters = after, "voter set changed");
        Ok(ControllerResponse::Done)
    }

    /// Handles a request on the active controller: decides ids and placement, proposes
    /// the command, and waits until it is committed and applied.
    pub async fn handle_as_leader(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        if !self.is_active() {
            return Err(ControllerError::NotController {
                leader: self.active_controller(),
            });
        }
        let md = self.current();
        match request {
            ControllerRequest::RegisterBroker(reg) => {
                let broker_id = reg.broker_id;
                if let Some(existing) = md.brokers.get(&broker_id) {
                    let l = self.liveness();
                    let heard = l
                        .last_heartbeat_ms
                        .get(&broker_id)
                        .copied()
                        .unwrap_or(l.grace_start_ms);
                    let alive = self.now_ms().saturating_sub(heard)
                        <= self.inner.session_timeout.as_millis() as u64;
                    // Another process is live under this id: refuse until its session ends,
                    // so a zombie and its replacement never both count as the broker.
                    if !existing.fenced && existing.incarnation_id != reg.incarnation_id && alive {
                        return Err(MetadataError::DuplicateBrokerRegistration(broker_id).into());
                    }
                }
                // Count the registration as a heartbeat before it is applied, so the fencing
                // tick can never see the new registration with the old process's silence.
                let now = self.now_ms();
                self.liveness().last_heartbeat_ms.insert(broker_id, now);
                match self.propose(MetadataCommand::RegisterBroker(reg)).await? {
                    CommandOutcome::BrokerRegistered { broker_epoch } => {
                        Ok(ControllerResponse::BrokerRegistered { broker_epoch })
                    }
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::Heartbeat {
                broker_id,
                broker_epoch,
            } => {
                let b = md
                    .brokers
                    .get(&broker_id)
                    .ok_or(MetadataError::UnknownBroker(broker_id))?;
                if b.epoch != broker_epoch {
                    return Err(MetadataError::StaleBrokerEpoch(broker_id).into());
                }
                let stopping = {
                    let now = self.now_ms();
                    let mut l = self.liveness();
                    l.last_heartbeat_ms.insert(broker_id, now);
                    l.shutting_down.contains(&(broker_id, broker_epoch))
                };
                if b.fenced && !stopping {
                    self.propose(MetadataCommand::UnfenceBroker {
                        broker_id,
                        epoch: broker_epoch,
                    })
                    .await?;
                    return Ok(ControllerResponse::Heartbeat {
                        fenced: false,
                        metadata_index: self.known_index(),
                    });
                }
                Ok(ControllerResponse::Heartbeat {
                    fenced: b.fenced,
                    metadata_index: self.known_index(),
                })
            }
            ControllerRequest::ControlledShutdown {
                broker_id,
                broker_epoch,
            } => {
                self.liveness()
                    .shutting_down
                    .insert((broker_id, broker_epoch));
                self.propose(MetadataCommand::FenceBroker {
                    broker_id,
                    epoch: broker_epoch,
                })
                .await?;
                info!(broker = broker_id, "controlled shutdown: broker fenced");
                Ok(ControllerResponse::Done)
            }
            ControllerRequest::AddLearner {
                node_id,
                rpc_address,
            } => {
                let known = {
                    let metrics = self.inner.raft.metrics();
                    let m = metrics.borrow_watched();
                    m.membership_config
                        .get_node(&node_id)
                        .map(|n| n.addr.clone())
                };
                if known.as_deref() == Some(rpc_address.as_str()) {
                    return Ok(ControllerResponse::Done);
                }
                self.inner
                    .raft
                    .add_learner(node_id, BasicNode::new(rpc_address.clone()), false)
                    .await
                    .map_err(|e| Self::membership_error(e, format!("adding learner {node_id}")))?;
                info!(node = node_id, %rpc_address, "learner joined the metadata quorum");
                Ok(ControllerResponse::Done)
            }
            ControllerRequest::AddVoter { node_id, force } => {
                self.change_voters(node_id, true, force).await
            }
            ControllerRequest::RemoveVoter { node_id, force } => {
                self.change_voters(node_id, false, force).await
            }
            ControllerRequest::DescribeQuorum => {
                Ok(ControllerResponse::Quorum(self.quorum_status()))
            }
            ControllerRequest::AlterPartition {
                topic,
                partition,
                leader_id,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => {
                let cmd = MetadataCommand::AlterPartition {
                    topic,
                    partition,
                    leader_id,
                    leader_epoch,
                    partition_epoch,
                    new_isr,
                };
                match self.propose(cmd).await? {
                    CommandOutcome::PartitionChanged {
                        partition_epoch,
                        isr,
                    } => Ok(ControllerResponse::PartitionChanged {
                        partition_epoch,
                        isr,
                    }),
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::ElectLeaders {
                partitions,
                unclean,
            } => {
                let (elections, refused) = if unclean {
                    (
                        crate::decisions::unclean_elections(&md, partitions.as_deref()),
                        Vec::new(),
                    )
                } else {
                    crate::decisions::preferred_elections(&md, partitions.as_deref())
                };
                let mut results: Vec<(String, i32, Result<i32, MetadataError>)> = refused
                    .into_iter()
                    .map(|(t, p, e)| (t, p, Err(e)))
                    .collect();
                if !elections.is_empty() {
                    match self
                        .propose(MetadataCommand::ElectLeaders { elections })
                        .await?
                    {
                        CommandOutcome::Elections(r) => results.extend(r),
                        other => return Err(unexpected(other)),
                    }
                }
                Ok(ControllerResponse::Elections(results))
            }
            ControllerRequest::AlterReassignments { changes } => {
                match self
                    .propose(MetadataCommand::AlterReassignments { changes })
                    .await?
                {
                    CommandOutcome::Reassignments(r) => Ok(ControllerResponse::Reassignments(r)),
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::CreateTopics {
                topics,
                validate_only,
            } => self.create_topics(&md, topics, validate_only).await,
            ControllerRequest::DeleteTopics { names } => {
                match self
                    .propose(MetadataCommand::DeleteTopics { names })
                    .await?
                {
                    CommandOutcome::Topics(t) => Ok(ControllerResponse::Topics(t)),
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::CreatePartitions {
                topic,
                count,
                assignments,
                validate_only,
            } => {
                let topic_state = md
                    .topics
                    .get(&topic)
                    .ok_or_else(|| MetadataError::UnknownTopic(topic.clone()))?;
                let current = topic_state.partitions.len() as i32;
                if count <= current {
                    return Err(MetadataError::InvalidPartitions(format!(
                        "topic currently has {current} partitions, which is higher than or equal to the requested {count}"
                    ))
                    .into());
                }
                let rf = topic_state
                    .partitions
                    .first()
                    .map(|p| p.target_replicas().len())
                    .unwrap_or(1);
                let added = (count - current) as usize;
                let new_assignments = match assignments {
                    Some(a) if a.len() != added => {
                        return Err(MetadataError::InvalidReplicaAssignment(format!(
                            "{} replica assignments given for {added} new partitions",
                            a.len()
                        ))
                        .into())
                    }
                    Some(a) => a,
                    None => assign_replicas(
                        &self.candidates(&md),
                        added,
                        rf,
                        current as usize,
                        self.next_seed(),
                    )?,
                };
                if validate_only {
                    return Ok(ControllerResponse::Done);
                }
                let cmd = MetadataCommand::CreatePartitions {
                    topic,
                    new_assignments,
                };
                match self.propose(cmd).await? {
                    CommandOutcome::Topics(t) => Ok(ControllerResponse::Topics(t)),
                    CommandOutcome::Failed(e) => Err(e.into()),
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::AllocateProducerIds { broker_id, count } => {
                match self
                    .propose(MetadataCommand::AllocateProducerIds { broker_id, count })
                    .await?
                {
                    CommandOutcome::ProducerIds { start, count } => {
                        Ok(ControllerResponse::ProducerIds { start, count })
                    }
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::AlterConfigs {
                resource,
                ops,
                replace,
                validate_only,
            } => {
                if let crate::metadata::ConfigResource::Topic(name) = &resource {
                    if !md.topics.contains_key(name) {
                        return Err(MetadataError::UnknownTopic(name.clone()).into());
                    }
                }
                if validate_only {
                    return Ok(ControllerResponse::Done);
                }
                match self
                    .propose(MetadataCommand::AlterConfigs {
                        resource,
                        ops,
                        replace,
                    })
                    .await?
                {
                    CommandOutcome::Done => Ok(ControllerResponse::Done),
                    CommandOutcome::Failed(e) => Err(e.into()),
                    other => Err(unexpected(other)),
                }
            }
        }
    }

    fn candidates(&self, md: &ClusterMetadata) -> Vec<Candidate> {
        md.live_brokers()
            .map(|b| Candidate {
                id: b.id,
                rack: b.rack.clone(),
            })
            .collect()
    }

    fn next_seed(&self) -> u64 {
        self.inner.placement_seed.fetch_add(1, Ordering::Relaxed)
    }

    async fn create_topics(
        &self,
        md: &ClusterMetadata,
        topics: Vec<CreateTopicRequest>,
        validate_only: bool,
    ) -> Result<ControllerResponse, ControllerError> {
        let candidates = self.candidates(md);
        let mut outcomes: Vec<Option<TopicOutcome>> = Vec::with_capacity(topics.len());
        let mut specs = Vec::new();
        for t in topics {
            let decided = if md.topics.contains_key(&t.name) {
                Err(MetadataError::TopicAlreadyExists(t.name.clone()))
            } else {
                match t.assignments {
                    Some(a) => Ok(a),
                    None if t.num_partitions < 1 => Err(MetadataError::InvalidPartitions(format!(
                        "number of partitions must be at least 1, got {}",
                        t.num_partitions
                    ))),
                    None if t.replication_factor < 1 => {
                        Err(MetadataError::InvalidReplicationFactor(format!(
                            "replication factor must be at least 1, got {}",
                            t.replication_factor
                        )))
                    }
                    None => assign_replicas(
                        &candidates,
                        t.num_partitions as usize,
                        t.replication_factor as usize,
                        0,
                        self.next_seed(),
                    ),
                }
            };
            match decided {
                Err(e) => outcomes.push(Some(TopicOutcome {
                    name: t.name,
                    result: Err(e),
                })),
                Ok(assignments) if validate_only => outcomes.push(Some(TopicOutcome {
                    name: t.name,
                    result: Ok(Uuid::nil()).inspect(|_id| {
                        let _ = assignments;
                    }),
                })),
                Ok(assignments) => {
                    outcomes.push(None);
                    specs.push(NewTopicSpec {
                        name: t.name,
                        id: Uuid::new_v4(),
                        assignments,
                        configs: t.configs,
                        internal: t.internal,
                    });
                }
            }
        }
        if !specs.is_empty() {
            let applied = match self
                .propose(MetadataCommand::CreateTopics { topics: specs })
                .await?
            {
                CommandOutcome::Topics(t) => t,
                other => return Err(unexpected(other)),
            };
            let mut applied = applied.into_iter();
            for slot in outcomes.iter_mut().filter(|o| o.is_none()) {
                *slot = applied.next();
            }
        }
        Ok(ControllerResponse::Topics(
            outcomes.into_iter().flatten().collect(),
        ))
    }
}

fn unexpected(outcome: CommandOutcome) -> ControllerError {
    match outcome {
        CommandOutcome::Failed(e) => e.into(),
        other => ControllerError::Fatal(format!("unexpected command outcome {other:?}")),
    }
}

/// A Kafka-style cluster id: a random UUID in URL-safe base64 without padding (22 chars).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 0x3f) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 0x3f) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_and_reject_garbage() {
        let v = parse_voters("1@a:1, 3@b:2,2@c:3").expect("parse");
        assert_eq!(v.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(parse_voters("").is_err());
        assert!(parse_voters("x@a:1").is_err());
        assert!(parse_voters("1@a").is_err());
        assert!(parse_voters("1@a:1,1@b:2").is_err());
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert_ne!(id, new_cluster_id());
    }
}
