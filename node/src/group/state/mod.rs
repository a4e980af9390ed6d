//! The classic consumer-group protocol as a pure state machine: JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup and their timeouts. It never blocks and never does I/O: calls
//! return an immediate answer or park the caller, and every call may emit effects
//! (answers for parked callers, group records to persist) for the async layer to carry
//! out. Time is an argument, so tests drive it deterministically. Joining and the
//! rebalance it starts are in `join`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::error::ResponseError;

use super::subscription::subscribed_topics;

mod join;

pub type MemberId = String;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GroupPhase {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupPhase {
    pub fn name(self) -> &'static str {
        match self {
            GroupPhase::Empty => "Empty",
            GroupPhase::PreparingRebalance => "PreparingRebalance",
            GroupPhase::CompletingRebalance => "CompletingRebalance",
            GroupPhase::Stable => "Stable",
            GroupPhase::Dead => "Dead",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub member_id: MemberId,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
    pub assignment: Vec<u8>,
    #[serde(skip)]
    pub last_heard_ms: i64,
    /// Rejoined in the current rebalance.
    #[serde(skip)]
    pub joined: bool,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// What a JoinGroup caller hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: MemberId,
    /// Filled for the leader only: every member with its metadata.
    pub members: Vec<(MemberId, Option<String>, Vec<u8>)>,
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(error: ResponseError, member_id: &str) -> Self {
        JoinResult {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Vec<u8>,
}

impl SyncResult {
    pub fn error(error: ResponseError) -> Self {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Vec::new(),
        }
    }
}

/// Something the async layer must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Answer a parked JoinGroup of `member`.
    Join(MemberId, JoinResult),
    /// Answer a parked SyncGroup of `member`.
    Sync(MemberId, SyncResult),
    /// The group's durable state changed: persist this snapshot.
    Persist(Box<GroupSnapshot>),
    /// A member was dropped without leaving (for the log: why a rebalance started).
    Dropped(MemberId, &'static str),
}

/// A call's answer: now, or later through an effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer<T> {
    Now(T),
    /// Parked under this member id until an effect answers it.
    Parked(MemberId),
}

/// The durable part of a group, written to `__consumer_offsets` after each rebalance.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupSnapshot {
    pub group_id: String,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<MemberId>,
    pub members: Vec<Member>,
    /// When the group became empty, so offset expiry survives a coordinator move.
    #[serde(default)]
    pub empty_since_ms: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocol_type: String,
    pub protocols: Vec<(String, Vec<u8>)>,
    /// JoinGroup v4+: a member without an id is given one and asked to rejoin (KIP-394).
    pub require_known_member_id: bool,
}

/// One consumer group.
#[derive(Clone, Debug)]
pub struct Group {
    pub id: String,
    pub phase: GroupPhase,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<MemberId>,
    pub members: BTreeMap<MemberId, Member>,
    /// KIP-394: ids handed out and not yet used in a join, with when they were handed.
    pub pending: HashMap<MemberId, i64>,
    /// KIP-345: instance id -> its current member id.
    pub static_members: HashMap<String, MemberId>,
    /// When the current rebalance phase must end.
    rebalance_deadline_ms: i64,
    /// Members waiting for a JoinGroup answer, and for a SyncGroup answer.
    awaiting_join: Vec<MemberId>,
    awaiting_sync: Vec<MemberId>,
    /// When the group last became empty, for offset expiry.
    pub empty_since_ms: Option<i64>,
    /// While set, a new group's first join phase may not end before this time.
    initial_delay: Option<i64>,
}

/// Group-wide settings (Kafka's group.* broker configs).
#[derive(Clone, Copy, Debug)]
pub struct GroupConfig {
    pub min_session_timeout_ms: i64,
    pub max_session_timeout_ms: i64,
    pub initial_rebalance_delay_ms: i64,
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: usize::MAX,
        }
    }
}

impl Group {
    pub fn new(id: &str) -> Self {
        Group {
            id: id.to_string(),
            phase: GroupPhase::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            awaiting_join: Vec::new(),
            awaiting_sync: Vec::new(),
            empty_since_ms: None,
            initial_delay: None,
        }
    }

