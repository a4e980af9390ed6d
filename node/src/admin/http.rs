use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fjord_controller::metadata::MetadataError;
use fjord_controller::{ControllerError, ControllerRequest, ControllerResponse};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use openraft::async_runtime::WatchReceiver;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::broker::Broker;

#[derive(Clone)]
struct AdminState {
    broker: Arc<Broker>,
    metrics: Option<PrometheusHandle>,
}

/// Installs the Prometheus recorder (once per process). Gauges not set for
/// `gauge_idle` disappear: those of deleted partitions and groups would otherwise be
/// exported forever. Every gauge is set on the sampling tick or kept live
/// (see `gauges::LiveGauge`), so only abandoned ones go.
pub fn install_metrics(gauge_idle: Duration) -> Option<PrometheusHandle> {
    match PrometheusBuilder::new()
        .idle_timeout(MetricKindMask::GAUGE, Some(gauge_idle))
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ])
        .and_then(|b| b.install_recorder())
    {
        Ok(handle) => {
            super::descriptions::describe_all();
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut t = tokio::time::interval(Duration::from_secs(5));
                loop {
                    t.tick().await;
                    upkeep.run_upkeep();
                }
            });
            Some(handle)
        }
        Err(e) => {
            warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    metrics: Option<PrometheusHandle>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "admin listener ready");
    }
    let app = Router::new()
        .route("/metrics", get(metrics_endpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/v1/cluster", get(cluster))
        .route(
            "/v1/voters/{id}",
            axum::routing::post(add_voter).delete(remove_voter),
        )
        .route(
            "/v1/brokers/{id}/drain",
            axum::routing::post(drain).delete(undrain),
        )
        .with_state(AdminState { broker, metrics });
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    })
    .await;
    if let Err(e) = result {
        warn!(error = %e, "admin listener failed");
    }
}

async fn metrics_endpoint(State(s): State<AdminState>) -> Response {
    match &s.metrics {
        Some(h) => ([("content-type", "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response(),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let b = &s.broker;
    let md = b.metadata();
    let registered = b.is_registered();
    let fenced = md.brokers.get(&b.node_id).is_none_or(|x| x.fenced);
    let body = json!({
        "ready": b.is_ready(),
        "registered": registered,
        "fenced": fenced,
        "shutting_down": b.is_shutting_down(),
        "metadata_applied_index": md.last_applied_index,
    });
    let code = if b.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[derive(serde::Deserialize)]
struct ForceQuery {
    #[serde(default)]
    force: bool,
}

async fn change_voter(s: &AdminState, request: ControllerRequest) -> Response {
    answer(s.broker.controller.submit(request).await)
}

/// The HTTP answer to a controller request: 200, 404 for an unknown broker, 400 for
/// another refusal, 503 when the quorum could not be asked.
fn answer(result: Result<ControllerResponse, ControllerError>) -> Response {
    match result {
        Ok(_) => (StatusCode::OK, Json(json!({"ok": true}))).into_response(),
        Err(e @ ControllerError::Metadata(MetadataError::UnknownBroker(_))) => (
            StatusCode::NOT_FOUND,
            Json(json!({"ok": false, "error": e.to_string()})),
        )
            .into_response(),
        Err(e @ ControllerError::Metadata(_)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error": e.to_string()})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ok": false, "error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn add_voter(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(q): Query<ForceQuery>,
) -> Response {
    if let Some(refused) = refuse_change(&s, peer, &headers) {
        return refused;
    }
    change_voter(
        &s,
        ControllerRequest::AddVoter {
            node_id: id,
            force: q.force,
        },
    )
    .await
}

async fn remove_voter(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(q): Query<ForceQuery>,
) -> Response {
    if let Some(refused) = refuse_change(&s, peer, &headers) {
        return refused;
    }
    change_voter(
        &s,
        ControllerRequest::RemoveVoter {
            node_id: id,
            force: q.force,
        },
    )
    .await
}

/// `fjord cluster drain`: the broker takes no new replicas and its leaderships move off.
/// Answered once every live broker has applied it.
async fn drain(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i32>,
) -> Response {
    if let Some(refused) = refuse_change(&s, peer, &headers) {
        return refused;
    }
    let request = ControllerRequest::DrainBroker { broker_id: id };
    answer(s.broker.submit_everywhere(request).await)
}

async fn undrain(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<i32>,
) -> Response {
    if let Some(refused) = refuse_change(&s, peer, &headers) {
        return refused;
    }
    let request = ControllerRequest::UndrainBroker { broker_id: id };
    answer(s.broker.submit_everywhere(request).await)
}

/// Voter changes and drains alter the cluster: they are taken only from the node's own
/// host (`kubectl exec`, ssh), never over the network, and, when the cluster has a secret,
/// only with it as the bearer token (`Authorization: Bearer <secret>`; the CLI sends
/// `FJORD_CLUSTER_SECRET` or the file of `FJORD_CLUSTER_SECRET_FILE`), so another
/// process on the host cannot either.
fn refuse_change(s: &AdminState, peer: SocketAddr, headers: &HeaderMap) -> Option<Response> {
    if let Some(refused) = refuse_remote(peer) {
        return Some(refused);
    }
    let secret = s.broker.security.rpc_secret.as_ref()?;
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_some_and(|t| secret.matches(t.as_bytes())) {
        return None;
    }
    metrics::counter!("fjord_admin_requests_refused_total").increment(1);
    warn!(%peer, "refused a cluster change without the cluster secret");
    Some(
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "error": "cluster changes need the cluster secret: run the command where \
                          FJORD_CLUSTER_SECRET or FJORD_CLUSTER_SECRET_FILE is set, as on the \
                          node itself"
            })),
        )
            .into_response(),
    )
}

fn refuse_remote(peer: SocketAddr) -> Option<Response> {
    if peer.ip().to_canonical().is_loopback() {
        return None;
    }
    warn!(%peer, "refused a cluster change from another host");
    Some(
        (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "voter changes and drains are accepted from the node's own host \
                          only: run fjord cluster add-voter/remove-voter/drain/undrain on a \
                          node (kubectl exec) with --admin-server 127.0.0.1:<admin port>"
            })),
        )
            .into_response(),
    )
}

