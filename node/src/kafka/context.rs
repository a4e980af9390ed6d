use std::sync::Arc;

use crate::broker::Broker;

/// Who sent a request and through which listener, for handlers that answer per listener
/// (Metadata, DescribeCluster) and for logs.
#[derive(Clone)]
pub struct RequestContext {
    pub broker: Arc<Broker>,
    pub listener: String,
    pub client_id: String,
    /// The peer's address as Kafka shows it in DescribeGroups ("/10.0.0.1").
    pub client_host: String,
    pub api_version: i16,
    /// The authenticated user's name (Kafka's principal name), for quotas.
    pub principal: Arc<str>,
}

impl RequestContext {
    pub fn version(&self) -> i16 {
        self.api_version
    }

    /// The client as quotas know it.
    pub fn quota_client(&self) -> crate::quota::Client<'_> {
        crate::quota::Client {
            user: &self.principal,
            client_id: &self.client_id,
        }
    }
}
