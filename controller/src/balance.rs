//! Plans that move replicas between brokers: draining a broker, evening out replicas and
//! preferred leaders, and spreading topics over a broker list. Pure, so the CLI and the
//! controller's automatic balancing share one tested implementation. Plans place replicas
//! only on the brokers they are given: callers pass the placement candidates (live and
//! not drained, [`crate::placement::candidates`]).
//!
//! A plan is a list of partitions with their target replica lists; executing it is one
//! AlterPartitionReassignments call. Plans move as little data as they can: a partition's
//! replicas keep their positions, and only the replica that has to move is replaced.

use std::collections::{BTreeMap, BTreeSet};

use crate::placement::{assign_replicas, Candidate};

/// One partition's current replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLayout {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
}

/// One planned move: `topic`-`partition` goes from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("cannot keep {rf} replicas of {topic}-{partition} without broker {broker}: no other broker is free to take the replica")]
    NotEnoughBrokers {
        topic: String,
        partition: i32,
        rf: usize,
        broker: i32,
    },
}

/// Replica counts and racks of the brokers a plan may use.
struct Load<'a> {
    racks: BTreeMap<i32, Option<&'a str>>,
    replicas: BTreeMap<i32, usize>,
}

impl<'a> Load<'a> {
    fn new(brokers: &'a [Candidate], partitions: &[Vec<i32>]) -> Self {
        let racks = brokers.iter().map(|b| (b.id, b.rack.as_deref())).collect();
        let mut replicas: BTreeMap<i32, usize> = brokers.iter().map(|b| (b.id, 0)).collect();
        for r in partitions.iter().flatten() {
            if let Some(n) = replicas.get_mut(r) {
                *n += 1;
            }
        }
        Load { racks, replicas }
    }

    /// The least loaded broker outside `replicas` (and not `excluded`), preferring one
    /// whose rack no other replica of the partition uses.
    fn pick(&self, replicas: &[i32], leaving: i32, excluded: &BTreeSet<i32>) -> Option<i32> {
        let used_racks: BTreeSet<&str> = replicas
            .iter()
            .filter(|r| **r != leaving)
            .filter_map(|r| self.racks.get(r).copied().flatten())
            .collect();
        self.replicas
            .iter()
            .filter(|(b, _)| !replicas.contains(b) && !excluded.contains(b))
            .min_by_key(|(b, n)| {
                let rack_clash = self
                    .racks
                    .get(b)
                    .copied()
                    .flatten()
                    .is_some_and(|r| used_racks.contains(r));
                (rack_clash, **n, **b)
            })
            .map(|(b, _)| *b)
    }

    fn shift(&mut self, from: i32, to: i32) {
        if let Some(n) = self.replicas.get_mut(&from) {
            *n = n.saturating_sub(1);
        }
        *self.replicas.entry(to).or_insert(0) += 1;
    }
}

fn moves(before: &[PartitionLayout], after: &[Vec<i32>]) -> Vec<Move> {
    before
        .iter()
        .zip(after)
        .filter(|(p, to)| p.replicas != **to)
        .map(|(p, to)| Move {
            topic: p.topic.clone(),
            partition: p.partition,
            from: p.replicas.clone(),
            to: to.clone(),
        })
        .collect()
}

/// Moves every replica off `node` onto `brokers` (other than `node`; whether the list
/// holds `node` does not matter), least loaded first and rack-aware. Refused if some
/// partition would lose a replica.
pub fn plan_drain(
    brokers: &[Candidate],
    partitions: &[PartitionLayout],
    node: i32,
) -> Result<Vec<Move>, PlanError> {
    let mut after: Vec<Vec<i32>> = partitions.iter().map(|p| p.replicas.clone()).collect();
    let mut load = Load::new(brokers, &after);
    let excluded = BTreeSet::from([node]);
    for (p, replicas) in partitions.iter().zip(after.iter_mut()) {
        let Some(pos) = replicas.iter().position(|r| *r == node) else {
            continue;
        };
        let to =
            load.pick(replicas, node, &excluded)
                .ok_or_else(|| PlanError::NotEnoughBrokers {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    rf: replicas.len(),
                    broker: node,
                })?;
        replicas[pos] = to;
        load.shift(node, to);
    }
    Ok(moves(partitions, &after))
}

