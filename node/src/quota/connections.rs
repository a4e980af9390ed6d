//! Kafka's connection limits, decided before a connection costs more than its socket:
//! `max.connections` (KIP-402: the listener stops accepting while the node is full),
//! `max.connections.per.ip` and its overrides (a connection over them is closed at
//! once), `max.connection.creation.rate` (KIP-612: the listener accepts no faster) and
//! the per-IP `connection_creation_rate` quota (KIP-612: a connection over it is held
//! for the throttle time, then closed, so the client backs off).
//!
//! Pure bookkeeping: the accept loop asks and acts, and a [`Slot`] gives its connection
//! back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::SampledRate;

/// The limits in force, read from the broker's configs for each decision (they are
/// dynamic in Kafka, and so here).
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Connections the node serves at once, over all listeners.
    pub max_connections: usize,
    pub per_ip: usize,
    pub per_ip_overrides: HashMap<IpAddr, usize>,
    /// New connections per second on one listener.
    pub listener_rate: Option<f64>,
    /// The `connection_creation_rate` quota of the IP at hand.
    pub ip_rate: Option<f64>,
}

impl Limits {
    fn per_ip(&self, ip: &IpAddr) -> usize {
        self.per_ip_overrides
            .get(ip)
            .copied()
            .unwrap_or(self.per_ip)
    }
}

/// Parses `max.connections.per.ip.overrides`: `host:count,...`. Kafka also takes host
/// names; Fjord takes addresses, and reports what it could not parse.
pub fn parse_overrides(raw: &str) -> Result<HashMap<IpAddr, usize>, String> {
    let mut out = HashMap::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, count) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("'{item}' is not host:count"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("'{host}' is not an IP address"))?;
        let count: usize = count
            .parse()
            .map_err(|_| format!("'{count}' is not a connection count"))?;
        out.insert(ip, count);
    }
    Ok(out)
}

/// Whether the accept loop may take the next connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptGate {
    Open,
    /// `max.connections` are open: wait for one to close.
    Full,
    /// Over the listener's creation rate: accept again after this many ms.
    Throttle(u64),
}

/// What becomes of an accepted connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Serve,
    /// Over `max.connections.per.ip` (or its override): close at once.
    TooMany {
        limit: usize,
    },
    /// Over the IP's `connection_creation_rate`: close after this many ms.
    Throttled {
        ms: u64,
    },
}

impl Verdict {
    /// The label refusals are counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Serve => "none",
            Verdict::TooMany { .. } => "max.connections.per.ip",
            Verdict::Throttled { .. } => "connection_creation_rate",
        }
    }
}

/// Sensors idle this many decisions apart are swept.
const SWEEP_EVERY: u64 = 1024;

#[derive(Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    ip_rates: HashMap<IpAddr, SampledRate>,
    listener_rates: HashMap<String, SampledRate>,
    since_sweep: u64,
}

/// Open connections and creation rates of one node.
pub struct ConnectionTracker {
    window_ms: u64,
    samples: usize,
    state: Mutex<State>,
    freed: Notify,
}

