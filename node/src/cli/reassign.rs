//! `fjord cluster reassign | drain | undrain | balance`: moving replicas between brokers
//! over the Kafka protocol (AlterPartitionReassignments, ListPartitionReassignments), with
//! plans in the JSON format of kafka-reassign-partitions.sh. The planning itself is
//! `fjord_controller::balance`, shared with the controller's automatic balancing. Whether
//! a broker is drained lives in the metadata log; Kafka has no API for it, so drain and
//! undrain set it through the admin port (`/v1/brokers/{id}/drain`), and plans read it
//! from `/v1/cluster`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fjord_controller::balance::{self, Move, PartitionLayout};
use fjord_controller::placement::Candidate;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, IncrementalAlterConfigsRequest,
    ListPartitionReassignmentsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::{Deserialize, Serialize};

use super::client::ConnectArgs;
use super::cluster::{registered, set_drained, AdminArgs};
use super::move_progress::{Moving, Reporter};
use super::wire::Wire;
use super::CliError;

const THROTTLE_CONFIG: &str = "leader.replication.throttled.rate";

#[derive(clap::Args, Debug)]
pub struct ReassignArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print a plan that spreads --topics over --brokers (JSON, to standard output).
    #[arg(long, conflicts_with_all = ["execute", "verify", "cancel"])]
    pub plan: bool,
    /// Start the reassignments of --file.
    #[arg(long, conflicts_with_all = ["verify", "cancel"])]
    pub execute: bool,
    /// Report whether the reassignments of --file are done; removes the throttle when
    /// they all are. Exits with status 1 while any is in progress.
    #[arg(long, conflicts_with = "cancel")]
    pub verify: bool,
    /// Cancel the reassignments of --file that are still running.
    #[arg(long)]
    pub cancel: bool,
    /// Topics to plan for, comma-separated (with --plan).
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Broker ids the plan may use, comma-separated (with --plan).
    #[arg(long, value_delimiter = ',')]
    pub brokers: Vec<i32>,
    /// The plan: {"version":1,"partitions":[{"topic":..,"partition":..,"replicas":[..]}]}.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// With --execute: limit reassignment traffic to this many bytes per second per
    /// leader (sets leader.replication.throttled.rate; --verify removes it).
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub throttle: Option<i64>,
    /// With --execute: wait until every move is done, reporting progress.
    #[arg(long, requires = "execute")]
    pub wait: bool,
    /// With --wait: give up (exit non-zero, moves keep running) after this many seconds.
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub wait_timeout: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Where the drain is recorded (from the node's own host, like voter changes).
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The broker to drain and empty.
    pub node: i32,
    /// Print the plan only (the broker is not drained).
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until the broker holds no replica (and leads nothing).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up (exit non-zero, moves keep running) after this many seconds.
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub wait_timeout: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct UndrainArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The drained broker.
    pub node: i32,
}

#[derive(clap::Args, Debug)]
pub struct BalanceArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Where to learn which brokers are drained (they get nothing).
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Start the moves (otherwise the plan is only printed).
    #[arg(long)]
    pub execute: bool,
    /// With --execute: wait until every move is done.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up (exit non-zero, moves keep running) after this many seconds.
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub wait_timeout: Option<u64>,
}

/// kafka-reassign-partitions.sh's plan format.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    version: i32,
    partitions: Vec<PlanEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlanEntry {
    topic: String,
    partition: i32,
    replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_dirs: Option<Vec<String>>,
}

impl Plan {
    fn of(moves: &[Move]) -> Plan {
        Plan {
            version: 1,
            partitions: moves
                .iter()
                .map(|m| PlanEntry {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    replicas: m.to.clone(),
                    log_dirs: None,
                })
                .collect(),
        }
    }

    fn read(path: &PathBuf) -> Result<Plan, CliError> {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(path)?
        };
        serde_json::from_str(&text).map_err(|e| {
            CliError::Usage(format!(
                "{} is not a reassignment plan: {e}",
                path.display()
            ))
        })
    }

    fn print(&self) {
        outln!(
            "{}",
            serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
        );
    }
}

/// The cluster as a plan sees it: live brokers and every partition's replicas.
struct Layout {
    brokers: Vec<Candidate>,
    partitions: Vec<PartitionLayout>,
}

