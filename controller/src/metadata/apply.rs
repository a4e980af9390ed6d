use std::collections::BTreeSet;

use tracing::info;

use super::command::{
    CommandOutcome, ConfigOp, ConfigResource, MetadataCommand, MetadataError, TopicOutcome,
};
use super::image::{BrokerState, ClusterMetadata, PartitionState, TopicState};
use super::{quotas, reassign};
use crate::decisions::{elect_leader_undrained, live_brokers, set_leader};
use crate::placement::check_new_replicas;

/// Applies one committed command at log index `index`. Deterministic: it reads nothing but
/// its arguments, so every replica of the log computes the same image.
pub fn apply_command(
    md: &mut ClusterMetadata,
    cmd: &MetadataCommand,
    index: u64,
) -> CommandOutcome {
    md.last_applied_index = index;
    match cmd {
        MetadataCommand::InitializeCluster { cluster_id } => {
            let id = md
                .cluster_id
                .get_or_insert_with(|| cluster_id.clone())
                .clone();
            CommandOutcome::ClusterInitialized { cluster_id: id }
        }
        MetadataCommand::RegisterBroker(reg) => {
            let epoch = index as i64;
            md.brokers
                .insert(reg.broker_id, BrokerState::from_registration(reg, epoch));
            info!(broker = reg.broker_id, epoch, "broker registered");
            reelect(md, |_| true);
            complete_reassignments(md);
            CommandOutcome::BrokerRegistered {
                broker_epoch: epoch,
            }
        }
        MetadataCommand::FenceBroker { broker_id, epoch } => {
            match md.brokers.get_mut(broker_id) {
                Some(b) if b.epoch == *epoch && !b.fenced => fence(md, *broker_id, false),
                Some(b) if b.epoch == *epoch && b.stopping => {
                    b.stopping = false;
                    info!(broker = broker_id, epoch, "stopped broker no longer listed");
                }
                _ => {}
            }
            CommandOutcome::Done
        }
        MetadataCommand::ControlledShutdown { broker_id, epoch } => {
            if md
                .brokers
                .get(broker_id)
                .is_some_and(|b| b.epoch == *epoch && !b.fenced)
            {
                fence(md, *broker_id, true);
            }
            CommandOutcome::Done
        }
        MetadataCommand::UnfenceBroker { broker_id, epoch } => {
            match md.brokers.get_mut(broker_id) {
                Some(b) if b.epoch == *epoch && b.fenced => {
                    b.fenced = false;
                    info!(broker = broker_id, epoch, "broker unfenced");
                    reelect(md, |_| true);
                    complete_reassignments(md);
                }
                _ => {}
            }
            CommandOutcome::Done
        }
        MetadataCommand::DrainBroker { broker_id } => {
            if !md.brokers.contains_key(broker_id) {
                return CommandOutcome::Failed(MetadataError::UnknownBroker(*broker_id));
            }
            if md.drained_brokers.insert(*broker_id) {
                let drained = *broker_id;
                let moved = reelect(md, |p| p.leader == drained);
                info!(
                    broker = drained,
                    leaderships_moved = moved,
                    "broker drained: it takes no new replicas"
                );
            }
            CommandOutcome::Done
        }
        MetadataCommand::UndrainBroker { broker_id } => {
            if !md.drained_brokers.remove(broker_id) && !md.brokers.contains_key(broker_id) {
                return CommandOutcome::Failed(MetadataError::UnknownBroker(*broker_id));
            }
            info!(broker = broker_id, "broker undrained");
            CommandOutcome::Done
        }
        MetadataCommand::CreateTopics { topics } => {
            let outcomes = topics
                .iter()
                .map(|spec| {
                    let result = if md.topics.contains_key(&spec.name) {
                        Err(MetadataError::TopicAlreadyExists(spec.name.clone()))
                    } else {
                        validate_assignments(md, &spec.assignments, None).map(|()| {
                            md.topics.insert(
                                spec.name.clone(),
                                TopicState {
                                    name: spec.name.clone(),
                                    id: spec.id,
                                    configs: spec.configs.clone(),
                                    partitions: spec
                                        .assignments
                                        .iter()
                                        .cloned()
                                        .map(PartitionState::new)
                                        .collect(),
                                    internal: spec.internal,
                                },
                            );
                            info!(topic = %spec.name, partitions = spec.assignments.len(), "topic created");
                            spec.id
                        })
                    };
                    TopicOutcome {
                        name: spec.name.clone(),
                        result,
                    }
                })
                .collect();
            CommandOutcome::Topics(outcomes)
        }
        MetadataCommand::DeleteTopics { names } => {
            let outcomes = names
                .iter()
                .map(|name| TopicOutcome {
                    name: name.clone(),
                    result: match md.topics.remove(name) {
                        Some(t) => {
                            info!(topic = %name, "topic deleted");
                            Ok(t.id)
                        }
                        None => Err(MetadataError::UnknownTopic(name.clone())),
                    },
                })
                .collect();
            CommandOutcome::Topics(outcomes)
        }
        MetadataCommand::CreatePartitions {
            topic,
            new_assignments,
        } => {
            let rf = match md.topics.get(topic) {
                None => return CommandOutcome::Failed(MetadataError::UnknownTopic(topic.clone())),
                Some(t) => t.partitions.first().map(|p| p.target_replicas().len()),
            };
            if let Err(e) = validate_assignments(md, new_assignments, rf) {
                return CommandOutcome::Failed(e);
            }
            if let Some(t) = md.topics.get_mut(topic) {
                t.partitions
                    .extend(new_assignments.iter().cloned().map(PartitionState::new));
                info!(topic = %topic, partitions = t.partitions.len(), "partitions added");
                CommandOutcome::Topics(vec![TopicOutcome {
                    name: topic.clone(),
                    result: Ok(t.id),
                }])
            } else {
                CommandOutcome::Failed(MetadataError::UnknownTopic(topic.clone()))
            }
        }
        MetadataCommand::AlterConfigs {
            resource,
            ops,
            replace,
        } => {
            let target = match resource {
                ConfigResource::Topic(name) => match md.topics.get_mut(name) {
                    Some(t) => &mut t.configs,
                    None => {
                        return CommandOutcome::Failed(MetadataError::UnknownTopic(name.clone()))
                    }
                },
                ConfigResource::Broker(None) => &mut md.cluster_configs,
                ConfigResource::Broker(Some(id)) => md.broker_configs.entry(*id).or_default(),
                ConfigResource::Group(id) => md.group_configs.entry(id.clone()).or_default(),
            };
            if *replace {
                target.clear();
            }
            for op in ops {
                match op {
                    ConfigOp::Set { key, value } => {
                        target.insert(key.clone(), value.clone());
                    }
                    ConfigOp::Delete { key } => {
                        target.remove(key);
                    }
                }
            }
            // A group without overrides leaves no trace in the image.
            md.group_configs.retain(|_, c| !c.is_empty());
            info!(?resource, changes = ops.len(), "configs altered");
            CommandOutcome::Done
        }
        MetadataCommand::AlterPartition {
            topic,
            partition,
            leader_id,
            leader_epoch,
            partition_epoch,
            new_isr,
        } => match alter_partition(
            md,
            topic,
            *partition,
            *leader_id,
            *leader_epoch,
            *partition_epoch,
            new_isr,
        ) {
            Ok((partition_epoch, isr)) => CommandOutcome::PartitionChanged {
                partition_epoch,
                isr,
            },
            Err(e) => CommandOutcome::Failed(e),
        },
        MetadataCommand::ElectLeaders { elections } => {
            let live: BTreeSet<i32> = md
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .map(|b| b.id)
                .collect();
            let results = elections
                .iter()
                .map(|e| {
                    let idx = usize::try_from(e.partition).ok();
                    let p = md
                        .topics
                        .get_mut(&e.topic)
                        .and_then(|t| idx.and_then(|i| t.partitions.get_mut(i)));
                    let result = match p {
                        None => Err(MetadataError::UnknownTopic(e.topic.clone())),
                        Some(p) if p.leader_epoch != e.leader_epoch => Err(MetadataError::FencedLeaderEpoch(e.leader_epoch)),
                        Some(p) if p.leader == e.new_leader => Err(MetadataError::ElectionNotNeeded),
                        Some(p) if !live.contains(&e.new_leader) || !p.replicas.contains(&e.new_leader) => Err(
                            MetadataError::PreferredLeaderNotAvailable(format!("broker {} is not a live replica", e.new_leader)),
                        ),
                        Some(p) => {
                            set_leader(p, Some(e.new_leader));
                            if !p.isr.contains(&e.new_leader) {
                                // Only unclean elections pick a leader outside the ISR; the
                                // new leader's log defines the partition from here on.
                                p.isr = vec![e.new_leader];
                            }
                            info!(topic = %e.topic, partition = e.partition, leader = e.new_leader, epoch = p.leader_epoch, "leader elected");
                            Ok(e.new_leader)
                        }
                    };
                    (e.topic.clone(), e.partition, result)
                })
                .collect();
            CommandOutcome::Elections(results)
        }
        MetadataCommand::AlterReassignments { changes } => {
            let known: BTreeSet<i32> = md.brokers.keys().copied().collect();
            let live = live_brokers(md);
            let results = changes
                .iter()
                .map(|c| {
                    // A target may keep a drained broker's replica, never add one.
                    let drained = c.target.as_ref().and_then(|target| {
                        let p = md.partition(&c.topic, c.partition)?;
                        check_new_replicas(md, target, &p.original_replicas()).err()
                    });
                    let result = match (partition_mut(md, &c.topic, c.partition), drained) {
                        (None, _) => Err(MetadataError::UnknownTopic(c.topic.clone())),
                        (Some(_), Some(refused)) => Err(refused),
                        (Some(p), None) => match &c.target {
                            Some(target) => reassign::start(
                                p,
                                target,
                                |b| known.contains(&b),
                                |b| live.contains(&b),
                            ),
                            None => match reassign::cancel(p, |b| live.contains(&b)) {
                                Ok(true) => Ok(()),
                                Ok(false) => Err(MetadataError::NoReassignmentInProgress),
                                Err(e) => Err(e),
                            },
                        },
                    };
                    if result.is_ok() {
                        info!(topic = %c.topic, partition = c.partition, target = ?c.target, "reassignment changed");
                    }
                    (c.topic.clone(), c.partition, result)
                })
                .collect();
            CommandOutcome::Reassignments(results)
        }
        MetadataCommand::AllocateProducerIds { broker_id, count } => {
            if !md.brokers.contains_key(broker_id) {
                return CommandOutcome::Failed(MetadataError::UnknownBroker(*broker_id));
            }
            let count = (*count).clamp(1, 1_000_000);
            let start = md.next_producer_id;
            md.next_producer_id = start.saturating_add(count);
            CommandOutcome::ProducerIds { start, count }
        }
        MetadataCommand::AlterClientQuotas { changes } => {
            // Validated by the controller before proposing; checked again so that a bad
            // entry can never change the image.
            if let Some(e) = changes.iter().find_map(|c| quotas::validate(c).err()) {
                return CommandOutcome::Failed(e);
            }
            for change in changes {
                quotas::apply(&mut md.client_quotas, change);
            }
            CommandOutcome::Done
        }
        MetadataCommand::AlterScramCredentials { upserts, deletions } => {
            for (user, mechanism) in deletions {
                if let Some(creds) = md.scram_credentials.get_mut(user) {
                    creds.remove(mechanism);
                    if creds.is_empty() {
                        md.scram_credentials.remove(user);
                    }
                }
            }
            for u in upserts {
                md.scram_credentials
                    .entry(u.user.clone())
                    .or_default()
                    .insert(u.mechanism.clone(), u.credential.clone());
            }
            info!(
                set = upserts.len(),
                deleted = deletions.len(),
                "SCRAM credentials changed"
            );
            CommandOutcome::Done
        }
        MetadataCommand::CreateAcls { acls } => {
            md.acls.extend(acls.iter().cloned());
            info!(count = acls.len(), "ACLs created");
            CommandOutcome::Done
        }
        MetadataCommand::UpdateFeatures { levels } => {
            md.feature_levels
                .extend(levels.iter().map(|(k, v)| (k.clone(), *v)));
            md.features_epoch = i64::try_from(index).unwrap_or(i64::MAX);
            info!(?levels, "feature levels finalized");
            CommandOutcome::Done
        }
        MetadataCommand::DeleteAcls { filters } => {
            let deleted: Vec<Vec<_>> = filters
                .iter()
                .map(|f| md.acls.iter().filter(|b| f.matches(b)).cloned().collect())
                .collect();
            for b in deleted.iter().flatten() {
                md.acls.remove(b);
            }
            info!(
                count = deleted.iter().map(Vec::len).sum::<usize>(),
                "ACLs deleted"
            );
            CommandOutcome::AclsDeleted(deleted)
        }
    }
}

