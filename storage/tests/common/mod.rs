#![allow(dead_code)] // each test binary uses a different subset of these helpers

use fjord_storage::builder::{BatchBuilder, Record};
use fjord_storage::{AppendInfo, LogConfig, PartitionLog, Result};

/// Validates and appends as the leader, the way the broker's produce path does.
pub fn append(log: &mut PartitionLog, bytes: &[u8], epoch: i32, now_ms: i64) -> Result<AppendInfo> {
    let validated = log.validate(bytes)?;
    log.append_as_leader(&validated, epoch, now_ms)
}

/// A batch of `records` records with `value_len`-byte values, keyed by index.
pub fn batch(records: usize, value_len: usize, timestamp: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(0, timestamp);
    for i in 0..records {
        let mut r = Record::new(
            Some(format!("k{i}").into_bytes()),
            Some(vec![b'v'; value_len]),
        );
        r.timestamp_delta = i as i64;
        b.push(r);
    }
    b.build()
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}
