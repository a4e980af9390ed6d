//! Fjord clusters in containers, for the chaos suite: N nodes from the locally built image
//! (`deploy/build-image.sh`), on two private Docker networks, with the faults a real
//! deployment sees: SIGKILL, SIGTERM, freezes, restarts and network partitions.
//!
//! Every node sits on a *cluster* network (Raft, forwarding, replication; node `fjord-N`
//! is node N, as StatefulSet pods are) and a *client* network (the Kafka listener
//! the test clients use). Cutting a node off the cluster network partitions it from its
//! peers while clients still reach it, which is how a zombie leader is made.
//!
//! Docker is driven through bollard with the API version negotiated down to what the engine
//! speaks: testcontainers-rs pins bollard's newest API version, which the Docker 20.10
//! engines of the test machines refuse ("client version 1.49 is too new").

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

use crate::{http_get, wait_until};

/// The image the suite runs (`FJORD_IMAGE`, default `fjord:dev`).
pub fn image() -> String {
    std::env::var("FJORD_IMAGE").unwrap_or_else(|_| "fjord:dev".into())
}

/// Connects to the local engine, or explains why the suite cannot run. With
/// `FJORD_REQUIRE_DOCKER=1` (CI) a missing engine or image is a failure, not a skip.
pub fn docker_or_skip(rt: &tokio::runtime::Runtime) -> Option<Docker> {
    let required = std::env::var("FJORD_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
    let found = rt.block_on(async {
        let docker = Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| e.to_string())?;
        docker.inspect_image(&image()).await.map_err(|e| {
            format!(
                "image {} is missing ({e}); run deploy/build-image.sh",
                image()
            )
        })?;
        Ok::<_, String>(docker)
    });
    match found {
        Ok(d) => Some(d),
        Err(e) if required => panic!("FJORD_REQUIRE_DOCKER=1 but Docker is not usable: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: the chaos suite needs Docker and the fjord image: {e}");
            None
        }
    }
}

/// Settings of one containerised cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterSpec {
    pub nodes: usize,
    /// More `--override key=value` settings for every node.
    pub overrides: Vec<String>,
    /// Run every node as a Helm-rendered pod does: this `fjord.toml` (the chart's
    /// ConfigMap) mounted at /etc/fjord, `serve --config`, the node id from the hostname,
    /// and these DNS names for node N (`{}` is replaced by N) on the cluster network.
    pub chart: Option<ChartConfig>,
    /// (node, MiB): that node keeps its partition logs on a tmpfs of this size, so a test
    /// can fill its disk. Its Raft state stays on the container's own filesystem.
    pub small_log_disk: Option<(usize, u32)>,
    /// That node keeps its partition logs on a disk the test can slow down
    /// ([`ContainerCluster::throttle_disk`]). Without root and a loop device the cluster
    /// starts without it ([`ContainerCluster::has_slow_disk`] says so).
    pub slow_log_disk: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct ChartConfig {
    pub toml: String,
    pub aliases: Vec<String>,
    /// The Kafka port host clients use (the chart's external listener).
    pub client_port: u16,
    /// Host directories mounted read-only into every pod (host path, container path),
    /// as the chart mounts its Secrets (TLS files, SASL users).
    pub mounts: Vec<(std::path::PathBuf, String)>,
}

/// One node's container and addresses.
#[derive(Clone, Debug)]
pub struct ContainerNode {
    pub id: i32,
    pub client_port: u16,
    /// DNS names on the cluster network.
    pub aliases: Vec<String>,
    pub container: String,
    pub cluster_ip: String,
    pub client_ip: String,
    pub paused: bool,
    pub partitioned: bool,
    pub running: bool,
}

impl ContainerNode {
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.client_ip, self.client_port)
    }

    pub fn admin(&self) -> String {
        format!("{}:9644", self.client_ip)
    }
}

/// A running cluster. Dropping it removes its containers and networks.
pub struct ContainerCluster {
    docker: Docker,
    rt: tokio::runtime::Runtime,
    tag: String,
    cluster_net: String,
    client_net: String,
    pub nodes: Vec<ContainerNode>,
    config_dir: Option<tempfile::TempDir>,
    slow_disk: Option<(i32, crate::slow_disk::SlowDisk)>,
}

/// Lets the image's unprivileged user (uid 10001) read a bind-mounted directory.
pub fn readable_by_the_image_user(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .expect("make the mounted directory readable");
}