fn layout(wire: &mut Wire) -> Result<Layout, CliError> {
    let md = wire.call(12, &MetadataRequest::default().with_topics(None))?;
    let brokers = md
        .brokers
        .iter()
        .map(|b| Candidate {
            id: b.node_id.0,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    let mut partitions = Vec::new();
    for t in &md.topics {
        let Some(name) = t.name.as_ref() else {
            continue;
        };
        for p in &t.partitions {
            partitions.push(PartitionLayout {
                topic: name.0.to_string(),
                partition: p.partition_index,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            });
        }
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(Layout {
        brokers,
        partitions,
    })
}

/// Partitions with a reassignment in progress: `(topic, partition) -> (adding, removing)`.
type Ongoing = BTreeMap<(String, i32), (Vec<i32>, Vec<i32>)>;

fn ongoing(wire: &mut Wire) -> Result<Ongoing, CliError> {
    let resp = wire.call(
        0,
        &ListPartitionReassignmentsRequest::default().with_topics(None),
    )?;
    if resp.error_code != 0 {
        return Err(kafka_error(
            "ListPartitionReassignments",
            resp.error_code,
            resp.error_message.as_deref(),
        ));
    }
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    (t.name.0.to_string(), p.partition_index),
                    (ids(&p.adding_replicas), ids(&p.removing_replicas)),
                )
            })
        })
        .collect())
}

fn kafka_error(what: &str, code: i16, message: Option<&str>) -> CliError {
    let name = kafka_protocol::error::ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error {code}"));
    CliError::Kafka(format!(
        "{what}: {name}{}",
        message.map(|m| format!(": {m}")).unwrap_or_default()
    ))
}

/// Sends the plan's targets (or cancellations, `cancel`). Returns how many were accepted.
fn submit(wire: &mut Wire, entries: &[PlanEntry], cancel: bool) -> Result<usize, CliError> {
    let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
    for e in entries {
        by_topic.entry(&e.topic).or_default().push(
            ReassignablePartition::default()
                .with_partition_index(e.partition)
                .with_replicas(
                    (!cancel).then(|| e.replicas.iter().map(|b| BrokerId(*b)).collect()),
                ),
        );
    }
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, parts)| {
                    ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(parts)
                })
                .collect(),
        );
    let resp = wire.call(0, &req)?;
    if resp.error_code != 0 {
        return Err(kafka_error(
            "AlterPartitionReassignments",
            resp.error_code,
            resp.error_message.as_deref(),
        ));
    }
    let mut accepted = 0;
    let mut failures = Vec::new();
    for t in &resp.responses {
        for p in &t.partitions {
            if p.error_code == 0 {
                accepted += 1;
            } else {
                failures.push(format!(
                    "{}-{}: {}",
                    t.name.0,
                    p.partition_index,
                    kafka_error("refused", p.error_code, p.error_message.as_deref())
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok(accepted)
    } else {
        Err(CliError::Kafka(failures.join("\n")))
    }
}

fn set_throttle(wire: &mut Wire, rate: Option<i64>) -> Result<(), CliError> {
    let op = if rate.is_some() { 0 } else { 1 }; // SET, DELETE
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4) // BROKER; the empty name is the cluster-wide default
            .with_resource_name(StrBytes::from_static_str(""))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str(THROTTLE_CONFIG))
                .with_config_operation(op)
                .with_value(rate.map(|r| StrBytes::from_string(r.to_string())))]),
    ]);
    let resp = wire.call(0, &req)?;
    for r in &resp.responses {
        if r.error_code != 0 {
            return Err(kafka_error(
                "IncrementalAlterConfigs",
                r.error_code,
                r.error_message.as_deref(),
            ));
        }
    }
    Ok(())
}

/// Partitions of `entries` not yet at their target, as lines for a person.
fn pending(wire: &mut Wire, entries: &[PlanEntry]) -> Result<Vec<String>, CliError> {
    Ok(pending_moves(wire, entries)?.0)
}

