//! The classic group protocol, driven call by call with a fake clock.

use kafka_protocol::error::ResponseError;

use super::state::*;

fn config(initial_delay: i64) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: initial_delay,
        ..GroupConfig::default()
    }
}

fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), p.as_bytes().to_vec()))
            .collect(),
        require_known_member_id: true,
    }
}

/// Gets a member id through KIP-394's MEMBER_ID_REQUIRED round trip.
fn member_id(g: &mut Group, now: i64) -> String {
    let (answer, _) = g.join(request("", &["range"]), &config(0), now);
    match answer {
        Answer::Now(r) => {
            assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
            r.member_id
        }
        Answer::Parked(_) => panic!("first join must ask for a member id"),
    }
}

fn joined(effects: &[Effect], member: &str) -> Option<JoinResult> {
    effects.iter().find_map(|e| match e {
        Effect::Join(m, r) if m == member => Some(r.clone()),
        _ => None,
    })
}

/// Two members in a stable generation: returns (group, leader, follower).
fn stable_pair() -> (Group, String, String) {
    let mut g = Group::new("g");
    let a = member_id(&mut g, 0);
    let b = member_id(&mut g, 0);
    let (first, _) = g.join(request(&a, &["range"]), &config(0), 0);
    assert!(
        matches!(first, Answer::Now(ref r) if r.error.is_none()),
        "a lone member completes at once"
    );
    // b's arrival starts a new rebalance; a must rejoin.
    let (second, _) = g.join(request(&b, &["range"]), &config(0), 1);
    assert!(matches!(second, Answer::Parked(_)));
    assert_eq!(
        g.heartbeat(&a, None, 1, 2),
        Err(ResponseError::RebalanceInProgress)
    );
    let (again, effects) = g.join(request(&a, &["range"]), &config(0), 3);
    let Answer::Now(ra) = again else {
        panic!("all members in: join completes")
    };
    let rb = joined(&effects, &b).expect("b answered");
    assert_eq!(ra.generation, 2);
    assert_eq!(rb.generation, 2);
    let leader = ra.leader.clone();
    assert_eq!(rb.leader, leader);
    let follower = if leader == a { b.clone() } else { a.clone() };
    let (leader_view, follower_view) = if leader == a { (&ra, &rb) } else { (&rb, &ra) };
    assert_eq!(leader_view.members.len(), 2, "the leader sees every member");
    assert!(follower_view.members.is_empty(), "followers see none");
    let (fs, _) = g.sync(&follower, None, 2, Vec::new(), 4);
    assert!(matches!(fs, Answer::Parked(_)));
    let (ls, effects) = g.sync(
        &leader,
        None,
        2,
        vec![
            (leader.clone(), b"L".to_vec()),
            (follower.clone(), b"F".to_vec()),
        ],
        5,
    );
    let Answer::Now(ls) = ls else {
        panic!("leader sync answers at once")
    };
    assert_eq!(ls.assignment, b"L");
    let fs = effects
        .iter()
        .find_map(|e| match e {
            Effect::Sync(m, r) if *m == follower => Some(r.clone()),
            _ => None,
        })
        .expect("follower answered");
    assert_eq!(fs.assignment, b"F");
    assert!(effects.iter().any(|e| matches!(e, Effect::Persist(_))));
    assert_eq!(g.phase, GroupPhase::Stable);
    (g, leader, follower)
}

#[test]
fn members_join_sync_and_get_their_assignment() {
    let (g, leader, follower) = stable_pair();
    assert_eq!(g.generation, 2);
    assert_ne!(leader, follower);
}

#[test]
fn unknown_member_ids_are_refused() {
    let mut g = Group::new("g");
    let (answer, _) = g.join(request("made-up", &["range"]), &config(0), 0);
    assert!(matches!(answer, Answer::Now(r) if r.error == Some(ResponseError::UnknownMemberId)));
}

#[test]
fn old_clients_join_without_the_member_id_round_trip() {
    let mut g = Group::new("g");
    let mut req = request("", &["range"]);
    req.require_known_member_id = false;
    let (answer, _) = g.join(req, &config(0), 0);
    let Answer::Now(r) = answer else {
        panic!("completes at once")
    };
    assert_eq!(r.error, None);
    assert!(!r.member_id.is_empty());
    assert_eq!(r.leader, r.member_id);
}

