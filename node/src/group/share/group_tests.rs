//! ShareGroupHeartbeat membership driven by simulated members.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::*;
use crate::group::consumer::{partition_count, Assignment, TopicCatalog, TopicInfo, LEAVE_EPOCH};

struct Catalog(BTreeMap<String, TopicInfo>);

impl Catalog {
    fn new(topics: &[(&str, i32)]) -> Self {
        Catalog(
            topics
                .iter()
                .map(|(n, p)| {
                    let info = TopicInfo {
                        name: n.to_string(),
                        id: Uuid::new_v4(),
                        partitions: *p,
                    };
                    (n.to_string(), info)
                })
                .collect(),
        )
    }

    fn id(&self, name: &str) -> Uuid {
        self.0[name].id
    }
}

impl TopicCatalog for Catalog {
    fn by_name(&self, name: &str) -> Option<TopicInfo> {
        self.0.get(name).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// A client's view of its membership.
#[derive(Clone, Debug, Default)]
struct Client {
    id: String,
    epoch: i32,
    assigned: Assignment,
}

fn join_hb(id: &str, topics: &[&str]) -> ShareHeartbeat {
    ShareHeartbeat {
        member_id: id.to_string(),
        member_epoch: 0,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        ..ShareHeartbeat::default()
    }
}

fn join(g: &mut ShareGroup, cat: &Catalog, id: &str, topics: &[&str], now: i64) -> Client {
    let (a, changed) = g
        .heartbeat(join_hb(id, topics), cat, &ShareGroupConfig::default(), now)
        .expect("join");
    assert!(changed);
    Client {
        id: a.member_id,
        epoch: a.member_epoch,
        assigned: a
            .assignment
            .expect("a joining member learns its assignment"),
    }
}

fn beat(
    g: &mut ShareGroup,
    cat: &Catalog,
    c: &mut Client,
    now: i64,
) -> Result<bool, ResponseError> {
    let hb = ShareHeartbeat {
        member_id: c.id.clone(),
        member_epoch: c.epoch,
        ..ShareHeartbeat::default()
    };
    let (a, changed) = g.heartbeat(hb, cat, &ShareGroupConfig::default(), now)?;
    assert_eq!(a.heartbeat_interval_ms, 5_000);
    c.epoch = a.member_epoch;
    if let Some(assignment) = a.assignment {
        c.assigned = assignment;
    }
    Ok(changed)
}

#[test]
fn defaults_are_kafkas() {
    let g = ShareGroupConfig::default();
    assert_eq!(
        (g.session_timeout_ms, g.heartbeat_interval_ms, g.max_size),
        (45_000, 5_000, 200)
    );
    let p = SharePartitionConfig::default();
    assert_eq!(
        (
            p.max_record_locks,
            p.delivery_count_limit,
            p.record_lock_duration_ms
        ),
        (2_000, 5, 30_000)
    );
}

#[test]
fn members_move_to_a_new_target_without_revoking() {
    let cat = Catalog::new(&[("t", 4)]);
    let mut g = ShareGroup::new("g");
    assert_eq!(g.state(), ShareGroupState::Empty);
    let mut a = join(&mut g, &cat, "a", &["t"], 0);
    assert_eq!((a.epoch, partition_count(&a.assigned)), (1, 4));
    assert_eq!(g.state(), ShareGroupState::Stable);
    // b gets its share at once: nobody has to give anything up first.
    let b = join(&mut g, &cat, "b", &["t"], 1);
    assert_eq!((b.epoch, partition_count(&b.assigned)), (2, 2));
    assert!(beat(&mut g, &cat, &mut a, 2).expect("heartbeat"));
    assert_eq!((a.epoch, partition_count(&a.assigned)), (2, 2));
    assert!(a.assigned[&cat.id("t")].is_disjoint(&b.assigned[&cat.id("t")]));
    // Nothing new: nothing durable changes and no assignment is sent.
    let mut again = a.clone();
    again.assigned.clear();
    assert!(!beat(&mut g, &cat, &mut again, 3).expect("heartbeat"));
    assert!(again.assigned.is_empty());
}

#[test]
fn more_members_than_partitions_share_them() {
    let cat = Catalog::new(&[("t", 2)]);
    let mut g = ShareGroup::new("g");
    let mut clients: Vec<Client> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|id| join(&mut g, &cat, id, &["t"], 0))
        .collect();
    for c in &mut clients {
        beat(&mut g, &cat, c, 1).expect("heartbeat");
    }
    let t = cat.id("t");
    let mut per_partition: Vec<usize> = (0..2)
        .map(|p| {
            clients
                .iter()
                .filter(|c| c.assigned[&t].contains(&p))
                .count()
        })
        .collect();
    per_partition.sort_unstable();
    assert_eq!(per_partition, vec![2, 3]);
    assert!(clients.iter().all(|c| c.assigned[&t].len() == 1));
}

#[test]
fn leaving_and_silent_members_are_removed() {
    let cat = Catalog::new(&[("t", 4)]);
    let config = ShareGroupConfig::default();
    let mut g = ShareGroup::new("g");
    let mut a = join(&mut g, &cat, "a", &["t"], 0);
    join(&mut g, &cat, "b", &["t"], 0);
    let leave = ShareHeartbeat {
        member_id: "b".into(),
        member_epoch: LEAVE_EPOCH,
        ..ShareHeartbeat::default()
    };
    let (answer, changed) = g.heartbeat(leave.clone(), &cat, &config, 1).expect("leave");
    assert_eq!(
        (answer.member_epoch, answer.assignment, changed),
        (LEAVE_EPOCH, None, true)
    );
    assert_eq!(
        g.heartbeat(leave, &cat, &config, 1).map(|_| ()),
        Err(ResponseError::UnknownMemberId)
    );
    beat(&mut g, &cat, &mut a, 2).expect("heartbeat");
    assert_eq!(partition_count(&a.assigned), 4);
    assert!(g.tick(&config, 2 + config.session_timeout_ms).is_empty());
    let removed = g.tick(&config, 3 + config.session_timeout_ms);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].member_id, "a");
    assert_eq!(g.state(), ShareGroupState::Empty);
    assert_eq!(
        beat(&mut g, &cat, &mut a, 4).map(|_| ()),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(g.mark_dead(), Ok(()));
    assert_eq!(
        g.heartbeat(join_hb("a", &["t"]), &cat, &config, 5)
            .map(|_| ()),
        Err(ResponseError::GroupIdNotFound)
    );
}