impl ConnectionTracker {
    /// `quota.window.size.seconds` (as ms) and `quota.window.num`, as client quotas.
    pub fn new(window_ms: u64, samples: usize) -> Arc<Self> {
        Arc::new(ConnectionTracker {
            window_ms: window_ms.max(1),
            samples: samples.max(2),
            state: Mutex::new(State::default()),
            freed: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn open(&self) -> usize {
        self.state().total
    }

    pub fn open_from(&self, ip: &IpAddr) -> usize {
        self.state().per_ip.get(ip).copied().unwrap_or(0)
    }

    /// Whether `listener` may accept now. A refusal of the rate is not recorded: the
    /// listener simply waits it out.
    pub fn accept_gate(&self, listener: &str, limits: &Limits, now_ms: u64) -> AcceptGate {
        let mut s = self.state();
        if s.total >= limits.max_connections {
            return AcceptGate::Full;
        }
        if let Some(bound) = limits.listener_rate {
            let (window_ms, samples) = (self.window_ms, self.samples);
            let rate = s
                .listener_rates
                .entry(listener.to_string())
                .or_insert_with(|| SampledRate::new(window_ms, samples));
            let ms = rate.throttle_ms(bound, now_ms);
            if ms > 0 {
                return AcceptGate::Throttle(ms);
            }
        }
        AcceptGate::Open
    }

    /// Waits until a connection closes (for a full node's accept loop).
    pub async fn freed(&self) {
        self.freed.notified().await;
    }

    /// Counts an accepted connection from `ip` and says what to do with it. The slot
    /// is held either way (a throttled connection is open until it is closed).
    pub fn admit(
        self: &Arc<Self>,
        listener: &str,
        ip: IpAddr,
        limits: &Limits,
        now_ms: u64,
    ) -> (Slot, Verdict) {
        let mut s = self.state();
        self.sweep(&mut s, now_ms);
        let (window_ms, samples) = (self.window_ms, self.samples);
        if limits.listener_rate.is_some() {
            s.listener_rates
                .entry(listener.to_string())
                .or_insert_with(|| SampledRate::new(window_ms, samples))
                .record(1.0, now_ms);
        }
        s.total += 1;
        let open = {
            let n = s.per_ip.entry(ip).or_insert(0);
            *n += 1;
            *n
        };
        let slot = Slot {
            tracker: Arc::clone(self),
            ip,
        };
        let limit = limits.per_ip(&ip);
        if open > limit {
            return (slot, Verdict::TooMany { limit });
        }
        if let Some(bound) = limits.ip_rate {
            let rate = s
                .ip_rates
                .entry(ip)
                .or_insert_with(|| SampledRate::new(window_ms, samples));
            rate.record(1.0, now_ms);
            let ms = rate.throttle_ms(bound, now_ms);
            if ms > 0 {
                // As Kafka does, a refused connection does not count towards the rate,
                // so a client that backs off gets in again.
                rate.record(-1.0, now_ms);
                return (slot, Verdict::Throttled { ms });
            }
        }
        (slot, Verdict::Serve)
    }

    fn sweep(&self, s: &mut State, now_ms: u64) {
        s.since_sweep += 1;
        if s.since_sweep < SWEEP_EVERY {
            return;
        }
        s.since_sweep = 0;
        s.ip_rates.retain(|_, r| !r.is_idle(now_ms));
    }

    fn release(&self, ip: &IpAddr) {
        let mut s = self.state();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_ip.get_mut(ip) {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(ip);
            }
        }
        drop(s);
        self.freed.notify_waiters();
    }
}

/// One open connection's place in the counts, given back on drop.
pub struct Slot {
    tracker: Arc<ConnectionTracker>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.tracker.release(&self.ip);
    }
}

/// The soft limit on open files from `/proc/self/limits` (`None` where it cannot be
/// read). Connections must leave room for the logs' files.
pub fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    soft.parse().ok()
}

