//! Controller decisions that depend on time or liveness, kept pure so they are tested
//! deterministically: which brokers to fence, and who leads a partition (drained brokers
//! only when no other in-sync replica can).

use std::collections::HashMap;

use std::collections::BTreeSet;

use crate::attachments::Attachments;
use crate::metadata::{ClusterMetadata, Election, MetadataError, PartitionState};

/// Brokers that are registered and listed (unfenced, or stopping after a controlled
/// shutdown, which this unlists) but have not heartbeated within
/// `session_timeout_ms` of `now_ms`. `last_heartbeat_ms` holds the latest heartbeat
/// time of each broker as seen by this controller; a broker missing from it counts as
/// heard at `grace_start_ms` (when this controller took office), so a new controller
/// gives everyone a full session before fencing anyone it knows nothing more about. An
/// entry from before `grace_start_ms` is a bound the controller derived itself (the
/// previous controller's own broker, see `Controller::previous_controller_head_start`).
pub fn brokers_to_fence(
    md: &ClusterMetadata,
    last_heartbeat_ms: &HashMap<i32, u64>,
    grace_start_ms: u64,
    now_ms: u64,
    session_timeout_ms: u64,
) -> Vec<(i32, i64)> {
    md.brokers
        .values()
        .filter(|b| b.is_listed())
        .filter(|b| {
            let last = last_heartbeat_ms
                .get(&b.id)
                .copied()
                .unwrap_or(grace_start_ms);
            now_ms.saturating_sub(last) > session_timeout_ms
        })
        .map(|b| (b.id, b.epoch))
        .collect()
}

/// Brokers that are registered and listed (as in [`brokers_to_fence`]), lost every `Attach` stream to this
/// controller at least `grace_ms` ago, and have not heartbeated since: their process is
/// gone (a live broker reattaches, or at least heartbeats, within the grace). Frozen or
/// cut-off brokers close no stream and are left to [`brokers_to_fence`].
pub fn brokers_disconnected(
    md: &ClusterMetadata,
    attachments: &Attachments,
    last_heartbeat_ms: &HashMap<i32, u64>,
    now_ms: u64,
    grace_ms: u64,
) -> Vec<(i32, i64)> {
    md.brokers
        .values()
        .filter(|b| b.is_listed())
        .filter(|b| {
            disconnected(
                attachments,
                last_heartbeat_ms,
                (b.id, b.epoch),
                now_ms,
                grace_ms,
            )
        })
        .map(|b| (b.id, b.epoch))
        .collect()
}

/// Whether registration `epoch` of `broker` lost every stream to this controller at
/// least `grace_ms` ago with no heartbeat since (see [`brokers_disconnected`]).
pub fn disconnected(
    attachments: &Attachments,
    last_heartbeat_ms: &HashMap<i32, u64>,
    (broker, epoch): (i32, i64),
    now_ms: u64,
    grace_ms: u64,
) -> bool {
    attachments.broken_since(broker, epoch).is_some_and(|at| {
        now_ms.saturating_sub(at) >= grace_ms
            && last_heartbeat_ms.get(&broker).is_none_or(|h| *h < at)
    })
}

/// The replica that should lead `p`: the current leader if it is still live, else the
/// first live ISR member in replica order. With `unclean` (unclean.leader.election.enable)
/// a live replica outside the ISR may lead when no ISR member is live.
pub fn elect_leader(
    p: &PartitionState,
    is_live: impl Fn(i32) -> bool,
    unclean: bool,
) -> Option<i32> {
    if p.leader >= 0 && is_live(p.leader) && p.isr.contains(&p.leader) {
        return Some(p.leader);
    }
    let in_isr = p
        .replicas
        .iter()
        .copied()
        .find(|r| p.isr.contains(r) && is_live(*r));
    if in_isr.is_some() || !unclean {
        return in_isr;
    }
    p.replicas.iter().copied().find(|r| is_live(*r))
}

