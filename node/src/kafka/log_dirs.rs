//! DescribeLogDirs and AlterReplicaLogDirs, as `kafka-log-dirs.sh` and
//! `kafka-reassign-partitions.sh` use them. A Fjord node keeps every partition in its one
//! data directory, so it describes one log dir and can move no replica between dirs.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;

/// The log dir as clients see it: the data directory, absolute when it can be resolved,
/// so that AlterReplicaLogDirs can name it back.
fn log_dir(ctx: &RequestContext) -> PathBuf {
    let dir = &ctx.broker.config.data_dir;
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone())
}

pub fn describe(ctx: &RequestContext, req: DescribeLogDirsRequest) -> ResponseKind {
    let mut resp = DescribeLogDirsResponse::default();
    if !authz::Check::new(ctx).cluster(Op::Describe) {
        // v3+ carries a top-level error; older versions answer an empty list, as Kafka.
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return ResponseKind::DescribeLogDirs(resp);
    }
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for p in ctx.broker.replicas.all() {
        let include = wanted.as_ref().is_none_or(|w| {
            w.get(&p.tp.topic)
                .is_some_and(|parts| parts.contains(&p.tp.partition))
        });
        if !include {
            continue;
        }
        // Kafka's lag of a current (not future) replica: how far its end is behind the
        // high watermark it knows, which is 0 unless it is truncating.
        let lag = (p.high_watermark() - p.log_end_offset()).max(0);
        by_topic.entry(p.tp.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.tp.partition)
                .with_partition_size(i64::try_from(p.size_bytes()).unwrap_or(i64::MAX))
                .with_offset_lag(lag)
                .with_is_future_key(false),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = log_dir(ctx);
    let (total, usable) = volume_bytes(&dir);
    resp.results = vec![DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable)];
    ResponseKind::DescribeLogDirs(resp)
}

pub fn alter(ctx: &RequestContext, req: AlterReplicaLogDirsRequest) -> ResponseKind {
    let allowed = authz::Check::new(ctx).cluster(Op::Alter);
    let ours = log_dir(ctx);
    let md = ctx.broker.metadata();
    let mut by_topic: BTreeMap<String, Vec<AlterReplicaLogDirPartitionResult>> = BTreeMap::new();
    for dir in req.dirs {
        let requested = PathBuf::from(dir.path.as_str());
        let same_dir = std::fs::canonicalize(&requested).unwrap_or(requested) == ours;
        for topic in dir.topics {
            let name = topic.name.0.to_string();
            for partition in topic.partitions {
                let code = if !allowed {
                    ResponseError::ClusterAuthorizationFailed.code()
                } else if !same_dir {
                    ResponseError::LogDirNotFound.code()
                } else if !md
                    .topics
                    .get(&name)
                    .is_some_and(|t| (0..t.partitions.len()).contains(&(partition as usize)))
                {
                    ResponseError::UnknownTopicOrPartition.code()
                } else if ctx.broker.replicas.get(&name, partition).is_none() {
                    ResponseError::ReplicaNotAvailable.code()
                } else {
                    // Already in the only log dir there is: nothing to move.
                    0
                };
                by_topic.entry(name.clone()).or_default().push(
                    AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(partition)
                        .with_error_code(code),
                );
            }
        }
    }
    let results = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            AlterReplicaLogDirTopicResult::default()
                .with_topic_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::AlterReplicaLogDirs(AlterReplicaLogDirsResponse::default().with_results(results))
}

/// Total and usable bytes of the filesystem holding `dir`; -1 each when unknown, as
/// Kafka answers.
#[allow(unsafe_code)] // statvfs(3) has no safe wrapper in std; soundness below
fn volume_bytes(dir: &Path) -> (i64, i64) {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return (-1, -1);
    };
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `st` points
    // to writable memory the size of `struct statvfs`, which the call only writes.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return (-1, -1);
    }
    // SAFETY: statvfs returned 0, so it filled in the whole struct.
    let st = unsafe { st.assume_init() };
    let bytes = |blocks: u64| {
        i64::try_from(u128::from(blocks) * u128::from(st.f_frsize)).unwrap_or(i64::MAX)
    };
    (bytes(st.f_blocks), bytes(st.f_bavail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_of_a_real_directory_is_known() {
        let dir = std::env::temp_dir();
        let (total, usable) = volume_bytes(&dir);
        assert!(total > 0, "total {total}");
        assert!((0..=total).contains(&usable), "usable {usable} of {total}");
    }

    #[test]
    fn volume_of_a_missing_directory_is_unknown() {
        assert_eq!(volume_bytes(Path::new("/no/such/dir/anywhere")), (-1, -1));
    }
}
