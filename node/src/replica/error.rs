use fjord_storage::StorageError;

/// Why a replica operation failed; mapped to Kafka error codes at the protocol edge.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("this broker does not host the partition")]
    UnknownTopicOrPartition,
    #[error("this broker is not the leader of the partition")]
    NotLeaderOrFollower,
    #[error("broker {0} is not a replica of the partition")]
    NotReplica(i32),
    #[error("the leadership this fetch was sent under has ended")]
    StaleFetch,

    #[error("leader epoch {request} is older than the current {current}")]
    FencedLeaderEpoch { request: i32, current: i32 },
    #[error("leader epoch {request} is newer than the current {current}")]
    UnknownLeaderEpoch { request: i32, current: i32 },
    #[error("offset {offset} is outside [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        high_watermark: i64,
    },
    #[error("offset {0} is not on this follower yet")]
    OffsetNotAvailable(i64),
    #[error("producer {0} has no transaction open here that its coordinator confirmed")]
    TransactionNotVerified(i64),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Producer(#[from] crate::producer::ProducerError),
}
