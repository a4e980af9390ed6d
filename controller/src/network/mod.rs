//! The Raft transport over tonic gRPC: a client per peer for openraft, and the server side
//! that hands incoming RPCs to the local Raft node (or, for `Forward`, to the controller).

mod client;
mod routing;
pub mod server;

pub use client::{ChannelPool, RaftNetworkFactoryImpl};
pub use routing::Routing;

pub use server::ControllerGrpc;
