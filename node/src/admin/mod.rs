//! The admin HTTP listener: Prometheus metrics, health, readiness and a JSON view of the
//! cluster.

mod gauges;
mod http;

pub use gauges::record as record_gauges;
pub use http::{install_metrics, serve};
