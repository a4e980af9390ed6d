//! Scaling down and back up (5 -> 3 -> 5 pods and voters) with the config the Helm chart
//! renders, under the chaos workload, following the README's Kubernetes runbooks command
//! for command: operator commands run in pod 0 (as `kubectl exec fjord-0 -- fjord ...`),
//! a `helm upgrade` that changes the voter count rewrites the ConfigMap and rolls the pods
//! highest ordinal first, removing pods stops their containers and keeps their volumes,
//! and adding them starts the same containers again.

use std::time::Duration;

use fjord_tests::docker::{ClusterSpec, ContainerCluster};
use fjord_tests::wait_until;

use super::chart::{chart_config, helm};
use super::harness::{turn, Readers, Run};

/// Every step here is a graceful one (SIGTERM, drain, reassignment, voter change), so each
/// may interrupt acknowledged writes no longer than the fault matrix's SIGTERM bound.
const GRACEFUL_BOUND_MS: u64 = 1_000;
const ADMIN: &str = "127.0.0.1:9644";

/// `fjord ARGS` in pod 0, which must succeed; returns its output.
fn operator(cluster: &ContainerCluster, args: &[&str]) -> String {
    let mut cmd = vec!["/usr/local/bin/fjord"];
    cmd.extend_from_slice(args);
    let (code, out) = cluster.exec(0, &cmd);
    assert_eq!(
        code,
        0,
        "fjord {} in pod fjord-0 failed:\n{out}",
        args.join(" ")
    );
    out
}

fn voters(cluster: &ContainerCluster) -> Option<Vec<u64>> {
    let status = cluster.status(0)?;
    let mut ids: Vec<u64> = status["quorum"]["nodes"]
        .as_array()?
        .iter()
        .filter(|n| n["voter"] == true)
        .filter_map(|n| n["node_id"].as_u64())
        .collect();
    ids.sort_unstable();
    Some(ids)
}

/// Partitions (of every topic, internal ones included) that list any of `brokers`.
fn replicas_on(cluster: &ContainerCluster, brokers: &[i64]) -> Option<Vec<String>> {
    let status = cluster.status(0)?;
    let mut found = Vec::new();
    for t in status["topics"].as_array()? {
        for p in t["partitions"].as_array()? {
            let replicas = p["replicas"].as_array()?;
            if replicas
                .iter()
                .any(|r| r.as_i64().is_some_and(|r| brokers.contains(&r)))
            {
                found.push(format!("{}-{}", t["name"], p["partition"]));
            }
        }
    }
    Some(found)
}

/// Every partition's replica count, by `topic-partition`.
fn replication_factors(
    cluster: &ContainerCluster,
) -> Option<std::collections::BTreeMap<String, usize>> {
    let status = cluster.status(0)?;
    let mut out = std::collections::BTreeMap::new();
    for t in status["topics"].as_array()? {
        for p in t["partitions"].as_array()? {
            out.insert(
                format!("{}-{}", t["name"], p["partition"]),
                p["replicas"].as_array()?.len(),
            );
        }
    }
    Some(out)
}

fn under_replicated(cluster: &ContainerCluster) -> Option<usize> {
    let status = cluster.status(0)?;
    let mut n = 0;
    for t in status["topics"].as_array()? {
        for p in t["partitions"].as_array()? {
            if p["isr"].as_array()?.len() < p["replicas"].as_array()?.len() {
                n += 1;
            }
        }
    }
    Some(n)
}

/// `helm upgrade --set voters=N`: the ConfigMap changes, so the StatefulSet replaces its
/// pods one at a time, highest ordinal first, each ready before the next goes.
fn roll_pods(run: &mut Run, toml: &str, why: &str) {
    run.cluster.rewrite_chart_config(toml);
    for id in (0..run.cluster.nodes.len() as i32).rev() {
        if !run.cluster.node(id).running {
            continue;
        }
        run.fault(format!("SIGTERM pod fjord-{id} ({why})"));
        run.cluster.stop(id);
        run.cluster.restart(id);
        run.heal(format!("pod fjord-{id} ready"));
        run.progress(200);
    }
}

