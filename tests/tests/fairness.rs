//! One client must not stall or starve the others: each attack here ran against a
//! a53228e's binary with the effect in its test's comment, and each test keeps a normal
//! client working while the attack runs, within a bound, with the node's memory bounded.
//!
//! - A 14-byte header claiming a 100 MiB Produce took the whole request pool (665 s).
//! - Unauthenticated connections claiming ~330 KiB SaslAuthenticate frames blocked every
//!   login.
//! - Twenty connections pipelining fetches they never read left consumers with 0 bytes.
//! - Requests pipelined behind one that waits were read and handled at once (up to 64 a
//!   connection), where Kafka reads a connection's next request only after answering.
//! - Idle connections were never closed.
//! - 19,990 connections from one address used up every file descriptor; nothing limited
//!   connections per address, in total, or per second.
//! - A client could try 2,129 PLAIN passwords a second.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_tests::certs::Certs;
use fjord_tests::secure::{self, users_file, SASL_AUTHENTICATION_FAILED};
use fjord_tests::wire::Wire;
use fjord_tests::{client_config, create_topic, topic_name, wait_until, Node};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, DescribeGroupsRequest, FetchRequest, GroupId, JoinGroupRequest,
    MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const MIB: u64 = 1 << 20;
/// How long a normal client may wait on anything while an attack runs.
const BOUND: Duration = Duration::from_secs(5);

/// A frame header: length, API key, version, correlation id (14 bytes).
fn header(len: i32, api_key: i16, version: i16) -> Vec<u8> {
    let mut h = len.to_be_bytes().to_vec();
    h.extend_from_slice(&api_key.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&7i32.to_be_bytes());
    h
}

/// Produces `n` records to `topic` with librdkafka and waits for each; returns how long
/// the slowest took.
fn produce_some(bootstrap: &str, topic: &str, n: usize) -> Duration {
    let producer: BaseProducer = client_config(bootstrap)
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let started = Instant::now();
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(&format!("record {i}")))
            .expect("queued");
        producer
            .flush(Duration::from_secs(20))
            .expect("the record is acknowledged");
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

/// Fetches partition 0 of `topic` from offset 0 with a fresh connection; returns the
/// record bytes answered and how long it took.
fn fetch_once(bootstrap: &str, topic: &str, max_bytes: i32) -> (usize, Duration) {
    let started = Instant::now();
    let mut w = Wire::connect(bootstrap);
    let r = w.call(12, &fetch(topic, max_bytes, 500));
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.records.as_ref().map_or(0, Bytes::len), started.elapsed())
}

fn fetch(topic: &str, max_bytes: i32, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(max_bytes)])])
}

/// Whether the broker closed `s` (reads end) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A TCP connection to `addr` from the loopback address `from` (all of 127/8 is local).
fn connect_from(from: &str, addr: &str) -> std::io::Result<TcpStream> {
    connect_with(from, addr, None)
}

