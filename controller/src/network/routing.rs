//! Every Raft message names its sender, its target and (once known) the cluster. The
//! receiver refuses a message that is not for it: a process left over from another
//! cluster on a reused port, or a stale address, must never feed its log into ours.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::metadata::ClusterMetadata;
use crate::types::NodeId;

const TARGET: &str = "x-fjord-target-node";
const SENDER: &str = "x-fjord-sender-node";
const CLUSTER: &str = "x-fjord-cluster-id";

/// What a node stamps on the Raft messages it sends.
#[derive(Clone)]
pub struct Routing {
    pub me: NodeId,
    pub metadata: watch::Receiver<Arc<ClusterMetadata>>,
}

impl Routing {
    pub fn stamp(&self, target: NodeId, headers: &mut MetadataMap) {
        if let Ok(v) = target.to_string().parse() {
            headers.insert(TARGET, v);
        }
        if let Ok(v) = self.me.to_string().parse() {
            headers.insert(SENDER, v);
        }
        if let Some(id) = self.metadata.borrow().cluster_id.as_deref() {
            if let Ok(v) = id.parse() {
                headers.insert(CLUSTER, v);
            }
        }
    }

    /// Checks a received message's headers against this node.
    pub fn check(&self, headers: &MetadataMap) -> Result<(), Status> {
        let get = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let num = |k: &str| get(k).and_then(|v| v.parse::<NodeId>().ok());
        if let Some(t) = num(TARGET) {
            if t != self.me {
                return Err(Status::failed_precondition(format!(
                    "this is node {}, not node {t}",
                    self.me
                )));
            }
        }
        if num(SENDER) == Some(self.me) {
            return Err(Status::failed_precondition(format!(
                "a message from node {} to itself: another process uses this node's id",
                self.me
            )));
        }
        let ours = self.metadata.borrow().cluster_id.clone();
        if let (Some(theirs), Some(ours)) = (get(CLUSTER), ours) {
            if theirs != ours {
                return Err(Status::failed_precondition(format!(
                    "message from cluster {theirs}, this node is in cluster {ours}"
                )));
            }
        }
        Ok(())
    }
}
