//! The broker's standing with the active controller, from joining the quorum to
//! leaving it: registration, heartbeats, voter attachments and the lease they renew,
//! and the controlled shutdown. Kept apart from start-up because it is one long-lived
//! loop with its own retry and fencing rules.

use std::sync::Arc;
use std::time::Duration;

use fjord_controller::metadata::MetadataError;
use fjord_controller::metadata::{BrokerRegistration, Listener};
use fjord_controller::{ControllerError, ControllerRequest, ControllerResponse};
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use super::CONTROLLED_SHUTDOWN;
use crate::broker::Broker;

fn registration(broker: &Broker, incarnation_id: Uuid) -> BrokerRegistration {
    let config = &broker.config;
    BrokerRegistration {
        broker_id: config.node_id,
        incarnation_id,
        listeners: config
            .advertised_listeners
            .iter()
            .map(|l| Listener {
                name: l.name.clone(),
                host: l.host.clone(),
                port: l.port,
                security_protocol: l.security_protocol.clone(),
            })
            .collect(),
        rack: config.rack.clone(),
        rpc_address: config.rpc_advertised.clone(),
    }
}

/// Retries `request` until the controller accepts it or shutdown begins.
async fn until_accepted(
    broker: &Broker,
    what: &str,
    request: ControllerRequest,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<ControllerResponse> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match broker.controller.submit(request.clone()).await {
            Ok(r) => return Some(r),
            Err(e) => warn!(error = %e, "{what} failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Joins the quorum as a learner when this node is not a voter, registers the broker,
/// then heartbeats to the active controller until shutdown. A broker the controller no
/// longer knows (or knows under a newer epoch) registers again.
pub(super) async fn join_and_heartbeat(
    broker: Arc<Broker>,
    incarnation: Uuid,
    mut shutdown: watch::Receiver<bool>,
) {
    let node_id = broker.node_id as u64;
    if !broker.config.voters.contains_key(&node_id) {
        let join = ControllerRequest::AddLearner {
            node_id,
            rpc_address: broker.config.rpc_advertised.clone(),
        };
        if until_accepted(
            &broker,
            "joining the quorum as a learner",
            join,
            &mut shutdown,
        )
        .await
        .is_none()
        {
            return;
        }
    }
    let interval =
        Duration::from_millis(broker.broker_i64("broker.heartbeat.interval.ms").max(10) as u64);
    let session_ms = broker.session_timeout_ms();
    'register: loop {
        let registration_sent = broker.lease.now_ms();
        let request = ControllerRequest::RegisterBroker(registration(&broker, incarnation));
        let Some(response) =
            until_accepted(&broker, "broker registration", request, &mut shutdown).await
        else {
            return;
        };
        let ControllerResponse::BrokerRegistered { broker_epoch } = response else {
            warn!(?response, "unexpected answer to registration");
            continue;
        };
        // Act on no image older than this registration: a node restarted right after a
        // kill may register before its own copy of the metadata has caught up, and must
        // not lead partitions whose leadership moved away while it was gone. Its own
        // registration in the local image means every earlier entry is applied too.
        // Both waits give way to shutdown: with the rest of the cluster stopping too, the
        // image may never catch up, and the process must still exit at once.
        let mut images = broker.controller.metadata();
        let caught_up = tokio::time::timeout(
            Duration::from_secs(30),
            images.wait_for(|md| {
                md.brokers
                    .get(&broker.node_id)
                    .is_some_and(|b| b.epoch >= broker_epoch)
            }),
        );
        let registered = tokio::select! {
            r = caught_up => r.ok().and_then(Result::ok).map(|md| md.last_applied_index),
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => return,
        };
        let index = match registered {
            Some(index) => index,
            None => {
                warn!(
                    node_id,
                    "local metadata did not catch up with the registration; registering again"
                );
                continue 'register;
            }
        };
        tokio::select! {
            _ = broker.replicas.wait_applied(index, Duration::from_secs(30)) => {}
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => return,
        }
        broker.mark_registered(broker_epoch);
        broker.lease.renew(registration_sent, session_ms);
        info!(node_id, broker_epoch, "broker registered and ready");
        // Dropped when this registration ends, which ends its attach streams.
        let (_attached, beat_now) = attach_to_voters(&broker, broker_epoch);
        let mut wait = interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = beat_now.notified() => {}
                _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => return,
            }
            let beat = ControllerRequest::Heartbeat {
                broker_id: broker.node_id,
                broker_epoch,
            };
            let sent = broker.lease.now_ms();
            let mut answered = true;
            match broker
                .controller
                .submit_within(beat, interval.max(Duration::from_millis(500)))
                .await
            {
                Ok(ControllerResponse::Heartbeat {
                    fenced: false,
                    metadata_index,
                }) => renew_lease(&broker, sent, metadata_index, session_ms),
                Ok(ControllerResponse::Heartbeat { fenced: true, .. }) => broker.lease.revoke(),
                Ok(_) => {}
                Err(ControllerError::Metadata(
                    MetadataError::UnknownBroker(_) | MetadataError::StaleBrokerEpoch(_),
                )) => {
                    warn!(
                        node_id,
                        "the controller does not know this registration; registering again"
                    );
                    continue 'register;
                }
                Err(e) => {
                    answered = false;
                    warn!(error = %e, "heartbeat failed");
                }
            }
            // Without a lease this broker's coordinators and leaders answer nobody: after
            // a failed heartbeat (the controller changed under it) or with the lease gone,
            // try again soon rather than a whole interval later, since a lease capped by
            // a broken connection runs out well within one.
            wait = if answered && broker.lease.is_valid() {
                interval
            } else {
                interval.min(Duration::from_millis(200))
            };
        }
    }
}

