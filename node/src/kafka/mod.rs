//! The Kafka wire protocol front end: one listener per configured Kafka listener, one
//! task per connection, one file per request family. Requests are decoded and encoded
//! by the `kafka-protocol` crate.

mod acls;
mod api_versions;
mod authz;
mod cluster;
mod config_resources;
mod configs;
mod connection;
mod consumer_groups;
mod context;
mod dispatch;
mod elections;
pub mod errors;
mod features;
mod fetch;
pub(crate) mod find_coordinator;
mod frame;
mod group_admin;
mod group_configs;
mod groups;
mod incoming;
mod leader_epoch;
mod list_offsets;
mod listener;
mod log_dirs;
mod metadata;
mod metrics_labels;
mod offset_commit;
mod outgoing;
mod produce;
mod producer_id;
mod quorum;
mod quotas;
mod reassignments;
mod records;
mod request_cost;
mod scram_users;
mod session;
mod share_admin;
mod share_fetch;
mod share_groups;
mod throttle;
mod topic_partitions;
mod topics;
mod txn;
mod txn_admin;
mod txn_markers;
pub mod versions;

pub use listener::serve;
