//! Both ends of the `Attach` streams (see `crate::attachments`): the voter's record of
//! who is attached, and the broker's loop that keeps one stream open to every voter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_proto::v1::{AttachEvent, AttachRequest};
use futures::Stream;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::TransferLeaderRequest;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::Controller;
use crate::metadata::MetadataError;
use crate::types::NodeId;

/// Held by the server for as long as an `Attach` stream is open; closing the stream
/// (the client went away, the connection broke) drops it, which records the break.
pub struct AttachGuard {
    controller: Controller,
    broker_id: i32,
    epoch: i64,
}

impl Drop for AttachGuard {
    fn drop(&mut self) {
        let now = self.controller.now_ms();
        self.controller
            .attachments()
            .closed(self.broker_id, self.epoch, now);
        let Some(grace) = self.controller.inner.disconnect_grace else {
            return;
        };
        if self
            .controller
            .current()
            .brokers
            .get(&self.broker_id)
            .is_some_and(|b| b.epoch == self.epoch && !b.fenced)
        {
            debug!(
                broker = self.broker_id,
                "a broker's attach stream closed; fencing it unless it is back within the grace"
            );
        }
        // Wake the duties once the grace has passed, rather than at their next tick.
        let controller = self.controller.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            controller.inner.duties_wake.notify_one();
        });
    }
}

/// The server's answer stream: yields nothing and ends only when the client goes.
pub type AttachStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<AttachEvent, tonic::Status>> + Send + 'static>>;

impl Controller {
    /// Opens a stream for `req` (server side). Only the current registration of a
    /// known broker may attach, which bounds the record by the cluster's size.
    pub fn attach(&self, req: AttachRequest) -> Result<AttachStream, MetadataError> {
        let md = self.current();
        let broker = md
            .brokers
            .get(&req.broker_id)
            .ok_or(MetadataError::UnknownBroker(req.broker_id))?;
        if broker.epoch != req.broker_epoch {
            return Err(MetadataError::StaleBrokerEpoch(req.broker_id));
        }
        self.attachments().opened(req.broker_id, req.broker_epoch);
        let guard = AttachGuard {
            controller: self.clone(),
            broker_id: req.broker_id,
            epoch: req.broker_epoch,
        };
        // The guard lives in the stream's state, so dropping the stream drops it.
        let stream = futures::stream::unfold(guard, |guard| async move {
            std::future::pending::<()>().await;
            Some((Ok(AttachEvent {}), guard))
        });
        Ok(Box::pin(stream))
    }

    /// Keeps a stream from this broker (registration `broker_epoch`) open to every
    /// other voter until `stop` turns true. `on_break` hears of each stream that was open
    /// and closed, with the voter it went to.
    pub async fn stay_attached(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        mut stop: watch::Receiver<bool>,
        on_break: Arc<dyn Fn(NodeId) + Send + Sync>,
    ) {
        let mut loops: HashMap<NodeId, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            for (voter, addr) in self.voter_addresses() {
                if voter == self.inner.node_id || loops.contains_key(&voter) {
                    continue;
                }
                let this = self.clone();
                let on_break = Arc::clone(&on_break);
                loops.insert(
                    voter,
                    tokio::spawn(async move {
                        this.attach_to(voter, addr, broker_id, broker_epoch, on_break)
                            .await
                    }),
                );
            }
            // Voters change rarely; look again now and then.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for (_, task) in loops {
            task.abort();
        }
    }

    async fn attach_to(
        &self,
        voter: NodeId,
        addr: String,
        broker_id: i32,
        broker_epoch: i64,
        on_break: Arc<dyn Fn(NodeId) + Send + Sync>,
    ) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let opened = match self.inner.pool.client(&addr) {
                Ok(mut client) => client
                    .attach(AttachRequest {
                        broker_id,
                        broker_epoch,
                    })
                    .await
                    .map(tonic::Response::into_inner),
                Err(e) => Err(tonic::Status::unavailable(e.to_string())),
            };
            match opened {
                Ok(mut stream) => {
                    debug!(voter, "attached to voter");
                    backoff = Duration::from_millis(50);
                    // Nothing is ever sent: this returns when the stream ends.
                    let end = stream.message().await;
                    info!(voter, end = ?end.err(), "attach stream to a voter closed");
                    on_break(voter);
                    self.maybe_replace_dead_leader(voter, &addr).await;
                }
                Err(status) => {
                    debug!(voter, error = %status.message(), "could not attach to voter");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// When the active controller's process is gone (its stream closed and its port now
    /// refuses connections, or its address no longer answers), starts the election at
    /// once instead of waiting out the leader lease and an election timeout, about three
    /// seconds with defaults. Every
    /// voter that sees it drops its lease on the dead leader; the lowest other voter
    /// stands, as in a leadership transfer. Raft's vote rules still decide, so this can
    /// only cost an election, never elect a stale log: a leader that is alive but cut
    /// off loses its role, which the election timeout would take from it anyway.
    async fn maybe_replace_dead_leader(&self, voter: NodeId, addr: &str) {
        let (vote, successor) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow_watched();
            let membership = m.membership_config.membership();
            let voters: Vec<NodeId> = membership.voter_ids().collect();
            if m.current_leader != Some(voter) || !voters.contains(&self.inner.node_id) {
                return;
            }
            let Some(successor) = voters.iter().copied().filter(|v| *v != voter).min() else {
                return;
            };
            (m.vote, successor)
        };
        // A killed process's connections can close a moment before its listening
        // socket does, so one accepted probe is not the last word; a refusal is (the
        // host is up, the process is not), and so is still no connection at the end
        // (the host or container is gone with its address).
        let mut gone = false;
        for pause_ms in [0, 50, 100, 200] {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            let probe = tokio::time::timeout(
                Duration::from_millis(300),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            match probe {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    gone = true;
                    break;
                }
                Ok(Ok(_)) => gone = false,
                Ok(Err(_)) | Err(_) => gone = true,
            }
        }
        if !gone {
            debug!(
                leader = voter,
                "the active controller's stream closed; it still listens"
            );
            return;
        }
        info!(
            leader = voter,
            successor, "the active controller's process is gone; electing its successor at once"
        );
        let req = TransferLeaderRequest::new(vote, successor, None);
        if let Err(e) = self.inner.raft.handle_transfer_leader(req).await {
            warn!(error = %e, "could not start the election");
        }
    }

    fn voter_addresses(&self) -> Vec<(NodeId, String)> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let from_membership: Vec<(NodeId, String)> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect();
        if from_membership.is_empty() {
            return self
                .inner
                .bootstrap_voters
                .iter()
                .map(|(id, a)| (*id, a.clone()))
                .collect();
        }
        from_membership
    }

    /// `broker.session.disconnect.grace.ms` as this node's controller was started with;
    /// its broker side keeps its streams open only when this is set.
    pub fn disconnect_grace(&self) -> Option<Duration> {
        self.inner.disconnect_grace
    }

    /// Whether registration `epoch` of `broker_id` has closed every stream it had open to
    /// this node: its process is most likely gone, though the active controller may not
    /// have fenced it yet (within `broker.session.disconnect.grace.ms`). Only voters hold
    /// streams, so a learner never knows this.
    pub fn broker_detached(&self, broker_id: i32, epoch: i64) -> bool {
        self.attachments().broken_since(broker_id, epoch).is_some()
    }

    pub(super) fn attachments(&self) -> std::sync::MutexGuard<'_, crate::attachments::Attachments> {
        self.inner
            .attachments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}
