//! Client quotas (KIP-13 byte rates, KIP-124 request time, KIP-599 controller
//! mutations), enforced by each broker on its own traffic as Kafka does. A client over
//! its quota gets its answer at once with `throttle_time_ms` set, and its connection is
//! not read again until that time has passed (KIP-219), so clients that ignore the field
//! are held back too.
//!
//! Sensors exist only for clients a quota applies to, and one idle for the whole
//! measured span (when its rate has fallen to zero anyway) is dropped, so a stream of new
//! client ids costs memory only while they are active.

pub mod connections;
mod rate;
mod resolve;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fjord_controller::metadata::quotas::ClientQuota;
use kafka_protocol::messages::ApiKey;

use crate::broker::Broker;

pub use rate::{SampledRate, TokenBucket};
pub use resolve::{resolve, Applied};

/// What a quota limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Bytes of Produce requests per second (`producer_byte_rate`).
    Produce,
    /// Bytes of Fetch answers per second (`consumer_byte_rate`).
    Fetch,
    /// Milliseconds of request handling per second (`request_percentage`, in percent of
    /// one thread).
    Request,
}

impl QuotaKind {
    fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => "producer_byte_rate",
            QuotaKind::Fetch => "consumer_byte_rate",
            QuotaKind::Request => "request_percentage",
        }
    }

    /// The bound in the sensor's units (request time is ms per second).
    fn bound(self, configured: f64) -> f64 {
        match self {
            QuotaKind::Request => configured * 10.0,
            _ => configured,
        }
    }
}

const MUTATION_KEY: &str = "controller_mutation_rate";

/// Records between sweeps for idle sensors.
const SWEEP_EVERY: u64 = 1024;

type SensorKey = (String, String);

/// Who a quota is measured for: the user (principal name) and the client id.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    pub user: &'a str,
    pub client_id: &'a str,
}

/// Whether a recorded value is kept when it throttles the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Always,
    /// A Fetch answer over quota goes out empty, so its bytes do not count.
    UnlessThrottled,
}

#[derive(Default)]
struct Sensors {
    rates: HashMap<(QuotaKind, SensorKey), SampledRate>,
    buckets: HashMap<SensorKey, TokenBucket>,
    since_sweep: u64,
}

pub struct QuotaManager {
    window_ms: u64,
    samples: usize,
    sensors: Mutex<Sensors>,
}

impl QuotaManager {
    /// `quota.window.size.seconds` (as ms) and `quota.window.num`.
    pub fn new(window_ms: u64, samples: usize) -> Self {
        QuotaManager {
            window_ms: window_ms.max(1),
            samples: samples.max(2),
            sensors: Mutex::new(Sensors::default()),
        }
    }

    fn burst_secs(&self) -> f64 {
        (self.window_ms * self.samples as u64) as f64 / 1000.0
    }

    fn sweep(&self, s: &mut Sensors, now_ms: u64) {
        s.since_sweep += 1;
        if s.since_sweep < SWEEP_EVERY {
            return;
        }
        s.since_sweep = 0;
        s.rates.retain(|_, r| !r.is_idle(now_ms));
        // A full bucket holds nothing a new one would not.
        let burst = self.burst_secs();
        s.buckets.retain(|_, b| !b.is_full(burst, now_ms));
    }

    /// Records `value` against the quota of `kind` that applies to (`user`,
    /// `client_id`), and returns how long the client must now be throttled (0 when no
    /// quota applies or it is within it).
    pub fn record(
        &self,
        quotas: &BTreeMap<String, ClientQuota>,
        client: Client<'_>,
        kind: QuotaKind,
        value: f64,
        now_ms: u64,
        mode: Record,
    ) -> u64 {
        let Some(applied) = resolve(quotas, kind.key(), client.user, client.client_id) else {
            return 0;
        };
        let bound = kind.bound(applied.bound);
        let mut s = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        self.sweep(&mut s, now_ms);
        let rate = s
            .rates
            .entry((kind, (applied.user_tag, applied.client_tag)))
            .or_insert_with(|| SampledRate::new(self.window_ms, self.samples));
        rate.record(value, now_ms);
        let throttle = rate.throttle_ms(bound, now_ms);
        if throttle > 0 && mode == Record::UnlessThrottled {
            rate.record(-value, now_ms);
        }
        throttle
    }

    /// Takes `partitions` from the client's controller mutation quota (KIP-599), or says
    /// how long it must wait before the next request is admitted.
    pub fn mutation(
        &self,
        quotas: &BTreeMap<String, ClientQuota>,
        client: Client<'_>,
        partitions: u64,
        now_ms: u64,
    ) -> Result<(), u64> {
        let Some(applied) = resolve(quotas, MUTATION_KEY, client.user, client.client_id) else {
            return Ok(());
        };
        let burst = self.burst_secs();
        let mut s = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        self.sweep(&mut s, now_ms);
        s.buckets
            .entry((applied.user_tag, applied.client_tag))
            .or_insert_with(|| TokenBucket::new(applied.bound, burst, now_ms))
            .take(partitions as f64, applied.bound, burst, now_ms)
    }

    /// Sensors held (for tests and the metrics gauge).
    pub fn sensor_count(&self) -> usize {
        let s = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        s.rates.len() + s.buckets.len()
    }
}

