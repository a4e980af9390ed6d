//! The Kafka APIs a single node serves, exercised at the wire level across versions:
//! fetch long-poll and empty record sets, ListOffsets, DeleteRecords,
//! OffsetForLeaderEpoch, CreatePartitions, DescribeCluster, Metadata,
//! CreateTopics/DeleteTopics errors, pipelining and idempotent produce. Feature versions
//! (`features`), null error messages over every API (`error_messages`) and share group
//! membership (`share_groups`) are modules of this binary, so CI links it once.

#[path = "protocol_apis/error_messages.rs"]
mod error_messages;
#[path = "protocol_apis/features.rs"]
mod features;
#[path = "protocol_apis/share_groups.rs"]
mod share_groups;

use std::time::Duration;

use bytes::Bytes;
use fjord_tests::wire::Wire;
use fjord_tests::{client_config, create_topic, Node};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use uuid::Uuid;

fn name(s: &str) -> TopicName {
    fjord_tests::topic_name(s)
}

fn records(n: usize, ts: i64, producer: Option<(i64, i16, i32)>) -> Bytes {
    fjord_tests::record_batch(n, 2, ts, producer)
}

/// One batch whose records carry these timestamps, in this order.
fn batch_with_times(times: &[i64]) -> Bytes {
    use kafka_protocol::records::{Record, TimestampType};
    let records: Vec<Record> = times
        .iter()
        .enumerate()
        .map(|(i, ts)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: *ts,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        })
        .collect();
    fjord_tests::encode_batch(&records)
}

fn produce(w: &mut Wire, topic: &str, partition: i32, recs: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(recs))])]);
    let resp = w.call(9, &req);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_req(topic: &str, topic_id: Uuid, offset: i64, max_wait: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_topic_id(topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

fn topic_id(w: &mut Wire, topic: &str) -> Uuid {
    let md = w.call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic)))
        ])),
    );
    md.topics[0].topic_id
}

fn list_offset(w: &mut Wire, version: i16, topic: &str, ts: i64) -> (i16, i64, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(ts)])]);
    let resp = w.call(version, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn fetch_long_polls_until_data_arrives_and_never_sends_null_records() {
    let node = Node::start();
    create_topic(&node.bootstrap(), "poll", 1, &[]);
    let mut w = Wire::connect(&node.bootstrap());
    let id = topic_id(&mut w, "poll");
    for version in [4i16, 11, 12, 13, 17, 18] {
        let empty = w.call(version, &fetch_req("poll", id, 0, 0));
        let p = &empty.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(
            p.records.as_ref().map(Bytes::len),
            Some(0),
            "v{version}: empty, not null"
        );
    }
    // A fetch parked on an empty partition is woken by the append, long before its
    // 60 s max wait.
    let started = std::time::Instant::now();
    let pending = w.send(12, &fetch_req("poll", id, 0, 60_000));
    let producer: BaseProducer = client_config(&node.bootstrap()).create().expect("producer");
    producer
        .send(BaseRecord::<(), _>::to("poll").payload("wake up"))
        .expect("send");
    producer.flush(Duration::from_secs(10)).expect("flush");
    let resp = w.receive::<FetchRequest>(12, pending);
    let p = &resp.responses[0].partitions[0];
    assert!(
        p.records.as_ref().is_some_and(|r| !r.is_empty()),
        "woken with the new record"
    );
    assert_eq!(p.high_watermark, 1);
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "woken by the append, not by the timeout"
    );
    // Topic ids resolve from v13; an unknown id is UNKNOWN_TOPIC_ID.
    let unknown = w.call(13, &fetch_req("", Uuid::new_v4(), 0, 0));
    assert_eq!(unknown.responses[0].partitions[0].error_code, 100);
    // Out of range.
    let oor = w.call(12, &fetch_req("poll", id, 99, 0));
    assert_eq!(oor.responses[0].partitions[0].error_code, 1);
}