#[test]
fn epochs_fence_zombies_and_forgive_a_lost_answer() {
    let cat = Catalog::new(&[("t", 2)]);
    let mut g = ShareGroup::new("g");
    let mut a = join(&mut g, &cat, "a", &["t"], 0);
    let stale = a.clone();
    join(&mut g, &cat, "b", &["t"], 0);
    beat(&mut g, &cat, &mut a, 1).expect("heartbeat");
    assert_eq!(a.epoch, 2);
    let mut future = a.clone();
    future.epoch = 7;
    assert_eq!(
        beat(&mut g, &cat, &mut future, 1),
        Err(ResponseError::FencedMemberEpoch)
    );
    // The previous epoch: the answer was lost, so it is sent again.
    let mut lost = stale.clone();
    lost.assigned.clear();
    beat(&mut g, &cat, &mut lost, 1).expect("lost answer is forgiven");
    assert_eq!((lost.epoch, &lost.assigned), (a.epoch, &a.assigned));
    // Two epochs behind is a zombie.
    join(&mut g, &cat, "c", &["t"], 2);
    beat(&mut g, &cat, &mut a, 3).expect("heartbeat");
    let mut zombie = stale;
    assert_eq!(
        beat(&mut g, &cat, &mut zombie, 3),
        Err(ResponseError::FencedMemberEpoch)
    );
    let mut unknown = Client {
        id: "nobody".into(),
        epoch: 1,
        ..Client::default()
    };
    assert_eq!(
        beat(&mut g, &cat, &mut unknown, 3),
        Err(ResponseError::UnknownMemberId)
    );
    // A member that lost its state rejoins with epoch 0 under the same id.
    let rejoined = join(&mut g, &cat, "a", &["t"], 4);
    assert!(rejoined.epoch > a.epoch);
    assert!(g.is_member("a"));
}

