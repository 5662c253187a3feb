//! Incremental fetch sessions (KIP-227, Kafka's `FetchSession.scala`).
//!
//! A consumer or follower that fetches many partitions sends them all once (a full fetch
//! with epoch 0); the broker keeps them in a session and answers with its id. Later
//! fetches (epoch 1, 2, …) name only the partitions whose fetch position changed (and
//! those to forget); the broker reads every partition of the session and answers only
//! those with something to say: records, a moved high watermark, last stable offset or
//! log start offset, a diverging epoch, or an error. A consumer of 10,000 quiet partitions
//! then sends and receives a few bytes per fetch instead of all 10,000.
//!
//! [`FetchSessions`] is the one owner of the sessions (a slot-limited cache,
//! `max.incremental.fetch.session.cache.slots`); the rules are pure functions with table
//! tests: [`ask`] (what the request's id and epoch ask for), [`next_epoch`],
//! [`must_respond`] (which partitions an incremental answer carries) and [`evictable`]
//! (which session a new one may push out).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::metrics::METRICS;

/// No session.
pub(crate) const INVALID_SESSION_ID: i32 = 0;
/// A full fetch that opens a session.
pub(crate) const INITIAL_EPOCH: i32 = 0;
/// A full fetch without a session (and the close of one).
pub(crate) const FINAL_EPOCH: i32 = -1;
/// A session unused this long may be evicted by any new one (Kafka's
/// `MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS`).
pub(crate) const EVICTION_MS: i64 = 120_000;

/// What a fetch's (session id, epoch) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    /// A full fetch without a session (epoch -1), closing `close` first.
    Sessionless { close: Option<i32> },
    /// A full fetch opening a new session (epoch 0), closing `close` first.
    Open { close: Option<i32> },
    /// An incremental fetch of session `id` at `epoch`.
    Incremental { id: i32, epoch: i32 },
}

/// The rule for a request's session id and epoch.
pub(crate) fn ask(session_id: i32, epoch: i32) -> Ask {
    let close = (session_id != INVALID_SESSION_ID).then_some(session_id);
    match epoch {
        FINAL_EPOCH => Ask::Sessionless { close },
        INITIAL_EPOCH => Ask::Open { close },
        _ => Ask::Incremental { id: session_id, epoch },
    }
}

/// The epoch after `epoch`: wraps to 1 after `i32::MAX`; a negative one stays final.
pub(crate) fn next_epoch(epoch: i32) -> i32 {
    match epoch {
        e if e < 0 => FINAL_EPOCH,
        i32::MAX => 1,
        e => e + 1,
    }
}

/// The fetcher's parameters for one partition, as the request gave them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// The topic's name (shared: a session hands it out on every fetch).
    pub(crate) topic: Arc<str>,
    /// The topic's id (Fetch v13+; nil before).
    pub(crate) topic_id: uuid::Uuid,
    /// The partition.
    pub(crate) partition: i32,
    /// Where to read from.
    pub(crate) fetch_offset: i64,
    /// The partition's byte limit.
    pub(crate) max_bytes: i32,
    /// The leader epoch the fetcher knows.
    pub(crate) current_leader_epoch: i32,
    /// The epoch of the fetcher's last batch.
    pub(crate) last_fetched_epoch: i32,
    /// A follower's own log start offset.
    pub(crate) log_start_offset: i64,
}

/// What a read of one partition found, as far as the session cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Bytes of records read.
    pub(crate) records: usize,
    /// The high watermark answered.
    pub(crate) high_watermark: i64,
    /// The last stable offset answered.
    pub(crate) last_stable_offset: i64,
    /// The log start offset answered.
    pub(crate) log_start_offset: i64,
    /// The partition's error code (0: none).
    pub(crate) error_code: i16,
    /// A diverging epoch was answered.
    pub(crate) diverging: bool,
}

/// What the fetcher was last told about a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Told {
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

impl Told {
    /// Nothing told yet: the first answer carries the partition.
    const NOTHING: Told = Told { high_watermark: -1, last_stable_offset: -1, log_start_offset: -1 };
}

