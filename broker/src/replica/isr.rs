//! The leader's replication rules as plain functions (Kafka's `Partition.scala`): follower
//! progress, the high watermark, and when followers leave or rejoin the ISR. The caller
//! supplies the clock.

use std::collections::BTreeMap;

use tributary_common::ids::BrokerId;

/// What the leader knows about one follower, from its fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FollowerState {
    /// The follower's log end offset (its last fetch offset), -1 before it fetched from this leader.
    pub log_end_offset: i64,
    /// When the follower was last fully caught up with the leader.
    pub last_caught_up_ms: i64,
    /// When it last fetched.
    pub last_fetch_ms: i64,
    /// The leader's log end offset at that fetch.
    pub leader_end_at_last_fetch: i64,
    /// The follower's log start offset, as its last fetch said (-1 before): DeleteRecords
    /// completes once every in-sync replica has moved its log start.
    pub log_start_offset: i64,
}

impl FollowerState {
    /// A follower that has not fetched from this leader yet; it counts as caught up at
    /// `now_ms`, so it has `replica.lag.time.max.ms` to start (Kafka does the same when
    /// a leader takes over).
    pub(crate) fn new(now_ms: i64) -> Self {
        FollowerState {
            log_end_offset: -1,
            last_caught_up_ms: now_ms,
            last_fetch_ms: now_ms,
            leader_end_at_last_fetch: -1,
            log_start_offset: -1,
        }
    }

