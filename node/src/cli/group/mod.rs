//! `fjord group ...`: consumer group administration, like `kafka-consumer-groups.sh`.
//! Spoken directly in the Kafka protocol (see `wire`), so it shows exactly what the
//! coordinator answers and works against any Kafka-compatible cluster. Resetting and
//! deleting committed offsets is in `offsets`, planned by the pure functions of `plan`;
//! share groups (KIP-932, kafka-share-groups.sh) are told apart and handled in `share`.

mod offsets;
mod plan;
mod share;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListGroupsRequest, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::client::ConnectArgs;
use super::wire::Wire;
use super::CliError;
use crate::group::subscription::assigned_partitions;

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List groups (classic, consumer and share) on every broker, with their type.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Only groups in this state (Empty, Stable, PreparingRebalance, ...).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show a group's state, members, and committed offsets with lag per partition.
    Describe {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        group: GroupArg,
        /// List members and their assigned partitions instead of offsets.
        #[arg(long)]
        members: bool,
    },
    /// Delete empty groups and their committed offsets.
    Delete {
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move an inactive group's committed offsets. Shows the plan; --execute applies it.
    ResetOffsets(offsets::ResetArgs),
    /// Delete a group's committed offsets of some topics or partitions (OffsetDelete).
    DeleteOffsets(offsets::DeleteOffsetsArgs),
}

/// The group a command is about: positional, as the other `fjord group` commands take
/// it, or `--group`, as kafka-consumer-groups.sh does, so its command lines work too.
#[derive(clap::Args, Debug)]
pub struct GroupArg {
    /// The consumer group.
    #[arg(value_name = "GROUP", required_unless_present = "group_flag")]
    group: Option<String>,
    /// The consumer group (instead of GROUP, as kafka-consumer-groups.sh takes it).
    #[arg(
        long = "group",
        id = "group_flag",
        value_name = "GROUP",
        conflicts_with = "group"
    )]
    group_flag: Option<String>,
}

impl GroupArg {
    fn name(&self) -> &str {
        // clap requires exactly one of the two.
        self.group
            .as_deref()
            .or(self.group_flag.as_deref())
            .unwrap_or_default()
    }
}

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

pub(super) fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error code {code}"))
}

pub(super) fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Retries a call while the cluster says "not yet" (coordinator loading or moving).
pub(super) fn until_ready<T>(
    connect: &ConnectArgs,
    mut f: impl FnMut() -> Result<T, CliError>,
) -> Result<T, CliError> {
    let deadline = Instant::now() + connect.timeout();
    loop {
        match f() {
            Err(CliError::Kafka(m)) if m.starts_with("retriable:") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(CliError::Kafka(m)) if m.starts_with("retriable:") => {
                return Err(CliError::Kafka(
                    m.trim_start_matches("retriable:").trim().to_string(),
                ))
            }
            other => return other,
        }
    }
}

fn retriable(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress
                | ResponseError::NotCoordinator
        )
    )
}

pub(super) fn check(code: i16, what: &str) -> Result<(), CliError> {
    if code == 0 {
        Ok(())
    } else if retriable(code) {
        Err(CliError::Kafka(format!(
            "retriable: {what}: {}",
            error_name(code)
        )))
    } else {
        Err(CliError::Kafka(format!("{what}: {}", error_name(code))))
    }
}

pub(super) fn metadata(
    connect: &ConnectArgs,
    topics: Option<&[String]>,
) -> Result<MetadataResponse, CliError> {
    // Admin tools look topics up; they must not create them (Kafka's admin client never
    // asks to), or a typo, or a deleted topic a group still has commits for, would
    // become a new topic.
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(str(t)))))
                .collect()
        }));
    Wire::connect(&connect.bootstrap_server, connect)?.call(12, &req)
}

pub(super) fn broker_addresses(md: &MetadataResponse) -> HashMap<i32, String> {
    md.brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect()
}

/// A connection to the group's coordinator.
fn coordinator(connect: &ConnectArgs, group: &str) -> Result<Wire, CliError> {
    coordinator_of(connect, group, 0)
}

/// A connection to the coordinator of `key`: a group (key type 0) or a transactional
/// id (1).
pub(super) fn coordinator_of(
    connect: &ConnectArgs,
    key: &str,
    key_type: i8,
) -> Result<Wire, CliError> {
    until_ready(connect, || {
        let mut w = Wire::connect(&connect.bootstrap_server, connect)?;
        let resp = w.call(
            3,
            &FindCoordinatorRequest::default()
                .with_key(str(key))
                .with_key_type(key_type),
        )?;
        check(
            resp.error_code,
            &format!("finding the coordinator of {key}"),
        )?;
        Wire::connect(&format!("{}:{}", resp.host, resp.port), connect)
    })
}