/// KIP-227: a fetch at session epoch 0 or -1 is a full fetch whatever session id it
/// names (kafka-go sends id -1, epoch -1 and got FETCH_SESSION_ID_NOT_FOUND with no
/// data); only an incremental fetch (epoch > 0) can name a session that is not there.
#[test]
fn full_fetches_are_served_whatever_session_they_name() {
    let node = Node::start();
    create_topic(&node.bootstrap(), "sessions", 1, &[]);
    let mut w = Wire::connect(&node.bootstrap());
    let id = topic_id(&mut w, "sessions");
    assert_eq!(
        produce(&mut w, "sessions", 0, records(3, 1_700_000_000_000, None)).0,
        0
    );
    for (session_id, epoch) in [(0, -1), (0, 0), (-1, -1), (7, 0), (7, -1)] {
        let req = fetch_req("sessions", id, 0, 0)
            .with_session_id(session_id)
            .with_session_epoch(epoch);
        let resp = w.call(12, &req);
        assert_eq!(resp.error_code, 0, "session {session_id} epoch {epoch}");
        let p = &resp.responses[0].partitions[0];
        assert!(
            p.records.as_ref().is_some_and(|r| !r.is_empty()),
            "session {session_id} epoch {epoch}: a full fetch answers with the records"
        );
    }
    for (session_id, epoch) in [(7, 1), (0, 3)] {
        let req = fetch_req("sessions", id, 0, 0)
            .with_session_id(session_id)
            .with_session_epoch(epoch);
        assert_eq!(
            w.call(12, &req).error_code,
            70,
            "session {session_id} epoch {epoch}: FETCH_SESSION_ID_NOT_FOUND"
        );
    }
}

#[test]
fn offsets_apis_follow_kafka() {
    let node = Node::start();
    create_topic(&node.bootstrap(), "offsets", 1, &[]);
    let mut w = Wire::connect(&node.bootstrap());
    for batch in 0..4 {
        let (err, base) = produce(&mut w, "offsets", 0, records(5, 1_000 + batch * 100, None));
        assert_eq!((err, base), (0, batch * 5));
    }
    for version in [1i16, 4, 7, 10] {
        assert_eq!(
            list_offset(&mut w, version, "offsets", -2).1,
            0,
            "earliest v{version}"
        );
        assert_eq!(
            list_offset(&mut w, version, "offsets", -1).1,
            20,
            "latest v{version}"
        );
        assert_eq!(
            list_offset(&mut w, version, "offsets", 1_205),
            (0, 11, 1_210),
            "by timestamp v{version}"
        );
        assert_eq!(
            list_offset(&mut w, version, "offsets", 9_999).1,
            -1,
            "past the end v{version}"
        );
    }
    assert_eq!(
        list_offset(&mut w, 7, "offsets", -3),
        (0, 19, 1_340),
        "max timestamp"
    );
    // KAFKA-16310: the record holding the largest timestamp, not its batch's last offset.
    create_topic(&node.bootstrap(), "max-timestamp", 1, &[]);
    let (err, base) = produce(
        &mut w,
        "max-timestamp",
        0,
        batch_with_times(&[5_000, 9_000, 6_000]),
    );
    assert_eq!((err, base), (0, 0));
    assert_eq!(
        list_offset(&mut w, 7, "max-timestamp", -3),
        (0, 1, 9_000),
        "max timestamp inside a batch"
    );

    let epochs = w.call(
        3,
        &OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name("offsets"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(-1)
                            .with_leader_epoch(0),
                    ]),
            ]),
    );
    let e = &epochs.topics[0].partitions[0];
    assert_eq!((e.error_code, e.leader_epoch, e.end_offset), (0, 0, 20));

    let delete = |w: &mut Wire, offset: i64| {
        let r = w.call(
            2,
            &DeleteRecordsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name("offsets"))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(offset),
                    ])]),
        );
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.low_watermark)
    };
    assert_eq!(delete(&mut w, 12), (0, 12));
    assert_eq!(list_offset(&mut w, 4, "offsets", -2).1, 12);
    assert_eq!(delete(&mut w, 500).0, 1, "beyond the high watermark");
    let id = topic_id(&mut w, "offsets");
    assert_eq!(
        w.call(12, &fetch_req("offsets", id, 3, 0)).responses[0].partitions[0].error_code,
        1
    );
    assert_eq!(delete(&mut w, -1), (0, 20), "-1 means the high watermark");
}

