use std::io;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};
use tracing::info;

use crate::metadata::{apply_command, ClusterMetadata, CommandOutcome};
use crate::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// What a snapshot holds: the image and where in the log it was taken.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    metadata: ClusterMetadata,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Applies metadata commands to the in-memory image and publishes every new image on a
/// watch channel, which is how the broker side reads metadata without locks or RPCs.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<SnapshotBody>>,
    published: watch::Sender<Arc<ClusterMetadata>>,
    db: sled::Tree,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl StateMachineStore {
    /// Restores the image from the last snapshot in sled; openraft then re-applies the
    /// committed entries after it.
    pub fn open(db: sled::Tree) -> io::Result<Self> {
        let body = match db.get(KEY_SNAPSHOT).map_err(io_err)? {
            Some(bytes) => {
                let stored: StoredSnapshot = serde_json::from_slice(&bytes).map_err(io_err)?;
                serde_json::from_slice(&stored.data).map_err(io_err)?
            }
            None => SnapshotBody::default(),
        };
        let (published, _) = watch::channel(Arc::new(body.metadata.clone()));
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(body)),
            published,
            db,
        })
    }

    /// The last entry the restored snapshot covers, if there is a snapshot.
    pub async fn snapshot_last(&self) -> Option<LogId> {
        self.inner.lock().await.last_applied
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.published.subscribe()
    }

    fn store_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(io_err)?;
        self.db.insert(KEY_SNAPSHOT, bytes).map_err(io_err)?;
        self.db.flush().map_err(io_err)?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let body = self.inner.lock().await.clone();
        let data = serde_json::to_vec(&body).map_err(io_err)?;
        let meta = SnapshotMeta {
            last_log_id: body.last_applied,
            last_membership: body.last_membership.clone(),
        };
        self.store_snapshot(&meta, &data)?;
        info!(last_applied = ?body.last_applied.as_ref().map(|l| l.index()), bytes = data.len(), "metadata snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let body = self.inner.lock().await;
        Ok((body.last_applied, body.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut body = self.inner.lock().await;
        // Answer only after publishing, so a caller that gets its response and then reads
        // `current()` on this node sees its own write.
        let mut answers = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let index = log_id.index();
            body.last_applied = Some(log_id);
            // Every entry moves the image's index, blank and membership entries too: a
            // new Raft leader's first entry is blank, its heartbeats answer with the
            // committed index, and a broker renews its lease only once its image reaches
            // that index. Counting commands alone left every lease waiting for the next
            // metadata write after each controller change.
            body.metadata.last_applied_index = index;
            let outcome = match &entry.payload {
                EntryPayload::Blank => CommandOutcome::Done,
                EntryPayload::Normal(cmd) => apply_command(&mut body.metadata, cmd, index),
                EntryPayload::Membership(m) => {
                    body.last_membership = StoredMembership::new(Some(log_id), m.clone());
                    CommandOutcome::Done
                }
            };
            if let Some(responder) = responder {
                answers.push((responder, outcome));
            }
        }
        self.published.send_replace(Arc::new(body.metadata.clone()));
        for (responder, outcome) in answers {
            responder.send(outcome);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let mut body: SnapshotBody = serde_json::from_slice(&snapshot).map_err(io_err)?;
        if let Some(last) = &meta.last_log_id {
            body.metadata.last_applied_index = body.metadata.last_applied_index.max(last.index());
        }
        self.store_snapshot(meta, &snapshot)?;
        let mut inner = self.inner.lock().await;
        *inner = body;
        self.published
            .send_replace(Arc::new(inner.metadata.clone()));
        info!(last_applied = ?meta.last_log_id.as_ref().map(|l| l.index()), "installed metadata snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        match self.db.get(KEY_SNAPSHOT).map_err(io_err)? {
            None => Ok(None),
            Some(bytes) => {
                let stored: StoredSnapshot = serde_json::from_slice(&bytes).map_err(io_err)?;
                Ok(Some(Snapshot {
                    meta: stored.meta,
                    snapshot: stored.data,
                }))
            }
        }
    }
}
