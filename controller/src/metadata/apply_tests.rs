//! Applying metadata commands to the image: topics and their assignments, fencing and
//! registration, ISR changes, elections, producer id blocks and configs, checked on the
//! image itself.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;
use crate::metadata::{BrokerRegistration, NewTopicSpec, Reassignment};

fn register(md: &mut ClusterMetadata, id: i32, index: u64) {
    let reg = BrokerRegistration {
        broker_id: id,
        incarnation_id: Uuid::nil(),
        listeners: vec![],
        rack: None,
        rpc_address: format!("127.0.0.1:{}", 9000 + id),
    };
    apply_command(md, &MetadataCommand::RegisterBroker(reg), index);
}

fn spec(name: &str, assignments: Vec<Vec<i32>>) -> NewTopicSpec {
    NewTopicSpec {
        name: name.into(),
        id: Uuid::from_u128(7),
        assignments,
        configs: BTreeMap::new(),
        internal: false,
    }
}

#[test]
fn create_delete_and_duplicate_topics() {
    let mut md = ClusterMetadata::default();
    register(&mut md, 1, 1);
    let out = apply_command(
        &mut md,
        &MetadataCommand::CreateTopics {
            topics: vec![spec("a", vec![vec![1], vec![1]]), spec("a", vec![vec![1]])],
        },
        2,
    );
    let CommandOutcome::Topics(results) = out else {
        panic!("unexpected {out:?}")
    };
    assert!(results[0].result.is_ok());
    assert_eq!(
        results[1].result,
        Err(MetadataError::TopicAlreadyExists("a".into()))
    );
    assert_eq!(md.partition("a", 1).map(|p| p.leader), Some(1));
    apply_command(
        &mut md,
        &MetadataCommand::DeleteTopics {
            names: vec!["a".into()],
        },
        3,
    );
    assert!(md.topics.is_empty());
    assert_eq!(md.last_applied_index, 3);
}

#[test]
fn assignments_must_name_registered_brokers_once() {
    let mut md = ClusterMetadata::default();
    register(&mut md, 1, 1);
    for bad in [vec![vec![2]], vec![vec![1, 1]], vec![vec![]], vec![]] {
        let out = apply_command(
            &mut md,
            &MetadataCommand::CreateTopics {
                topics: vec![spec("t", bad.clone())],
            },
            2,
        );
        let CommandOutcome::Topics(r) = out else {
            panic!()
        };
        assert!(r[0].result.is_err(), "{bad:?} must be refused");
    }
}

#[test]
fn a_broker_in_controlled_shutdown_leads_nothing_but_stays_listed_until_it_is_gone() {
    let mut md = ClusterMetadata::default();
    register(&mut md, 1, 1);
    register(&mut md, 2, 2);
    apply_command(
        &mut md,
        &MetadataCommand::CreateTopics {
            topics: vec![spec("pair", vec![vec![1, 2]])],
        },
        3,
    );
    let epoch = md.brokers[&1].epoch;
    apply_command(
        &mut md,
        &MetadataCommand::ControlledShutdown {
            broker_id: 1,
            epoch,
        },
        4,
    );
    let pair = md.partition("pair", 0).cloned().expect("pair");
    assert_eq!((pair.leader, pair.isr.clone()), (2, vec![2]), "moved off");
    assert!(!md.is_live(1), "fenced: it may lead nothing");
    assert!(
        md.brokers[&1].is_listed(),
        "but clients are still told of it"
    );
    // Its process is gone: the controller's FenceBroker for the same epoch unlists it.
    apply_command(
        &mut md,
        &MetadataCommand::FenceBroker {
            broker_id: 1,
            epoch,
        },
        5,
    );
    assert!(!md.brokers[&1].is_listed());
    assert_eq!(md.partition("pair", 0).map(|p| p.leader), Some(2));
    // Registering again starts unfenced and not stopping.
    register(&mut md, 1, 6);
    assert!(md.brokers[&1].is_listed() && !md.brokers[&1].stopping);
}