#[test]
fn topic_admin_and_metadata_across_versions() {
    let node = Node::start();
    let mut w = Wire::connect(&node.bootstrap());
    let create = |w: &mut Wire, topic: &str, partitions: i32, rf: i16, validate_only: bool| {
        let r = w.call(
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_validate_only(validate_only)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(name(topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(rf)]),
        );
        (
            r.topics[0].error_code,
            r.topics[0].num_partitions,
            r.topics[0].topic_id,
        )
    };
    let (err, _, _) = create(&mut w, "dry", 2, 1, true);
    assert_eq!(err, 0);
    let md = w.call(12, &MetadataRequest::default().with_topics(None));
    assert!(
        md.topics
            .iter()
            .all(|t| t.name.as_ref().map(|n| n.0.as_str()) != Some("dry")),
        "validate_only creates nothing"
    );
    let (err, parts, id) = create(&mut w, "admin", -1, -1, false);
    assert_eq!((err, parts), (0, 1), "broker defaults");
    assert_ne!(id, Uuid::nil());
    assert_eq!(
        create(&mut w, "admin", 1, 1, false).0,
        36,
        "TOPIC_ALREADY_EXISTS"
    );
    assert_eq!(
        create(&mut w, "admin_rf", 1, 3, false).0,
        38,
        "INVALID_REPLICATION_FACTOR"
    );
    assert_eq!(
        create(&mut w, "admin_zero", 0, 1, false).0,
        37,
        "INVALID_PARTITIONS"
    );
    assert_eq!(create(&mut w, "admin", 1, 1, false).0, 36);
    assert_eq!(create(&mut w, "admin.x", 1, 1, false).0, 0);
    assert_eq!(
        create(&mut w, "admin_x", 1, 1, false).0,
        17,
        "collides with admin.x"
    );

    let grow = |w: &mut Wire, count: i32| {
        let r = w.call(
            3,
            &CreatePartitionsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name("admin"))
                        .with_count(count),
                ]),
        );
        r.results[0].error_code
    };
    assert_eq!(grow(&mut w, 3), 0);
    assert_eq!(grow(&mut w, 2), 37, "cannot shrink");
    let producer: BaseProducer = client_config(&node.bootstrap()).create().expect("producer");
    producer
        .send(
            BaseRecord::<(), _>::to("admin")
                .partition(2)
                .payload("new partition"),
        )
        .expect("send");
    producer
        .flush(Duration::from_secs(10))
        .expect("writes reach the added partition");

    for version in 0i16..=13 {
        let topics = if version == 0 { Some(vec![]) } else { None };
        let md = w.call(version, &MetadataRequest::default().with_topics(topics));
        assert_eq!(md.brokers.len(), 1, "v{version}");
        let admin = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("admin"))
            .expect("listed");
        assert_eq!(admin.partitions.len(), 3, "v{version}");
        assert!(admin
            .partitions
            .iter()
            .all(|p| p.leader_id.0 == 1 && p.error_code == 0));
    }
    // Auto-creation is on by default, and off when the client asks.
    let ask = |w: &mut Wire, topic: &str, allow: bool| {
        let md = w.call(
            9,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name(topic)))
                ]))
                .with_allow_auto_topic_creation(allow),
        );
        (md.topics[0].error_code, md.topics[0].partitions.len())
    };
    assert_eq!(ask(&mut w, "auto_no", false), (3, 0));
    assert_eq!(ask(&mut w, "auto_yes", true), (0, 1));

    for version in 0i16..=2 {
        let c = w.call(version, &DescribeClusterRequest::default());
        assert_eq!(c.error_code, 0);
        assert_eq!(c.brokers.len(), 1);
        assert_eq!(c.controller_id.0, 1);
        let md = w.call(12, &MetadataRequest::default().with_topics(Some(vec![])));
        assert_eq!(
            md.cluster_id.as_ref().map(|s| s.as_str()),
            Some(c.cluster_id.as_str())
        );
    }

    let del = w.call(
        6,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                DeleteTopicState::default().with_topic_id(id),
                DeleteTopicState::default().with_name(Some(name("missing"))),
            ]),
    );
    assert_eq!(del.responses[0].error_code, 0, "delete by id");
    assert_eq!(del.responses[1].error_code, 3, "unknown topic");
    assert_eq!(ask(&mut w, "admin", false).0, 3);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let node = Node::start();
    create_topic(&node.bootstrap(), "pipe", 1, &[]);
    let mut w = Wire::connect(&node.bootstrap());
    let id = topic_id(&mut w, "pipe");
    let produce_req = |ts: i64| {
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name("pipe"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records(3, ts, None)))])])
    };
    // Several requests written back to back: each is answered, in request order, and
    // the fetch at the end sees what the produce before it wrote.
    let a = w.send(3, &ApiVersionsRequest::default());
    let p = w.send(9, &produce_req(5));
    let m = w.send(12, &MetadataRequest::default().with_topics(None));
    let f = w.send(12, &fetch_req("pipe", id, 0, 2_000));
    w.receive::<ApiVersionsRequest>(3, a);
    assert_eq!(
        w.receive::<ProduceRequest>(9, p).responses[0].partition_responses[0].error_code,
        0
    );
    w.receive::<MetadataRequest>(12, m);
    let fetched = w.receive::<FetchRequest>(12, f);
    assert!(fetched.responses[0].partitions[0]
        .records
        .as_ref()
        .is_some_and(|r| !r.is_empty()));

    // A long poll holds the connection as it does in Kafka: the produce behind it runs
    // once the poll has answered (empty, at its max wait), and is then acknowledged.
    let f = w.send(12, &fetch_req("pipe", id, 3, 1_000));
    let p = w.send(9, &produce_req(8));
    let polled = w.receive::<FetchRequest>(12, f);
    assert!(polled.responses[0].partitions[0]
        .records
        .as_ref()
        .is_none_or(|r| r.is_empty()));
    let produced = w.receive::<ProduceRequest>(9, p);
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(produced.responses[0].partition_responses[0].base_offset, 3);
}

