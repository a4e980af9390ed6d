//! Security against real clients and real processes: TLS and SASL on Kafka listeners
//! (kcat, confluent-kafka, kafka-python, librdkafka through the `rdkafka` crate, and the
//! `fjord` CLI), SCRAM users in the metadata log, KIP-368
//! re-authentication, certificate reload, and mutual TLS between nodes.
//! ACLs are in `acls.rs`; the helpers both use in `fjord_tests::secure`.

use std::process::{Command, Stdio};
use std::time::Duration;

use fjord_tests::certs::Certs;
use fjord_tests::secure::*;
use fjord_tests::wire::Wire;
use fjord_tests::{python, wait_until, Cluster, Node};
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

#[test]
fn sasl_ssl_round_trips_with_every_client_and_bad_logins_are_refused() {
    let certs = Certs::new();
    let keystore = certs.issue("node", &[]);
    let users = users_file(&certs, &[("admin", "admin-secret")]);
    let node = start(
        "SASL_SSL",
        &[
            format!("ssl.keystore.location={}", keystore.display()),
            format!("sasl.users.file={users}"),
        ],
    );
    let ca = certs.ca().display().to_string();
    let tls = |mut props: Vec<String>| {
        props.push(format!("ssl.ca.location={ca}"));
        props
    };
    let admin = tls(sasl_props(
        "SASL_SSL",
        "SCRAM-SHA-512",
        "admin",
        "admin-secret",
    ));

    // SCRAM users live in the metadata log, created and listed with the CLI.
    fjord_ok(
        &node,
        &admin,
        &["user", "create", "carol", "--password", "carol-secret"],
    );
    let listed = fjord_ok(&node, &admin, &["user", "list"]);
    assert!(
        listed.contains("carol") && listed.contains("SCRAM-SHA-256"),
        "{listed}"
    );
    fjord_ok(
        &node,
        &admin,
        &["topic", "create", "secure", "--partitions", "2"],
    );

    // The Python clients, each mechanism, as carol.
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/security.py"))
        .args(["--bootstrap-server", &node.bootstrap(), "--ca", &ca])
        .args(["--user", "carol", "--password", "carol-secret"])
        .args(["--topic", "secure"])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "security.py: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    for (step, result) in results.as_object().expect("object") {
        assert_eq!(result["ok"], true, "{step}: {result}");
    }

    // kcat (librdkafka) with SCRAM-SHA-256: write and read back.
    let carol = tls(sasl_props(
        "SASL_SSL",
        "SCRAM-SHA-256",
        "carol",
        "carol-secret",
    ));
    let (ok, text) = kcat(&node, &carol, "secure", Some("k1\nk2\nk3\n"));
    assert!(ok, "kcat produce: {text}");
    let (ok, text) = kcat(&node, &carol, "secure", None);
    assert!(ok && text.contains("k2"), "kcat consume: {text}");

    // A wrong password is refused, and says so.
    let wrong = tls(sasl_props("SASL_SSL", "SCRAM-SHA-256", "carol", "nope"));
    let (ok, text) = kcat(&node, &wrong, "secure", None);
    assert!(!ok, "a wrong password must not read: {text}");
    assert!(text.contains("Authentication failed"), "{text}");

    // Plain TCP to a TLS listener gets no Kafka answer.
    let mut raw = Wire::connect(&node.bootstrap());
    assert!(raw
        .try_call(3, &ApiVersionsRequest::default())
        .is_none_or(|r| r.error_code != 0));

    // A deleted user cannot log in again.
    fjord_ok(&node, &admin, &["user", "delete", "carol"]);
    let (ok, text) = kcat(&node, &carol, "secure", None);
    assert!(!ok && text.contains("Authentication failed"), "{text}");
    let listed = fjord_ok(&node, &admin, &["user", "list"]);
    assert!(!listed.contains("carol"), "{listed}");
}

