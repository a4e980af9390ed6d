//! `fjord cluster ...`: the metadata quorum and brokers, over the admin HTTP port (Kafka
//! has no API with these semantics), and the brokers' log dirs over the Kafka protocol.

mod features;
mod log_dirs;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::CliError;

#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// Admin HTTP address of any node, HOST:PORT.
    #[arg(long, env = "FJORD_ADMIN_SERVER", default_value = "127.0.0.1:9644")]
    pub admin_server: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Voters, learners, the active controller, log positions and lag, fenced and drained
    /// brokers, and offline partitions.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Promote a learner to voter.
    AddVoter {
        #[command(flatten)]
        admin: AdminArgs,
        node_id: u64,
        /// Allow an even number of voters.
        #[arg(long)]
        force: bool,
    },
    /// Demote a voter to learner.
    RemoveVoter {
        #[command(flatten)]
        admin: AdminArgs,
        node_id: u64,
        /// Allow an even number of voters.
        #[arg(long)]
        force: bool,
    },
    /// Move partitions between brokers with JSON plans (like kafka-reassign-partitions.sh).
    Reassign(super::reassign::ReassignArgs),
    /// Drain a broker so it can be removed: it gets no new replicas from then on (until
    /// undrain), and every replica and leadership moves off it.
    Drain(super::reassign::DrainArgs),
    /// Let a drained broker take new replicas and lead again (replicas come back with
    /// balance).
    Undrain(super::reassign::UndrainArgs),
    /// Even out replicas and preferred leaders across brokers (prints the plan; moves on
    /// --execute).
    Balance(super::reassign::BalanceArgs),
    /// Run preferred or unclean leader elections (like kafka-leader-election.sh).
    ElectLeaders(super::elect::ElectArgs),
    /// Each broker's log dirs with the size, offset lag and future flag of every
    /// partition in them (like kafka-log-dirs.sh --describe; --json prints its JSON).
    LogDirs(log_dirs::LogDirsArgs),
    /// Feature versions: each one's supported range and finalized level, or change them
    /// with --upgrade/--downgrade (like kafka-features.sh describe|upgrade|downgrade).
    Features(features::FeaturesArgs),
}

