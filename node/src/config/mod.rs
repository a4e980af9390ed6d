//! Configuration: the node's start-up settings (flags, `FJORD_*` environment, TOML file,
//! defaults) and the Kafka config properties of brokers and topics, with Kafka's names,
//! defaults and validation.

pub mod defs;
mod node;
mod properties;
mod resolve;

pub use node::{unknown_message, ListenerSpec, LogFormat, NodeConfig, ServeArgs};
pub use resolve::{ConfigSource, ConfigView, ResolvedConfig};
