//! Partition reassignment (KIP-455), as pure functions over one partition's state.
//!
//! A reassignment widens the replica set to target ∪ original. The added replicas fetch
//! from the leader outside the ISR; once every target replica is in the ISR, the replica
//! set becomes the target, leadership leaves a removed leader, and the removed replicas
//! delete their copies. Everything lives in the partition's state in the metadata log, so
//! a controller or leader failover resumes a reassignment where it was: whichever leader
//! next expands the ISR completes it.

use std::collections::BTreeSet;

use tracing::info;

use super::command::MetadataError;
use super::image::PartitionState;
use crate::decisions::set_leader;

/// Starts (or replaces) a reassignment of `p` to `target`. Brokers must be registered
/// (`known`). A target equal to the original replica set cancels a running one.
pub fn start(
    p: &mut PartitionState,
    target: &[i32],
    known: impl Fn(i32) -> bool,
    live: impl Fn(i32) -> bool,
) -> Result<(), MetadataError> {
    if target.is_empty() {
        return Err(MetadataError::InvalidReplicaAssignment(
            "a partition needs at least one replica".into(),
        ));
    }
    let unique: BTreeSet<i32> = target.iter().copied().collect();
    if unique.len() != target.len() {
        return Err(MetadataError::InvalidReplicaAssignment(format!(
            "replica list {target:?} names a broker twice"
        )));
    }
    if let Some(b) = target.iter().find(|b| !known(**b)) {
        return Err(MetadataError::InvalidReplicaAssignment(format!(
            "broker {b} is not registered"
        )));
    }
    let original = p.original_replicas();
    if original == target {
        return cancel(p, live).map(|_| ());
    }
    // A replica added by an earlier reassignment that this one no longer wants leaves
    // the ISR with it.
    let dropped: Vec<i32> = p
        .adding
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let mut replicas = target.to_vec();
    replicas.extend(original.iter().copied().filter(|r| !target.contains(r)));
    p.adding = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    p.removing = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    p.replicas = replicas;
    p.isr.retain(|r| !dropped.contains(r));
    if dropped.contains(&p.leader) {
        let next = p.isr.iter().copied().find(|r| live(*r));
        set_leader(p, next);
    }
    p.partition_epoch += 1;
    try_complete(p, live);
    Ok(())
}

/// Cancels a running reassignment: the replica set returns to the original one. Refused
/// when no original replica is in sync any more (the data would have nowhere to be).
/// Returns whether one was running.
pub fn cancel(p: &mut PartitionState, live: impl Fn(i32) -> bool) -> Result<bool, MetadataError> {
    if !p.is_reassigning() {
        return Ok(false);
    }
    let original = p.original_replicas();
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| original.contains(r))
        .collect();
    if isr.is_empty() {
        return Err(MetadataError::InvalidReplicaAssignment(
            "no original replica is in sync; the reassignment cannot be cancelled".into(),
        ));
    }
    let leader_leaves = !original.contains(&p.leader);
    p.replicas = original;
    p.isr = isr;
    p.adding.clear();
    p.removing.clear();
    if leader_leaves {
        let next = p.isr.iter().copied().find(|r| live(*r));
        set_leader(p, next);
    }
    p.partition_epoch += 1;
    Ok(true)
}

