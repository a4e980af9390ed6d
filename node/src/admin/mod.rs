//! The admin HTTP listener: Prometheus metrics, health, readiness and a JSON view of the
//! cluster.

mod descriptions;
mod gauges;
mod http;

pub use gauges::{record as record_gauges, CONNECTIONS_OPEN, REPLICA_FETCHES_WAITING};
pub use http::{install_metrics, serve};
