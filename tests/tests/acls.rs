//! ACLs against real clients and real processes: a principal without ACLs gets Kafka's
//! authorization error for each kind of resource, then prefixed, denying and removed ACLs
//! change what it may do (the raw protocol, kcat and the `fjord` CLI).

use std::time::Duration;

use fjord_tests::certs::Certs;
use fjord_tests::secure::*;
use fjord_tests::wire::Wire;
use fjord_tests::{topic_name, wait_until};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, CreateAclsRequest, CreateTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, FindCoordinatorRequest, GroupId, InitProducerIdRequest,
    MetadataRequest, OffsetCommitRequest, ProduceRequest, ProducerId, ShareFetchRequest,
    TransactionalId,
};

fn produce(w: &mut Wire, topic: &str) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(fjord_tests::record_batch(2, 10, 0, None)))])]);
    let resp = w.call(9, &req);
    resp.responses[0].partition_responses[0].error_code
}

/// Metadata v12 of one topic: (error code, authorized operations).
fn describe_topic(w: &mut Wire, topic: &str) -> (i16, i32) {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_include_topic_authorized_operations(true)
        .with_allow_auto_topic_creation(false);
    let resp = w.call(12, &req);
    let t = &resp.topics[0];
    (t.error_code, t.topic_authorized_operations)
}

fn offset_commit(w: &mut Wire, group: &str, topic: &str) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)])]);
    let resp = w.call(8, &req);
    resp.topics[0].partitions[0].error_code
}

