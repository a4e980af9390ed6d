//! Which brokers hold an `Attach` stream open to this controller, and since when one
//! that had one has none.
//!
//! A broker keeps a stream open to every voter. When its process dies, the kernel closes
//! its sockets and every voter sees the stream end within milliseconds, long before a
//! session timeout. A frozen or cut-off broker closes nothing, so only a real crash (or a
//! reset connection the broker also sees, see `node/src/lease.rs`) shortens the path to
//! fencing. Every voter keeps this record, not only the active one, so a controller
//! elected because the previous one crashed already knows the crashed node's broker went
//! with it.
//!
//! Pure state: the gRPC server reports streams opening and closing, the fencing
//! decision (`decisions::brokers_disconnected`) reads it.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Attachments {
    by_broker: HashMap<i32, Attachment>,
}

#[derive(Debug, Clone, Copy)]
struct Attachment {
    /// The registration the streams belong to; streams of an older one are ignored.
    epoch: i64,
    open: u32,
    /// When the last open stream of `epoch` closed (ms on the controller's clock).
    broken_at_ms: Option<u64>,
}

impl Attachments {
    /// A stream of `broker_id` under registration `epoch` opened.
    pub fn opened(&mut self, broker_id: i32, epoch: i64) {
        let a = self.by_broker.entry(broker_id).or_insert(Attachment {
            epoch,
            open: 0,
            broken_at_ms: None,
        });
        if epoch > a.epoch {
            *a = Attachment {
                epoch,
                open: 0,
                broken_at_ms: None,
            };
        }
        if epoch == a.epoch {
            a.open += 1;
            a.broken_at_ms = None;
        }
    }

    /// A stream opened by [`opened`](Self::opened) closed at `now_ms`.
    pub fn closed(&mut self, broker_id: i32, epoch: i64, now_ms: u64) {
        let Some(a) = self.by_broker.get_mut(&broker_id) else {
            return;
        };
        if a.epoch != epoch || a.open == 0 {
            return;
        }
        a.open -= 1;
        if a.open == 0 {
            a.broken_at_ms = Some(now_ms);
        }
    }

    /// When registration `epoch` of `broker_id` lost its last stream to this controller,
    /// if it has none open now.
    pub fn broken_since(&self, broker_id: i32, epoch: i64) -> Option<u64> {
        self.by_broker
            .get(&broker_id)
            .filter(|a| a.epoch == epoch && a.open == 0)
            .and_then(|a| a.broken_at_ms)
    }

    /// Drops brokers no longer registered, so the record stays as small as the cluster.
    pub fn retain(&mut self, mut registered: impl FnMut(i32) -> bool) {
        self.by_broker.retain(|id, _| registered(*id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_stream_closing_marks_the_break() {
        let mut a = Attachments::default();
        a.opened(1, 5);
        a.opened(1, 5); // a reconnect overlapping the old stream
        a.closed(1, 5, 100);
        assert_eq!(a.broken_since(1, 5), None, "one stream is still open");
        a.closed(1, 5, 200);
        assert_eq!(a.broken_since(1, 5), Some(200));
        a.opened(1, 5);
        assert_eq!(a.broken_since(1, 5), None, "reattached");
    }

    #[test]
    fn streams_of_another_registration_do_not_count() {
        let mut a = Attachments::default();
        a.opened(1, 5);
        a.closed(1, 5, 100);
        assert_eq!(
            a.broken_since(1, 6),
            None,
            "a new registration has no break"
        );
        a.opened(1, 6);
        a.closed(1, 5, 300); // the old process's last stream, late
        assert_eq!(a.broken_since(1, 6), None);
        a.opened(1, 4); // a stale registration cannot reset the record
        a.closed(1, 6, 400);
        assert_eq!(a.broken_since(1, 6), Some(400));
    }

    #[test]
    fn unknown_brokers_and_extra_closes_are_ignored() {
        let mut a = Attachments::default();
        a.closed(9, 1, 10);
        assert_eq!(a.broken_since(9, 1), None);
        a.opened(2, 1);
        a.closed(2, 1, 10);
        a.closed(2, 1, 20);
        assert_eq!(a.broken_since(2, 1), Some(10));
        a.retain(|id| id != 2);
        assert_eq!(a.broken_since(2, 1), None);
    }
}
