//! The pure part of `fjord group reset-offsets` and `delete-offsets`: reading the
//! partitions and targets people give, and computing the new offsets from what the
//! cluster answered (log start and end, commits, offsets by time). No I/O here, so every
//! rule of kafka-consumer-groups.sh that these follow is unit-tested without a cluster.

use std::collections::BTreeMap;

/// A topic partition.
pub type Tp = (String, i32);

/// New offsets by partition, in partition order.
pub type Plan = Vec<(Tp, i64)>;

/// `--topic t` (every partition) or `--topic t:0,1` (these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub topic: String,
    pub partitions: Option<Vec<i32>>,
}

/// Reads `--topic`. Kafka topic names cannot contain ':', so the first one separates
/// the partitions, as in kafka-consumer-groups.sh.
pub fn parse_topic_spec(s: &str) -> Result<TopicSpec, String> {
    let (topic, partitions) = match s.split_once(':') {
        Some((t, ps)) => (t, Some(ps)),
        None => (s, None),
    };
    if topic.is_empty() {
        return Err(format!("'{s}' names no topic"));
    }
    let partitions = partitions
        .map(|ps| {
            let list: Vec<i32> = ps
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<i32>()
                        .ok()
                        .filter(|p| *p >= 0)
                        .ok_or_else(|| format!("'{p}' in '{s}' is not a partition number"))
                })
                .collect::<Result<_, _>>()?;
            if list.is_empty() {
                return Err(format!("'{s}' lists no partitions after the ':'"));
            }
            Ok(list)
        })
        .transpose()?;
    Ok(TopicSpec {
        topic: topic.to_string(),
        partitions,
    })
}

/// Which partitions a command is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `--all-topics`: every partition the group has a commit for, as Kafka takes it.
    AllTopics,
    /// `--topic` (repeatable).
    Topics(Vec<TopicSpec>),
}

/// The partitions `scope` names, given the partitions of existing topics and the
/// group's commits. Also returns the committed partitions `--all-topics` leaves out
/// because their topic or partition is gone (the cluster could not reset them).
pub fn resolve_scope(
    scope: &Scope,
    existing: &BTreeMap<String, Vec<i32>>,
    committed: &BTreeMap<Tp, i64>,
) -> Result<(Vec<Tp>, Vec<Tp>), String> {
    let exists = |(t, p): &Tp| existing.get(t).is_some_and(|ps| ps.contains(p));
    let specs = match scope {
        Scope::AllTopics => {
            let (here, gone) = committed.keys().cloned().partition(|tp| exists(tp));
            return Ok((here, gone));
        }
        Scope::Topics(specs) => specs,
    };
    let mut out = Vec::new();
    for spec in specs {
        let all = existing
            .get(&spec.topic)
            .ok_or_else(|| format!("topic {} does not exist", spec.topic))?;
        match &spec.partitions {
            None => out.extend(all.iter().map(|p| (spec.topic.clone(), *p))),
            Some(ps) => {
                if let Some(p) = ps.iter().find(|p| !all.contains(p)) {
                    return Err(format!("topic {} has no partition {p}", spec.topic));
                }
                out.extend(ps.iter().map(|p| (spec.topic.clone(), *p)));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok((out, Vec::new()))
}

/// Where to move each partition's committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Earliest,
    Latest,
    /// The committed offset (the log end where there is none, as Kafka).
    Current,
    Offset(i64),
    /// The committed offset moved by this much.
    ShiftBy(i64),
    /// The first offset with a timestamp at or after this (epoch milliseconds).
    Time(i64),
    /// Offsets read from a file (`--from-file`).
    Plan(BTreeMap<Tp, i64>),
}

/// What the cluster said about the partitions being reset.
#[derive(Debug, Default)]
pub struct Known {
    pub earliest: BTreeMap<Tp, i64>,
    pub latest: BTreeMap<Tp, i64>,
    pub committed: BTreeMap<Tp, i64>,
    /// ListOffsets by `Target::Time`'s timestamp: -1 where no record is that new.
    pub by_time: BTreeMap<Tp, i64>,
}

/// The new offset of each partition, and notes for people about offsets moved into
/// the log's range. Like Kafka, an offset before the log start becomes the log start and
/// one past the end becomes the end, rather than committing an offset that cannot be read.
pub fn plan(
    partitions: &[Tp],
    target: &Target,
    known: &Known,
) -> Result<(Plan, Vec<String>), String> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for tp in partitions {
        let name = format!("{}-{}", tp.0, tp.1);
        let (Some(&lo), Some(&hi)) = (known.earliest.get(tp), known.latest.get(tp)) else {
            return Err(format!(
                "cannot read the log start and end offsets of {name}"
            ));
        };
        let committed = known.committed.get(tp).copied();
        let wanted = match target {
            Target::Earliest => lo,
            Target::Latest => hi,
            Target::Current => committed.unwrap_or(hi),
            Target::Offset(o) => *o,
            // Kafka refuses too: there is nothing to shift, and guessing a base (the log
            // start, say) could silently re-read or skip a whole partition.
            Target::ShiftBy(n) => committed
                .ok_or_else(|| {
                    format!("cannot shift the offset of {name}: the group has no commit for it")
                })?
                .saturating_add(*n),
            // No record that new: the end of the log, as Kafka does.
            Target::Time(_) => known
                .by_time
                .get(tp)
                .copied()
                .filter(|o| *o >= 0)
                .unwrap_or(hi),
            Target::Plan(offsets) => *offsets
                .get(tp)
                .ok_or_else(|| format!("the file has no offset for {name}"))?,
        };
        let offset = wanted.clamp(lo, hi);
        if offset != wanted {
            let edge = if wanted < lo {
                "before the log start"
            } else {
                "past the log end"
            };
            notes.push(format!(
                "{name}: offset {wanted} is {edge}; using {offset} instead"
            ));
        }
        out.push((tp.clone(), offset));
    }
    Ok((out, notes))
}

/// Reads a `--from-file` plan: lines `topic,partition,offset`, as Kafka's `--export`
/// writes them for one group, or `group,topic,partition,offset` (its export of several
/// groups), of which only `group`'s lines count. Blank lines are skipped.
pub fn parse_plan_csv(text: &str, group: &str) -> Result<BTreeMap<Tp, i64>, String> {
    let mut out = BTreeMap::new();
    let mut other_groups = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = |why: String| format!("line {}: {why}", i + 1);
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (topic, partition, offset) = match fields[..] {
            [t, p, o] => (t, p, o),
            [g, t, p, o] if g == group => (t, p, o),
            [_, _, _, _] => {
                other_groups += 1;
                continue;
            }
            _ => {
                return Err(at(format!(
                    "'{line}' is not topic,partition,offset (or group,topic,partition,offset)"
                )))
            }
        };
        if topic.is_empty() {
            return Err(at("no topic".into()));
        }
        let partition: i32 = partition
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| at(format!("'{partition}' is not a partition number")))?;
        let offset: i64 = offset
            .parse()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| at(format!("'{offset}' is not an offset")))?;
        if out.insert((topic.to_string(), partition), offset).is_some() {
            return Err(at(format!("{topic}-{partition} is listed twice")));
        }
    }
    if out.is_empty() {
        return Err(if other_groups > 0 {
            format!("the file has no lines for group {group}")
        } else {
            "the file lists no offsets".into()
        });
    }
    Ok(out)
}

