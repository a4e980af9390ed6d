use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fjord_controller::metadata::{BrokerRegistration, Listener};
use fjord_controller::{
    Controller, ControllerConfig, ControllerRequest, ControllerResponse, CreateTopicRequest,
};
use uuid::Uuid;

fn config(dir: &std::path::Path) -> ControllerConfig {
    ControllerConfig {
        node_id: 1,
        dir: dir.to_path_buf(),
        voters: BTreeMap::from([(1, "127.0.0.1:1".to_string())]),
        election_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(10),
        session_timeout: Duration::from_secs(9),
        auto_leader_rebalance: true,
        leader_imbalance_check_interval: Duration::from_secs(300),
        leader_imbalance_per_broker_percentage: 10,
        auto_balance: None,
        max_partitions_per_broker: fjord_controller::limits::DEFAULT_MAX_PARTITIONS_PER_BROKER,
        rpc_links: Default::default(),
        disconnect_grace: None,
        may_bootstrap: true,
    }
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval, bounded by the deadline above
    }
}

fn registration() -> BrokerRegistration {
    BrokerRegistration {
        broker_id: 1,
        incarnation_id: Uuid::new_v4(),
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9092,
            security_protocol: "PLAINTEXT".into(),
        }],
        rack: None,
        rpc_address: "127.0.0.1:1".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_bootstraps_writes_and_recovers() {
    let dir = tempfile::tempdir().expect("tmp");
    let cluster_id;
    {
        let c = Controller::start(config(dir.path())).await.expect("start");
        wait_for("cluster id", || c.current().cluster_id.is_some()).await;
        cluster_id = c.current().cluster_id.clone();
        let r = c
            .submit(ControllerRequest::RegisterBroker(registration()))
            .await
            .expect("register");
        assert!(matches!(r, ControllerResponse::BrokerRegistered { .. }));
        let r = c
            .submit(ControllerRequest::CreateTopics {
                topics: vec![CreateTopicRequest {
                    name: "orders".into(),
                    num_partitions: 3,
                    replication_factor: 1,
                    assignments: None,
                    configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
                    internal: false,
                }],
                validate_only: false,
            })
            .await
            .expect("create");
        let ControllerResponse::Topics(t) = r else {
            panic!("unexpected {r:?}")
        };
        assert!(t[0].result.is_ok());
        let md = c.current();
        assert_eq!(md.topics["orders"].partitions.len(), 3);
        assert_eq!(md.partition("orders", 2).map(|p| p.leader), Some(1));
        // A second create of the same name is refused, and nothing changes.
        let again = c
            .submit(ControllerRequest::CreateTopics {
                topics: vec![CreateTopicRequest {
                    name: "orders".into(),
                    num_partitions: 1,
                    replication_factor: 1,
                    assignments: None,
                    configs: BTreeMap::new(),
                    internal: false,
                }],
                validate_only: false,
            })
            .await
            .expect("second create answers");
        let ControllerResponse::Topics(t) = again else {
            panic!()
        };
        assert!(t[0].result.is_err());
        c.shutdown().await;
    }
    // Restart: same cluster id, same topics, no re-initialization.
    let c = Controller::start(config(dir.path()))
        .await
        .expect("restart");
    wait_for("replayed metadata", || {
        c.current().topics.contains_key("orders")
    })
    .await;
    assert_eq!(c.current().cluster_id, cluster_id);
    assert_eq!(c.current().topics["orders"].configs["retention.ms"], "1000");
    c.shutdown().await;
}