    /// Restores a group from its last persisted snapshot (coordinator failover). Members
    /// keep their assignments and get a fresh session from `now_ms`.
    pub fn restore(s: &GroupSnapshot, now_ms: i64) -> Self {
        let mut g = Group::new(&s.group_id);
        g.generation = s.generation;
        g.protocol_type = s.protocol_type.clone();
        g.protocol_name = s.protocol_name.clone();
        g.leader = s.leader.clone();
        for m in &s.members {
            let mut m = m.clone();
            m.last_heard_ms = now_ms;
            if let Some(i) = &m.instance_id {
                g.static_members.insert(i.clone(), m.member_id.clone());
            }
            g.members.insert(m.member_id.clone(), m);
        }
        g.phase = if g.members.is_empty() {
            GroupPhase::Empty
        } else {
            GroupPhase::Stable
        };
        if g.members.is_empty() {
            g.empty_since_ms = Some(s.empty_since_ms.unwrap_or(now_ms));
        }
        g
    }

    pub fn snapshot(&self) -> GroupSnapshot {
        GroupSnapshot {
            group_id: self.id.clone(),
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            members: self.members.values().cloned().collect(),
            empty_since_ms: self.empty_since_ms,
        }
    }

    /// Kafka's member id shape: the client (or static instance) id and a random suffix.
    fn new_member_id(prefix: &str) -> MemberId {
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Vec<u8>)]) -> bool {
        if self.members.is_empty() {
            return !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // Some protocol every member (and the newcomer) supports.
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            if let Some(i) = m.instance_id {
                if self.static_members.get(&i).map(String::as_str) == Some(id) {
                    self.static_members.remove(&i);
                }
            }
        }
        self.awaiting_join.retain(|m| m != id);
        self.awaiting_sync.retain(|m| m != id);
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(i) = instance_id {
            match self.static_members.get(i) {
                Some(m) if m != member_id => return Err(ResponseError::FencedInstanceId),
                None if !self.members.contains_key(member_id) => {
                    return Err(ResponseError::UnknownMemberId)
                }
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// SyncGroup: the leader brings the assignment; everyone gets their share.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(MemberId, Vec<u8>)>,
        now_ms: i64,
    ) -> (Answer<SyncResult>, Vec<Effect>) {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return (Answer::Now(SyncResult::error(e)), Vec::new());
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heard_ms = now_ms;
        }
        match self.phase {
            GroupPhase::PreparingRebalance => (
                Answer::Now(SyncResult::error(ResponseError::RebalanceInProgress)),
                Vec::new(),
            ),
            GroupPhase::Stable => (Answer::Now(self.sync_result_for(member_id)), Vec::new()),
            GroupPhase::CompletingRebalance => {
                if self.leader.as_deref() != Some(member_id) {
                    self.awaiting_sync.retain(|m| m != member_id);
                    self.awaiting_sync.push(member_id.to_string());
                    return (Answer::Parked(member_id.to_string()), Vec::new());
                }
                for m in self.members.values_mut() {
                    m.assignment = assignments
                        .iter()
                        .find(|(id, _)| *id == m.member_id)
                        .map(|(_, a)| a.clone())
                        .unwrap_or_default();
                }
                self.phase = GroupPhase::Stable;
                let mut effects = vec![Effect::Persist(Box::new(self.snapshot()))];
                for m in std::mem::take(&mut self.awaiting_sync) {
                    if self.members.contains_key(&m) {
                        let r = self.sync_result_for(&m);
                        effects.push(Effect::Sync(m, r));
                    }
                }
                (Answer::Now(self.sync_result_for(member_id)), effects)
            }
            GroupPhase::Empty | GroupPhase::Dead => (
                Answer::Now(SyncResult::error(ResponseError::UnknownMemberId)),
                Vec::new(),
            ),
        }
    }

    fn sync_result_for(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Heartbeat: keeps the session alive, and tells members to rejoin during a rebalance.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if self.phase == GroupPhase::Empty || self.phase == GroupPhase::Dead {
            return Err(ResponseError::UnknownMemberId);
        }
        if let Some(i) = instance_id {
            if self.static_members.get(i).is_some_and(|m| m != member_id) {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        m.last_heard_ms = now_ms;
        if self.phase == GroupPhase::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// LeaveGroup for one member (by member id, or by instance id for static members).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> (Result<(), ResponseError>, Vec<Effect>) {
        let id = match instance_id {
            Some(i) => match self.static_members.get(i) {
                Some(m) if member_id.is_empty() || m == member_id => m.clone(),
                Some(_) => return (Err(ResponseError::FencedInstanceId), Vec::new()),
                None => return (Err(ResponseError::UnknownMemberId), Vec::new()),
            },
            None => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            if self.pending.remove(&id).is_some() {
                return (Ok(()), Vec::new());
            }
            return (Err(ResponseError::UnknownMemberId), Vec::new());
        }
        self.remove_member(&id);
        (Ok(()), self.rebalance_after_departure(now_ms))
    }

    fn rebalance_after_departure(&mut self, now_ms: i64) -> Vec<Effect> {
        match self.phase {
            GroupPhase::PreparingRebalance => self.maybe_complete_join(now_ms),
            _ if self.members.is_empty() => {
                self.phase = GroupPhase::Empty;
                self.generation += 1;
                self.leader = None;
                self.protocol_name = None;
                self.empty_since_ms = Some(now_ms);
                vec![Effect::Persist(Box::new(self.snapshot()))]
            }
            _ => {
                self.prepare_rebalance(&GroupConfig::default(), now_ms, false);
                self.maybe_complete_join(now_ms)
            }
        }
    }

    /// Rebalances a stable `consumer` group when a topic one of its members subscribes
    /// to gained partitions, so the leader assigns them now: on their own, clients see
    /// new partitions only at their next metadata refresh (five minutes by default).
    pub fn topics_resized(&mut self, resized: &BTreeSet<String>, now_ms: i64) -> Vec<Effect> {
        if self.phase != GroupPhase::Stable || self.protocol_type.as_deref() != Some("consumer") {
            return Vec::new();
        }
        let Some(protocol) = self.protocol_name.clone() else {
            return Vec::new();
        };
        let affected = self.members.values().any(|m| {
            subscribed_topics(&m.metadata_for(&protocol))
                .is_some_and(|topics| topics.iter().any(|t| resized.contains(t)))
        });
        if !affected {
            return Vec::new();
        }
        self.prepare_rebalance(&GroupConfig::default(), now_ms, false);
        self.maybe_complete_join(now_ms)
    }

    /// Expires silent members and pending ids, and ends overdue rebalance phases.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.pending.retain(|_, at| now_ms - *at <= 300_000);
        let expired: Vec<MemberId> = self
            .members
            .values()
            .filter(|m| {
                // During the join phase the rebalance deadline governs, not the session.
                let waiting_join = self.phase == GroupPhase::PreparingRebalance && m.joined;
                !waiting_join && now_ms - m.last_heard_ms > m.session_timeout_ms
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in &expired {
            if self.awaiting_sync.contains(id) {
                effects.push(Effect::Sync(
                    id.clone(),
                    SyncResult::error(ResponseError::RebalanceInProgress),
                ));
            }
            self.remove_member(id);
            effects.push(Effect::Dropped(id.clone(), "session timeout expired"));
        }
        if !expired.is_empty() {
            effects.extend(self.rebalance_after_departure(now_ms));
        }
        match self.phase {
            GroupPhase::PreparingRebalance => effects.extend(self.maybe_complete_join(now_ms)),
            GroupPhase::CompletingRebalance if now_ms >= self.rebalance_deadline_ms => {
                // The leader never sent the assignment: drop members that have not synced
                // (the leader among them) and start over.
                let synced: Vec<MemberId> = self.awaiting_sync.clone();
                let gone: Vec<MemberId> = self
                    .members
                    .keys()
                    .filter(|m| !synced.contains(m))
                    .cloned()
                    .collect();
                for id in gone {
                    self.remove_member(&id);
                    effects.push(Effect::Dropped(
                        id,
                        "did not sync before the rebalance deadline",
                    ));
                }
                for m in std::mem::take(&mut self.awaiting_sync) {
                    effects.push(Effect::Sync(
                        m,
                        SyncResult::error(ResponseError::RebalanceInProgress),
                    ));
                }
                effects.extend(self.rebalance_after_departure(now_ms));
            }
            _ => {}
        }
        effects
    }

    /// Checks that an offset commit comes from a current member (or is a simple commit on
    /// a group without members).
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        if self.phase == GroupPhase::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        self.check_member(member_id, instance_id, generation)
    }

    pub fn is_awaiting_join(&self, member_id: &str) -> bool {
        self.awaiting_join.iter().any(|m| m == member_id)
    }

    pub fn is_awaiting_sync(&self, member_id: &str) -> bool {
        self.awaiting_sync.iter().any(|m| m == member_id)
    }

    /// DeleteGroups: only an empty group may go; it answers nothing afterwards.
    pub fn mark_dead(&mut self) -> Result<(), ResponseError> {
        match self.phase {
            GroupPhase::Empty => {
                self.phase = GroupPhase::Dead;
                Ok(())
            }
            GroupPhase::Dead => Err(ResponseError::GroupIdNotFound),
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    /// Members' current protocol metadata, for DescribeGroups.
    pub fn described_members(&self) -> Vec<(Member, Vec<u8>)> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| (m.clone(), m.metadata_for(&protocol)))
            .collect()
    }
}