fn init_producer_id(w: &mut Wire, transactional_id: Option<&str>) -> i16 {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(transactional_id.map(|t| TransactionalId(s(t))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    w.call(4, &req).error_code
}

/// Calls `f` until its answer is not a coordinator still starting (the first group or
/// transactional id creates its internal topic), and returns that answer.
fn once_coordinated(mut f: impl FnMut() -> i16) -> i16 {
    wait_until("a loaded coordinator", Duration::from_secs(60), || {
        let code = f();
        (![
            COORDINATOR_LOAD_IN_PROGRESS,
            COORDINATOR_NOT_AVAILABLE,
            NOT_COORDINATOR,
        ]
        .contains(&code))
        .then_some(code)
    })
}

/// Kafka's bit for an ACL operation in authorized-operations fields.
fn bit(op: i8) -> i32 {
    1 << op
}
const READ: i8 = 3;
const WRITE: i8 = 4;
const DESCRIBE: i8 = 8;

#[test]
fn a_principal_without_acls_gets_kafkas_authorization_errors() {
    let certs = Certs::new();
    let users = users_file(
        &certs,
        &[("admin", "admin-secret"), ("alice", "alice-secret")],
    );
    let node = start(
        "SASL_PLAINTEXT",
        &[
            format!("sasl.users.file={users}"),
            AUTHORIZER.into(),
            "super.users=User:admin".into(),
        ],
    );
    let admin = sasl_props("SASL_PLAINTEXT", "PLAIN", "admin", "admin-secret");
    for t in ["orders-eu", "orders-us", "payments"] {
        fjord_ok(&node, &admin, &["topic", "create", t]);
    }
    let mut alice = Wire::connect_plain(&node.bootstrap(), "alice", "alice-secret");

    // No ACLs: every kind of resource answers with its own authorization error.
    assert_eq!(produce(&mut alice, "orders-eu"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(
        describe_topic(&mut alice, "orders-eu").0,
        TOPIC_AUTHORIZATION_FAILED
    );
    let all = alice.call(12, &MetadataRequest::default().with_topics(None));
    assert!(all.topics.is_empty(), "unauthorized topics are not listed");
    let coordinator = alice.call(
        4,
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("app-1")]),
    );
    assert_eq!(
        coordinator.coordinators[0].error_code,
        GROUP_AUTHORIZATION_FAILED
    );
    assert_eq!(
        offset_commit(&mut alice, "app-1", "orders-eu"),
        GROUP_AUTHORIZATION_FAILED
    );
    let created = alice.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name("orders-new"))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
    );
    assert_eq!(created.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    let configs = alice.call(
        4,
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s("1"))]),
    );
    assert_eq!(configs.results[0].error_code, CLUSTER_AUTHORIZATION_FAILED);
    assert_eq!(
        init_producer_id(&mut alice, Some("tx-1")),
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    assert_eq!(
        init_producer_id(&mut alice, None),
        CLUSTER_AUTHORIZATION_FAILED,
        "idempotence needs IDEMPOTENT_WRITE on the cluster or WRITE on a topic"
    );
    let acl = alice.call(
        3,
        &CreateAclsRequest::default().with_creations(vec![AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s("payments"))
            .with_resource_pattern_type(3)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(2)
            .with_permission_type(3)]),
    );
    assert_eq!(acl.results[0].error_code, CLUSTER_AUTHORIZATION_FAILED);
    let cluster = alice.call(
        0,
        &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
    );
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.cluster_authorized_operations, 0);
    // kcat reports the broker's answer.
    let alice_props = sasl_props("SASL_PLAINTEXT", "PLAIN", "alice", "alice-secret");
    let (ok, text) = kcat(&node, &alice_props, "payments", Some("x\n"));
    assert!(!ok && text.contains("authorization failed"), "{text}");

    // A prefixed ACL covers every topic it starts, and only those.
    fjord_ok(
        &node,
        &admin,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--producer",
            "--consumer",
            "--topic",
            "orders-",
            "--group",
            "app-",
            "--transactional-id",
            "tx-",
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    assert_eq!(produce(&mut alice, "orders-eu"), 0);
    assert_eq!(produce(&mut alice, "orders-us"), 0);
    assert_eq!(produce(&mut alice, "payments"), TOPIC_AUTHORIZATION_FAILED);
    let (code, ops) = describe_topic(&mut alice, "orders-eu");
    assert_eq!(code, 0);
    let want = bit(READ) | bit(WRITE) | bit(DESCRIBE);
    assert_eq!(ops & want, want, "authorized operations {ops:#b}");
    // The first allowed FindCoordinator creates the offsets topic; commits work once the
    // coordinator is loaded.
    wait_until(
        "alice's group has a coordinator",
        Duration::from_secs(60),
        || {
            let found = alice.call(
                4,
                &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("app-1")]),
            );
            (found.coordinators[0].error_code == 0).then_some(())
        },
    );
    assert_eq!(
        once_coordinated(|| offset_commit(&mut alice, "app-1", "orders-eu")),
        0
    );
    assert_eq!(
        offset_commit(&mut alice, "other-app", "orders-eu"),
        GROUP_AUTHORIZATION_FAILED
    );
    let found = alice.call(
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s("tx-1")]),
    );
    assert_eq!(found.coordinators[0].error_code, 0);
    assert_eq!(
        once_coordinated(|| init_producer_id(&mut alice, Some("tx-1"))),
        0
    );
    assert_eq!(init_producer_id(&mut alice, None), 0, "WRITE on a topic");
    let (ok, text) = kcat(&node, &alice_props, "orders-eu", None);
    assert!(ok, "kcat reads with READ: {text}");

    // KIP-848: a member subscribing by regex is assigned only topics it may DESCRIBE
    // (the two orders- topics, not payments); naming a topic it may not is refused.
    let join = |group: &str, regex: Option<&str>, names: Option<&[&str]>| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s("alice-1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_regex(regex.map(s))
            .with_subscribed_topic_names(names.map(|ns| ns.iter().map(|n| topic_name(n)).collect()))
            .with_topic_partitions(Some(vec![]))
    };
    let joined = alice.call(1, &join("app-kip848", Some(".*"), None));
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let assigned: std::collections::BTreeSet<_> = joined
        .assignment
        .expect("assignment")
        .topic_partitions
        .iter()
        .map(|t| t.topic_id)
        .collect();
    let visible: std::collections::BTreeSet<_> = alice
        .call(12, &MetadataRequest::default().with_topics(None))
        .topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.0.starts_with("orders-")))
        .map(|t| t.topic_id)
        .collect();
    assert_eq!(assigned, visible);
    assert_eq!(visible.len(), 2);
    let named = alice.call(1, &join("app-kip848-b", None, Some(&["payments"])));
    assert_eq!(named.error_code, TOPIC_AUTHORIZATION_FAILED);
    let other = alice.call(1, &join("other-app", Some(".*"), None));
    assert_eq!(other.error_code, GROUP_AUTHORIZATION_FAILED);

    // KIP-932: ShareFetch needs READ on the share group, and READ on each topic, which
    // is answered per partition.
    let ids: std::collections::BTreeMap<String, uuid::Uuid> =
        Wire::connect_plain(&node.bootstrap(), "admin", "admin-secret")
            .call(12, &MetadataRequest::default().with_topics(None))
            .topics
            .iter()
            .filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t.topic_id)))
            .collect();
    let share_fetch = |w: &mut Wire, group: &str, topics: &[&str]| {
        w.call(
            1,
            &ShareFetchRequest::default()
                .with_group_id(Some(GroupId(s(group))))
                .with_member_id(Some(s("alice-share-1")))
                .with_share_session_epoch(0)
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_max_records(10)
                .with_topics(
                    topics
                        .iter()
                        .map(|t| {
                            FetchTopic::default()
                                .with_topic_id(ids[*t])
                                .with_partitions(vec![
                                    FetchPartition::default().with_partition_index(0)
                                ])
                        })
                        .collect(),
                ),
        )
    };
    let denied = share_fetch(&mut alice, "other-app", &["orders-eu"]);
    assert_eq!(denied.error_code, GROUP_AUTHORIZATION_FAILED);
    let fetched = share_fetch(&mut alice, "app-share", &["orders-eu", "payments"]);
    assert_eq!(fetched.error_code, 0, "{fetched:?}");
    let code_of = |topic: &str| {
        fetched
            .responses
            .iter()
            .find(|t| t.topic_id == ids[topic])
            .map(|t| t.partitions[0].error_code)
    };
    assert_eq!(code_of("payments"), Some(TOPIC_AUTHORIZATION_FAILED));
    assert_ne!(code_of("orders-eu"), Some(TOPIC_AUTHORIZATION_FAILED));

    // DENY wins over ALLOW, and removing it restores access.
    let deny = [
        "--deny-principal",
        "User:alice",
        "--operation",
        "Write",
        "--topic",
        "orders-us",
    ];
    fjord_ok(&node, &admin, &[&["acl", "add"][..], &deny[..]].concat());
    assert_eq!(produce(&mut alice, "orders-us"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(produce(&mut alice, "orders-eu"), 0);
    let listed = fjord_ok(&node, &admin, &["acl", "list", "--principal", "User:alice"]);
    assert!(
        listed.contains("orders-us\tLiteral\tUser:alice\t*\tWrite\tDeny")
            && listed.contains("Prefixed"),
        "{listed}"
    );
    fjord_ok(&node, &admin, &[&["acl", "remove"][..], &deny[..]].concat());
    assert_eq!(produce(&mut alice, "orders-us"), 0);

    // Only super users and holders of ALTER on the cluster change ACLs.
    let out = fjord(
        &node,
        &alice_props,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--topic",
            "payments",
            "--operation",
            "All",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Cluster authorization failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