/// Finishes the reassignment once every target replica is in the ISR and a target replica
/// can lead. Returns whether it finished.
pub fn try_complete(p: &mut PartitionState, live: impl Fn(i32) -> bool) -> bool {
    if !p.is_reassigning() {
        return false;
    }
    let target = p.target_replicas();
    if !target.iter().all(|r| p.isr.contains(r)) {
        return false;
    }
    let next_leader = if target.contains(&p.leader) {
        Some(p.leader)
    } else {
        match target.iter().copied().find(|r| live(*r)) {
            Some(l) => Some(l),
            None => return false,
        }
    };
    let removed = std::mem::take(&mut p.removing);
    p.adding.clear();
    p.isr.retain(|r| target.contains(r));
    p.replicas = target;
    if next_leader != Some(p.leader) {
        set_leader(p, next_leader);
    }
    p.partition_epoch += 1;
    info!(replicas = ?p.replicas, ?removed, leader = p.leader, "reassignment completed");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        let mut p = PartitionState::new(replicas.to_vec());
        p.isr = isr.to_vec();
        p.leader = leader;
        p
    }

    const ALL: fn(i32) -> bool = |_| true;

    #[test]
    fn adding_replicas_catch_up_before_the_set_changes() {
        let mut p = part(&[1, 2], &[1, 2], 1);
        start(&mut p, &[3, 4], ALL, ALL).expect("present");
        assert_eq!(p.replicas, vec![3, 4, 1, 2]);
        assert_eq!(p.adding, vec![3, 4]);
        assert_eq!(p.removing, vec![1, 2]);
        assert_eq!(p.isr, vec![1, 2], "new replicas are not in sync yet");
        assert_eq!(p.leader, 1);
        assert!(!try_complete(&mut p, ALL));
        p.isr = vec![1, 2, 3];
        assert!(!try_complete(&mut p, ALL), "4 is still catching up");
        p.isr = vec![1, 2, 3, 4];
        let epoch = p.leader_epoch;
        assert!(try_complete(&mut p, ALL));
        assert_eq!(p.replicas, vec![3, 4]);
        assert_eq!(p.isr, vec![3, 4]);
        assert_eq!(p.leader, 3, "the removed leader hands over");
        assert_eq!(p.leader_epoch, epoch + 1);
        assert!(!p.is_reassigning());
    }

    #[test]
    fn a_subset_target_completes_at_once_and_keeps_the_leader() {
        let mut p = part(&[1, 2, 3], &[1, 2, 3], 2);
        start(&mut p, &[2, 3], ALL, ALL).expect("present");
        assert_eq!(p.replicas, vec![2, 3]);
        assert_eq!(p.leader, 2);
        assert!(!p.is_reassigning());
    }

    #[test]
    fn cancel_returns_to_the_original_set() {
        let mut p = part(&[1, 2], &[1, 2], 1);
        start(&mut p, &[1, 3], ALL, ALL).expect("present");
        p.isr = vec![1, 2];
        assert!(cancel(&mut p, ALL).expect("present"));
        assert_eq!(p.replicas, vec![1, 2]);
        assert!(!p.is_reassigning());
        // Re-submitting the original set is a cancel too.
        start(&mut p, &[1, 3], ALL, ALL).expect("present");
        start(&mut p, &[1, 2], ALL, ALL).expect("present");
        assert_eq!(p.replicas, vec![1, 2]);
        assert!(!p.is_reassigning());
    }

    #[test]
    fn a_replacing_reassignment_keeps_the_original_replicas() {
        let mut p = part(&[1, 2], &[1, 2], 1);
        start(&mut p, &[1, 3], ALL, ALL).expect("present");
        p.isr = vec![1, 2, 3];
        // 3 was in sync, but the new target drops it.
        start(&mut p, &[1, 4], ALL, ALL).expect("present");
        assert_eq!(p.original_replicas(), vec![1, 2]);
        assert_eq!(p.adding, vec![4]);
        assert_eq!(p.isr, vec![1, 2]);
    }

    #[test]
    fn completion_waits_for_a_live_target_leader() {
        let mut p = part(&[1], &[1], 1);
        start(&mut p, &[2], ALL, ALL).expect("present");
        p.isr = vec![1, 2];
        assert!(!try_complete(&mut p, |b| b == 1), "2 is fenced");
        assert!(try_complete(&mut p, ALL));
        assert_eq!((p.replicas.clone(), p.leader), (vec![2], 2));
    }

    #[test]
    fn bad_targets_are_refused() {
        let mut p = part(&[1, 2], &[1, 2], 1);
        assert!(start(&mut p, &[], ALL, ALL).is_err());
        assert!(start(&mut p, &[3, 3], ALL, ALL).is_err());
        assert!(start(&mut p, &[1, 9], |b| b < 5, ALL).is_err());
        assert_eq!(p.replicas, vec![1, 2], "nothing changed");
    }
}
