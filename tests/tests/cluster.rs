//! Multi-process clusters on loopback: the metadata quorum forms, converges, survives
//! the loss of its leader and of brokers, restarts intact, and changes its voters.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fjord_tests::wire::Wire;
use fjord_tests::{topic_name, wait_until, Cluster, Node};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, MetadataRequest,
    MetadataResponse, ProduceRequest,
};
use serde_json::Value;

/// Aggressive timeouts so failures are detected in tests within a few seconds.
const FAST: &[&str] = &[
    "--override",
    "broker.session.timeout.ms=2000",
    "--override",
    "broker.heartbeat.interval.ms=200",
    "--override",
    "controller.quorum.election.timeout.ms=300",
];
const SESSION: Duration = Duration::from_millis(2000);

fn create_on(node: &Node, topic: &str, partitions: i32) -> i16 {
    let mut w = Wire::connect(&node.bootstrap());
    let r = w.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(1)]),
    );
    r.topics[0].error_code
}

fn metadata(node: &Node, topics: Option<&[&str]>) -> MetadataResponse {
    let mut w = Wire::connect(&node.bootstrap());
    let req = MetadataRequest::default().with_topics(topics.map(|t| {
        t.iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
            .collect()
    }));
    w.call(12, &req)
}

/// The topics of a node's `/v1/cluster`, for comparing nodes.
fn topics_of(c: &Cluster, id: i32) -> Option<Value> {
    c.status(id).map(|v| v["topics"].clone())
}

fn cli(node: &Node, args: &[&str]) -> std::process::Output {
    fjord_tests::fjord_cli()
        .args(args)
        .env("FJORD_ADMIN_SERVER", node.admin_addr())
        .env("FJORD_BOOTSTRAP_SERVER", node.bootstrap())
        .output()
        .expect("run fjord")
}

#[test]
fn three_voters_and_a_learner_converge_and_route_by_leader() {
    let mut c = Cluster::start(3, 1, FAST);
    for i in 0..50 {
        let id = 1 + (i * 7 % 4);
        let code = create_on(c.node(id), &format!("topic-{i}"), 1 + (i % 3));
        assert_eq!(code, 0, "create topic-{i} through node {id}");
    }
    let reference = wait_until(
        "every node has all 50 topics",
        Duration::from_secs(30),
        || {
            let first = topics_of(&c, 1)?;
            (first.as_array()?.len() == 50).then_some(first)
        },
    );
    wait_until(
        "all nodes converge to the same metadata",
        Duration::from_secs(30),
        || {
            (1..=4)
                .all(|id| topics_of(&c, id).as_ref() == Some(&reference))
                .then_some(())
        },
    );
    let status = c.status(4).expect("learner status");
    let nodes = status["quorum"]["nodes"]
        .as_array()
        .expect("quorum nodes")
        .clone();
    let voters: BTreeSet<i64> = nodes
        .iter()
        .filter(|n| n["voter"] == true)
        .filter_map(|n| n["node_id"].as_i64())
        .collect();
    let learners: BTreeSet<i64> = nodes
        .iter()
        .filter(|n| n["voter"] == false)
        .filter_map(|n| n["node_id"].as_i64())
        .collect();
    assert_eq!(voters, BTreeSet::from([1, 2, 3]));
    assert_eq!(learners, BTreeSet::from([4]));

    // Every node answers Metadata from its own copy: all four brokers, same leaders.
    let views: Vec<MetadataResponse> = (1..=4).map(|id| metadata(c.node(id), None)).collect();
    for v in &views {
        assert_eq!(v.brokers.len(), 4);
        assert_eq!(v.topics.len(), 50);
        assert_eq!(v.cluster_id, views[0].cluster_id);
    }
    // Leaders are spread over all brokers.
    let leaders: BTreeSet<i32> = views[0]
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.leader_id.0))
        .collect();
    assert_eq!(leaders, BTreeSet::from([1, 2, 3, 4]));
    // A produce sent to a broker that does not lead the partition is refused.
    let t = &views[0].topics[0];
    let (name, leader) = (
        t.name.as_ref().expect("name").0.to_string(),
        t.partitions[0].leader_id.0,
    );
    let wrong = if leader == 1 { 2 } else { 1 };
    let mut w = Wire::connect(&c.node(wrong).bootstrap());
    let r = w.call(
        9,
        &ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&name))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(fjord_tests::record_batch(1, 3, 0, None)))])]),
    );
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 6,
        "NOT_LEADER_OR_FOLLOWER"
    );
    let cli_status = cli(c.node(2), &["cluster", "status"]);
    let text = String::from_utf8_lossy(&cli_status.stdout);
    assert!(cli_status.status.success());
    assert!(
        text.contains("learner") && text.contains("Offline partitions: 0"),
        "{text}"
    );
}

