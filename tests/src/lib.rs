//! Fjord system-test harness: real `fjord` processes on loopback ports, driven by real
//! clients. Every wait polls a condition against a deadline; nothing sleeps to
//! synchronise.

pub mod certs;
pub mod checker;
pub mod docker;
pub mod hostile;
pub mod members;
pub mod probes;
pub mod secure;
pub mod slow_disk;
pub mod wire;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cluster secret of every node the tests start.
pub const TEST_CLUSTER_SECRET: &str = "fjord-test-cluster-secret-0123456789";

/// The `fjord` command with the test clusters' secret in its environment, as a shell on
/// one of their nodes has it (the admin port takes cluster changes only with it).
pub fn fjord_cli() -> Command {
    let mut c = Command::new(fjord_bin());
    c.env("FJORD_CLUSTER_SECRET", TEST_CLUSTER_SECRET);
    c
}

/// Runs a `fjord` client command against `node` (through `FJORD_BOOTSTRAP_SERVER`),
/// with `stdin` as its standard input, and returns what it printed and its status.
pub fn run_cli(node: &Node, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(fjord_bin())
        .args(args)
        .env("FJORD_BOOTSTRAP_SERVER", node.bootstrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fjord");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("fjord output")
}

/// The `fjord` binary under test: `$FJORD_BIN`, or `target/<profile>/fjord` next to
/// the test executable.
pub fn fjord_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FJORD_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug/fjord
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("fjord");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build --bin fjord) or set FJORD_BIN",
        bin.display()
    );
    bin
}

/// The Python interpreter with the client libraries: `$FJORD_PYTHON`, or the `.venv` that
/// `tests/run.sh` makes in the checkout.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("FJORD_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with confluent-kafka and kafka-python: run ./tests/run.sh (it makes .venv) or set FJORD_PYTHON"
    );
    venv
}

/// The repository checkout.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// A port that was free a moment ago, never handed out twice by this process. Ports come
/// from below the kernel's ephemeral range, so an outgoing connection cannot take one
/// between this check and the node binding it.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    for i in 0..10_000u64 {
        let port = 20_000
            + ((seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(i * 7919))
                % 12_000) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in 20000-32000");
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20)); // poll interval until the deadline
    }
}

/// A minimal HTTP/1.0 GET, returning `(status, body)`.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// One `fjord serve` process with its own data directory and ports.
pub struct Node {
    pub node_id: i32,
    pub kafka_port: u16,
    pub rpc_port: u16,
    pub admin_port: u16,
    pub data_dir: PathBuf,
    /// `--voters`, when part of a multi-node cluster.
    voters: Option<String>,
    /// The Kafka listener's security protocol (its listener name too).
    protocol: String,
    extra_args: Vec<String>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a single-node cluster and waits until it is ready.
    pub fn start() -> Node {
        Self::start_with(&[])
    }

    /// Starts a single-node cluster with extra `fjord serve` arguments.
    pub fn start_with(extra: &[&str]) -> Node {
        Self::start_secure("PLAINTEXT", extra)
    }

    /// Starts a single-node cluster whose Kafka listener speaks `protocol` (`SSL`,
    /// `SASL_SSL`, ...); `extra` carries the TLS and SASL settings.
    pub fn start_secure(protocol: &str, extra: &[&str]) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut node = Node {
            node_id: 1,
            kafka_port: free_port(),
            rpc_port: free_port(),
            admin_port: free_port(),
            data_dir: tmp.path().join("data"),
            voters: None,
            protocol: protocol.to_string(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            _tmp: Some(tmp),
        };
        node.spawn();
        node.wait_ready(Duration::from_secs(60));
        node
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// The running process's resident memory in bytes (page cache excluded).
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("VmRSS in /proc/PID/status")
            * 1024
    }