#[test]
fn requests_the_protocol_forbids_are_refused() {
    let cat = Catalog::new(&[("t", 1)]);
    let config = ShareGroupConfig::default();
    let mut g = ShareGroup::new("g");
    let bad = [
        ShareHeartbeat {
            member_id: "a".into(),
            member_epoch: 0,
            ..ShareHeartbeat::default()
        },
        ShareHeartbeat {
            member_id: "a".into(),
            member_epoch: 0,
            subscribed_topic_names: Some(vec![]),
            ..ShareHeartbeat::default()
        },
        ShareHeartbeat {
            member_id: "a".into(),
            member_epoch: -2,
            ..ShareHeartbeat::default()
        },
        ShareHeartbeat {
            member_id: String::new(),
            member_epoch: 3,
            ..ShareHeartbeat::default()
        },
        ShareHeartbeat {
            rack_id: Some(String::new()),
            ..join_hb("a", &["t"])
        },
    ];
    for hb in bad {
        assert_eq!(
            g.heartbeat(hb.clone(), &cat, &config, 0).map(|_| ()),
            Err(ResponseError::InvalidRequest),
            "{hb:?}"
        );
    }
    // An old client without an id gets one.
    let (answer, _) = g
        .heartbeat(join_hb("", &["t"]), &cat, &config, 0)
        .expect("join");
    assert!(!answer.member_id.is_empty());
    let small = ShareGroupConfig {
        max_size: 1,
        ..config
    };
    assert_eq!(
        g.heartbeat(join_hb("b", &["t"]), &cat, &small, 0)
            .map(|_| ()),
        Err(ResponseError::GroupMaxSizeReached)
    );
    // A member already in does not count against the limit when it rejoins.
    g.heartbeat(join_hb(&answer.member_id, &["t"]), &cat, &small, 0)
        .expect("rejoin");
    assert_eq!(g.mark_dead(), Err(ResponseError::NonEmptyGroup));
}

#[test]
fn subscription_changes_and_topic_growth_move_the_group_epoch() {
    let mut cat = Catalog::new(&[("x", 2), ("y", 3)]);
    let mut g = ShareGroup::new("g");
    let mut a = join(&mut g, &cat, "a", &["x"], 0);
    let epoch = g.group_epoch;
    let hb = ShareHeartbeat {
        member_id: "a".into(),
        member_epoch: a.epoch,
        subscribed_topic_names: Some(vec!["y".into(), "x".into(), "y".into()]),
        ..ShareHeartbeat::default()
    };
    let (answer, changed) = g
        .heartbeat(hb, &cat, &ShareGroupConfig::default(), 1)
        .expect("heartbeat");
    assert!(changed);
    assert_eq!(answer.member_epoch, epoch + 1);
    assert_eq!(answer.assignment.as_ref().map(partition_count), Some(5));
    a.epoch = answer.member_epoch;
    assert_eq!(g.topic_names().len(), 2);
    if let Some(t) = cat.0.get_mut("y") {
        t.partitions = 4;
    }
    assert!(g.refresh_subscriptions(&cat));
    assert!(!g.refresh_subscriptions(&cat));
    beat(&mut g, &cat, &mut a, 2).expect("heartbeat");
    assert_eq!((a.epoch, partition_count(&a.assigned)), (epoch + 2, 6));
}

#[test]
fn a_group_survives_a_round_trip_through_its_record() {
    let cat = Catalog::new(&[("t", 3)]);
    let mut g = ShareGroup::new("g");
    join(&mut g, &cat, "a", &["t"], 0);
    let bytes = serde_json::to_vec(&g).expect("serialize");
    let back: ShareGroup = serde_json::from_slice(&bytes).expect("deserialize");
    assert_eq!(back.restore(0), g);
}

/// The topics whose share-partitions may hold state are remembered after the members
/// unsubscribe (the state outlives the subscription), follow growth, and load from a
/// record written before they were recorded.
#[test]
fn topics_with_state_outlive_their_subscription() {
    let mut cat = Catalog::new(&[("x", 2), ("y", 3)]);
    let mut g = ShareGroup::new("g");
    let mut a = join(&mut g, &cat, "a", &["x", "y"], 0);
    let hb = ShareHeartbeat {
        member_id: "a".into(),
        member_epoch: a.epoch,
        subscribed_topic_names: Some(vec!["x".into()]),
        ..ShareHeartbeat::default()
    };
    let (answer, _) = g
        .heartbeat(hb, &cat, &ShareGroupConfig::default(), 1)
        .expect("heartbeat");
    a.epoch = answer.member_epoch;
    assert_eq!(g.topic_names().len(), 1, "y is no longer subscribed");
    let expected: BTreeMap<Uuid, (String, i32)> = [
        (cat.id("x"), ("x".to_string(), 2)),
        (cat.id("y"), ("y".to_string(), 3)),
    ]
    .into_iter()
    .collect();
    assert_eq!(g.state_topics, expected);
    if let Some(t) = cat.0.get_mut("x") {
        t.partitions = 4;
    }
    assert!(g.refresh_subscriptions(&cat));
    assert_eq!(g.state_topics[&cat.id("x")], ("x".to_string(), 4));
    // An admin alter of a topic nobody subscribes to is news once.
    let z = Uuid::new_v4();
    assert!(g.note_state_topic(z, "z", 1));
    assert!(!g.note_state_topic(z, "z", 1));
    assert_eq!(g.topics_with_state().len(), 3);

    // A record from before the field existed loads, and its subscribed topics count.
    let mut json: serde_json::Value = serde_json::to_value(&g).expect("serialize");
    json.as_object_mut()
        .expect("a group is an object")
        .remove("state_topics");
    let old: ShareGroup = serde_json::from_value(json).expect("an older record loads");
    assert!(old.state_topics.is_empty());
    assert_eq!(
        old.topics_with_state().keys().copied().collect::<Vec<_>>(),
        vec![cat.id("x")]
    );
}

