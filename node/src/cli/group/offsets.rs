//! `fjord group reset-offsets` and `fjord group delete-offsets`, as
//! kafka-consumer-groups.sh's `--reset-offsets` and `--delete-offsets`: the same scopes,
//! targets, plan table and CSV export. This file asks the cluster and commits; `plan`
//! decides the offsets.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetDeleteRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::plan::{
    export_csv, kafka_error_name, parse_plan_csv, parse_topic_spec, plan, resolve_scope, Known,
    Scope, Target, TopicSpec, Tp,
};
use super::{
    check, coordinator, fetch_committed, log_offsets, metadata, share, str, until_ready, GroupArg,
    EARLIEST, LATEST,
};
use crate::cli::client::ConnectArgs;
use crate::cli::CliError;
use crate::time::{now_ms, parse_iso8601_duration_ms, parse_iso8601_ms};

#[derive(clap::Args, Debug)]
pub struct ResetArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    group: GroupArg,
    /// Every partition the group has committed offsets for.
    #[arg(long, conflicts_with_all = ["topic", "partitions"])]
    all_topics: bool,
    /// A topic (all of its partitions), or some of its partitions as TOPIC:0,1
    /// (repeatable).
    #[arg(long, value_name = "TOPIC[:PARTITIONS]", value_parser = parse_topic_spec)]
    topic: Vec<TopicSpec>,
    /// Partitions of the one --topic (the same as --topic TOPIC:0,1).
    #[arg(long, value_delimiter = ',', requires = "topic")]
    partitions: Vec<i32>,
    #[command(flatten)]
    target: ResetTarget,
    /// Only print the plan (the default without --execute).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Commit the new offsets. The group must have no active members.
    #[arg(long)]
    execute: bool,
    /// Print the plan as CSV lines TOPIC,PARTITION,OFFSET (Kafka's export format), which
    /// --from-file reads back.
    #[arg(long)]
    export: bool,
}

/// Where the offsets go: exactly one of these.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ResetTarget {
    /// The log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// The log end offset.
    #[arg(long)]
    to_latest: bool,
    /// The committed offset (the log end where there is none); with --export, a
    /// snapshot of the group's offsets to restore later with --from-file.
    #[arg(long)]
    to_current: bool,
    /// This offset (moved into the log's range).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// The committed offset moved by N (negative moves back).
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    shift_by: Option<i64>,
    /// The first offset with a timestamp at or after this time, YYYY-MM-DDTHH:mm:SS.sss
    /// with an optional zone (Z, +01:00, -0500). Without a zone the time is UTC.
    #[arg(long, value_name = "DATETIME", value_parser = parse_iso8601_ms)]
    to_datetime: Option<i64>,
    /// The first offset with a timestamp at or after this long ago, an ISO-8601
    /// duration PnDTnHnMnS (PT1H: an hour ago; P1DT12H: a day and a half ago).
    #[arg(long, value_name = "DURATION", value_parser = parse_iso8601_duration_ms)]
    by_duration: Option<i64>,
    /// The first offset with a timestamp at or after this time (milliseconds since the
    /// epoch).
    #[arg(long, value_name = "MS")]
    to_timestamp: Option<i64>,
    /// The offsets in this CSV file: lines TOPIC,PARTITION,OFFSET, as --export prints
    /// them (or GROUP,TOPIC,PARTITION,OFFSET, of which this group's lines count).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct DeleteOffsetsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    group: GroupArg,
    /// A topic (all of its partitions), or some of its partitions as TOPIC:0,1
    /// (repeatable).
    #[arg(long, required = true, value_name = "TOPIC[:PARTITIONS]", value_parser = parse_topic_spec)]
    topic: Vec<TopicSpec>,
}

/// The scope the flags give, if any (`--from-file` alone needs none: the file names
/// its partitions).
fn scope_of(args: &ResetArgs) -> Result<Option<Scope>, CliError> {
    if args.all_topics {
        return Ok(Some(Scope::AllTopics));
    }
    let mut specs = args.topic.clone();
    if !args.partitions.is_empty() {
        // The older spelling, --topic t --partitions 0,1, for one topic.
        match &mut specs[..] {
            [spec] if spec.partitions.is_none() => spec.partitions = Some(args.partitions.clone()),
            _ => {
                return Err(CliError::Usage(
                    "--partitions goes with one --topic; for several, write --topic TOPIC:0,1"
                        .into(),
                ))
            }
        }
    }
    if !specs.is_empty() {
        Ok(Some(Scope::Topics(specs)))
    } else if args.target.from_file.is_some() {
        Ok(None)
    } else {
        Err(CliError::Usage(
            "say which offsets to reset: --all-topics, --topic TOPIC[:PARTITIONS] or --from-file"
                .into(),
        ))
    }
}

