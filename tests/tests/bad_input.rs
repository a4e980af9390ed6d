//! Hostile and broken input: garbage frames, truncated frames, a 2 GiB length prefix,
//! unknown API keys and versions, absurd array counts, bad CRCs, old record formats,
//! oversized batches and invalid topic names. Each gets its Kafka error or a closed
//! connection, and a well-behaved librdkafka client keeps working throughout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_tests::{client_config, create_topic, wait_until, Node};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn connect(node: &Node) -> TcpStream {
    let s = TcpStream::connect(node.bootstrap()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// True once the server has closed the connection (EOF or reset).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a response to an earlier good request
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("expected the server to close the connection, got {e}"),
        }
    }
}

fn frame<T: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("bad-input-test")))
        .encode(&mut buf, api.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

fn read_response<T: Decodable>(s: &mut TcpStream, api: ApiKey, version: i16) -> (i32, T) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("response length");
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("response body");
    let mut b = Bytes::from(body);
    let header = ResponseHeader::decode(&mut b, api.response_header_version(version))
        .expect("response header");
    (
        header.correlation_id,
        T::decode(&mut b, version).expect("response body decodes"),
    )
}

fn batch(records: usize, value_len: usize) -> Bytes {
    fjord_tests::record_batch(records, value_len, 1_700_000_000_000, None)
}

/// A legacy v1 message (magic 1), as pre-0.11 clients wrote them.
fn message_v1(value_len: usize) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i8(1); // magic
    body.put_i8(0); // attributes
    body.put_i64(1_700_000_000_000);
    body.put_i32(-1); // null key
    body.put_i32(value_len as i32);
    body.extend_from_slice(&vec![b'v'; value_len]);
    let crc = crc32_ieee(&body);
    let mut out = BytesMut::new();
    out.put_i64(0);
    out.put_i32(4 + body.len() as i32);
    out.put_u32(crc);
    out.extend_from_slice(&body);
    out.freeze()
}

fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn produce_error(node: &Node, records: Bytes) -> i16 {
    let mut s = connect(node);
    s.write_all(&frame(ApiKey::Produce, 9, 7, &produce("victim", records)))
        .expect("send");
    let (cid, resp): (i32, ProduceResponse) = read_response(&mut s, ApiKey::Produce, 9);
    assert_eq!(cid, 7);
    resp.responses[0].partition_responses[0].error_code
}

/// A librdkafka producer and consumer that run for the whole test and must never fail.
struct GoodClient {
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<u64>,
}

impl GoodClient {
    fn start(node: &Node) -> GoodClient {
        let stop = Arc::new(AtomicBool::new(false));
        let produced = Arc::new(AtomicU64::new(0));
        let bootstrap = node.bootstrap();
        let (s, p) = (Arc::clone(&stop), Arc::clone(&produced));
        let handle = std::thread::spawn(move || {
            let producer: BaseProducer = client_config(&bootstrap)
                .set("acks", "all")
                .create()
                .expect("producer");
            let consumer: BaseConsumer = client_config(&bootstrap)
                .set("group.id", "good-client")
                .set("enable.auto.commit", "false")
                .create()
                .expect("consumer");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("good", 0, Offset::Beginning)
                .expect("tpl");
            consumer.assign(&tpl).expect("assign");
            let mut consumed = 0u64;
            let mut i = 0u64;
            while !s.load(Ordering::Acquire) {
                let v = format!("good-{i}");
                if producer
                    .send(BaseRecord::<(), _>::to("good").payload(&v))
                    .is_ok()
                {
                    i += 1;
                }
                producer
                    .flush(Duration::from_secs(10))
                    .expect("the good client's writes keep succeeding");
                p.store(i, Ordering::Release);
                while let Some(m) = consumer.poll(Duration::from_millis(20)) {
                    let m = m.expect("the good client's reads keep succeeding");
                    assert_eq!(m.payload(), Some(format!("good-{consumed}").as_bytes()));
                    consumed += 1;
                }
            }
            wait_until("good client drained", Duration::from_secs(30), || {
                while let Some(m) = consumer.poll(Duration::from_millis(20)) {
                    m.expect("consume");
                    consumed += 1;
                }
                (consumed == i).then_some(consumed)
            })
        });
        GoodClient {
            stop,
            produced,
            handle,
        }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        self.handle.join().expect("good client thread")
    }
}