/// A plan as Kafka's `--export` prints it for one group: `topic,partition,offset`
/// lines, which `--from-file` reads back.
pub fn export_csv(plan: &[(Tp, i64)]) -> String {
    plan.iter()
        .map(|((t, p), o)| format!("{t},{p},{o}\n"))
        .collect()
}

/// Kafka's name of an error (`GROUP_SUBSCRIBED_TO_TOPIC`), as its tools print it, from
/// the protocol crate's (`GroupSubscribedToTopic`).
pub fn kafka_error_name(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> Tp {
        (t.to_string(), p)
    }

    fn spec(s: &str) -> TopicSpec {
        parse_topic_spec(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn topics_take_partitions_after_a_colon() {
        assert_eq!(
            spec("orders"),
            TopicSpec {
                topic: "orders".into(),
                partitions: None
            }
        );
        assert_eq!(spec("orders:0,2").partitions, Some(vec![0, 2]));
        assert_eq!(spec("orders:1").partitions, Some(vec![1]));
        // A trailing comma is forgiven; an empty list and junk are not.
        assert_eq!(spec("orders:0,").partitions, Some(vec![0]));
        for bad in [":0", "orders:", "orders:,", "orders:x", "orders:-1"] {
            assert!(parse_topic_spec(bad).is_err(), "{bad}");
        }
    }

    fn existing() -> BTreeMap<String, Vec<i32>> {
        BTreeMap::from([("a".into(), vec![0, 1, 2]), ("b".into(), vec![0, 1])])
    }

    #[test]
    fn scopes_name_partitions_as_kafka_does() {
        let committed = BTreeMap::from([(tp("a", 1), 5), (tp("b", 0), 3), (tp("gone", 0), 1)]);
        let resolve = |scope: Scope| resolve_scope(&scope, &existing(), &committed);
        // --all-topics: exactly the committed partitions that still exist.
        assert_eq!(
            resolve(Scope::AllTopics),
            Ok((vec![tp("a", 1), tp("b", 0)], vec![tp("gone", 0)]))
        );
        assert_eq!(
            resolve(Scope::Topics(vec![spec("a")])),
            Ok((vec![tp("a", 0), tp("a", 1), tp("a", 2)], vec![]))
        );
        assert_eq!(
            resolve(Scope::Topics(vec![spec("b:1"), spec("a:2,0"), spec("b:1")])),
            Ok((vec![tp("a", 0), tp("a", 2), tp("b", 1)], vec![]))
        );
        assert!(
            resolve(Scope::Topics(vec![spec("a:3")])).is_err_and(|e| e.contains("no partition 3"))
        );
        assert!(resolve(Scope::Topics(vec![spec("c")])).is_err_and(|e| e.contains("c does not")));
    }

    fn known() -> Known {
        // a-0 holds offsets 10..20 with a commit at 15; a-1 holds 0..5 with no commit.
        Known {
            earliest: BTreeMap::from([(tp("a", 0), 10), (tp("a", 1), 0)]),
            latest: BTreeMap::from([(tp("a", 0), 20), (tp("a", 1), 5)]),
            committed: BTreeMap::from([(tp("a", 0), 15)]),
            by_time: BTreeMap::from([(tp("a", 0), 12), (tp("a", 1), -1)]),
        }
    }

    fn offsets(partitions: &[Tp], target: Target) -> Result<Vec<i64>, String> {
        plan(partitions, &target, &known()).map(|(p, _)| p.into_iter().map(|(_, o)| o).collect())
    }

    #[test]
    fn targets_compute_offsets_within_the_log() {
        let both = [tp("a", 0), tp("a", 1)];
        assert_eq!(offsets(&both, Target::Earliest), Ok(vec![10, 0]));
        assert_eq!(offsets(&both, Target::Latest), Ok(vec![20, 5]));
        assert_eq!(offsets(&both, Target::Current), Ok(vec![15, 5]));
        assert_eq!(offsets(&both, Target::Offset(3)), Ok(vec![10, 3]));
        assert_eq!(offsets(&both, Target::Time(1)), Ok(vec![12, 5]));
        let a0 = [tp("a", 0)];
        assert_eq!(offsets(&a0, Target::ShiftBy(-2)), Ok(vec![13]));
        assert_eq!(offsets(&a0, Target::ShiftBy(100)), Ok(vec![20]));
        assert_eq!(offsets(&a0, Target::ShiftBy(i64::MIN)), Ok(vec![10]));
        assert!(offsets(&both, Target::ShiftBy(1)).is_err_and(|e| e.contains("a-1")));
        let file = BTreeMap::from([(tp("a", 0), 11), (tp("a", 1), 9)]);
        assert_eq!(offsets(&both, Target::Plan(file.clone())), Ok(vec![11, 5]));
        assert!(offsets(&[tp("a", 2)], Target::Plan(file)).is_err());
        assert!(offsets(&[tp("b", 0)], Target::Earliest).is_err());
        let (_, notes) = plan(&both, &Target::Offset(7), &known()).unwrap_or_default();
        assert_eq!(
            notes,
            [
                "a-0: offset 7 is before the log start; using 10 instead",
                "a-1: offset 7 is past the log end; using 5 instead"
            ]
        );
    }

    #[test]
    fn plans_round_trip_through_kafkas_csv() {
        let plan = vec![(tp("a", 0), 11), (tp("b", 2), 0)];
        let csv = export_csv(&plan);
        assert_eq!(csv, "a,0,11\nb,2,0\n");
        assert_eq!(
            parse_plan_csv(&csv, "g").map(|m| m.into_iter().collect::<Vec<_>>()),
            Ok(plan)
        );
        // Kafka's export of several groups: only this group's lines.
        let multi = "g,a,0,4\nother,a,0,9\n\n g , a , 1 , 6 \r\n";
        assert_eq!(
            parse_plan_csv(multi, "g"),
            Ok(BTreeMap::from([(tp("a", 0), 4), (tp("a", 1), 6)]))
        );
        assert!(parse_plan_csv(multi, "h").is_err_and(|e| e.contains("no lines for group h")));
        for bad in [
            "",
            "a,0",
            "a,x,1",
            "a,0,-3",
            ",0,1",
            "a,0,1\na,0,2",
            "a,0,1,2,3",
        ] {
            assert!(parse_plan_csv(bad, "g").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(
            kafka_error_name("GroupSubscribedToTopic"),
            "GROUP_SUBSCRIBED_TO_TOPIC"
        );
        assert_eq!(kafka_error_name("GroupIdNotFound"), "GROUP_ID_NOT_FOUND");
    }
}
