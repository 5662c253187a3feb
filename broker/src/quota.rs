//! Client quotas as Kafka's `ClientQuotaManager` enforces them: byte rates for produce and
//! fetch, and the share of request-handling time (`request_percentage`), per user and
//! client id, configured in ZooKeeper (`/config/users/...`, `/config/clients/...`) and
//! resolved with Kafka's eight levels of precedence. A client over its quota gets the
//! response at once with `throttle_time_ms` set, and its connection is muted for that long
//! (KIP-219), so well-behaved clients slow down without errors.
//!
//! Rates are measured over `quota.window.num` samples of `quota.window.size.seconds`, as in
//! Kafka; a window shorter than the full span counts as the full span, which lets a fresh
//! client burst up to one window of quota before it is throttled.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tributary_common::znode::ConfigEntity;

/// The user of a connection without authentication, as Kafka names it.
#[cfg(test)]
pub(crate) const ANONYMOUS: &str = "ANONYMOUS";

/// Kafka's quota keys.
pub(crate) const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Bytes per second a consumer may fetch.
pub(crate) const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Percentage of one request-handling thread.
pub(crate) const REQUEST_PERCENTAGE: &str = "request_percentage";
/// Kafka's other user/client key (CreateTopics, CreatePartitions, DeleteTopics rate);
/// stored, not enforced.
pub(crate) const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";

/// The keys a user / client-id entity may carry, and whether each is a whole number.
pub(crate) const QUOTA_KEYS: &[(&str, bool)] = &[
    (PRODUCER_BYTE_RATE, true),
    (CONSUMER_BYTE_RATE, true),
    (REQUEST_PERCENTAGE, false),
    (CONTROLLER_MUTATION_RATE, false),
];

/// What is measured against a quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Produce request bytes.
    Produce,
    /// Fetch response bytes (consumers; followers are not client-quota'd).
    Fetch,
    /// Request handling time, in percent of one thread.
    Request,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Produce => PRODUCER_BYTE_RATE,
            Kind::Fetch => CONSUMER_BYTE_RATE,
            Kind::Request => REQUEST_PERCENTAGE,
        }
    }
}

/// Kafka's order of precedence for a (user, client id) pair: the first entity with the
/// key sets the quota.
pub(crate) fn precedence(user: &str, client_id: &str) -> [ConfigEntity; 8] {
    let (u, c) = (Some(user.to_string()), Some(client_id.to_string()));
    [
        ConfigEntity::UserClient(u.clone(), c.clone()),
        ConfigEntity::UserClient(u.clone(), None),
        ConfigEntity::User(u),
        ConfigEntity::UserClient(None, c.clone()),
        ConfigEntity::UserClient(None, None),
        ConfigEntity::User(None),
        ConfigEntity::Client(c),
        ConfigEntity::Client(None),
    ]
}

/// The quota on `key` for (user, client id), with the entity it comes from.
pub(crate) fn resolve(
    configs: &BTreeMap<ConfigEntity, BTreeMap<String, String>>,
    user: &str,
    client_id: &str,
    key: &str,
) -> Option<(f64, ConfigEntity)> {
    precedence(user, client_id).into_iter().find_map(|entity| {
        let value = configs.get(&entity)?.get(key)?.trim().parse::<f64>().ok()?;
        Some((value, entity))
    })
}

/// A rate over a sliding window of samples (Kafka's `Rate` with `SampledStat`).
#[derive(Debug)]
struct Rate {
    /// (sample start ms, total in it), oldest first.
    samples: VecDeque<(i64, f64)>,
    last_used_ms: i64,
}

impl Rate {
    fn new() -> Rate {
        Rate { samples: VecDeque::new(), last_used_ms: 0 }
    }

    fn record(&mut self, value: f64, now_ms: i64, window: &Window) {
        match self.samples.back_mut() {
            Some((start, total)) if now_ms - *start < window.sample_ms => *total += value,
            _ => self.samples.push_back((now_ms, value)),
        }
        while self.samples.len() > window.samples {
            self.samples.pop_front();
        }
        while self.samples.front().is_some_and(|(start, _)| now_ms - start >= window.span_ms()) {
            self.samples.pop_front();
        }
        self.last_used_ms = now_ms;
    }

    /// Per second, over the window, with the window's length in ms: at least
    /// `samples - 1` sample lengths, as Kafka measures it.
    fn measure(&self, now_ms: i64, window: &Window) -> (f64, i64) {
        let total: f64 = self.samples.iter().map(|(_, v)| v).sum();
        let elapsed = self.samples.front().map_or(0, |(start, _)| now_ms - start);
        let span = elapsed.max((window.samples as i64 - 1) * window.sample_ms).max(1);
        (total * 1000.0 / span as f64, span)
    }

