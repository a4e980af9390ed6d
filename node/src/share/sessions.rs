//! Share sessions (KIP-932): what a member fetches from this broker, so a ShareFetch
//! need only name what changed. A session belongs to one (group, member) and counts
//! its requests with an epoch: 0 opens a session (replacing any the member had), a
//! positive epoch must be the one the session expects next, and -1 closes it after
//! the acknowledgements that come with it. Pure: the caller releases the records of a
//! closed session at the share-partitions.

use std::collections::{BTreeSet, HashMap};

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

/// A topic-partition by topic id, as share requests name it.
pub type SharedPartition = (Uuid, i32);

/// ShareFetch's and ShareAcknowledge's `ShareSessionEpoch` for opening a session.
pub const INITIAL_EPOCH: i32 = 0;
/// ... and for closing it.
pub const FINAL_EPOCH: i32 = -1;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    partitions: BTreeSet<SharedPartition>,
    last_used_ms: i64,
}

/// What a request did to its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionOutcome {
    /// The session is open; these are its partitions after the request.
    Open(Vec<SharedPartition>),
    /// The session ended (epoch -1); these were its partitions, whose records the
    /// member held go back.
    Closed(Vec<SharedPartition>),
}

/// The share sessions of this broker, bounded by `group.share.max.share.sessions`.
#[derive(Debug)]
pub struct ShareSessions {
    sessions: HashMap<(String, String), Session>,
    max_sessions: usize,
}