/// Offsets of partitions by timestamp (`EARLIEST`, `LATEST` or a time), asked of each
/// partition's leader.
pub(super) fn log_offsets(
    connect: &ConnectArgs,
    partitions: &[(String, i32)],
    timestamp: i64,
) -> Result<BTreeMap<(String, i32), i64>, CliError> {
    let mut topics: Vec<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
    topics.dedup();
    let md = metadata(connect, Some(&topics))?;
    let addresses = broker_addresses(&md);
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for t in &md.topics {
        let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        for p in &t.partitions {
            if partitions.contains(&(name.clone(), p.partition_index)) {
                by_leader
                    .entry(p.leader_id.0)
                    .or_default()
                    .entry(name.clone())
                    .or_default()
                    .push(p.partition_index);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (leader, topics) in by_leader {
        let Some(addr) = addresses.get(&leader) else {
            continue;
        };
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(str(&t)))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_current_leader_epoch(-1)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp = Wire::connect(addr, connect)?.call(7, &req)?;
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == 0 {
                    out.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
    }
    Ok(out)
}

pub fn run(cmd: GroupCommand) -> Result<(), CliError> {
    match cmd {
        GroupCommand::List { connect, state } => list(&connect, state),
        GroupCommand::Describe {
            connect,
            group,
            members,
        } => describe(&connect, group.name(), members),
        GroupCommand::Delete { connect, groups } => delete(&connect, &groups),
        GroupCommand::ResetOffsets(args) => offsets::reset(&args),
        GroupCommand::DeleteOffsets(args) => offsets::delete(&args),
    }
}

fn list(connect: &ConnectArgs, state: Option<String>) -> Result<(), CliError> {
    let md = metadata(connect, Some(&[]))?;
    let mut groups: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for addr in broker_addresses(&md).values() {
        let req =
            ListGroupsRequest::default().with_states_filter(state.iter().map(|s| str(s)).collect());
        let resp = until_ready(connect, || {
            // v5 names each group's type: classic, consumer or share.
            let resp = Wire::connect(addr, connect)?.call(5, &req)?;
            check(resp.error_code, &format!("listing groups on {addr}"))?;
            Ok(resp)
        })?;
        for g in resp.groups {
            groups.insert(
                g.group_id.0.to_string(),
                (
                    g.group_state.to_string(),
                    g.group_type.to_string(),
                    g.protocol_type.to_string(),
                ),
            );
        }
    }
    outln!(
        "{:<40} {:<20} {:<10} PROTOCOL-TYPE",
        "GROUP",
        "STATE",
        "TYPE"
    );
    for (group, (state, group_type, protocol_type)) in groups {
        outln!("{group:<40} {state:<20} {group_type:<10} {protocol_type}");
    }
    Ok(())
}

/// A KIP-848 group through ConsumerGroupDescribe: (state, assignor, members).
fn describe_consumer_group(
    w: &mut Wire,
    group: &str,
) -> Result<(String, String, Vec<MemberView>), CliError> {
    let resp = w.call(
        0,
        &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(str(group))]),
    )?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Kafka("empty ConsumerGroupDescribe answer".into()))?;
    if g.error_code == ResponseError::GroupIdNotFound.code() {
        return Ok(("Dead".into(), String::new(), Vec::new()));
    }
    check(g.error_code, &format!("describing {group}"))?;
    let members = g
        .members
        .iter()
        .map(|m| MemberView {
            member_id: m.member_id.to_string(),
            instance_id: m.instance_id.as_ref().map(|s| s.to_string()),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assignment: m
                .assignment
                .topic_partitions
                .iter()
                .map(|tp| (tp.topic_name.0.to_string(), tp.partitions.clone()))
                .collect(),
        })
        .collect();
    Ok((
        g.group_state.to_string(),
        g.assignor_name.to_string(),
        members,
    ))
}

/// A partition's committed offset and owner.
type Row<'a> = (Option<i64>, Option<&'a MemberView>);

struct MemberView {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    host: String,
    assignment: Vec<(String, Vec<i32>)>,
}