#[test]
fn initial_delay_holds_the_first_generation_for_late_joiners() {
    let mut g = Group::new("g");
    let a = member_id(&mut g, 0);
    let (answer, _) = g.join(request(&a, &["range"]), &config(3_000), 0);
    assert!(matches!(answer, Answer::Parked(_)));
    let b = member_id(&mut g, 1_000);
    let (answer, _) = g.join(request(&b, &["range"]), &config(3_000), 1_000);
    assert!(matches!(answer, Answer::Parked(_)));
    assert!(g.tick(2_999).iter().all(|e| !matches!(e, Effect::Join(..))));
    let effects = g.tick(3_000);
    assert_eq!(joined(&effects, &a).map(|r| r.generation), Some(1));
    assert_eq!(joined(&effects, &b).map(|r| r.generation), Some(1));
}

#[test]
fn a_silent_member_is_expired_and_the_rest_rebalance() {
    let (mut g, leader, follower) = stable_pair();
    // Only the leader keeps heartbeating.
    assert_eq!(g.heartbeat(&leader, None, 2, 9_000), Ok(()));
    let effects = g.tick(10_006);
    assert!(effects.is_empty() || effects.iter().all(|e| !matches!(e, Effect::Join(..))));
    assert!(!g.members.contains_key(&follower));
    assert_eq!(g.phase, GroupPhase::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&leader, None, 2, 10_007),
        Err(ResponseError::RebalanceInProgress)
    );
    let (answer, _) = g.join(request(&leader, &["range"]), &config(0), 10_008);
    let Answer::Now(r) = answer else {
        panic!("sole member completes")
    };
    assert_eq!(r.generation, 3);
    assert_eq!(r.members.len(), 1);
}

#[test]
fn rebalance_deadline_drops_members_that_do_not_rejoin() {
    let (mut g, leader, follower) = stable_pair();
    let c = member_id(&mut g, 100);
    let (answer, _) = g.join(request(&c, &["range"]), &config(0), 100);
    assert!(matches!(answer, Answer::Parked(_)));
    let (answer, _) = g.join(request(&leader, &["range"]), &config(0), 200);
    assert!(matches!(answer, Answer::Parked(_)));
    // The follower keeps heartbeating but never rejoins: at the rebalance timeout it is
    // dropped and the others go ahead.
    for t in (1_000..30_000).step_by(1_000) {
        let _ = g.heartbeat(&follower, None, 2, t);
        assert!(g.tick(t).is_empty(), "no answer before the deadline ({t})");
    }
    let effects = g.tick(30_100);
    assert_eq!(joined(&effects, &c).map(|r| r.generation), Some(3));
    assert!(joined(&effects, &leader).is_some());
    assert!(!g.members.contains_key(&follower));
}