fn target_of(t: &ResetTarget, group: &str) -> Result<Target, CliError> {
    Ok(if t.to_earliest {
        Target::Earliest
    } else if t.to_latest {
        Target::Latest
    } else if t.to_current {
        Target::Current
    } else if let Some(o) = t.to_offset {
        Target::Offset(o)
    } else if let Some(n) = t.shift_by {
        Target::ShiftBy(n)
    } else if let Some(ms) = t.to_datetime.or(t.to_timestamp) {
        Target::Time(ms)
    } else if let Some(d) = t.by_duration {
        Target::Time(now_ms().saturating_sub(d).max(0))
    } else if let Some(path) = &t.from_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("--from-file {}: {e}", path.display())))?;
        Target::Plan(
            parse_plan_csv(&text, group)
                .map_err(|e| CliError::Usage(format!("--from-file {}: {e}", path.display())))?,
        )
    } else {
        // clap requires one target.
        return Err(CliError::Usage("say where to move the offsets".into()));
    })
}

/// The partitions of each of `topics` that exists.
fn topic_partitions(
    connect: &ConnectArgs,
    topics: &[String],
) -> Result<BTreeMap<String, Vec<i32>>, CliError> {
    if topics.is_empty() {
        // Nothing to ask: an empty list would fetch no topics anyway.
        return Ok(BTreeMap::new());
    }
    let md = metadata(connect, Some(topics))?;
    Ok(md
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| {
            let mut ps: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
            ps.sort_unstable();
            Some((t.name.as_ref()?.0.to_string(), ps))
        })
        .collect())
}

pub(super) fn reset(args: &ResetArgs) -> Result<(), CliError> {
    let connect = &args.connect;
    let group = args.group.name();
    let scope = scope_of(args)?;
    let target = target_of(&args.target, group)?;
    // A share group's start offsets stand in for committed offsets (-1: no state yet).
    let share = share::find(connect, group)?.is_some();
    let committed = if share {
        let mut starts = share::start_offsets(connect, group, None)?;
        starts.retain(|_, o| *o >= 0);
        starts
    } else {
        fetch_committed(connect, group)?
    };
    let mut topics: Vec<String> = match (&scope, &target) {
        (Some(Scope::Topics(specs)), _) => specs.iter().map(|s| s.topic.clone()).collect(),
        (Some(Scope::AllTopics), _) => committed.keys().map(|(t, _)| t.clone()).collect(),
        (None, Target::Plan(file)) => file.keys().map(|(t, _)| t.clone()).collect(),
        (None, _) => Vec::new(),
    };
    topics.sort();
    topics.dedup();
    let existing = topic_partitions(connect, &topics)?;
    let scope = match (scope, &target) {
        (Some(scope), _) => scope,
        // The file's partitions, which must exist like those of --topic.
        (None, Target::Plan(file)) => {
            let mut specs: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in file.keys() {
                specs.entry(t).or_default().push(*p);
            }
            Scope::Topics(
                specs
                    .into_iter()
                    .map(|(t, ps)| TopicSpec {
                        topic: t.to_string(),
                        partitions: Some(ps),
                    })
                    .collect(),
            )
        }
        (None, _) => return Err(CliError::Usage("say which offsets to reset".into())),
    };
    let (mut chosen, gone) =
        resolve_scope(&scope, &existing, &committed).map_err(CliError::Kafka)?;
    for (t, p) in gone {
        eprintln!("note: skipping {t}-{p}: the group has a commit for it, but it no longer exists");
    }
    if let Target::Plan(file) = &target {
        chosen.retain(|tp| file.contains_key(tp));
    }
    if chosen.is_empty() {
        return Err(CliError::Kafka(match target {
            Target::Plan(_) => "no partition of the file is in the scope given".into(),
            _ => format!("group {group} has no committed offsets to reset"),
        }));
    }
    let by_time = match target {
        Target::Time(ts) => log_offsets(connect, &chosen, ts)?,
        _ => BTreeMap::new(),
    };
    let known = Known {
        earliest: log_offsets(connect, &chosen, EARLIEST)?,
        latest: log_offsets(connect, &chosen, LATEST)?,
        committed,
        by_time,
    };
    let (plan, notes) = plan(&chosen, &target, &known).map_err(CliError::Kafka)?;
    for n in notes {
        eprintln!("note: {n}");
    }
    // With --export, standard output is only the CSV, so that it can be saved and fed
    // back with --from-file; remarks for people go to standard error.
    let say = |line: &str| {
        if args.export {
            eprintln!("{line}");
        } else {
            outln!("{line}");
        }
    };
    if args.export {
        for line in export_csv(&plan).lines() {
            outln!("{line}");
        }
    } else {
        outln!(
            "{:<30} {:<30} {:>9} {:>15}",
            "GROUP",
            "TOPIC",
            "PARTITION",
            "NEW-OFFSET"
        );
        for ((t, p), o) in &plan {
            outln!("{group:<30} {t:<30} {p:>9} {o:>15}");
        }
    }
    if !args.execute {
        say("(dry run: add --execute to commit these offsets)");
        return Ok(());
    }
    if share {
        share::alter(connect, group, &plan)?;
        say(&format!("Altered start offsets for share group {group}."));
    } else {
        commit(connect, group, &plan)?;
        say(&format!("Committed new offsets for group {group}."));
    }
    Ok(())
}