    /// The process's peak resident memory (VmHWM) since start or the last
    /// [`Node::reset_peak_rss`].
    pub fn peak_rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("VmHWM in /proc/PID/status")
            * 1024
    }

    /// Restarts the peak-memory count from the current resident size (Linux clear_refs).
    pub fn reset_peak_rss(&self) {
        let pid = self.child.as_ref().expect("running").id();
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
    }

    /// The sum of the `/metrics` samples whose series starts with `series` (a name, or a
    /// name with its labels as rendered); 0 when there are none, as a counter or gauge
    /// appears only once it is first used.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = http_get(&self.admin_addr(), "/metrics").expect("metrics");
        body.lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter(|rest| rest.starts_with([' ', '{']))
            .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn admin_addr(&self) -> String {
        format!("127.0.0.1:{}", self.admin_port)
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir
            .with_file_name(format!("node-{}.log", self.node_id))
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data_dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(fjord_bin())
            .arg("serve")
            .arg("--node-id")
            .arg(self.node_id.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listeners")
            .arg(format!("{}://127.0.0.1:{}", self.protocol, self.kafka_port))
            .arg("--rpc-listener")
            .arg(format!("127.0.0.1:{}", self.rpc_port))
            .arg("--admin-listener")
            .arg(self.admin_addr())
            .args(
                self.voters
                    .iter()
                    .flat_map(|v| ["--voters".to_string(), v.clone()]),
            )
            .args(&self.extra_args)
            // Every test cluster authenticates its nodes to each other, as shipped ones do.
            .env("FJORD_CLUSTER_SECRET", TEST_CLUSTER_SECRET)
            // FJORD_TEST_LOG raises the nodes' log level for a post-mortem.
            .env(
                "FJORD_LOG",
                std::env::var("FJORD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn fjord");
        self.child = Some(child);
    }

    /// Waits for /readyz to answer 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let addr = self.admin_addr();
        let log = self.log_path();
        let child = self.child.as_mut().expect("running");
        wait_until(
            &format!("node ready (log: {})", log.display()),
            timeout,
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "fjord exited with {status}; log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                match http_get(&addr, "/readyz") {
                    Ok((200, _)) => Some(()),
                    _ => None,
                }
            },
        );
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20)); // poll for exit until the deadline
        }
    }

    /// Sends SIGTERM without waiting (to stop many nodes at once).
    pub fn signal_term(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Waits up to `timeout` for the process to exit; how long it took, or `None` if it
    /// was still running (it is then killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut c = self.child.take()?;
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                return Some(started.elapsed());
            }
            if started.elapsed() > timeout {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20)); // poll for exit until the deadline
        }
    }

    /// Freezes the process (SIGSTOP): alive but silent, like a long GC pause.
    pub fn pause(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-STOP")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Starts the process again without waiting for it to be ready (to restart many
    /// nodes at once).
    pub fn spawn_again(&mut self) {
        self.spawn();
    }

    /// Starts the process again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_ready(Duration::from_secs(60));
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// Short failure detection for loopback clusters: brokers fenced after 2 s, elections
/// after 300 ms, followers out of the ISR after 2 s.
pub const FAST_FAILOVER: &[&str] = &[
    "--override",
    "broker.session.timeout.ms=2000",
    "--override",
    "broker.heartbeat.interval.ms=200",
    "--override",
    "controller.quorum.election.timeout.ms=300",
    "--override",
    "replica.lag.time.max.ms=2000",
];

/// Several `fjord` processes forming one cluster on loopback: the first `voters` node ids
/// are the Raft voters, the rest join as learners.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _tmp: tempfile::TempDir,
    /// Clusters in one test binary run one at a time: fifteen nodes on two cores would
    /// starve the timeouts the tests exercise.
    _turn: std::sync::MutexGuard<'static, ()>,
}

