//! Configuration: the node's start-up settings (flags, `FJORD_*` environment, TOML file,
//! defaults) and the Kafka config properties of brokers and topics, with Kafka's names,
//! defaults and validation.

pub mod defs;
mod keys;
mod node;
pub mod properties;
mod resolve;

pub use keys::unknown_message;
pub use node::{ListenerSpec, LogFormat, NodeConfig, ServeArgs};
pub use resolve::{ConfigSource, ConfigView, ResolvedConfig};
