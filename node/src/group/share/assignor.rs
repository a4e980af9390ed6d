//! The share groups' `simple` assignor (KIP-932). Several members may consume one
//! partition of a share group, so the target is not a partitioning but a spread: every
//! partition of a subscribed topic gets at least one member, and members get about
//! equal numbers of partitions.
//!
//! The rule, per topic with `n` subscribers and `p` partitions: the topic is cut into
//! `max(n, p)` (member, partition) pairs, so each partition gets ⌊n/p⌋ or ⌈n/p⌉
//! members (at least one) and each subscriber ⌊p/n⌋ or ⌈p/n⌉ partitions (at least
//! one). With no more members than partitions that is one member per partition; with
//! more, one partition per member. Pairs of the current target that fit these quotas
//! are kept, in member id order, so a rebalance moves only what balance needs; the
//! rest are filled emptiest first: the partition with fewest members (lowest index on
//! ties) gets the member with fewest partitions of the topic, then fewest overall,
//! then the lowest id. Deterministic: the same inputs give the same target.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::group::consumer::{Assignment, MemberId};

pub const SIMPLE: &str = "simple";

/// What the assignor needs to know about one member.
pub struct ShareMemberSpec<'a> {
    pub member_id: &'a str,
    /// Subscribed topics that exist, by id.
    pub topics: BTreeSet<Uuid>,
    /// The member's current target, for stickiness.
    pub current: &'a Assignment,
}

/// How many of `total` pairs each of `slots` holders may have: `floor` each, one more
/// for at most `extra` of them.
#[derive(Clone, Copy)]
struct Quota {
    floor: usize,
    extra: usize,
}

impl Quota {
    fn new(total: usize, slots: usize) -> Self {
        Quota {
            floor: total / slots,
            extra: total % slots,
        }
    }

    /// Whether a holder with `count` may take one more, given how many are at the
    /// ceiling already.
    fn admits(self, count: usize, at_ceiling: usize) -> bool {
        count < self.floor || (count == self.floor && at_ceiling < self.extra)
    }
}

/// Counts of one side (members or partitions) of a topic's pairs.
struct Side<K: Ord> {
    quota: Quota,
    counts: BTreeMap<K, usize>,
    at_ceiling: usize,
}

impl<K: Ord + Copy> Side<K> {
    fn new(quota: Quota, keys: impl Iterator<Item = K>) -> Self {
        Side {
            quota,
            counts: keys.map(|k| (k, 0)).collect(),
            at_ceiling: 0,
        }
    }

    fn count(&self, k: K) -> usize {
        self.counts.get(&k).copied().unwrap_or(0)
    }

    fn admits(&self, k: K) -> bool {
        self.counts.contains_key(&k) && self.quota.admits(self.count(k), self.at_ceiling)
    }

    fn add(&mut self, k: K) {
        if let Some(c) = self.counts.get_mut(&k) {
            *c += 1;
            if *c == self.quota.floor + 1 {
                self.at_ceiling += 1;
            }
        }
    }
}

/// The pairs chosen for one topic so far.
struct TopicPairs<'a> {
    by_member: Side<&'a str>,
    by_partition: Side<usize>,
    chosen: BTreeSet<(usize, &'a str)>,
}

impl<'a> TopicPairs<'a> {
    fn admits(&self, m: &'a str, p: usize) -> bool {
        self.by_member.admits(m) && self.by_partition.admits(p) && !self.chosen.contains(&(p, m))
    }

    fn take(&mut self, m: &'a str, p: usize, load: &mut BTreeMap<&'a str, usize>) {
        self.by_member.add(m);
        self.by_partition.add(p);
        self.chosen.insert((p, m));
        if let Some(l) = load.get_mut(m) {
            *l += 1;
        }
    }
}