static CLUSTER_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Cluster {
    pub fn start(voters: usize, learners: usize, extra: &[&str]) -> Cluster {
        Self::start_with(voters, learners, extra, |_| Vec::new())
    }

    /// Like [`start_with`](Self::start_with), with Kafka listeners speaking `protocol`.
    pub fn start_secure(
        voters: usize,
        protocol: &str,
        extra: &[&str],
        per_node: impl Fn(i32) -> Vec<String>,
    ) -> Cluster {
        Self::start_inner(voters, 0, protocol, extra, per_node)
    }

    /// Like [`start`](Self::start), with extra arguments per node id (racks, say).
    pub fn start_with(
        voters: usize,
        learners: usize,
        extra: &[&str],
        per_node: impl Fn(i32) -> Vec<String>,
    ) -> Cluster {
        Self::start_inner(voters, learners, "PLAINTEXT", extra, per_node)
    }

    fn start_inner(
        voters: usize,
        learners: usize,
        protocol: &str,
        extra: &[&str],
        per_node: impl Fn(i32) -> Vec<String>,
    ) -> Cluster {
        let turn = CLUSTER_TURN.lock().unwrap_or_else(|p| p.into_inner());
        let tmp = tempfile::tempdir().expect("tempdir");
        let total = voters + learners;
        let ports: Vec<(u16, u16, u16)> = (0..total)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let spec = (0..voters)
            .map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[i].1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<Node> = ports
            .iter()
            .enumerate()
            .map(|(i, (kafka, rpc, admin))| Node {
                node_id: i as i32 + 1,
                kafka_port: *kafka,
                rpc_port: *rpc,
                admin_port: *admin,
                data_dir: tmp.path().join(format!("node-{}", i + 1)).join("data"),
                voters: Some(spec.clone()),
                protocol: protocol.to_string(),
                extra_args: extra
                    .iter()
                    .map(|s| s.to_string())
                    .chain(per_node(i as i32 + 1))
                    .collect(),
                child: None,
                _tmp: None,
            })
            .collect();
        for n in &mut nodes {
            n.spawn();
        }
        for n in &mut nodes {
            n.wait_ready(Duration::from_secs(90));
        }
        if std::env::var_os("FJORD_KEEP_TEST_DIRS").is_some() {
            eprintln!("cluster data and logs kept in {}", tmp.path().display());
            // Leak the directory on purpose, for post-mortems.
            let kept = tmp.path().to_path_buf();
            std::mem::forget(tmp);
            let tmp = tempfile::Builder::new()
                .tempdir_in(kept.parent().unwrap_or(&kept))
                .expect("tempdir");
            return Cluster {
                nodes,
                _tmp: tmp,
                _turn: turn,
            };
        }
        Cluster {
            nodes,
            _tmp: tmp,
            _turn: turn,
        }
    }

    /// Starts one more node, which joins the running cluster as a learner broker (a new
    /// machine in a scaling experiment), and waits until it is ready. Returns its id.
    pub fn add_node(&mut self, extra: &[&str]) -> i32 {
        let template = self.nodes.first().expect("a cluster has nodes");
        let id = self.nodes.iter().map(|n| n.node_id).max().unwrap_or(0) + 1;
        let root = template
            .data_dir
            .parent()
            .and_then(|p| p.parent())
            .expect("node dirs live in the cluster dir")
            .to_path_buf();
        let mut node = Node {
            node_id: id,
            kafka_port: free_port(),
            rpc_port: free_port(),
            admin_port: free_port(),
            data_dir: root.join(format!("node-{id}")).join("data"),
            voters: template.voters.clone(),
            protocol: template.protocol.clone(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            _tmp: None,
        };
        node.spawn();
        node.wait_ready(Duration::from_secs(90));
        self.nodes.push(node);
        id
    }

    pub fn node(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.node_id == id)
            .expect("node id")
    }

    /// Kafka bootstrap list of the nodes that are running.
    pub fn bootstrap(&mut self) -> String {
        self.nodes
            .iter_mut()
            .filter_map(|n| {
                if n.is_running() {
                    Some(n.bootstrap())
                } else {
                    None
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `/v1/cluster` of one node.
    pub fn status(&self, id: i32) -> Option<serde_json::Value> {
        let n = self.nodes.iter().find(|n| n.node_id == id)?;
        match http_get(&n.admin_addr(), "/v1/cluster") {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// The active controller, as a running node reports it.
    pub fn active_controller(&mut self) -> Option<i32> {
        let running: Vec<i32> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then_some(n.node_id))
            .collect();
        running
            .into_iter()
            .filter_map(|id| self.status(id))
            .find_map(|v| v["active_controller"].as_i64().map(|c| c as i32))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            // The test failed: leave the node's last words where CI shows them.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- last log lines of node {} ----", self.node_id);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Client settings (librdkafka's names) that clients of a secured cluster need, by broker
/// address: every helper that builds a client for that cluster applies them.
static CLIENT_SECURITY: std::sync::Mutex<BTreeMap<String, Vec<(String, String)>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Records that clients of the brokers in `bootstrap` must use `props` (TLS trust, SASL
/// credentials), for [`client_config`], [`members::Member`] and the checker.
pub fn register_client_security(bootstrap: &str, props: &[(&str, &str)]) {
    let props: Vec<(String, String)> = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut known = CLIENT_SECURITY.lock().unwrap_or_else(|p| p.into_inner());
    for addr in bootstrap.split(',') {
        known.insert(addr.trim().to_string(), props.clone());
    }
}

/// The registered settings for the brokers in `bootstrap` (none for an open cluster).
pub fn client_security(bootstrap: &str) -> Vec<(String, String)> {
    let known = CLIENT_SECURITY.lock().unwrap_or_else(|p| p.into_inner());
    bootstrap
        .split(',')
        .find_map(|addr| known.get(addr.trim()).cloned())
        .unwrap_or_default()
}

/// librdkafka client config pointing at `bootstrap`, with the settings its cluster needs.
pub fn client_config(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c.set("log_level", "3");
    // librdkafka's debug contexts (e.g. `broker,topic,msg`), to read how a client lived
    // through a fault; the checker's producer prints them with the test's clock.
    if let Ok(contexts) = std::env::var("FJORD_CLIENT_DEBUG") {
        c.set("debug", contexts).set("log_level", "7");
    }
    for (k, v) in client_security(bootstrap) {
        c.set(k, v);
    }
    c
}

/// Creates a topic through the Admin API and waits for the result.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    create_topic_rf(bootstrap, name, partitions, 1, configs)
}

/// Like [`create_topic`], with a replication factor.
pub fn create_topic_rf(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let mut t = NewTopic::new(
        name,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (k, v) in configs {
        t = t.set(k, v);
    }
    create_new_topic(bootstrap, &t);
}

/// Creates `topic` as specified (replica assignments, configs) and waits for the result.
pub fn create_new_topic(bootstrap: &str, topic: &rdkafka::admin::NewTopic<'_>) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let res = futures_block_on(admin.create_topics(
        [topic],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))
    .expect("create_topics");
    for r in res {
        r.unwrap_or_else(|(n, e)| panic!("creating {n}: {e}"));
    }
}

/// Runs a future to completion on a throwaway runtime.
pub fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// One uncompressed v2 record batch of `n` records (keys `k<i>`, values `value_len`
/// bytes, timestamps `ts + 10 i`), encoded by kafka-protocol as a client would.
/// `producer` is `(producer id, epoch, first sequence)` for idempotent batches.
pub fn record_batch(
    n: usize,
    value_len: usize,
    ts: i64,
    producer: Option<(i64, i16, i32)>,
) -> bytes::Bytes {
    use kafka_protocol::records::{Record, TimestampType};
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: if seq >= 0 {
                seq + i as i32
            } else {
                i as i32 - 1
            },
            timestamp: ts + i as i64 * 10,
            key: Some(bytes::Bytes::from(format!("k{i}"))),
            value: Some(bytes::Bytes::from(vec![b'v'; value_len])),
            headers: Default::default(),
        })
        .collect();
    encode_batch(&records)
}

/// `records` as uncompressed v2 batches (one, when their offsets and sequences agree).
pub fn encode_batch(records: &[kafka_protocol::records::Record]) -> bytes::Bytes {
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// A topic name for kafka-protocol requests.
pub fn topic_name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(
        s.to_string(),
    ))
}