fn describe(connect: &ConnectArgs, group: &str, show_members: bool) -> Result<(), CliError> {
    if let Some(view) = share::find(connect, group)? {
        return share::describe(connect, group, &view, show_members);
    }
    let (state, protocol, members) = until_ready(connect, || {
        let mut w = coordinator(connect, group)?;
        let resp = w.call(
            5,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(str(group))]),
        )?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| CliError::Kafka("empty DescribeGroups answer".into()))?;
        if g.error_code == ResponseError::GroupIdNotFound.code() {
            // Not a classic group: perhaps a KIP-848 consumer group.
            return describe_consumer_group(&mut w, group);
        }
        check(g.error_code, &format!("describing {group}"))?;
        let members: Vec<MemberView> = g
            .members
            .iter()
            .map(|m| MemberView {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: assigned_partitions(&m.member_assignment).unwrap_or_default(),
            })
            .collect();
        Ok((
            g.group_state.to_string(),
            g.protocol_data.to_string(),
            members,
        ))
    })?;
    if state == "Dead" {
        return Err(CliError::Kafka(format!(
            "consumer group {group} does not exist"
        )));
    }
    if show_members {
        outln!(
            "Group {group} is {state} ({} members, assignor {protocol})",
            members.len()
        );
        outln!(
            "{:<50} {:<20} {:<16} {:<24} ASSIGNMENT",
            "CONSUMER-ID",
            "GROUP-INSTANCE-ID",
            "HOST",
            "CLIENT-ID"
        );
        for m in &members {
            let assignment: Vec<String> = m
                .assignment
                .iter()
                .map(|(t, ps)| {
                    let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                    format!("{t}({})", ps.join(","))
                })
                .collect();
            outln!(
                "{:<50} {:<20} {:<16} {:<24} {}",
                m.member_id,
                m.instance_id.as_deref().unwrap_or("-"),
                m.host,
                m.client_id,
                assignment.join(" ")
            );
        }
        return Ok(());
    }

    let committed = fetch_committed(connect, group)?;
    // Partitions with a commit or an owner, each once.
    let mut rows: BTreeMap<(String, i32), Row> = BTreeMap::new();
    for (tp, offset) in &committed {
        rows.entry(tp.clone()).or_default().0 = Some(*offset);
    }
    for m in &members {
        for (t, ps) in &m.assignment {
            for p in ps {
                rows.entry((t.clone(), *p)).or_default().1 = Some(m);
            }
        }
    }
    let keys: Vec<(String, i32)> = rows.keys().cloned().collect();
    let ends = log_offsets(connect, &keys, LATEST)?;
    outln!("Group {group} is {state} with {} members.", members.len());
    outln!(
        "{:<30} {:>9} {:>15} {:>15} {:>10} {:<50} {:<16} CLIENT-ID",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST"
    );
    for ((topic, partition), (offset, owner)) in rows {
        let end = ends.get(&(topic.clone(), partition)).copied();
        let lag = match (offset, end) {
            (Some(o), Some(e)) => (e - o).max(0).to_string(),
            _ => "-".into(),
        };
        outln!(
            "{:<30} {:>9} {:>15} {:>15} {:>10} {:<50} {:<16} {}",
            topic,
            partition,
            offset.map_or("-".into(), |o| o.to_string()),
            end.map_or("-".into(), |e| e.to_string()),
            lag,
            owner.map_or("-", |m| m.member_id.as_str()),
            owner.map_or("-", |m| m.host.as_str()),
            owner.map_or("-", |m| m.client_id.as_str()),
        );
    }
    Ok(())
}

fn fetch_committed(
    connect: &ConnectArgs,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>, CliError> {
    until_ready(connect, || {
        let mut w = coordinator(connect, group)?;
        // v7: one group, a null topic list meaning all of its offsets.
        let resp = w.call(
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(str(group)))
                .with_topics(None),
        )?;
        check(resp.error_code, &format!("fetching offsets of {group}"))?;
        let mut out = BTreeMap::new();
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    })
}

fn delete(connect: &ConnectArgs, groups: &[String]) -> Result<(), CliError> {
    let mut failed = Vec::new();
    for group in groups {
        let result = until_ready(connect, || {
            let mut w = coordinator(connect, group)?;
            let resp = w.call(
                2,
                &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str(group))]),
            )?;
            let code = resp.results.first().map_or(0, |r| r.error_code);
            check(code, &format!("deleting {group}"))
        });
        match result {
            Ok(()) => outln!("Deleted group {group}."),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Kafka(failed.join("; ")))
    }
}