#[test]
fn a_controlled_shutdown_of_an_old_registration_does_nothing() {
    let mut md = ClusterMetadata::default();
    register(&mut md, 1, 1);
    let old = md.brokers[&1].epoch;
    register(&mut md, 1, 2);
    apply_command(
        &mut md,
        &MetadataCommand::ControlledShutdown {
            broker_id: 1,
            epoch: old,
        },
        3,
    );
    assert!(md.is_live(1) && !md.brokers[&1].stopping);
}

#[test]
fn fencing_moves_leadership_and_registration_restores_it() {
    let mut md = ClusterMetadata::default();
    register(&mut md, 1, 1);
    register(&mut md, 2, 2);
    apply_command(
        &mut md,
        &MetadataCommand::CreateTopics {
            topics: vec![spec("solo", vec![vec![1]]), spec("pair", vec![vec![1, 2]])],
        },
        3,
    );
    let epoch1 = md.brokers[&1].epoch;
    apply_command(
        &mut md,
        &MetadataCommand::FenceBroker {
            broker_id: 1,
            epoch: epoch1,
        },
        4,
    );
    let solo = md.partition("solo", 0).cloned().expect("solo");
    assert_eq!(
        (solo.leader, solo.leader_epoch, solo.isr.clone()),
        (-1, 1, vec![1]),
        "RF 1: no leader, ISR kept"
    );
    let pair = md.partition("pair", 0).cloned().expect("pair");
    assert_eq!(
        (pair.leader, pair.leader_epoch, pair.isr.clone()),
        (2, 1, vec![2]),
        "moved to the other ISR member"
    );
    // A stale fence (old epoch) is ignored; re-registration unfences and re-elects.
    register(&mut md, 1, 5);
    assert!(!md.brokers[&1].fenced);
    assert_eq!(
        md.partition("solo", 0).map(|p| (p.leader, p.leader_epoch)),
        Some((1, 2))
    );
    apply_command(
        &mut md,
        &MetadataCommand::FenceBroker {
            broker_id: 1,
            epoch: epoch1,
        },
        6,
    );
    assert!(
        !md.brokers[&1].fenced,
        "fence for an old registration does nothing"
    );
    let epoch1 = md.brokers[&1].epoch;
    apply_command(
        &mut md,
        &MetadataCommand::FenceBroker {
            broker_id: 1,
            epoch: epoch1,
        },
        7,
    );
    apply_command(
        &mut md,
        &MetadataCommand::UnfenceBroker {
            broker_id: 1,
            epoch: epoch1,
        },
        8,
    );
    assert_eq!(md.partition("solo", 0).map(|p| p.leader), Some(1));
}

#[test]
fn alter_partition_checks_epochs_and_members() {
    let mut md = ClusterMetadata::default();
    for id in 1..=3 {
        register(&mut md, id, id as u64);
    }
    apply_command(
        &mut md,
        &MetadataCommand::CreateTopics {
            topics: vec![spec("r", vec![vec![1, 2, 3]])],
        },
        4,
    );
    let alter =
        |isr: Vec<i32>, leader_epoch: i32, partition_epoch: i32| MetadataCommand::AlterPartition {
            topic: "r".into(),
            partition: 0,
            leader_id: 1,
            leader_epoch,
            partition_epoch,
            new_isr: isr,
        };
    let out = apply_command(&mut md, &alter(vec![1, 3], 0, 0), 5);
    assert_eq!(
        out,
        CommandOutcome::PartitionChanged {
            partition_epoch: 1,
            isr: vec![1, 3]
        }
    );
    assert_eq!(
        apply_command(&mut md, &alter(vec![1], 0, 0), 6),
        CommandOutcome::Failed(MetadataError::InvalidUpdateVersion(0)),
        "stale partition epoch"
    );
    assert_eq!(
        apply_command(&mut md, &alter(vec![1], 7, 1), 7),
        CommandOutcome::Failed(MetadataError::FencedLeaderEpoch(7))
    );
    assert!(
        matches!(
            apply_command(&mut md, &alter(vec![2, 3], 0, 1), 8),
            CommandOutcome::Failed(_)
        ),
        "leader must stay"
    );
    let e2 = md.brokers[&2].epoch;
    apply_command(
        &mut md,
        &MetadataCommand::FenceBroker {
            broker_id: 2,
            epoch: e2,
        },
        9,
    );
    assert!(matches!(
        apply_command(&mut md, &alter(vec![1, 2, 3], 0, 1), 10),
        CommandOutcome::Failed(MetadataError::IneligibleReplica(_))
    ));
}

