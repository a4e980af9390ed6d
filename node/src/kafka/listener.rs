use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use fjord_controller::metadata::quotas::{EntityName, QuotaEntity, IP_QUOTA_KEY};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::connection;
use crate::broker::Broker;
use crate::quota::connections::{parse_overrides, AcceptGate, Limits, Verdict};

/// A connection over its IP's creation rate is held at most this long before it is
/// closed (Kafka holds it for the throttle time, which the quota window caps).
const MAX_REFUSAL_HOLD: Duration = Duration::from_secs(10);

/// Accepts Kafka connections on one listener until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    name: String,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(listener = %name, %addr, "Kafka listener ready");
    }
    let mut full_since: Option<std::time::Instant> = None;
    loop {
        // Kafka's acceptor waits while the node is full or the listener is over its
        // creation rate: the connections queue in the kernel's backlog meanwhile.
        let mut limits = limits_now(&broker);
        match broker
            .connections
            .accept_gate(&name, &limits, crate::quota::now_ms())
        {
            AcceptGate::Open => full_since = None,
            AcceptGate::Full => {
                if full_since.is_none() {
                    warn!(listener = %name, max = limits.max_connections, "max.connections reached; accepting again when a connection closes");
                    metrics::counter!("fjord_connections_refused_total", "reason" => "max.connections").increment(1);
                    full_since = Some(std::time::Instant::now());
                }
                tokio::select! {
                    () = broker.connections.freed() => {}
                    // Limits are dynamic: look again now and then.
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => return,
                }
                continue;
            }
            AcceptGate::Throttle(ms) => {
                metrics::counter!("fjord_connections_refused_total", "reason" => "max.connection.creation.rate").increment(1);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => return,
                }
                continue;
            }
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ip = peer.ip().to_canonical();
                    limits.ip_rate = ip_rate(&broker, ip);
                    let (slot, verdict) =
                        broker.connections.admit(&name, ip, &limits, crate::quota::now_ms());
                    match verdict {
                        Verdict::Serve => {
                            tokio::spawn(connection::run(stream, peer, name.clone(), Arc::clone(&broker), slot));
                        }
                        Verdict::TooMany { limit } => {
                            metrics::counter!("fjord_connections_refused_total", "reason" => verdict.reason()).increment(1);
                            debug!(%peer, listener = %name, limit, "too many connections from this address; closed");
                            drop((stream, slot));
                        }
                        Verdict::Throttled { ms } => {
                            metrics::counter!("fjord_connections_refused_total", "reason" => verdict.reason()).increment(1);
                            debug!(%peer, listener = %name, throttle_ms = ms, "connection_creation_rate exceeded; closing after the throttle time");
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(ms).min(MAX_REFUSAL_HOLD)).await;
                                drop((stream, slot));
                            });
                        }
                    }
                }
                Err(e) => {
                    // Running out of file descriptors must not end the accept loop.
                    warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => return,
        }
    }
}

/// The connection limits in force now (the address's quota is added once it is known).
fn limits_now(broker: &Broker) -> Limits {
    let md = broker.metadata();
    let view = broker.view(&md);
    let count = |name: &str| usize::try_from(view.broker_i64(name).max(0)).unwrap_or(usize::MAX);
    let rate = view.broker_i64("max.connection.creation.rate");
    let overrides = view.broker_value("max.connections.per.ip.overrides");
    let per_ip_overrides = parse_overrides(&overrides).unwrap_or_else(|e| {
        debug!(error = %e, "max.connections.per.ip.overrides ignored");
        Default::default()
    });
    Limits {
        max_connections: count("max.connections").min(broker.connection_ceiling),
        per_ip: count("max.connections.per.ip"),
        per_ip_overrides,
        listener_rate: (rate < i64::from(i32::MAX)).then_some(rate.max(0) as f64),
        ip_rate: None,
    }
}

/// The `connection_creation_rate` quota of `ip`: its own, else the default IP's.
fn ip_rate(broker: &Broker, ip: IpAddr) -> Option<f64> {
    let md = broker.metadata();
    [EntityName::Named(ip.to_string()), EntityName::Default]
        .into_iter()
        .find_map(|name| {
            let key = QuotaEntity {
                ip: Some(name),
                ..QuotaEntity::default()
            }
            .key();
            md.client_quotas
                .get(&key)?
                .values
                .get(IP_QUOTA_KEY)
                .map(|v| v.0)
        })
}
