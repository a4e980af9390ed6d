//! Replica placement for new topics and partitions: spread leaders and followers evenly
//! over brokers and, when brokers carry racks, over racks. Pure and seeded, so it is
//! tested without a cluster.

use std::collections::{BTreeMap, BTreeSet};

use crate::metadata::MetadataError;

/// A broker that may host replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
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

    #[test]
    fn replication_factor_larger_than_cluster_is_refused() {
        assert!(assign_replicas(&brokers(1, None), 1, 3, 0, 0).is_err());
        assert!(assign_replicas(&brokers(1, None), 1, 0, 0, 0).is_err());
    }
}