    fn per_second(&self, now_ms: i64, window: &Window) -> f64 {
        self.measure(now_ms, window).0
    }
}

/// `quota.window.num` samples of `quota.window.size.seconds`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Window {
    /// Number of samples.
    pub samples: usize,
    /// One sample's length.
    pub sample_ms: i64,
}

impl Window {
    fn span_ms(&self) -> i64 {
        self.samples as i64 * self.sample_ms
    }
}

/// Kafka's throttle time for a rate `observed` over a window of `span_ms` against its
/// quota: how long the client must wait for the rate over the window to come back to the
/// quota ((observed - quota) / quota × window), at most one full window.
pub(crate) fn throttle_ms(observed: f64, quota: f64, span_ms: i64, window: &Window) -> i64 {
    if quota <= 0.0 || observed <= quota {
        return 0;
    }
    (((observed - quota) / quota) * span_ms as f64).round().clamp(0.0, window.span_ms() as f64) as i64
}

/// The quotas in force and each client's rates. One per broker.
pub(crate) struct QuotaManager {
    window: Window,
    /// Whether any quota is configured: without one, requests skip the bookkeeping.
    any: AtomicBool,
    /// From the latest metadata snapshot: user and client-id entities with their quota keys.
    configs: RwLock<Arc<BTreeMap<ConfigEntity, BTreeMap<String, String>>>>,
    rates: Mutex<HashMap<(String, String, Kind), Rate>>,
}

impl QuotaManager {
    pub(crate) fn new(window: Window) -> QuotaManager {
        QuotaManager {
            window,
            any: AtomicBool::new(false),
            configs: RwLock::new(Arc::default()),
            rates: Mutex::new(HashMap::new()),
        }
    }

    /// Takes up the user and client-id configs of a metadata snapshot.
    pub(crate) fn set_configs(&self, all: &BTreeMap<ConfigEntity, BTreeMap<String, String>>) {
        let quotas: BTreeMap<ConfigEntity, BTreeMap<String, String>> = all
            .iter()
            .filter(|(e, _)| !matches!(e, ConfigEntity::Topic(_) | ConfigEntity::Broker(_)))
            // Users' SCRAM credentials live in the same znodes; only quota keys count here.
            .map(|(e, c)| {
                let quotas: BTreeMap<String, String> =
                    c.iter().filter(|(k, _)| QUOTA_KEYS.iter().any(|(q, _)| q == k)).map(|(k, v)| (k.clone(), v.clone())).collect();
                (e.clone(), quotas)
            })
            .filter(|(_, c)| !c.is_empty())
            .collect();
        let mut current = self.configs.write().expect("quota configs lock");
        if **current != quotas {
            tracing::info!(entities = quotas.len(), "client quotas changed");
            self.any.store(!quotas.is_empty(), Ordering::Release);
            *current = Arc::new(quotas);
        }
    }

    /// Records `amount` of `kind` for (user, client id) at `now_ms`; returns how long the
    /// client is to be throttled (0 when within its quota or without one).
    pub(crate) fn record(&self, user: &str, client_id: &str, kind: Kind, amount: f64, now_ms: i64) -> i64 {
        if !self.any() {
            return 0;
        }
        let configs = self.configs.read().expect("quota configs lock").clone();
        if configs.is_empty() {
            return 0;
        }
        let Some((quota, _)) = resolve(&configs, user, client_id, kind.key()) else { return 0 };
        let mut rates = self.rates.lock().expect("quota rates lock");
        let rate = rates.entry((user.to_string(), client_id.to_string(), kind)).or_insert_with(Rate::new);
        rate.record(amount, now_ms, &self.window);
        let (observed, span) = rate.measure(now_ms, &self.window);
        throttle_ms(observed, quota, span, &self.window)
    }

    /// Whether any client quota is configured.
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Forgets the rates of clients idle for an hour (Kafka expires its sensors likewise).
    pub(crate) fn expire(&self, now_ms: i64) {
        self.rates.lock().expect("quota rates lock").retain(|_, r| now_ms - r.last_used_ms < 3_600_000);
    }
}

/// A replication throttle (Kafka's `ReplicationQuotaManager`): one byte rate shared by the
/// throttled replicas on one side (leader or follower) of this broker.
pub(crate) struct ReplicationQuota {
    /// Bytes per second; `i64::MAX` means no limit.
    limit: std::sync::atomic::AtomicI64,
    rate: Mutex<(Rate, Window)>,
}

impl ReplicationQuota {
    pub(crate) fn new(window: Window, limit: i64) -> ReplicationQuota {
        ReplicationQuota { limit: std::sync::atomic::AtomicI64::new(limit), rate: Mutex::new((Rate::new(), window)) }
    }