#[test]
fn leaving_members_trigger_a_rebalance_and_the_last_empties_the_group() {
    let (mut g, leader, follower) = stable_pair();
    let (r, _) = g.leave(&follower, None, 10);
    assert_eq!(r, Ok(()));
    assert_eq!(g.phase, GroupPhase::PreparingRebalance);
    let (r, effects) = g.leave(&leader, None, 11);
    assert_eq!(r, Ok(()));
    assert_eq!(g.phase, GroupPhase::Empty);
    assert_eq!(g.empty_since_ms, Some(11));
    assert!(effects.iter().any(|e| matches!(e, Effect::Persist(_))));
    assert_eq!(
        g.leave(&leader, None, 12).0,
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn the_group_votes_for_a_protocol_every_member_supports() {
    let mut g = Group::new("g");
    let a = member_id(&mut g, 0);
    let (answer, _) = g.join(request(&a, &["range", "roundrobin"]), &config(1_000), 0);
    assert!(matches!(answer, Answer::Parked(_)));
    let b = member_id(&mut g, 0);
    let (answer, _) = g.join(request(&b, &["roundrobin", "range"]), &config(1_000), 0);
    assert!(matches!(answer, Answer::Parked(_)));
    let c = member_id(&mut g, 0);
    let (answer, _) = g.join(request(&c, &["roundrobin"]), &config(1_000), 0);
    assert!(matches!(answer, Answer::Parked(_)));
    let effects = g.tick(1_000);
    let r = joined(&effects, &a).expect("answered");
    assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
    // A member supporting none of the group's protocols is turned away.
    let (answer, _) = g.join(request("", &["sticky"]), &config(0), 1_001);
    assert!(
        matches!(answer, Answer::Now(r) if r.error == Some(ResponseError::InconsistentGroupProtocol))
    );
}

#[test]
fn session_timeouts_outside_the_broker_bounds_are_refused() {
    let mut g = Group::new("g");
    let mut req = request("", &["range"]);
    req.session_timeout_ms = 10;
    let (answer, _) = g.join(req, &config(0), 0);
    assert!(
        matches!(answer, Answer::Now(r) if r.error == Some(ResponseError::InvalidSessionTimeout))
    );
}

fn static_request(instance: &str, member_id: &str) -> JoinRequest {
    let mut r = request(member_id, &["range"]);
    r.instance_id = Some(instance.to_string());
    r
}

#[test]
fn a_static_member_restarting_keeps_its_assignment_without_a_rebalance() {
    let mut g = Group::new("g");
    let (answer, _) = g.join(static_request("i-1", ""), &config(0), 0);
    let Answer::Now(first) = answer else {
        panic!("lone static member completes")
    };
    assert_eq!(first.error, None);
    let old = first.member_id.clone();
    let (s, _) = g.sync(&old, Some("i-1"), 1, vec![(old.clone(), b"P0".to_vec())], 1);
    assert!(matches!(s, Answer::Now(r) if r.assignment == b"P0"));
    // The process restarts: no member id, same instance id.
    let (answer, effects) = g.join(static_request("i-1", ""), &config(0), 5_000);
    let Answer::Now(again) = answer else {
        panic!("answered at once")
    };
    assert_eq!(again.error, None);
    assert_eq!(again.generation, 1, "no new generation");
    assert_ne!(again.member_id, old);
    assert!(effects.iter().any(|e| matches!(e, Effect::Persist(_))));
    assert_eq!(g.phase, GroupPhase::Stable);
    let (s, _) = g.sync(&again.member_id, Some("i-1"), 1, Vec::new(), 5_001);
    assert!(
        matches!(s, Answer::Now(r) if r.assignment == b"P0"),
        "assignment kept"
    );
    // The old process, if it is still alive, is fenced.
    assert_eq!(
        g.heartbeat(&old, Some("i-1"), 1, 5_002),
        Err(ResponseError::FencedInstanceId)
    );
    let (answer, _) = g.join(static_request("i-1", &old), &config(0), 5_003);
    assert!(matches!(answer, Answer::Now(r) if r.error == Some(ResponseError::FencedInstanceId)));
}

#[test]
fn commits_are_checked_against_membership_and_generation() {
    let (g, leader, _) = stable_pair();
    assert_eq!(g.check_commit(&leader, None, 2), Ok(()));
    assert_eq!(
        g.check_commit(&leader, None, 1),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.check_commit("nobody", None, 2),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.check_commit("", None, -1),
        Err(ResponseError::UnknownMemberId)
    );
    let empty = Group::new("simple");
    assert_eq!(
        empty.check_commit("", None, -1),
        Ok(()),
        "simple consumers may commit"
    );
}

#[test]
fn a_restored_group_keeps_generation_members_and_assignments() {
    let (g, leader, follower) = stable_pair();
    let restored = Group::restore(&g.snapshot(), 100_000);
    assert_eq!(restored.generation, 2);
    assert_eq!(restored.phase, GroupPhase::Stable);
    assert_eq!(restored.leader.as_deref(), Some(leader.as_str()));
    assert_eq!(restored.members[&follower].assignment, b"F");
    assert_eq!(restored.members[&follower].last_heard_ms, 100_000);
}

#[test]
fn only_empty_groups_can_be_deleted() {
    let (mut g, leader, follower) = stable_pair();
    assert_eq!(g.mark_dead(), Err(ResponseError::NonEmptyGroup));
    let _ = g.leave(&leader, None, 1);
    let _ = g.leave(&follower, None, 2);
    assert_eq!(g.mark_dead(), Ok(()));
    let (answer, _) = g.join(request("", &["range"]), &config(0), 3);
    assert!(
        matches!(answer, Answer::Now(r) if r.error == Some(ResponseError::CoordinatorNotAvailable))
    );
}
