//! Replica placement for new topics and partitions: spread leaders and followers evenly
//! over brokers and, when brokers carry racks, over racks. Pure and seeded, so it is
//! tested without a cluster.
//!
//! Which brokers may take a new replica at all is decided here too, once: registered,
//! unfenced and not drained ([`candidates`]). The controller's placement of new topics,
//! internal topics and new partitions, and the balance and automatic-balance plans, all
//! start from that list; replica lists that come from outside (explicit assignments,
//! KIP-455 targets) are checked against the same rule by [`check_new_replicas`] when
//! they are applied.

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::{ClusterMetadata, MetadataError};

/// A broker that may host replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

/// The brokers that may take new replicas: registered, not fenced, not drained.
pub fn candidates(md: &ClusterMetadata) -> Vec<Candidate> {
    md.live_brokers()
        .filter(|b| !md.is_drained(b.id))
        .map(|b| Candidate {
            id: b.id,
            rack: b.rack.clone(),
        })
        .collect()
}

/// Refuses a replica list that would put a new replica on a drained broker. `existing`
/// are the replicas the partition already has (none for a new partition); keeping those
/// is allowed, so a drained broker's replicas can stay until they are moved off.
pub fn check_new_replicas(
    md: &ClusterMetadata,
    replicas: &[i32],
    existing: &[i32],
) -> Result<(), MetadataError> {
    match replicas
        .iter()
        .find(|b| md.is_drained(**b) && !existing.contains(b))
    {
        Some(b) => Err(MetadataError::InvalidReplicaAssignment(format!(
            "broker {b} is drained and takes no new replicas (fjord cluster undrain {b} lifts that)"
        ))),
        None => Ok(()),
    }
}

/// How many brokers an internal topic (`__consumer_offsets`, `__transaction_state`) may
/// spread over, which caps its replication factor: the registered brokers, and at least
/// the `voters` (a cluster still starting has not registered them all), less the
/// drained ones.
pub fn internal_topic_hosts(md: &ClusterMetadata, voters: impl IntoIterator<Item = i32>) -> usize {
    let mut hosts: BTreeSet<i32> = md.brokers.keys().copied().collect();
    hosts.extend(voters);
    hosts.retain(|b| !md.is_drained(*b));
    hosts.len()
}

/// Orders brokers so that consecutive entries sit in different racks when racks are known
/// (rack A, rack B, rack C, rack A, ...). Without racks, brokers are ordered by id.
fn rack_alternated(brokers: &[Candidate]) -> Vec<Candidate> {
    let mut sorted = brokers.to_vec();
    sorted.sort_by_key(|b| b.id);
    if sorted.iter().any(|b| b.rack.is_none()) {
        return sorted;
    }
    let mut by_rack: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for b in sorted {
        by_rack
            .entry(b.rack.clone().unwrap_or_default())
            .or_default()
            .push(b);
    }
    let mut out = Vec::new();
    let mut round = 0;
    loop {
        let before = out.len();
        for list in by_rack.values() {
            if let Some(b) = list.get(round) {
                out.push(b.clone());
            }
        }
        if out.len() == before {
            return out;
        }
        round += 1;
    }
}