#[test]
fn preferred_elections_apply_only_at_the_expected_epoch() {
    let mut md = ClusterMetadata::default();
    for id in 1..=2 {
        register(&mut md, id, id as u64);
    }
    apply_command(
        &mut md,
        &MetadataCommand::CreateTopics {
            topics: vec![spec("p", vec![vec![1, 2]])],
        },
        3,
    );
    let elect = |epoch: i32, leader: i32| MetadataCommand::ElectLeaders {
        elections: vec![crate::metadata::Election {
            topic: "p".into(),
            partition: 0,
            leader_epoch: epoch,
            new_leader: leader,
        }],
    };
    let CommandOutcome::Elections(r) = apply_command(&mut md, &elect(0, 2), 4) else {
        panic!()
    };
    assert_eq!(r[0].2, Ok(2));
    let CommandOutcome::Elections(r) = apply_command(&mut md, &elect(0, 1), 5) else {
        panic!()
    };
    assert_eq!(r[0].2, Err(MetadataError::FencedLeaderEpoch(0)));
    let CommandOutcome::Elections(r) = apply_command(&mut md, &elect(1, 2), 6) else {
        panic!()
    };
    assert_eq!(r[0].2, Err(MetadataError::ElectionNotNeeded));
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut md = ClusterMetadata::default();
    register(&mut md, 1, 1);
    let a = apply_command(
        &mut md,
        &MetadataCommand::AllocateProducerIds {
            broker_id: 1,
            count: 1000,
        },
        2,
    );
    let b = apply_command(
        &mut md,
        &MetadataCommand::AllocateProducerIds {
            broker_id: 1,
            count: 1000,
        },
        3,
    );
    assert_eq!(
        a,
        CommandOutcome::ProducerIds {
            start: 0,
            count: 1000
        }
    );
    assert_eq!(
        b,
        CommandOutcome::ProducerIds {
            start: 1000,
            count: 1000
        }
    );
    let c = apply_command(
        &mut md,
        &MetadataCommand::AllocateProducerIds {
            broker_id: 9,
            count: 1,
        },
        4,
    );
    assert!(matches!(c, CommandOutcome::Failed(_)));
}

#[test]
fn configs_set_delete_and_replace() {
    let mut md = ClusterMetadata::default();
    register(&mut md, 1, 1);
    apply_command(
        &mut md,
        &MetadataCommand::CreateTopics {
            topics: vec![spec("t", vec![vec![1]])],
        },
        2,
    );
    let set = |k: &str, v: &str| ConfigOp::Set {
        key: k.into(),
        value: v.into(),
    };
    let topic = ConfigResource::Topic("t".into());
    apply_command(
        &mut md,
        &MetadataCommand::AlterConfigs {
            resource: topic.clone(),
            ops: vec![set("retention.ms", "1"), set("segment.ms", "2")],
            replace: false,
        },
        3,
    );
    apply_command(
        &mut md,
        &MetadataCommand::AlterConfigs {
            resource: topic.clone(),
            ops: vec![ConfigOp::Delete {
                key: "segment.ms".into(),
            }],
            replace: false,
        },
        4,
    );
    assert_eq!(md.topics["t"].configs.len(), 1);
    apply_command(
        &mut md,
        &MetadataCommand::AlterConfigs {
            resource: topic,
            ops: vec![set("cleanup.policy", "compact")],
            replace: true,
        },
        5,
    );
    assert_eq!(
        md.topics["t"].configs.keys().collect::<Vec<_>>(),
        vec!["cleanup.policy"]
    );
}