impl ShareSessions {
    pub fn new(max_sessions: usize) -> Self {
        ShareSessions {
            sessions: HashMap::new(),
            max_sessions,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A ShareFetch: opens, continues or closes the member's session. `added` are the
    /// partitions the request names (they join the session), `forgotten` those it
    /// leaves. Errors are Kafka's top-level ones: SHARE_SESSION_NOT_FOUND,
    /// INVALID_SHARE_SESSION_EPOCH, SHARE_SESSION_LIMIT_REACHED, INVALID_REQUEST.
    pub fn fetch(
        &mut self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        added: &[SharedPartition],
        forgotten: &[SharedPartition],
        now_ms: i64,
    ) -> Result<SessionOutcome, ResponseError> {
        let key = (group_id.to_string(), member_id.to_string());
        match epoch {
            // A new session has nothing to forget: what a request says to forget is
            // moot, not an error.
            INITIAL_EPOCH => {
                if !self.sessions.contains_key(&key) && self.sessions.len() >= self.max_sessions {
                    return Err(ResponseError::ShareSessionLimitReached);
                }
                let session = Session {
                    next_epoch: 1,
                    partitions: added.iter().copied().collect(),
                    last_used_ms: now_ms,
                };
                let partitions = session.partitions.iter().copied().collect();
                self.sessions.insert(key, session);
                Ok(SessionOutcome::Open(partitions))
            }
            // The last request of a session fetches nothing; the partitions it names
            // carry its last acknowledgements (librdkafka's close sends them so).
            FINAL_EPOCH => self.close(key),
            e if e > 0 => {
                let session = self.advance(&key, e, now_ms)?;
                for p in forgotten {
                    session.partitions.remove(p);
                }
                session.partitions.extend(added.iter().copied());
                Ok(SessionOutcome::Open(
                    session.partitions.iter().copied().collect(),
                ))
            }
            _ => Err(ResponseError::InvalidShareSessionEpoch),
        }
    }

    /// A ShareAcknowledge: needs an open session, which it moves on (or closes with
    /// epoch -1). Acknowledging opens nothing, so epoch 0 is refused.
    pub fn acknowledge(
        &mut self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        now_ms: i64,
    ) -> Result<SessionOutcome, ResponseError> {
        let key = (group_id.to_string(), member_id.to_string());
        match epoch {
            FINAL_EPOCH => self.close(key),
            e if e > 0 => {
                let session = self.advance(&key, e, now_ms)?;
                Ok(SessionOutcome::Open(
                    session.partitions.iter().copied().collect(),
                ))
            }
            _ => Err(ResponseError::InvalidShareSessionEpoch),
        }
    }

    /// The session a request at `epoch` continues, moved on to the epoch after it.
    fn advance(
        &mut self,
        key: &(String, String),
        epoch: i32,
        now_ms: i64,
    ) -> Result<&mut Session, ResponseError> {
        let session = self
            .sessions
            .get_mut(key)
            .ok_or(ResponseError::ShareSessionNotFound)?;
        if session.next_epoch != epoch {
            return Err(ResponseError::InvalidShareSessionEpoch);
        }
        session.next_epoch = next(epoch);
        session.last_used_ms = now_ms;
        Ok(session)
    }

    fn close(&mut self, key: (String, String)) -> Result<SessionOutcome, ResponseError> {
        let session = self
            .sessions
            .remove(&key)
            .ok_or(ResponseError::ShareSessionNotFound)?;
        Ok(SessionOutcome::Closed(
            session.partitions.into_iter().collect(),
        ))
    }

    /// Ends sessions unused for `idle_ms` (their members are gone without saying so).
    /// Returns each with its partitions, whose records the member held go back.
    pub fn evict_idle(
        &mut self,
        idle_ms: i64,
        now_ms: i64,
    ) -> Vec<((String, String), Vec<SharedPartition>)> {
        let idle: Vec<(String, String)> = self
            .sessions
            .iter()
            .filter(|(_, s)| now_ms.saturating_sub(s.last_used_ms) > idle_ms)
            .map(|(k, _)| k.clone())
            .collect();
        idle.into_iter()
            .filter_map(|k| {
                let s = self.sessions.remove(&k)?;
                Some((k, s.partitions.into_iter().collect()))
            })
            .collect()
    }
}

/// Epochs count up from 1 and wrap back to 1, never to 0 or -1, which mean open/close.
fn next(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(n: u8, p: i32) -> SharedPartition {
        (Uuid::from_bytes([n; 16]), p)
    }

    #[test]
    fn a_session_opens_moves_on_and_closes() {
        let mut s = ShareSessions::new(10);
        let opened = s.fetch("g", "m", 0, &[tp(1, 0), tp(1, 1)], &[], 0);
        assert_eq!(opened, Ok(SessionOutcome::Open(vec![tp(1, 0), tp(1, 1)])));
        // Incremental: adds one, forgets one.
        let moved = s.fetch("g", "m", 1, &[tp(2, 0)], &[tp(1, 0)], 1);
        assert_eq!(moved, Ok(SessionOutcome::Open(vec![tp(1, 1), tp(2, 0)])));
        assert_eq!(
            s.acknowledge("g", "m", 2, 2),
            Ok(SessionOutcome::Open(vec![tp(1, 1), tp(2, 0)]))
        );
        assert_eq!(
            s.fetch("g", "m", -1, &[], &[], 3),
            Ok(SessionOutcome::Closed(vec![tp(1, 1), tp(2, 0)]))
        );
        assert!(s.is_empty());
    }

    #[test]
    fn epochs_must_follow_in_order() {
        let mut s = ShareSessions::new(10);
        s.fetch("g", "m", 0, &[tp(1, 0)], &[], 0)
            .expect("the session request succeeds");
        // A replayed or skipped epoch is refused, and the session still expects 1.
        assert_eq!(
            s.fetch("g", "m", 2, &[], &[], 0),
            Err(ResponseError::InvalidShareSessionEpoch)
        );
        assert!(s.fetch("g", "m", 1, &[], &[], 0).is_ok());
        assert_eq!(
            s.fetch("g", "m", 1, &[], &[], 0),
            Err(ResponseError::InvalidShareSessionEpoch)
        );
        assert_eq!(
            s.acknowledge("g", "m", -5, 0),
            Err(ResponseError::InvalidShareSessionEpoch)
        );
    }

    #[test]
    fn unknown_sessions_and_bad_shapes_are_refused() {
        let mut s = ShareSessions::new(1);
        assert_eq!(
            s.fetch("g", "m", 3, &[], &[], 0),
            Err(ResponseError::ShareSessionNotFound)
        );
        assert_eq!(
            s.acknowledge("g", "m", -1, 0),
            Err(ResponseError::ShareSessionNotFound)
        );
        assert_eq!(
            s.acknowledge("g", "m", 0, 0),
            Err(ResponseError::InvalidShareSessionEpoch)
        );
        s.fetch("g", "m", 0, &[tp(1, 0)], &[], 0)
            .expect("the session request succeeds");
        // The last request may name the partitions it acknowledges; it closes the
        // session, which the member opens again with epoch 0.
        assert_eq!(
            s.fetch("g", "m", -1, &[tp(1, 0)], &[], 0),
            Ok(SessionOutcome::Closed(vec![tp(1, 0)]))
        );
        s.fetch("g", "m", 0, &[tp(1, 0)], &[], 0)
            .expect("the session request succeeds");
        // The cache is full for a new member, but the member there may start over.
        assert_eq!(
            s.fetch("g", "other", 0, &[tp(1, 0)], &[], 0),
            Err(ResponseError::ShareSessionLimitReached)
        );
        assert!(s.fetch("g", "m", 0, &[tp(1, 2)], &[], 0).is_ok());
    }

    #[test]
    fn idle_sessions_are_evicted_with_their_partitions() {
        let mut s = ShareSessions::new(10);
        s.fetch("g", "old", 0, &[tp(1, 0)], &[], 0)
            .expect("the session request succeeds");
        s.fetch("g", "new", 0, &[tp(1, 1)], &[], 50)
            .expect("the session request succeeds");
        let gone = s.evict_idle(60, 100);
        assert_eq!(
            gone,
            vec![(("g".to_string(), "old".to_string()), vec![tp(1, 0)])]
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next(i32::MAX), 1);
        assert_eq!(next(1), 2);
    }
}