/// [`elect_leader`], keeping leadership off drained brokers: a live in-sync replica that
/// is not drained leads if there is one, else a drained in-sync one (so a partition
/// whose only in-sync replicas are drained keeps a leader and its data). An unclean
/// election, too, picks a replica that is not drained first.
pub fn elect_leader_undrained(
    p: &PartitionState,
    is_live: impl Fn(i32) -> bool,
    is_drained: impl Fn(i32) -> bool,
    unclean: bool,
) -> Option<i32> {
    let undrained = |b| is_live(b) && !is_drained(b);
    elect_leader(p, undrained, false)
        .or_else(|| elect_leader(p, &is_live, false))
        .or_else(|| {
            unclean
                .then(|| {
                    elect_leader(p, undrained, true).or_else(|| elect_leader(p, &is_live, true))
                })
                .flatten()
        })
}

/// Moves partition `p` to `leader` (or to no leader), bumping the leader and partition
/// epochs when anything changes. Returns true on change.
pub fn set_leader(p: &mut PartitionState, leader: Option<i32>) -> bool {
    let new = leader.unwrap_or(-1);
    if new == p.leader {
        return false;
    }
    p.leader = new;
    p.leader_epoch += 1;
    p.partition_epoch += 1;
    true
}

pub(crate) fn live_brokers(md: &ClusterMetadata) -> BTreeSet<i32> {
    md.brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.id)
        .collect()
}

/// Preferred-leader elections (ElectLeaders type 0) for `wanted` partitions, or all of
/// them: the first replica leads again if it is live, in the ISR and not drained.
pub fn preferred_elections(
    md: &ClusterMetadata,
    wanted: Option<&[(String, i32)]>,
) -> (Vec<Election>, Vec<(String, i32, MetadataError)>) {
    let live = live_brokers(md);
    let mut elections = Vec::new();
    let mut refused = Vec::new();
    let all: Vec<(String, i32)> = match wanted {
        Some(w) => w.to_vec(),
        None => md
            .topics
            .values()
            .flat_map(|t| (0..t.partitions.len() as i32).map(move |i| (t.name.clone(), i)))
            .collect(),
    };
    for (topic, partition) in all {
        let Some(p) = md.partition(&topic, partition) else {
            refused.push((topic, partition, MetadataError::UnknownTopic(String::new())));
            continue;
        };
        let Some(&preferred) = p.replicas.first() else {
            continue;
        };
        if p.leader == preferred {
            refused.push((topic, partition, MetadataError::ElectionNotNeeded));
        } else if md.is_drained(preferred) {
            refused.push((
                topic,
                partition,
                MetadataError::PreferredLeaderNotAvailable(format!(
                    "preferred replica {preferred} is drained"
                )),
            ));
        } else if live.contains(&preferred) && p.isr.contains(&preferred) {
            elections.push(Election {
                topic,
                partition,
                leader_epoch: p.leader_epoch,
                new_leader: preferred,
            });
        } else {
            refused.push((
                topic,
                partition,
                MetadataError::PreferredLeaderNotAvailable(format!(
                    "preferred replica {preferred} is not live and in sync"
                )),
            ));
        }
    }
    (elections, refused)
}

/// Automatic leader rebalancing (`auto.leader.rebalance.enable`): for every broker whose
/// share of partitions it prefers but does not lead exceeds
/// `leader.imbalance.per.broker.percentage`, elect it where it is live and in the ISR.
/// Drained brokers are left out: their leaderships stay moved off.
pub fn rebalance_elections(md: &ClusterMetadata, imbalance_percentage: u32) -> Vec<Election> {
    let live = live_brokers(md);
    let mut out = Vec::new();
    for broker in live.iter().filter(|b| !md.is_drained(**b)) {
        let preferred: Vec<(String, i32, &PartitionState)> = md
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .map(move |(i, p)| (t.name.clone(), i as i32, p))
            })
            .filter(|(_, _, p)| p.replicas.first() == Some(broker))
            .collect();
        if preferred.is_empty() {
            continue;
        }
        let not_leading: Vec<&(String, i32, &PartitionState)> = preferred
            .iter()
            .filter(|(_, _, p)| p.leader != *broker)
            .collect();
        if not_leading.len() * 100 <= preferred.len() * imbalance_percentage as usize {
            continue;
        }
        for (topic, partition, p) in not_leading {
            if p.isr.contains(broker) {
                out.push(Election {
                    topic: topic.clone(),
                    partition: *partition,
                    leader_epoch: p.leader_epoch,
                    new_leader: *broker,
                });
            }
        }
    }
    out
}

