//! The consumer group protocol driven by simulated members: a member gives up what it
//! is told to give up before its next heartbeat, like a real client.

use std::collections::BTreeMap;

use super::*;

/// Topics, and the ones `User:alice` may not see.
struct Catalog(BTreeMap<String, TopicInfo>, BTreeSet<String>);

impl Catalog {
    fn new(topics: &[(&str, i32)]) -> Self {
        Catalog(
            topics
                .iter()
                .map(|(n, p)| {
                    (
                        n.to_string(),
                        TopicInfo {
                            name: n.to_string(),
                            id: Uuid::new_v4(),
                            partitions: *p,
                        },
                    )
                })
                .collect(),
            BTreeSet::new(),
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
    fn visible(&self, principal: &str, _host: &str, topic: &str) -> bool {
        principal != "User:alice" || !self.1.contains(topic)
    }
}

/// A client's view of its membership.
#[derive(Clone, Debug, Default)]
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
}

fn join(g: &mut ConsumerGroup, cat: &Catalog, id: &str, topics: &[&str], now: i64) -> Client {
    let hb = Heartbeat {
        member_id: id.to_string(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    };
    let (a, _) = g
        .heartbeat(hb, cat, &ConsumerGroupConfig::default(), now)
        .expect("join");
    Client {
        id: a.member_id,
        epoch: a.member_epoch,
        owned: a.assignment.unwrap_or_default(),
    }
}

fn beat(
    g: &mut ConsumerGroup,
    cat: &Catalog,
    c: &mut Client,
    now: i64,
) -> Result<(), ResponseError> {
    let hb = Heartbeat {
        member_id: c.id.clone(),
        member_epoch: c.epoch,
        rebalance_timeout_ms: -1,
        owned: Some(c.owned.clone()),
        ..Heartbeat::default()
    };
    let (a, _) = g.heartbeat(hb, cat, &ConsumerGroupConfig::default(), now)?;
    c.epoch = a.member_epoch;
    if let Some(assignment) = a.assignment {
        c.owned = assignment;
    }
    Ok(())
}

/// No partition is owned by two clients, or held by one member and owned by another.
fn assert_exclusive(g: &ConsumerGroup, clients: &[&Client]) {
    let mut seen = BTreeSet::new();
    for c in clients {
        for (t, ps) in &c.owned {
            for p in ps {
                assert!(seen.insert((*t, *p)), "{t}-{p} owned twice");
            }
        }
    }
    let mut held = BTreeSet::new();
    for m in g.members.values() {
        for a in [&m.assigned, &m.pending_revocation] {
            for (t, ps) in a {
                for p in ps {
                    assert!(held.insert((*t, *p)), "{t}-{p} held twice");
                }
            }
        }
    }
}

fn settle(g: &mut ConsumerGroup, cat: &Catalog, clients: &mut [Client], now: i64) {
    for _ in 0..10 {
        for i in 0..clients.len() {
            beat(g, cat, &mut clients[i], now).expect("heartbeat");
            assert_exclusive(g, &clients.iter().collect::<Vec<_>>());
        }
        if g.state() == ConsumerGroupState::Stable {
            return;
        }
    }
    panic!("group did not settle: {:?}", g.state());
}

#[test]
fn members_share_partitions_without_overlap_while_they_move() {
    let cat = Catalog::new(&[("t", 6)]);
    let mut g = ConsumerGroup::new("g", 0);
    let a = join(&mut g, &cat, "a", &["t"], 0);
    assert_eq!(partition_count(&a.owned), 6);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    assert_eq!((g.group_epoch, a.epoch), (1, 1), "one join is one epoch");
    let b = join(&mut g, &cat, "b", &["t"], 1);
    // b may not take anything a still holds.
    assert_eq!(partition_count(&b.owned), 0);
    let mut clients = vec![a, b];
    assert_exclusive(&g, &clients.iter().collect::<Vec<_>>());
    settle(&mut g, &cat, &mut clients, 2);
    assert_eq!(partition_count(&clients[0].owned), 3);
    assert_eq!(partition_count(&clients[1].owned), 3);
    assert_eq!(clients[0].epoch, g.group_epoch);
    assert_eq!(clients[1].epoch, g.group_epoch);
}

#[test]
fn a_member_that_leaves_hands_its_partitions_on() {
    let cat = Catalog::new(&[("t", 4)]);
    let mut g = ConsumerGroup::new("g", 0);
    let a = join(&mut g, &cat, "a", &["t"], 0);
    let b = join(&mut g, &cat, "b", &["t"], 0);
    let mut clients = vec![a, b];
    settle(&mut g, &cat, &mut clients, 0);
    let hb = Heartbeat {
        member_id: "b".into(),
        member_epoch: LEAVE_EPOCH,
        ..Heartbeat::default()
    };
    let (answer, changed) = g
        .heartbeat(hb, &cat, &ConsumerGroupConfig::default(), 1)
        .expect("leave");
    assert_eq!(answer.member_epoch, LEAVE_EPOCH);
    assert!(changed);
    let mut a = clients.remove(0);
    beat(&mut g, &cat, &mut a, 2).expect("heartbeat");
    assert_eq!(partition_count(&a.owned), 4);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn epochs_fence_zombies_and_forgive_a_lost_answer() {
    let cat = Catalog::new(&[("t", 2)]);
    let mut g = ConsumerGroup::new("g", 0);
    let mut a = join(&mut g, &cat, "a", &["t"], 0);
    let old = a.clone();
    let b = join(&mut g, &cat, "b", &["t"], 0);
    let mut clients = vec![a.clone(), b];
    settle(&mut g, &cat, &mut clients, 0);
    a = clients[0].clone();
    assert!(a.epoch > old.epoch);
    // A newer epoch than the coordinator's is a zombie from some other life.
    let mut future = a.clone();
    future.epoch += 5;
    assert_eq!(
        beat(&mut g, &cat, &mut future, 1),
        Err(ResponseError::FencedMemberEpoch)
    );
    // The previous epoch with a subset of the current assignment: the answer was lost.
    let mut lost = a.clone();
    lost.epoch = g.members["a"].previous_member_epoch;
    beat(&mut g, &cat, &mut lost, 1).expect("lost answer is forgiven");
    assert_eq!(lost.epoch, a.epoch);
    // Commits carry the member epoch.
    assert_eq!(g.check_commit("a", a.epoch), Ok(()));
    assert_eq!(
        g.check_commit("a", a.epoch - 1),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        g.check_commit("nobody", 1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(g.check_commit("", -1), Err(ResponseError::UnknownMemberId));
}

#[test]
fn silent_members_and_members_that_do_not_revoke_are_removed() {
    let cat = Catalog::new(&[("t", 4)]);
    let config = ConsumerGroupConfig::default();
    let mut g = ConsumerGroup::new("g", 0);
    let mut a = join(&mut g, &cat, "a", &["t"], 0);
    let b = join(&mut g, &cat, "b", &["t"], 0);
    // a is told to give up two partitions but never confirms.
    let hb = Heartbeat {
        member_id: a.id.clone(),
        member_epoch: a.epoch,
        rebalance_timeout_ms: -1,
        owned: None,
        ..Heartbeat::default()
    };
    g.heartbeat(hb, &cat, &config, 1).expect("heartbeat");
    assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
    let removed = g.tick(&config, 30_002);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].member_id, "a");
    assert_eq!(
        beat(&mut g, &cat, &mut a, 30_003),
        Err(ResponseError::UnknownMemberId)
    );
    let mut b = b;
    beat(&mut g, &cat, &mut b, 30_003).expect("heartbeat");
    assert_eq!(partition_count(&b.owned), 4);
    // b then goes silent past the session timeout.
    let removed = g.tick(&config, 30_003 + config.session_timeout_ms + 1);
    assert_eq!(removed.len(), 1);
    assert_eq!(g.state(), ConsumerGroupState::Empty);
    assert_eq!(g.check_commit("", -1), Ok(()));
}

#[test]
fn topic_growth_and_regex_subscriptions_move_the_group_epoch() {
    let mut cat = Catalog::new(&[("orders", 2), ("orders-eu", 2), ("other", 3)]);
    let mut g = ConsumerGroup::new("g", 0);
    let hb = Heartbeat {
        member_id: "a".into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_regex: Some("orders.*".into()),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    };
    let (answer, _) = g
        .heartbeat(hb, &cat, &ConsumerGroupConfig::default(), 0)
        .expect("join");
    let got = answer.assignment.expect("assignment");
    assert_eq!(partition_count(&got), 4);
    assert!(!got.contains_key(&cat.id("other")));
    let epoch = g.group_epoch;
    if let Some(t) = cat.0.get_mut("orders") {
        t.partitions = 5;
    }
    assert!(g.refresh_subscriptions(&cat));
    assert_eq!(g.group_epoch, epoch + 1);
    assert!(!g.refresh_subscriptions(&cat));
    let mut a = Client {
        id: "a".into(),
        epoch: answer.member_epoch,
        owned: got,
    };
    beat(&mut g, &cat, &mut a, 1).expect("heartbeat");
    assert_eq!(partition_count(&a.owned), 7);
    let bad = Heartbeat {
        member_id: "a".into(),
        member_epoch: a.epoch,
        rebalance_timeout_ms: -1,
        subscribed_topic_regex: Some("(unclosed".into()),
        ..Heartbeat::default()
    };
    assert_eq!(
        g.heartbeat(bad, &cat, &ConsumerGroupConfig::default(), 2),
        Err(ResponseError::InvalidRegularExpression)
    );
}

#[test]
fn a_static_member_returns_to_its_partitions() {
    let cat = Catalog::new(&[("t", 4)]);
    let config = ConsumerGroupConfig::default();
    let mut g = ConsumerGroup::new("g", 0);
    let static_join = |g: &mut ConsumerGroup, id: &str| {
        let hb = Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            instance_id: Some("i1".into()),
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            ..Heartbeat::default()
        };
        g.heartbeat(hb, &cat, &config, 0)
    };
    let (first, _) = static_join(&mut g, "m1").expect("join");
    let owned = first.assignment.clone().expect("assignment");
    assert_eq!(partition_count(&owned), 4);
    // Another process with the same instance id while m1 is alive.
    assert_eq!(
        static_join(&mut g, "m2").map(|_| ()),
        Err(ResponseError::UnreleasedInstanceId)
    );
    let leave = Heartbeat {
        member_id: "m1".into(),
        member_epoch: STATIC_LEAVE_EPOCH,
        instance_id: Some("i1".into()),
        ..Heartbeat::default()
    };
    g.heartbeat(leave, &cat, &config, 1).expect("leave");
    let epoch = g.group_epoch;
    let (back, _) = static_join(&mut g, "m2").expect("rejoin");
    assert_eq!(back.assignment, Some(owned));
    assert_eq!(back.member_epoch, first.member_epoch);
    assert_eq!(
        g.group_epoch, epoch,
        "a returning static member is no rebalance"
    );
    assert!(!g.members.contains_key("m1"));
}

#[test]
fn requests_the_protocol_forbids_are_refused() {
    let cat = Catalog::new(&[("t", 1)]);
    let config = ConsumerGroupConfig::default();
    let mut g = ConsumerGroup::new("g", 0);
    let no_subscription = Heartbeat {
        member_id: "a".into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    };
    assert_eq!(
        g.heartbeat(no_subscription, &cat, &config, 0),
        Err(ResponseError::InvalidRequest)
    );
    let odd_epoch = Heartbeat {
        member_id: "a".into(),
        member_epoch: -7,
        ..Heartbeat::default()
    };
    assert_eq!(
        g.heartbeat(odd_epoch, &cat, &config, 0),
        Err(ResponseError::InvalidRequest)
    );
    let unknown_assignor = Heartbeat {
        member_id: "a".into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        server_assignor: Some("sticky-magic".into()),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    };
    assert_eq!(
        g.heartbeat(unknown_assignor, &cat, &config, 0),
        Err(ResponseError::UnsupportedAssignor)
    );
    let small = ConsumerGroupConfig {
        max_size: 1,
        ..config
    };
    join(&mut g, &cat, "a", &["t"], 0);
    let second = Heartbeat {
        member_id: "b".into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    };
    assert_eq!(
        g.heartbeat(second, &cat, &small, 0),
        Err(ResponseError::GroupMaxSizeReached)
    );
    assert_eq!(g.mark_dead(), Err(ResponseError::NonEmptyGroup));
}

#[test]
fn a_group_survives_a_round_trip_through_its_record() {
    let cat = Catalog::new(&[("t", 3)]);
    let mut g = ConsumerGroup::new("g", 0);
    join(&mut g, &cat, "a", &["t"], 0);
    let bytes = serde_json::to_vec(&g).expect("serialize");
    let back: ConsumerGroup = serde_json::from_slice(&bytes).expect("deserialize");
    assert_eq!(back.restore(0), g);
}

use crate::group::test_rng::Rng;

/// Random joins, leaves, crashes, lagging heartbeats and growing topics, with obedient
/// clients: no partition is ever owned by two live clients, and once everyone heartbeats
/// the group settles with every subscribed partition owned exactly once.
#[test]
fn random_schedules_never_give_a_partition_to_two_members() {
    let config = ConsumerGroupConfig::default();
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut cat = Catalog::new(&[("t1", 4), ("t2", 3)]);
        let mut g = ConsumerGroup::new("g", 0);
        let mut clients: Vec<(Client, Vec<&str>)> = Vec::new();
        let mut now = 0i64;
        let mut next_id = 0;
        for _ in 0..120 {
            now += 100;
            match rng.below(10) {
                0 | 1 if clients.len() < 5 => {
                    let topics: Vec<&str> = match rng.below(3) {
                        0 => vec!["t1"],
                        1 => vec!["t2"],
                        _ => vec!["t1", "t2"],
                    };
                    next_id += 1;
                    let c = join(&mut g, &cat, &format!("m{next_id}"), &topics, now);
                    clients.push((c, topics));
                }
                2 if !clients.is_empty() => {
                    let (c, _) = clients.remove(rng.below(clients.len()));
                    let hb = Heartbeat {
                        member_id: c.id,
                        member_epoch: LEAVE_EPOCH,
                        ..Heartbeat::default()
                    };
                    g.heartbeat(hb, &cat, &config, now).expect("leave");
                }
                3 if !clients.is_empty() => {
                    // A crash: the coordinator notices after the session timeout.
                    clients.remove(rng.below(clients.len()));
                    now += config.session_timeout_ms + 1;
                    for (c, _) in &mut clients {
                        beat(&mut g, &cat, c, now - 1).expect("heartbeat");
                    }
                    g.tick(&config, now);
                }
                4 => {
                    let name = if rng.below(2) == 0 { "t1" } else { "t2" };
                    if let Some(t) = cat.0.get_mut(name) {
                        t.partitions += 1;
                    }
                    g.refresh_subscriptions(&cat);
                }
                5 if !clients.is_empty() => {
                    // A heartbeat that does not report what the client owns.
                    let i = rng.below(clients.len());
                    let c = &mut clients[i].0;
                    let hb = Heartbeat {
                        member_id: c.id.clone(),
                        member_epoch: c.epoch,
                        rebalance_timeout_ms: -1,
                        owned: None,
                        ..Heartbeat::default()
                    };
                    let (a, _) = g.heartbeat(hb, &cat, &config, now).expect("heartbeat");
                    c.epoch = a.member_epoch;
                    if let Some(assignment) = a.assignment {
                        c.owned = assignment;
                    }
                }
                _ if !clients.is_empty() => {
                    let i = rng.below(clients.len());
                    beat(&mut g, &cat, &mut clients[i].0, now).expect("heartbeat");
                }
                _ => {}
            }
            let live: Vec<&Client> = clients.iter().map(|(c, _)| c).collect();
            assert_exclusive(&g, &live);
        }
        // Everyone heartbeats until the group is stable.
        let mut settled = false;
        for _ in 0..20 {
            now += 100;
            for (c, _) in &mut clients {
                beat(&mut g, &cat, c, now).expect("heartbeat");
            }
            let live: Vec<&Client> = clients.iter().map(|(c, _)| c).collect();
            assert_exclusive(&g, &live);
            if g.state() == ConsumerGroupState::Stable || clients.is_empty() {
                settled = true;
                break;
            }
        }
        assert!(settled, "seed {seed}: {:?}", g.state());
        for name in ["t1", "t2"] {
            if !clients.iter().any(|(_, ts)| ts.contains(&name)) {
                continue;
            }
            let t = &cat.0[name];
            let owned: usize = clients
                .iter()
                .map(|(c, _)| c.owned.get(&t.id).map_or(0, BTreeSet::len))
                .sum();
            assert_eq!(owned, t.partitions as usize, "seed {seed}: {name}");
        }
    }
}

#[test]
fn a_regex_member_is_only_given_topics_it_may_see() {
    let mut cat = Catalog::new(&[("open", 2), ("secret", 2)]);
    cat.1.insert("secret".into());
    let config = ConsumerGroupConfig::default();
    let mut g = ConsumerGroup::new("g", 0);
    let regex_join = |g: &mut ConsumerGroup, id: &str, principal: &str| {
        let hb = Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_regex: Some(".*".into()),
            owned: Some(Assignment::new()),
            principal: principal.into(),
            ..Heartbeat::default()
        };
        g.heartbeat(hb, &cat, &config, 0).expect("join")
    };
    let (alice, _) = regex_join(&mut g, "a", "User:alice");
    let got = alice.assignment.expect("assignment");
    assert_eq!(partition_count(&got), 2);
    assert!(got.contains_key(&cat.id("open")) && !got.contains_key(&cat.id("secret")));
    // Someone who may see both takes the topic alice may not have.
    regex_join(&mut g, "b", "User:bob");
    assert!(g.target["b"].contains_key(&cat.id("secret")));
    assert!(!g.target["a"].contains_key(&cat.id("secret")));
}