/// Whether an ISR change from a partition leader would be accepted. The active controller
/// asks this before proposing, so a refusal does not cost a metadata log entry.
pub fn check_alter_partition(
    md: &ClusterMetadata,
    topic: &str,
    partition: i32,
    leader_id: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    new_isr: &[i32],
) -> Result<(), MetadataError> {
    let p = md
        .topics
        .get(topic)
        .and_then(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
        })
        .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
    if p.leader != leader_id || p.leader_epoch != leader_epoch {
        return Err(MetadataError::FencedLeaderEpoch(leader_epoch));
    }
    if p.partition_epoch != partition_epoch {
        return Err(MetadataError::InvalidUpdateVersion(partition_epoch));
    }
    if !new_isr.contains(&leader_id) {
        return Err(MetadataError::InvalidRequest(
            "the ISR must contain the leader".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for r in new_isr {
        if !p.replicas.contains(r) || !seen.insert(*r) {
            return Err(MetadataError::InvalidRequest(format!(
                "{r} is not a replica, or is listed twice"
            )));
        }
        // A fenced broker may not join the ISR; one already in it may stay.
        if !md.is_live(*r) && !p.isr.contains(r) {
            return Err(MetadataError::IneligibleReplica(format!(
                "broker {r} is fenced"
            )));
        }
    }
    Ok(())
}

/// Validates and applies an ISR change from a partition leader.
fn alter_partition(
    md: &mut ClusterMetadata,
    topic: &str,
    partition: i32,
    leader_id: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    new_isr: &[i32],
) -> Result<(i32, Vec<i32>), MetadataError> {
    check_alter_partition(
        md,
        topic,
        partition,
        leader_id,
        leader_epoch,
        partition_epoch,
        new_isr,
    )?;
    let live: BTreeSet<i32> = md
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.id)
        .collect();
    let p = md
        .topics
        .get_mut(topic)
        .and_then(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|i| t.partitions.get_mut(i))
        })
        .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
    if p.isr != new_isr {
        info!(topic, partition, from = ?p.isr, to = ?new_isr, "ISR changed");
        p.isr = new_isr.to_vec();
        p.partition_epoch += 1;
        // The last adding replica reaching the ISR is what finishes a reassignment.
        reassign::try_complete(p, |b| live.contains(&b));
    }
    Ok((p.partition_epoch, p.isr.clone()))
}

