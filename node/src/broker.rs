//! The state every request handler shares: this node's config, its controller, its
//! replicas and the current metadata image.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use fjord_controller::{ClusterMetadata, Controller};
use tokio::sync::watch;

use crate::config::{ConfigView, NodeConfig};
use crate::group::GroupCoordinator;
use crate::lease::Lease;
use crate::memory::{RequestPool, ResponseBudget};
use crate::producer::ProducerIdManager;
use crate::quota::connections::{self, ConnectionTracker};
use crate::quota::QuotaManager;
use crate::replica::ReplicaManager;
use crate::security::Security;

pub struct Broker {
    pub node_id: i32,
    pub config: NodeConfig,
    pub controller: Controller,
    pub replicas: Arc<ReplicaManager>,
    pub producer_ids: Arc<ProducerIdManager>,
    pub groups: Arc<GroupCoordinator>,
    pub txns: Arc<crate::txn::TxnCoordinator>,
    /// KIP-932: the share-partition state this broker stores in `__share_group_state`.
    pub share_state: Arc<crate::share_state::ShareStateCoordinator>,
    /// Share groups on this broker as partition leader: share-partitions and sessions.
    pub share: crate::share::ShareBroker,
    /// Whether this broker may still trust that it owns what its metadata says it leads.
    pub lease: Arc<Lease>,
    /// `queued.max.request.bytes`: memory for request frames, node-wide.
    pub request_pool: Arc<RequestPool>,
    /// `queued.max.response.bytes`: fetched records not yet written, node-wide.
    pub response_budget: Arc<ResponseBudget>,
    /// Client quotas measured on this broker's traffic.
    pub quotas: QuotaManager,
    /// Open Kafka connections and their creation rates.
    pub connections: Arc<ConnectionTracker>,
    /// The most connections the open-files limit leaves room for.
    pub connection_ceiling: usize,
    /// TLS, SASL and ACL settings.
    pub security: Arc<Security>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    /// Set once this broker's registration is in the metadata log.
    registered: AtomicBool,
    /// The epoch the controller gave this process's registration (-1 before).
    broker_epoch: AtomicI64,
    shutting_down: AtomicBool,
}

impl Broker {
    pub fn new(
        config: NodeConfig,
        controller: Controller,
        replicas: Arc<ReplicaManager>,
        security: Arc<Security>,
    ) -> Self {
        let lease = Arc::new(Lease::default());
        let no_dynamic = BTreeMap::new();
        let static_view = ConfigView {
            static_props: &config.static_props,
            cluster_dynamic: &no_dynamic,
            broker_dynamic: None,
        };
        let request_pool = match static_view.broker_i64("queued.max.request.bytes") {
            -1 => u64::from(u32::MAX),
            n => n.max(1) as u64,
        };
        let response_budget = static_view.broker_i64("queued.max.response.bytes").max(1) as u64;
        let quota_window_ms =
            static_view.broker_i64("quota.window.size.seconds").max(1) as u64 * 1000;
        let quota_samples = static_view.broker_i64("quota.window.num").max(2) as usize;
        let rpc_links = crate::security::peer_links(&security, config.node_id);
        Broker {
            security,
            quotas: QuotaManager::new(quota_window_ms, quota_samples),
            connections: ConnectionTracker::new(quota_window_ms, quota_samples),
            connection_ceiling: connections::open_files_limit()
                .map_or(usize::MAX, connections::connection_ceiling),
            request_pool: Arc::new(RequestPool::new(request_pool)),
            response_budget: ResponseBudget::new(response_budget),
            node_id: config.node_id,
            metadata: controller.metadata(),
            producer_ids: ProducerIdManager::new(config.node_id, controller.clone()),
            share: crate::share::ShareBroker::new(
                usize::try_from(static_view.broker_i64("group.share.max.share.sessions"))
                    .unwrap_or(crate::share::DEFAULT_MAX_SHARE_SESSIONS),
            ),
            groups: Arc::new(GroupCoordinator::new(
                Arc::clone(&replicas),
                Arc::clone(&lease),
            )),
            share_state: Arc::new(crate::share_state::ShareStateCoordinator::new(
                Arc::clone(&replicas),
                Arc::clone(&lease),
                rpc_links.clone(),
            )),
            txns: Arc::new(crate::txn::TxnCoordinator::new(
                Arc::clone(&replicas),
                Arc::clone(&lease),
                rpc_links,
            )),
            lease,
            config,
            controller,
            replicas,
            registered: AtomicBool::new(false),
            broker_epoch: AtomicI64::new(-1),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// The latest applied metadata image.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    pub fn view<'a>(&'a self, md: &'a ClusterMetadata) -> ConfigView<'a> {
        self.replicas.view(md)
    }

    pub fn broker_i64(&self, name: &str) -> i64 {
        let md = self.metadata();
        self.view(&md).broker_i64(name)
    }

    /// `broker.session.timeout.ms` as the controllers apply it (a static node setting).
    pub fn session_timeout_ms(&self) -> i64 {
        self.config
            .static_props
            .get("broker.session.timeout.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(9_000)
    }

    pub fn broker_bool(&self, name: &str) -> bool {
        let md = self.metadata();
        self.view(&md).broker_bool(name)
    }

    pub fn mark_registered(&self, broker_epoch: i64) {
        self.broker_epoch.store(broker_epoch, Ordering::Release);
        self.registered.store(true, Ordering::Release);
    }

    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The controller id clients are told (Metadata, DescribeCluster). As in Kafka's
    /// KRaft mode, it is a live broker, not the Raft leader: any broker forwards
    /// metadata writes to the active controller, so naming the Raft leader only sent
    /// clients to a dead node after a controller crash. This broker when it is live,
    /// else the lowest live one, else -1.
    pub fn controller_id_for_clients(&self, md: &ClusterMetadata) -> i32 {
        if md.is_live(self.node_id) {
            return self.node_id;
        }
        md.brokers
            .values()
            .find(|b| !b.fenced)
            .map(|b| b.id)
            .unwrap_or(-1)
    }

    /// Ready for traffic: registered, and local partitions caught up with metadata.
    pub fn is_ready(&self) -> bool {
        let md = self.metadata();
        self.is_registered() && !self.is_shutting_down() && md.is_live(self.node_id)
    }
}
