//! Raw-socket abuse of every API the node advertises: for each API and version, a
//! well-formed request and mutations of it (truncated, bytes flipped, garbage appended,
//! array counts inflated, random bodies) are sent, each followed by a probe. The node must
//! answer each frame or close the connection, never crash, stay within a stated memory
//! bound, and keep every write a well-behaved client had acknowledged meanwhile.
//!
//! Deterministic: the mutations come from a fixed seed (FJORD_FUZZ_SEED overrides it),
//! printed so a failure can be replayed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use fjord_tests::wire::Wire;
use fjord_tests::{client_config, create_topic, wait_until, Node};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// A default request body of `api` at `version`, as a client library encodes it.
fn default_body(api: ApiKey, version: i16) -> Option<Vec<u8>> {
    macro_rules! body {
        ($($k:ident => $t:ty),* $(,)?) => {
            match api {
                $(ApiKey::$k => {
                    let mut b = BytesMut::new();
                    <$t>::default().encode(&mut b, version).ok()?;
                    Some(b.to_vec())
                })*
                _ => None,
            }
        };
    }
    body!(
        Produce => ProduceRequest, Fetch => FetchRequest, ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest, OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest, FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest, Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest, SyncGroup => SyncGroupRequest,
        DescribeGroups => DescribeGroupsRequest, ListGroups => ListGroupsRequest,
        SaslHandshake => SaslHandshakeRequest, ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest, DeleteTopics => DeleteTopicsRequest,
        DeleteRecords => DeleteRecordsRequest, InitProducerId => InitProducerIdRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest, EndTxn => EndTxnRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest, DescribeAcls => DescribeAclsRequest,
        CreateAcls => CreateAclsRequest, DeleteAcls => DeleteAclsRequest,
        DescribeConfigs => DescribeConfigsRequest, AlterConfigs => AlterConfigsRequest,
        CreatePartitions => CreatePartitionsRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
        DescribeCluster => DescribeClusterRequest, ElectLeaders => ElectLeadersRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
        ListPartitionReassignments => ListPartitionReassignmentsRequest,
        OffsetDelete => OffsetDeleteRequest, DeleteGroups => DeleteGroupsRequest,
        DescribeProducers => DescribeProducersRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ListTransactions => ListTransactionsRequest,
        WriteTxnMarkers => WriteTxnMarkersRequest,
        UpdateFeatures => UpdateFeaturesRequest,
        DescribeClientQuotas => DescribeClientQuotasRequest,
        AlterClientQuotas => AlterClientQuotasRequest,
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
        AlterUserScramCredentials => AlterUserScramCredentialsRequest,
        DescribeLogDirs => DescribeLogDirsRequest,
        AlterReplicaLogDirs => AlterReplicaLogDirsRequest,
        DescribeQuorum => DescribeQuorumRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        ListConfigResources => ListConfigResourcesRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
        ShareGroupHeartbeat => ShareGroupHeartbeatRequest,
        ShareGroupDescribe => ShareGroupDescribeRequest,
        ShareFetch => ShareFetchRequest,
        ShareAcknowledge => ShareAcknowledgeRequest,
        DescribeShareGroupOffsets => DescribeShareGroupOffsetsRequest,
        AlterShareGroupOffsets => AlterShareGroupOffsetsRequest,
        DeleteShareGroupOffsets => DeleteShareGroupOffsetsRequest,
    )
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Variations of a well-formed body.
fn mutations(body: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = vec![body.to_vec()];
    for _ in 0..3 {
        let mut m = body.to_vec();
        m.truncate(rng.below(body.len() + 1));
        out.push(m);
    }
    for _ in 0..4 {
        let mut m = body.to_vec();
        for _ in 0..1 + rng.below(4) {
            if !m.is_empty() {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
        }
        out.push(m);
    }
    // Every 4-byte window set to a huge count, and every byte set to 0xff (a huge
    // compact count or length).
    for i in 0..body.len().min(24) {
        let mut m = body.to_vec();
        if i + 4 <= m.len() {
            m[i..i + 4].copy_from_slice(&0x7fff_fff0i32.to_be_bytes());
            out.push(m.clone());
        }
        m = body.to_vec();
        m[i] = 0xff;
        out.push(m);
    }
    let mut extended = body.to_vec();
    extended.extend((0..64).map(|_| rng.next() as u8));
    out.push(extended);
    out.push((0..rng.below(300)).map(|_| rng.next() as u8).collect());
    out
}

fn frame(api: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut buf, api.request_header_version(version))
        .expect("header");
    buf.extend_from_slice(body);
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// Sends one fuzzed frame and then an ApiVersions probe on the same connection; reads
/// until the probe's answer (the node handled the frame) or the close (it refused it).
/// Every answer read must be a well-formed frame.
fn exchange(addr: &str, fuzzed: &[u8]) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        panic!("the node stopped accepting connections");
    };
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let probe = frame(ApiKey::ApiVersions, 3, i32::MAX, &{
        let mut b = BytesMut::new();
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("fuzz"))
            .with_client_software_version(StrBytes::from_static_str("1"))
            .encode(&mut b, 3)
            .expect("probe");
        b.to_vec()
    });
    if s.write_all(fuzzed).is_err() || s.write_all(&probe).is_err() {
        return; // closed already
    }
    loop {
        let mut len = [0u8; 4];
        match s.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("no answer and no close within 30 s")
            }
            Err(_) => return, // closed: the frame was refused
        }
        let n = i32::from_be_bytes(len);
        assert!((4..64 << 20).contains(&n), "response length {n}");
        let mut body = vec![0u8; n as usize];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        if body[..4] == i32::MAX.to_be_bytes() {
            return; // the probe's answer
        }
    }
}