/// The most connections the node takes with `open_files` descriptors: a quarter of them
/// (at least 256) stay for segments, indexes and the peers' links.
pub fn connection_ceiling(open_files: usize) -> usize {
    open_files.saturating_sub((open_files / 4).max(256)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn limits() -> Limits {
        Limits {
            max_connections: 10,
            per_ip: 3,
            ..Limits::default()
        }
    }

    #[test]
    fn per_ip_limits_and_overrides_refuse_only_that_address() {
        let t = ConnectionTracker::new(1000, 11);
        let mut l = limits();
        l.per_ip_overrides = parse_overrides("10.0.0.9:5, [::1]:1").expect("parses");
        let a = ip("10.0.0.1");
        let held: Vec<_> = (0..3).map(|_| t.admit("L", a, &l, 0)).collect();
        assert!(held.iter().all(|(_, v)| *v == Verdict::Serve));
        let (extra, v) = t.admit("L", a, &l, 0);
        assert_eq!(v, Verdict::TooMany { limit: 3 });
        drop(extra);
        assert_eq!(
            t.open_from(&a),
            3,
            "a refused connection gives its slot back"
        );
        assert_eq!(t.admit("L", ip("10.0.0.2"), &l, 0).1, Verdict::Serve);
        let nine: Vec<_> = (0..5)
            .map(|_| t.admit("L", ip("10.0.0.9"), &l, 0))
            .collect();
        assert!(nine.iter().all(|(_, v)| *v == Verdict::Serve), "override");
        let (_one, v) = t.admit("L", ip("::1"), &l, 0);
        assert_eq!(v, Verdict::Serve);
        assert_eq!(
            t.admit("L", ip("::1"), &l, 0).1,
            Verdict::TooMany { limit: 1 }
        );
        drop(held);
        assert_eq!(t.open_from(&a), 0);
    }

    #[test]
    fn a_full_node_stops_accepting_until_a_connection_closes() {
        let t = ConnectionTracker::new(1000, 11);
        let mut l = limits();
        l.per_ip = 100;
        let held: Vec<_> = (0..10)
            .map(|_| t.admit("L", ip("10.0.0.1"), &l, 0))
            .collect();
        assert_eq!(t.accept_gate("L", &l, 0), AcceptGate::Full);
        drop(held);
        assert_eq!(t.accept_gate("L", &l, 0), AcceptGate::Open);
        assert_eq!(t.open(), 0);
    }

    #[test]
    fn creation_rates_throttle_the_listener_and_the_address() {
        let t = ConnectionTracker::new(1000, 11);
        let mut l = limits();
        l.per_ip = 1000;
        l.max_connections = 1000;
        l.ip_rate = Some(5.0);
        let a = ip("10.0.0.1");
        // Eleven windows of a second: 5 per second is 50 in the first ten.
        let mut verdicts = Vec::new();
        let mut slots = Vec::new();
        for i in 0..80 {
            let (s, v) = t.admit("L", a, &l, i * 10);
            slots.push(s);
            verdicts.push(v);
        }
        let served = verdicts.iter().filter(|v| **v == Verdict::Serve).count();
        assert!((45..=55).contains(&served), "{served} served");
        assert!(matches!(verdicts.last(), Some(Verdict::Throttled { ms }) if *ms > 0));
        assert_eq!(t.admit("L", ip("10.0.0.2"), &l, 800).1, Verdict::Serve);
        // Later, the address is welcome again.
        assert_eq!(t.admit("L", a, &l, 60_000).1, Verdict::Serve);

        let mut l = limits();
        l.per_ip = 1000;
        l.max_connections = 1000;
        l.listener_rate = Some(2.0);
        let t = ConnectionTracker::new(1000, 11);
        let mut accepted = 0;
        while t.accept_gate("L", &l, 0) == AcceptGate::Open {
            slots.push(t.admit("L", a, &l, 0).0);
            accepted += 1;
        }
        assert!(accepted <= 25, "{accepted} accepted at once");
        assert!(matches!(t.accept_gate("L", &l, 0), AcceptGate::Throttle(ms) if ms > 0));
        assert_eq!(
            t.accept_gate("other", &l, 0),
            AcceptGate::Open,
            "per listener"
        );
    }

    #[test]
    fn overrides_are_checked_and_the_ceiling_leaves_room_for_files() {
        assert!(parse_overrides("").expect("empty").is_empty());
        assert!(parse_overrides("nohost").is_err());
        assert!(parse_overrides("example.com:5").is_err());
        assert!(parse_overrides("10.0.0.1:x").is_err());
        assert_eq!(connection_ceiling(1024), 768);
        assert_eq!(connection_ceiling(20_000), 15_000);
        assert_eq!(connection_ceiling(100), 1);
    }
}