/// Like [`connect_from`], with a receive buffer of `rcvbuf` bytes: a client that never
/// reads then lets the kernel take only a little of what is sent to it, as on a real
/// network, rather than the megabytes loopback would buffer.
fn connect_with(from: &str, addr: &str, rcvbuf: Option<u32>) -> std::io::Result<TcpStream> {
    let from: IpAddr = from.parse().expect("ip");
    let addr: SocketAddr = addr.parse().expect("addr");
    fjord_tests::futures_block_on(async move {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size)?;
        }
        socket.bind(SocketAddr::new(from, 0))?;
        let stream = socket.connect(addr).await?;
        stream.into_std()
    })
    .and_then(|s| {
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

/// Whether the node answers ApiVersions on `s` within `within`.
fn answers(s: TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut w = Wire::from_stream(s);
    w.try_call(3, &ApiVersionsRequest::default()).is_some()
}

/// Before: a request pipelined behind one that waits (here a JoinGroup held for the
/// group's initial rebalance delay) was read and handled at once, so requests waited in
/// the node's memory, up to 64 a connection. Now, as in Kafka, a connection's next request
/// is read only once the one before it is answered.
#[test]
fn pipelined_requests_wait_in_the_socket_until_the_one_before_is_answered() {
    const DELAY_MS: u64 = 3000;
    let delay = format!("group.initial.rebalance.delay.ms={DELAY_MS}");
    let node = Node::start_with(&["--override", &delay]);
    let topic = "pipelined";
    create_topic(&node.bootstrap(), topic, 1, &[]);
    let mut wire = Wire::connect(&node.bootstrap());
    wire.find_coordinator("pipelined-group", 0)
        .expect("the coordinator is found");
    // Found is not loaded: a JoinGroup during the load is answered at once with
    // COORDINATOR_LOAD_IN_PROGRESS, and the Produce behind it would then rightly go ahead.
    wait_until(
        "the group's coordinator has loaded",
        Duration::from_secs(30),
        || {
            let described = wire.call(
                0,
                &DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(StrBytes::from_static_str("pipelined-group"))]),
            );
            let loading = ResponseError::CoordinatorLoadInProgress.code();
            (described.groups[0].error_code != loading).then_some(())
        },
    );

    // JoinGroup v3 needs no member id: a new group holds it for the whole delay.
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("pipelined-group")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range"))
        ]);
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(fjord_tests::record_batch(
                    1,
                    10,
                    1_700_000_000_000,
                    None,
                )))])]);
    let sent = Instant::now();
    let join_id = wire.send(3, &join);
    let produce_id = wire.send(7, &produce);

    // The node cannot answer the JoinGroup before the delay has passed since it read it,
    // so until well inside the delay the Produce behind it must not have been handled.
    let consumer: BaseConsumer = client_config(&node.bootstrap())
        .set("group.id", "pipelined-observer")
        .create()
        .expect("consumer");
    let inside_delay = Duration::from_millis(DELAY_MS * 2 / 3);
    let mut looks = 0;
    while sent.elapsed() < inside_delay {
        let (_, end) = consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(5))
            .expect("watermarks");
        if sent.elapsed() < inside_delay {
            looks += 1;
            if end != 0 {
                let joined = wire.receive::<JoinGroupRequest>(3, join_id);
                panic!("the pipelined Produce was handled while the JoinGroup before it waited: {joined:?}");
            }
        }
    }
    assert!(
        looks > 0,
        "the log end was never looked at inside the delay"
    );

    let joined = wire.receive::<JoinGroupRequest>(3, join_id);
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let produced = wire.receive::<ProduceRequest>(7, produce_id);
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    let (_, end) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(5))
        .expect("watermarks");
    assert_eq!(
        end, 1,
        "the Produce was handled after the JoinGroup was answered"
    );
}

/// Before: the first header took all of queued.max.request.bytes (100 MiB), and every
/// other client's requests hung for as long as the connection stayed, 665 s measured.
#[test]
fn frame_headers_claiming_the_request_pool_stall_nobody() {
    let node = Node::start();
    create_topic(&node.bootstrap(), "steady", 1, &[]);
    let claim = (100 * MIB) as i32 - 16;
    let mut attackers: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(node.bootstrap()).expect("connect");
            s.write_all(&header(claim, 0, 9)).expect("header");
            s
        })
        .collect();
    let sent = Instant::now();
    wait_until("the headers are read", Duration::from_secs(30), || {
        (node.metric("fjord_request_memory_bytes") > 0.0).then_some(())
    });
    let slowest = produce_some(&node.bootstrap(), "steady", 20);
    let (bytes, took) = fetch_once(&node.bootstrap(), "steady", MIB as i32);
    println!("while 3 headers claim 100 MiB each: slowest produce {slowest:?}, fetch {took:?}");
    assert!(slowest < BOUND, "a produce took {slowest:?}");
    assert!(
        bytes > 0 && took < BOUND,
        "fetch: {bytes} bytes in {took:?}"
    );
    let held = node.metric("fjord_request_memory_bytes") / MIB as f64;
    assert!(held < 4.0, "{held:.1} MiB of the request pool held");
    // A frame that stops arriving is dropped (15 s without progress).
    for a in &mut attackers {
        let left = Duration::from_secs(30).saturating_sub(sent.elapsed());
        assert!(
            closed_within(a, left),
            "a stalled frame's connection is closed"
        );
    }
    assert!(
        sent.elapsed() >= Duration::from_secs(14),
        "not before its time"
    );
}

