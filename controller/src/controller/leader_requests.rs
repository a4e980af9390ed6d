//! The active controller's side of each request: it decides ids and placement, proposes
//! one metadata command, and answers once that command is applied.

use std::sync::atomic::Ordering;

use openraft::async_runtime::WatchReceiver;
use openraft::BasicNode;
use tracing::info;
use uuid::Uuid;

use super::Controller;
use crate::error::ControllerError;
use crate::internal_topics;
use crate::limits;
use crate::metadata::{features, quotas};
use crate::metadata::{
    ClusterMetadata, CommandOutcome, MetadataCommand, MetadataError, NewTopicSpec, TopicOutcome,
};
use crate::placement::{assign_replicas, candidates, check_new_replicas};
use crate::requests::{ControllerRequest, ControllerResponse, CreateTopicRequest};

impl Controller {
    /// Handles a request on the active controller: decides ids and placement, proposes
    /// the command, and waits until it is committed and applied.
    pub async fn handle_as_leader(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerResponse, ControllerError> {
        if !self.is_active() {
            return Err(ControllerError::NotController {
                leader: self.active_controller(),
            });
        }
        let md = self.current();
        match request {
            ControllerRequest::RegisterBroker(reg) => {
                let broker_id = reg.broker_id;
                if let Some(existing) = md.brokers.get(&broker_id) {
                    let l = self.liveness();
                    let heard = l
                        .last_heartbeat_ms
                        .get(&broker_id)
                        .copied()
                        .unwrap_or(l.grace_start_ms);
                    let now = self.now_ms();
                    // A process whose connections all closed is gone, whatever its
                    // session says (a kill -9 and a quick restart).
                    let gone = self.inner.disconnect_grace.is_some_and(|grace| {
                        crate::decisions::disconnected(
                            &self.attachments(),
                            &l.last_heartbeat_ms,
                            (broker_id, existing.epoch),
                            now,
                            grace.as_millis() as u64,
                        )
                    });
                    let alive = !gone
                        && now.saturating_sub(heard)
                            <= self.inner.session_timeout.as_millis() as u64;
                    // Another process is live under this id: refuse until its session ends,
                    // so a zombie and its replacement never both count as the broker.
                    if !existing.fenced && existing.incarnation_id != reg.incarnation_id && alive {
                        return Err(MetadataError::DuplicateBrokerRegistration(broker_id).into());
                    }
                }
                // Count the registration as a heartbeat before it is applied, so the fencing
                // tick can never see the new registration with the old process's silence.
                let now = self.now_ms();
                self.liveness().last_heartbeat_ms.insert(broker_id, now);
                match self.propose(MetadataCommand::RegisterBroker(reg)).await? {
                    CommandOutcome::BrokerRegistered { broker_epoch } => {
                        Ok(ControllerResponse::BrokerRegistered { broker_epoch })
                    }
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::Heartbeat {
                broker_id,
                broker_epoch,
            } => {
                let b = md
                    .brokers
                    .get(&broker_id)
                    .ok_or(MetadataError::UnknownBroker(broker_id))?;
                if b.epoch != broker_epoch {
                    return Err(MetadataError::StaleBrokerEpoch(broker_id).into());
                }
                if !self.renews_leases() {
                    return Err(ControllerError::Unavailable(
                        "no quorum acknowledged this controller recently".into(),
                    ));
                }
                let stopping = {
                    let now = self.now_ms();
                    let mut l = self.liveness();
                    l.last_heartbeat_ms.insert(broker_id, now);
                    l.shutting_down.contains(&(broker_id, broker_epoch))
                };
                if b.fenced && !stopping {
                    self.propose(MetadataCommand::UnfenceBroker {
                        broker_id,
                        epoch: broker_epoch,
                    })
                    .await?;
                    return Ok(ControllerResponse::Heartbeat {
                        fenced: false,
                        metadata_index: self.known_index(),
                    });
                }
                Ok(ControllerResponse::Heartbeat {
                    fenced: b.fenced,
                    metadata_index: self.known_index(),
                })
            }
            ControllerRequest::ControlledShutdown {
                broker_id,
                broker_epoch,
            } => {
                self.liveness()
                    .shutting_down
                    .insert((broker_id, broker_epoch));
                self.propose(MetadataCommand::ControlledShutdown {
                    broker_id,
                    epoch: broker_epoch,
                })
                .await?;
                info!(broker = broker_id, "controlled shutdown: broker fenced");
                Ok(ControllerResponse::Done)
            }
            ControllerRequest::DrainBroker { broker_id } => {
                if !md.brokers.contains_key(&broker_id) {
                    return Err(MetadataError::UnknownBroker(broker_id).into());
                }
                if md.is_drained(broker_id) {
                    return Ok(ControllerResponse::Done);
                }
                info!(broker = broker_id, "draining broker");
                self.propose_done(MetadataCommand::DrainBroker { broker_id })
                    .await
            }
            ControllerRequest::UndrainBroker { broker_id } => {
                if !md.is_drained(broker_id) {
                    return if md.brokers.contains_key(&broker_id) {
                        Ok(ControllerResponse::Done)
                    } else {
                        Err(MetadataError::UnknownBroker(broker_id).into())
                    };
                }
                self.propose_done(MetadataCommand::UndrainBroker { broker_id })
                    .await
            }
            ControllerRequest::AddLearner {
                node_id,
                rpc_address,
            } => {
                let known = {
                    let metrics = self.inner.raft.metrics();
                    let m = metrics.borrow_watched();
                    m.membership_config
                        .get_node(&node_id)
                        .map(|n| n.addr.clone())
                };
                if known.as_deref() == Some(rpc_address.as_str()) {
                    return Ok(ControllerResponse::Done);
                }
                self.inner
                    .raft
                    .add_learner(node_id, BasicNode::new(rpc_address.clone()), false)
                    .await
                    .map_err(|e| Self::membership_error(e, format!("adding learner {node_id}")))?;
                info!(node = node_id, %rpc_address, "learner joined the metadata quorum");
                Ok(ControllerResponse::Done)
            }
            ControllerRequest::AddVoter { node_id, force } => {
                self.change_voters(node_id, true, force).await
            }
            ControllerRequest::RemoveVoter { node_id, force } => {
                self.change_voters(node_id, false, force).await
            }
            ControllerRequest::DescribeQuorum => {
                Ok(ControllerResponse::Quorum(self.quorum_status()))
            }
            ControllerRequest::AlterPartition {
                topic,
                partition,
                leader_id,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => {
                // A change the current image already refuses (most often: a fenced
                // broker rejoining) is answered here rather than committed as a refusal.
                crate::metadata::check_alter_partition(
                    &md,
                    &topic,
                    partition,
                    leader_id,
                    leader_epoch,
                    partition_epoch,
                    &new_isr,
                )?;
                let cmd = MetadataCommand::AlterPartition {
                    topic,
                    partition,
                    leader_id,
                    leader_epoch,
                    partition_epoch,
                    new_isr,
                };
                match self.propose(cmd).await? {
                    CommandOutcome::PartitionChanged {
                        partition_epoch,
                        isr,
                    } => Ok(ControllerResponse::PartitionChanged {
                        partition_epoch,
                        isr,
                    }),
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::ElectLeaders {
                partitions,
                unclean,
            } => {
                let (elections, refused) = if unclean {
                    (
                        crate::decisions::unclean_elections(&md, partitions.as_deref()),
                        Vec::new(),
                    )
                } else {
                    crate::decisions::preferred_elections(&md, partitions.as_deref())
                };
                let mut results: Vec<(String, i32, Result<i32, MetadataError>)> = refused
                    .into_iter()
                    .map(|(t, p, e)| (t, p, Err(e)))
                    .collect();
                if !elections.is_empty() {
                    match self
                        .propose(MetadataCommand::ElectLeaders { elections })
                        .await?
                    {
                        CommandOutcome::Elections(r) => results.extend(r),
                        other => return Err(unexpected(other)),
                    }
                }
                Ok(ControllerResponse::Elections(results))
            }
            ControllerRequest::AlterReassignments { changes } => {
                let mut results = Vec::new();
                let mut allowed = Vec::new();
                for c in changes {
                    match internal_topics::reassignment_refused(&md, &c) {
                        Some(e) => results.push((c.topic, c.partition, Err(e))),
                        None => allowed.push(c),
                    }
                }
                if !allowed.is_empty() {
                    match self
                        .propose(MetadataCommand::AlterReassignments { changes: allowed })
                        .await?
                    {
                        CommandOutcome::Reassignments(r) => results.extend(r),
                        other => return Err(unexpected(other)),
                    }
                }
                Ok(ControllerResponse::Reassignments(results))
            }
            ControllerRequest::AlterClientQuotas {
                changes,
                validate_only,
            } => {
                for change in &changes {
                    quotas::validate(change)?;
                }
                if validate_only {
                    return Ok(ControllerResponse::Done);
                }
                match self
                    .propose(MetadataCommand::AlterClientQuotas { changes })
                    .await?
                {
                    CommandOutcome::Done => Ok(ControllerResponse::Done),
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::AlterScramCredentials { upserts, deletions } => {
                self.propose_done(MetadataCommand::AlterScramCredentials { upserts, deletions })
                    .await
            }
            ControllerRequest::UpdateFeatures {
                updates,
                validate_only,
            } => {
                let levels = features::validate(&md, &updates)?;
                if validate_only {
                    return Ok(ControllerResponse::Done);
                }
                self.propose_done(MetadataCommand::UpdateFeatures { levels })
                    .await
            }
            ControllerRequest::CreateAcls { acls } => {
                self.propose_done(MetadataCommand::CreateAcls { acls })
                    .await
            }
            ControllerRequest::DeleteAcls { filters } => {
                match self
                    .propose(MetadataCommand::DeleteAcls { filters })
                    .await?
                {
                    CommandOutcome::AclsDeleted(d) => Ok(ControllerResponse::AclsDeleted(d)),
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::CreateTopics {
                topics,
                validate_only,
            } => self.create_topics(&md, topics, validate_only).await,
            ControllerRequest::DeleteTopics { names } => {
                let (refused, names): (Vec<_>, Vec<_>) = names
                    .into_iter()
                    .map(|n| (internal_topics::deletion_refused(&md, &n), n))
                    .partition(|(refusal, _)| refusal.is_some());
                let mut outcomes: Vec<TopicOutcome> = refused
                    .into_iter()
                    .filter_map(|(refusal, name)| {
                        refusal.map(|e| TopicOutcome {
                            name,
                            result: Err(e),
                        })
                    })
                    .collect();
                let names: Vec<String> = names.into_iter().map(|(_, n)| n).collect();
                if !names.is_empty() {
                    match self
                        .propose(MetadataCommand::DeleteTopics { names })
                        .await?
                    {
                        CommandOutcome::Topics(t) => outcomes.extend(t),
                        other => return Err(unexpected(other)),
                    }
                }
                Ok(ControllerResponse::Topics(outcomes))
            }
            ControllerRequest::CreatePartitions {
                topic,
                count,
                assignments,
                validate_only,
            } => {
                let topic_state = md
                    .topics
                    .get(&topic)
                    .ok_or_else(|| MetadataError::UnknownTopic(topic.clone()))?;
                if let Some(refused) = internal_topics::new_partitions_refused(&md, &topic) {
                    return Err(refused.into());
                }
                let current = topic_state.partitions.len() as i32;
                if count <= current {
                    return Err(MetadataError::InvalidPartitions(format!(
                        "topic currently has {current} partitions, which is higher than or equal to the requested {count}"
                    ))
                    .into());
                }
                let rf = topic_state
                    .partitions
                    .first()
                    .map(|p| p.target_replicas().len())
                    .unwrap_or(1);
                let added = (count - current) as usize;
                limits::check_request(added as u64)?;
                let new_assignments = match assignments {
                    Some(a) if a.len() != added => {
                        return Err(MetadataError::InvalidReplicaAssignment(format!(
                            "{} replica assignments given for {added} new partitions",
                            a.len()
                        ))
                        .into())
                    }
                    Some(a) => {
                        for replicas in &a {
                            check_new_replicas(&md, replicas, &[])?;
                        }
                        a
                    }
                    None => assign_replicas(
                        &candidates(&md),
                        added,
                        rf,
                        current as usize,
                        self.next_seed(),
                    )?,
                };
                if validate_only {
                    return Ok(ControllerResponse::Done);
                }
                limits::admit(
                    &mut limits::replicas_per_broker(&md),
                    &new_assignments,
                    limits::max_per_broker(&md, self.inner.max_partitions_per_broker),
                )?;
                let cmd = MetadataCommand::CreatePartitions {
                    topic,
                    new_assignments,
                };
                match self.propose(cmd).await? {
                    CommandOutcome::Topics(t) => Ok(ControllerResponse::Topics(t)),
                    CommandOutcome::Failed(e) => Err(e.into()),
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::AllocateProducerIds { broker_id, count } => {
                match self
                    .propose(MetadataCommand::AllocateProducerIds { broker_id, count })
                    .await?
                {
                    CommandOutcome::ProducerIds { start, count } => {
                        Ok(ControllerResponse::ProducerIds { start, count })
                    }
                    other => Err(unexpected(other)),
                }
            }
            ControllerRequest::AlterConfigs {
                resource,
                ops,
                replace,
                validate_only,
            } => {
                if let crate::metadata::ConfigResource::Topic(name) = &resource {
                    if !md.topics.contains_key(name) {
                        return Err(MetadataError::UnknownTopic(name.clone()).into());
                    }
                }
                if validate_only {
                    return Ok(ControllerResponse::Done);
                }
                match self
                    .propose(MetadataCommand::AlterConfigs {
                        resource,
                        ops,
                        replace,
                    })
                    .await?
                {
                    CommandOutcome::Done => Ok(ControllerResponse::Done),
                    CommandOutcome::Failed(e) => Err(e.into()),
                    other => Err(unexpected(other)),
                }
            }
        }
    }

    /// Proposes a command whose only outcome is "done".
    async fn propose_done(
        &self,
        cmd: MetadataCommand,
    ) -> Result<ControllerResponse, ControllerError> {
        match self.propose(cmd).await? {
            CommandOutcome::Done => Ok(ControllerResponse::Done),
            other => Err(unexpected(other)),
        }
    }

    fn next_seed(&self) -> u64 {
        self.inner.placement_seed.fetch_add(1, Ordering::Relaxed)
    }

    async fn create_topics(
        &self,
        md: &ClusterMetadata,
        topics: Vec<CreateTopicRequest>,
        validate_only: bool,
    ) -> Result<ControllerResponse, ControllerError> {
        let candidates = candidates(md);
        let mut outcomes: Vec<Option<TopicOutcome>> = Vec::with_capacity(topics.len());
        let mut specs = Vec::new();
        // Before anything is placed: the partitions the whole request asks for.
        let total: u64 = topics
            .iter()
            .map(|t| match &t.assignments {
                Some(a) => a.len() as u64,
                None => t.num_partitions.max(0) as u64,
            })
            .sum();
        if let Err(e) = limits::check_request(total) {
            return Ok(ControllerResponse::Topics(
                topics
                    .into_iter()
                    .map(|t| TopicOutcome {
                        name: t.name,
                        result: Err(e.clone()),
                    })
                    .collect(),
            ));
        }
        let max_per_broker = limits::max_per_broker(md, self.inner.max_partitions_per_broker);
        let mut hosted = limits::replicas_per_broker(md);
        for t in topics {
            let decided = if md.topics.contains_key(&t.name) {
                Err(MetadataError::TopicAlreadyExists(t.name.clone()))
            } else {
                match t.assignments {
                    Some(a) => a
                        .iter()
                        .try_for_each(|r| check_new_replicas(md, r, &[]))
                        .map(|()| a),
                    None if t.num_partitions < 1 => Err(MetadataError::InvalidPartitions(format!(
                        "number of partitions must be at least 1, got {}",
                        t.num_partitions
                    ))),
                    None if t.replication_factor < 1 => {
                        Err(MetadataError::InvalidReplicationFactor(format!(
                            "replication factor must be at least 1, got {}",
                            t.replication_factor
                        )))
                    }
                    None => assign_replicas(
                        &candidates,
                        t.num_partitions as usize,
                        t.replication_factor as usize,
                        0,
                        self.next_seed(),
                    ),
                }
            };
            let decided = decided.and_then(|a| {
                limits::admit(&mut hosted, &a, max_per_broker)?;
                Ok(a)
            });
            match decided {
                Err(e) => outcomes.push(Some(TopicOutcome {
                    name: t.name,
                    result: Err(e),
                })),
                Ok(assignments) if validate_only => outcomes.push(Some(TopicOutcome {
                    name: t.name,
                    result: Ok(Uuid::nil()).inspect(|_id| {
                        let _ = assignments;
                    }),
                })),
                Ok(assignments) => {
                    outcomes.push(None);
                    specs.push(NewTopicSpec {
                        name: t.name,
                        id: Uuid::new_v4(),
                        assignments,
                        configs: t.configs,
                        internal: t.internal,
                    });
                }
            }
        }
        if !specs.is_empty() {
            let applied = match self
                .propose(MetadataCommand::CreateTopics { topics: specs })
                .await?
            {
                CommandOutcome::Topics(t) => t,
                other => return Err(unexpected(other)),
            };
            let mut applied = applied.into_iter();
            for slot in outcomes.iter_mut().filter(|o| o.is_none()) {
                *slot = applied.next();
            }
        }
        Ok(ControllerResponse::Topics(
            outcomes.into_iter().flatten().collect(),
        ))
    }
}

fn unexpected(outcome: CommandOutcome) -> ControllerError {
    match outcome {
        CommandOutcome::Failed(e) => e.into(),
        other => ControllerError::Fatal(format!("unexpected command outcome {other:?}")),
    }
}