/// Whether an incremental answer carries a partition, and what the fetcher then knows.
/// Records, a moved high watermark, last stable offset or log start offset, a diverging
/// epoch and errors are always told; an error also forgets what was told, so the
/// partition is told again once the error is gone.
pub(crate) fn must_respond(told: Told, seen: &Seen) -> (bool, Told) {
    if seen.error_code != 0 {
        return (true, Told::NOTHING);
    }
    let now = Told {
        high_watermark: seen.high_watermark,
        last_stable_offset: seen.last_stable_offset,
        log_start_offset: seen.log_start_offset,
    };
    (seen.records > 0 || seen.diverging || now != told, now)
}

/// A session's claim to its slot: (privileged, partitions), compared in that order.
/// Followers' sessions are privileged.
pub(crate) type Worth = (bool, usize);

/// Whether a new session worth `new` may evict an existing one worth `old` that was
/// last used at `last_used_ms` and created at `created_ms` (Kafka's `tryEvict`): any
/// session unused for [`EVICTION_MS`] may go; otherwise a session older than that goes
/// for a newcomer worth at least as much, and a young consumer session goes only for a
/// privileged newcomer; a young follower session stays.
pub(crate) fn evictable(new: Worth, old: Worth, last_used_ms: i64, created_ms: i64, now_ms: i64) -> bool {
    if now_ms - last_used_ms > EVICTION_MS {
        return true;
    }
    let old_enough = now_ms - created_ms > EVICTION_MS;
    let (new_privileged, _) = new;
    let (old_privileged, _) = old;
    if old_enough || (new_privileged && !old_privileged) {
        new >= old
    } else {
        false
    }
}

struct CachedPartition {
    wanted: Wanted,
    told: Told,
}

struct Session {
    privileged: bool,
    created_ms: i64,
    last_used_ms: i64,
    /// The epoch the next request must carry.
    epoch: i32,
    /// In answer order: partitions that were answered move to the back, so a response
    /// cut by fetch.max.bytes serves the others first next time.
    order: BTreeMap<u64, (Arc<str>, i32)>,
    partitions: HashMap<(Arc<str>, i32), (u64, CachedPartition)>,
    next_seq: u64,
}

impl Session {
    fn push(&mut self, wanted: Wanted, told: Told) {
        let key = (wanted.topic.clone(), wanted.partition);
        if let Some((seq, _)) = self.partitions.remove(&key) {
            self.order.remove(&seq);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key.clone());
        self.partitions.insert(key, (seq, CachedPartition { wanted, told }));
    }

    fn update(&mut self, wanted: Wanted) {
        match self.partitions.get_mut(&(wanted.topic.clone(), wanted.partition)) {
            Some((_, cached)) => cached.wanted = wanted,
            None => self.push(wanted, Told::NOTHING),
        }
    }

    fn forget(&mut self, topic: &Arc<str>, partition: i32) {
        if let Some((seq, _)) = self.partitions.remove(&(topic.clone(), partition)) {
            self.order.remove(&seq);
        }
    }

    fn wanted(&self) -> Vec<Wanted> {
        self.order.values().map(|k| self.partitions[k].1.wanted.clone()).collect()
    }

    fn worth(&self) -> Worth {
        (self.privileged, self.partitions.len())
    }
}

/// Why an incremental fetch cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionError {
    /// FETCH_SESSION_ID_NOT_FOUND: evicted, closed, or never made here.
    NotFound,
    /// INVALID_FETCH_SESSION_EPOCH: a duplicate or out-of-order request.
    InvalidEpoch,
}

impl SessionError {
    /// The Kafka error code.
    pub(crate) fn code(self) -> i16 {
        match self {
            SessionError::NotFound => 70,
            SessionError::InvalidEpoch => 71,
        }
    }
}

/// What an incremental fetch reads.
pub(crate) enum Begun {
    /// Every partition of the session, in answer order; the answer is checked against
    /// `epoch` (the session's epoch after this request).
    Session { epoch: i32, partitions: Vec<Wanted> },
    /// The request forgot every partition: the session is closed and the request is
    /// answered as a sessionless one.
    Closed,
}

/// The fetch sessions of this broker; see the module doc.
pub(crate) struct FetchSessions {
    slots: usize,
    sessions: Mutex<Cache>,
}

/// The sessions by id, with their partitions counted as they change (the gauges are set
/// on every fetch, which must not walk every session).
#[derive(Default)]
struct Cache {
    by_id: HashMap<i32, Session>,
    partitions: usize,
}

impl Cache {
    fn remove(&mut self, id: i32) -> Option<Session> {
        let session = self.by_id.remove(&id)?;
        self.partitions -= session.partitions.len();
        Some(session)
    }