/// The group and a share-partition together: a member whose session lapses is removed,
/// and the caller releases its records, which the others then get.
#[test]
fn a_lapsed_member_s_records_go_to_the_others() {
    let cat = Catalog::new(&[("t", 1)]);
    let config = ShareGroupConfig::default();
    let mut g = ShareGroup::new("g");
    join(&mut g, &cat, "a", &["t"], 0);
    let mut b = join(&mut g, &cat, "b", &["t"], 0);
    let mut p = SharePartition::new(
        SharePartitionConfig::default(),
        AutoOffsetReset::Earliest,
        0,
        10,
    );
    p.acquire("a", 0..10, 5, 0);
    let now = config.session_timeout_ms + 1;
    beat(&mut g, &cat, &mut b, now - 1).expect("heartbeat");
    for r in g.tick(&config, now) {
        p.release_member(&r.member_id);
    }
    assert!(!g.is_member("a"));
    let (got, _) = p.acquire("b", 0..10, 10, now);
    assert_eq!(
        got,
        vec![
            AcquiredRecords {
                first_offset: 0,
                last_offset: 4,
                delivery_count: 2
            },
            AcquiredRecords {
                first_offset: 5,
                last_offset: 9,
                delivery_count: 1
            },
        ]
    );
}

use crate::group::test_rng::Rng;

/// Random joins, leaves, crashes and growing topics: once every live member has
/// heartbeated, each is at the group epoch, knows exactly its target, and every
/// partition a live member subscribes to has a member.
#[test]
fn random_schedules_cover_every_subscribed_partition() {
    let config = ShareGroupConfig::default();
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut cat = Catalog::new(&[("t1", 3), ("t2", 2)]);
        let mut g = ShareGroup::new("g");
        let mut clients: Vec<(Client, Vec<&str>)> = Vec::new();
        let mut now = 0i64;
        for next_id in 0..100 {
            now += 100;
            match rng.below(8) {
                0 | 1 if clients.len() < 7 => {
                    let topics = match rng.below(3) {
                        0 => vec!["t1"],
                        1 => vec!["t2"],
                        _ => vec!["t1", "t2"],
                    };
                    let c = join(&mut g, &cat, &format!("m{next_id}"), &topics, now);
                    clients.push((c, topics));
                }
                2 if !clients.is_empty() => {
                    let (c, _) = clients.remove(rng.below(clients.len()));
                    let hb = ShareHeartbeat {
                        member_id: c.id,
                        member_epoch: LEAVE_EPOCH,
                        ..ShareHeartbeat::default()
                    };
                    g.heartbeat(hb, &cat, &config, now).expect("leave");
                }
                3 if !clients.is_empty() => {
                    clients.remove(rng.below(clients.len()));
                    now += config.session_timeout_ms + 1;
                    for (c, _) in &mut clients {
                        beat(&mut g, &cat, c, now - 1).expect("heartbeat");
                    }
                    assert_eq!(g.tick(&config, now).len(), 1);
                }
                4 => {
                    let name = if rng.below(2) == 0 { "t1" } else { "t2" };
                    if let Some(t) = cat.0.get_mut(name) {
                        t.partitions += 1;
                    }
                    g.refresh_subscriptions(&cat);
                }
                _ if !clients.is_empty() => {
                    let i = rng.below(clients.len());
                    beat(&mut g, &cat, &mut clients[i].0, now).expect("heartbeat");
                }
                _ => {}
            }
        }
        for (c, _) in &mut clients {
            beat(&mut g, &cat, c, now).expect("heartbeat");
        }
        for (c, _) in &clients {
            assert_eq!(c.epoch, g.group_epoch, "seed {seed}");
            assert_eq!(c.assigned, g.members[&c.id].assigned, "seed {seed}");
        }
        for name in ["t1", "t2"] {
            if !clients.iter().any(|(_, ts)| ts.contains(&name)) {
                continue;
            }
            let t = &cat.0[name];
            let covered: BTreeSet<i32> = clients
                .iter()
                .filter_map(|(c, _)| c.assigned.get(&t.id))
                .flatten()
                .copied()
                .collect();
            assert_eq!(covered, (0..t.partitions).collect(), "seed {seed}: {name}");
        }
    }
}