/// The target of every member. `partitions` holds each subscribed topic's partition
/// count.
pub fn assign(
    members: &[ShareMemberSpec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<MemberId, Assignment> {
    let mut out: BTreeMap<&str, Assignment> = members
        .iter()
        .map(|m| (m.member_id, Assignment::new()))
        .collect();
    // Partitions each member holds over all topics so far, to spread ties.
    let mut load: BTreeMap<&str, usize> = members.iter().map(|m| (m.member_id, 0)).collect();
    for (&topic, &count) in partitions {
        let count = usize::try_from(count).unwrap_or(0);
        let mut subscribers: Vec<&ShareMemberSpec<'_>> = members
            .iter()
            .filter(|m| m.topics.contains(&topic))
            .collect();
        subscribers.sort_by_key(|m| m.member_id);
        subscribers.dedup_by_key(|m| m.member_id);
        if count == 0 || subscribers.is_empty() {
            continue;
        }
        let pairs = count.max(subscribers.len());
        let mut t = TopicPairs {
            by_member: Side::new(
                Quota::new(pairs, subscribers.len()),
                subscribers.iter().map(|m| m.member_id),
            ),
            by_partition: Side::new(Quota::new(pairs, count), 0..count),
            chosen: BTreeSet::new(),
        };
        for m in &subscribers {
            let Some(current) = m.current.get(&topic) else {
                continue;
            };
            for &p in current {
                let Ok(p) = usize::try_from(p) else { continue };
                if p < count && t.admits(m.member_id, p) {
                    t.take(m.member_id, p, &mut load);
                }
            }
        }
        while t.chosen.len() < pairs {
            let partition = (0..count)
                .filter(|&p| t.by_partition.admits(p))
                .min_by_key(|&p| (t.by_partition.count(p), p));
            let Some(p) = partition else { break };
            let member = subscribers
                .iter()
                .map(|s| s.member_id)
                .filter(|&m| t.admits(m, p))
                .min_by_key(|&m| (t.by_member.count(m), load.get(m).copied().unwrap_or(0), m));
            let Some(m) = member else { break };
            t.take(m, p, &mut load);
        }
        for (p, m) in t.chosen {
            if let Some(a) = out.get_mut(m) {
                a.entry(topic).or_default().insert(p as i32);
            }
        }
    }
    out.into_iter().map(|(m, a)| (m.to_string(), a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(id: &'a str, topics: &[Uuid], current: &'a Assignment) -> ShareMemberSpec<'a> {
        ShareMemberSpec {
            member_id: id,
            topics: topics.iter().copied().collect(),
            current,
        }
    }

    /// Members per partition of `topic`, and partitions of `topic` per member.
    fn shape(
        out: &BTreeMap<MemberId, Assignment>,
        topic: Uuid,
        count: i32,
    ) -> (Vec<usize>, Vec<usize>) {
        let per_partition = (0..count)
            .map(|p| {
                out.values()
                    .filter(|a| a.get(&topic).is_some_and(|s| s.contains(&p)))
                    .count()
            })
            .collect();
        let per_member = out
            .values()
            .map(|a| a.get(&topic).map_or(0, BTreeSet::len))
            .collect();
        (per_partition, per_member)
    }

    fn spread(v: &[usize]) -> usize {
        v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0)
    }

    #[test]
    fn fewer_members_than_partitions_gives_each_partition_one_member() {
        let t = Uuid::new_v4();
        let empty = Assignment::new();
        let ids = ["a", "b", "c"];
        let members: Vec<_> = ids.iter().map(|id| spec(id, &[t], &empty)).collect();
        let out = assign(&members, &BTreeMap::from([(t, 8)]));
        let (per_partition, per_member) = shape(&out, t, 8);
        assert!(per_partition.iter().all(|&n| n == 1), "{per_partition:?}");
        assert_eq!(per_member, vec![3, 3, 2]);
    }

    #[test]
    fn more_members_than_partitions_share_partitions_evenly() {
        let t = Uuid::new_v4();
        let empty = Assignment::new();
        let ids: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
        let members: Vec<_> = ids.iter().map(|id| spec(id, &[t], &empty)).collect();
        let out = assign(&members, &BTreeMap::from([(t, 3)]));
        let (per_partition, per_member) = shape(&out, t, 3);
        assert_eq!(per_partition, vec![3, 2, 2]);
        assert!(per_member.iter().all(|&n| n == 1), "{per_member:?}");
    }

    #[test]
    fn a_new_member_takes_only_what_balance_needs() {
        let t = Uuid::new_v4();
        let a_now = Assignment::from([(t, BTreeSet::from([0, 1, 2]))]);
        let b_now = Assignment::from([(t, BTreeSet::from([3, 4, 5]))]);
        let empty = Assignment::new();
        let members = vec![
            spec("a", &[t], &a_now),
            spec("b", &[t], &b_now),
            spec("c", &[t], &empty),
        ];
        let out = assign(&members, &BTreeMap::from([(t, 6)]));
        assert!(out["a"][&t].is_subset(&a_now[&t]));
        assert!(out["b"][&t].is_subset(&b_now[&t]));
        assert_eq!(out["c"][&t].len(), 2);
        // And the same inputs keep the same target.
        let members = vec![
            spec("a", &[t], &out["a"]),
            spec("b", &[t], &out["b"]),
            spec("c", &[t], &out["c"]),
        ];
        assert_eq!(assign(&members, &BTreeMap::from([(t, 6)])), out);
    }

    #[test]
    fn members_get_only_topics_they_subscribe_to() {
        let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
        let empty = Assignment::new();
        let members = vec![spec("a", &[x, y], &empty), spec("b", &[y], &empty)];
        let out = assign(&members, &BTreeMap::from([(x, 2), (y, 2)]));
        assert!(!out["b"].contains_key(&x));
        assert_eq!(out["a"][&x], BTreeSet::from([0, 1]));
        assert_eq!(out["a"][&y].len() + out["b"][&y].len(), 2);
        assert_eq!(out["b"][&y].len(), 1);
    }

    /// Random groups: every partition of a subscribed topic has a member, quotas hold
    /// per topic, nobody gets a topic it does not subscribe to, and feeding the target
    /// back in changes nothing.
    #[test]
    fn random_groups_are_covered_balanced_and_stable() {
        let topics: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut below = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n.max(1) as u64) as usize
        };
        for _ in 0..300 {
            let counts: BTreeMap<Uuid, i32> =
                topics.iter().map(|t| (*t, below(9) as i32)).collect();
            let ids: Vec<String> = (0..below(8) + 1).map(|i| format!("m{i}")).collect();
            let subs: Vec<Vec<Uuid>> = ids
                .iter()
                .map(|_| topics.iter().copied().filter(|_| below(3) > 0).collect())
                .collect();
            let currents: Vec<Assignment> = ids
                .iter()
                .map(|_| {
                    topics
                        .iter()
                        .map(|t| (*t, (0..below(4)).map(|_| below(10) as i32).collect()))
                        .collect()
                })
                .collect();
            let members: Vec<_> = ids
                .iter()
                .zip(&subs)
                .zip(&currents)
                .map(|((id, s), c)| spec(id, s, c))
                .collect();
            let out = assign(&members, &counts);
            for (t, &count) in &counts {
                let n = subs.iter().filter(|s| s.contains(t)).count();
                let (per_partition, _) = shape(&out, *t, count);
                if n > 0 {
                    assert!(per_partition.iter().all(|&k| k >= 1), "{per_partition:?}");
                    assert!(spread(&per_partition) <= 1, "{per_partition:?}");
                    let per_member: Vec<usize> = ids
                        .iter()
                        .zip(&subs)
                        .filter(|(_, s)| s.contains(t))
                        .map(|(id, _)| out[id].get(t).map_or(0, BTreeSet::len))
                        .collect();
                    assert!(spread(&per_member) <= 1 || count == 0, "{per_member:?}");
                }
                for (id, s) in ids.iter().zip(&subs) {
                    if !s.contains(t) {
                        assert!(!out[id].contains_key(t));
                    }
                }
            }
            let again: Vec<_> = ids
                .iter()
                .zip(&subs)
                .map(|(id, s)| spec(id, s, &out[id]))
                .collect();
            assert_eq!(assign(&again, &counts), out);
        }
    }
}
