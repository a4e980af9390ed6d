//! The node's start-up settings. Precedence: flag, then `FJORD_*` environment variable,
//! then the TOML file, then the default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::defs;
use super::keys::{did_you_mean, is_known_key};

/// Flags of `fjord serve`. Each can also come from `FJORD_<FLAG>`; clap gives the flag
/// precedence over the environment, and unset ones fall through to the file.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServeArgs {
    /// This node's id (broker id and Raft node id), or `ordinal` for the number that ends
    /// the hostname (StatefulSet pod or compose service `fjord-2` is node 2).
    #[arg(long, env = "FJORD_NODE_ID", value_name = "N|ordinal")]
    pub node_id: Option<String>,
    /// Where partition logs and controller state are kept.
    #[arg(long, env = "FJORD_DATA_DIR", value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Kafka listeners, NAME://host:port,...
    #[arg(long, env = "FJORD_LISTENERS", value_name = "LIST")]
    pub listeners: Option<String>,
    /// Addresses clients are told to use, NAME://host:port,... (defaults to --listeners).
    #[arg(long, env = "FJORD_ADVERTISED_LISTENERS", value_name = "LIST")]
    pub advertised_listeners: Option<String>,
    /// gRPC listener for Raft, forwarding and replication.
    #[arg(long, env = "FJORD_RPC_LISTENER", value_name = "HOST:PORT")]
    pub rpc_listener: Option<String>,
    /// HTTP listener for /metrics, /healthz, /readyz and /v1/cluster.
    #[arg(long, env = "FJORD_ADMIN_LISTENER", value_name = "HOST:PORT")]
    pub admin_listener: Option<String>,
    /// Every voter's RPC address, ID@host:port,... (default: this node alone).
    #[arg(long, env = "FJORD_VOTERS", value_name = "LIST")]
    pub voters: Option<String>,
    /// File of settings with Kafka's property names: TOML, or Kafka's own
    /// `server.properties` format when the name ends in `.properties`.
    #[arg(long, env = "FJORD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Rack (zone) of this broker (Kafka's broker.rack).
    #[arg(long, env = "FJORD_RACK", value_name = "RACK")]
    pub rack: Option<String>,
    /// File holding the cluster secret (rpc.auth.secret.file): every node proves it
    /// holds it, and which node it is, before any call on the rpc port.
    #[arg(long, env = "FJORD_CLUSTER_SECRET_FILE", value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// The cluster secret itself, for environments that hand secrets over as
    /// variables (FJORD_CLUSTER_SECRET); a file keeps it out of process listings.
    #[arg(
        long,
        env = "FJORD_CLUSTER_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,
    /// Set any Kafka property, e.g. --override num.partitions=3 (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Check the settings, print them as resolved, and exit: 0 when valid, 2 when not
    /// (a bad value, or a property nothing reads, named with the closest known one).
    #[arg(long)]
    pub check_config: bool,
    /// Log lines as human-readable text or as one JSON object per line.
    #[arg(long, env = "FJORD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One parsed listener: `NAME://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: String,
}

impl ListenerSpec {
    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    pub listeners: Vec<ListenerSpec>,
    pub advertised_listeners: Vec<ListenerSpec>,
    pub rpc_listener: String,
    pub rpc_advertised: String,
    pub admin_listener: String,
    pub voters: BTreeMap<u64, String>,
    pub rack: Option<String>,
    /// Every Kafka property set in the file or with --override, for config lookups.
    pub static_props: BTreeMap<String, String>,
    /// The cluster secret (never among the properties, which DescribeConfigs shows).
    pub cluster_secret: Option<Vec<u8>>,
}