/// [`pending`]'s lines, and the partitions of them whose new replicas are copying.
fn pending_moves(
    wire: &mut Wire,
    entries: &[PlanEntry],
) -> Result<(Vec<String>, Vec<Moving>), CliError> {
    let now = layout(wire)?;
    let running = ongoing(wire)?;
    let mut out = Vec::new();
    let mut moving = Vec::new();
    for e in entries {
        let key = (e.topic.clone(), e.partition);
        let current = now
            .partitions
            .iter()
            .find(|p| p.topic == e.topic && p.partition == e.partition);
        match (running.get(&key), current) {
            (Some((adding, removing)), current) => {
                out.push(format!(
                    "{}-{}: in progress (adding {adding:?}, removing {removing:?})",
                    e.topic, e.partition
                ));
                let holding = current
                    .map(|p| {
                        p.replicas
                            .iter()
                            .filter(|r| !adding.contains(r))
                            .copied()
                            .collect()
                    })
                    .unwrap_or_default();
                moving.push(Moving {
                    topic: e.topic.clone(),
                    partition: e.partition,
                    holding,
                    adding: adding.clone(),
                });
            }
            (None, Some(p)) if p.replicas != e.replicas => out.push(format!(
                "{}-{}: replicas are {:?}, not {:?}",
                e.topic, e.partition, p.replicas, e.replicas
            )),
            (None, None) => out.push(format!("{}-{}: no such partition", e.topic, e.partition)),
            _ => {}
        }
    }
    Ok((out, moving))
}