/// Keeps this registration attached to every voter (see `fjord_controller::attachments`)
/// until the returned sender is dropped. When a stream breaks, the lease is capped and
/// the returned notifier asks for a heartbeat at once: a live broker must prove itself
/// within the grace, or a live controller fences it.
fn attach_to_voters(
    broker: &Arc<Broker>,
    broker_epoch: i64,
) -> (watch::Sender<bool>, Arc<tokio::sync::Notify>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let beat_now = Arc::new(tokio::sync::Notify::new());
    let Some(grace) = broker.controller.disconnect_grace() else {
        return (stop_tx, beat_now);
    };
    let on_break = {
        let broker = Arc::clone(broker);
        let beat_now = Arc::clone(&beat_now);
        Arc::new(move |_voter| {
            broker
                .lease
                .cap_after_break(broker.lease.now_ms(), grace.as_millis() as i64);
            beat_now.notify_one();
        })
    };
    let controller = broker.controller.clone();
    let broker_id = broker.node_id;
    tokio::spawn(async move {
        controller
            .stay_attached(broker_id, broker_epoch, stop_rx, on_break)
            .await
    });
    (stop_tx, beat_now)
}

/// Renews the lease for a heartbeat sent at `sent` and accepted unfenced, once local
/// partitions reflect `metadata_index` (what the controller knew when it answered): only
/// then does this broker know of every leadership it lost before that heartbeat.
fn renew_lease(broker: &Arc<Broker>, sent: i64, metadata_index: u64, session_ms: i64) {
    let broker = Arc::clone(broker);
    tokio::spawn(async move {
        let within = Duration::from_millis(crate::lease::lease_length_ms(session_ms) as u64);
        if broker.replicas.wait_applied(metadata_index, within).await {
            broker.lease.renew(sent, session_ms);
            // The image now holds everything the controller knew: logs it does not place
            // here really are strays.
            let replicas = Arc::clone(&broker.replicas);
            let _ = tokio::task::spawn_blocking(move || replicas.remove_stray_logs_once()).await;
        }
    });
}

/// Tells the active controller this broker is stopping, so its partitions move now
/// rather than after a session timeout.
pub(super) async fn controlled_shutdown(broker: &Broker) {
    if !broker.is_registered() {
        return;
    }
    // Leaderships move as soon as the controller hears this; stop answering as their
    // owner first.
    broker.lease.revoke();
    if !broker.controller.quorum_reachable() {
        // The last node of a cluster being stopped: nobody is left to take over.
        info!("no metadata quorum; stopping without a controlled shutdown");
        return;
    }
    let request = ControllerRequest::ControlledShutdown {
        broker_id: broker.node_id,
        broker_epoch: broker.broker_epoch(),
    };
    match broker
        .controller
        .submit_within(request, CONTROLLED_SHUTDOWN)
        .await
    {
        Ok(_) => info!("controlled shutdown acknowledged by the controller"),
        Err(e) => {
            warn!(error = %e, "controlled shutdown not acknowledged; the session timeout will fence this broker")
        }
    }
}
