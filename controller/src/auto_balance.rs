//! Automatic balancing (`auto.balance.enable`, off by default): the active controller
//! moves replicas off drained brokers and brokers fenced for longer than
//! `auto.balance.grace.ms`, and onto brokers that hold fewer than their share (a broker
//! that just joined), a few partitions at a time, using the same plans as `fjord cluster
//! drain` and `balance`. Drained brokers never receive replicas: the plans only place on
//! [`candidates`]. Pure: it sees the image and when each broker was first seen fenced.

use std::collections::HashMap;

use crate::balance::{plan_balance, plan_drain, Move, PartitionLayout};
use crate::metadata::{ClusterMetadata, Reassignment};
use crate::placement::{candidates, Candidate};

/// Partitions moved per step; the next step waits until they are done.
pub const STEP: usize = 4;

/// The next step of moves, or nothing while a reassignment runs or all is balanced.
/// `fenced_since_ms` holds when each fenced broker was first seen fenced.
pub fn next_step(
    md: &ClusterMetadata,
    fenced_since_ms: &HashMap<i32, u64>,
    now_ms: u64,
    grace_ms: u64,
) -> Vec<Reassignment> {
    let partitions: Vec<PartitionLayout> = md
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .map(|(i, p)| PartitionLayout {
                    topic: t.name.clone(),
                    partition: i as i32,
                    replicas: p.replicas.clone(),
                })
        })
        .collect();
    let running = md
        .topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .any(|p| p.is_reassigning());
    if running || partitions.is_empty() {
        return Vec::new();
    }
    let live: Vec<Candidate> = candidates(md);
    let fenced_too_long = fenced_since_ms.iter().filter(|(b, since)| {
        md.brokers.get(b).is_some_and(|s| s.fenced) && now_ms.saturating_sub(**since) >= grace_ms
    });
    let gone = md
        .drained_brokers
        .iter()
        .chain(fenced_too_long.map(|(b, _)| b))
        .copied()
        .filter(|b| partitions.iter().any(|p| p.replicas.contains(b)))
        .min();
    let moves: Vec<Move> = match gone {
        // A drain that cannot keep every replica (too few brokers left) waits.
        Some(b) => plan_drain(&live, &partitions, b).unwrap_or_default(),
        None => plan_balance(&live, &partitions),
    };
    // Data moves first, then leader-order changes (which move no data).
    let (mut data, order): (Vec<Move>, Vec<Move>) = moves.into_iter().partition(|m| {
        let mut a = m.from.clone();
        let mut b = m.to.clone();
        a.sort_unstable();
        b.sort_unstable();
        a != b
    });
    data.extend(order);
    data.into_iter()
        .take(STEP)
        .map(|m| Reassignment {
            topic: m.topic,
            partition: m.partition,
            target: Some(m.to),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{apply_command, BrokerRegistration, Listener, MetadataCommand};
    use uuid::Uuid;

    fn cluster(brokers: &[i32], topic_replicas: &[&[i32]]) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        let mut index = 1;
        for b in brokers {
            apply_command(
                &mut md,
                &MetadataCommand::RegisterBroker(BrokerRegistration {
                    broker_id: *b,
                    incarnation_id: Uuid::new_v4(),
                    listeners: vec![Listener {
                        name: "PLAINTEXT".into(),
                        host: "h".into(),
                        port: 1,
                        security_protocol: "PLAINTEXT".into(),
                    }],
                    rack: None,
                    rpc_address: "h:2".into(),
                }),
                index,
            );
            index += 1;
        }
        apply_command(
            &mut md,
            &MetadataCommand::CreateTopics {
                topics: vec![crate::metadata::NewTopicSpec {
                    name: "t".into(),
                    id: Uuid::new_v4(),
                    configs: Default::default(),
                    assignments: topic_replicas.iter().map(|r| r.to_vec()).collect(),
                    internal: false,
                }],
            },
            index,
        );
        md
    }

    #[test]
    fn a_joining_broker_gets_replicas_a_few_at_a_time() {
        let md = cluster(
            &[1, 2, 3],
            &[&[1, 2], &[2, 1], &[1, 2], &[2, 1], &[1, 2], &[2, 1]],
        );
        let step = next_step(&md, &HashMap::new(), 0, 1000);
        assert!(!step.is_empty() && step.len() <= STEP);
        assert!(step
            .iter()
            .all(|r| r.target.as_ref().is_some_and(|t| t.contains(&3))));
    }

    #[test]
    fn a_drained_broker_gets_nothing_and_is_emptied() {
        // Broker 3 just joined and holds nothing: balancing would fill it, unless drained.
        let mut md = cluster(
            &[1, 2, 3],
            &[&[1, 2], &[2, 1], &[1, 2], &[2, 1], &[1, 2], &[2, 1]],
        );
        apply_command(&mut md, &MetadataCommand::DrainBroker { broker_id: 3 }, 10);
        assert!(next_step(&md, &HashMap::new(), 0, 1000).is_empty());
        // Drained while it holds replicas (and while others are uneven): its replicas
        // move off first, and onto the other brokers only.
        let mut md = cluster(&[1, 2, 3, 4], &[&[1, 3], &[2, 3], &[3, 1], &[1, 2]]);
        apply_command(&mut md, &MetadataCommand::DrainBroker { broker_id: 3 }, 10);
        let step = next_step(&md, &HashMap::new(), 0, 1000);
        assert_eq!(step.len(), 3, "{step:?}");
        for r in &step {
            let target = r.target.as_ref().expect("a target");
            assert!(!target.contains(&3), "{r:?}");
        }
        // Once its replicas are elsewhere, balancing never puts one back.
        let mut md = cluster(&[1, 2, 3, 4], &[&[1, 2], &[2, 4], &[4, 1], &[1, 2]]);
        apply_command(&mut md, &MetadataCommand::DrainBroker { broker_id: 3 }, 10);
        for r in next_step(&md, &HashMap::new(), 0, 1000) {
            assert!(!r.target.as_ref().is_some_and(|t| t.contains(&3)), "{r:?}");
        }
    }

    #[test]
    fn a_broker_fenced_past_the_grace_is_drained() {
        let mut md = cluster(&[1, 2, 3], &[&[1, 3], &[2, 3], &[1, 2]]);
        let epoch = md.brokers[&3].epoch;
        apply_command(
            &mut md,
            &MetadataCommand::FenceBroker {
                broker_id: 3,
                epoch,
            },
            10,
        );
        let since = HashMap::from([(3, 1_000)]);
        // Within the grace: the balance plan alone, which leaves fenced brokers' replicas.
        assert!(next_step(&md, &since, 1_500, 1_000).iter().all(|r| r
            .target
            .as_ref()
            .is_some_and(|t| t.contains(&3))
            || r.partition == 2));
        let step = next_step(&md, &since, 2_500, 1_000);
        assert_eq!(step.len(), 2, "{step:?}");
        assert!(step
            .iter()
            .all(|r| r.target.as_ref().is_some_and(|t| !t.contains(&3))));
    }
}