/// Evens out each topic's replicas across `brokers` (to within one per topic, extras
/// going to the brokers with the fewest replicas overall), then preferred leaders (first
/// replicas). Replicas on brokers outside the list stay where they are (a drain moves
/// those). Empty when the cluster is balanced.
pub fn plan_balance(brokers: &[Candidate], partitions: &[PartitionLayout]) -> Vec<Move> {
    let mut after: Vec<Vec<i32>> = partitions.iter().map(|p| p.replicas.clone()).collect();
    if brokers.len() < 2 {
        return Vec::new();
    }
    let mut load = Load::new(brokers, &after);
    let topics: BTreeSet<&str> = partitions.iter().map(|p| p.topic.as_str()).collect();
    for topic in topics {
        let members: Vec<usize> = (0..partitions.len())
            .filter(|i| partitions[*i].topic == topic)
            .collect();
        balance_topic(&mut load, &mut after, &members);
    }
    balance_preferred_leaders(brokers, &mut after);
    moves(partitions, &after)
}

/// Moves replicas of one topic (partitions `members` of `after`) from its most to its
/// least loaded brokers until no broker holds two more than another.
fn balance_topic(load: &mut Load<'_>, after: &mut [Vec<i32>], members: &[usize]) {
    let mut here: BTreeMap<i32, usize> = load.replicas.keys().map(|b| (*b, 0)).collect();
    for i in members {
        for r in &after[*i] {
            if let Some(n) = here.get_mut(r) {
                *n += 1;
            }
        }
    }
    // Each step moves one replica to a broker holding at least two fewer, so the spread
    // only narrows and this ends within the number of replicas.
    for _ in 0..members.iter().map(|i| after[*i].len()).sum::<usize>() {
        let global = |b: i32| load.replicas.get(&b).copied().unwrap_or(0);
        let Some((&heavy, &most)) = here.iter().max_by_key(|(b, n)| (**n, global(**b), -**b))
        else {
            break;
        };
        let mut best: Option<(usize, i32)> = None;
        for i in members {
            if !after[*i].contains(&heavy) {
                continue;
            }
            let taken: BTreeSet<i32> = here
                .iter()
                .filter(|(_, n)| **n + 1 >= most)
                .map(|(b, _)| *b)
                .collect();
            if let Some(to) = load.pick(&after[*i], heavy, &taken) {
                let key = |b: i32| (here.get(&b).copied().unwrap_or(0), global(b));
                if best.is_none_or(|(_, t)| key(to) < key(t)) {
                    best = Some((*i, to));
                }
            }
        }
        let Some((i, to)) = best else {
            break;
        };
        if let Some(pos) = after[i].iter().position(|r| *r == heavy) {
            after[i][pos] = to;
            load.shift(heavy, to);
            *here.entry(heavy).or_insert(1) -= 1;
            *here.entry(to).or_insert(0) += 1;
        }
    }
}

/// Reorders replica lists (no data moves) so each broker is the preferred leader of an
/// even share of partitions.
fn balance_preferred_leaders(brokers: &[Candidate], after: &mut [Vec<i32>]) {
    let ids: BTreeSet<i32> = brokers.iter().map(|b| b.id).collect();
    let mut leads: BTreeMap<i32, usize> = ids.iter().map(|b| (*b, 0)).collect();
    for r in after.iter() {
        if let Some(n) = r.first().and_then(|l| leads.get_mut(l)) {
            *n += 1;
        }
    }
    let share = after.len().div_ceil(ids.len().max(1));
    for r in after.iter_mut() {
        let Some(&first) = r.first() else { continue };
        if leads.get(&first).copied().unwrap_or(0) <= share {
            continue;
        }
        let better = (1..r.len())
            .filter(|i| ids.contains(&r[*i]))
            .min_by_key(|i| leads.get(&r[*i]).copied().unwrap_or(usize::MAX));
        if let Some(i) = better {
            let to = r[i];
            if leads.get(&to).copied().unwrap_or(usize::MAX) + 1 < leads[&first] {
                r.swap(0, i);
                *leads.entry(first).or_insert(1) -= 1;
                *leads.entry(to).or_insert(0) += 1;
            }
        }
    }
}

