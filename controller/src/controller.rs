use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, RaftMetrics, SnapshotPolicy};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::attachments::Attachments;
use crate::decisions::{brokers_disconnected, brokers_to_fence};
use crate::error::ControllerError;
use crate::metadata::{ClusterMetadata, CommandOutcome, MetadataCommand, MetadataError};
use crate::network::{ChannelPool, ControllerGrpc, RaftNetworkFactoryImpl, Routing};
use crate::store::{RaftLogStore, StateMachineStore};
use crate::types::{NodeId, Raft, TypeConfig};

mod attach;
mod forwarding;
mod leader_requests;
mod quorum;

pub use attach::AttachStream;

/// A snapshot of the local Raft state (see [`Controller::raft_stats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftStats {
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
}

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
    /// `max.partitions.per.broker` from this node's static config (a cluster-wide
    /// dynamic value overrides it).
    pub max_partitions_per_broker: u64,
    /// How to reach the other nodes: mutual TLS and the cluster secret, when set.
    pub rpc_links: fjord_proto::peer::PeerLinks,
    /// `broker.session.disconnect.grace.ms`: a broker whose attach streams all closed
    /// and that has not come back within this is fenced at once. `None` waits out the
    /// session instead.
    pub disconnect_grace: Option<Duration>,
    /// Whether this node, as the lowest-id voter with no Raft state, may create the
    /// quorum. The node turns it off when its data directory shows it was in a cluster
    /// before (its metadata directory was lost): then it waits to be sent the existing
    /// metadata instead of starting a new, empty cluster.
    pub may_bootstrap: bool,
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
    max_partitions_per_broker: u64,
    liveness: Mutex<Liveness>,
    /// Who is attached to this voter (kept on every voter, whatever its role).
    attachments: Mutex<Attachments>,
    disconnect_grace: Option<Duration>,
    /// Wakes the active controller's duties before their next tick.
    duties_wake: tokio::sync::Notify,
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
    /// Brokers whose fencing proposal failed and has not succeeded since.
    fence_failing: HashSet<i32>,
}