#[test]
fn losing_the_active_controller_elects_another_and_writes_resume() {
    let mut c = Cluster::start(3, 0, FAST);
    assert_eq!(create_on(c.node(1), "before", 1), 0);
    let old = c.active_controller().expect("active controller");
    let killed_at = Instant::now();
    c.node(old).kill9();
    let survivor = if old == 1 { 2 } else { 1 };
    let new = wait_until("a new active controller", Duration::from_secs(30), || {
        c.active_controller().filter(|id| *id != old)
    });
    wait_until("writes accepted again", Duration::from_secs(30), || {
        (create_on(c.node(survivor), "after", 1) == 0).then_some(())
    });
    println!("controller {old} -> {new} in {:?}", killed_at.elapsed());
    c.node(old).restart();
    wait_until(
        "the old controller catches up",
        Duration::from_secs(30),
        || {
            let t = topics_of(&c, old)?;
            t.as_array()?
                .iter()
                .any(|x| x["name"] == "after")
                .then_some(())
        },
    );
}

#[test]
fn a_dead_broker_is_fenced_and_comes_back() {
    let mut c = Cluster::start(3, 0, FAST);
    assert_eq!(create_on(c.node(1), "spread", 9), 0);
    let controller = c.active_controller().expect("controller");
    let victim = (1..=3)
        .find(|id| *id != controller)
        .expect("a non-controller broker");
    let observer = (1..=3).find(|id| *id != victim).expect("observer");
    let owned: Vec<i32> = wait_until("partitions placed", Duration::from_secs(10), || {
        let md = metadata(c.node(observer), Some(&["spread"]));
        let owned: Vec<i32> = md.topics[0]
            .partitions
            .iter()
            .filter(|p| p.leader_id.0 == victim)
            .map(|p| p.partition_index)
            .collect();
        (!owned.is_empty()).then_some(owned)
    });
    let killed_at = Instant::now();
    c.node(victim).kill9();
    wait_until(
        "the dead broker is fenced",
        SESSION + Duration::from_secs(1),
        || {
            let md = metadata(c.node(observer), Some(&["spread"]));
            let gone = md.brokers.iter().all(|b| b.node_id.0 != victim);
            let leaderless = md.topics[0]
                .partitions
                .iter()
                .filter(|p| owned.contains(&p.partition_index))
                .all(|p| {
                    p.leader_id.0 == -1
                        && p.error_code == 5
                        && p.offline_replicas.iter().any(|r| r.0 == victim)
                });
            (gone && leaderless).then_some(())
        },
    );
    println!(
        "broker {victim} fenced {:?} after the kill",
        killed_at.elapsed()
    );
    let status = c.status(observer).expect("status");
    assert!(status["fenced_brokers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|b| b == victim)));
    assert_eq!(
        status["offline_partitions"].as_array().map(Vec::len),
        Some(owned.len())
    );

    c.node(victim).restart();
    wait_until("its partitions come back", Duration::from_secs(30), || {
        let md = metadata(c.node(observer), Some(&["spread"]));
        let back = md.topics[0]
            .partitions
            .iter()
            .filter(|p| owned.contains(&p.partition_index))
            .all(|p| p.leader_id.0 == victim && p.error_code == 0);
        (back && md.brokers.len() == 3).then_some(())
    });
}

/// A controller left without its quorum cannot fence anyone (its proposals fail at once).
/// It must retry at its tick, not on every Raft metrics change: that spun, writing
/// millions of log lines a minute. Once a peer is back, the dead broker is fenced.
#[test]
fn a_controller_without_its_quorum_retries_fencing_quietly() {
    let mut c = Cluster::start(3, 0, FAST);
    let controller = c.active_controller().expect("controller");
    let others: Vec<i32> = (1..=3).filter(|id| *id != controller).collect();
    for id in &others {
        c.node(*id).kill9();
    }
    let attempts = |c: &mut Cluster| c.node(controller).log().matches("fencing").count();
    wait_until("a fencing attempt", SESSION * 5, || {
        (attempts(&mut c) > 0).then_some(())
    });
    // Long enough for dozens of ticks; the old loop logged thousands of lines by then.
    let window = Instant::now() + SESSION;
    while Instant::now() < window {
        std::thread::sleep(Duration::from_millis(100)); // observation window, not synchronization
    }
    let logged = attempts(&mut c);
    assert!(
        logged <= 4,
        "{logged} fencing lines: one attempt and one failure per dead broker expected"
    );
    assert!(c.node(controller).is_running());

    c.node(others[0]).restart();
    let dead = others[1];
    wait_until("the dead broker is fenced", Duration::from_secs(30), || {
        let status = c.status(controller)?;
        status["fenced_brokers"]
            .as_array()?
            .iter()
            .any(|b| *b == dead)
            .then_some(())
    });
}

#[test]
fn restarting_every_node_at_once_keeps_the_metadata() {
    let mut c = Cluster::start(3, 0, FAST);
    for i in 0..5 {
        assert_eq!(create_on(c.node(1 + i % 3), &format!("keep-{i}"), 2), 0);
    }
    let before = wait_until("converged", Duration::from_secs(20), || {
        let t = topics_of(&c, 1)?;
        ((1..=3).all(|id| topics_of(&c, id).as_ref() == Some(&t)) && t.as_array()?.len() == 5)
            .then_some(t)
    });
    let cluster_id = c.status(1).expect("status")["cluster_id"].clone();
    for id in 1..=3 {
        c.node(id).kill9();
    }
    for id in 1..=3 {
        c.node(id).spawn_again();
    }
    for id in 1..=3 {
        c.node(id).wait_ready(Duration::from_secs(60));
    }
    // Leader epochs move while brokers re-register; everything else must be as before.
    let shape = |topics: &Value| -> Vec<(String, String, String, String)> {
        topics
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| {
                t["partitions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |p| {
                        (
                            t["name"].to_string(),
                            t["id"].to_string(),
                            p["replicas"].to_string(),
                            p["leader"].to_string(),
                        )
                    })
            })
            .collect()
    };
    wait_until(
        "every node has the old topics and leaders back",
        Duration::from_secs(30),
        || {
            (1..=3)
                .all(|id| {
                    c.status(id).is_some_and(|s| {
                        s["cluster_id"] == cluster_id && shape(&s["topics"]) == shape(&before)
                    })
                })
                .then_some(())
        },
    );
    let inits = c
        .node(1)
        .log()
        .matches("initializing the metadata quorum")
        .count();
    assert_eq!(inits, 1, "the cluster is initialized exactly once");
    assert_eq!(create_on(c.node(2), "after-restart", 1), 0);
}

