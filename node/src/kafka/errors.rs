//! The one place where Fjord's error types become Kafka error codes.

use fjord_controller::metadata::MetadataError;
use fjord_controller::ControllerError;
use fjord_storage::{RecordErrorKind, StorageError};
use kafka_protocol::error::ResponseError;

use crate::replica::ReplicaError;

/// A Kafka error code with the message sent to clients that can carry one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaError {
    pub code: ResponseError,
    pub message: String,
}

impl KafkaError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        KafkaError {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> i16 {
        self.code.code()
    }
}

/// Counts one partition-level error answer of `api` (Prometheus `fjord_errors_total`).
pub fn count_error(api: &'static str, code: ResponseError) {
    metrics::counter!("fjord_errors_total", "api" => api, "error" => format!("{code:?}"))
        .increment(1);
}

pub fn storage_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::CorruptBatch(_) => ResponseError::CorruptMessage,
        StorageError::UnsupportedMagic(_) | StorageError::InvalidRecord(_) => {
            ResponseError::InvalidRecord
        }
        StorageError::RecordErrors { kind, .. } => match kind {
            RecordErrorKind::InvalidRecord => ResponseError::InvalidRecord,
            RecordErrorKind::InvalidTimestamp => ResponseError::InvalidTimestamp,
        },
        StorageError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::NonContiguousAppend { .. } => ResponseError::InvalidRecord,
        StorageError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        StorageError::Io { .. } | StorageError::Closed => ResponseError::KafkaStorageError,
    }
}

impl From<&ReplicaError> for KafkaError {
    fn from(e: &ReplicaError) -> Self {
        let code = match e {
            ReplicaError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            ReplicaError::NotLeaderOrFollower | ReplicaError::StaleFetch => {
                ResponseError::NotLeaderOrFollower
            }
            ReplicaError::NotReplica(_) => ResponseError::IneligibleReplica,
            ReplicaError::OffsetNotAvailable(_) => ResponseError::OffsetNotAvailable,
            ReplicaError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
            ReplicaError::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch,
            ReplicaError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            ReplicaError::TransactionNotVerified(_) => ResponseError::InvalidTxnState,
            ReplicaError::Storage(s) => storage_error(s),
            ReplicaError::Producer(crate::producer::ProducerError::InvalidProducerEpoch {
                ..
            }) => ResponseError::InvalidProducerEpoch,
            ReplicaError::Producer(crate::producer::ProducerError::OutOfOrderSequence {
                ..
            }) => ResponseError::OutOfOrderSequenceNumber,
            ReplicaError::Producer(crate::producer::ProducerError::CoordinatorFenced {
                ..
            }) => ResponseError::TransactionCoordinatorFenced,
        };
        KafkaError::new(code, e.to_string())
    }
}

impl From<&MetadataError> for KafkaError {
    fn from(e: &MetadataError) -> Self {
        let code = match e {
            MetadataError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            MetadataError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            MetadataError::InvalidTopic(_) => ResponseError::InvalidTopicException,
            MetadataError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            MetadataError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            MetadataError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            MetadataError::InvalidConfig(_) => ResponseError::InvalidConfig,
            MetadataError::InvalidRequest(_) => ResponseError::InvalidRequest,
            MetadataError::UnknownBroker(_) => ResponseError::BrokerNotAvailable,
            MetadataError::NotInitialized | MetadataError::Unavailable(_) => {
                ResponseError::RequestTimedOut
            }
            MetadataError::StaleBrokerEpoch(_) => ResponseError::StaleBrokerEpoch,
            MetadataError::DuplicateBrokerRegistration(_) => {
                ResponseError::DuplicateBrokerRegistration
            }
            MetadataError::InvalidVoterChange(_) => ResponseError::InvalidRequest,
            MetadataError::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch,
            MetadataError::InvalidUpdateVersion(_) => ResponseError::InvalidUpdateVersion,
            MetadataError::IneligibleReplica(_) => ResponseError::IneligibleReplica,
            MetadataError::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
            MetadataError::PreferredLeaderNotAvailable(_) => {
                ResponseError::PreferredLeaderNotAvailable
            }
            MetadataError::NoReassignmentInProgress => ResponseError::NoReassignmentInProgress,
            MetadataError::PolicyViolation(_) => ResponseError::PolicyViolation,
            MetadataError::InvalidFeatureUpdate(_) => ResponseError::InvalidUpdateVersion,
        };
        KafkaError::new(code, e.to_string())
    }
}

impl From<&ControllerError> for KafkaError {
    fn from(e: &ControllerError) -> Self {
        match e {
            ControllerError::Metadata(m) => m.into(),
            ControllerError::NotController { .. } => {
                KafkaError::new(ResponseError::NotController, e.to_string())
            }
            ControllerError::Unavailable(_)
            | ControllerError::Timeout
            | ControllerError::Indeterminate(_) => {
                KafkaError::new(ResponseError::RequestTimedOut, e.to_string())
            }
            ControllerError::Storage(_) | ControllerError::Fatal(_) => {
                KafkaError::new(ResponseError::UnknownServerError, e.to_string())
            }
        }
    }
}
