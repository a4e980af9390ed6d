//! The rpc port takes calls only from nodes of the cluster, each as itself. On a53228e a
//! plain gRPC client with no certificate forwarded metadata writes to the controller,
//! read partitions and deposed the controller; here each of those calls is made the way
//! such a client would, and refused.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fjord_controller::ControllerRequest;
use fjord_proto::peer::{ClusterSecret, PeerDialer, PeerLinks};
use fjord_proto::v1::controller_client::ControllerClient;
use fjord_proto::v1::replication_client::ReplicationClient;
use fjord_proto::v1::{ForwardRequest, ReplicaFetchRequest};
use fjord_tests::{fjord_bin, free_port, Cluster, TEST_CLUSTER_SECRET};
use tonic::transport::{Channel, Endpoint};

/// A gRPC channel to `addr` as `links` make it: nothing (a stranger), or the cluster
/// secret with a node id of our choosing.
fn channel(addr: &str, links: PeerLinks) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if links.is_plain() {
        endpoint.connect_lazy()
    } else {
        endpoint.connect_with_connector_lazy(PeerDialer(links))
    }
}

fn as_node(secret: &str, node_id: u64) -> PeerLinks {
    PeerLinks {
        tls: None,
        auth: Some((
            ClusterSecret::new(secret.as_bytes()).expect("secret"),
            node_id,
        )),
    }
}

/// Forwards a drain of broker 2 to the node at `addr`, as node `origin`.
fn forward_drain(addr: &str, links: PeerLinks, origin: u64) -> Result<(), tonic::Status> {
    forward(
        addr,
        links,
        origin,
        ControllerRequest::DrainBroker { broker_id: 2 },
    )
}

fn forward(
    addr: &str,
    links: PeerLinks,
    origin: u64,
    request: ControllerRequest,
) -> Result<(), tonic::Status> {
    fjord_tests::futures_block_on(async move {
        let mut client = ControllerClient::new(channel(addr, links));
        let request = serde_json::to_vec(&request).expect("encodes");
        client
            .forward(ForwardRequest {
                request: request.into(),
                origin_node: origin,
            })
            .await
            .map(|_| ())
    })
}

fn drained(c: &Cluster, node: i32) -> bool {
    c.status(1)
        .and_then(|s| {
            s["brokers"]
                .as_array()?
                .iter()
                .find(|b| b["id"] == node)
                .and_then(|b| b["drained"].as_bool())
        })
        .unwrap_or(false)
}

#[test]
fn only_members_holding_the_secret_reach_the_rpc_port_and_only_as_themselves() {
    let mut c = Cluster::start(3, 0, &[]);
    let controller = c.active_controller().expect("a controller");
    let rpc = format!("127.0.0.1:{}", c.node(controller).rpc_port);

    // A plain gRPC client (before: its forwarded writes were applied).
    let stranger = forward_drain(&rpc, PeerLinks::default(), 1);
    assert!(stranger.is_err(), "a client without the secret is refused");
    fjord_tests::wait_until("the refusal is counted", Duration::from_secs(30), || {
        (c.node(controller).metric("fjord_rpc_peers_refused_total") >= 1.0).then_some(())
    });
    // A wrong secret fails the handshake from both sides.
    let guess = forward_drain(&rpc, as_node("not-the-cluster-secret", 1), 1);
    assert!(guess.is_err());
    // The secret, but claiming to be another node than the link proved.
    let liar = forward_drain(&rpc, as_node(TEST_CLUSTER_SECRET, 2), 3).expect_err("refused");
    assert_eq!(liar.code(), tonic::Code::PermissionDenied, "{liar:?}");
    // The secret, as a node id the cluster does not know.
    let outsider = forward_drain(&rpc, as_node(TEST_CLUSTER_SECRET, 99), 99).expect_err("refused");
    assert_eq!(
        outsider.code(),
        tonic::Code::PermissionDenied,
        "{outsider:?}"
    );
    assert!(
        c.node(controller)
            .metric("fjord_rpc_calls_refused_total{call=\"Forward\"}")
            >= 2.0
    );
    // A member asking, for another broker, what only that broker may ask.
    let proxy = forward(
        &rpc,
        as_node(TEST_CLUSTER_SECRET, 2),
        2,
        ControllerRequest::ControlledShutdown {
            broker_id: 3,
            broker_epoch: 0,
        },
    )
    .expect_err("refused");
    assert_eq!(proxy.code(), tonic::Code::PermissionDenied, "{proxy:?}");
    assert!(!drained(&c, 2), "nothing refused took effect");

    // Replication as another replica: refused before any record is read.
    let fetch = fjord_tests::futures_block_on(async {
        let mut client = ReplicationClient::new(channel(&rpc, as_node(TEST_CLUSTER_SECRET, 2)));
        let requests = tokio_stream_once(ReplicaFetchRequest {
            replica_id: 3,
            ..Default::default()
        });
        match client.fetch(requests).await {
            Ok(stream) => stream.into_inner().message().await.map(|_| ()),
            Err(e) => Err(e),
        }
    });
    assert_eq!(
        fetch.expect_err("refused").code(),
        tonic::Code::PermissionDenied
    );

    // A member, as itself, is served: the refusals above were not an accident.
    forward_drain(&rpc, as_node(TEST_CLUSTER_SECRET, 1), 1).expect("a member's forward");
    assert!(drained(&c, 2));
}