/// Waits until every move of `entries` is done, reporting progress as it goes.
fn wait_done(
    wire: &mut Wire,
    connect: &ConnectArgs,
    entries: &[PlanEntry],
    timeout: Option<u64>,
) -> Result<(), CliError> {
    let started = Instant::now();
    let mut progress = Reporter::new(connect);
    loop {
        let (left, moving) = pending_moves(wire, entries)?;
        if left.is_empty() {
            progress.done(entries.len());
            outln!(
                "All {} reassignments are done ({:.1} s).",
                entries.len(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if timeout.is_some_and(|t| started.elapsed() >= Duration::from_secs(t)) {
            progress.finish();
            return Err(CliError::Kafka(format!(
                "{} of {} reassignments still running after {} s; they continue in the cluster (check with fjord cluster reassign --verify)",
                left.len(),
                entries.len(),
                started.elapsed().as_secs()
            )));
        }
        progress.report(entries.len() - left.len(), entries.len(), &moving);
        std::thread::sleep(Duration::from_millis(500)); // polling interval, not synchronization
    }
}

fn connect(c: &ConnectArgs) -> Result<Wire, CliError> {
    Wire::connect(&c.bootstrap_server, c)
}

fn refuse_if_running(wire: &mut Wire) -> Result<(), CliError> {
    let running = ongoing(wire)?;
    if running.is_empty() {
        return Ok(());
    }
    Err(CliError::Kafka(format!(
        "{} reassignments are still running; wait for them (fjord cluster reassign --verify) or cancel them first",
        running.len()
    )))
}

pub fn reassign(args: ReassignArgs) -> Result<(), CliError> {
    let mut wire = connect(&args.connect)?;
    if args.plan {
        if args.topics.is_empty() || args.brokers.is_empty() {
            return Err(CliError::Usage(
                "--plan needs --topics and --brokers".into(),
            ));
        }
        let now = layout(&mut wire)?;
        let brokers: Vec<Candidate> = args
            .brokers
            .iter()
            .map(|id| {
                now.brokers
                    .iter()
                    .find(|b| b.id == *id)
                    .cloned()
                    .ok_or_else(|| CliError::Usage(format!("broker {id} is not a live broker")))
            })
            .collect::<Result<_, _>>()?;
        let chosen: Vec<PartitionLayout> = now
            .partitions
            .into_iter()
            .filter(|p| args.topics.contains(&p.topic))
            .collect();
        for t in &args.topics {
            if !chosen.iter().any(|p| &p.topic == t) {
                return Err(CliError::Usage(format!("topic {t} does not exist")));
            }
        }
        let moves =
            balance::plan_spread(&brokers, &chosen).map_err(|e| CliError::Kafka(e.to_string()))?;
        Plan::of(&moves).print();
        return Ok(());
    }
    let file = args
        .file
        .as_ref()
        .ok_or_else(|| CliError::Usage("--execute, --verify and --cancel need --file".into()))?;
    let plan = Plan::read(file)?;
    if args.execute {
        if let Some(rate) = args.throttle {
            set_throttle(&mut wire, Some(rate))?;
            outln!("Throttle: {rate} bytes/s per leader for reassignment traffic.");
        }
        let n = submit(&mut wire, &plan.partitions, false)?;
        if !args.wait {
            outln!("Started {n} partition reassignments. Check them with --verify.");
            return Ok(());
        }
        outln!("Started {n} partition reassignments.");
        wait_done(
            &mut wire,
            &args.connect,
            &plan.partitions,
            args.wait_timeout,
        )?;
        if args.throttle.is_some() {
            set_throttle(&mut wire, None)?;
            outln!("Throttle removed.");
        }
        Ok(())
    } else if args.verify {
        let left = pending(&mut wire, &plan.partitions)?;
        if left.is_empty() {
            set_throttle(&mut wire, None)?;
            outln!(
                "All {} reassignments are done; throttle removed.",
                plan.partitions.len()
            );
            return Ok(());
        }
        for l in &left {
            outln!("{l}");
        }
        Err(CliError::Kafka(format!(
            "{} of {} reassignments are not done yet",
            left.len(),
            plan.partitions.len()
        )))
    } else if args.cancel {
        let running = ongoing(&mut wire)?;
        let entries: Vec<PlanEntry> = plan
            .partitions
            .into_iter()
            .filter(|e| running.contains_key(&(e.topic.clone(), e.partition)))
            .collect();
        let n = if entries.is_empty() {
            0
        } else {
            submit(&mut wire, &entries, true)?
        };
        outln!("Cancelled {n} running reassignments.");
        Ok(())
    } else {
        Err(CliError::Usage(
            "give one of --plan, --execute, --verify or --cancel".into(),
        ))
    }
}

/// Refuses a broker id the cluster does not know.
fn check_registered(known: &super::cluster::Registered, node: i32) -> Result<(), CliError> {
    if known.ids.contains(&node) || known.drained.contains(&node) {
        return Ok(());
    }
    let ids: Vec<String> = known.ids.iter().map(i32::to_string).collect();
    Err(CliError::Kafka(format!(
        "broker {node} is not registered (registered brokers: {})",
        ids.join(", ")
    )))
}

/// The brokers a plan may place replicas on: live (in Metadata), not drained.
fn placeable(brokers: &[Candidate], drained: &[i32]) -> Vec<Candidate> {
    brokers
        .iter()
        .filter(|b| !drained.contains(&b.id))
        .cloned()
        .collect()
}

/// Waits until no reassignment runs, or `deadline` passes.
fn wait_idle(wire: &mut Wire, deadline: Option<Instant>) -> Result<(), CliError> {
    let started = Instant::now();
    let mut last = usize::MAX;
    loop {
        let running = ongoing(wire)?.len();
        if running == 0 {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(CliError::Kafka(format!(
                "{running} reassignments still running after {} s; they continue in the cluster (check with fjord cluster reassign --verify)",
                started.elapsed().as_secs()
            )));
        }
        if running != last {
            outln!("{running} reassignments still running...");
            last = running;
        }
        std::thread::sleep(Duration::from_millis(500)); // polling interval, not synchronization
    }
}

pub fn drain(args: DrainArgs) -> Result<(), CliError> {
    let node = args.node;
    let admin = &args.admin.admin_server;
    let known = registered(admin)?;
    check_registered(&known, node)?;
    let mut wire = connect(&args.connect)?;
    // Before anything changes: can the other brokers take its replicas?
    let now = layout(&mut wire)?;
    let moves = balance::plan_drain(
        &placeable(&now.brokers, &[known.drained.as_slice(), &[node]].concat()),
        &now.partitions,
        node,
    )
    .map_err(|e| CliError::Kafka(e.to_string()))?;
    if args.dry_run {
        Plan::of(&moves).print();
        if moves.is_empty() {
            outln!("Broker {node} holds no replicas.");
        }
        return Ok(());
    }
    set_drained(admin, node, true)?;
    outln!("Broker {node} is drained: it gets no new replicas, and its leaderships move off.");
    let deadline = args
        .wait_timeout
        .map(|t| Instant::now() + Duration::from_secs(t));
    // Reassignments started before the drain (by hand, or automatic balancing) may still
    // add replicas to it: let them finish, then move whatever it holds; repeat until empty.
    for _ in 0..10 {
        if args.wait {
            wait_idle(&mut wire, deadline)?;
        } else {
            refuse_if_running(&mut wire).map_err(|e| {
                CliError::Kafka(format!(
                    "{e}; then run fjord cluster drain {node} again to move its replicas"
                ))
            })?;
        }
        let drained = registered(admin)?.drained;
        let now = layout(&mut wire)?;
        let moves = balance::plan_drain(&placeable(&now.brokers, &drained), &now.partitions, node)
            .map_err(|e| CliError::Kafka(e.to_string()))?;
        if moves.is_empty() {
            outln!("Broker {node} holds no replicas and leads nothing.");
            return Ok(());
        }
        let entries = Plan::of(&moves).partitions;
        let n = submit(&mut wire, &entries, false)?;
        outln!("Moving {n} partitions off broker {node}.");
        if !args.wait {
            return Ok(());
        }
        // Wait for these very moves to reach their targets before planning again. The
        // node answering may list no reassignment yet for a moment after the controller
        // accepted them; planning from its in-flight replica sets (old and new replicas
        // together) would then ask for four replicas where there were three.
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()).as_secs());
        wait_done(&mut wire, &args.connect, &entries, left)?;
    }
    let left: Vec<String> = layout(&mut wire)?
        .partitions
        .iter()
        .filter(|p| p.replicas.contains(&node))
        .map(|p| format!("{}-{}", p.topic, p.partition))
        .collect();
    Err(CliError::Kafka(format!(
        "broker {node} still holds replicas of {}; drain it again",
        left.join(", ")
    )))
}

pub fn undrain(args: UndrainArgs) -> Result<(), CliError> {
    let admin = &args.admin.admin_server;
    check_registered(&registered(admin)?, args.node)?;
    set_drained(admin, args.node, false)?;
    outln!(
        "Broker {} takes new replicas again; fjord cluster balance --execute gives it a share of the existing ones.",
        args.node
    );
    Ok(())
}

pub fn balance(args: BalanceArgs) -> Result<(), CliError> {
    let mut wire = connect(&args.connect)?;
    refuse_if_running(&mut wire)?;
    // Drained brokers get nothing. Without the admin port the plan may name one, and the
    // controller refuses those moves.
    let drained = match registered(&args.admin.admin_server) {
        Ok(r) => r.drained,
        Err(e) => {
            eprintln!(
                "warning: cannot learn which brokers are drained ({e}); moves onto drained brokers will be refused"
            );
            Vec::new()
        }
    };
    let now = layout(&mut wire)?;
    let moves = balance::plan_balance(&placeable(&now.brokers, &drained), &now.partitions);
    let plan = Plan::of(&moves);
    if moves.is_empty() {
        outln!("The cluster is balanced.");
    } else {
        plan.print();
    }
    if !args.execute {
        if !moves.is_empty() {
            outln!(
                "{} partitions would move; run again with --execute to start.",
                moves.len()
            );
        }
        return Ok(());
    }
    if !moves.is_empty() {
        let n = submit(&mut wire, &plan.partitions, false)?;
        outln!("Started {n} partition reassignments.");
        if !args.wait {
            return Ok(());
        }
        wait_done(
            &mut wire,
            &args.connect,
            &plan.partitions,
            args.wait_timeout,
        )?;
    }
    // Replicas are where the plan wants them: move leadership to the preferred replicas
    // now rather than at the next automatic leader rebalance (also when no replica had
    // to move but leaders are uneven, after a broker restart say).
    let outcome = super::elect::elect(
        &mut wire,
        super::elect::ElectionType::Preferred,
        None,
        30_000,
    )?;
    for (name, why) in &outcome.failed {
        eprintln!("warning: preferred leader election for {name} failed: {why}");
    }
    outln!(
        "Moved leadership of {} partitions to their preferred replicas.",
        outcome.elected.len()
    );
    Ok(())
}
