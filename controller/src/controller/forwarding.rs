//! Getting a request to the active controller: handled here when this node leads,
//! forwarded over gRPC otherwise, retried through elections.

use std::time::{Duration, Instant};

use fjord_proto::v1::ForwardRequest;
use openraft::async_runtime::WatchReceiver;

use super::Controller;
use crate::error::ControllerError;
use crate::requests::{ControllerRequest, ControllerResponse};
use crate::types::NodeId;

impl Controller {
    /// Sends a metadata write to the active controller, here or over gRPC, retrying
    /// through elections until `request_timeout` passes.
    pub async fn submit(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        self.submit_within(request, self.inner.request_timeout)
            .await
    }

    /// [`submit`](Self::submit) with its own deadline (heartbeats use a short one).
    pub async fn submit_within(
        &self,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<ControllerResponse, ControllerError> {
        self.submit_indexed(request, timeout)
            .await
            .map(|(response, _)| response)
    }

    /// [`submit`](Self::submit), with the metadata index the answer follows (see
    /// [`submit_indexed`](Self::submit_indexed)).
    pub async fn submit_with_index(
        &self,
        request: ControllerRequest,
    ) -> Result<(ControllerResponse, u64), ControllerError> {
        self.submit_indexed(request, self.inner.request_timeout)
            .await
    }

    /// [`submit_within`](Self::submit_within), with the metadata index the active
    /// controller had committed when it answered: once a broker has applied that index,
    /// it knows of the write.
    async fn submit_indexed(
        &self,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<(ControllerResponse, u64), ControllerError> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(20);
        loop {
            let attempt = match self.handle_as_leader(request.clone()).await {
                Err(ControllerError::NotController {
                    leader: Some(leader),
                }) if leader != self.inner.node_id => {
                    self.forward_while_leading(leader, &request).await
                }
                Err(ControllerError::NotController { leader: None }) => {
                    self.forward_to_any_voter(&request).await
                }
                other => other.map(|r| (r, self.known_index())),
            };
            match attempt {
                Err(ControllerError::NotController { .. })
                | Err(ControllerError::Unavailable(_)) => {
                    if Instant::now() + backoff > deadline {
                        return Err(ControllerError::Timeout);
                    }
                    // Wait for a leader change, or a short backoff, whichever is first.
                    let mut metrics = self.inner.raft.metrics();
                    let _ = tokio::time::timeout(backoff, metrics.changed()).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Forwards to `leader`, giving up as soon as the quorum elects someone else: a call
    /// to a controller that died can hang until connection keep-alive notices, and by
    /// then its successor could have answered. The request may or may not have reached
    /// the old leader, so the caller hears an indeterminate outcome.
    async fn forward_while_leading(
        &self,
        leader: NodeId,
        request: &ControllerRequest,
    ) -> Result<(ControllerResponse, u64), ControllerError> {
        let mut metrics = self.inner.raft.metrics();
        let replaced = async move {
            loop {
                let current = metrics.borrow_watched().current_leader;
                if current.is_some_and(|l| l != leader) {
                    return;
                }
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            result = self.forward(leader, request) => result,
            () = replaced => Err(ControllerError::Indeterminate(format!(
                "controller {leader} was replaced while the request was in flight"
            ))),
        }
    }

    /// Without a known leader (a node that has not joined yet), ask the configured voters:
    /// one of them is the leader, or knows who is.
    async fn forward_to_any_voter(
        &self,
        request: &ControllerRequest,
    ) -> Result<(ControllerResponse, u64), ControllerError> {
        let mut last = ControllerError::NotController { leader: None };
        for (&voter, addr) in &self.inner.bootstrap_voters {
            if voter == self.inner.node_id {
                continue;
            }
            match self.forward_to(addr, request).await {
                Err(ControllerError::NotController { leader: Some(l) })
                    if l != self.inner.node_id =>
                {
                    return self.forward(l, request).await;
                }
                Err(
                    e @ (ControllerError::NotController { .. } | ControllerError::Unavailable(_)),
                ) => last = e,
                other => return other,
            }
        }
        Err(last)
    }

    async fn forward(
        &self,
        leader: NodeId,
        request: &ControllerRequest,
    ) -> Result<(ControllerResponse, u64), ControllerError> {
        let addr = self.address_of(leader).ok_or_else(|| {
            ControllerError::Unavailable(format!("no address known for controller {leader}"))
        })?;
        self.forward_to(&addr, request).await
    }

    async fn forward_to(
        &self,
        addr: &str,
        request: &ControllerRequest,
    ) -> Result<(ControllerResponse, u64), ControllerError> {
        let mut client = self
            .inner
            .pool
            .client(addr)
            .map_err(|e| ControllerError::Unavailable(e.to_string()))?;
        let body =
            serde_json::to_vec(request).map_err(|e| ControllerError::Fatal(e.to_string()))?;
        let mut req = tonic::Request::new(ForwardRequest {
            request: body.into(),
            origin_node: self.inner.node_id,
        });
        req.set_timeout(self.inner.request_timeout);
        let resp = client.forward(req).await.map_err(|e| match e.code() {
            // Nothing reached the leader: safe to try again.
            tonic::Code::Unavailable => {
                ControllerError::Unavailable(format!("forward to {addr}: {e}"))
            }
            // The leader may have applied it before the answer was lost.
            _ => ControllerError::Indeterminate(format!("forward to {addr}: {e}")),
        })?;
        let resp = resp.into_inner();
        let result =
            serde_json::from_slice::<Result<ControllerResponse, ControllerError>>(&resp.response)
                .map_err(|e| ControllerError::Unavailable(format!("bad forward response: {e}")))?;
        result.map(|r| (r, resp.applied_index))
    }
}
