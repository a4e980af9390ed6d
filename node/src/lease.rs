//! The broker's lease: how long it may trust that the controller still counts it live,
//! and so that the partitions it leads (and the groups it coordinates) are still its own.
//!
//! The controller fences a broker `broker.session.timeout.ms` after the last heartbeat it
//! received, and only then moves its leaderships elsewhere. A heartbeat sent at `t` and
//! answered "unfenced" therefore proves that nobody took over before `t + session`. A
//! broker that was frozen (SIGSTOP, `docker pause`, a VM stall) wakes up with an old
//! metadata image and would answer from it. With an expired lease it refuses answers that
//! depend on still owning something, until a heartbeat, answered once this broker has
//! applied the metadata the controller had then, renews the lease.
//!
//! Time is the monotonic clock, which keeps running while a process is frozen.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

/// The part of the session a lease lasts: margin for the controller's tick and for
/// clocks of two processes running at slightly different rates.
const LEASE_SHARE_NUM: i64 = 3;
const LEASE_SHARE_DEN: i64 = 4;

#[derive(Debug)]
pub struct Lease {
    origin: Instant,
    /// Monotonic milliseconds (since `origin`) until which the lease holds; 0 when none.
    valid_until_ms: AtomicI64,
    /// When a connection to a controller last broke: heartbeats sent before it cannot
    /// renew the lease (see [`cap_after_break`](Self::cap_after_break)).
    broken_at_ms: AtomicI64,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            origin: Instant::now(),
            valid_until_ms: AtomicI64::new(0),
            broken_at_ms: AtomicI64::new(i64::MIN),
        }
    }
}

impl Lease {
    /// Monotonic milliseconds, the clock `renew` takes its `sent_at_ms` in.
    pub fn now_ms(&self) -> i64 {
        self.origin.elapsed().as_millis() as i64
    }

    /// A heartbeat (or registration) sent at `sent_at_ms` was accepted, and this broker
    /// has applied what the controller knew when it answered. Renewals may arrive out of
    /// order; the lease only ever extends.
    pub fn renew(&self, sent_at_ms: i64, session_timeout_ms: i64) {
        if sent_at_ms < self.broken_at_ms.load(Ordering::Acquire) {
            return;
        }
        let until = sent_at_ms + lease_length_ms(session_timeout_ms);
        self.valid_until_ms.fetch_max(until, Ordering::AcqRel);
    }

    /// A connection to a controller broke at `now_ms`. That controller may be alive and
    /// fence this broker once `grace_ms` pass without it reattaching, before the session
    /// the lease counts on is over, so the lease ends at half the grace unless a heartbeat
    /// sent after the break renews it.
    pub fn cap_after_break(&self, now_ms: i64, grace_ms: i64) {
        self.broken_at_ms.fetch_max(now_ms, Ordering::AcqRel);
        self.valid_until_ms
            .fetch_min(now_ms + grace_ms / 2, Ordering::AcqRel);
    }

    /// Ends the lease at once (controlled shutdown, fencing).
    pub fn revoke(&self) {
        self.valid_until_ms.store(0, Ordering::Release);
    }

    /// Resolves once the lease has run out (at once if it has); renewals push it back.
    pub async fn expired(&self) {
        loop {
            let left = self.valid_until_ms.load(Ordering::Acquire) - self.now_ms();
            if left <= 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(left as u64)).await;
        }
    }

    pub fn is_valid(&self) -> bool {
        self.is_valid_at(self.now_ms())
    }

    fn is_valid_at(&self, now_ms: i64) -> bool {
        now_ms < self.valid_until_ms.load(Ordering::Acquire)
    }
}

/// How long after sending a heartbeat the lease it earns lasts.
pub fn lease_length_ms(session_timeout_ms: i64) -> i64 {
    session_timeout_ms.max(0) * LEASE_SHARE_NUM / LEASE_SHARE_DEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lasts_three_quarters_of_a_session_from_the_send_time() {
        let lease = Lease::default();
        assert!(!lease.is_valid_at(0), "no lease before the first heartbeat");
        lease.renew(1_000, 4_000);
        assert!(lease.is_valid_at(3_999));
        assert!(
            !lease.is_valid_at(4_000),
            "expires before the controller may fence"
        );
    }

    #[test]
    fn renewals_only_extend_and_revoke_ends_it() {
        let lease = Lease::default();
        lease.renew(2_000, 4_000);
        lease.renew(1_000, 4_000); // a late answer to an older heartbeat
        assert!(lease.is_valid_at(4_500));
        lease.revoke();
        assert!(!lease.is_valid_at(4_500));
    }

    #[test]
    fn a_broken_connection_caps_the_lease_until_a_later_heartbeat() {
        let lease = Lease::default();
        lease.renew(1_000, 8_000); // valid until 7_000
        lease.cap_after_break(2_000, 500);
        assert!(lease.is_valid_at(2_249));
        assert!(!lease.is_valid_at(2_250), "ends at half the grace");
        lease.renew(1_500, 8_000); // sent before the break: proves nothing
        assert!(!lease.is_valid_at(2_250));
        lease.renew(2_100, 8_000);
        assert!(
            lease.is_valid_at(8_000),
            "a heartbeat after the break renews"
        );
    }
}
