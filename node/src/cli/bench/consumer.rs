//! Consumer threads: each a librdkafka consumer reading an assigned set of partitions
//! from given offsets, counting records and, for end-to-end runs, their latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::meter::Meter;
use super::producer::now_micros;
use crate::cli::CliError;

pub struct Assignment {
    pub topic: String,
    pub partitions: Vec<(i32, Offset)>,
    /// Read the send time the producer stamped into each record.
    pub stamped: bool,
}

/// Reads until `stop` is set.
pub fn run(
    config: &ClientConfig,
    assignment: &Assignment,
    meter: Arc<Meter>,
    stop: Arc<AtomicBool>,
) -> Result<(), CliError> {
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, offset) in &assignment.partitions {
        tpl.add_partition_offset(&assignment.topic, *p, *offset)?;
    }
    consumer.assign(&tpl)?;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let payload = m.payload().unwrap_or_default();
                meter.count(payload.len());
                if assignment.stamped {
                    if let Some(sent) = payload.get(..8).and_then(|b| b.try_into().ok()) {
                        meter.e2e_latency(now_micros().saturating_sub(u64::from_be_bytes(sent)));
                    }
                }
            }
            Some(Err(_)) => meter.error(),
            None => {}
        }
    }
    Ok(())
}