/// Produce v9 of one small batch to partition 0; returns its error code.
#[test]
fn sessions_expire_and_reauthentication_keeps_the_same_principal() {
    let certs = Certs::new();
    let users = users_file(&certs, &[("alice", "alice-secret"), ("bob", "bob-secret")]);
    let node = start(
        "SASL_PLAINTEXT",
        &[
            format!("sasl.users.file={users}"),
            "connections.max.reauth.ms=3000".into(),
        ],
    );
    let mut w = Wire::connect(&node.bootstrap());
    let login = w.login_plain("alice", "alice-secret");
    assert_eq!(login.error_code, 0);
    // Issue 32: success carries a null message, as Kafka's does, not "".
    assert_eq!(login.error_message, None);
    assert!(
        login.session_lifetime_ms > 0 && login.session_lifetime_ms <= 3000,
        "KIP-368: the session lifetime is announced ({})",
        login.session_lifetime_ms
    );
    // Re-authentication on the same connection, as the same user, renews the session.
    let again = w.login_plain("alice", "alice-secret");
    assert_eq!(again.error_code, 0, "{:?}", again.error_message);
    assert!(w
        .try_call(12, &MetadataRequest::default().with_topics(None))
        .is_some());
    // Another principal on the same connection is refused, and the connection closed.
    let switch = w.login_plain("bob", "bob-secret");
    assert_eq!(switch.error_code, SASL_AUTHENTICATION_FAILED);
    assert!(w.try_call(3, &ApiVersionsRequest::default()).is_none());

    // A session left to expire ends the connection at its next request.
    let mut w = Wire::connect_plain(&node.bootstrap(), "alice", "alice-secret");
    wait_until(
        "the broker closes the expired session",
        Duration::from_secs(30),
        || {
            w.try_call(12, &MetadataRequest::default().with_topics(None))
                .is_none()
                .then_some(())
        },
    );

    // A user removed from the users file cannot re-authenticate once it is reloaded.
    let mut w = Wire::connect_plain(&node.bootstrap(), "bob", "bob-secret");
    users_file(&certs, &[("alice", "alice-secret")]);
    wait_until(
        "the users file is reloaded",
        Duration::from_secs(30),
        || node.log().contains("SASL users reloaded").then_some(()),
    );
    let renewed = w.login_plain("bob", "bob-secret");
    assert_eq!(renewed.error_code, SASL_AUTHENTICATION_FAILED);
}

#[test]
fn client_certificates_name_principals_and_certificates_reload() {
    let certs = Certs::new();
    let keystore = certs.issue("node", &[]);
    // Client certificates come from their own CA, which the listener trusts.
    let alice_cert = certs.issue_by("clients", "alice", &[]);
    let admin_cert = certs.issue_by("clients", "admin", &[]);
    let node = start(
        "SSL",
        &[
            format!("ssl.keystore.location={}", keystore.display()),
            format!(
                "ssl.truststore.location={}",
                certs.path("clients.pem").display()
            ),
            "ssl.client.auth=required".into(),
            AUTHORIZER.into(),
            "super.users=User:CN=admin".into(),
        ],
    );
    let ca = certs.ca().display().to_string();
    let with_cert = |name: &str| {
        let dir = certs.dir().display();
        vec![
            "security.protocol=SSL".to_string(),
            format!("ssl.ca.location={ca}"),
            format!("ssl.certificate.location={dir}/{name}.crt"),
            format!("ssl.key.location={dir}/{name}.key"),
        ]
    };
    let _ = (&alice_cert, &admin_cert);
    let admin = with_cert("admin");
    let alice = with_cert("alice");
    fjord_ok(&node, &admin, &["topic", "create", "audit"]);

    // The certificate's subject is the principal: alice has no ACLs yet.
    let (ok, text) = kcat(&node, &alice, "audit", Some("a\n"));
    assert!(!ok && text.contains("authorization failed"), "{text}");
    fjord_ok(
        &node,
        &admin,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:CN=alice",
            "--producer",
            "--topic",
            "audit",
        ],
    );
    let (ok, text) = kcat(&node, &alice, "audit", Some("a\n"));
    assert!(ok, "{text}");

    // Without a client certificate the handshake fails.
    let anonymous = vec![
        "security.protocol=SSL".to_string(),
        format!("ssl.ca.location={ca}"),
    ];
    let (ok, text) = kcat(&node, &anonymous, "audit", None);
    assert!(!ok, "no certificate, no access: {text}");

    // A renewed certificate from another CA is picked up without a restart: clients
    // that trust only the new CA get in once it is served.
    let renewed = certs.issue_by("ca2", "node2", &[]);
    let trusts_new = vec![
        "security.protocol=SSL".to_string(),
        format!("ssl.ca.location={}", certs.path("ca2.pem").display()),
        format!(
            "ssl.certificate.location={}/admin.crt",
            certs.dir().display()
        ),
        format!("ssl.key.location={}/admin.key", certs.dir().display()),
    ];
    let (ok, _) = kcat(&node, &trusts_new, "audit", None);
    assert!(!ok, "the old certificate is not trusted by the new CA");
    std::fs::copy(&renewed, &keystore).expect("replace the keystore");
    wait_until(
        "the renewed certificate is served",
        Duration::from_secs(60),
        || kcat(&node, &trusts_new, "audit", None).0.then_some(()),
    );
}

