//! Internal topics are protected from clients (issue 31): `__consumer_offsets` cannot be
//! deleted or given more partitions through the admin API of a real client (librdkafka),
//! and the group offsets it holds survive the attempts.

use std::time::Duration;

use fjord_tests::{client_config, create_topic, futures_block_on, http_get, Node};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

const OFFSETS: &str = "__consumer_offsets";

fn committed(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("OffsetFetch");
    match got.find_partition(topic, 0)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

#[test]
fn clients_cannot_delete_or_grow_consumer_offsets_and_offsets_survive() {
    let node = Node::start();
    let bootstrap = node.bootstrap();
    create_topic(&bootstrap, "orders", 1, &[]);
    {
        let consumer: BaseConsumer = client_config(&bootstrap)
            .set("group.id", "billing")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("orders", 0, Offset::Offset(0))
            .expect("offset");
        consumer
            .commit(&tpl, CommitMode::Sync)
            .expect("commit creates __consumer_offsets");
    }
    assert_eq!(committed(&bootstrap, "billing", "orders"), Some(0));

    let admin: AdminClient<DefaultClientContext> =
        client_config(&bootstrap).create().expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let deleted = futures_block_on(admin.delete_topics(&[OFFSETS], &opts)).expect("DeleteTopics");
    assert_eq!(
        deleted,
        vec![Err((OFFSETS.to_string(), RDKafkaErrorCode::InvalidTopic))],
        "deleting {OFFSETS}"
    );
    let grown =
        futures_block_on(admin.create_partitions(&[NewPartitions::new(OFFSETS, 80)], &opts))
            .expect("CreatePartitions");
    assert_eq!(
        grown,
        vec![Err((OFFSETS.to_string(), RDKafkaErrorCode::InvalidTopic))],
        "adding partitions to {OFFSETS}"
    );
    assert_eq!(
        committed(&bootstrap, "billing", "orders"),
        Some(0),
        "the group's offset survived"
    );
    // An ordinary topic is still deleted as before.
    let deleted = futures_block_on(admin.delete_topics(&["orders"], &opts)).expect("DeleteTopics");
    assert_eq!(deleted, vec![Ok("orders".to_string())]);

    let (_, body) = http_get(&node.admin_addr(), "/v1/cluster").expect("cluster status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    let offsets = status["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == OFFSETS))
        .expect("__consumer_offsets still exists");
    let partitions = offsets["partitions"].as_array().map_or(0, Vec::len);
    assert_eq!(partitions, 50, "offsets.topic.num.partitions is unchanged");
    create_topic(&bootstrap, "payments", 1, &[]);
    let consumer: BaseConsumer = client_config(&bootstrap)
        .set("group.id", "billing")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("payments", 0, Offset::Offset(0))
        .expect("offset");
    consumer
        .commit(&tpl, CommitMode::Sync)
        .expect("commits still work");
}