/// Before: two unauthenticated connections claiming ~330 KiB SaslAuthenticate frames,
/// charged 160 times that, blocked every login.
#[test]
fn unauthenticated_frame_headers_do_not_block_logins() {
    let certs = Certs::new();
    let users = users_file(&certs, &[("alice", "alice-secret")]);
    let node = secure::start("SASL_PLAINTEXT", &[format!("sasl.users.file={users}")]);
    let _attackers: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(node.bootstrap()).expect("connect");
            s.write_all(&header(330 * 1024, 36, 2)).expect("header");
            s
        })
        .collect();
    wait_until("the headers are read", Duration::from_secs(30), || {
        (node.metric("fjord_request_memory_bytes") > 0.0).then_some(())
    });
    for _ in 0..5 {
        let started = Instant::now();
        let mut w = Wire::connect(&node.bootstrap());
        w.set_read_timeout(BOUND);
        assert_eq!(w.login_plain("alice", "alice-secret").error_code, 0);
        assert!(
            started.elapsed() < BOUND,
            "login took {:?}",
            started.elapsed()
        );
    }
}

/// Before: twenty connections pipelining ten fetches each, never reading, spent the
/// response budget and every other consumer got 0 bytes and no error (10 probes of 10).
#[test]
fn pipelined_unread_fetches_do_not_starve_consumers() {
    let budget = 16 * MIB;
    let node = Node::start_with(&["--override", &format!("queued.max.response.bytes={budget}")]);
    create_topic(&node.bootstrap(), "big", 1, &[]);
    let producer: BaseProducer = client_config(&node.bootstrap())
        .set("linger.ms", "10")
        .create()
        .expect("producer");
    let value = vec![b'x'; 256 * 1024];
    for _ in 0..96 {
        while producer
            .send(BaseRecord::<(), _>::to("big").payload(&value))
            .is_err()
        {
            producer.poll(Duration::from_millis(50));
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("24 MiB written");
    let before = node.rss_bytes();
    node.reset_peak_rss();
    let greedy = fetch("big", i32::MAX, 0);
    let _attackers: Vec<Wire> = (0..20)
        .map(|_| {
            let s = connect_with("127.0.0.1", &node.bootstrap(), Some(4096)).expect("connect");
            let mut w = Wire::from_stream(s);
            for _ in 0..10 {
                w.send(12, &greedy);
            }
            w
        })
        .collect();
    wait_until(
        "the attack holds the budget",
        Duration::from_secs(30),
        || (node.metric("fjord_response_memory_bytes") >= (budget - MIB) as f64).then_some(()),
    );
    for probe in 0..10 {
        let (bytes, took) = fetch_once(&node.bootstrap(), "big", MIB as i32);
        println!(
            "probe {probe}: {bytes} bytes in {took:?}, {:.1} MiB held",
            node.metric("fjord_response_memory_bytes") / MIB as f64
        );
        assert!(bytes > 0, "probe {probe}: 0 bytes");
        assert!(took < BOUND, "probe {probe} took {took:?}");
    }
    // The budget, and a first batch (at most about 1 MiB here) per answer beyond it.
    let held = node.metric("fjord_response_memory_bytes") / MIB as f64;
    let grown = node.peak_rss_bytes().saturating_sub(before) as f64 / MIB as f64;
    println!("20 x 10 pipelined unread fetches: {held:.1} MiB in answers, grew {grown:.1} MiB");
    assert!(held <= 16.0 + 21.0, "{held:.1} MiB held");
    assert!(grown < 16.0 + 21.0 + 48.0, "grew {grown:.1} MiB");
}

/// Before: no connection was ever closed for being idle.
#[test]
fn idle_connections_are_closed_and_busy_ones_are_not() {
    let node = Node::start_with(&["--override", "connections.max.idle.ms=2000"]);
    let mut idle = Wire::connect(&node.bootstrap());
    idle.call(3, &ApiVersionsRequest::default());
    let opened = Instant::now();
    let mut busy = Wire::connect(&node.bootstrap());
    while opened.elapsed() < Duration::from_secs(5) {
        assert!(
            busy.try_call(12, &MetadataRequest::default().with_topics(Some(vec![])))
                .is_some(),
            "a connection in use stays open"
        );
        std::thread::sleep(Duration::from_millis(500)); // the client's pace, not a sync
    }
    let mut stream = idle.into_stream();
    assert!(closed_within(&mut stream, Duration::from_secs(10)));
    assert!(node.metric("fjord_connections_closed_idle_total") >= 1.0);
}

/// Before: one address could open connections until the node ran out of file
/// descriptors (19,990; 57 to 413 MiB), and nothing limited the rate.
#[test]
fn connections_are_limited_per_address_and_per_second() {
    let node = Node::start_with(&[
        "--override",
        "max.connections.per.ip=20",
        "--override",
        "max.connections.per.ip.overrides=127.0.0.1:1000",
    ]);
    let addr = node.bootstrap();
    let before = node.rss_bytes();
    node.reset_peak_rss();
    let mut held = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = connect_from("127.0.0.2", &addr) {
            held.push(s);
        }
    }
    wait_until("the refusals are counted", Duration::from_secs(30), || {
        (node.metric("fjord_connections_refused_total{reason=\"max.connections.per.ip\"}") >= 280.0)
            .then_some(())
    });
    let served = held
        .into_iter()
        .filter_map(|s| s.try_clone().ok().map(|c| (s, c)))
        .filter(|(_, c)| answers(c.try_clone().expect("clone"), Duration::from_secs(2)))
        .count();
    assert_eq!(served, 20, "only max.connections.per.ip are served");
    // The override, and everyone else, are unaffected.
    assert!(produce_some(&addr, "t-limits", 3) < BOUND);
    let grown = node.peak_rss_bytes().saturating_sub(before) as f64 / MIB as f64;
    assert!(grown < 32.0, "grew {grown:.1} MiB");

    // KIP-612: an address's connection_creation_rate, set with the CLI.
    let set = std::process::Command::new(fjord_tests::fjord_bin())
        .args([
            "quota",
            "alter",
            "--bootstrap-server",
            &addr,
            "--ip",
            "127.0.0.3",
        ])
        .args(["--add", "connection_creation_rate=2"])
        .output()
        .expect("fjord quota");
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let shown = std::process::Command::new(fjord_tests::fjord_bin())
        .args([
            "quota",
            "describe",
            "--bootstrap-server",
            &addr,
            "--ip",
            "127.0.0.3",
        ])
        .output()
        .expect("fjord quota");
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout).trim(),
        "ip=127.0.0.3\tconnection_creation_rate=2"
    );
    wait_until("the quota is applied", Duration::from_secs(10), || {
        let s = connect_from("127.0.0.3", &addr).ok()?;
        drop(s);
        (node.metric("fjord_connections_refused_total{reason=\"connection_creation_rate\"}") >= 1.0)
            .then_some(())
    });
    let burst: Vec<TcpStream> = (0..60)
        .filter_map(|_| connect_from("127.0.0.3", &addr).ok())
        .collect();
    let served = burst
        .into_iter()
        .filter(|s| answers(s.try_clone().expect("clone"), Duration::from_millis(500)))
        .count();
    // 2 a second over eleven one-second windows: about 20 in a burst.
    assert!(served <= 25, "{served} of 60 served");
    assert!(answers(
        connect_from("127.0.0.4", &addr).expect("connect"),
        BOUND
    ));
}