#[test]
fn hostile_input_is_refused_and_good_clients_are_unaffected() {
    let mut node = Node::start();
    create_topic(&node.bootstrap(), "good", 1, &[]);
    create_topic(
        &node.bootstrap(),
        "victim",
        1,
        &[("max.message.bytes", "2000")],
    );
    let good = GoodClient::start(&node);
    wait_until("good client running", Duration::from_secs(30), || {
        (good.produced.load(Ordering::Acquire) > 10).then_some(())
    });

    // Garbage: random bytes under a sane length prefix.
    let mut s = connect(&node);
    let mut junk = vec![0u8; 4];
    junk[..4].copy_from_slice(&40i32.to_be_bytes());
    junk.extend((0..40).map(|i| (i * 37 + 11) as u8));
    s.write_all(&junk).expect("send");
    assert!(closed_by_server(&mut s), "garbage frame");

    // Truncated: the prefix promises 100 bytes, 10 arrive, then the client half-closes.
    let mut s = connect(&node);
    s.write_all(&100i32.to_be_bytes()).expect("send");
    s.write_all(&[0u8; 10]).expect("send");
    s.shutdown(std::net::Shutdown::Write).expect("half close");
    assert!(closed_by_server(&mut s), "truncated frame");

    // A 2 GiB length prefix and a negative one.
    for prefix in [i32::MAX, -1, i32::MIN] {
        let mut s = connect(&node);
        s.write_all(&prefix.to_be_bytes()).expect("send");
        assert!(closed_by_server(&mut s), "length prefix {prefix}");
    }

    // An unknown API key with a well-formed header.
    let mut s = connect(&node);
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(9999);
    f.put_i16(0);
    f.put_i32(1);
    f.put_i16(-1);
    s.write_all(&f).expect("send");
    assert!(closed_by_server(&mut s), "unknown api key");

    // ApiVersions at a version from the future: a v0 answer with UNSUPPORTED_VERSION.
    let mut s = connect(&node);
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(ApiKey::ApiVersions as i16);
    f.put_i16(99);
    f.put_i32(42);
    f.put_i16(-1);
    s.write_all(&f).expect("send");
    let (cid, resp): (i32, ApiVersionsResponse) = read_response(&mut s, ApiKey::ApiVersions, 0);
    assert_eq!(cid, 42);
    assert_eq!(resp.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16));

    // Produce below the supported range: closed, as Kafka does.
    let mut s = connect(&node);
    let mut f = BytesMut::new();
    f.put_i32(10);
    f.put_i16(ApiKey::Produce as i16);
    f.put_i16(1);
    f.put_i32(3);
    f.put_i16(-1);
    s.write_all(&f).expect("send");
    assert!(closed_by_server(&mut s), "produce v1");

    // A Metadata request claiming two billion topics in eight bytes.
    let mut s = connect(&node);
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(1);
    body.put_i32(5);
    body.put_i16(-1);
    body.put_i32(i32::MAX);
    let mut f = BytesMut::new();
    f.put_i32(body.len() as i32);
    f.extend_from_slice(&body);
    s.write_all(&f).expect("send");
    assert!(closed_by_server(&mut s), "absurd array count");

    // A well-formed header followed by a body that is not a Metadata request.
    let mut s = connect(&node);
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(9);
    body.put_i32(6);
    body.put_i16(-1);
    body.put_u8(0);
    body.extend_from_slice(&[0xff; 7]);
    let mut f = BytesMut::new();
    f.put_i32(body.len() as i32);
    f.extend_from_slice(&body);
    s.write_all(&f).expect("send");
    assert!(closed_by_server(&mut s), "malformed body");

    // Record batches: a flipped bit, the old v1 format, and one over max.message.bytes.
    let mut corrupt = batch(3, 20).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    assert_eq!(
        produce_error(&node, Bytes::from(corrupt)),
        2,
        "CORRUPT_MESSAGE"
    );
    assert_eq!(
        produce_error(&node, message_v1(100)),
        87,
        "INVALID_RECORD for magic 1"
    );
    let big = batch(1, 3000);
    assert!(big.len() > 2000, "{} bytes", big.len());
    assert_eq!(produce_error(&node, big), 10, "MESSAGE_TOO_LARGE");
    let mut torn = batch(3, 20).to_vec();
    torn.truncate(torn.len() - 5);
    assert_eq!(
        produce_error(&node, Bytes::from(torn)),
        2,
        "CORRUPT_MESSAGE for a torn batch"
    );
    assert_eq!(
        produce_error(&node, batch(3, 20)),
        0,
        "a good batch still works"
    );

    // Invalid topic names.
    let mut s = connect(&node);
    let names = ["bad name!", "", "..", "a/b", &"x".repeat(250)];
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(
            names
                .iter()
                .map(|n| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(n.to_string())))
                        .with_num_partitions(1)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    s.write_all(&frame(ApiKey::CreateTopics, 5, 9, &req))
        .expect("send");
    let (_, resp): (i32, CreateTopicsResponse) = read_response(&mut s, ApiKey::CreateTopics, 5);
    for t in &resp.topics {
        assert_eq!(
            t.error_code,
            17,
            "INVALID_TOPIC_EXCEPTION for {:?}",
            t.name.0.as_str()
        );
    }
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_static_str("no such/topic")),
        ))]))
        .with_allow_auto_topic_creation(true);
    s.write_all(&frame(ApiKey::Metadata, 9, 10, &req))
        .expect("send");
    let (_, resp): (i32, MetadataResponse) = read_response(&mut s, ApiKey::Metadata, 9);
    assert_eq!(resp.topics[0].error_code, 17);

    // A burst of random frames with real API keys and junk bodies.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut s = connect(&node);
        let api =
            [0i16, 1, 2, 3, 18, 19, 20, 21, 22, 23, 32, 33, 37, 44, 60][(next() % 15) as usize];
        let len = 8 + (next() % 120) as usize;
        let mut body = BytesMut::new();
        body.put_i16(api);
        body.put_i16((next() % 14) as i16);
        body.put_i32(1);
        while body.len() < len {
            body.put_u8(next() as u8);
        }
        let mut f = BytesMut::new();
        f.put_i32(body.len() as i32);
        f.extend_from_slice(&body);
        s.write_all(&f).expect("send");
        // Either an answer (which must be a well-formed frame) or a close.
        let mut len = [0u8; 4];
        if let Ok(()) = s.read_exact(&mut len) {
            let n = i32::from_be_bytes(len);
            assert!((4..1 << 20).contains(&n), "sane response length {n}");
            let mut rest = vec![0u8; n as usize];
            s.read_exact(&mut rest).expect("whole response");
            assert_eq!(Bytes::from(rest).get_i32(), 1, "correlation id echoed");
        }
    }

    assert!(node.is_running(), "the node survived");
    let consumed = good.finish();
    assert!(
        consumed > 10,
        "the good client made progress ({consumed} records)"
    );
}