/// Spreads the given partitions over `brokers` from scratch with their current replication
/// factor (kafka-reassign-partitions' `--generate`).
pub fn plan_spread(
    brokers: &[Candidate],
    partitions: &[PartitionLayout],
) -> Result<Vec<Move>, crate::metadata::MetadataError> {
    let mut by_topic: BTreeMap<&str, Vec<&PartitionLayout>> = BTreeMap::new();
    for p in partitions {
        by_topic.entry(p.topic.as_str()).or_default().push(p);
    }
    let mut out = Vec::new();
    for (topic, parts) in by_topic {
        let rf = parts.first().map_or(1, |p| p.replicas.len());
        let seed = topic
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) + u64::from(b));
        let plan = assign_replicas(brokers, parts.len(), rf, 0, seed)?;
        for (p, to) in parts.into_iter().zip(plan) {
            if p.replicas != to {
                out.push(Move {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    from: p.replicas.clone(),
                    to,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> Vec<Candidate> {
        ids.iter()
            .map(|id| Candidate {
                id: *id,
                rack: None,
            })
            .collect()
    }

    fn layout(replicas: &[&[i32]]) -> Vec<PartitionLayout> {
        replicas
            .iter()
            .enumerate()
            .map(|(i, r)| PartitionLayout {
                topic: "t".into(),
                partition: i as i32,
                replicas: r.to_vec(),
            })
            .collect()
    }

    fn apply(parts: &[PartitionLayout], moves: &[Move]) -> Vec<Vec<i32>> {
        parts
            .iter()
            .map(|p| {
                moves
                    .iter()
                    .find(|m| m.partition == p.partition)
                    .map_or(p.replicas.clone(), |m| m.to.clone())
            })
            .collect()
    }

    fn apply_all(parts: &[PartitionLayout], moves: &[Move]) -> Vec<Vec<i32>> {
        parts
            .iter()
            .map(|p| {
                moves
                    .iter()
                    .find(|m| m.topic == p.topic && m.partition == p.partition)
                    .map_or(p.replicas.clone(), |m| m.to.clone())
            })
            .collect()
    }

    fn counts(after: &[Vec<i32>]) -> BTreeMap<i32, usize> {
        let mut c = BTreeMap::new();
        for r in after.iter().flatten() {
            *c.entry(*r).or_insert(0) += 1;
        }
        c
    }

    #[test]
    fn drain_moves_every_replica_off_the_node_and_keeps_rf() {
        let parts = layout(&[&[1, 2], &[2, 3], &[3, 1], &[1, 3]]);
        let moves = plan_drain(&brokers(&[1, 2, 3, 4]), &parts, 1).expect("present");
        let after = apply(&parts, &moves);
        assert!(after.iter().all(|r| !r.contains(&1) && r.len() == 2));
        assert!(after.iter().all(|r| r[0] != r[1]));
        assert_eq!(moves.len(), 3, "only partitions on broker 1 move");
        assert_eq!(after[1], vec![2, 3]);
    }

    #[test]
    fn drain_uses_only_the_brokers_it_is_given() {
        // Broker 4 is drained too, so only 2 and 3 are candidates for 1's replicas.
        let parts = layout(&[&[1, 2], &[1, 3], &[1, 4], &[2, 3]]);
        let moves = plan_drain(&brokers(&[2, 3]), &parts, 1).expect("present");
        let after = apply(&parts, &moves);
        assert_eq!(after[0], vec![3, 2]);
        assert_eq!(after[1], vec![2, 3]);
        assert!([2, 3].contains(&after[2][0]), "{after:?}");
        assert_eq!(after[2][1], 4, "the drained broker's own replica stays put");
        assert_eq!(moves.len(), 3);
        // With 4 left out, nothing can take 1's replica of [1, 2, 3].
        let err = plan_drain(&brokers(&[2, 3]), &layout(&[&[1, 2, 3]]), 1).expect_err("refused");
        assert!(matches!(err, PlanError::NotEnoughBrokers { .. }));
    }

    #[test]
    fn balance_never_fills_a_broker_left_out_of_the_list() {
        // 12 partitions on 1, 2, 3; broker 4 (empty, drained) is not offered.
        let parts: Vec<PartitionLayout> = (0..12)
            .map(|i| PartitionLayout {
                topic: "t".into(),
                partition: i,
                replicas: vec![i % 3 + 1, (i + 1) % 3 + 1],
            })
            .collect();
        assert!(plan_balance(&brokers(&[1, 2, 3]), &parts).is_empty());
        assert!(!plan_balance(&brokers(&[1, 2, 3, 4]), &parts).is_empty());
    }

    #[test]
    fn drain_refuses_when_rf_cannot_be_kept() {
        let parts = layout(&[&[1, 2, 3]]);
        let err = plan_drain(&brokers(&[1, 2, 3]), &parts, 2).expect_err("refused");
        assert!(matches!(err, PlanError::NotEnoughBrokers { rf: 3, .. }));
    }

    #[test]
    fn drain_prefers_a_free_rack() {
        let b = vec![
            Candidate {
                id: 1,
                rack: Some("a".into()),
            },
            Candidate {
                id: 2,
                rack: Some("b".into()),
            },
            Candidate {
                id: 3,
                rack: Some("b".into()),
            },
            Candidate {
                id: 4,
                rack: Some("a".into()),
            },
        ];
        // 4 is more loaded than 3 but is the only broker in a rack the partition lacks.
        let parts = layout(&[&[1, 2], &[4, 2], &[4, 3]]);
        let moves = plan_drain(&b, &parts, 1).expect("present");
        assert_eq!(moves[0].to, vec![4, 2]);
    }

    #[test]
    fn new_brokers_get_an_even_share() {
        // 12 partitions, RF 2, on 3 brokers; brokers 4 and 5 just joined.
        let parts: Vec<PartitionLayout> = (0..12)
            .map(|i| PartitionLayout {
                topic: "t".into(),
                partition: i,
                replicas: vec![i % 3 + 1, (i + 1) % 3 + 1],
            })
            .collect();
        let moves = plan_balance(&brokers(&[1, 2, 3, 4, 5]), &parts);
        let after = apply(&parts, &moves);
        let c = counts(&after);
        assert_eq!(c.len(), 5, "every broker holds replicas: {c:?}");
        let (min, max) = (
            c.values().min().expect("present"),
            c.values().max().expect("present"),
        );
        assert!(max - min <= 1, "{c:?}");
        assert!(after.iter().all(|r| r.len() == 2 && r[0] != r[1]));
        // Leader-order swaps move no data; replicas move only where they must.
        let moved: usize = parts
            .iter()
            .zip(&after)
            .map(|(p, a)| a.iter().filter(|r| !p.replicas.contains(r)).count())
            .sum();
        assert_eq!(moved, c[&4] + c[&5], "data only moves onto the newcomers");
        let mut leaders = BTreeMap::new();
        for r in &after {
            *leaders.entry(r[0]).or_insert(0) += 1;
        }
        assert!(leaders.values().all(|n| *n <= 3), "{leaders:?}");
    }

    #[test]
    fn every_topic_is_spread_not_just_the_total() {
        let mut parts = layout(&[&[1, 2], &[2, 3], &[3, 1]]);
        parts.extend((0..6).map(|i| PartitionLayout {
            topic: "big".into(),
            partition: i,
            replicas: vec![1 + (i % 3), 1 + ((i + 1) % 3), 1 + ((i + 2) % 3)],
        }));
        let moves = plan_balance(&brokers(&[1, 2, 3, 4]), &parts);
        let after = apply_all(&parts, &moves);
        for topic in ["t", "big"] {
            let c = counts(
                &parts
                    .iter()
                    .zip(&after)
                    .filter(|(p, _)| p.topic == topic)
                    .map(|(_, a)| a.clone())
                    .collect::<Vec<_>>(),
            );
            assert!(c.contains_key(&4), "{topic}: {c:?}");
            assert!(
                c.values().max().expect("present") - c.values().min().expect("present") <= 1,
                "{topic}: {c:?}"
            );
        }
    }

    #[test]
    fn a_balanced_cluster_needs_no_moves() {
        let parts = layout(&[&[1, 2], &[2, 3], &[3, 1]]);
        assert!(plan_balance(&brokers(&[1, 2, 3]), &parts).is_empty());
    }

    #[test]
    fn spread_uses_every_listed_broker() {
        let parts = layout(&[&[1, 2], &[1, 2], &[1, 2], &[1, 2]]);
        let moves = plan_spread(&brokers(&[3, 4, 5]), &parts).expect("present");
        let after = apply(&parts, &moves);
        assert!(after.iter().flatten().all(|r| (3..=5).contains(r)));
        assert_eq!(counts(&after).len(), 3);
    }
}
