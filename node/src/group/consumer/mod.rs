//! The consumer group protocol of KIP-848 (`group.protocol=consumer`) as a pure state
//! machine. Members heartbeat with what they subscribe to and what they own; the
//! coordinator computes a target assignment with a server-side assignor and moves each
//! member toward it: a member first gives up partitions it must lose, and is only handed
//! partitions no other member still holds. Three epochs order this: the group epoch
//! (bumped by every membership or subscription change), the assignment epoch (the group
//! epoch the target was computed at) and each member's epoch (the target epoch it has
//! reached). Offset commits are checked against the member epoch.
//!
//! No I/O: time and the topic catalog are arguments, and a call says whether the group's
//! durable state changed so the caller persists it. Moving one member is in `reconcile`,
//! the assignors in `assignor`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

pub mod assignor;
mod reconcile;
#[cfg(test)]
mod tests;

pub type MemberId = String;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// Member epoch of a leave request, and of a static member's temporary leave.
pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Bounds on what a heartbeat may carry, so one request cannot make the group state (and
/// the record that persists it) grow without limit.
pub const MAX_SUBSCRIBED_TOPICS: usize = 10_000;
pub const MAX_REGEX_LEN: usize = 1_000;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A topic as the assignor sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
}

/// The topics that exist, as the cluster metadata says.
pub trait TopicCatalog {
    fn by_name(&self, name: &str) -> Option<TopicInfo>;
    /// Every topic a regex subscription may match (internal topics excluded).
    fn names(&self) -> Vec<String>;
    /// Whether a member's principal, connecting from `host`, may DESCRIBE `topic`: a
    /// member is only assigned topics it may see, whatever its regex matches.
    fn visible(&self, _principal: &str, _host: &str, _topic: &str) -> bool {
        true
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MemberState {
    /// Holds its whole share of the target assignment.
    Stable,
    /// Must give up `pending_revocation` before it moves on.
    UnrevokedPartitions,
    /// Reached the target epoch, but some of its target partitions are still held by
    /// members that have not released them.
    UnreleasedPartitions,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerMember {
    pub member_id: MemberId,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's principal as ACLs name it (`User:alice`), for `TopicCatalog::visible`.
    #[serde(default)]
    pub principal: String,
    pub rebalance_timeout_ms: i64,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    /// What the member may consume now.
    pub assigned: Assignment,
    /// What it must give up before it moves on.
    pub pending_revocation: Assignment,
    #[serde(skip)]
    pub last_heard_ms: i64,
    /// When a member that must revoke partitions is fenced if it has not.
    #[serde(skip)]
    pub revoke_deadline_ms: Option<i64>,
}

/// A heartbeat, as the coordinator needs it.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None` when unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// What the member owns; `None` when unchanged since its last heartbeat.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
    /// `User:<name>`, as ACLs name the client.
    pub principal: String,
}

impl Heartbeat {
    /// Kafka's "full request": a client sends every field after joining or an error, and
    /// then gets its whole assignment back.
    fn is_full(&self) -> bool {
        self.rebalance_timeout_ms != -1
            && (self.subscribed_topic_names.is_some() || self.subscribed_topic_regex.is_some())
            && self.owned.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    pub member_id: MemberId,
    pub member_epoch: i32,
    /// Sent when it changed, or when the member asked with a full request.
    pub assignment: Option<Assignment>,
}

/// Group-wide settings (Kafka's `group.consumer.*` broker configs).
#[derive(Clone, Copy, Debug)]
pub struct ConsumerGroupConfig {
    pub session_timeout_ms: i64,
    pub heartbeat_interval_ms: i64,
    pub max_size: usize,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: usize::MAX,
        }
    }
}

/// The group's state as ConsumerGroupDescribe and ListGroups name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
    Dead,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
            ConsumerGroupState::Dead => "Dead",
        }
    }
}