#[test]
fn chart_config_scales_from_five_to_three_pods_and_voters_and_back_under_load() {
    let _t = turn();
    let Some(helm) = helm() else { return };
    let render = |prefix: &str, pods: usize, voters: usize| {
        chart_config(&helm, prefix, pods, &[&format!("voters={voters}")])
    };
    let spec = ClusterSpec {
        nodes: 5,
        ..ClusterSpec::default()
    };
    let Some(mut run) = Run::start_spec(
        "chart config, scale 5 to 3 to 5 pods and voters",
        &spec,
        Readers::Classic,
        |prefix| {
            Some(fjord_tests::docker::ChartConfig {
                toml: render(prefix, 5, 5),
                aliases: vec![
                    "fjord-{}".into(),
                    "fjord-{}.fjord-headless.default.svc.cluster.local".into(),
                ],
                client_port: 9094,
                mounts: Vec::new(),
            })
        },
    ) else {
        return;
    };
    let prefix = run
        .cluster
        .node(0)
        .client_ip
        .rsplit_once('.')
        .expect("an IPv4 address")
        .0
        .to_string();
    assert_eq!(voters(&run.cluster), Some(vec![0, 1, 2, 3, 4]));

    // Shrink the quorum: demote the highest voters, then record the new count in the
    // release, which rolls every pod onto the new voter list.
    run.fault("remove-voter 4, remove-voter 3".into());
    operator(
        &run.cluster,
        &[
            "cluster",
            "remove-voter",
            "4",
            "--force",
            "--admin-server",
            ADMIN,
        ],
    );
    operator(
        &run.cluster,
        &["cluster", "remove-voter", "3", "--admin-server", ADMIN],
    );
    wait_until("3 voters", Duration::from_secs(30), || {
        (voters(&run.cluster)? == vec![0, 1, 2]).then_some(())
    });
    run.progress(200);
    roll_pods(&mut run, &render(&prefix, 5, 3), "voters=3");

    // k8s/scale.sh 3: drain the departing brokers, check none holds a replica, remove
    // their pods, and wait until nothing is under-replicated.
    let factors = replication_factors(&run.cluster).expect("cluster status");
    for id in ["4", "3"] {
        run.fault(format!("drain broker {id}"));
        operator(
            &run.cluster,
            &[
                "cluster",
                "drain",
                id,
                "--wait",
                "--wait-timeout",
                "300",
                "--admin-server",
                ADMIN,
            ],
        );
        run.progress(100);
    }
    let left = replicas_on(&run.cluster, &[3, 4]).expect("cluster status");
    assert!(
        left.is_empty(),
        "replicas left on drained brokers: {left:?}"
    );
    // A drain moves replicas; it never changes how many a partition has (a drain once
    // planned from in-flight replica sets and asked for four).
    assert_eq!(
        replication_factors(&run.cluster).expect("cluster status"),
        factors,
        "replication factors after the drains"
    );
    run.cluster.rewrite_chart_config(&render(&prefix, 3, 3));
    for id in [4, 3] {
        run.fault(format!("pod fjord-{id} removed (SIGTERM)"));
        run.cluster.stop(id);
        run.progress(200);
    }
    wait_until(
        "no under-replicated partition on 3 pods",
        Duration::from_secs(60),
        || (under_replicated(&run.cluster)? == 0).then_some(()),
    );
    let left = replicas_on(&run.cluster, &[3, 4]).expect("cluster status");
    assert!(
        left.is_empty(),
        "replicas placed on removed brokers: {left:?}"
    );
    run.progress(300);

    // k8s/scale.sh 5: the pods come back on their kept volumes, register at their pod DNS
    // names, are undrained and take their share of the replicas.
    run.cluster.rewrite_chart_config(&render(&prefix, 5, 3));
    for id in [3, 4] {
        run.fault(format!("pod fjord-{id} added"));
        run.cluster.restart(id);
        run.progress(100);
    }
    let status = run.cluster.status(0).expect("cluster status");
    for id in [3, 4] {
        let broker = status["brokers"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["id"] == id))
            .unwrap_or_else(|| panic!("broker {id} registered: {status}"));
        assert_eq!(broker["fenced"], false, "broker {id}: {broker}");
        let rpc = broker["rpc_address"].as_str().unwrap_or_default();
        assert!(
            rpc.starts_with(&format!("fjord-{id}.fjord-headless.")),
            "broker {id} advertises rpc address {rpc}, not its pod DNS name"
        );
        operator(
            &run.cluster,
            &[
                "cluster",
                "undrain",
                &id.to_string(),
                "--admin-server",
                ADMIN,
            ],
        );
    }
    run.fault("balance onto brokers 3 and 4".into());
    operator(
        &run.cluster,
        &[
            "cluster",
            "balance",
            "--execute",
            "--wait",
            "--wait-timeout",
            "300",
            "--admin-server",
            ADMIN,
        ],
    );
    for id in [3, 4] {
        let held = replicas_on(&run.cluster, &[id]).expect("cluster status");
        assert!(!held.is_empty(), "broker {id} got no replica from balance");
    }
    run.progress(200);

    // Grow the quorum back: promote, then record voters=5, which rolls the pods again.
    run.fault("add-voter 3, add-voter 4".into());
    operator(
        &run.cluster,
        &[
            "cluster",
            "add-voter",
            "3",
            "--force",
            "--admin-server",
            ADMIN,
        ],
    );
    operator(
        &run.cluster,
        &["cluster", "add-voter", "4", "--admin-server", ADMIN],
    );
    wait_until("5 voters", Duration::from_secs(30), || {
        (voters(&run.cluster)? == vec![0, 1, 2, 3, 4]).then_some(())
    });
    run.progress(200);
    roll_pods(&mut run, &render(&prefix, 5, 5), "voters=5");

    let report = run.finish();
    let worst = report.max_unavailability_ms();
    assert!(
        worst <= GRACEFUL_BOUND_MS,
        "acknowledged writes stopped for {worst} ms after a scaling step (bound {GRACEFUL_BOUND_MS} ms); per step: {:?}",
        report.unavailability_ms
    );
}