#[test]
fn rpc_peers_without_the_cluster_certificate_are_refused() {
    let certs = Certs::new();
    let keystore = certs.issue("node", &[]).display().to_string();
    let ca = certs.ca().display().to_string();
    let settings = [
        "--override".to_string(),
        format!("rpc.ssl.keystore.location={keystore}"),
        "--override".into(),
        format!("rpc.ssl.truststore.location={ca}"),
    ];
    let args: Vec<&str> = settings.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start(3, 0, &args);
    let bootstrap = cluster.bootstrap();

    // The cluster works over mutual TLS: Raft, forwarding and replication.
    fjord_tests::create_topic_rf(
        &bootstrap,
        "replicated",
        3,
        3,
        &[("min.insync.replicas", "2")],
    );
    let producer: rdkafka::producer::FutureProducer = fjord_tests::client_config(&bootstrap)
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..30 {
        let key = format!("k{i}");
        fjord_tests::futures_block_on(
            producer.send(
                rdkafka::producer::FutureRecord::to("replicated")
                    .key(&key)
                    .payload("v"),
                Duration::from_secs(30),
            ),
        )
        .unwrap_or_else(|(e, _)| panic!("acks=all over mTLS replication: {e}"));
    }
    wait_until("every replica in sync", Duration::from_secs(60), || {
        let v = cluster.status(1)?;
        let t = v["topics"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == "replicated")?
            .clone();
        t["partitions"]
            .as_array()?
            .iter()
            .all(|p| p["isr"].as_array().is_some_and(|i| i.len() == 3))
            .then_some(())
    });

    let node = cluster.node(1);
    let rpc = format!("127.0.0.1:{}", node.rpc_port);
    let refused_before = node.metric("fjord_rpc_peers_refused_total");

    // Plain TCP speaking HTTP/2 (what a gRPC client sends first) gets nothing.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&rpc).expect("connect rpc");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").ok();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(
            n == 0 || buf[0] == 0x15,
            "a plain peer gets a TLS alert or nothing, not HTTP/2"
        );
    }
    // TLS without a client certificate, and with one from another CA: both refused.
    let foreign = certs.issue_by("foreign", "intruder", &[]);
    for client_cert in [None, Some(&foreign)] {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &rpc, "-CAfile", &ca, "-alpn", "h2"]);
        if let Some(pem) = client_cert {
            let pem = pem.display().to_string();
            cmd.args(["-cert", &pem, "-key", &pem]);
        }
        // What openssl prints depends on its version and TLS 1.3's timing; the broker's
        // own count of refused peers below is the check.
        let _ = cmd.stdin(Stdio::null()).output().expect("openssl s_client");
    }
    wait_until(
        "the refused peers are counted",
        Duration::from_secs(10),
        || {
            (cluster.node(1).metric("fjord_rpc_peers_refused_total") >= refused_before + 3.0)
                .then_some(())
        },
    );
}

/// The compose example's security settings (deploy/sasl-ssl), with certificates made as
/// its comment says, work as documented: the admin logs in over SASL_SSL with kcat and
/// manages users and ACLs.
#[test]
fn the_compose_sasl_ssl_example_settings_work() {
    let certs = Certs::new();
    let root = fjord_tests::repo_root().join("deploy/sasl-ssl");
    let dir = certs.dir().join("etc");
    std::fs::create_dir_all(dir.join("certs")).expect("dir");
    let made = Command::new("bash")
        .arg(fjord_tests::repo_root().join("deploy/gen-certs.sh"))
        .arg(dir.join("certs"))
        .args(["node", "DNS:fjord-0", "DNS:localhost", "IP:127.0.0.1"])
        .output()
        .expect("gen-certs.sh");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::copy(root.join("users"), dir.join("users")).expect("users");
    let toml = std::fs::read_to_string(root.join("fjord.toml"))
        .expect("fjord.toml")
        .replace("/etc/fjord/", &format!("{}/", dir.display()));
    std::fs::write(dir.join("fjord.toml"), toml).expect("write config");
    let config = dir.join("fjord.toml").display().to_string();
    let node = Node::start_secure("SASL_SSL", &["--config", &config]);
    let admin = vec![
        "security.protocol=SASL_SSL".to_string(),
        "sasl.mechanism=SCRAM-SHA-512".into(),
        "sasl.username=admin".into(),
        "sasl.password=admin-secret".into(),
        format!("ssl.ca.location={}/certs/ca.pem", dir.display()),
    ];
    fjord_ok(
        &node,
        &admin,
        &["user", "create", "alice", "--password", "alice-secret"],
    );
    fjord_ok(&node, &admin, &["topic", "create", "orders"]);
    fjord_ok(
        &node,
        &admin,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--producer",
            "--topic",
            "orders",
        ],
    );
    let mut alice = admin.clone();
    alice[2] = "sasl.username=alice".into();
    alice[3] = "sasl.password=alice-secret".into();
    let (ok, text) = kcat(&node, &alice, "orders", Some("one\ntwo\n"));
    assert!(ok, "{text}");
    let (ok, text) = kcat(&node, &admin, "orders", None);
    assert!(ok && text.contains("two"), "{text}");
}