/// Milliseconds on a monotonic clock, for the quota windows.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The throttle a request earns by its Produce bytes and its handling time.
pub fn request_throttle(
    broker: &Broker,
    api: ApiKey,
    client: Client<'_>,
    frame_len: f64,
    handled: Duration,
) -> u64 {
    let md = broker.metadata();
    if md.client_quotas.is_empty() {
        return 0;
    }
    let now = now_ms();
    let quotas = &md.client_quotas;
    let mut throttle = 0;
    if api == ApiKey::Produce {
        throttle = broker.quotas.record(
            quotas,
            client,
            QuotaKind::Produce,
            frame_len,
            now,
            Record::Always,
        );
    }
    // As in Kafka, ApiVersions is exempt: a throttled client must still be able to
    // start a connection.
    if api != ApiKey::ApiVersions {
        let ms = handled.as_secs_f64() * 1000.0;
        throttle = throttle.max(broker.quotas.record(
            quotas,
            client,
            QuotaKind::Request,
            ms,
            now,
            Record::Always,
        ));
    }
    throttle
}

/// The throttle of a Fetch answer of `bytes`; when it is over quota the bytes are not
/// counted, because the answer goes out empty.
pub fn fetch_throttle(broker: &Broker, client: Client<'_>, bytes: u64) -> u64 {
    let md = broker.metadata();
    if md.client_quotas.is_empty() || bytes == 0 {
        return 0;
    }
    broker.quotas.record(
        &md.client_quotas,
        client,
        QuotaKind::Fetch,
        bytes as f64,
        now_ms(),
        Record::UnlessThrottled,
    )
}

/// Takes `partitions` from the client's controller mutation quota, or the throttle.
pub fn mutation_throttle(broker: &Broker, client: Client<'_>, partitions: u64) -> Result<(), u64> {
    let md = broker.metadata();
    if md.client_quotas.is_empty() {
        return Ok(());
    }
    broker
        .quotas
        .mutation(&md.client_quotas, client, partitions, now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_controller::metadata::quotas::{
        apply, EntityName, QuotaChange, QuotaEntity, QuotaValue,
    };

    fn client<'a>(user: &'a str, client_id: &'a str) -> Client<'a> {
        Client { user, client_id }
    }

    fn quotas(key: &str, value: f64) -> BTreeMap<String, ClientQuota> {
        let mut q = BTreeMap::new();
        apply(
            &mut q,
            &QuotaChange {
                entity: QuotaEntity {
                    user: None,
                    client_id: Some(EntityName::Default),
                    ip: None,
                },
                ops: vec![(key.into(), Some(QuotaValue(value)))],
            },
        );
        q
    }

    #[test]
    fn clients_without_a_quota_are_not_tracked() {
        let m = QuotaManager::new(1000, 11);
        let none = BTreeMap::new();
        assert_eq!(
            m.record(
                &none,
                client("u", "c"),
                QuotaKind::Produce,
                1e9,
                0,
                Record::Always
            ),
            0
        );
        assert_eq!(m.sensor_count(), 0);
    }

    #[test]
    fn a_client_over_its_byte_rate_is_throttled_and_a_throttled_fetch_is_not_counted() {
        let m = QuotaManager::new(1000, 11);
        let q = quotas("producer_byte_rate", 1000.0);
        assert_eq!(
            m.record(
                &q,
                client("u", "c"),
                QuotaKind::Produce,
                5_000.0,
                0,
                Record::Always
            ),
            0
        );
        assert_eq!(
            m.record(
                &q,
                client("u", "c"),
                QuotaKind::Produce,
                10_000.0,
                0,
                Record::Always
            ),
            5_000
        );
        assert_eq!(
            m.record(
                &q,
                client("u", "other"),
                QuotaKind::Produce,
                10_000.0,
                0,
                Record::Always
            ),
            0
        );
        let q = quotas("consumer_byte_rate", 1000.0);
        assert!(
            m.record(
                &q,
                client("u", "c"),
                QuotaKind::Fetch,
                20_000.0,
                0,
                Record::UnlessThrottled
            ) > 0
        );
        assert_eq!(
            m.record(
                &q,
                client("u", "c"),
                QuotaKind::Fetch,
                5_000.0,
                0,
                Record::UnlessThrottled
            ),
            0,
            "the throttled answer's bytes were given back"
        );
    }

    #[test]
    fn request_percentage_is_a_share_of_one_thread() {
        let m = QuotaManager::new(1000, 11);
        let q = quotas("request_percentage", 10.0); // 100 ms of handling per second
        assert_eq!(
            m.record(
                &q,
                client("u", "c"),
                QuotaKind::Request,
                900.0,
                0,
                Record::Always
            ),
            0
        );
        assert!(
            m.record(
                &q,
                client("u", "c"),
                QuotaKind::Request,
                900.0,
                0,
                Record::Always
            ) > 0
        );
    }

    #[test]
    fn mutations_are_admitted_while_the_bucket_holds_tokens() {
        let m = QuotaManager::new(1000, 11);
        let q = quotas("controller_mutation_rate", 1.0); // 11 tokens
        assert_eq!(m.mutation(&q, client("u", "c"), 20, 0), Ok(()));
        assert_eq!(m.mutation(&q, client("u", "c"), 1, 0), Err(9_000));
        assert_eq!(m.mutation(&q, client("u", "c"), 1, 9_500), Ok(()));
    }

    #[test]
    fn idle_sensors_are_dropped() {
        let m = QuotaManager::new(1000, 11);
        let q = quotas("producer_byte_rate", 1000.0);
        for i in 0..SWEEP_EVERY - 1 {
            m.record(
                &q,
                client("u", &format!("c{i}")),
                QuotaKind::Produce,
                1.0,
                0,
                Record::Always,
            );
        }
        assert_eq!(m.sensor_count(), SWEEP_EVERY as usize - 1);
        m.record(
            &q,
            client("u", "late"),
            QuotaKind::Produce,
            1.0,
            60_000,
            Record::Always,
        );
        assert_eq!(m.sensor_count(), 1, "only the active one is left");
    }
}
