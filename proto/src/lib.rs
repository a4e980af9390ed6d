//! gRPC messages and services between Fjord nodes, generated from `proto/`.

#[allow(clippy::all, clippy::pedantic, missing_docs)] // generated code
pub mod v1 {
    tonic::include_proto!("fjord.v1");
}

/// Largest gRPC message a node accepts or sends. Raft snapshots of a large cluster's
/// metadata travel in one message, so tonic's 4 MiB default is far too small.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