/// KIP-402: at max.connections the listener waits for a connection to close.
#[test]
fn a_full_node_accepts_again_when_a_connection_closes() {
    let node = Node::start_with(&["--override", "max.connections=10"]);
    let addr = node.bootstrap();
    let mut held: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    wait_until("ten are open", Duration::from_secs(10), || {
        (node.metric("fjord_connections_open") >= 10.0).then_some(())
    });
    let waiting = TcpStream::connect(&addr).expect("the backlog takes it");
    let mut w = Wire::from_stream(waiting);
    w.set_read_timeout(Duration::from_secs(1));
    let id = w.send(3, &ApiVersionsRequest::default());
    assert!(
        w.try_receive::<ApiVersionsRequest>(3, id).is_none(),
        "not served while full"
    );
    held.pop();
    w.set_read_timeout(BOUND);
    assert!(
        w.try_receive::<ApiVersionsRequest>(3, id).is_some(),
        "served once a connection closed"
    );
    assert!(node.metric("fjord_connections_refused_total{reason=\"max.connections\"}") >= 1.0);
}

/// Before: 2,129 PLAIN passwords a second from one client. KIP-306's 100 ms delay holds
/// each failed login.
#[test]
fn failed_logins_are_answered_slowly() {
    let certs = Certs::new();
    let users = users_file(&certs, &[("alice", "alice-secret")]);
    let node = secure::start("SASL_PLAINTEXT", &[format!("sasl.users.file={users}")]);
    let started = Instant::now();
    let mut tries = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let mut w = Wire::connect(&node.bootstrap());
        assert_eq!(
            w.login_plain("alice", &format!("guess-{tries}")).error_code,
            SASL_AUTHENTICATION_FAILED
        );
        tries += 1;
    }
    println!("{tries} guesses in 2 s");
    assert!(tries <= 22, "{tries} guesses in 2 s");
    let started = Instant::now();
    Wire::connect_plain(&node.bootstrap(), "alice", "alice-secret");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "good logins are not delayed"
    );
}