/// The client-network address of node `ordinal` in a cluster whose client subnet prefix
/// is `prefix` (for configs that must name it before the cluster starts).
pub fn client_ip(prefix: &str, ordinal: usize) -> String {
    format!("{prefix}.{}", 10 + ordinal)
}

fn subnet_prefix(tag_seed: u32, attempt: u32, which: u32) -> String {
    // 10.(200..=249).(0..=255).0/24: far from Docker's default 172.17+/16 pools.
    let x = 200 + (tag_seed.wrapping_add(attempt * 7)) % 50;
    let y = (tag_seed / 50 + which * 128 + attempt) % 256;
    format!("10.{x}.{y}")
}

impl ContainerCluster {
    /// Starts `spec.nodes` voters and waits until every one reports ready.
    pub fn start(docker: Docker, spec: &ClusterSpec) -> ContainerCluster {
        Self::start_with(docker, spec, |_| None)
    }

    /// Like [`start`](Self::start); `chart_for` may give the chart settings once the
    /// client subnet prefix is known (so a config can advertise the client addresses).
    pub fn start_with(
        docker: Docker,
        spec: &ClusterSpec,
        chart_for: impl Fn(&str) -> Option<ChartConfig>,
    ) -> ContainerCluster {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let seed: u32 = rand::random();
        let tag = format!("fjord-chaos-{seed:08x}");
        let (cluster_net, client_net, cluster_prefix, client_prefix) = rt.block_on(async {
            for attempt in 0..20 {
                let a = subnet_prefix(seed, attempt, 0);
                let b = subnet_prefix(seed, attempt, 1);
                let ca = format!("{tag}-cluster");
                let cb = format!("{tag}-client");
                if create_network(&docker, &ca, &a).await.is_err() {
                    continue;
                }
                if create_network(&docker, &cb, &b).await.is_err() {
                    let _ = docker.remove_network(&ca).await;
                    continue;
                }
                return (ca, cb, a, b);
            }
            panic!("no free private subnet for the chaos networks");
        });
        // Voters by cluster-network address: Docker's DNS also answers peer names over
        // the client network, which would let a partitioned node keep talking to peers.
        let chart = spec.chart.clone().or_else(|| chart_for(&client_prefix));
        let config_dir = chart.as_ref().map(|c| {
            let dir = tempfile::tempdir().expect("config dir");
            std::fs::write(dir.path().join("fjord.toml"), &c.toml).expect("write fjord.toml");
            readable_by_the_image_user(dir.path());
            dir
        });
        let slow_disk =
            spec.slow_log_disk
                .and_then(|i| match crate::slow_disk::SlowDisk::new(1024, 10001) {
                    Ok(disk) => Some((i as i32, disk)),
                    Err(e) => {
                        eprintln!("no slow disk for node {i}: {e}");
                        None
                    }
                });
        let voters = (0..spec.nodes)
            .map(|i| format!("{i}@{cluster_prefix}.{}:9093", 10 + i))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for i in 0..spec.nodes {
            let node = ContainerNode {
                id: i as i32,
                client_port: chart.as_ref().map_or(9092, |c| c.client_port),
                aliases: match &chart {
                    Some(c) => c
                        .aliases
                        .iter()
                        .map(|a| a.replace("{}", &i.to_string()))
                        .collect(),
                    None => vec![format!("fjord-{i}")],
                },
                container: format!("{tag}-{i}"),
                cluster_ip: format!("{cluster_prefix}.{}", 10 + i),
                client_ip: client_ip(&client_prefix, i),
                paused: false,
                partitioned: false,
                running: true,
            };
            let mut cmd = vec!["serve".to_string()];
            for o in &spec.overrides {
                cmd.push("--override".into());
                cmd.push(o.clone());
            }
            let log = "FJORD_LOG=info,openraft=warn,sled=warn,h2=warn,tower=warn,hyper=warn";
            let (env, binds) = match &config_dir {
                Some(dir) => {
                    cmd.splice(
                        1..1,
                        ["--config".to_string(), "/etc/fjord/fjord.toml".into()],
                    );
                    (
                        vec!["FJORD_NODE_ID=ordinal".to_string(), log.into()],
                        Some(
                            std::iter::once(format!("{}:/etc/fjord:ro", dir.path().display()))
                                .chain(chart.iter().flat_map(|c| {
                                    c.mounts
                                        .iter()
                                        .map(|(host, path)| format!("{}:{path}:ro", host.display()))
                                }))
                                .collect(),
                        ),
                    )
                }
                _ => (
                    vec![
                        "FJORD_NODE_ID=ordinal".to_string(),
                        "FJORD_DATA_DIR=/var/lib/fjord".into(),
                        "FJORD_LISTENERS=PLAINTEXT://0.0.0.0:9092".into(),
                        "FJORD_RPC_LISTENER=0.0.0.0:9093".into(),
                        "FJORD_ADMIN_LISTENER=0.0.0.0:9644".into(),
                        format!("FJORD_VOTERS={voters}"),
                        format!(
                            "FJORD_ADVERTISED_LISTENERS=PLAINTEXT://{}:9092",
                            node.client_ip
                        ),
                        log.into(),
                    ],
                    None,
                ),
            };
            let binds = match slow_disk.as_ref().filter(|(n, _)| *n == i as i32) {
                Some((_, disk)) => {
                    let mut b: Vec<String> = binds.unwrap_or_default();
                    b.push(format!("{}:/var/lib/fjord/logs", disk.path().display()));
                    Some(b)
                }
                None => binds,
            };
            // Nodes prove they hold the cluster secret to each other, as the chart's
            // Secret and the compose file give it.
            let mut env = env;
            env.push(format!(
                "FJORD_CLUSTER_SECRET={}",
                crate::TEST_CLUSTER_SECRET
            ));
            let body = ContainerCreateBody {
                image: Some(image()),
                hostname: Some(format!("fjord-{i}")),
                cmd: Some(cmd),
                env: Some(env),
                labels: Some(HashMap::from([("fjord-chaos".into(), tag.clone())])),
                host_config: Some(HostConfig {
                    network_mode: Some(cluster_net.clone()),
                    binds,
                    tmpfs: spec
                        .small_log_disk
                        .filter(|(n, _)| *n == i)
                        .map(|(_, mib)| {
                            HashMap::from([(
                                "/var/lib/fjord/logs".to_string(),
                                format!("size={mib}m,uid=10001,gid=10001,mode=0750"),
                            )])
                        }),
                    ..Default::default()
                }),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        cluster_net.clone(),
                        endpoint(&node.cluster_ip, Some(node.aliases.clone())),
                    )])),
                }),
                ..Default::default()
            };
            rt.block_on(async {
                docker
                    .create_container(
                        Some(
                            CreateContainerOptionsBuilder::default()
                                .name(&node.container)
                                .build(),
                        ),
                        body,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("create {}: {e}", node.container));
                docker
                    .connect_network(
                        &client_net,
                        NetworkConnectRequest {
                            container: node.container.clone(),
                            // No alias here: peers must not find each other over the
                            // client network, or a partition would not partition.
                            endpoint_config: Some(endpoint(&node.client_ip, None)),
                        },
                    )
                    .await
                    .unwrap_or_else(|e| panic!("attach {} to clients: {e}", node.container));
                docker
                    .start_container(&node.container, None)
                    .await
                    .unwrap_or_else(|e| panic!("start {}: {e}", node.container));
            });
            nodes.push(node);
        }
        let c = ContainerCluster {
            docker,
            rt,
            tag,
            cluster_net,
            client_net,
            nodes,
            config_dir,
            slow_disk,
        };
        for i in 0..c.nodes.len() {
            c.wait_ready(i as i32, Duration::from_secs(120));
        }
        c
    }

    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(ContainerNode::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&self, id: i32) -> &ContainerNode {
        &self.nodes[id as usize]
    }

    fn node_mut(&mut self, id: i32) -> &mut ContainerNode {
        &mut self.nodes[id as usize]
    }

    /// Waits for `/readyz` of node `id`: registered, unfenced, caught up on metadata.
    pub fn wait_ready(&self, id: i32, timeout: Duration) {
        let admin = self.node(id).admin();
        wait_until(&format!("node {id} ready"), timeout, || {
            matches!(http_get(&admin, "/readyz"), Ok((200, _))).then_some(())
        });
    }

    /// `/v1/cluster` as node `id` reports it.
    pub fn status(&self, id: i32) -> Option<serde_json::Value> {
        match http_get(&self.node(id).admin(), "/v1/cluster") {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    fn healthy_ids(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|n| n.running && !n.paused && !n.partitioned)
            .map(|n| n.id)
            .collect()
    }

    /// The active controller, as a healthy node sees it.
    pub fn active_controller(&self) -> Option<i32> {
        self.healthy_ids()
            .into_iter()
            .filter_map(|id| self.status(id))
            .find_map(|v| v["active_controller"].as_i64().map(|c| c as i32))
    }

    /// The leader of `topic`/`partition`, as a healthy node's metadata has it.
    pub fn leader_of(&self, topic: &str, partition: usize) -> Option<i32> {
        self.healthy_ids()
            .into_iter()
            .filter_map(|id| self.status(id))
            .find_map(|v| {
                v["topics"].as_array()?.iter().find_map(|t| {
                    if t["name"] != topic {
                        return None;
                    }
                    let l = t["partitions"][partition]["leader"].as_i64()?;
                    (l >= 0).then_some(l as i32)
                })
            })
    }

    /// SIGKILL: the process dies mid-write, without a controlled shutdown.
    pub fn kill(&mut self, id: i32) {
        let name = self.node(id).container.clone();
        self.rt.block_on(async {
            self.docker
                .kill_container(
                    &name,
                    Some(
                        KillContainerOptionsBuilder::default()
                            .signal("KILL")
                            .build(),
                    ),
                )
                .await
                .unwrap_or_else(|e| panic!("kill {name}: {e}"));
        });
        self.node_mut(id).running = false;
    }

    /// SIGTERM and wait: a controlled shutdown.
    pub fn stop(&mut self, id: i32) {
        let name = self.node(id).container.clone();
        self.rt.block_on(async {
            self.docker
                .stop_container(
                    &name,
                    Some(StopContainerOptionsBuilder::default().t(60).build()),
                )
                .await
                .unwrap_or_else(|e| panic!("stop {name}: {e}"));
        });
        self.node_mut(id).running = false;
    }

    /// Starts a stopped or killed node again, on its old data, and waits until it is ready.
    pub fn restart(&mut self, id: i32) {
        self.restart_all(&[id]);
    }

    /// Starts several stopped nodes together (a node cannot become ready before a quorum
    /// of voters is back), then waits until each is ready.
    pub fn restart_all(&mut self, ids: &[i32]) {
        for &id in ids {
            let name = self.node(id).container.clone();
            self.rt.block_on(async {
                self.docker
                    .start_container(&name, None)
                    .await
                    .unwrap_or_else(|e| panic!("start {name}: {e}"));
            });
            self.node_mut(id).running = true;
        }
        for &id in ids {
            self.wait_ready(id, Duration::from_secs(120));
        }
    }

    /// Freezes every process of the node (the cgroup freezer, like SIGSTOP).
    pub fn pause(&mut self, id: i32) {
        let name = self.node(id).container.clone();
        self.rt.block_on(async {
            self.docker
                .pause_container(&name)
                .await
                .unwrap_or_else(|e| panic!("pause {name}: {e}"));
        });
        self.node_mut(id).paused = true;
    }

    pub fn unpause(&mut self, id: i32) {
        let name = self.node(id).container.clone();
        self.rt.block_on(async {
            self.docker
                .unpause_container(&name)
                .await
                .unwrap_or_else(|e| panic!("unpause {name}: {e}"));
        });
        self.node_mut(id).paused = false;
    }

    /// Cuts the node off from every peer (the cluster network); clients still reach it.
    pub fn partition(&mut self, id: i32) {
        let name = self.node(id).container.clone();
        self.rt.block_on(async {
            self.docker
                .disconnect_network(
                    &self.cluster_net,
                    NetworkDisconnectRequest {
                        container: name.clone(),
                        force: Some(true),
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("disconnect {name}: {e}"));
        });
        self.node_mut(id).partitioned = true;
    }

    /// Reconnects the node to its peers, at its old address.
    pub fn heal(&mut self, id: i32) {
        let (name, ip, aliases) = {
            let n = self.node(id);
            (n.container.clone(), n.cluster_ip.clone(), n.aliases.clone())
        };
        self.rt.block_on(async {
            self.docker
                .connect_network(
                    &self.cluster_net,
                    NetworkConnectRequest {
                        container: name.clone(),
                        endpoint_config: Some(endpoint(&ip, Some(aliases))),
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("reconnect {name}: {e}"));
        });
        self.node_mut(id).partitioned = false;
    }

    /// Runs `args` (e.g. `["fjord", "cluster", "status"]`) inside node `id`'s container, as
    /// `kubectl exec` runs an operator's command in a pod (with the pod's environment, so
    /// `fjord cluster` sends the cluster secret). Returns the exit code and the output.
    pub fn exec(&self, id: i32, args: &[&str]) -> (i64, String) {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let name = self.node(id).container.clone();
        self.rt.block_on(async {
            let created = self
                .docker
                .create_exec(
                    &name,
                    CreateExecOptions {
                        cmd: Some(args.to_vec()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("exec in {name}: {e}"));
            let mut out = String::new();
            if let Ok(StartExecResults::Attached { mut output, .. }) =
                self.docker.start_exec(&created.id, None).await
            {
                while let Some(Ok(chunk)) = output.next().await {
                    out.push_str(&chunk.to_string());
                }
            }
            let code = self
                .docker
                .inspect_exec(&created.id)
                .await
                .ok()
                .and_then(|i| i.exit_code)
                .unwrap_or(-1);
            (code, out)
        })
    }

    /// Replaces the chart's `fjord.toml` that every node mounts, as a `helm upgrade` that
    /// changes the ConfigMap does: nodes read it when they next start.
    pub fn rewrite_chart_config(&self, toml: &str) {
        let dir = self
            .config_dir
            .as_ref()
            .expect("the cluster runs the chart's config");
        std::fs::write(dir.path().join("fjord.toml"), toml).expect("write fjord.toml");
    }

    /// Whether node `id` keeps its logs on the disk [`Self::throttle_disk`] slows.
    pub fn has_slow_disk(&self, id: i32) -> bool {
        self.slow_disk.as_ref().is_some_and(|(n, _)| *n == id)
    }

    /// Limits node `id`'s writes to its slow disk to `bytes_per_sec` and `iops` (0 lifts
    /// the limit). Every write waits for the device (the disk is mounted `sync`).
    pub fn throttle_disk(&self, id: i32, bytes_per_sec: u64, iops: u64) {
        let (_, disk) = self
            .slow_disk
            .as_ref()
            .filter(|(n, _)| *n == id)
            .expect("node has the slow disk");
        let name = self.node(id).container.clone();
        let container_id = self.rt.block_on(async {
            self.docker
                .inspect_container(&name, None)
                .await
                .ok()
                .and_then(|c| c.id)
                .unwrap_or_else(|| panic!("inspect {name}"))
        });
        disk.throttle(&container_id, bytes_per_sec, iops);
    }

    /// The last `lines` lines the node logged.
    pub fn logs(&self, id: i32, lines: usize) -> String {
        let name = self.node(id).container.clone();
        self.rt.block_on(async {
            let mut out = String::new();
            let mut s = self.docker.logs(
                &name,
                Some(
                    LogsOptionsBuilder::default()
                        .stdout(true)
                        .stderr(true)
                        .tail(&lines.to_string())
                        .build(),
                ),
            );
            while let Some(Ok(chunk)) = s.next().await {
                out.push_str(&chunk.to_string());
            }
            out
        })
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

fn endpoint(ip: &str, aliases: Option<Vec<String>>) -> EndpointSettings {
    EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some(ip.to_string()),
            ..Default::default()
        }),
        aliases,
        ..Default::default()
    }
}

async fn create_network(docker: &Docker, name: &str, prefix: &str) -> Result<(), String> {
    docker
        .create_network(NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(format!("{prefix}.0/24")),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(HashMap::from([("fjord-chaos".into(), name.to_string())])),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Drop for ContainerCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!("---- last log lines of node {} ----", n.id);
                eprintln!("{}", self.logs(n.id, 60));
            }
        }
        let names: Vec<String> = self.nodes.iter().map(|n| n.container.clone()).collect();
        self.rt.block_on(async {
            for name in names {
                let _ = self.docker.unpause_container(&name).await;
                let _ = self
                    .docker
                    .remove_container(
                        &name,
                        Some(
                            RemoveContainerOptionsBuilder::default()
                                .force(true)
                                .v(true)
                                .build(),
                        ),
                    )
                    .await;
            }
            let _ = self.docker.remove_network(&self.cluster_net).await;
            let _ = self.docker.remove_network(&self.client_net).await;
        });
    }
}