/// Unclean elections (ElectLeaders type 1): a leaderless partition takes any live replica.
pub fn unclean_elections(md: &ClusterMetadata, wanted: Option<&[(String, i32)]>) -> Vec<Election> {
    let live = live_brokers(md);
    md.topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .map(move |(i, p)| (t.name.clone(), i as i32, p))
        })
        .filter(|(t, i, _)| wanted.is_none_or(|w| w.iter().any(|(wt, wi)| wt == t && wi == i)))
        .filter(|(_, _, p)| p.leader < 0)
        .filter_map(|(topic, partition, p)| {
            let leader = elect_leader(p, |b| live.contains(&b), true)?;
            Some(Election {
                topic,
                partition,
                leader_epoch: p.leader_epoch,
                new_leader: leader,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::metadata::BrokerState;

    fn md(brokers: &[(i32, bool)]) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        for (id, fenced) in brokers {
            md.brokers.insert(
                *id,
                BrokerState {
                    id: *id,
                    epoch: i64::from(*id) * 10,
                    incarnation_id: Uuid::nil(),
                    listeners: vec![],
                    rack: None,
                    rpc_address: String::new(),
                    fenced: *fenced,
                    stopping: false,
                },
            );
        }
        md
    }

    #[test]
    fn a_stopping_broker_is_unlisted_once_its_process_is_gone_or_silent() {
        let mut md = md(&[(1, true), (2, true)]);
        if let Some(b) = md.brokers.get_mut(&1) {
            b.stopping = true;
        }
        let mut att = Attachments::default();
        for (id, epoch) in [(1, 10), (2, 20)] {
            att.opened(id, epoch);
            att.closed(id, epoch, 1_000);
        }
        let none = HashMap::new();
        // Only the stopping one: 2 is fenced for good and left alone.
        assert_eq!(
            brokers_disconnected(&md, &att, &none, 1_500, 500),
            vec![(1, 10)]
        );
        assert_eq!(brokers_to_fence(&md, &none, 0, 9_001, 9_000), vec![(1, 10)]);
    }

    #[test]
    fn brokers_whose_streams_closed_are_fenced_after_the_grace_unless_they_heartbeat() {
        let md = md(&[(1, false), (2, false), (3, true), (4, false)]);
        let mut att = Attachments::default();
        for (id, epoch) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
            att.opened(id, epoch);
            att.closed(id, epoch, 1_000);
        }
        att.opened(4, 40); // reattached
        let beats = HashMap::from([(2, 1_200)]); // heartbeated after its stream closed
        assert!(brokers_disconnected(&md, &att, &beats, 1_499, 500).is_empty());
        // 3 is already fenced, 4 reattached, 2 is alive: only 1 goes.
        assert_eq!(
            brokers_disconnected(&md, &att, &beats, 1_500, 500),
            vec![(1, 10)]
        );
        let stale = HashMap::from([(1, 900)]); // a heartbeat before the break proves nothing
        assert_eq!(brokers_disconnected(&md, &att, &stale, 1_500, 500).len(), 2);
    }

    #[test]
    fn silent_brokers_are_fenced_after_a_full_session() {
        let md = md(&[(1, false), (2, false), (3, true)]);
        let beats = HashMap::from([(1, 10_000), (2, 5_000)]);
        assert!(brokers_to_fence(&md, &beats, 0, 12_000, 9_000).is_empty());
        assert_eq!(
            brokers_to_fence(&md, &beats, 0, 14_001, 9_000),
            vec![(2, 20)]
        );
        // Already fenced brokers are left alone; a new controller grants grace.
        assert!(brokers_to_fence(&md, &HashMap::new(), 14_000, 20_000, 9_000).is_empty());
        assert_eq!(
            brokers_to_fence(&md, &HashMap::new(), 14_000, 23_001, 9_000).len(),
            2
        );
        // A bound from before taking office (the previous controller's own broker)
        // counts as is: that broker goes 1.5 s before the others.
        let seeded = HashMap::from([(1, 12_500)]);
        assert_eq!(
            brokers_to_fence(&md, &seeded, 14_000, 21_501, 9_000),
            vec![(1, 10)]
        );
    }

    fn with_topic(mut md: ClusterMetadata, parts: Vec<PartitionState>) -> ClusterMetadata {
        md.topics.insert(
            "t".into(),
            crate::metadata::TopicState {
                name: "t".into(),
                id: Uuid::nil(),
                configs: Default::default(),
                partitions: parts,
                internal: false,
            },
        );
        md
    }

    fn part(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 3,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    #[test]
    fn preferred_leaders_return_when_in_sync() {
        let m = with_topic(
            md(&[(1, false), (2, false), (3, false)]),
            vec![
                part(&[1, 2, 3], &[1, 2, 3], 2),
                part(&[1, 2, 3], &[2, 3], 2),
                part(&[2, 1, 3], &[1, 2, 3], 2),
            ],
        );
        let (e, refused) = preferred_elections(&m, None);
        assert_eq!(
            e,
            vec![Election {
                topic: "t".into(),
                partition: 0,
                leader_epoch: 3,
                new_leader: 1
            }]
        );
        assert_eq!(refused.len(), 2);
        // Broker 1 prefers two partitions and leads neither: 100% > 10%.
        assert_eq!(
            rebalance_elections(&m, 10).len(),
            1,
            "only where it is in the ISR"
        );
        assert!(rebalance_elections(&m, 100).is_empty());
    }

    #[test]
    fn drained_brokers_are_not_made_preferred_leaders_again() {
        let mut m = with_topic(
            md(&[(1, false), (2, false), (3, false)]),
            vec![
                part(&[1, 2, 3], &[1, 2, 3], 2),
                part(&[1, 2, 3], &[1, 2, 3], 3),
            ],
        );
        assert_eq!(rebalance_elections(&m, 10).len(), 2);
        m.drained_brokers.insert(1);
        assert!(rebalance_elections(&m, 10).is_empty());
        let (e, refused) = preferred_elections(&m, None);
        assert!(e.is_empty());
        assert!(refused.iter().all(|(_, _, why)| matches!(
            why,
            MetadataError::PreferredLeaderNotAvailable(m) if m.contains("drained")
        )));
    }

    #[test]
    fn leadership_moves_off_drained_brokers_only_to_in_sync_replicas() {
        let live = |_| true;
        let drained = |b| b == 1;
        // Another in-sync replica takes over from a drained leader.
        let p = part(&[1, 2, 3], &[1, 2, 3], 1);
        assert_eq!(elect_leader_undrained(&p, live, drained, false), Some(2));
        // A drained leader that is the only in-sync replica keeps leading: moving would
        // lose data.
        let p = part(&[1, 2, 3], &[1], 1);
        assert_eq!(elect_leader_undrained(&p, live, drained, false), Some(1));
        // Without a drained broker the usual choice stands.
        let p = part(&[1, 2, 3], &[1, 2, 3], 1);
        assert_eq!(elect_leader_undrained(&p, live, |_| false, false), Some(1));
        // An unclean election, too, prefers a replica that is not drained.
        let p = part(&[1, 2, 3], &[3], -1);
        assert_eq!(
            elect_leader_undrained(&p, |b| b != 3, drained, true),
            Some(2)
        );
        assert_eq!(
            elect_leader_undrained(&p, |b| b == 1, drained, true),
            Some(1)
        );
        assert_eq!(elect_leader_undrained(&p, |b| b != 3, drained, false), None);
    }

    #[test]
    fn unclean_elections_pick_any_live_replica() {
        let m = with_topic(
            md(&[(1, true), (2, false)]),
            vec![part(&[1, 2], &[1], -1), part(&[1, 2], &[1, 2], 2)],
        );
        assert_eq!(
            unclean_elections(&m, None),
            vec![Election {
                topic: "t".into(),
                partition: 0,
                leader_epoch: 3,
                new_leader: 2
            }]
        );
    }

    #[test]
    fn leaders_come_from_the_live_isr() {
        let p = PartitionState {
            replicas: vec![1, 2, 3],
            isr: vec![1, 3],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 7,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        assert_eq!(elect_leader(&p, |_| true, false), Some(1));
        assert_eq!(elect_leader(&p, |b| b != 1, false), Some(3));
        assert_eq!(
            elect_leader(&p, |b| b == 2, false),
            None,
            "2 is not in the ISR"
        );
        assert_eq!(
            elect_leader(&p, |b| b == 2, true),
            Some(2),
            "unclean election"
        );
        let mut q = p.clone();
        assert!(set_leader(&mut q, Some(3)));
        assert_eq!((q.leader, q.leader_epoch, q.partition_epoch), (3, 5, 8));
        assert!(!set_leader(&mut q, Some(3)));
    }
}