    fn publish(&self) {
        METRICS.fetch_sessions(self.by_id.len(), self.partitions);
    }
}

impl FetchSessions {
    /// A cache of `slots` sessions (0: no sessions, every fetch is full).
    pub(crate) fn new(slots: usize) -> FetchSessions {
        FetchSessions { slots, sessions: Mutex::new(Cache::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes session `id` (a full fetch naming it); true when it existed.
    pub(crate) fn close(&self, id: i32) -> bool {
        let mut cache = self.lock();
        let closed = cache.remove(id).is_some();
        cache.publish();
        closed
    }

    /// Opens a session over `partitions` (a full fetch with epoch 0, after it was read;
    /// `told` is what its answer said of each): its id, or [`INVALID_SESSION_ID`] when
    /// the cache is full of sessions worth keeping.
    pub(crate) fn open(&self, privileged: bool, partitions: Vec<(Wanted, Seen)>, now_ms: i64) -> i32 {
        if self.slots == 0 || partitions.is_empty() {
            return INVALID_SESSION_ID;
        }
        let mut cache = self.lock();
        let worth = (privileged, partitions.len());
        if cache.by_id.len() >= self.slots {
            // The least worth among those this one may evict, the stalest first.
            let victim = cache
                .by_id
                .iter()
                .filter(|(_, s)| evictable(worth, s.worth(), s.last_used_ms, s.created_ms, now_ms))
                .min_by_key(|(id, s)| (now_ms - s.last_used_ms <= EVICTION_MS, s.worth(), **id))
                .map(|(id, _)| *id);
            match victim {
                Some(id) => {
                    cache.remove(id);
                    METRICS.fetch_session_evicted();
                    tracing::debug!(session = id, "evicted a fetch session to make room for a new one");
                }
                None => return INVALID_SESSION_ID,
            }
        }
        let id = loop {
            let bytes = uuid::Uuid::new_v4().into_bytes();
            let id = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & i32::MAX;
            if id != INVALID_SESSION_ID && !cache.by_id.contains_key(&id) {
                break id;
            }
        };
        let mut session = Session {
            privileged,
            created_ms: now_ms,
            last_used_ms: now_ms,
            epoch: next_epoch(INITIAL_EPOCH),
            order: BTreeMap::new(),
            partitions: HashMap::new(),
            next_seq: 0,
        };
        for (wanted, seen) in partitions {
            let (_, told) = must_respond(Told::NOTHING, &seen);
            session.push(wanted, told);
        }
        cache.partitions += session.partitions.len();
        cache.by_id.insert(id, session);
        cache.publish();
        id
    }

    /// Starts an incremental fetch of session `id` at `epoch`: applies the request's
    /// partitions (`updates`, added or changed) and `forget`, and says what to read.
    pub(crate) fn begin(
        &self,
        id: i32,
        epoch: i32,
        updates: Vec<Wanted>,
        forget: &[(Arc<str>, i32)],
        now_ms: i64,
    ) -> Result<Begun, SessionError> {
        let mut cache = self.lock();
        let session = cache.by_id.get_mut(&id).ok_or(SessionError::NotFound)?;
        if session.epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        let before = session.partitions.len();
        for wanted in updates {
            session.update(wanted);
        }
        for (topic, partition) in forget {
            session.forget(topic, *partition);
        }
        let after = session.partitions.len();
        let begun = (after > 0).then(|| {
            session.last_used_ms = now_ms;
            session.epoch = next_epoch(session.epoch);
            Begun::Session { epoch: session.epoch, partitions: session.wanted() }
        });
        cache.partitions = cache.partitions + after - before;
        let begun = begun.unwrap_or_else(|| {
            cache.remove(id);
            Begun::Closed
        });
        cache.publish();
        Ok(begun)
    }

    /// Finishes an incremental fetch begun at `epoch`: which of `seen` (one per
    /// partition begun, in that order) the answer carries. Fails when another request
    /// moved the session meanwhile (a duplicate).
    pub(crate) fn finish(&self, id: i32, epoch: i32, seen: &[(Arc<str>, i32, Seen)]) -> Result<Vec<bool>, SessionError> {
        let mut cache = self.lock();
        let session = cache.by_id.get_mut(&id).ok_or(SessionError::NotFound)?;
        if session.epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        let mut carried = Vec::with_capacity(seen.len());
        for (topic, partition, seen) in seen {
            let key = (topic.clone(), *partition);
            let Some((_, cached)) = session.partitions.get_mut(&key) else {
                carried.push(false);
                continue;
            };
            let (respond, told) = must_respond(cached.told, seen);
            cached.told = told;
            if respond {
                let wanted = cached.wanted.clone();
                session.push(wanted, told);
            }
            carried.push(respond);
        }
        Ok(carried)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(topic: &str, partition: i32, fetch_offset: i64) -> Wanted {
        Wanted {
            topic: topic.into(),
            topic_id: uuid::Uuid::nil(),
            partition,
            fetch_offset,
            max_bytes: 1 << 20,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
            log_start_offset: -1,
        }
    }

    /// (sessions, partitions counted), after checking the count against the sessions.
    fn held(cache: &FetchSessions) -> (usize, usize) {
        let c = cache.lock();
        assert_eq!(c.partitions, c.by_id.values().map(|s| s.partitions.len()).sum::<usize>(), "partition count drifted");
        (c.by_id.len(), c.partitions)
    }

    fn seen(records: usize, hw: i64) -> Seen {
        Seen { records, high_watermark: hw, last_stable_offset: hw, log_start_offset: 0, ..Seen::default() }
    }

    #[test]
    fn the_id_and_epoch_say_full_sessionless_or_incremental() {
        let cases = [
            ((0, -1), Ask::Sessionless { close: None }),
            ((7, -1), Ask::Sessionless { close: Some(7) }),
            ((0, 0), Ask::Open { close: None }),
            ((7, 0), Ask::Open { close: Some(7) }),
            ((7, 1), Ask::Incremental { id: 7, epoch: 1 }),
            ((0, 3), Ask::Incremental { id: 0, epoch: 3 }),
            ((7, -2), Ask::Incremental { id: 7, epoch: -2 }),
        ];
        for ((id, epoch), want) in cases {
            assert_eq!(ask(id, epoch), want, "id {id} epoch {epoch}");
        }
    }

    #[test]
    fn epochs_count_up_and_wrap_to_one() {
        for (epoch, next) in [(0, 1), (1, 2), (i32::MAX, 1), (-1, -1), (-5, -1)] {
            assert_eq!(next_epoch(epoch), next, "after {epoch}");
        }
    }

    #[test]
    fn an_incremental_answer_carries_what_changed() {
        let told = Told { high_watermark: 10, last_stable_offset: 10, log_start_offset: 0 };
        let base =
            Seen { records: 0, high_watermark: 10, last_stable_offset: 10, log_start_offset: 0, ..Seen::default() };
        // (what was seen, carried, what is then told)
        let cases = [
            (base, false, told),
            (Seen { records: 100, ..base }, true, told),
            (
                Seen { high_watermark: 11, last_stable_offset: 11, ..base },
                true,
                Told { high_watermark: 11, last_stable_offset: 11, log_start_offset: 0 },
            ),
            (Seen { last_stable_offset: 9, ..base }, true, Told { last_stable_offset: 9, ..told }),
            (Seen { log_start_offset: 5, ..base }, true, Told { log_start_offset: 5, ..told }),
            (Seen { diverging: true, ..base }, true, told),
            (Seen { error_code: 6, ..base }, true, Told::NOTHING),
        ];
        for (seen, carried, now) in cases {
            assert_eq!(must_respond(told, &seen), (carried, now), "{seen:?}");
        }
        // After an error, the same offsets are told again.
        assert_eq!(must_respond(Told::NOTHING, &base), (true, told));
    }

    #[test]
    fn eviction_prefers_stale_then_less_worthy_and_keeps_young_followers() {
        let now = 1_000_000;
        let young = now - 1_000;
        let old = now - EVICTION_MS - 1;
        // (new worth, old worth, last used, created) -> evictable
        let cases = [
            // Unused for the eviction time: anyone may evict it.
            (((false, 1), (true, 1000), old, old), true),
            // Old enough: a newcomer worth as much or more evicts it.
            (((false, 10), (false, 5), young, old), true),
            (((false, 5), (false, 5), young, old), true),
            (((false, 4), (false, 5), young, old), false),
            (((true, 1), (false, 5), young, old), true),
            (((false, 100), (true, 5), young, old), false),
            // Young: only a follower evicts a consumer's session.
            (((false, 100), (false, 5), young, young), false),
            (((true, 1), (false, 5), young, young), true),
            (((true, 100), (true, 5), young, young), false),
        ];
        for ((new, existing, last_used, created), want) in cases {
            assert_eq!(evictable(new, existing, last_used, created, now), want, "{new:?} over {existing:?}");
        }
    }

    #[test]
    fn a_session_remembers_positions_and_answers_only_changes() {
        let cache = FetchSessions::new(10);
        let id = cache.open(false, vec![(wanted("t", 0, 0), seen(5, 10)), (wanted("t", 1, 0), seen(0, 0))], 0);
        assert_ne!(id, INVALID_SESSION_ID);
        assert_eq!(held(&cache), (1, 2));
        // Epoch 1: the client moved partition 0 to 10; partition 1 stays where it was.
        let Ok(Begun::Session { epoch, partitions }) = cache.begin(id, 1, vec![wanted("t", 0, 10)], &[], 1) else {
            panic!("session")
        };
        assert_eq!(epoch, 2);
        let offsets: Vec<_> = partitions.iter().map(|w| (w.partition, w.fetch_offset)).collect();
        assert_eq!(offsets, vec![(0, 10), (1, 0)]);
        // Partition 0 has new records; partition 1 has nothing new: only 0 is carried.
        let carried = cache.finish(id, 2, &[("t".into(), 0, seen(5, 15)), ("t".into(), 1, seen(0, 0))]).unwrap();
        assert_eq!(carried, vec![true, false]);
        assert_eq!(held(&cache), (1, 2));
        // A replay of epoch 1 is refused; the next epoch is 2, and the partition that was
        // answered went to the back.
        assert!(matches!(cache.begin(id, 1, vec![], &[], 2), Err(SessionError::InvalidEpoch)));
        let Ok(Begun::Session { partitions, .. }) = cache.begin(id, 2, vec![wanted("t", 0, 15)], &[], 2) else {
            panic!("session")
        };
        assert_eq!(partitions.iter().map(|w| w.partition).collect::<Vec<_>>(), vec![1, 0]);
        // An answer meant for an older epoch is refused.
        assert_eq!(cache.finish(id, 2, &[]), Err(SessionError::InvalidEpoch));
        assert!(matches!(cache.begin(id, 3, vec![wanted("u", 0, 0)], &[("t".into(), 0)], 3), Ok(Begun::Session { .. })));
        assert_eq!(held(&cache), (1, 2));
        assert!(matches!(cache.begin(id, 4, vec![], &[("u".into(), 0)], 4), Ok(Begun::Session { .. })));
        assert_eq!(held(&cache), (1, 1));
        // Forgetting the last partition closes the session.
        assert!(matches!(cache.begin(id, 5, vec![], &[("t".into(), 1)], 5), Ok(Begun::Closed)));
        assert_eq!(held(&cache), (0, 0));
        assert!(matches!(cache.begin(id, 6, vec![], &[], 6), Err(SessionError::NotFound)));
    }

    #[test]
    fn a_full_cache_evicts_only_what_the_rule_allows() {
        let cache = FetchSessions::new(1);
        let first = cache.open(false, vec![(wanted("t", 0, 0), seen(0, 0))], 0);
        assert_ne!(first, INVALID_SESSION_ID);
        // A young consumer session is kept against another consumer...
        assert_eq!(cache.open(false, vec![(wanted("t", 1, 0), seen(0, 0)); 3], 10), INVALID_SESSION_ID);
        // ...but gives way to a follower.
        assert_eq!(held(&cache), (1, 1));
        let follower = cache.open(true, vec![(wanted("t", 1, 0), seen(0, 0)), (wanted("t", 2, 0), seen(0, 0))], 20);
        assert_ne!(follower, INVALID_SESSION_ID);
        assert_eq!(held(&cache), (1, 2));
        assert!(cache.close(follower));
        assert_eq!(held(&cache), (0, 0));
        assert!(matches!(cache.begin(first, 1, vec![], &[], 30), Err(SessionError::NotFound)));
        // No slots: no sessions.
        assert_eq!(FetchSessions::new(0).open(true, vec![(wanted("t", 0, 0), seen(0, 0))], 0), INVALID_SESSION_ID);
    }
}
