//! Server-side assignors of the consumer group protocol (KIP-848): given each member's
//! subscribed topics and the partition counts of those topics, a target assignment.
//! `uniform` (the default) balances partition counts and keeps partitions where they
//! are when it can; `range` gives each member contiguous ranges of every topic, so
//! members subscribed to co-partitioned topics get matching partitions.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{Assignment, MemberId};

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";

/// The assignors this broker runs, the default first (Kafka's `group.consumer.assignors`).
pub const ASSIGNORS: &[&str] = &[UNIFORM, RANGE];

/// What an assignor needs to know about one member.
pub struct MemberSpec<'a> {
    pub member_id: &'a str,
    /// Subscribed topics that exist, by id.
    pub topics: BTreeSet<Uuid>,
    /// What the member holds now, for stickiness.
    pub current: &'a Assignment,
}

/// The target assignment of every member. `partitions` holds each subscribed topic's
/// partition count.
pub fn assign(
    assignor: &str,
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<MemberId, Assignment> {
    match assignor {
        RANGE => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

fn range(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<MemberId, Assignment> {
    let mut out: BTreeMap<MemberId, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for (topic, count) in partitions {
        let mut subscribers: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.member_id)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        subscribers.sort_unstable();
        let n = subscribers.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in subscribers.into_iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            if take == 0 {
                continue;
            }
            if let Some(a) = out.get_mut(member) {
                a.entry(*topic).or_default().extend(next..next + take);
            }
            next += take;
        }
    }
    out
}

/// Balanced and sticky: partitions stay with a current owner that still subscribes, new
/// ones go to the least loaded subscriber, then partitions move from the most to the
/// least loaded subscriber until no eligible move narrows the gap.
fn uniform(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<MemberId, Assignment> {
    let mut load: BTreeMap<&str, Vec<(Uuid, i32)>> =
        members.iter().map(|m| (m.member_id, Vec::new())).collect();
    let subscribers = |topic: &Uuid| -> Vec<&str> {
        members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .map(|m| m.member_id)
            .collect()
    };
    // Only members subscribed to a topic may keep its partitions; each keeps at most its
    // fair share, so a newcomer is not left waiting for a long chain of moves.
    let total: i64 = partitions.values().map(|&c| i64::from(c.max(0))).sum();
    let fair = if members.is_empty() {
        0
    } else {
        ((total + members.len() as i64 - 1) / members.len() as i64) as usize
    };
    let mut owner: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
    for m in members {
        for (topic, ps) in m.current {
            if !m.topics.contains(topic) {
                continue;
            }
            let count = partitions.get(topic).copied().unwrap_or(0);
            for &p in ps {
                let held = load.get(m.member_id).map_or(0, Vec::len);
                if p < count && !owner.contains_key(&(*topic, p)) && held < fair {
                    owner.insert((*topic, p), m.member_id);
                    if let Some(l) = load.get_mut(m.member_id) {
                        l.push((*topic, p));
                    }
                }
            }
        }
    }
    for (topic, &count) in partitions {
        let subs = subscribers(topic);
        for p in 0..count.max(0) {
            if owner.contains_key(&(*topic, p)) {
                continue;
            }
            let least = subs
                .iter()
                .min_by_key(|m| (load.get(*m).map_or(0, Vec::len), **m));
            if let Some(&m) = least {
                owner.insert((*topic, p), m);
                if let Some(l) = load.get_mut(m) {
                    l.push((*topic, p));
                }
            }
        }
    }
    // With mixed subscriptions the greedy pass can leave a member two or more ahead of
    // another that could take one of its partitions.
    loop {
        let mut moved = false;
        let mut by_load: Vec<&str> = load.keys().copied().collect();
        by_load.sort_by_key(|m| std::cmp::Reverse(load.get(m).map_or(0, Vec::len)));
        'search: for heavy in &by_load {
            let heavy_len = load.get(heavy).map_or(0, Vec::len);
            for light in by_load.iter().rev() {
                let light_len = load.get(light).map_or(0, Vec::len);
                if light_len + 1 >= heavy_len {
                    break;
                }
                let Some(light_spec) = members.iter().find(|m| m.member_id == *light) else {
                    continue;
                };
                let candidate = load.get(heavy).and_then(|l| {
                    l.iter()
                        .rposition(|(t, _)| light_spec.topics.contains(t))
                        .map(|i| (i, l[i]))
                });
                if let Some((i, tp)) = candidate {
                    if let Some(l) = load.get_mut(heavy) {
                        l.remove(i);
                    }
                    if let Some(l) = load.get_mut(light) {
                        l.push(tp);
                    }
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            break;
        }
    }
    load.into_iter()
        .map(|(m, tps)| {
            let mut a = Assignment::new();
            for (t, p) in tps {
                a.entry(t).or_default().insert(p);
            }
            (m.to_string(), a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(id: &'a str, topics: &[Uuid], current: &'a Assignment) -> MemberSpec<'a> {
        MemberSpec {
            member_id: id,
            topics: topics.iter().copied().collect(),
            current,
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn uniform_balances_and_covers_every_partition_once() {
        let t = Uuid::new_v4();
        let empty = Assignment::new();
        let members = vec![
            spec("a", &[t], &empty),
            spec("b", &[t], &empty),
            spec("c", &[t], &empty),
        ];
        let out = uniform(&members, &BTreeMap::from([(t, 10)]));
        let counts: Vec<usize> = out.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 10);
        assert!(counts.iter().all(|&c| c == 3 || c == 4), "{counts:?}");
        let mut all: Vec<i32> = out
            .values()
            .flat_map(|a| a[&t].iter().copied())
            .collect::<Vec<_>>();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn uniform_keeps_partitions_where_they_are() {
        let t = Uuid::new_v4();
        let a_now = Assignment::from([(t, BTreeSet::from([0, 1, 2, 3]))]);
        let b_now = Assignment::from([(t, BTreeSet::from([4, 5, 6, 7]))]);
        let empty = Assignment::new();
        let members = vec![
            spec("a", &[t], &a_now),
            spec("b", &[t], &b_now),
            spec("c", &[t], &empty),
        ];
        let out = uniform(&members, &BTreeMap::from([(t, 8)]));
        // Each old owner gives up at most what the newcomer needs.
        assert!(out["a"][&t].is_subset(&a_now[&t]));
        assert!(out["b"][&t].is_subset(&b_now[&t]));
        assert_eq!(count(&out["c"]), 2);
        assert_eq!(count(&out["a"]) + count(&out["b"]), 6);
    }

    #[test]
    fn uniform_only_gives_subscribed_topics() {
        let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
        let empty = Assignment::new();
        let members = vec![spec("a", &[x, y], &empty), spec("b", &[y], &empty)];
        let out = uniform(&members, &BTreeMap::from([(x, 4), (y, 4)]));
        assert!(!out["b"].contains_key(&x));
        assert_eq!(count(&out["a"]), 4);
        assert_eq!(count(&out["b"]), 4);
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let t = Uuid::new_v4();
        let empty = Assignment::new();
        let members = vec![spec("b", &[t], &empty), spec("a", &[t], &empty)];
        let out = range(&members, &BTreeMap::from([(t, 5)]));
        assert_eq!(out["a"][&t], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&t], BTreeSet::from([3, 4]));
    }
}
