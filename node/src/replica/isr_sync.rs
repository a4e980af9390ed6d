//! Leaders ask the controller to shrink or expand their ISR (AlterPartition).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fjord_controller::{ControllerRequest, ControllerResponse};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::time::now_ms;

/// Checks every led partition a few times per second; each partition has at most one
/// change in flight, answered asynchronously.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let lag_ms = broker.broker_i64("replica.lag.time.max.ms").max(1);
    let tick = Duration::from_millis((lag_ms as u64 / 4).clamp(20, 250));
    // Refusals come in storms (a controller change refuses every pending change, and
    // each is retried every tick), so only the first of a streak is a WARN.
    let refusing = Arc::new(AtomicBool::new(false));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => return,
        }
        let now = now_ms();
        let mut under_replicated = 0usize;
        for p in broker.replicas.all() {
            if !p.is_leader() {
                continue;
            }
            if let Some(state) = broker.metadata().partition(&p.tp.topic, p.tp.partition) {
                if p.isr().len() < state.replicas.len() {
                    under_replicated += 1;
                }
            }
            let Some(change) = p.take_isr_change(now, lag_ms) else {
                continue;
            };
            let broker = Arc::clone(&broker);
            let refusing = Arc::clone(&refusing);
            tokio::spawn(async move {
                let request = ControllerRequest::AlterPartition {
                    topic: p.tp.topic.clone(),
                    partition: p.tp.partition,
                    leader_id: broker.node_id,
                    leader_epoch: change.leader_epoch,
                    partition_epoch: change.partition_epoch,
                    new_isr: change.new_isr.clone(),
                };
                match broker
                    .controller
                    .submit_within(request, Duration::from_secs(10))
                    .await
                {
                    Ok(ControllerResponse::PartitionChanged {
                        partition_epoch,
                        isr,
                    }) => {
                        info!(partition = %p.tp, ?isr, partition_epoch, "ISR updated");
                        if refusing.swap(false, Ordering::Relaxed) {
                            info!("the controller accepts ISR changes again");
                        }
                        p.isr_change_done(Some((isr, partition_epoch)));
                    }
                    Ok(other) => {
                        warn!(partition = %p.tp, ?other, "unexpected answer to AlterPartition");
                        p.isr_change_done(None);
                    }
                    Err(e) => {
                        if refusing.swap(true, Ordering::Relaxed) {
                            debug!(partition = %p.tp, error = %e, "ISR change refused");
                        } else {
                            warn!(
                                partition = %p.tp,
                                error = %e,
                                "ISR change refused; retrying, further refusals at DEBUG"
                            );
                        }
                        p.isr_change_done(None);
                    }
                }
            });
        }
        metrics::gauge!("fjord_under_replicated_partitions").set(under_replicated as f64);
    }
}