fn partition_mut<'a>(
    md: &'a mut ClusterMetadata,
    topic: &str,
    partition: i32,
) -> Option<&'a mut PartitionState> {
    let idx = usize::try_from(partition).ok()?;
    md.topics.get_mut(topic)?.partitions.get_mut(idx)
}

/// Finishes reassignments that only waited for a target replica able to lead.
fn complete_reassignments(md: &mut ClusterMetadata) {
    let live = live_brokers(md);
    for topic in md.topics.values_mut() {
        for p in &mut topic.partitions {
            reassign::try_complete(p, |b| live.contains(&b));
        }
    }
}

fn unclean_allowed(md: &ClusterMetadata, topic: &TopicState) -> bool {
    topic
        .configs
        .get("unclean.leader.election.enable")
        .or_else(|| md.cluster_configs.get("unclean.leader.election.enable"))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Re-elects leaders of the partitions selected by `affected`, against the current set of
/// live brokers, moving leadership off drained brokers where another in-sync replica can
/// lead. Returns how many partitions changed leader.
/// Fences `broker` (a registered, unfenced broker): its leaderships move and it leaves
/// every ISR. `stopping` keeps it listed to clients until it is gone (controlled
/// shutdown).
fn fence(md: &mut ClusterMetadata, broker: i32, stopping: bool) {
    if let Some(b) = md.brokers.get_mut(&broker) {
        b.fenced = true;
        b.stopping = stopping;
    }
    let epoch = md.brokers.get(&broker).map(|b| b.epoch);
    if stopping {
        info!(broker, epoch, "broker fenced for its controlled shutdown");
    } else {
        info!(broker, epoch, "broker fenced");
    }
    let moved = reelect(md, |p| p.leader == broker);
    shrink_isr(md, broker);
    info!(
        broker,
        partitions = moved,
        "leadership moved off fenced broker"
    );
}

fn reelect(md: &mut ClusterMetadata, affected: impl Fn(&PartitionState) -> bool) -> usize {
    let live: BTreeSet<i32> = md
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.id)
        .collect();
    let drained = md.drained_brokers.clone();
    let unclean: Vec<(String, bool)> = md
        .topics
        .values()
        .map(|t| (t.name.clone(), unclean_allowed(md, t)))
        .collect();
    let mut changed = 0;
    for (name, unclean) in unclean {
        let Some(topic) = md.topics.get_mut(&name) else {
            continue;
        };
        for p in topic.partitions.iter_mut().filter(|p| affected(p)) {
            let leader =
                elect_leader_undrained(p, |b| live.contains(&b), |b| drained.contains(&b), unclean);
            if set_leader(p, leader) {
                changed += 1;
            }
        }
    }
    changed
}

