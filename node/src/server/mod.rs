//! Starting and stopping a node: storage, the controller, the gRPC, Kafka and admin
//! listeners, broker registration, metadata reconciliation and housekeeping.

use std::sync::Arc;
use std::time::Duration;

use fjord_controller::{Controller, ControllerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use crate::admin;
use crate::broker::Broker;
use crate::config::NodeConfig;
use crate::kafka;
use crate::replica::{isr_sync, Chores, FetcherManager, ReplicaManager, ReplicationService};
use crate::security::Security;

use crate::time::now_ms;

mod controller_session;
mod rpc;

use controller_session::{controlled_shutdown, join_and_heartbeat};
use rpc::{serve_rpc, PeerServices};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the data directory {}: {reason}", path.display())]
    Storage {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("cannot start the controller: {0}")]
    Controller(String),
    #[error("security settings: {0}")]
    Security(String),
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            what,
            addr: addr.to_string(),
            source,
        })
}

/// Runs a node until SIGTERM or SIGINT, then shuts it down cleanly.
pub async fn run(config: NodeConfig) -> Result<(), ServeError> {
    info!(
        node_id = config.node_id,
        data_dir = %config.data_dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        "starting Fjord node"
    );
    for (key, hint) in config.unknown_props_with_hints() {
        warn!(
            key,
            "{}: it was supplied but nothing reads it",
            crate::config::unknown_message(key, hint)
        );
    }
    // Certificates and users load before anything binds: a bad file fails the start.
    let security = Arc::new(Security::from_config(&config).map_err(ServeError::Security)?);
    // Bind everything first, so a busy port fails the start at once with a clear error.
    let mut kafka_listeners = Vec::new();
    for l in &config.listeners {
        kafka_listeners.push((
            l.name.clone(),
            bind("Kafka listener", &l.bind_addr()).await?,
        ));
    }
    let rpc_listener = bind("rpc listener", &config.rpc_listener).await?;
    let admin_listener = bind("admin listener", &config.admin_listener).await?;

    let data_dir_error = |reason: String| ServeError::Storage {
        path: config.data_dir.clone(),
        reason,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| data_dir_error(e.to_string()))?;
    let replicas = Arc::new(
        ReplicaManager::open(
            config.node_id,
            &config.data_dir,
            config.static_props.clone(),
        )
        .map_err(|e| data_dir_error(e.to_string()))?,
    );
    let view_props = config.static_props.clone();
    let prop = |name: &str, default: u64| -> u64 {
        view_props
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let may_bootstrap = check_metadata_dir(&config, &replicas)?;
    let controller = Controller::start(ControllerConfig {
        node_id: config.node_id as u64,
        dir: config.data_dir.join("controller"),
        voters: config.voters.clone(),
        election_timeout: Duration::from_millis(prop(
            "controller.quorum.election.timeout.ms",
            1000,
        )),
        request_timeout: Duration::from_millis(prop(
            "controller.quorum.request.timeout.ms",
            30_000,
        )),
        session_timeout: Duration::from_millis(prop("broker.session.timeout.ms", 9_000)),
        disconnect_grace: broker_disconnect_grace(&view_props),
        auto_leader_rebalance: config
            .static_props
            .get("auto.leader.rebalance.enable")
            .is_none_or(|v| v.eq_ignore_ascii_case("true")),
        leader_imbalance_check_interval: Duration::from_secs(prop(
            "leader.imbalance.check.interval.seconds",
            300,
        )),
        leader_imbalance_per_broker_percentage: prop("leader.imbalance.per.broker.percentage", 10)
            as u32,
        auto_balance: config
            .static_props
            .get("auto.balance.enable")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            .then(|| Duration::from_millis(prop("auto.balance.grace.ms", 600_000))),
        max_partitions_per_broker: prop(
            fjord_controller::limits::MAX_PARTITIONS_PER_BROKER,
            fjord_controller::limits::DEFAULT_MAX_PARTITIONS_PER_BROKER,
        ),
        rpc_links: crate::security::peer_links(&security, config.node_id),
        may_bootstrap,
    })
    .await
    .map_err(|e| ServeError::Controller(e.to_string()))?;

    // Read only now: the controller's store is open, so this process holds the data
    // directory and no other process of it can be alive.
    let incarnation = data_dir_incarnation(&config.data_dir);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let peer_services = PeerServices::default();
    let rpc_task = tokio::spawn(serve_rpc(
        rpc_listener,
        crate::security::rpc_server_tls(&security),
        security.rpc_secret.clone(),
        controller.clone(),
        ReplicationService::new(Arc::clone(&replicas), controller.metadata()),
        peer_services.clone(),
        shutdown_rx.clone(),
    ));

    let broker = Arc::new(Broker::new(
        config.clone(),
        controller.clone(),
        Arc::clone(&replicas),
        Arc::clone(&security),
    ));
    tokio::spawn(reload_security(Arc::clone(&security), shutdown_rx.clone()));
    peer_services.set_broker(&broker);
    if !controller.wait_for_recovery(Duration::from_secs(120)).await {
        warn!("the local metadata log was not replayed within 120 s; starting anyway");
    }
    let fetchers = Arc::new(FetcherManager::new(Arc::clone(&broker)));
    tokio::spawn(reconcile_metadata(
        Arc::clone(&broker),
        Arc::clone(&fetchers),
    ));
    tokio::spawn(isr_sync::run(Arc::clone(&broker), shutdown_rx.clone()));
    tokio::spawn(crate::replica::cleaner::run(
        Arc::clone(&broker),
        shutdown_rx.clone(),
    ));
    tokio::spawn(crate::group::coordinator::run(
        Arc::clone(&broker),
        shutdown_rx.clone(),
    ));
    tokio::spawn(crate::txn::coordinator::run(
        Arc::clone(&broker),
        shutdown_rx.clone(),
    ));
    tokio::spawn(crate::share_state::coordinator::run(
        Arc::clone(&broker),
        shutdown_rx.clone(),
    ));
    tokio::spawn(crate::share::run(Arc::clone(&broker), shutdown_rx.clone()));
    // Heartbeats stop first on shutdown, before the listeners: a separate signal.
    let (stop_heartbeats_tx, stop_heartbeats_rx) = watch::channel(false);
    let liveness = tokio::spawn(join_and_heartbeat(
        Arc::clone(&broker),
        incarnation,
        stop_heartbeats_rx,
    ));
    tokio::spawn(housekeeping(Arc::clone(&broker), shutdown_rx.clone()));

    // Gauges are sampled on the housekeeping tick; thirty missed samples mean abandoned.
    let metrics = admin::install_metrics((housekeeping_interval(&broker) * 30).max(GAUGE_IDLE_MIN));
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        Arc::clone(&broker),
        metrics,
        shutdown_rx.clone(),
    ));
    let mut kafka_tasks = Vec::new();
    for (name, listener) in kafka_listeners {
        kafka_tasks.push(tokio::spawn(kafka::serve(
            listener,
            name,
            Arc::clone(&broker),
            shutdown_rx.clone(),
        )));
    }

    wait_for_signal().await;
    info!("shutting down");
    broker.begin_shutdown();
    // Controlled shutdown: leadership moves away while clients can still be answered
    // (they are told NOT_LEADER_OR_FOLLOWER and follow the new leaders).
    // Each cooperative step has its own budget, together well inside the 10 s an
    // orchestrator's grace period leaves: when the whole cluster stops at once, the
    // quorum these steps need goes away under them, and a step that waits for it would
    // only end in a SIGKILL.
    let _ = stop_heartbeats_tx.send(true);
    finish_within(liveness, STOP_HEARTBEATS).await;
    if tokio::time::timeout(CONTROLLED_SHUTDOWN, controlled_shutdown(&broker))
        .await
        .is_err()
    {
        warn!(
            "controlled shutdown not acknowledged in time; the controller will fence this broker"
        );
    }
    if tokio::time::timeout(STEP_DOWN, controller.step_down(STEP_DOWN))
        .await
        .is_err()
    {
        warn!("handing over the active controller role did not finish in time");
    }
    let _ = shutdown_tx.send(true);
    fetchers.stop_all();
    for t in kafka_tasks {
        let _ = t.await;
    }
    replicas.shutdown();
    // Graceful server shutdown waits for open connections: a scraper's keep-alive or a
    // peer's long-lived rpc stream must not hold the process until the orchestrator's
    // kill (Docker's and Kubernetes' grace periods).
    if tokio::time::timeout(SHUTDOWN_STEP, controller.shutdown())
        .await
        .is_err()
    {
        warn!("the metadata quorum did not stop in time");
    }
    finish("admin", admin_task).await;
    finish("rpc", rpc_task).await;
    info!("stopped cleanly");
    Ok(())
}

