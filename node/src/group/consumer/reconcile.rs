//! Moving one member toward its target assignment. A partition is never held by two
//! members at once: a member loses partitions first (and confirms by heartbeating without
//! them) before it reaches the new epoch, and gains a partition only once no other member
//! holds it or still has to give it up.

use std::collections::BTreeSet;

use super::{Assignment, ConsumerGroup, MemberState};

impl ConsumerGroup {
    /// Advances `member_id` as far as it can go now. `owned` is what the member reported
    /// owning in this heartbeat, if it did. The caller compares the member before and
    /// after to learn what changed.
    pub(super) fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now_ms: i64) {
        let Some(member) = self.members.get(member_id) else {
            return;
        };
        if member.member_epoch < 0 {
            return;
        }
        let can_move = match member.state {
            // Only once it reports no longer owning what it must give up.
            MemberState::UnrevokedPartitions => {
                owned.is_some_and(|o| !overlaps(o, &member.pending_revocation))
            }
            MemberState::Stable => member.member_epoch != self.assignment_epoch,
            MemberState::UnreleasedPartitions => true,
        };
        if can_move {
            self.next_assignment(member_id, now_ms);
        }
    }

    /// The next step from a member's current assignment toward the target.
    fn next_assignment(&mut self, member_id: &str, now_ms: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_by_others = self.held_by_others(member_id);
        let epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        m.pending_revocation.clear();
        let mut keep = Assignment::new();
        let mut revoke = Assignment::new();
        for (topic, ps) in &m.assigned {
            let wanted = target.get(topic);
            for &p in ps {
                let side = if wanted.is_some_and(|w| w.contains(&p)) {
                    &mut keep
                } else {
                    &mut revoke
                };
                side.entry(*topic).or_default().insert(p);
            }
        }
        if !revoke.is_empty() {
            m.assigned = keep;
            m.pending_revocation = revoke;
            m.state = MemberState::UnrevokedPartitions;
            m.revoke_deadline_ms = Some(now_ms.saturating_add(m.rebalance_timeout_ms));
            return;
        }
        let mut unreleased = false;
        for (topic, ps) in &target {
            for &p in ps {
                if keep.get(topic).is_some_and(|k| k.contains(&p)) {
                    continue;
                }
                if held_by_others.contains(&(*topic, p)) {
                    unreleased = true;
                } else {
                    keep.entry(*topic).or_default().insert(p);
                }
            }
        }
        m.assigned = keep;
        m.revoke_deadline_ms = None;
        if m.member_epoch != epoch {
            m.previous_member_epoch = m.member_epoch;
            m.member_epoch = epoch;
        }
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }

    /// Partitions other members hold or have yet to give up.
    fn held_by_others(&self, member_id: &str) -> BTreeSet<(uuid::Uuid, i32)> {
        let mut held = BTreeSet::new();
        for m in self.members.values().filter(|m| m.member_id != member_id) {
            for a in [&m.assigned, &m.pending_revocation] {
                for (t, ps) in a {
                    held.extend(ps.iter().map(|p| (*t, *p)));
                }
            }
        }
        held
    }
}

fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|bs| !ps.is_disjoint(bs)))
}