/// Why a member was removed, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    pub member_id: MemberId,
    pub reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<MemberId, ConsumerMember>,
    /// The target assignment, computed at `assignment_epoch`.
    pub target: BTreeMap<MemberId, Assignment>,
    /// The subscribed topics as last resolved: name -> (id, partition count). A change
    /// bumps the group epoch.
    pub subscribed: BTreeMap<String, (Uuid, i32)>,
    /// The assignor that computed the target.
    pub assignor: String,
    pub empty_since_ms: Option<i64>,
    #[serde(skip)]
    pub dead: bool,
}

impl ConsumerGroup {
    pub fn new(id: &str, now_ms: i64) -> Self {
        ConsumerGroup {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed: BTreeMap::new(),
            assignor: assignor::UNIFORM.to_string(),
            empty_since_ms: Some(now_ms),
            dead: false,
        }
    }

    /// A group loaded from its last record: every member gets a fresh session.
    pub fn restore(mut self, now_ms: i64) -> Self {
        for m in self.members.values_mut() {
            m.last_heard_ms = now_ms;
            if m.state == MemberState::UnrevokedPartitions {
                m.revoke_deadline_ms = Some(now_ms.saturating_add(m.rebalance_timeout_ms));
            }
        }
        self
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.dead {
            ConsumerGroupState::Dead
        } else if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    fn static_member(&self, instance_id: &str) -> Option<&ConsumerMember> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    /// One heartbeat. `Ok((answer, changed))`: `changed` says the durable state moved
    /// and must be persisted before the answer is sent.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        catalog: &dyn TopicCatalog,
        config: &ConsumerGroupConfig,
        now_ms: i64,
    ) -> Result<(HeartbeatAnswer, bool), ResponseError> {
        if self.dead {
            return Err(ResponseError::GroupIdNotFound);
        }
        if let Some(a) = hb.server_assignor.as_deref() {
            if !assignor::ASSIGNORS.contains(&a) {
                return Err(ResponseError::UnsupportedAssignor);
            }
        }
        if let Some(re) = hb.subscribed_topic_regex.as_deref() {
            compile_regex(re)?;
        }
        match hb.member_epoch {
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => self.leave(&hb, now_ms),
            0 => self.join(hb, catalog, config, now_ms),
            e if e > 0 => self.keep_alive(hb, catalog, now_ms, false),
            _ => Err(ResponseError::InvalidRequest),
        }
    }

    fn leave(
        &mut self,
        hb: &Heartbeat,
        now_ms: i64,
    ) -> Result<(HeartbeatAnswer, bool), ResponseError> {
        let id = match hb.instance_id.as_deref() {
            Some(i) => match self.static_member(i) {
                Some(m) if m.member_id == hb.member_id => m.member_id.clone(),
                Some(_) => return Err(ResponseError::FencedInstanceId),
                None => return Err(ResponseError::UnknownMemberId),
            },
            None => hb.member_id.clone(),
        };
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if hb.member_epoch == STATIC_LEAVE_EPOCH && hb.instance_id.is_some() {
            // A static member going away for a while keeps its partitions (KIP-345): the
            // instance coming back under a new member id takes them over.
            if let Some(m) = self.members.get_mut(&id) {
                if m.member_epoch != STATIC_LEAVE_EPOCH {
                    m.previous_member_epoch = m.member_epoch;
                }
                m.member_epoch = STATIC_LEAVE_EPOCH;
                m.last_heard_ms = now_ms;
            }
        } else {
            self.remove(&id, now_ms);
        }
        Ok((
            HeartbeatAnswer {
                member_id: id,
                member_epoch: hb.member_epoch,
                assignment: None,
            },
            true,
        ))
    }

