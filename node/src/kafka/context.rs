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
}

impl RequestContext {
    pub fn version(&self) -> i16 {
        self.api_version
    }
}
