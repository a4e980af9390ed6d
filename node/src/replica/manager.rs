use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use fjord_controller::ClusterMetadata;
use fjord_storage::{LogManager, TopicPartition};
use tokio::sync::watch;
use tracing::{info, warn};

use super::partition::ReplicaSet;
use super::{Chores, Partition, ReplicaError};
use crate::config::ConfigView;
use crate::time::now_ms;

/// For each leader this broker follows: its rpc address and the partitions to fetch.
pub type FollowPlan = BTreeMap<i32, (String, BTreeSet<TopicPartition>)>;

/// The partitions this broker hosts, kept in line with the metadata image.
pub struct ReplicaManager {
    node_id: i32,
    logs: LogManager,
    static_props: BTreeMap<String, String>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Whether the logs were closed for good. Held for the whole of each metadata apply
    /// and by shutdown, so no log is opened while the others close or after.
    closed: Mutex<bool>,
    /// Index of the last metadata image reconciled into local state.
    applied: watch::Sender<u64>,
    /// The partitions that image places here, for the stray-log check.
    hosted: Mutex<HashSet<TopicPartition>>,
    /// Whether this process has removed stray logs: once, when its image has caught up.
    strays_checked: std::sync::atomic::AtomicBool,
}

impl ReplicaManager {
    pub fn open(
        node_id: i32,
        data_dir: &Path,
        static_props: BTreeMap<String, String>,
    ) -> Result<Self, ReplicaError> {
        Ok(ReplicaManager {
            node_id,
            logs: LogManager::open(data_dir)?,
            static_props,
            partitions: RwLock::new(HashMap::new()),
            closed: Mutex::new(false),
            applied: watch::channel(0).0,
            hosted: Mutex::new(HashSet::new()),
            strays_checked: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// How many partition logs the data directory holds (0 if it cannot be listed).
    pub fn stored_partition_count(&self) -> usize {
        self.logs.existing_partitions().map_or(0, |p| p.len())
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn view<'a>(&'a self, md: &'a ClusterMetadata) -> ConfigView<'a> {
        ConfigView {
            static_props: &self.static_props,
            cluster_dynamic: &md.cluster_configs,
            broker_dynamic: md.broker_configs.get(&self.node_id),
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.get(&TopicPartition::new(topic, partition)).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// Waits until metadata at `index` or later is reflected in local partitions.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Brings local partitions in line with `md`: opens logs of newly hosted partitions,
    /// applies leadership and config changes, and deletes partitions it opened that `md`
    /// no longer places here. Logs on disk that no image placed here yet are left alone:
    /// see [`ReplicaManager::remove_stray_logs_once`].
    /// Returns what this broker follows: for each leader, its rpc address and the
    /// partitions to fetch from it. After [`ReplicaManager::shutdown`] it does nothing.
    pub fn apply_metadata(&self, md: &ClusterMetadata) -> FollowPlan {
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if *closed {
            return FollowPlan::new();
        }
        let view = self.view(md);
        let mut wanted: HashSet<TopicPartition> = HashSet::new();
        let mut follow = FollowPlan::new();
        let mut changes = LeadershipChanges::default();

        for topic in md.topics.values() {
            let config = view.log_config(&topic.configs);
            let bound = |name: &str| {
                view.topic_value(name, &topic.configs)
                    .parse::<i64>()
                    .unwrap_or(i64::MAX)
            };
            let timestamp_bounds = (
                bound("message.timestamp.before.max.ms"),
                bound("message.timestamp.after.max.ms"),
            );
            for (idx, p) in topic.partitions.iter().enumerate() {
                if !p.replicas.contains(&self.node_id) {
                    continue;
                }
                let tp = TopicPartition::new(topic.name.clone(), idx as i32);
                wanted.insert(tp.clone());
                let partition = match self.get(&tp.topic, tp.partition) {
                    Some(existing) if existing.topic_id == topic.id => {
                        existing.update_config(config.clone(), timestamp_bounds);
                        existing
                    }
                    stale => {
                        if let Some(old) = stale {
                            old.delete();
                        }
                        match self.open_partition(&tp, topic.id, config.clone()) {
                            Ok(p) => {
                                p.update_config(config.clone(), timestamp_bounds);
                                p
                            }
                            Err(e) => {
                                warn!(partition = %tp, error = %e, "cannot open partition log");
                                continue;
                            }
                        }
                    }
                };
                let result = if p.leader == self.node_id {
                    let set = ReplicaSet {
                        replicas: &p.replicas,
                        isr: &p.isr,
                        partition_epoch: p.partition_epoch,
                    };
                    partition
                        .become_leader(self.node_id, p.leader_epoch, set, now_ms())
                        .map(|took| {
                            if took {
                                changes.led.push(format!("{tp} (epoch {})", p.leader_epoch));
                            }
                        })
                } else {
                    if partition.become_follower(p.leader, p.leader_epoch) {
                        changes
                            .left
                            .push(format!("{tp} (to {}, epoch {})", p.leader, p.leader_epoch));
                    }
                    if let Some(leader) = md.brokers.get(&p.leader).filter(|b| !b.fenced) {
                        let entry = follow
                            .entry(leader.id)
                            .or_insert_with(|| (leader.rpc_address.clone(), BTreeSet::new()));
                        entry.1.insert(tp.clone());
                    }
                    Ok(())
                };
                if let Err(e) = result {
                    warn!(partition = %tp, error = %e, "leadership change failed");
                }
            }
        }
        changes.log();
        // Partitions no longer hosted here: the topic was deleted or moved away.
        let doomed: Vec<Arc<Partition>> = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<TopicPartition> = map
                .keys()
                .filter(|tp| !wanted.contains(tp))
                .cloned()
                .collect();
            gone.iter().filter_map(|tp| map.remove(tp)).collect()
        };
        for p in doomed {
            info!(partition = %p.tp, "deleting partition no longer hosted here");
            p.delete();
        }
        *self.hosted.lock().unwrap_or_else(PoisonError::into_inner) = wanted;
        self.applied.send_replace(md.last_applied_index);
        follow
    }

    fn open_partition(
        &self,
        tp: &TopicPartition,
        topic_id: uuid::Uuid,
        config: fjord_storage::LogConfig,
    ) -> Result<Arc<Partition>, ReplicaError> {
        let id = topic_id.to_string();
        let dir = self.logs.partition_dir(tp);
        let stored = fjord_storage::PartitionLog::stored_topic_id(&dir)?;
        if stored.is_some_and(|existing| existing != id) {
            // Left over from an earlier topic of the same name.
            info!(partition = %tp, "replacing a stale log of a deleted topic with the same name");
            self.logs.remove_partition_dir(tp)?;
        }
        let log = self.logs.open_log(tp, config, Some(id))?;
        let partition = Arc::new(Partition::new(tp.clone(), topic_id, log));
        self.partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tp.clone(), Arc::clone(&partition));
        Ok(partition)
    }

    /// Removes the logs on disk that the image does not place here (their topic was
    /// deleted, or they moved away, while this node was down), once per process. Call it
    /// only when the image has caught up with the active controller: a node whose image
    /// is behind (a restart, a metadata log rebuilt from the leader) would otherwise
    /// take every log of a topic it has not heard of yet for a stray.
    pub fn remove_stray_logs_once(&self) {
        use std::sync::atomic::Ordering;
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if *closed || self.strays_checked.swap(true, Ordering::AcqRel) {
            return;
        }
        let wanted = self
            .hosted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.remove_stray_logs(&wanted);
    }

    fn remove_stray_logs(&self, wanted: &HashSet<TopicPartition>) {
        match self.logs.existing_partitions() {
            Ok(on_disk) => {
                for tp in on_disk.into_iter().filter(|tp| !wanted.contains(tp)) {
                    info!(partition = %tp, "removing a stray log of a topic that no longer exists");
                    if let Err(e) = self.logs.remove_partition_dir(&tp) {
                        warn!(partition = %tp, error = %e, "cannot remove stray log");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list partition directories"),
        }
    }

    pub fn housekeeping(&self, chores: &Chores) {
        for p in self.all() {
            p.housekeeping(chores);
        }
    }

    /// Flushes and closes every log; called on clean shutdown. Metadata applied later
    /// (leaders keep moving while the node stops) opens no log again.
    pub fn shutdown(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        *closed = true;
        let all: Vec<Arc<Partition>> = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, p)| p).collect()
        };
        for p in all {
            p.close();
        }
    }
}

/// The leaderships one metadata image moved onto or off this node. A few are logged one
/// line each; more (a restart, a controlled shutdown, an internal topic created) make one
/// INFO summary, with each partition at DEBUG: operators asked for a restart to read as
/// one event, not a line per partition.
#[derive(Default)]
struct LeadershipChanges {
    led: Vec<String>,
    left: Vec<String>,
}

/// Up to this many changes are logged one line each.
const LEADERSHIP_LINES: usize = 4;

impl LeadershipChanges {
    fn log(&self) {
        let total = self.led.len() + self.left.len();
        if total == 0 {
            return;
        }
        if total <= LEADERSHIP_LINES {
            for p in &self.led {
                info!(partition = %p, "became leader");
            }
            for p in &self.left {
                info!(partition = %p, "became follower");
            }
            return;
        }
        info!(
            now_leading = self.led.len(),
            now_following = self.left.len(),
            leading = %summary(&self.led),
            following = %summary(&self.left),
            "leadership changed for {total} partitions"
        );
    }
}

/// The first few items and how many more.
fn summary(items: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_controller::metadata::{PartitionState, TopicState};

    #[test]
    fn a_summary_names_the_first_partitions_and_counts_the_rest() {
        let items: Vec<String> = (0..5).map(|i| format!("t-{i}")).collect();
        assert_eq!(summary(&items[..2]), "t-0, t-1");
        assert_eq!(summary(&items), "t-0, t-1, t-2 and 2 more");
        assert_eq!(summary(&[]), "");
    }

    fn md(index: u64) -> ClusterMetadata {
        let mut md = ClusterMetadata {
            last_applied_index: index,
            ..ClusterMetadata::default()
        };
        md.topics.insert(
            "t".to_string(),
            TopicState {
                name: "t".to_string(),
                id: uuid::Uuid::from_u128(7),
                configs: Default::default(),
                partitions: vec![PartitionState::new(vec![1]); 3],
                internal: false,
            },
        );
        md
    }

    fn marked_clean(data_dir: &Path) -> Vec<bool> {
        (0..3)
            .map(|p| {
                data_dir
                    .join("logs")
                    .join(format!("t-{p}"))
                    .join(".clean-shutdown")
                    .exists()
            })
            .collect()
    }

    /// Metadata keeps arriving while a node stops (its own controlled shutdown moves
    /// leaders). Once the logs are closed, applying it must not open them again: a log
    /// opened during the close removes the close's files, and one opened after it takes
    /// away the clean-shutdown marker and is never closed.
    #[test]
    fn metadata_applied_after_shutdown_opens_no_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let replicas = ReplicaManager::open(1, dir.path(), BTreeMap::new()).expect("open");
        replicas.apply_metadata(&md(1));
        assert_eq!(replicas.all().len(), 3);
        replicas.shutdown();
        assert_eq!(marked_clean(dir.path()), vec![true; 3]);

        let plan = replicas.apply_metadata(&md(2));
        assert!(plan.is_empty());
        assert!(replicas.all().is_empty(), "a closed manager reopened logs");
        assert_eq!(
            marked_clean(dir.path()),
            vec![true; 3],
            "the clean-shutdown markers must survive later metadata"
        );
    }
}