#[test]
fn every_api_survives_malformed_requests() {
    let seed = std::env::var("FJORD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f10d_u64);
    println!("FJORD_FUZZ_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let mut node = Node::start();
    create_topic(&node.bootstrap(), "acked", 1, &[]);

    // A producer whose every acknowledged record must survive the fuzzing.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (addr, stop) = (node.bootstrap(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let producer: BaseProducer = client_config(&addr)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .create()
                .expect("producer");
            let mut sent = 0u64;
            while !stop.load(Ordering::Acquire) {
                let v = format!("acked-{sent}");
                if producer
                    .send(BaseRecord::<(), _>::to("acked").payload(&v))
                    .is_ok()
                {
                    sent += 1;
                }
                producer.poll(Duration::from_millis(5));
            }
            producer
                .flush(Duration::from_secs(30))
                .expect("acknowledged");
            sent
        })
    };

    let mut wire = Wire::connect(&node.bootstrap());
    let versions = wire.call(3, &ApiVersionsRequest::default()).api_keys;
    let before = node.rss_bytes();
    node.reset_peak_rss();
    let mut frames = 0;
    for k in &versions {
        let Ok(api) = ApiKey::try_from(k.api_key) else {
            continue;
        };
        for version in k.min_version..=k.max_version {
            let Some(body) = default_body(api, version) else {
                panic!("no fuzz body for advertised {api:?} v{version}");
            };
            for m in mutations(&body, &mut rng) {
                exchange(&node.bootstrap(), &frame(api, version, 7, &m));
                frames += 1;
            }
        }
        assert!(node.is_running(), "the node died on {api:?}");
    }
    // Frames whose header itself is broken: unknown keys, versions out of range.
    for _ in 0..200 {
        let api = rng.next() as i16;
        let version = rng.next() as i16;
        let mut f = Vec::new();
        let body: Vec<u8> = (0..rng.below(100)).map(|_| rng.next() as u8).collect();
        f.extend_from_slice(&((8 + body.len()) as i32).to_be_bytes());
        f.extend_from_slice(&api.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&7i32.to_be_bytes());
        f.extend_from_slice(&body);
        exchange(&node.bootstrap(), &f);
        frames += 1;
    }
    let grown = node.peak_rss_bytes().saturating_sub(before) as f64 / (1 << 20) as f64;
    println!(
        "{frames} fuzzed frames over {} APIs; peak memory grew {grown:.1} MiB",
        versions.len()
    );
    assert!(node.is_running(), "the node survived");
    assert!(grown < 128.0, "grew {grown:.1} MiB");

    stop.store(true, Ordering::Release);
    let sent = writer.join().expect("writer");
    let consumer: BaseConsumer = client_config(&node.bootstrap())
        .set("group.id", "fuzz-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("acked", 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut seen = Vec::new();
    wait_until("every acknowledged record", Duration::from_secs(60), || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("record");
            seen.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
        (seen.len() as u64 >= sent).then_some(())
    });
    let expected: Vec<String> = (0..sent).map(|i| format!("acked-{i}")).collect();
    assert_eq!(seen, expected, "acknowledged writes intact, in order, once");
}