#[test]
fn voters_are_added_and_removed_at_runtime() {
    let mut c = Cluster::start(3, 2, FAST);
    let admin = c.node(1).admin_addr();
    let run = |args: &[&str]| {
        let o = fjord_tests::fjord_cli()
            .args(args)
            .env("FJORD_ADMIN_SERVER", &admin)
            .output()
            .expect("run fjord");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["cluster", "add-voter", "4"]);
    assert_eq!(code, Some(1), "four voters is refused without --force");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(run(&["cluster", "add-voter", "4", "--force"]).0, Some(0));
    assert_eq!(run(&["cluster", "add-voter", "5"]).0, Some(0));
    let voters = |c: &Cluster| -> BTreeSet<i64> {
        c.status(1)
            .and_then(|s| s["quorum"]["nodes"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|n| n["voter"] == true)
            .filter_map(|n| n["node_id"].as_i64())
            .collect()
    };
    wait_until("five voters", Duration::from_secs(20), || {
        (voters(&c).len() == 5).then_some(())
    });
    // With five voters, two may fail and writes continue.
    let leader = c.active_controller().expect("leader");
    let mut down = Vec::new();
    for id in (1..=5).filter(|id| *id != leader).take(2) {
        c.node(id).kill9();
        down.push(id);
    }
    assert_eq!(create_on(c.node(leader), "two-voters-down", 1), 0);
    for id in down {
        c.node(id).restart();
    }
    assert_eq!(
        run(&["cluster", "remove-voter", "5"]).0,
        Some(1),
        "four voters again needs --force"
    );
    assert_eq!(run(&["cluster", "remove-voter", "5", "--force"]).0, Some(0));
    assert_eq!(run(&["cluster", "remove-voter", "4"]).0, Some(0));
    wait_until("three voters", Duration::from_secs(20), || {
        (voters(&c) == BTreeSet::from([1, 2, 3])).then_some(())
    });
    assert_eq!(
        create_on(c.node(4), "after-removal", 1),
        0,
        "a demoted voter still serves as a broker"
    );
}

/// A kill -9 closes the broker's connections to the controllers; with default timeouts
/// it is fenced after `broker.session.disconnect.grace.ms` (500 ms), long before its
/// 9 s session would run out.
#[test]
fn a_crashed_broker_is_fenced_without_waiting_out_its_session() {
    let mut c = Cluster::start(3, 0, &[]);
    assert_eq!(create_on(c.node(1), "crash", 9), 0);
    let controller = c.active_controller().expect("controller");
    let victim = (1..=3).find(|id| *id != controller).expect("a broker");
    let observer = (1..=3).find(|id| *id != victim).expect("observer");
    wait_until("the victim leads", Duration::from_secs(10), || {
        let md = metadata(c.node(observer), Some(&["crash"]));
        md.topics[0]
            .partitions
            .iter()
            .any(|p| p.leader_id.0 == victim)
            .then_some(())
    });
    let killed_at = Instant::now();
    c.node(victim).kill9();
    // Half the session: only the closed connections can explain a fencing this soon.
    wait_until(
        "the crashed broker is fenced",
        Duration::from_millis(4500),
        || {
            let md = metadata(c.node(observer), Some(&["crash"]));
            md.brokers
                .iter()
                .all(|b| b.node_id.0 != victim)
                .then_some(())
        },
    );
    println!(
        "broker {victim} fenced {:?} after kill -9",
        killed_at.elapsed()
    );
    // Back at once with a new process: it registers again and leads its partitions.
    c.node(victim).restart();
    wait_until("it is back", Duration::from_secs(30), || {
        let md = metadata(c.node(observer), Some(&["crash"]));
        md.brokers
            .iter()
            .any(|b| b.node_id.0 == victim)
            .then_some(())
    });
}

/// CreateTopics and DeleteTopics answer once every live broker knows: a Fetch to the
/// new topic's leader and a Metadata request to any broker, sent right after the
/// answer, see the change without retrying.
#[test]
fn topic_changes_are_known_to_every_broker_when_acknowledged() {
    let mut c = Cluster::start(3, 0, &[]);
    for round in 0..20 {
        let topic = format!("seen-{round}");
        let via = round % 3 + 1;
        assert_eq!(create_on(c.node(via), &topic, 3), 0, "round {round}");
        for id in 1..=3 {
            let md = metadata_no_create(c.node(id), &topic);
            let t = &md.topics[0];
            assert_eq!(t.error_code, 0, "round {round}: broker {id} {t:?}");
            for p in &t.partitions {
                assert!(p.leader_id.0 > 0, "round {round}: broker {id} {p:?}");
            }
        }
        let leader = metadata_no_create(c.node(1), &topic).topics[0].partitions[0]
            .leader_id
            .0;
        let mut w = Wire::connect(&c.node(leader).bootstrap());
        let f = w.call(12, &fetch_from_start(&topic));
        assert_eq!(
            f.responses[0].partitions[0].error_code, 0,
            "round {round}: fetch from leader {leader}"
        );

        let via = (round + 1) % 3 + 1;
        let mut w = Wire::connect(&c.node(via).bootstrap());
        let d = w.call(
            6,
            &DeleteTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic_name(&topic)))
                ]),
        );
        assert_eq!(d.responses[0].error_code, 0, "round {round}: delete");
        for id in 1..=3 {
            let md = metadata_no_create(c.node(id), &topic);
            assert_eq!(
                md.topics[0].error_code, 3,
                "round {round}: broker {id} still lists the deleted topic: {:?}",
                md.topics[0]
            );
        }
    }
}

fn metadata_no_create(node: &Node, topic: &str) -> MetadataResponse {
    let mut w = Wire::connect(&node.bootstrap());
    w.call(
        12,
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ])),
    )
}

fn fetch_from_start(topic: &str) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}