    fn join(
        &mut self,
        hb: Heartbeat,
        catalog: &dyn TopicCatalog,
        config: &ConsumerGroupConfig,
        now_ms: i64,
    ) -> Result<(HeartbeatAnswer, bool), ResponseError> {
        if hb.rebalance_timeout_ms < 0
            || (hb.subscribed_topic_names.is_none() && hb.subscribed_topic_regex.is_none())
            || hb.owned.as_ref().is_none_or(|o| !o.is_empty())
        {
            return Err(ResponseError::InvalidRequest);
        }
        let member_id = if hb.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            hb.member_id.clone()
        };
        let mut inherited: Option<ConsumerMember> = None;
        if let Some(instance) = hb.instance_id.as_deref() {
            if let Some(old) = self.static_member(instance).cloned() {
                if old.member_epoch != STATIC_LEAVE_EPOCH && old.member_id != member_id {
                    return Err(ResponseError::UnreleasedInstanceId);
                }
                self.members.remove(&old.member_id);
                if let Some(t) = self.target.remove(&old.member_id) {
                    self.target.insert(member_id.clone(), t);
                }
                inherited = Some(old);
            }
        }
        if inherited.is_none() && self.members.contains_key(&member_id) {
            // A member rejoining with epoch 0 lost its state: start it afresh, so its
            // partitions are handed out again through the normal revocation path.
            self.remove(&member_id, now_ms);
        }
        if inherited.is_none() && self.members.len() >= config.max_size {
            return Err(ResponseError::GroupMaxSizeReached);
        }
        let mut member = ConsumerMember {
            member_id: member_id.clone(),
            instance_id: hb.instance_id.clone(),
            rack_id: hb.rack_id.clone(),
            client_id: hb.client_id.clone(),
            client_host: hb.client_host.clone(),
            principal: hb.principal.clone(),
            rebalance_timeout_ms: i64::from(hb.rebalance_timeout_ms),
            subscribed_topic_names: Vec::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            last_heard_ms: now_ms,
            revoke_deadline_ms: None,
        };
        let returning = inherited.is_some();
        if let Some(old) = inherited {
            // The instance comes back where it left: same epoch, same partitions.
            member.member_epoch = old.previous_member_epoch.max(0);
            member.previous_member_epoch = old.previous_member_epoch;
            member.state = old.state;
            member.assigned = old.assigned;
            member.pending_revocation = old.pending_revocation;
            member.subscribed_topic_names = old.subscribed_topic_names;
            member.subscribed_topic_regex = old.subscribed_topic_regex;
            member.server_assignor = old.server_assignor;
        }
        let member_added = !returning;
        self.members.insert(member_id.clone(), member);
        self.empty_since_ms = None;
        let mut hb = hb;
        hb.member_id = member_id;
        let (mut answer, _) = self.keep_alive(hb, catalog, now_ms, member_added)?;
        // A joining member always learns its (possibly empty) assignment.
        if answer.assignment.is_none() {
            answer.assignment = self
                .members
                .get(&answer.member_id)
                .map(|m| m.assigned.clone());
        }
        Ok((answer, true))
    }

    /// A heartbeat of a member that has joined (or is joining, from `join`, which says
    /// whether the member is new to the group).
    fn keep_alive(
        &mut self,
        hb: Heartbeat,
        catalog: &dyn TopicCatalog,
        now_ms: i64,
        member_added: bool,
    ) -> Result<(HeartbeatAnswer, bool), ResponseError> {
        let full = hb.is_full();
        let Some(member) = self.members.get(&hb.member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if let Some(i) = hb.instance_id.as_deref() {
            if member.instance_id.as_deref() != Some(i) {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        if hb.member_epoch != 0 && hb.member_epoch != member.member_epoch {
            // A member that missed the answer that moved it on may come back with its
            // previous epoch, as long as it owns nothing it was not given.
            let lost_answer = hb.member_epoch == member.previous_member_epoch
                && hb
                    .owned
                    .as_ref()
                    .is_none_or(|o| is_subset(o, &member.assigned));
            if !lost_answer {
                return Err(ResponseError::FencedMemberEpoch);
            }
        }
        let mut changed = false;
        let before = member.clone();
        let member = self
            .members
            .get_mut(&hb.member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        member.last_heard_ms = now_ms;
        member.client_id = hb.client_id;
        member.client_host = hb.client_host;
        member.principal = hb.principal;
        if hb.rack_id.is_some() {
            member.rack_id = hb.rack_id;
        }
        if hb.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = i64::from(hb.rebalance_timeout_ms);
        }
        let mut subscription_changed = false;
        if let Some(names) = hb.subscribed_topic_names {
            let mut names = names;
            names.sort_unstable();
            names.dedup();
            if names != member.subscribed_topic_names {
                member.subscribed_topic_names = names;
                subscription_changed = true;
            }
        }
        if let Some(re) = hb.subscribed_topic_regex {
            let re = (!re.is_empty()).then_some(re);
            if re != member.subscribed_topic_regex {
                member.subscribed_topic_regex = re;
                subscription_changed = true;
            }
        }
        if let Some(a) = hb.server_assignor {
            let a = (!a.is_empty()).then_some(a);
            if a != member.server_assignor {
                member.server_assignor = a;
                subscription_changed = true;
            }
        }
        if subscription_changed {
            // Topics that come and go later are noticed by `refresh_subscriptions` when
            // the catalog moves; resolving here only follows this member's change.
            self.resolve_subscriptions(catalog);
        }
        if member_added || subscription_changed {
            // One new epoch for the whole change, as Kafka moves it.
            self.group_epoch += 1;
            changed = true;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(catalog);
            changed = true;
        }
        let owned = hb.owned;
        self.reconcile(&hb.member_id, owned.as_ref(), now_ms);
        let member = self
            .members
            .get(&hb.member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        let assignment_changed = member.assigned != before.assigned;
        changed |= assignment_changed
            || member.pending_revocation != before.pending_revocation
            || member.member_epoch != before.member_epoch
            || member.state != before.state;
        Ok((
            HeartbeatAnswer {
                member_id: member.member_id.clone(),
                member_epoch: member.member_epoch,
                assignment: (assignment_changed || full).then(|| member.assigned.clone()),
            },
            changed,
        ))
    }

    /// Re-resolves what the members subscribe to against the catalog; bumps the group
    /// epoch when that changed (a topic created, deleted or grown). True when it did.
    pub fn refresh_subscriptions(&mut self, catalog: &dyn TopicCatalog) -> bool {
        let changed = self.resolve_subscriptions(catalog);
        if changed {
            self.group_epoch += 1;
        }
        changed
    }

    /// Resolves the members' subscriptions against the catalog into `subscribed`; true
    /// when that changed.
    fn resolve_subscriptions(&mut self, catalog: &dyn TopicCatalog) -> bool {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut regexes: BTreeSet<&str> = BTreeSet::new();
        for m in self.members.values() {
            names.extend(m.subscribed_topic_names.iter().cloned());
            if let Some(re) = m.subscribed_topic_regex.as_deref() {
                regexes.insert(re);
            }
        }
        if !regexes.is_empty() {
            let compiled: Vec<regex::Regex> = regexes
                .iter()
                .filter_map(|re| compile_regex(re).ok())
                .collect();
            for name in catalog.names() {
                if compiled.iter().any(|re| re.is_match(&name)) {
                    names.insert(name);
                }
            }
        }
        let resolved = resolve_topics(names, catalog);
        if resolved == self.subscribed {
            return false;
        }
        self.subscribed = resolved;
        true
    }

    /// The topics (by id) a member's subscription resolves to, among those it may see.
    fn member_topics(&self, m: &ConsumerMember, catalog: &dyn TopicCatalog) -> BTreeSet<Uuid> {
        let regex = m
            .subscribed_topic_regex
            .as_deref()
            .and_then(|re| compile_regex(re).ok());
        self.subscribed
            .iter()
            .filter(|(name, _)| {
                m.subscribed_topic_names.contains(name)
                    || regex.as_ref().is_some_and(|re| re.is_match(name))
            })
            .filter(|(name, _)| catalog.visible(&m.principal, &m.client_host, name))
            .map(|(_, (id, _))| *id)
            .collect()
    }

    /// The most requested assignor among members, else the default.
    fn chosen_assignor(&self) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| assignor::ASSIGNORS[0].to_string())
    }

    fn compute_target(&mut self, catalog: &dyn TopicCatalog) {
        let assignor = self.chosen_assignor();
        let partitions: BTreeMap<Uuid, i32> = self.subscribed.values().copied().collect();
        let empty = Assignment::new();
        let specs: Vec<assignor::MemberSpec<'_>> = self
            .members
            .values()
            .map(|m| assignor::MemberSpec {
                member_id: &m.member_id,
                topics: self.member_topics(m, catalog),
                current: self.target.get(&m.member_id).unwrap_or(&empty),
            })
            .collect();
        let target = assignor::assign(&assignor, &specs, &partitions);
        self.target = target;
        self.assignor = assignor;
        self.assignment_epoch = self.group_epoch;
    }

    fn remove(&mut self, member_id: &str, now_ms: i64) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.group_epoch += 1;
            if self.members.is_empty() {
                self.empty_since_ms = Some(now_ms);
            }
        }
    }

    /// Expires members whose session lapsed and members that did not revoke in time.
    /// Returns who went, so the caller persists and logs.
    pub fn tick(&mut self, config: &ConsumerGroupConfig, now_ms: i64) -> Vec<Removed> {
        let mut removed = Vec::new();
        for m in self.members.values() {
            if now_ms.saturating_sub(m.last_heard_ms) > config.session_timeout_ms {
                removed.push(Removed {
                    member_id: m.member_id.clone(),
                    reason: "session timeout expired",
                });
            } else if m.revoke_deadline_ms.is_some_and(|d| now_ms > d) {
                removed.push(Removed {
                    member_id: m.member_id.clone(),
                    reason: "did not revoke its partitions within the rebalance timeout",
                });
            }
        }
        for r in &removed {
            self.remove(&r.member_id, now_ms);
        }
        removed
    }

    /// Checks an offset commit (OffsetCommit v9+ and TxnOffsetCommit carry the member
    /// epoch in the generation field).
    pub fn check_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), ResponseError> {
        if member_epoch < 0 && member_id.is_empty() {
            // A commit from outside the group (an admin tool) is fine while nobody
            // consumes.
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        self.check_member_epoch(member_id, member_epoch)
    }

    /// The member exists and holds `member_epoch` (OffsetFetch v9+ names a member).
    pub fn check_member_epoch(
        &self,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        let m = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != m.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// DeleteGroups: only an empty group may go.
    pub fn mark_dead(&mut self) -> Result<(), ResponseError> {
        if self.dead {
            return Err(ResponseError::GroupIdNotFound);
        }
        if !self.members.is_empty() {
            return Err(ResponseError::NonEmptyGroup);
        }
        self.dead = true;
        Ok(())
    }

    /// Topic names by id, for answers that name topics.
    pub fn topic_names(&self) -> HashMap<Uuid, String> {
        names_by_id(&self.subscribed)
    }
}

/// Subscribed topic names resolved against the catalog: name -> (id, partition count).
/// Topics that do not exist are left out. Consumer and share groups both keep this.
pub fn resolve_topics(
    names: impl IntoIterator<Item = String>,
    catalog: &dyn TopicCatalog,
) -> BTreeMap<String, (Uuid, i32)> {
    names
        .into_iter()
        .filter_map(|n| catalog.by_name(&n).map(|t| (n, (t.id, t.partitions))))
        .collect()
}

/// Topic names by id of resolved subscriptions, for answers that name topics.
pub fn names_by_id(subscribed: &BTreeMap<String, (Uuid, i32)>) -> HashMap<Uuid, String> {
    subscribed
        .iter()
        .map(|(name, (id, _))| (*id, name.clone()))
        .collect()
}

/// Kafka matches the whole topic name against the pattern (Java's `matches`).
pub fn compile_regex(re: &str) -> Result<regex::Regex, ResponseError> {
    if re.len() > MAX_REGEX_LEN {
        return Err(ResponseError::InvalidRegularExpression);
    }
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|_| ResponseError::InvalidRegularExpression)
}

pub fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|bs| ps.is_subset(bs)))
}

pub fn partition_count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}
