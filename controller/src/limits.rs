//! How many partitions one request may create, and how many replicas one broker may
//! host. Checked by the active controller before it places a single replica, so a
//! request for 2^31-1 partitions costs a comparison, not gigabytes of assignments.
//! Pure, so it is tested without a cluster.

use std::collections::BTreeMap;

use crate::metadata::{ClusterMetadata, MetadataError};

/// Partitions one CreateTopics or CreatePartitions request may add, over all its topics:
/// Kafka's controller refuses more with POLICY_VIOLATION too.
pub const MAX_PARTITIONS_PER_REQUEST: u64 = 10_000;

/// Default of `max.partitions.per.broker`.
pub const DEFAULT_MAX_PARTITIONS_PER_BROKER: u64 = 4_000;

/// The config key of the per-broker limit (a cluster-wide dynamic config, or each node's
/// static one).
pub const MAX_PARTITIONS_PER_BROKER: &str = "max.partitions.per.broker";

/// Refuses a request that would add more than [`MAX_PARTITIONS_PER_REQUEST`].
pub fn check_request(total_partitions: u64) -> Result<(), MetadataError> {
    if total_partitions > MAX_PARTITIONS_PER_REQUEST {
        return Err(MetadataError::PolicyViolation(format!(
            "the request would create {total_partitions} partitions; at most \
             {MAX_PARTITIONS_PER_REQUEST} may be created in one request"
        )));
    }
    Ok(())
}

/// Replicas each broker hosts in `md` (brokers without any are absent).
pub fn replicas_per_broker(md: &ClusterMetadata) -> BTreeMap<i32, u64> {
    let mut out = BTreeMap::new();
    for topic in md.topics.values() {
        for p in &topic.partitions {
            for r in &p.replicas {
                *out.entry(*r).or_insert(0) += 1;
            }
        }
    }
    out
}

/// Adds `assignments` to `hosted` if no broker then hosts more than `max` replicas;
/// otherwise leaves `hosted` alone and says which broker would overflow.
pub fn admit(
    hosted: &mut BTreeMap<i32, u64>,
    assignments: &[Vec<i32>],
    max: u64,
) -> Result<(), MetadataError> {
    let mut added: BTreeMap<i32, u64> = BTreeMap::new();
    for replicas in assignments {
        for r in replicas {
            *added.entry(*r).or_insert(0) += 1;
        }
    }
    for (broker, n) in &added {
        let now = hosted.get(broker).copied().unwrap_or(0);
        if now + n > max {
            return Err(MetadataError::PolicyViolation(format!(
                "broker {broker} hosts {now} partition replicas and would host {}, more than \
                 {MAX_PARTITIONS_PER_BROKER}={max}; add brokers or raise the limit",
                now + n
            )));
        }
    }
    for (broker, n) in added {
        *hosted.entry(broker).or_insert(0) += n;
    }
    Ok(())
}

/// The per-broker limit in force: the cluster-wide dynamic value, else `static_max`.
pub fn max_per_broker(md: &ClusterMetadata, static_max: u64) -> u64 {
    md.cluster_configs
        .get(MAX_PARTITIONS_PER_BROKER)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(static_max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionState, TopicState};

    fn md_with(replicas: &[Vec<i32>]) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        md.topics.insert(
            "t".into(),
            TopicState {
                name: "t".into(),
                id: uuid::Uuid::nil(),
                configs: BTreeMap::new(),
                partitions: replicas
                    .iter()
                    .map(|r| PartitionState::new(r.clone()))
                    .collect(),
                internal: false,
            },
        );
        md
    }

    #[test]
    fn a_request_may_add_ten_thousand_partitions() {
        assert!(check_request(10_000).is_ok());
        assert!(matches!(
            check_request(10_001),
            Err(MetadataError::PolicyViolation(_))
        ));
        assert!(check_request(u64::from(u32::MAX)).is_err());
    }

    #[test]
    fn a_broker_may_not_exceed_its_replica_limit() {
        let md = md_with(&[vec![1, 2], vec![2, 3]]);
        let mut hosted = replicas_per_broker(&md);
        assert_eq!(hosted, BTreeMap::from([(1, 1), (2, 2), (3, 1)]));
        admit(&mut hosted, &[vec![1, 3]], 2).expect("fits");
        let err = admit(&mut hosted, &[vec![1], vec![3]], 2).expect_err("1 and 3 are full");
        assert!(err.to_string().contains("broker 1"), "{err}");
        assert_eq!(hosted[&1], 2, "a refused request adds nothing");
    }

    #[test]
    fn the_dynamic_limit_overrides_the_static_one() {
        let mut md = ClusterMetadata::default();
        assert_eq!(max_per_broker(&md, 7), 7);
        md.cluster_configs
            .insert(MAX_PARTITIONS_PER_BROKER.into(), "3".into());
        assert_eq!(max_per_broker(&md, 7), 3);
    }
}
