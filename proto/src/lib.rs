//! gRPC messages and services between Fjord nodes, generated from `proto/`.

#[allow(clippy::all, clippy::pedantic, missing_docs)] // generated code
pub mod v1 {
    tonic::include_proto!("fjord.v1");
}

pub mod peer;
pub mod tls;

/// Largest gRPC message a node accepts or sends. Raft snapshots of a large cluster's
/// metadata travel in one message, so tonic's 4 MiB default is far too small.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// HTTP/2 flow-control windows for links between nodes. A replica fetch answer carries
/// up to `replica.fetch.response.max.bytes` (10 MiB by default); with hyper's 1-2 MiB
/// stream windows the leader stops every couple of MiB until the follower's task runs
/// and returns credit, which on a loaded machine costs milliseconds each time. Windows
/// larger than one answer let it flow in one go; memory stays bounded by the answer size,
/// since a stream carries one answer at a time.
pub const HTTP2_STREAM_WINDOW: u32 = 32 * 1024 * 1024;
pub const HTTP2_CONNECTION_WINDOW: u32 = 64 * 1024 * 1024;
/// Largest HTTP/2 frame a node asks its peers to send: fewer, larger frames for bulk
/// replication data (the 16 KiB default means hundreds of frames per answer).
pub const HTTP2_MAX_FRAME: u32 = 1024 * 1024;