/// Waits for a listener's graceful stop for at most `LISTENER_DRAIN`, then drops the
/// connections it still holds.
async fn finish<T>(what: &str, task: tokio::task::JoinHandle<T>) {
    if !finish_within(task, LISTENER_DRAIN).await {
        info!("closed the {what} listener's remaining connections");
    }
}

/// Waits for `task` for at most `limit`, then aborts it; whether it ended by itself.
async fn finish_within<T>(task: tokio::task::JoinHandle<T>, limit: Duration) -> bool {
    let abort = task.abort_handle();
    let ended = tokio::time::timeout(limit, task).await.is_ok();
    if !ended {
        abort.abort();
    }
    ended
}

/// How long the admin and rpc listeners may finish answering once everything else has
/// stopped. Peers hold long-lived rpc streams (attachments, replica fetch sessions) that
/// never end by themselves, so a longer wait only delays the exit: by now the data is
/// safe and no answer worth waiting for is in flight.
const LISTENER_DRAIN: Duration = Duration::from_millis(500);

/// The longest the metadata quorum may take to stop once the data is safe.
const SHUTDOWN_STEP: Duration = Duration::from_secs(2);
/// How long an in-flight heartbeat may finish before stopping goes on without it.
const STOP_HEARTBEATS: Duration = Duration::from_secs(1);
/// How long the active controller may take to fence this broker and move its leaderships.
const CONTROLLED_SHUTDOWN: Duration = Duration::from_secs(3);
/// How long handing over the active controller role may take.
const STEP_DOWN: Duration = Duration::from_secs(2);

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Applies every new metadata image to local partitions.
async fn reconcile_metadata(broker: Arc<Broker>, fetchers: Arc<FetcherManager>) {
    let mut rx = broker.controller.metadata();
    loop {
        let md = rx.borrow_and_update().clone();
        let replicas = Arc::clone(&broker.replicas);
        // Opening logs may scan segments: keep it off the async workers.
        if let Ok(plan) = tokio::task::spawn_blocking(move || replicas.apply_metadata(&md)).await {
            if !broker.is_shutting_down() {
                fetchers.apply(plan);
            }
        }

        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Whether this node may create a new metadata quorum if it has no Raft state. A data
/// directory with partition logs but no metadata directory was part of a cluster whose
/// metadata this node lost (a deleted or damaged `controller` directory). In a cluster of
/// several voters the others still hold it and send it; a lone voter has nobody to get it
/// from, and a new empty cluster would take every log for a stray, so it refuses to start
/// and says what to do.
fn check_metadata_dir(
    config: &crate::config::NodeConfig,
    replicas: &ReplicaManager,
) -> Result<bool, ServeError> {
    let metadata_dir = config.data_dir.join("controller");
    if metadata_dir.join("state").exists() {
        return Ok(true);
    }
    let logs = replicas.stored_partition_count();
    if logs == 0 {
        return Ok(true);
    }
    let me = config.node_id as u64;
    if config.voters.len() == 1 && config.voters.contains_key(&me) {
        return Err(ServeError::Controller(format!(
            "{} holds {logs} partition logs, but the metadata directory {} is missing or empty: \
             this single-voter cluster's metadata is lost, and starting would create a new, \
             empty cluster that discards those logs. Restore {} from a backup, or, to start \
             a new cluster without the old data, move the data directory aside",
            config.data_dir.display(),
            metadata_dir.display(),
            metadata_dir.display(),
        )));
    }
    warn!(
        partition_logs = logs,
        metadata_dir = %metadata_dir.display(),
        "the metadata directory is missing but partition logs exist: rejoining the quorum to be sent the cluster metadata"
    );
    Ok(false)
}

/// The incarnation id this data directory's broker registers with. It stays the same
/// across restarts of the directory: the controller refuses a registration with another
/// incarnation while the registered one may still be alive (a second process with the
/// same node id), and a restart is provably not that, since a process holds its data
/// directory's controller store until it exits. A new directory (a replaced disk) gets a
/// new id and waits out the old process's session, as it must.
fn data_dir_incarnation(data_dir: &std::path::Path) -> Uuid {
    let path = data_dir.join("broker.incarnation");
    if let Some(id) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
    {
        return id;
    }
    let id = Uuid::new_v4();
    if let Err(e) = fjord_storage::checkpoint::write_atomic(&path, id.to_string().as_bytes()) {
        // Without it the next restart waits out this process's session; nothing worse.
        warn!(error = %e, "cannot record the broker incarnation");
    }
    id
}

/// `broker.session.disconnect.grace.ms`; `None` when turned off (-1).
fn broker_disconnect_grace(props: &std::collections::BTreeMap<String, String>) -> Option<Duration> {
    let ms: i64 = props
        .get("broker.session.disconnect.grace.ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

/// A housekeeping chore with its own interval, judged at each housekeeping tick.
struct Every {
    interval_ms: i64,
    last_ms: i64,
}

impl Every {
    fn new(interval_ms: i64, now_ms: i64) -> Self {
        Every {
            interval_ms: interval_ms.max(1),
            last_ms: now_ms,
        }
    }

    /// Whether the interval has passed; if so, the next one starts now.
    fn due(&mut self, now_ms: i64) -> bool {
        let due = now_ms - self.last_ms >= self.interval_ms;
        if due {
            self.last_ms = now_ms;
        }
        due
    }
}

/// How often housekeeping runs (flush policy, retention, checkpoints, gauge samples).
fn housekeeping_interval(broker: &Broker) -> Duration {
    Duration::from_millis(
        broker
            .broker_i64("log.flush.scheduler.interval.ms")
            .clamp(10, 60_000) as u64,
    )
}

/// The shortest time a gauge may go unset before it is dropped from `/metrics`.
const GAUGE_IDLE_MIN: Duration = Duration::from_secs(2);

/// Picks up renewed certificates and changed user files.
async fn reload_security(security: Arc<Security>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(crate::security::RELOAD_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => return,
        }
        let security = Arc::clone(&security);
        let _ = tokio::task::spawn_blocking(move || security.reload_if_changed()).await;
    }
}

/// Retention, time-based flushes, high-watermark checkpoints and gauges.
async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let flush_interval = housekeeping_interval(&broker);
    let producer_expiration = broker.broker_i64("producer.id.expiration.ms").max(1);
    let started = now_ms();
    let mut retention = Every::new(
        broker.broker_i64("log.retention.check.interval.ms"),
        started,
    );
    let mut checkpoint = Every::new(
        broker.broker_i64("replica.high.watermark.checkpoint.interval.ms"),
        started,
    );
    let mut ticker = tokio::time::interval(flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => return,
        }
        let now = now_ms();
        let chores = Chores {
            now_ms: now,
            retention_due: retention.due(now),
            checkpoint_due: checkpoint.due(now),
            producer_expiration_ms: producer_expiration,
        };
        let replicas = Arc::clone(&broker.replicas);
        let _ = tokio::task::spawn_blocking(move || replicas.housekeeping(&chores)).await;
        admin::record_gauges(&broker);
    }
}