/// Commits `plan` without a generation, which the coordinator takes only from a group
/// with no members: Kafka resets only inactive groups, so that a running consumer does
/// not overwrite the new offsets with its next commit.
fn commit(connect: &ConnectArgs, group: &str, plan: &[(Tp, i64)]) -> Result<(), CliError> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), o) in plan {
        by_topic.entry(t).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1),
        );
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(str(t)))
                        .with_partitions(ps)
                })
                .collect(),
        );
    until_ready(connect, || {
        let resp = coordinator(connect, group)?.call(8, &req)?;
        for t in &resp.topics {
            for p in &t.partitions {
                if ResponseError::try_from_code(p.error_code)
                    == Some(ResponseError::UnknownMemberId)
                {
                    return Err(CliError::Kafka(format!(
                        "group {group} has active members; stop its consumers before resetting offsets"
                    )));
                }
                check(
                    p.error_code,
                    &format!("committing {}-{}", t.name.0, p.partition_index),
                )?;
            }
        }
        Ok(())
    })
}

/// Kafka's name for an error code, as its tools print it.
fn status_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => kafka_error_name(&format!("{e:?}")),
        None => format!("error code {code}"),
    }
}

pub(super) fn delete(args: &DeleteOffsetsArgs) -> Result<(), CliError> {
    let connect = &args.connect;
    let group = args.group.name();
    if share::find(connect, group)?.is_some() {
        if args.topic.iter().any(|s| s.partitions.is_some()) {
            return Err(CliError::Usage(
                "a share group's offsets are deleted per topic: give --topic TOPIC without partitions".into(),
            ));
        }
        let topics: Vec<String> = args.topic.iter().map(|s| s.topic.clone()).collect();
        return share::delete_offsets(connect, group, &topics);
    }
    let bare: Vec<String> = args
        .topic
        .iter()
        .filter(|s| s.partitions.is_none())
        .map(|s| s.topic.clone())
        .collect();
    let existing = topic_partitions(connect, &bare)?;
    let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for spec in &args.topic {
        let ps = match &spec.partitions {
            Some(ps) => ps,
            None => existing
                .get(&spec.topic)
                .ok_or_else(|| CliError::Kafka(format!("topic {} does not exist", spec.topic)))?,
        };
        wanted.entry(spec.topic.clone()).or_default().extend(ps);
    }
    for ps in wanted.values_mut() {
        ps.sort_unstable();
        ps.dedup();
    }
    let req = OffsetDeleteRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_topics(
            wanted
                .iter()
                .map(|(t, ps)| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(str(t)))
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    OffsetDeleteRequestPartition::default().with_partition_index(*p)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let resp = until_ready(connect, || {
        let resp = coordinator(connect, group)?.call(0, &req)?;
        if ResponseError::try_from_code(resp.error_code) == Some(ResponseError::GroupIdNotFound) {
            return Err(CliError::Kafka(format!(
                "consumer group {group} does not exist"
            )));
        }
        check(
            resp.error_code,
            &format!("deleting offsets of group {group}"),
        )?;
        Ok(resp)
    })?;
    let mut rows: Vec<(String, i32, i16)> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index, p.error_code))
        })
        .collect();
    rows.sort();
    outln!("{:<30} {:>9} STATUS", "TOPIC", "PARTITION");
    for (t, p, code) in &rows {
        let status = match code {
            0 => "Successful".to_string(),
            c => format!("Error: {}", status_name(*c)),
        };
        outln!("{t:<30} {p:>9} {status}");
    }
    // Scripts learn from the exit status whether everything went.
    let failed = rows.iter().filter(|(_, _, code)| *code != 0).count();
    if failed > 0 {
        return Err(CliError::Kafka(format!(
            "the offsets of {failed} of {} partitions were not deleted",
            rows.len()
        )));
    }
    Ok(())
}