#[test]
fn a_drained_broker_takes_no_new_replica_and_hands_over_its_leaderships() {
    let mut md = ClusterMetadata::default();
    for id in 1..=3 {
        register(&mut md, id, id as u64);
    }
    apply_command(
        &mut md,
        &MetadataCommand::CreateTopics {
            topics: vec![
                spec("t", vec![vec![3, 1], vec![3, 2], vec![1, 2]]),
                spec("solo", vec![vec![3]]),
            ],
        },
        4,
    );
    assert_eq!(
        apply_command(&mut md, &MetadataCommand::DrainBroker { broker_id: 9 }, 5),
        CommandOutcome::Failed(MetadataError::UnknownBroker(9))
    );
    assert_eq!(
        apply_command(&mut md, &MetadataCommand::DrainBroker { broker_id: 3 }, 6),
        CommandOutcome::Done
    );
    assert!(md.is_drained(3));
    let moved = md.partition("t", 0).cloned().expect("t-0");
    assert_eq!(
        (moved.leader, moved.leader_epoch),
        (1, 1),
        "leadership moved off"
    );
    assert_eq!(md.partition("t", 1).map(|p| p.leader), Some(2));
    assert_eq!(
        md.partition("solo", 0).map(|p| p.leader),
        Some(3),
        "its only replica keeps leading"
    );

    // New topics and partitions naming it are refused; others are not.
    let out = apply_command(
        &mut md,
        &MetadataCommand::CreateTopics {
            topics: vec![
                spec("bad", vec![vec![1, 3]]),
                spec("good", vec![vec![1, 2]]),
            ],
        },
        7,
    );
    let CommandOutcome::Topics(r) = out else {
        panic!("unexpected {out:?}")
    };
    assert!(
        matches!(&r[0].result, Err(MetadataError::InvalidReplicaAssignment(m)) if m.contains("drained")),
        "{r:?}"
    );
    assert!(r[1].result.is_ok());
    let out = apply_command(
        &mut md,
        &MetadataCommand::CreatePartitions {
            topic: "good".into(),
            new_assignments: vec![vec![3, 2]],
        },
        8,
    );
    assert!(
        matches!(
            out,
            CommandOutcome::Failed(MetadataError::InvalidReplicaAssignment(_))
        ),
        "{out:?}"
    );

    // A reassignment may not add it, but may keep or remove its replica.
    let out = apply_command(
        &mut md,
        &MetadataCommand::AlterReassignments {
            changes: vec![
                Reassignment {
                    topic: "t".into(),
                    partition: 2,
                    target: Some(vec![1, 3]),
                },
                Reassignment {
                    topic: "t".into(),
                    partition: 0,
                    target: Some(vec![1, 2]),
                },
            ],
        },
        9,
    );
    let CommandOutcome::Reassignments(r) = out else {
        panic!("unexpected {out:?}")
    };
    assert!(
        matches!(&r[0].2, Err(MetadataError::InvalidReplicaAssignment(_))),
        "{r:?}"
    );
    assert_eq!(r[1].2, Ok(()));

    // Restarting does not undrain it, and a restart does not hand leadership back.
    register(&mut md, 3, 10);
    assert!(md.is_drained(3));
    assert_ne!(md.partition("t", 0).map(|p| p.leader), Some(3));

    assert_eq!(
        apply_command(
            &mut md,
            &MetadataCommand::UndrainBroker { broker_id: 3 },
            11
        ),
        CommandOutcome::Done
    );
    assert!(!md.is_drained(3));
    assert_eq!(
        apply_command(
            &mut md,
            &MetadataCommand::UndrainBroker { broker_id: 9 },
            12
        ),
        CommandOutcome::Failed(MetadataError::UnknownBroker(9))
    );
    let out = apply_command(
        &mut md,
        &MetadataCommand::CreatePartitions {
            topic: "good".into(),
            new_assignments: vec![vec![3, 2]],
        },
        13,
    );
    assert!(matches!(out, CommandOutcome::Topics(_)), "{out:?}");
}

#[test]
fn the_drained_set_survives_a_snapshot_and_old_snapshots_read_without_it() {
    let mut md = ClusterMetadata::default();
    register(&mut md, 1, 1);
    let old = serde_json::to_string(&md).expect("encode");
    assert!(
        !old.contains("drained_brokers"),
        "nothing written while empty"
    );
    apply_command(&mut md, &MetadataCommand::DrainBroker { broker_id: 1 }, 2);
    let json = serde_json::to_string(&md).expect("encode");
    let back: ClusterMetadata = serde_json::from_str(&json).expect("decode");
    assert!(back.is_drained(1));
    let before: ClusterMetadata = serde_json::from_str(&old).expect("decode");
    assert!(before.drained_brokers.is_empty());
}