/// Removes a fenced broker from every ISR it is in, except where it is the last member:
/// the last ISR member is remembered so it can lead again without losing data.
fn shrink_isr(md: &mut ClusterMetadata, broker: i32) {
    for topic in md.topics.values_mut() {
        for p in &mut topic.partitions {
            if p.isr.len() > 1 && p.isr.contains(&broker) {
                p.isr.retain(|b| *b != broker);
                p.partition_epoch += 1;
            }
        }
    }
}

/// Checks replica lists: non-empty, no duplicate replicas, the same size everywhere (and
/// equal to `rf` when the topic already has one), and only registered brokers that are
/// not drained.
fn validate_assignments(
    md: &ClusterMetadata,
    assignments: &[Vec<i32>],
    rf: Option<usize>,
) -> Result<(), MetadataError> {
    if assignments.is_empty() {
        return Err(MetadataError::InvalidPartitions(
            "a topic needs at least one partition".into(),
        ));
    }
    let expected = rf.unwrap_or(assignments[0].len());
    for (i, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "partition {i} has no replicas"
            )));
        }
        if replicas.len() != expected {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "partition {i} has {} replicas, expected {expected}",
                replicas.len()
            )));
        }
        let unique: BTreeSet<_> = replicas.iter().collect();
        if unique.len() != replicas.len() {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "partition {i} lists a replica twice: {replicas:?}"
            )));
        }
        if let Some(missing) = replicas.iter().find(|b| !md.brokers.contains_key(b)) {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "partition {i} names broker {missing}, which is not registered"
            )));
        }
        check_new_replicas(md, replicas, &[])?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
