//! The `fjord` binary: the Kafka protocol front end, replicas, admin HTTP and the CLI.

pub mod admin;
pub mod alloc_guard;
pub mod broker;
pub mod cli;
pub mod config;
pub mod coordinator_shards;
pub mod group;
pub mod kafka;
pub mod lease;
pub mod log_levels;
pub mod memory;
pub mod producer;
pub mod propagation;
pub mod quota;
pub mod replica;
pub mod security;
pub mod server;
pub mod share;
pub mod share_state;
pub mod time;
pub mod topic_names;
pub mod txn;