const DEFAULT_LISTENERS: &str = "PLAINTEXT://127.0.0.1:9092";
const DEFAULT_RPC: &str = "127.0.0.1:9093";
const DEFAULT_ADMIN: &str = "127.0.0.1:9644";
const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// Flattens a TOML table into Kafka-style dotted keys: `log.retention.ms = 5` in TOML is
/// the nested table `log -> retention -> ms`, which becomes "log.retention.ms" again.
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        toml::Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.insert(prefix.to_string(), parts.join(","));
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The settings of a config file: Kafka's properties format for `*.properties`
/// (`server.properties` as Kafka reads it), TOML otherwise.
fn read_config_file(path: &std::path::Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "properties") {
        return super::properties::parse(&text)
            .map_err(|e| format!("config file {}: {e}", path.display()));
    }
    let value: toml::Value = toml::from_str(&text).map_err(|e| {
        format!(
            "config file {} is not valid TOML: {e}(a Kafka properties file is read as such \
             when its name ends in .properties)",
            path.display()
        )
    })?;
    let mut props = BTreeMap::new();
    flatten("", &value, &mut props);
    Ok(props)
}

/// Kafka's KRaft files name controller listeners (`controller.listener.names`); Fjord's
/// controller speaks on its rpc listener, which peers also use for replication. So those
/// listeners are taken out of the Kafka listeners, and the first one becomes the rpc
/// listener unless one is given: `controller.quorum.voters` then points at the right
/// port, as it does in Kafka.
fn take_controller_listeners(
    props: &mut BTreeMap<String, String>,
    rpc_given: bool,
) -> Result<(), String> {
    let Some(names) = props.get("controller.listener.names").cloned() else {
        return Ok(());
    };
    let names: Vec<String> = names
        .split(',')
        .map(|n| n.trim().to_uppercase())
        .filter(|n| !n.is_empty())
        .collect();
    let is_controller = |entry: &str| {
        entry
            .split_once("://")
            .is_some_and(|(name, _)| names.contains(&name.trim().to_uppercase()))
    };
    for key in ["listeners", "advertised.listeners"] {
        let Some(spec) = props.get(key).cloned() else {
            continue;
        };
        let (controller, kafka): (Vec<&str>, Vec<&str>) = spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .partition(|e| is_controller(e));
        if key == "listeners" && !rpc_given && !props.contains_key("rpc.listener") {
            if let Some((_, addr)) = controller.first().and_then(|c| c.split_once("://")) {
                let (host, port) = addr
                    .rsplit_once(':')
                    .ok_or_else(|| format!("controller listener '{addr}' has no port"))?;
                let host = if host.is_empty() { "0.0.0.0" } else { host };
                props.insert("rpc.listener".into(), format!("{host}:{port}"));
            }
        }
        props.insert(key.into(), kafka.join(","));
    }
    Ok(())
}