/// Assigns `count` partitions (numbered from `first_partition`) with `rf` replicas each.
/// Leaders rotate over the broker list from a seeded start; followers follow the leader
/// with a shift that changes every full round, so the load of follower replicas is spread
/// too. With racks, followers avoid racks already holding a replica while any is free.
pub fn assign_replicas(
    brokers: &[Candidate],
    count: usize,
    rf: usize,
    first_partition: usize,
    seed: u64,
) -> Result<Vec<Vec<i32>>, MetadataError> {
    if rf == 0 {
        return Err(MetadataError::InvalidReplicationFactor(
            "replication factor must be at least 1".into(),
        ));
    }
    if brokers.len() < rf {
        return Err(MetadataError::InvalidReplicationFactor(format!(
            "replication factor {rf} is larger than the {} available brokers",
            brokers.len()
        )));
    }
    let list = rack_alternated(brokers);
    let n = list.len();
    let racks_known = list.iter().all(|b| b.rack.is_some());
    let rack_count = list
        .iter()
        .filter_map(|b| b.rack.as_ref())
        .collect::<BTreeSet<_>>()
        .len();
    let start = (seed % n as u64) as usize;
    let mut shift_base = ((seed / n as u64) % n as u64) as usize;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let p = first_partition + i;
        if p > 0 && p.is_multiple_of(n) {
            shift_base += 1;
        }
        let leader_idx = (start + p) % n;
        let mut replicas = vec![list[leader_idx].id];
        let mut used_racks: BTreeSet<Option<String>> = BTreeSet::new();
        used_racks.insert(list[leader_idx].rack.clone());
        let shift = if n > 1 { 1 + shift_base % (n - 1) } else { 0 };
        let mut k = 0;
        while replicas.len() < rf {
            let idx = (leader_idx + shift + k) % n;
            k += 1;
            let cand = &list[idx];
            if replicas.contains(&cand.id) {
                continue;
            }
            let rack_taken =
                racks_known && used_racks.contains(&cand.rack) && used_racks.len() < rack_count;
            if rack_taken && k <= 2 * n {
                continue;
            }
            used_racks.insert(cand.rack.clone());
            replicas.push(cand.id);
        }
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(n: i32, racks: Option<&[&str]>) -> Vec<Candidate> {
        (1..=n)
            .map(|id| Candidate {
                id,
                rack: racks.map(|r| r[(id as usize - 1) % r.len()].to_string()),
            })
            .collect()
    }

    #[test]
    fn leaders_and_replicas_are_spread_evenly() {
        let b = brokers(3, None);
        let a = assign_replicas(&b, 12, 3, 0, 0).expect("assign");
        let mut leaders = BTreeMap::new();
        for r in &a {
            assert_eq!(r.len(), 3);
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3);
            *leaders.entry(r[0]).or_insert(0) += 1;
        }
        assert!(leaders.values().all(|c| *c == 4), "{leaders:?}");
    }

    #[test]
    fn replicas_land_in_distinct_racks() {
        let b = brokers(6, Some(&["a", "b", "c"]));
        for seed in 0..10 {
            for r in assign_replicas(&b, 10, 3, 0, seed).expect("assign") {
                let racks: BTreeSet<_> = r
                    .iter()
                    .map(|id| b[(*id - 1) as usize].rack.clone())
                    .collect();
                assert_eq!(racks.len(), 3, "{r:?}");
            }
        }
    }

    fn image(brokers: &[(i32, bool)], drained: &[i32]) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        for (id, fenced) in brokers {
            md.brokers.insert(
                *id,
                crate::metadata::BrokerState {
                    id: *id,
                    epoch: 1,
                    incarnation_id: uuid::Uuid::nil(),
                    listeners: vec![],
                    rack: Some(format!("r{id}")),
                    rpc_address: String::new(),
                    fenced: *fenced,
                    stopping: false,
                },
            );
        }
        md.drained_brokers = drained.iter().copied().collect();
        md
    }

    #[test]
    fn drained_and_fenced_brokers_are_no_candidates() {
        let md = image(&[(1, false), (2, false), (3, true), (4, false)], &[4]);
        let c = candidates(&md);
        assert_eq!(c.iter().map(|b| b.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(c[0].rack.as_deref(), Some("r1"));
        // Whatever the seed, placement over the candidates never names broker 4.
        for seed in 0..20 {
            let a = assign_replicas(&c, 12, 2, 0, seed).expect("assign");
            assert!(a.iter().flatten().all(|b| *b == 1 || *b == 2), "{a:?}");
        }
        // Three replicas do not fit on the two brokers left.
        assert!(matches!(
            assign_replicas(&c, 1, 3, 0, 0),
            Err(MetadataError::InvalidReplicationFactor(_))
        ));
    }

    #[test]
    fn new_replicas_on_a_drained_broker_are_refused_kept_ones_are_not() {
        let md = image(&[(1, false), (2, false), (3, false)], &[3]);
        assert!(check_new_replicas(&md, &[1, 2], &[]).is_ok());
        let err = check_new_replicas(&md, &[1, 3], &[]).expect_err("refused");
        assert!(
            matches!(&err, MetadataError::InvalidReplicaAssignment(m) if m.contains("broker 3 is drained")),
            "{err:?}"
        );
        // A reassignment that keeps the drained replica where it is adds nothing there.
        assert!(check_new_replicas(&md, &[3, 2], &[3, 1]).is_ok());
        assert!(check_new_replicas(&md, &[2, 3], &[1, 2]).is_err());
    }

    #[test]
    fn internal_topics_spread_over_brokers_that_are_not_drained() {
        // Three voters, one drained: two hosts, so RF 3 is capped at 2.
        let md = image(&[(1, false), (2, false), (3, false)], &[3]);
        assert_eq!(internal_topic_hosts(&md, [1, 2, 3]), 2);
        // Voters that have not registered yet count; a drained learner does not.
        let md = image(&[(1, false), (4, false)], &[4]);
        assert_eq!(internal_topic_hosts(&md, [1, 2, 3]), 3);
    }

    #[test]
    fn replication_factor_larger_than_cluster_is_refused() {
        assert!(assign_replicas(&brokers(1, None), 1, 3, 0, 0).is_err());
        assert!(assign_replicas(&brokers(1, None), 1, 0, 0, 0).is_err());
    }
}
