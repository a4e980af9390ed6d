//! The quorum as a whole: handing the active role over, telling whether a quorum is
//! there, describing it, and changing its voters.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, Instant as _};
use tracing::{info, warn};

use super::Controller;
use crate::error::ControllerError;
use crate::metadata::MetadataError;
use crate::requests::{ControllerResponse, QuorumNode, QuorumStatus};
use crate::types::NodeId;

impl Controller {
    /// Hands Raft leadership to another voter before this node stops, so the quorum does
    /// not wait out an election timeout. Bounded: gives up after `timeout`.
    pub async fn step_down(&self, timeout: Duration) {
        if !self.is_active() {
            return;
        }
        // The voter that acknowledged a heartbeat most recently: handing the role to one
        // that is gone (the others of a cluster being stopped) would only wait out the
        // timeout.
        let window = self.quorum_window();
        let target = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow_watched();
            let membership = m.membership_config.membership();
            let voters: Vec<NodeId> = membership
                .voter_ids()
                .filter(|id| *id != self.inner.node_id)
                .filter(|id| {
                    membership
                        .get_node(id)
                        .is_some_and(|n| !self.inner.pool.is_unreachable(&n.addr))
                })
                .collect();
            let heard = m.heartbeat.as_ref();
            voters
                .into_iter()
                .filter_map(|id| {
                    let at = heard?.get(&id)?.as_ref()?;
                    let age = (**at).elapsed();
                    (age <= window).then_some((age, id))
                })
                .min()
                .map(|(_, id)| id)
        };
        let Some(target) = target else {
            info!("no other voter is reachable; stopping without handing over the active controller role");
            return;
        };
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

    /// How recent a quorum's acknowledgement must be for the quorum to count as there:
    /// two maximal election timeouts, many heartbeats.
    fn quorum_window(&self) -> Duration {
        Duration::from_millis(
            self.inner
                .raft
                .config()
                .election_timeout_max
                .saturating_mul(2),
        )
    }

    /// How recently a quorum must have acknowledged this leader for it to renew a
    /// broker's lease (see [`renews_leases`](Self::renews_leases)).
    pub(crate) fn lease_quorum_window(&self) -> Duration {
        Duration::from_millis(self.inner.raft.config().election_timeout_min / 2)
    }

    /// Whether this leader may answer a broker's heartbeat, which renews that broker's
    /// lease: only while a quorum acknowledged it within [`lease_quorum_window`]
    /// (Self::lease_quorum_window). A leader that is frozen, or cut off, stops renewing
    /// at once, so its successor knows when the last lease it granted ends (its own
    /// broker's above all, which it answers without any network) and may fence that
    /// broker without a whole session of its own.
    pub(crate) fn renews_leases(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        m.membership_config.membership().voter_ids().count() <= 1
            || m.last_quorum_acked
                .as_ref()
                .is_some_and(|t| (**t).elapsed() <= self.lease_quorum_window())
    }

    /// Whether a metadata write could commit now, as far as this node can tell: it
    /// knows an active controller and, if that is itself, a quorum acknowledged it
    /// recently. Shutdown uses this to skip steps that need a quorum that is gone.
    pub fn quorum_reachable(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        match m.current_leader {
            None => false,
            Some(leader) if leader == self.inner.node_id => {
                let membership = m.membership_config.membership();
                let voters: Vec<NodeId> = membership.voter_ids().collect();
                // Peers whose last call was refused are gone now, whatever the last
                // quorum acknowledgement says (a cluster being stopped node by node).
                let reachable = voters
                    .iter()
                    .filter(|id| {
                        **id == self.inner.node_id
                            || membership
                                .get_node(id)
                                .is_some_and(|n| !self.inner.pool.is_unreachable(&n.addr))
                    })
                    .count();
                voters.len() <= 1
                    || (reachable > voters.len() / 2
                        && m.last_quorum_acked
                            .as_ref()
                            .is_some_and(|t| (**t).elapsed() <= self.quorum_window()))
            }
            Some(_) => true,
        }
    }

    pub(super) fn quorum_status(&self) -> QuorumStatus {
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
                let last_ack_ms_ago = if *id == self.inner.node_id {
                    Some(0)
                } else {
                    m.heartbeat
                        .as_ref()
                        .and_then(|h| h.get(id).cloned().flatten())
                        .map(|at| u64::try_from((*at).elapsed().as_millis()).unwrap_or(u64::MAX))
                };
                QuorumNode {
                    node_id: *id,
                    rpc_address: node.addr.clone(),
                    voter: voters.contains(id),
                    matched_index: matched,
                    last_ack_ms_ago,
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

    pub(super) async fn change_voters(
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
}