fn parse_listeners(
    spec: &str,
    protocol_map: &BTreeMap<String, String>,
) -> Result<Vec<ListenerSpec>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, rest) = part
            .split_once("://")
            .ok_or_else(|| format!("listener '{part}' must look like NAME://host:port"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("listener '{part}' has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("listener '{part}' has an invalid port '{port}'"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = name.to_uppercase();
        let security_protocol = protocol_map.get(&name).cloned().unwrap_or_else(|| {
            if SECURITY_PROTOCOLS.contains(&name.as_str()) {
                name.clone()
            } else {
                "PLAINTEXT".to_string()
            }
        });
        if !SECURITY_PROTOCOLS.contains(&security_protocol.as_str()) {
            return Err(format!(
                "listener {name} uses {security_protocol}; the protocols are {}",
                SECURITY_PROTOCOLS.join(", ")
            ));
        }
        if out.iter().any(|l: &ListenerSpec| l.name == name) {
            return Err(format!("listener name {name} is used twice"));
        }
        out.push(ListenerSpec {
            name,
            host,
            port,
            security_protocol,
        });
    }
    if out.is_empty() {
        return Err("no listeners given".into());
    }
    Ok(out)
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The file's `[node.N]` tables hold settings for node N alone (one config file for a
/// whole StatefulSet, each pod with its own advertised listeners): node N's entries
/// override the shared ones (but not `--override`s), and every node's table is dropped
/// from the shared set.
fn apply_node_section(props: &mut BTreeMap<String, String>, node_id: i32, overridden: &[&str]) {
    let mine = format!("node.{node_id}.");
    let sections: Vec<String> = props
        .keys()
        .filter(|k| {
            k.strip_prefix("node.")
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        })
        .cloned()
        .collect();
    for key in sections {
        if let Some(value) = props.remove(&key) {
            if let Some(own) = key.strip_prefix(&mine) {
                if !overridden.contains(&own) {
                    props.insert(own.to_string(), value);
                }
            }
        }
    }
}

/// A node id is a number, or `ordinal`: the digits after the last '-' of the hostname,
/// which is how StatefulSet pods and the compose services are numbered.
fn parse_node_id(value: &str, hostname: &str) -> Result<i32, String> {
    if value.eq_ignore_ascii_case("ordinal") {
        let short = hostname.split('.').next().unwrap_or(hostname);
        return short
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse().ok())
            .ok_or_else(|| {
                format!("node id 'ordinal' needs a hostname ending in -<number>, got '{hostname}'")
            });
    }
    value
        .parse()
        .map_err(|_| format!("node id '{value}' is not a number (or 'ordinal')"))
}

fn is_wildcard(host: &str) -> bool {
    host.is_empty() || host == "0.0.0.0" || host == "::"
}

impl NodeConfig {
    pub fn load(args: &ServeArgs) -> Result<Self, String> {
        let mut props = BTreeMap::new();
        if let Some(path) = &args.config {
            props = read_config_file(path)?;
        }
        for o in &args.overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| format!("--override '{o}' must look like KEY=VALUE"))?;
            props.insert(k.trim().to_string(), v.trim().to_string());
        }

        let node_id = match args.node_id.as_deref().or_else(|| {
            props
                .get("node.id")
                .or_else(|| props.get("broker.id"))
                .map(String::as_str)
        }) {
            Some(v) => parse_node_id(v, &machine_hostname())?,
            None => 1,
        };
        if node_id < 0 {
            return Err(format!("node id must be >= 0, got {node_id}"));
        }
        props.insert("node.id".into(), node_id.to_string());
        let overridden: Vec<&str> = args
            .overrides
            .iter()
            .filter_map(|o| o.split_once('=').map(|(k, _)| k.trim()))
            .collect();
        apply_node_section(&mut props, node_id, &overridden);
        take_controller_listeners(&mut props, args.rpc_listener.is_some())?;
        if props.get("log.dirs").is_some_and(|d| d.contains(',')) {
            return Err("log.dirs: Fjord keeps one data directory per node".into());
        }
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| props.get("data.dir").map(PathBuf::from))
            .or_else(|| props.get("log.dirs").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("./fjord-data"));
        if args.data_dir.is_some() || props.contains_key("data.dir") {
            props.insert("log.dirs".into(), data_dir.display().to_string());
        }
        // Settings given as flags are static broker configs like the file's, so that
        // DescribeConfigs reports them with their source.
        for (key, flag) in [
            ("listeners", &args.listeners),
            ("advertised.listeners", &args.advertised_listeners),
            ("controller.quorum.voters", &args.voters),
        ] {
            if let Some(v) = flag {
                props.insert(key.into(), v.clone());
            }
        }
        let protocol_map: BTreeMap<String, String> = props
            .get("listener.security.protocol.map")
            .map(|m| {
                m.split(',')
                    .filter_map(|p| p.split_once(':'))
                    .map(|(a, b)| (a.trim().to_uppercase(), b.trim().to_uppercase()))
                    .collect()
            })
            .unwrap_or_default();
        let listeners_spec = args
            .listeners
            .clone()
            .or_else(|| props.get("listeners").cloned())
            .unwrap_or_else(|| DEFAULT_LISTENERS.to_string());
        let listeners = parse_listeners(&listeners_spec, &protocol_map)?;
        let advertised_spec = args
            .advertised_listeners
            .clone()
            .or_else(|| props.get("advertised.listeners").cloned());
        let mut advertised_listeners = match advertised_spec {
            Some(s) => parse_listeners(&s, &protocol_map)?,
            None => listeners.clone(),
        };
        for a in &mut advertised_listeners {
            if !listeners.iter().any(|l| l.name == a.name) {
                return Err(format!(
                    "advertised listener {} has no matching entry in listeners",
                    a.name
                ));
            }
            if is_wildcard(&a.host) {
                a.host = machine_hostname();
            }
        }
        let rpc_listener = args
            .rpc_listener
            .clone()
            .or_else(|| props.get("rpc.listener").cloned())
            .unwrap_or_else(|| DEFAULT_RPC.to_string());
        let admin_listener = args
            .admin_listener
            .clone()
            .or_else(|| props.get("admin.listener").cloned())
            .unwrap_or_else(|| DEFAULT_ADMIN.to_string());
        let voters_spec = args
            .voters
            .clone()
            .or_else(|| props.get("controller.quorum.voters").cloned())
            .unwrap_or_else(|| format!("{node_id}@{rpc_listener}"));
        let voters = fjord_controller::parse_voters(&voters_spec)?;
        // Peers reach this node at its own voter address when it is a voter.
        let rpc_advertised = voters
            .get(&(node_id as u64))
            .cloned()
            .or_else(|| props.get("rpc.advertised.listener").cloned())
            .unwrap_or_else(|| {
                let (host, port) = rpc_listener
                    .rsplit_once(':')
                    .unwrap_or((&rpc_listener, "9093"));
                if is_wildcard(host) {
                    format!("{}:{port}", machine_hostname())
                } else {
                    rpc_listener.clone()
                }
            });
        let rack = args
            .rack
            .clone()
            .or_else(|| props.get("broker.rack").cloned())
            .filter(|r| !r.is_empty());
        if let Some(r) = &rack {
            props.insert("broker.rack".into(), r.clone());
        }
        for (k, v) in &props {
            if let Some(d) = defs::broker_def(k) {
                defs::validate(&d.def, v)?;
            }
        }
        if let Some(path) = &args.cluster_secret_file {
            props.insert("rpc.auth.secret.file".into(), path.display().to_string());
        }
        let cluster_secret = match (&args.cluster_secret, props.get("rpc.auth.secret.file")) {
            (Some(secret), _) => Some(secret.clone().into_bytes()),
            (None, Some(path)) => {
                Some(std::fs::read(path).map_err(|e| format!("rpc.auth.secret.file {path}: {e}"))?)
            }
            (None, None) => None,
        };
        Ok(NodeConfig {
            node_id,
            data_dir,
            listeners,
            advertised_listeners,
            rpc_listener,
            rpc_advertised,
            admin_listener,
            voters,
            rack,
            static_props: props,
            cluster_secret,
        })
    }

    /// The resolved settings, as `fjord serve --check-config` prints them.
    pub fn describe(&self) -> String {
        let listeners = |ls: &[ListenerSpec]| {
            ls.iter()
                .map(|l| format!("{}://{}:{}", l.name, l.host, l.port))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut out = format!(
            "node.id = {}\ndata.dir = {}\nlisteners = {}\nadvertised.listeners = {}\nrpc.listener = {}\nrpc.advertised.listener = {}\nadmin.listener = {}\ncontroller.quorum.voters = {}\nbroker.rack = {}\n",
            self.node_id,
            self.data_dir.display(),
            listeners(&self.listeners),
            listeners(&self.advertised_listeners),
            self.rpc_listener,
            self.rpc_advertised,
            self.admin_listener,
            self.voters
                .iter()
                .map(|(id, a)| format!("{id}@{a}"))
                .collect::<Vec<_>>()
                .join(","),
            self.rack.as_deref().unwrap_or(""),
        );
        for (k, v) in &self.static_props {
            if !SHOWN_RESOLVED.contains(&k.as_str()) {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out
    }

    /// Properties that nothing reads: a misspelling, or a Kafka setting Fjord does not
    /// know. Kafka only warns about these at start-up, and so does `fjord serve`;
    /// `--check-config` fails on them.
    pub fn unknown_props(&self) -> Vec<&str> {
        self.static_props
            .keys()
            .map(String::as_str)
            .filter(|k| !is_known_key(k))
            .collect()
    }

    /// [`unknown_props`](Self::unknown_props), each with the known name it is closest
    /// to, if one is close.
    pub fn unknown_props_with_hints(&self) -> Vec<(&str, Option<&'static str>)> {
        self.unknown_props()
            .into_iter()
            .map(|k| (k, did_you_mean(k)))
            .collect()
    }
}

/// Keys `describe` prints from the resolved settings above the properties.
const SHOWN_RESOLVED: &[&str] = &[
    "node.id",
    "data.dir",
    "listeners",
    "advertised.listeners",
    "rpc.listener",
    "rpc.advertised.listener",
    "admin.listener",
    "controller.quorum.voters",
    "broker.rack",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_command_line_contract() {
        let c = NodeConfig::load(&ServeArgs::default()).expect("load");
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("./fjord-data"));
        assert_eq!(c.listeners[0].bind_addr(), "127.0.0.1:9092");
        assert_eq!(c.rpc_listener, "127.0.0.1:9093");
        assert_eq!(c.admin_listener, "127.0.0.1:9644");
        assert_eq!(c.voters.get(&1).map(String::as_str), Some("127.0.0.1:9093"));
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("fjord.toml");
        std::fs::write(
            &file,
            "node.id = 3\nlisteners = \"PLAINTEXT://0.0.0.0:7000\"\nlog.retention.ms = 5000\nnum.partitions = 4\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(file.clone()),
            ..ServeArgs::default()
        };
        let c = NodeConfig::load(&args).expect("load");
        assert_eq!(c.node_id, 3);
        assert_eq!(c.listeners[0].port, 7000);
        assert_eq!(c.static_props["log.retention.ms"], "5000");
        assert_eq!(c.static_props["num.partitions"], "4");
        assert_ne!(
            c.advertised_listeners[0].host, "0.0.0.0",
            "wildcards are never advertised"
        );
        let args = ServeArgs {
            config: Some(file),
            node_id: Some("9".into()),
            overrides: vec!["num.partitions=6".into()],
            ..ServeArgs::default()
        };
        let c = NodeConfig::load(&args).expect("load");
        assert_eq!(c.node_id, 9);
        assert_eq!(c.static_props["num.partitions"], "6");
    }

    #[test]
    fn node_tables_apply_to_their_node_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("fjord.toml");
        std::fs::write(
            &file,
            "listeners = \"INTERNAL://0.0.0.0:9092\"\nlistener.security.protocol.map = \"INTERNAL:PLAINTEXT\"\n\
             [node.0]\nadvertised.listeners = \"INTERNAL://fjord-0.fjord:9092\"\n\
             [node.1]\nadvertised.listeners = \"INTERNAL://fjord-1.fjord:9092\"\n",
        )
        .expect("write");
        for id in [0, 1] {
            let c = NodeConfig::load(&ServeArgs {
                config: Some(file.clone()),
                node_id: Some(id.to_string()),
                ..ServeArgs::default()
            })
            .expect("load");
            assert_eq!(c.advertised_listeners[0].host, format!("fjord-{id}.fjord"));
            assert!(c.unknown_props().is_empty(), "{:?}", c.unknown_props());
        }
    }

    /// Kafka 4's sample config/server.properties, as it ships (comments left out).
    pub(crate) const KAFKA_SERVER_PROPERTIES: &str = "process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
";

    #[test]
    fn kafkas_server_properties_loads_with_its_controller_listener_as_the_rpc_port() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("server.properties");
        std::fs::write(&file, KAFKA_SERVER_PROPERTIES).expect("write");
        let c = NodeConfig::load(&ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        })
        .expect("load");
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/kraft-combined-logs"));
        let names: Vec<&str> = c.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["PLAINTEXT"],
            "the controller listener is not a Kafka one"
        );
        assert_eq!(c.listeners[0].bind_addr(), "0.0.0.0:9092");
        assert_eq!(c.advertised_listeners[0].host, "localhost");
        assert_eq!(c.advertised_listeners.len(), 1);
        assert_eq!(c.rpc_listener, "0.0.0.0:9093");
        assert_eq!(c.static_props["log.retention.hours"], "168");
        assert!(c.unknown_props().is_empty(), "{:?}", c.unknown_props());
        let described = c.describe();
        for key in ["listeners", "node.id", "controller.quorum.voters"] {
            let lines = described
                .lines()
                .filter(|l| l.starts_with(&format!("{key} = ")))
                .count();
            assert_eq!(lines, 1, "{key} once:\n{described}");
        }
    }

    #[test]
    fn unknown_properties_are_named_with_the_closest_known_one() {
        let c = NodeConfig::load(&ServeArgs {
            overrides: vec![
                "log.retention.hour=5".into(),
                "num.partition=2".into(),
                "completely.made.up.setting=1".into(),
            ],
            ..ServeArgs::default()
        })
        .expect("load");
        let hints = c.unknown_props_with_hints();
        assert_eq!(
            hints,
            vec![
                ("completely.made.up.setting", None),
                ("log.retention.hour", Some("log.retention.hours")),
                ("num.partition", Some("num.partitions")),
            ]
        );
        assert_eq!(
            super::super::keys::unknown_message("num.partition", Some("num.partitions")),
            "unknown property num.partition (did you mean num.partitions?)"
        );
    }

    #[test]
    fn a_toml_error_says_how_properties_files_are_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("server.conf");
        std::fs::write(&file, "listeners=PLAINTEXT://:9092\n").expect("write");
        let err = NodeConfig::load(&ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        })
        .expect_err("not TOML");
        assert!(err.contains(".properties"), "{err}");
    }

    #[test]
    fn ordinal_node_ids_come_from_the_hostname() {
        assert_eq!(parse_node_id("ordinal", "fjord-2"), Ok(2));
        assert_eq!(
            parse_node_id("ordinal", "my-fjord-12.fjord-headless.ns.svc"),
            Ok(12)
        );
        assert_eq!(parse_node_id("7", "anything"), Ok(7));
        assert!(parse_node_id("ordinal", "laptop").is_err());
        assert!(parse_node_id("ordinal", "fjord-x").is_err());
        assert!(parse_node_id("seven", "fjord-1").is_err());
    }

    #[test]
    fn bad_settings_are_explained() {
        let bad = |args: ServeArgs| NodeConfig::load(&args).expect_err("must fail");
        assert!(bad(ServeArgs {
            listeners: Some("nonsense".into()),
            ..Default::default()
        })
        .contains("NAME://"));
        assert!(bad(ServeArgs {
            listeners: Some("A://h:1".into()),
            overrides: vec!["listener.security.protocol.map=A:KERBEROS".into()],
            ..Default::default()
        })
        .contains("SASL_SSL"));
        assert!(bad(ServeArgs {
            voters: Some("a@b".into()),
            ..Default::default()
        })
        .contains("voter"));
        assert!(bad(ServeArgs {
            overrides: vec!["num.partitions=0".into()],
            ..Default::default()
        })
        .contains("num.partitions"));
    }
}