async fn cluster(State(s): State<AdminState>) -> Json<serde_json::Value> {
    let b = &s.broker;
    let md = b.metadata();
    let brokers: Vec<_> = md
        .brokers
        .values()
        .map(|x| {
            json!({
                "id": x.id,
                "epoch": x.epoch,
                "fenced": x.fenced,
                "drained": md.is_drained(x.id),
                "rack": x.rack,
                "rpc_address": x.rpc_address,
                "listeners": x.listeners.iter().map(|l| json!({"name": l.name, "host": l.host, "port": l.port})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let topics: Vec<_> = md
        .topics
        .values()
        .map(|t| {
            json!({
                "name": t.name,
                "id": t.id.to_string(),
                "internal": t.internal,
                "configs": t.configs,
                "partitions": t.partitions.iter().enumerate().map(|(i, p)| json!({
                    "partition": i,
                    "leader": p.leader,
                    "leader_epoch": p.leader_epoch,
                    "replicas": p.replicas,
                    "isr": p.isr,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let quorum = match b
        .controller
        .submit_within(ControllerRequest::DescribeQuorum, Duration::from_secs(3))
        .await
    {
        Ok(ControllerResponse::Quorum(q)) => serde_json::to_value(q).unwrap_or_default(),
        Ok(other) => json!({"error": format!("unexpected answer {other:?}")}),
        Err(e) => json!({"error": e.to_string()}),
    };
    let raft = {
        let metrics = b.controller.raft().metrics();
        let m = metrics.borrow_watched();
        json!({
            "state": format!("{:?}", m.state),
            "term": m.current_term,
            "leader": m.current_leader,
            "last_log_index": m.last_log_index,
            "last_applied_index": m.last_applied.map(|l| l.index()),
        })
    };
    let offline: Vec<_> = md
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.leader < 0)
                .map(|(i, _)| json!({"topic": t.name, "partition": i}))
        })
        .collect();
    let fenced: Vec<i32> = md
        .brokers
        .values()
        .filter(|x| x.fenced)
        .map(|x| x.id)
        .collect();
    let under_replicated: Vec<_> = md
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.isr.len() < p.replicas.len())
                .map(|(i, p)| json!({"topic": t.name, "partition": i, "replicas": p.replicas, "isr": p.isr}))
        })
        .collect();
    Json(json!({
        "quorum": quorum,
        "local_raft": raft,
        "fenced_brokers": fenced,
        "drained_brokers": md.drained_brokers,
        "offline_partitions": offline,
        "under_replicated_partitions": under_replicated,
        "cluster_id": md.cluster_id,
        "node_id": b.node_id,
        "active_controller": b.controller.active_controller(),
        "voters": b.config.voters,
        "metadata_applied_index": md.last_applied_index,
        "brokers": brokers,
        "topics": topics,
    }))
}