/// A stream of one message that then stays open, as a follower's fetch stream does.
fn tokio_stream_once<T: Send + 'static>(
    item: T,
) -> impl futures::Stream<Item = T> + Send + 'static {
    use futures::StreamExt;
    futures::stream::once(async move { item }).chain(futures::stream::pending())
}

/// Before: the README's cluster command bound the rpc port to 0.0.0.0 with no
/// authentication and no warning.
#[test]
fn an_exposed_rpc_port_needs_the_secret_or_an_explicit_opt_out() {
    let tmp = tempfile::tempdir().expect("tmp");
    let serve = |extra: &[&str]| {
        std::process::Command::new(fjord_bin())
            .args(["serve", "--check-config", "--data-dir"])
            .arg(tmp.path())
            .args(["--rpc-listener", &format!("0.0.0.0:{}", free_port())])
            .args(extra)
            .env_remove("FJORD_CLUSTER_SECRET")
            .output()
            .expect("fjord serve")
    };
    let refused = serve(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no authentication"), "{stderr}");

    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "short").expect("write");
    let short = serve(&["--cluster-secret-file", secret.to_str().expect("utf-8")]);
    assert_eq!(
        short.status.code(),
        Some(2),
        "a guessable secret is refused"
    );
    std::fs::write(&secret, TEST_CLUSTER_SECRET).expect("write");
    let with_secret = serve(&["--cluster-secret-file", secret.to_str().expect("utf-8")]);
    assert!(
        with_secret.status.success(),
        "{}",
        String::from_utf8_lossy(&with_secret.stderr)
    );
    let described = String::from_utf8_lossy(&with_secret.stdout);
    assert!(
        !described.contains(TEST_CLUSTER_SECRET),
        "the secret is never printed"
    );

    let opted_out = serve(&["--override", "rpc.allow.unauthenticated=true"]);
    assert!(opted_out.status.success());
    assert!(String::from_utf8_lossy(&opted_out.stderr).contains("unauthenticated peers"));
}

/// A client speaking HTTP/2 straight away (any gRPC tool) gets the connection closed,
/// not a SETTINGS frame.
#[test]
fn a_raw_http2_client_gets_nothing() {
    let mut c = Cluster::start(1, 0, &[]);
    let rpc = format!("127.0.0.1:{}", c.node(1).rpc_port);
    let mut s = TcpStream::connect(&rpc).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .expect("preface");
    s.write_all(&[0u8; 64]).expect("more");
    let mut buf = [0u8; 256];
    let got = s.read(&mut buf).unwrap_or(0);
    assert_eq!(got, 0, "the node answered {:?}", &buf[..got]);
}
