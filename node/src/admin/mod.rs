//! The admin HTTP listener: Prometheus metrics, health, readiness and a JSON view of the
//! cluster.

mod http;

pub use http::{install_metrics, record_gauges, serve};
