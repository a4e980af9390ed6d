//! JoinGroup and the rebalance it drives: member ids, static members, the join phase
//! and the choice of protocol.

use kafka_protocol::error::ResponseError;

use super::{
    Answer, Effect, Group, GroupConfig, GroupPhase, JoinRequest, JoinResult, Member, MemberId,
    SyncResult,
};

impl Group {
    /// JoinGroup.
    pub fn join(
        &mut self,
        req: JoinRequest,
        config: &GroupConfig,
        now_ms: i64,
    ) -> (Answer<JoinResult>, Vec<Effect>) {
        let mut effects = Vec::new();
        if self.phase == GroupPhase::Dead {
            return (
                Answer::Now(JoinResult::error(
                    ResponseError::CoordinatorNotAvailable,
                    &req.member_id,
                )),
                effects,
            );
        }
        if req.session_timeout_ms < config.min_session_timeout_ms
            || req.session_timeout_ms > config.max_session_timeout_ms
        {
            return (
                Answer::Now(JoinResult::error(
                    ResponseError::InvalidSessionTimeout,
                    &req.member_id,
                )),
                effects,
            );
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return (
                Answer::Now(JoinResult::error(
                    ResponseError::InconsistentGroupProtocol,
                    &req.member_id,
                )),
                effects,
            );
        }
        let mut member_id = req.member_id.clone();
        if member_id.is_empty() {
            // Static members reuse their slot under a new id, fencing the old process.
            member_id = Self::new_member_id(req.instance_id.as_deref().unwrap_or(&req.client_id));
            if let Some(instance) = &req.instance_id {
                if let Some(old) = self.static_members.get(instance).cloned() {
                    return self.replace_static_member(&old, member_id, req, now_ms);
                }
            } else if req.require_known_member_id {
                self.pending.insert(member_id.clone(), now_ms);
                return (
                    Answer::Now(JoinResult::error(
                        ResponseError::MemberIdRequired,
                        &member_id,
                    )),
                    effects,
                );
            }
        } else if let Some(instance) = &req.instance_id {
            if self
                .static_members
                .get(instance)
                .is_some_and(|m| *m != member_id)
            {
                return (
                    Answer::Now(JoinResult::error(
                        ResponseError::FencedInstanceId,
                        &member_id,
                    )),
                    effects,
                );
            }
        } else if !self.members.contains_key(&member_id) && !self.pending.contains_key(&member_id) {
            return (
                Answer::Now(JoinResult::error(
                    ResponseError::UnknownMemberId,
                    &member_id,
                )),
                effects,
            );
        }
        self.pending.remove(&member_id);
        let is_new = !self.members.contains_key(&member_id);
        if is_new && self.members.len() >= config.max_size {
            return (
                Answer::Now(JoinResult::error(
                    ResponseError::GroupMaxSizeReached,
                    &member_id,
                )),
                effects,
            );
        }
        let changed = self
            .members
            .get(&member_id)
            .is_none_or(|m| m.protocols != req.protocols);
        let member = self
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                member_id: member_id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols.clone(),
                assignment: Vec::new(),
                last_heard_ms: now_ms,
                joined: false,
            });
        member.protocols = req.protocols.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_heard_ms = now_ms;
        member.joined = true;
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), member_id.clone());
        }
        if self.protocol_type.is_none() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        match self.phase {
            GroupPhase::Stable if !changed && self.leader.as_ref() != Some(&member_id) => {
                // A follower rejoining with nothing new: hand back the current generation
                // without disturbing everyone else.
                return (Answer::Now(self.join_result_for(&member_id)), effects);
            }
            GroupPhase::PreparingRebalance => {}
            _ => self.prepare_rebalance(config, now_ms, is_new),
        }
        // Starting a rebalance asks everyone to rejoin; this member just did.
        if let Some(m) = self.members.get_mut(&member_id) {
            m.joined = true;
        }
        self.awaiting_join.retain(|m| *m != member_id);
        self.awaiting_join.push(member_id.clone());
        effects.extend(self.maybe_complete_join(now_ms));
        let answered = effects
            .iter()
            .any(|e| matches!(e, Effect::Join(m, _) if *m == member_id));
        if answered {
            let pos = effects
                .iter()
                .position(|e| matches!(e, Effect::Join(m, _) if *m == member_id));
            if let Some(Effect::Join(_, r)) = pos.map(|p| effects.remove(p)) {
                return (Answer::Now(r), effects);
            }
        }
        (Answer::Parked(member_id), effects)
    }

    pub(super) fn replace_static_member(
        &mut self,
        old: &str,
        new_id: MemberId,
        req: JoinRequest,
        now_ms: i64,
    ) -> (Answer<JoinResult>, Vec<Effect>) {
        let mut effects = Vec::new();
        let Some(mut member) = self.members.remove(old) else {
            return (
                Answer::Now(JoinResult::error(ResponseError::UnknownMemberId, "")),
                effects,
            );
        };
        // The old process is fenced: any answer it still waits for says so.
        if self.awaiting_join.contains(&old.to_string()) {
            effects.push(Effect::Join(
                old.to_string(),
                JoinResult::error(ResponseError::FencedInstanceId, old),
            ));
            self.awaiting_join.retain(|m| m != old);
        }
        if self.awaiting_sync.contains(&old.to_string()) {
            effects.push(Effect::Sync(
                old.to_string(),
                SyncResult::error(ResponseError::FencedInstanceId),
            ));
            self.awaiting_sync.retain(|m| m != old);
        }
        let protocols_changed = member.protocols != req.protocols;
        member.member_id = new_id.clone();
        member.protocols = req.protocols.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_heard_ms = now_ms;
        member.joined = true;
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), new_id.clone());
        }
        if self.phase == GroupPhase::Stable && !protocols_changed {
            // KIP-345: a static member coming back within its session causes no rebalance.
            effects.push(Effect::Persist(Box::new(self.snapshot())));
            let mut result = self.join_result_for(&new_id);
            // KIP-814: a returning static leader learns the members (to watch their
            // metadata) but must not compute a new assignment.
            result.skip_assignment = self.leader.as_deref() == Some(new_id.as_str());
            return (Answer::Now(result), effects);
        }
        if self.phase != GroupPhase::PreparingRebalance {
            self.prepare_rebalance(&GroupConfig::default(), now_ms, false);
        }
        if let Some(m) = self.members.get_mut(&new_id) {
            m.joined = true;
        }
        self.awaiting_join.push(new_id.clone());
        effects.extend(self.maybe_complete_join(now_ms));
        if let Some(pos) = effects
            .iter()
            .position(|e| matches!(e, Effect::Join(m, _) if *m == new_id))
        {
            if let Effect::Join(_, r) = effects.remove(pos) {
                return (Answer::Now(r), effects);
            }
        }
        (Answer::Parked(new_id), effects)
    }

    pub(super) fn join_result_for(&self, member_id: &str) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.member_id.clone(),
                            m.instance_id.clone(),
                            m.metadata_for(&protocol),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    pub(super) fn prepare_rebalance(
        &mut self,
        config: &GroupConfig,
        now_ms: i64,
        new_member: bool,
    ) {
        let was_empty = self.phase == GroupPhase::Empty;
        self.phase = GroupPhase::PreparingRebalance;
        for m in self.members.values_mut() {
            m.joined = false;
        }
        // Members still waiting on a sync from the old generation must rejoin.
        self.awaiting_sync.clear();
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        // A new group waits a little for more members, so the first generation is not
        // immediately followed by another (group.initial.rebalance.delay.ms).
        let delay = if was_empty && new_member {
            config.initial_rebalance_delay_ms
        } else {
            0
        };
        self.rebalance_deadline_ms = now_ms + delay.max(if delay > 0 { 0 } else { timeout });
        self.initial_delay = if was_empty && new_member {
            Some(now_ms + delay)
        } else {
            None
        };
    }

    /// The join phase ends when every member has rejoined (after any initial delay), or
    /// at the rebalance deadline, dropping those that did not.
    pub(super) fn maybe_complete_join(&mut self, now_ms: i64) -> Vec<Effect> {
        if self.phase != GroupPhase::PreparingRebalance {
            return Vec::new();
        }
        if let Some(until) = self.initial_delay {
            if now_ms < until {
                return Vec::new();
            }
        }
        let all_in = self.members.values().all(|m| m.joined);
        if !all_in && now_ms < self.rebalance_deadline_ms {
            return Vec::new();
        }
        self.initial_delay = None;
        let dropped: Vec<MemberId> = self
            .members
            .values()
            .filter(|m| !m.joined)
            .map(|m| m.member_id.clone())
            .collect();
        let mut effects = Vec::with_capacity(dropped.len() + self.awaiting_join.len());
        for id in dropped {
            self.remove_member(&id);
            effects.push(Effect::Dropped(
                id,
                "did not rejoin before the rebalance deadline",
            ));
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.phase = GroupPhase::Empty;
            self.protocol_name = None;
            self.leader = None;
            self.empty_since_ms = Some(now_ms);
            effects.push(Effect::Persist(Box::new(self.snapshot())));
            return effects;
        }
        self.empty_since_ms = None;
        self.protocol_name = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.phase = GroupPhase::CompletingRebalance;
        self.rebalance_deadline_ms = now_ms
            + self
                .members
                .values()
                .map(|m| m.rebalance_timeout_ms)
                .max()
                .unwrap_or(0);
        let waiting = std::mem::take(&mut self.awaiting_join);
        for m in waiting {
            if self.members.contains_key(&m) {
                let r = self.join_result_for(&m);
                effects.push(Effect::Join(m, r));
            }
        }
        effects
    }

    /// Kafka's vote: each member votes for the first protocol in its list that everyone
    /// supports; the most voted wins, ties going to the earliest candidate.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&String> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: Vec<(&String, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some(choice) = m
                .protocols
                .iter()
                .map(|(n, _)| n)
                .find(|n| candidates.contains(n))
            {
                if let Some(v) = votes.iter_mut().find(|(c, _)| *c == choice) {
                    v.1 += 1;
                }
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes
            .into_iter()
            .find(|(_, n)| *n == best)
            .map(|(c, _)| c.clone())
    }
}