/// Tens of megabytes of small batches read over TLS by an assigned consumer (no group,
/// so no other traffic on the connection) all arrive. That each response is flushed
/// whole on its own is proven by `kafka::connection`'s unit test; this is the end to end
/// read path through rustls.
#[test]
fn large_fetches_over_tls_arrive_without_stalling() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::Message;

    let certs = Certs::new();
    let keystore = certs.issue("node", &[]);
    let node = start(
        "SSL",
        &[format!("ssl.keystore.location={}", keystore.display())],
    );
    let ca = certs.ca().display().to_string();
    fjord_tests::register_client_security(
        &node.bootstrap(),
        &[("security.protocol", "SSL"), ("ssl.ca.location", &ca)],
    );
    fjord_tests::create_topic(&node.bootstrap(), "bulk", 2, &[]);
    // Many small batches make many pieces per fetch answer, as in the benchmark that
    // found the stall.
    const RECORDS: usize = 200_000;
    let value = vec![b'x'; 100];
    let producer: ThreadedProducer<DefaultProducerContext> =
        fjord_tests::client_config(&node.bootstrap())
            .set("linger.ms", "0")
            .set("batch.num.messages", "50")
            .create()
            .expect("producer");
    for i in 0..RECORDS {
        let key = i.to_string();
        let mut record = BaseRecord::to("bulk").key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(10)); // queue full: let it drain
                    record = r;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    let consumer: BaseConsumer = fjord_tests::client_config(&node.bootstrap())
        .set("group.id", "bulk-reader")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        // A small receive buffer makes the broker's writes block part way.
        .set("socket.receive.buffer.bytes", "4096")
        .create()
        .expect("consumer");
    // Assigned, not subscribed: no group heartbeats whose answers would flush a stuck
    // session as a side effect.
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset("bulk", p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut seen = 0usize;
    // librdkafka gives up on a silent socket after 60 s, so a stall shows as a timeout.
    wait_until(
        "every record read over TLS",
        Duration::from_secs(45),
        || {
            while let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                seen += usize::from(m.payload().is_some_and(|p| p.len() == 100));
            }
            (seen >= RECORDS).then_some(())
        },
    );
    assert_eq!(seen, RECORDS);
}

/// Before: one CA signed nodes and clients, so a client certificate passed as a node, and
/// private keys were world-readable (0644).
#[test]
fn gen_certs_keeps_node_and_client_cas_apart_and_keys_private() {
    use std::os::unix::fs::PermissionsExt;
    let certs = Certs::new();
    let gen = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(fjord_tests::repo_root().join("deploy/gen-certs.sh"))
            .args(args)
            .output()
            .expect("gen-certs.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let dir = certs.dir().to_str().expect("utf-8").to_string();
    gen(&[&dir, "node"]);
    gen(&["--client", &dir, "alice"]);
    for key in [
        "node.key",
        "node.pem",
        "alice.key",
        "alice.pem",
        "ca.key",
        "client-ca.key",
    ] {
        let mode = std::fs::metadata(certs.path(key))
            .expect(key)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}: {mode:o}");
    }
    let verify = |ca: &str, cert: &str| {
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(certs.path(ca))
            .arg(certs.path(cert))
            .output()
            .expect("openssl")
            .status
            .success()
    };
    assert!(verify("client-ca.pem", "alice.crt"));
    assert!(!verify("ca.pem", "alice.crt"), "a client is not a node");
    assert!(verify("ca.pem", "node.crt"));
    assert!(!verify("client-ca.pem", "node.crt"));
}