#[test]
fn idempotent_retries_are_written_once() {
    let node = Node::start();
    create_topic(&node.bootstrap(), "idem", 1, &[]);
    let mut w = Wire::connect(&node.bootstrap());
    let init = w.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let second = w.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    assert_ne!(second.producer_id.0, pid, "ids are unique");

    assert_eq!(
        produce(&mut w, "idem", 0, records(5, 1, Some((pid, epoch, 0)))),
        (0, 0)
    );
    assert_eq!(
        produce(&mut w, "idem", 0, records(5, 1, Some((pid, epoch, 5)))),
        (0, 5)
    );
    // A retry of the first batch is acknowledged with its original offset.
    assert_eq!(
        produce(&mut w, "idem", 0, records(5, 1, Some((pid, epoch, 0)))),
        (0, 0)
    );
    assert_eq!(list_offset(&mut w, 4, "idem", -1).1, 10, "written once");
    assert_eq!(
        produce(&mut w, "idem", 0, records(1, 1, Some((pid, epoch, 42)))).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    // KIP-360 epoch bump: the same id with the next epoch, sequences restart.
    let bumped = w.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
    );
    assert_eq!(
        (bumped.producer_id.0, bumped.producer_epoch),
        (pid, epoch + 1)
    );
    assert_eq!(
        produce(&mut w, "idem", 0, records(1, 1, Some((pid, epoch + 1, 0)))),
        (0, 10)
    );
    assert_eq!(
        produce(&mut w, "idem", 0, records(1, 1, Some((pid, epoch, 10)))).0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );

    // And librdkafka with enable.idempotence=true.
    let producer: BaseProducer = client_config(&node.bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for i in 0..5_000 {
        let v = format!("idempotent-{i}");
        let mut r = BaseRecord::<(), _>::to("idem").payload(&v);
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(5));
                    r = back;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    assert_eq!(list_offset(&mut w, 4, "idem", -1).1, 11 + 5_000);
}

#[test]
fn retention_deletes_old_segments_on_a_running_node() {
    let node = Node::start_with(&[
        "--override",
        "log.retention.check.interval.ms=100",
        "--override",
        "log.flush.scheduler.interval.ms=50",
    ]);
    create_topic(
        &node.bootstrap(),
        "short",
        1,
        &[("segment.bytes", "2000"), ("retention.bytes", "4000")],
    );
    let mut w = Wire::connect(&node.bootstrap());
    // Current timestamps, so only the size limit (not retention.ms) applies.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    for _ in 0..80 {
        assert_eq!(produce(&mut w, "short", 0, records(5, now, None)).0, 0);
    }
    let end = list_offset(&mut w, 4, "short", -1).1;
    assert_eq!(end, 400);
    let start = fjord_tests::wait_until(
        "retention moves the log start offset",
        Duration::from_secs(30),
        || {
            let start = list_offset(&mut w, 4, "short", -2).1;
            (start > 0).then_some(start)
        },
    );
    assert!(start < end, "retention never deletes the active segment");
    let id = topic_id(&mut w, "short");
    let fetched = w.call(12, &fetch_req("short", id, start, 0));
    assert_eq!(fetched.responses[0].partitions[0].log_start_offset, start);
    assert_eq!(
        w.call(12, &fetch_req("short", id, 0, 0)).responses[0].partitions[0].error_code,
        1,
        "deleted offsets are out of range"
    );
}