/// The parts of the Raft state the active controller's duties depend on: who leads, in
/// which term, and how far the log has committed.
fn duty_inputs(m: &RaftMetrics<TypeConfig>) -> (Option<NodeId>, bool, u64, Option<u64>) {
    (
        m.current_leader,
        m.state.is_leader(),
        m.current_term,
        m.local_committed.as_ref().map(|l| l.index),
    )
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
        log_store
            .reconcile(state_machine.snapshot_last().await)
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
            // A follower whose metadata log lost entries it had acknowledged (a damaged
            // tail cut on open, a lost `controller` directory) answers the leader with a
            // conflict below what it matched before. Without this the leader's Raft core
            // panics on that answer and the cluster loses its controller; with it, the
            // leader searches that follower's log again and resends what it lacks. The
            // entries stay committed (the quorum's value never moves back); a panic
            // would not make them any safer, since a restarted leader forgets the old
            // progress anyway.
            allow_log_reversion: Some(true),
            ..Config::default()
        }
        .validate()
        .map_err(|e| ControllerError::Fatal(e.to_string()))?;

        let pool = ChannelPool::new(config.rpc_links.clone());
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
        if !initialized && lowest_voter == Some(config.node_id) && !config.may_bootstrap {
            warn!(
                dir = %config.dir.display(),
                "this node's metadata directory is empty but its data directory holds partition logs: not creating a new quorum; waiting for the running voters to send the metadata (if every voter lost its metadata, restore one from a backup)"
            );
        } else if !initialized && lowest_voter == Some(config.node_id) {
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
                max_partitions_per_broker: config.max_partitions_per_broker,
                liveness: Mutex::new(Liveness::default()),
                attachments: Mutex::new(Attachments::default()),
                disconnect_grace: config.disconnect_grace,
                duties_wake: tokio::sync::Notify::new(),
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

    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            warn!(error = %e, "raft shutdown failed");
        }
    }

    /// How much sooner than a whole session after taking over this controller may fence
    /// the previous active controller's broker. That broker's lease was last renewed by
    /// its own controller, which renews only within `lease_quorum_window` of a quorum
    /// acknowledgement, and its last one came before this node was elected: the lease
    /// ended within a lease length (three quarters of a session) plus that window of
    /// this node taking over. A further quarter of the window covers clock rates.
    fn previous_controller_head_start(&self) -> u64 {
        let session = self.inner.session_timeout.as_millis() as u64;
        let window = self.lease_quorum_window().as_millis() as u64;
        (session / 4).saturating_sub(window + window / 2)
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
        // Fencing waits for the next tick after a session ends: keep that short.
        let tick = (self.inner.session_timeout / 40)
            .clamp(Duration::from_millis(25), Duration::from_millis(100));
        tokio::spawn(async move {
            let mut metrics = this.inner.raft.metrics();
            let mut last_leader = None;
            // The last other controller this node followed: its broker is the one whose
            // lease this node can bound when it takes over.
            let mut previous_leader: Option<NodeId> = None;
            let mut was_active = false;
            loop {
                let leader = metrics.borrow_watched().current_leader;
                if leader != last_leader {
                    info!(node = this.inner.node_id, leader = ?leader, "active controller changed");
                    if last_leader.is_some() {
                        previous_leader = last_leader;
                    }
                    last_leader = leader;
                }
                let active = this.is_active();
                if active && !was_active {
                    let now = this.now_ms();
                    let mut l = this.liveness();
                    l.grace_start_ms = now;
                    l.last_heartbeat_ms.clear();
                    l.shutting_down.clear();
                    l.fence_failing.clear();
                    if let Some(previous) = previous_leader.filter(|p| *p != this.inner.node_id) {
                        // Its broker's last lease came from itself and ended at most a
                        // lease after it last had a quorum, which was before this term.
                        let head_start = this.previous_controller_head_start();
                        l.last_heartbeat_ms
                            .insert(previous as i32, now.saturating_sub(head_start));
                    }
                }
                was_active = active;
                if active {
                    this.leader_tick().await;
                }
                // Raft metrics also change on every heartbeat round (quorum-ack times);
                // running the duties on each of those spun when the quorum was gone and
                // every proposal failed at once. Only a change they depend on wakes them.
                let seen = duty_inputs(&metrics.borrow_watched());
                let next_tick = tokio::time::sleep(tick);
                tokio::pin!(next_tick);
                loop {
                    tokio::select! {
                        changed = metrics.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            if duty_inputs(&metrics.borrow_watched()) != seen {
                                break;
                            }
                        }
                        _ = &mut next_tick => break,
                        _ = this.inner.duties_wake.notified() => break,
                    }
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
            let mut l = self.liveness();
            let md = self.current();
            let now = self.now_ms();
            let doomed = brokers_to_fence(
                &md,
                &l.last_heartbeat_ms,
                l.grace_start_ms,
                now,
                self.inner.session_timeout.as_millis() as u64,
            );
            let gone = match self.inner.disconnect_grace {
                Some(grace) => {
                    let mut attachments = self.attachments();
                    attachments.retain(|id| md.brokers.contains_key(&id));
                    brokers_disconnected(
                        &md,
                        &attachments,
                        &l.last_heartbeat_ms,
                        now,
                        grace.as_millis() as u64,
                    )
                }
                None => Vec::new(),
            };
            let mut doomed: Vec<(i32, i64, &'static str)> = doomed
                .into_iter()
                .map(|(b, e)| (b, e, "missed its session"))
                .collect();
            for (b, e) in gone {
                if !doomed.iter().any(|(d, _, _)| *d == b) {
                    doomed.push((b, e, "closed its connections (process gone)"));
                }
            }
            // A broker that came back (or was fenced by another controller) starts a new
            // streak: its next missed session is reported again.
            l.fence_failing
                .retain(|b| doomed.iter().any(|(d, _, _)| d == b));
            doomed
        };
        for (broker_id, epoch, why) in doomed {
            // A controller without its quorum retries every tick; say so once.
            let retry = self.liveness().fence_failing.contains(&broker_id);
            let stopped = self
                .current()
                .brokers
                .get(&broker_id)
                .is_some_and(|b| b.stopping);
            if stopped {
                info!(
                    broker = broker_id,
                    why, "unlisting the broker that shut down"
                );
            } else if retry {
                debug!(broker = broker_id, why, "fencing the broker again");
            } else {
                warn!(broker = broker_id, why, "fencing the broker");
            }
            match self
                .propose(MetadataCommand::FenceBroker { broker_id, epoch })
                .await
            {
                Ok(_) => {
                    self.liveness().fence_failing.remove(&broker_id);
                }
                Err(e) => {
                    if self.liveness().fence_failing.insert(broker_id) {
                        warn!(broker = broker_id, error = %e, "fencing failed; retrying every tick");
                    } else {
                        debug!(broker = broker_id, error = %e, "fencing failed again");
                    }
                }
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

    /// Whether `node` is a voter or learner of the metadata quorum.
    pub fn is_member(&self, node: NodeId) -> bool {
        self.address_of(node).is_some()
    }

    /// Whether `node` is a member of the quorum or a registered broker.
    pub fn knows(&self, node: NodeId) -> bool {
        self.is_member(node)
            || i32::try_from(node).is_ok_and(|id| self.current().brokers.contains_key(&id))
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
    pub(crate) fn known_index(&self) -> u64 {
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

    /// This node's view of the Raft group, for metrics.
    pub fn raft_stats(&self) -> RaftStats {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        RaftStats {
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: m.local_committed.map(|c| c.index()).unwrap_or(0),
            applied_index: m.last_applied.map(|a| a.index()).unwrap_or(0),
        }
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
