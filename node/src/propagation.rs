//! Metadata writes that every broker knows of when their client hears "done": a topic
//! created through one broker can be fetched from its leader at once, and a deleted one
//! is gone from every broker's Metadata. Kafka leaves this to client retries; waiting
//! here costs one round trip to each broker, bounded in time.

use std::time::Duration;

use fjord_controller::{ControllerError, ControllerRequest, ControllerResponse};
use fjord_proto::v1::replication_client::ReplicationClient;
use fjord_proto::v1::AwaitMetadataRequest;
use futures::future::join_all;
use tracing::debug;

use crate::broker::Broker;

/// How long a write waits for brokers to apply it before answering anyway (a broker that
/// just crashed and is not fenced yet must not hold every admin call).
pub const PROPAGATION_WAIT: Duration = Duration::from_secs(2);

impl Broker {
    /// Submits `request` to the active controller and, once it is committed, waits until
    /// every live broker (this one included) has applied it, for at most
    /// [`PROPAGATION_WAIT`].
    pub async fn submit_everywhere(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        let (response, index) = self.controller.submit_with_index(request).await?;
        let late = self.await_applied_everywhere(index, PROPAGATION_WAIT).await;
        if !late.is_empty() {
            debug!(
                index,
                ?late,
                "brokers had not applied a metadata write in time"
            );
        }
        Ok(response)
    }

    /// Waits until every unfenced broker has applied metadata `index`; returns the ones
    /// that had not within `timeout`.
    pub async fn await_applied_everywhere(&self, index: u64, timeout: Duration) -> Vec<i32> {
        let md = self.metadata();
        let waits = md.brokers.values().filter(|b| !b.fenced).map(|b| {
            let id = b.id;
            let address = b.rpc_address.clone();
            async move {
                let applied = if id == self.node_id {
                    self.replicas.wait_applied(index, timeout).await
                } else {
                    self.await_applied_on(&address, index, timeout).await
                };
                (id, applied)
            }
        });
        join_all(waits)
            .await
            .into_iter()
            .filter(|(_, applied)| !applied)
            .map(|(id, _)| id)
            .collect()
    }

    async fn await_applied_on(&self, address: &str, index: u64, timeout: Duration) -> bool {
        // Transaction RPCs and these share one pool of connections to peers.
        let Ok(channel) = self.txns.pool.channel(address) else {
            return false;
        };
        let mut client = ReplicationClient::new(channel);
        let call = client.await_metadata(AwaitMetadataRequest {
            index,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        });
        // A little longer than the peer waits, so its own "not yet" arrives.
        match tokio::time::timeout(timeout + Duration::from_millis(200), call).await {
            Ok(Ok(resp)) => resp.into_inner().applied,
            _ => false,
        }
    }
}
