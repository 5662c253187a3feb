//! Waits keyed by partition (Kafka's `DelayedOperationPurgatory` keyed by
//! `TopicPartitionOperationKey`): each partition has a [`Progress`] key for its log end
//! and one for its high watermark. A parked operation remembers the version of each key it
//! read under and wakes only when one of *those* keys moves; an append to another
//! partition wakes nobody here.
//!
//! Race-free by construction: the version is read before the state it guards, and
//! [`any_moved`] registers for wake-ups before comparing versions, so a move between the
//! read and the wait returns at once instead of being missed.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use tokio::sync::Notify;

/// One key of the purgatory: a counter that moves on every change it stands for.
#[derive(Default)]
pub(crate) struct Progress {
    version: AtomicU64,
    notify: Notify,
}

impl Progress {
    /// The current version: read it before reading what it guards.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Records a change and wakes the operations parked on this key.
    pub(crate) fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

/// Waits until any key in `seen` moves past the version its caller read. Returns at once
/// when one already has; never returns for an empty `seen` (the caller's deadline ends it).
///
/// # Cancel safety
/// Cancel-safe: dropping the future only deregisters it.
pub(crate) async fn any_moved(seen: &[(&Progress, u64)]) {
    let mut waits: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> =
        seen.iter().map(|(p, _)| Box::pin(p.notify.notified())).collect();
    for w in &mut waits {
        w.as_mut().enable();
    }
    if seen.iter().any(|(p, v)| p.version() != *v) {
        return;
    }
    poll_fn(|cx| {
        let mut woken = false;
        for w in &mut waits {
            woken |= w.as_mut().poll(cx).is_ready();
        }
        if woken {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_wakes_on_its_own_keys_only() {
        let (a, b) = (Progress::default(), Progress::default());
        let seen = [(&a, a.version())];
        let wait = any_moved(&seen);
        tokio::pin!(wait);
        b.bump();
        b.bump();
        assert!(tokio::time::timeout(Duration::from_secs(1), wait.as_mut()).await.is_err(), "woken by another key");
        a.bump();
        tokio::time::timeout(Duration::from_secs(1), wait).await.expect("its own key moved");
    }

    #[tokio::test(start_paused = true)]
    async fn a_move_before_the_wait_is_not_missed() {
        let a = Progress::default();
        let seen_version = a.version();
        a.bump(); // between the caller's read and its wait
        tokio::time::timeout(Duration::from_secs(1), any_moved(&[(&a, seen_version)])).await.expect("returns at once");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_to_wait_on_waits_until_the_deadline() {
        assert!(tokio::time::timeout(Duration::from_secs(1), any_moved(&[])).await.is_err());
    }
}
