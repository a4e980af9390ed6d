//! `fjord topic offsets`: partition offsets by time, as kafka-get-offsets.sh prints them
//! (`topic:partition:offset`), asked of each partition's leader with ListOffsets.

use super::client::ConnectArgs;
use super::group::{log_offsets, metadata};
use super::CliError;

/// Kafka's special ListOffsets timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// `--time`: `latest` (-1), `earliest` (-2), `max-timestamp` (-3, the record with the
/// largest timestamp) or epoch milliseconds (the first offset at or after that time).
pub fn parse_time(s: &str) -> Result<i64, CliError> {
    match s {
        "latest" => Ok(LATEST),
        "earliest" => Ok(EARLIEST),
        "max-timestamp" => Ok(MAX_TIMESTAMP),
        n => match n.parse::<i64>() {
            Ok(t) if t >= MAX_TIMESTAMP => Ok(t),
            _ => Err(CliError::Usage(format!(
                "--time '{n}': give latest (-1), earliest (-2), max-timestamp (-3) or epoch milliseconds"
            ))),
        },
    }
}

/// `--partitions 0,2`: the partition numbers.
fn parse_partitions(s: &str) -> Result<Vec<i32>, CliError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|_| CliError::Usage(format!("--partitions: '{p}' is not a number")))
        })
        .collect()
}

pub fn run(
    connect: &ConnectArgs,
    topic: &str,
    partitions: Option<&str>,
    time: &str,
) -> Result<(), CliError> {
    let timestamp = parse_time(time)?;
    let wanted = partitions.map(parse_partitions).transpose()?;
    let md = metadata(connect, Some(&[topic.to_string()]))?;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .filter(|t| t.error_code == 0)
        .ok_or_else(|| CliError::Kafka(format!("topic '{topic}' does not exist")))?;
    let mut parts: Vec<(String, i32)> = t
        .partitions
        .iter()
        .map(|p| p.partition_index)
        .filter(|p| wanted.as_ref().is_none_or(|w| w.contains(p)))
        .map(|p| (topic.to_string(), p))
        .collect();
    if let Some(w) = &wanted {
        if let Some(missing) = w.iter().find(|p| !parts.iter().any(|(_, q)| q == *p)) {
            return Err(CliError::Kafka(format!(
                "topic '{topic}' has no partition {missing}"
            )));
        }
    }
    parts.sort();
    let offsets = log_offsets(connect, &parts, timestamp)?;
    for ((t, p), offset) in offsets {
        outln!("{t}:{p}:{offset}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_partitions_parse_as_kafka_get_offsets_takes_them() {
        assert_eq!(parse_time("latest").ok(), Some(-1));
        assert_eq!(parse_time("-2").ok(), Some(-2));
        assert_eq!(parse_time("max-timestamp").ok(), Some(-3));
        assert_eq!(parse_time("1700000000000").ok(), Some(1_700_000_000_000));
        assert!(parse_time("-4").is_err() && parse_time("yesterday").is_err());
        assert_eq!(parse_partitions("0, 2,").ok(), Some(vec![0, 2]));
        assert!(parse_partitions("x").is_err());
    }
}