/// One HTTP/1.1 request; returns status and body.
pub(super) fn http(addr: &str, method: &str, path: &str) -> Result<(u16, String), CliError> {
    let mut s = TcpStream::connect(addr)
        .map_err(|e| CliError::Kafka(format!("cannot reach the admin server {addr}: {e}")))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let auth = cluster_secret()?
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // axum answers small bodies with a Content-Length; chunked bodies are de-chunked.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// The cluster secret the admin port asks of cluster changes: `FJORD_CLUSTER_SECRET`, or
/// the file `FJORD_CLUSTER_SECRET_FILE` names (both set on the nodes themselves).
fn cluster_secret() -> Result<Option<String>, CliError> {
    if let Ok(s) = std::env::var("FJORD_CLUSTER_SECRET") {
        return Ok(Some(s.trim().to_string()));
    }
    match std::env::var("FJORD_CLUSTER_SECRET_FILE") {
        Ok(path) => std::fs::read_to_string(&path)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| CliError::Usage(format!("FJORD_CLUSTER_SECRET_FILE {path}: {e}"))),
        Err(_) => Ok(None),
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

pub(super) fn json(body: &str) -> Result<Value, CliError> {
    serde_json::from_str(body)
        .map_err(|e| CliError::Kafka(format!("bad answer from the admin server: {e}")))
}

fn change(addr: &str, method: &str, node: u64, force: bool) -> Result<(), CliError> {
    let (status, body) = http(addr, method, &format!("/v1/voters/{node}?force={force}"))?;
    let v = json(&body)?;
    if status == 200 {
        Ok(())
    } else {
        Err(CliError::Kafka(
            v["error"].as_str().unwrap_or(&body).to_string(),
        ))
    }
}

/// Registered brokers (fenced ones too) and which of them are drained, from the
/// admin server's `/v1/cluster`.
pub(super) struct Registered {
    pub ids: Vec<i32>,
    pub drained: Vec<i32>,
}

pub(super) fn registered(addr: &str) -> Result<Registered, CliError> {
    let (status, body) = http(addr, "GET", "/v1/cluster")?;
    if status != 200 {
        return Err(CliError::Kafka(format!(
            "admin server answered {status}: {body}"
        )));
    }
    let v = json(&body)?;
    let brokers = v["brokers"].as_array().cloned().unwrap_or_default();
    let id = |b: &Value| b["id"].as_i64().map(|i| i as i32);
    Ok(Registered {
        ids: brokers.iter().filter_map(id).collect(),
        drained: brokers
            .iter()
            .filter(|b| b["drained"].as_bool().unwrap_or(false))
            .filter_map(id)
            .collect(),
    })
}

/// Drains (`drained`) or undrains a broker through the admin server; an unknown broker
/// is an error.
pub(super) fn set_drained(addr: &str, node: i32, drained: bool) -> Result<(), CliError> {
    let method = if drained { "POST" } else { "DELETE" };
    let (status, body) = http(addr, method, &format!("/v1/brokers/{node}/drain"))?;
    if status == 200 {
        return Ok(());
    }
    let why = json(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("admin server answered {status}: {body}"));
    Err(CliError::Kafka(why))
}

pub fn run(cmd: ClusterCommand) -> Result<(), CliError> {
    match cmd {
        ClusterCommand::Status { admin, json: raw } => {
            let (status, body) = http(&admin.admin_server, "GET", "/v1/cluster")?;
            if status != 200 {
                return Err(CliError::Kafka(format!(
                    "admin server answered {status}: {body}"
                )));
            }
            let v = json(&body)?;
            if raw {
                outln!("{}", serde_json::to_string_pretty(&v).unwrap_or(body));
                return Ok(());
            }
            print_status(&v);
            Ok(())
        }
        ClusterCommand::AddVoter {
            admin,
            node_id,
            force,
        } => {
            change(&admin.admin_server, "POST", node_id, force)?;
            outln!("Node {node_id} is a voter.");
            Ok(())
        }
        ClusterCommand::RemoveVoter {
            admin,
            node_id,
            force,
        } => {
            change(&admin.admin_server, "DELETE", node_id, force)?;
            outln!("Node {node_id} is no longer a voter.");
            Ok(())
        }
        ClusterCommand::Reassign(args) => super::reassign::reassign(args),
        ClusterCommand::Drain(args) => super::reassign::drain(args),
        ClusterCommand::Undrain(args) => super::reassign::undrain(args),
        ClusterCommand::Balance(args) => super::reassign::balance(args),
        ClusterCommand::ElectLeaders(args) => super::elect::run(args),
        ClusterCommand::LogDirs(args) => log_dirs::run(args),
        ClusterCommand::Features(args) => features::run(args),
    }
}

fn print_status(v: &Value) {
    outln!(
        "Cluster id:        {}",
        v["cluster_id"].as_str().unwrap_or("-")
    );
    outln!("Active controller: {}", v["active_controller"]);
    let q = &v["quorum"];
    if let Some(err) = q["error"].as_str() {
        outln!("Quorum:            unavailable ({err})");
    } else {
        outln!("Term:              {}", q["term"]);
        outln!("Leader log end:    {}", q["last_log_index"]);
        outln!();
        outln!(
            "{:<6} {:<8} {:<24} {:>10} {:>8}",
            "NODE",
            "ROLE",
            "RPC ADDRESS",
            "LOG INDEX",
            "LAG"
        );
        for n in q["nodes"].as_array().into_iter().flatten() {
            outln!(
                "{:<6} {:<8} {:<24} {:>10} {:>8}",
                n["node_id"].to_string(),
                if n["voter"].as_bool().unwrap_or(false) {
                    "voter"
                } else {
                    "learner"
                },
                n["rpc_address"].as_str().unwrap_or("-"),
                n["matched_index"].to_string(),
                n["lag"].to_string()
            );
        }
    }
    outln!();
    outln!(
        "{:<6} {:<15} {:<30} {}",
        "BROKER",
        "STATE",
        "LISTENERS",
        "RACK"
    );
    for b in v["brokers"].as_array().into_iter().flatten() {
        let listeners: Vec<String> = b["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                format!(
                    "{}://{}:{}",
                    l["name"].as_str().unwrap_or(""),
                    l["host"].as_str().unwrap_or(""),
                    l["port"]
                )
            })
            .collect();
        let state = match (
            b["fenced"].as_bool().unwrap_or(false),
            b["drained"].as_bool().unwrap_or(false),
        ) {
            (false, false) => "active",
            (true, false) => "fenced",
            (false, true) => "drained",
            (true, true) => "fenced,drained",
        };
        outln!(
            "{:<6} {:<15} {:<30} {}",
            b["id"].to_string(),
            state,
            listeners.join(","),
            b["rack"].as_str().unwrap_or("-")
        );
    }
    let under = v["under_replicated_partitions"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    outln!();
    outln!("Under-replicated partitions: {under}");
    for p in v["under_replicated_partitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        outln!(
            "  {}-{}\treplicas {}\tisr {}",
            p["topic"].as_str().unwrap_or(""),
            p["partition"],
            p["replicas"],
            p["isr"]
        );
    }
    let offline = v["offline_partitions"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    outln!();
    outln!("Offline partitions: {offline}");
    for p in v["offline_partitions"].as_array().into_iter().flatten() {
        outln!("  {}-{}", p["topic"].as_str().unwrap_or(""), p["partition"]);
    }
}
