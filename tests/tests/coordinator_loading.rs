//! A coordinator that is still loading says so. Right after `__consumer_offsets` (or
//! `__transaction_state`) is created, the broker FindCoordinator names leads the key's
//! partition in its metadata before its shard has been made and loaded. Kafka answers
//! COORDINATOR_LOAD_IN_PROGRESS then, which every client backs off on and retries at the
//! same broker; NOT_COORDINATOR sends clients back to FindCoordinator, and some (sarama's
//! ListConsumerGroupOffsets) give up on it. NOT_COORDINATOR stays the answer of a broker
//! that does not lead the partition.

use std::time::{Duration, Instant};

use fjord_tests::wire::Wire;
use fjord_tests::{Cluster, Node};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, InitProducerIdRequest, OffsetFetchRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;
/// Keys per round: enough to land on most of the 50 partitions of each topic.
const KEYS: usize = 120;
/// How long the shards of a fresh topic may take to load on a debug build.
const SETTLE: Duration = Duration::from_secs(30);

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// The coordinator FindCoordinator (v3) names for `key`, asking until it names one
/// (the first ask creates the internal topic and may answer COORDINATOR_NOT_AVAILABLE).
fn coordinator(bootstrap: &str, key: &str, key_type: i8) -> i32 {
    let deadline = Instant::now() + SETTLE;
    let mut wire = Wire::connect(bootstrap);
    loop {
        let r = wire.call(
            3,
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(key.to_string()))
                .with_key_type(key_type),
        );
        if r.error_code == 0 {
            return r.node_id.0;
        }
        assert_eq!(
            r.error_code,
            code(ResponseError::CoordinatorNotAvailable),
            "FindCoordinator({key})"
        );
        assert!(Instant::now() < deadline, "no coordinator for {key}");
        std::thread::sleep(Duration::from_millis(10)); // retry backoff, as a client's
    }
}

/// One request per key, all sent before any answer is read (so they reach the broker
/// within a millisecond of the topic's creation), then their error codes.
fn pipelined(wire: &mut Wire, keys: &[String], key_type: i8) -> Vec<i16> {
    match key_type {
        GROUP => {
            let ids: Vec<i32> = keys
                .iter()
                .map(|k| {
                    wire.send(
                        7,
                        &OffsetFetchRequest::default()
                            .with_group_id(GroupId(StrBytes::from_string(k.clone())))
                            .with_topics(None),
                    )
                })
                .collect();
            ids.into_iter()
                .map(|id| wire.receive::<OffsetFetchRequest>(7, id).error_code)
                .collect()
        }
        _ => {
            let ids: Vec<i32> = keys
                .iter()
                .map(|k| {
                    wire.send(
                        4,
                        &InitProducerIdRequest::default()
                            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                                k.clone(),
                            ))))
                            .with_transaction_timeout_ms(60_000)
                            .with_producer_id((-1).into())
                            .with_producer_epoch(-1),
                    )
                })
                .collect();
            ids.into_iter()
                .map(|id| wire.receive::<InitProducerIdRequest>(4, id).error_code)
                .collect()
        }
    }
}

/// Asks every broker for every key, all requests at once, until each key has a broker
/// that answers it (0) and none is loading, and checks each broker's answers against the
/// coordinator FindCoordinator then names for the key: that broker answered only 0 or
/// COORDINATOR_LOAD_IN_PROGRESS, every other one only NOT_COORDINATOR. Returns how many
/// answers were "loading".
fn until_loaded(
    round: &str,
    bootstrap: &str,
    brokers: &[(i32, String)],
    keys: &[String],
    key_type: i8,
) -> usize {
    let deadline = Instant::now() + SETTLE;
    let mut wires: Vec<Wire> = brokers.iter().map(|(_, a)| Wire::connect(a)).collect();
    // seen[b][k]: every code broker b answered for key k.
    let mut seen = vec![vec![std::collections::BTreeSet::new(); keys.len()]; brokers.len()];
    loop {
        let answers: Vec<Vec<i16>> = wires
            .iter_mut()
            .map(|w| pipelined(w, keys, key_type))
            .collect();
        for (b, codes) in answers.iter().enumerate() {
            for (k, c) in codes.iter().enumerate() {
                seen[b][k].insert(*c);
            }
        }
        let settled = (0..keys.len()).all(|k| {
            answers.iter().any(|codes| codes[k] == 0)
                && answers
                    .iter()
                    .all(|codes| codes[k] != code(ResponseError::CoordinatorLoadInProgress))
        });
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{round}: not every key answered after {SETTLE:?}"
        );
        std::thread::sleep(Duration::from_millis(5)); // a client's load backoff
    }
    let loading_code = code(ResponseError::CoordinatorLoadInProgress);
    let mut wrong = Vec::new();
    let mut loading = 0;
    for (k, key) in keys.iter().enumerate() {
        let named = coordinator(bootstrap, key, key_type);
        for (b, (id, _)) in brokers.iter().enumerate() {
            let codes = &seen[b][k];
            loading += usize::from(codes.contains(&loading_code));
            let allowed: &[i16] = if *id == named {
                &[0, loading_code]
            } else {
                &[code(ResponseError::NotCoordinator)]
            };
            if !codes.iter().all(|c| allowed.contains(c)) {
                wrong.push((key.clone(), *id, named, codes.clone()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{round}: wrong answers (key, broker, coordinator, codes; 14 = loading, \
         16 = NOT_COORDINATOR) for {} of {} keys: {:?}",
        wrong.len(),
        keys.len(),
        &wrong[..wrong.len().min(10)]
    );
    loading
}

fn keys(prefix: &str) -> Vec<String> {
    (0..KEYS).map(|i| format!("{prefix}-{i}")).collect()
}

/// Fresh single nodes: the first FindCoordinator creates the topic, and at once every
/// key is asked of the named broker (the only one).
#[test]
fn a_fresh_coordinator_topic_answers_load_in_progress_not_not_coordinator() {
    for round in 0..3 {
        for (key_type, what) in [(GROUP, "group"), (TRANSACTION, "transactional id")] {
            let node = Node::start();
            let keys = keys(&format!("round{round}"));
            let named = coordinator(&node.bootstrap(), &keys[0], key_type);
            assert_eq!(named, node.node_id);
            let loading = until_loaded(
                &format!("round {round}, {what}"),
                &node.bootstrap(),
                &[(node.node_id, node.bootstrap())],
                &keys,
                key_type,
            );
            println!(
                "round {round}, {what}: {loading} keys were answered COORDINATOR_LOAD_IN_PROGRESS"
            );
        }
    }
}

/// A three-node cluster: right after the topic's creation every key is asked at every
/// broker; the one FindCoordinator names answers 0 or 14, the two others 16.
#[test]
fn in_a_cluster_only_the_partition_leader_answers_load_in_progress() {
    let cluster = Cluster::start(3, 0, &[]);
    let bootstrap = cluster.nodes[0].bootstrap();
    let brokers: Vec<(i32, String)> = cluster
        .nodes
        .iter()
        .map(|n| (n.node_id, n.bootstrap()))
        .collect();
    for (key_type, what) in [(GROUP, "group"), (TRANSACTION, "transactional id")] {
        let keys = keys(what);
        coordinator(&bootstrap, &keys[0], key_type);
        let loading = until_loaded(what, &bootstrap, &brokers, &keys, key_type);
        println!("{what}: {loading} keys were answered COORDINATOR_LOAD_IN_PROGRESS");
    }
}