    /// Records a fetch at `fetch_offset` while the leader's log ends at `leader_end`.
    /// Caught up means: at the leader's end now, or at least where the leader's end was at
    /// the previous fetch (then it was caught up as of that fetch).
    pub(crate) fn on_fetch(&mut self, fetch_offset: i64, leader_end: i64, now_ms: i64) {
        if fetch_offset >= leader_end {
            self.last_caught_up_ms = now_ms;
        } else if self.leader_end_at_last_fetch >= 0 && fetch_offset >= self.leader_end_at_last_fetch {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.log_end_offset = fetch_offset;
        self.leader_end_at_last_fetch = leader_end;
        self.last_fetch_ms = now_ms;
    }
}

/// The high watermark: the smallest log end offset over the ISR (the leader counts with its
/// own), never moving backwards, and held while the ISR is smaller than
/// the effective `min.insync.replicas` (KAFKA-15583;
/// `tributary_common::topic::effective_min_isr`). A follower with no known position holds it too.
pub(crate) fn high_watermark(
    current: i64,
    leader: BrokerId,
    leader_end: i64,
    isr: &[BrokerId],
    followers: &BTreeMap<BrokerId, FollowerState>,
    min_insync_replicas: usize,
) -> i64 {
    if isr.len() < min_insync_replicas {
        return current;
    }
    let mut hw = leader_end;
    for id in isr {
        if *id == leader {
            continue;
        }
        match followers.get(id) {
            Some(f) if f.log_end_offset >= 0 => hw = hw.min(f.log_end_offset),
            _ => return current,
        }
    }
    hw.max(current)
}

/// The ISR without followers that have not caught up for longer than `lag_time_max_ms`.
/// The leader is never removed. `None` when nobody is out of sync.
pub(crate) fn shrink(
    isr: &[BrokerId],
    leader: BrokerId,
    followers: &BTreeMap<BrokerId, FollowerState>,
    now_ms: i64,
    lag_time_max_ms: i64,
) -> Option<Vec<BrokerId>> {
    let kept: Vec<BrokerId> = isr
        .iter()
        .copied()
        .filter(|id| *id == leader || followers.get(id).is_none_or(|f| now_ms - f.last_caught_up_ms <= lag_time_max_ms))
        .collect();
    (kept.len() != isr.len()).then_some(kept)
}

/// The ISR plus assigned followers that have caught up: their log end is at least the high
/// watermark and at least the start of the current leader epoch (so they hold this
/// leader's history). `None` when nobody joins.
pub(crate) fn expand(
    isr: &[BrokerId],
    replicas: &[BrokerId],
    followers: &BTreeMap<BrokerId, FollowerState>,
    high_watermark: i64,
    epoch_start_offset: i64,
) -> Option<Vec<BrokerId>> {
    let mut next = isr.to_vec();
    for id in replicas {
        if next.contains(id) {
            continue;
        }
        if let Some(f) = followers.get(id) {
            if f.log_end_offset >= high_watermark && f.log_end_offset >= epoch_start_offset {
                next.push(*id);
            }
        }
    }
    (next.len() != isr.len()).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower(leo: i64, caught_up: i64) -> FollowerState {
        FollowerState {
            log_end_offset: leo,
            last_caught_up_ms: caught_up,
            last_fetch_ms: caught_up,
            leader_end_at_last_fetch: leo,
            log_start_offset: -1,
        }
    }

    #[test]
    fn a_follower_is_caught_up_at_the_leader_end_or_at_the_previous_end() {
        let mut f = FollowerState::new(0);
        // Fetching at the leader's end: caught up now.
        f.on_fetch(10, 10, 100);
        assert_eq!(f.last_caught_up_ms, 100);
        // Behind the current end (20) but at the end of the previous fetch (10): caught up as of then.
        f.on_fetch(10, 20, 200);
        assert_eq!(f.last_caught_up_ms, 100);
        f.on_fetch(20, 30, 300);
        assert_eq!(f.last_caught_up_ms, 200);
        // Falling further behind does not refresh it.
        f.on_fetch(21, 40, 400);
        assert_eq!(f.last_caught_up_ms, 200);
        assert_eq!(f.log_end_offset, 21);
    }

    #[test]
    fn the_high_watermark_is_the_smallest_isr_log_end() {
        let followers = BTreeMap::from([(2, follower(7, 0)), (3, follower(4, 0))]);
        // (current, leader end, isr, min isr) -> hw
        let cases: &[(i64, i64, &[BrokerId], usize, i64)] = &[
            (0, 10, &[1], 1, 10),
            (0, 10, &[1, 2], 1, 7),
            (0, 10, &[1, 2, 3], 1, 4),
            // never backwards
            (5, 10, &[1, 2, 3], 1, 5),
            // held while the ISR is below min.insync.replicas
            (3, 10, &[1], 2, 3),
            (3, 10, &[1, 2], 2, 7),
            // an ISR member that never fetched holds it
            (2, 10, &[1, 4], 1, 2),
        ];
        for (current, end, isr, min_isr, expected) in cases {
            assert_eq!(
                high_watermark(*current, 1, *end, isr, &followers, *min_isr),
                *expected,
                "isr {isr:?} min {min_isr}"
            );
        }
    }

    #[test]
    fn lagging_followers_leave_the_isr_but_the_leader_never_does() {
        let followers = BTreeMap::from([(2, follower(7, 1000)), (3, follower(4, 30_000))]);
        assert_eq!(shrink(&[1, 2, 3], 1, &followers, 31_500, 30_000), Some(vec![1, 3]));
        assert_eq!(shrink(&[1, 2, 3], 1, &followers, 30_500, 30_000), None);
        assert_eq!(shrink(&[1], 1, &followers, 100_000, 30_000), None);
        // A member with no state (not yet fetched) is left alone here; its clock starts when the leader takes over.
        assert_eq!(shrink(&[1, 5], 1, &followers, 100_000, 30_000), None);
    }

    #[test]
    fn followers_rejoin_once_past_the_high_watermark_and_the_epoch_start() {
        let followers = BTreeMap::from([(2, follower(10, 0)), (3, follower(6, 0))]);
        assert_eq!(expand(&[1], &[1, 2, 3], &followers, 8, 0), Some(vec![1, 2]));
        assert_eq!(expand(&[1], &[1, 2, 3], &followers, 6, 0), Some(vec![1, 2, 3]));
        // Caught up with the HW but not with the start of this leader's epoch.
        assert_eq!(expand(&[1], &[1, 2, 3], &followers, 6, 8), Some(vec![1, 2]));
        assert_eq!(expand(&[1, 2, 3], &[1, 2, 3], &followers, 0, 0), None);
        // Only assigned replicas join.
        assert_eq!(expand(&[1], &[1, 3], &followers, 8, 0), None);
    }
}