    /// A new limit (a dynamic config change) and measuring window.
    pub(crate) fn configure(&self, limit: i64, window: Window) {
        self.limit.store(limit, Ordering::Relaxed);
        self.rate.lock().expect("replication quota lock").1 = window;
    }

    /// Whether the throttled replicas have used their share for now.
    pub(crate) fn exceeded(&self, now_ms: i64) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit == i64::MAX {
            return false;
        }
        let state = self.rate.lock().expect("replication quota lock");
        state.0.per_second(now_ms, &state.1) > limit as f64
    }

    /// Counts bytes replicated for throttled replicas.
    pub(crate) fn record(&self, bytes: usize, now_ms: i64) {
        if self.limit.load(Ordering::Relaxed) < i64::MAX {
            let mut state = self.rate.lock().expect("replication quota lock");
            let window = state.1;
            state.0.record(bytes as f64, now_ms, &window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(ConfigEntity, &str)]) -> BTreeMap<ConfigEntity, BTreeMap<String, String>> {
        pairs
            .iter()
            .map(|(e, v)| (e.clone(), BTreeMap::from([(PRODUCER_BYTE_RATE.to_string(), v.to_string())])))
            .collect()
    }

    #[test]
    fn the_most_specific_entity_sets_the_quota() {
        let (u, c) = (Some("alice".to_string()), Some("app".to_string()));
        let all = [
            (ConfigEntity::UserClient(u.clone(), c.clone()), "1"),
            (ConfigEntity::UserClient(u.clone(), None), "2"),
            (ConfigEntity::User(u.clone()), "3"),
            (ConfigEntity::UserClient(None, c.clone()), "4"),
            (ConfigEntity::UserClient(None, None), "5"),
            (ConfigEntity::User(None), "6"),
            (ConfigEntity::Client(c.clone()), "7"),
            (ConfigEntity::Client(None), "8"),
        ];
        // Removing the most specific level each time exposes the next one.
        for i in 0..all.len() {
            let configs = config(&all[i..]);
            assert_eq!(resolve(&configs, "alice", "app", PRODUCER_BYTE_RATE).map(|q| q.0), Some((i + 1) as f64));
        }
        assert_eq!(resolve(&config(&all[..2]), "bob", "app", PRODUCER_BYTE_RATE), None, "alice's quotas are hers");
        assert_eq!(resolve(&config(&all[6..]), "bob", "other", PRODUCER_BYTE_RATE).map(|q| q.0), Some(8.0));
    }

    #[test]
    fn a_replication_throttle_stops_throttled_replicas_until_the_rate_falls() {
        let q = ReplicationQuota::new(Window { samples: 2, sample_ms: 1000 }, 1000);
        assert!(!q.exceeded(0));
        q.record(1500, 0);
        assert!(q.exceeded(10), "1500 B in the first second is over 1000 B/s");
        assert!(!q.exceeded(2_500), "a window later it is under again");
        q.configure(i64::MAX, Window { samples: 2, sample_ms: 1000 });
        q.record(1_000_000, 2_600);
        assert!(!q.exceeded(2_600), "no limit, no throttle");
    }

    #[test]
    fn throttle_time_brings_the_rate_back_to_the_quota() {
        let w = Window { samples: 11, sample_ms: 1000 };
        // (observed, quota) -> ms
        // (observed, quota, window span) -> ms
        let cases = [
            ((100.0, 100.0, 10_000), 0),
            ((50.0, 100.0, 10_000), 0),
            ((200.0, 100.0, 10_000), 10_000),
            ((110.0, 100.0, 10_000), 1000),
            ((110.0, 100.0, 10_500), 1050),
            ((1e9, 1.0, 10_000), 11_000),
        ];
        for ((observed, quota, span), want) in cases {
            assert_eq!(throttle_ms(observed, quota, span, &w), want, "{observed} over {quota} in {span} ms");
        }
    }

    #[test]
    fn a_client_over_its_byte_rate_is_throttled_and_recovers() {
        let w = Window { samples: 2, sample_ms: 1000 };
        let q = QuotaManager::new(w);
        q.set_configs(&config(&[(ConfigEntity::Client(Some("slow".into())), "1000")]));
        assert_eq!(q.record(ANONYMOUS, "fast", Kind::Produce, 1e9, 0), 0, "no quota for this client");
        assert_eq!(q.record(ANONYMOUS, "slow", Kind::Produce, 900.0, 0), 0, "within one window of quota");
        let t = q.record(ANONYMOUS, "slow", Kind::Produce, 1100.0, 10);
        assert!(t > 0, "over the quota: throttled ({t} ms)");
        // After the window has passed, the same amount is fine again.
        assert_eq!(q.record(ANONYMOUS, "slow", Kind::Produce, 500.0, 5_000), 0);
        q.expire(5_000 + 3_600_000);
        assert!(q.rates.lock().unwrap().is_empty());
    }
}
