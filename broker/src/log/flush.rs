//! Group commit: every caller of [`Flusher::flush`] waiting at the moment a flush starts
//! shares that one flush; callers arriving during it share the next one. The task also
//! flushes after `log.flush.interval.messages` appended records.
//!
//! The periodic flush every `log.flush.interval.ms` is sled's own thread, which also cleans
//! sled's segments; its period is fixed when the store opens. A dynamic
//! `log.flush.interval.ms` shorter than that period makes this task flush that often too,
//! so the setting holds as Kafka defines it, the longest a record waits for a flush; a
//! longer one changes nothing, as sled's thread already flushes more often.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::Error;

/// When sled writes appended data to disk, besides acks=all (which always waits for a flush).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlushPolicy {
    /// `log.flush.interval.ms`: background flush period.
    pub interval_ms: Option<u64>,
    /// `log.flush.interval.messages`: flush once this many records were appended.
    pub interval_messages: u64,
}

type Waiter = oneshot::Sender<Result<(), Error>>;

enum Request {
    /// Flush; reply when durable (None: nobody waits, e.g. the message-count policy).
    Flush(Option<Waiter>),
    /// Flush once more and stop, releasing sled.
    Stop(oneshot::Sender<()>),
}

#[derive(Clone)]
pub(super) struct Flusher {
    requests: mpsc::UnboundedSender<Request>,
    appended: Arc<AtomicU64>,
    interval_messages: Arc<AtomicU64>,
    /// The period of sled's flush thread, set when the store opened (None: no thread).
    static_interval_ms: Option<u64>,
    /// Extra periodic flushes by this task, in ms; 0: none.
    extra_interval_ms: Arc<AtomicU64>,
}

/// How often this task flushes on its own, besides sled's thread: only when the wanted
/// interval is shorter than sled's period (0: never).
pub(super) fn extra_interval(wanted_ms: Option<u64>, sled_ms: Option<u64>) -> u64 {
    match (wanted_ms, sled_ms) {
        (Some(w), Some(s)) if w < s => w.max(1),
        (Some(w), None) => w.max(1),
        _ => 0,
    }
}

impl Flusher {
    pub(super) fn start(db: sled::Db, policy: FlushPolicy) -> Flusher {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        let appended = Arc::new(AtomicU64::new(0));
        let counter = appended.clone();
        let extra_interval_ms = Arc::new(AtomicU64::new(0));
        let extra = extra_interval_ms.clone();
        tokio::spawn(async move {
            let mut stop = None;
            loop {
                let first = match extra.load(Ordering::Relaxed) {
                    0 => match rx.recv().await {
                        Some(r) => r,
                        None => break,
                    },
                    ms => tokio::select! {
                        r = rx.recv() => match r {
                            Some(r) => r,
                            None => break,
                        },
                        () = tokio::time::sleep(std::time::Duration::from_millis(ms)) => Request::Flush(None),
                    },
                };
                let mut waiters = Vec::new();
                for request in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    match request {
                        Request::Flush(w) => waiters.extend(w),
                        Request::Stop(done) => stop = Some(done),
                    }
                }
                counter.store(0, Ordering::Relaxed);
                let started = std::time::Instant::now();
                let result = db
                    .flush_async()
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::Storage { what: "flushing the log store".into(), reason: e.to_string() });
                crate::metrics::METRICS.flushed(started.elapsed());
                if let Err(e) = &result {
                    tracing::error!(error = %e, "flushing the log store failed; acks=all produce requests will fail until it recovers; check the disk");
                }
                for w in waiters {
                    let _ = w.send(result.clone());
                }
                if stop.is_some() {
                    break;
                }
            }
            drop(db);
            if let Some(done) = stop {
                let _ = done.send(());
            }
        });
        Flusher {
            requests: tx,
            appended,
            interval_messages: Arc::new(AtomicU64::new(policy.interval_messages)),
            static_interval_ms: policy.interval_ms,
            extra_interval_ms,
        }
    }

    /// Applies new `log.flush.interval.*` settings (a dynamic config change).
    pub(super) fn set_policy(&self, policy: FlushPolicy) {
        self.interval_messages.store(policy.interval_messages, Ordering::Relaxed);
        self.extra_interval_ms.store(extra_interval(policy.interval_ms, self.static_interval_ms), Ordering::Relaxed);
    }

    pub(super) async fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let closed = || Error::Storage { what: "flushing".into(), reason: "the log store is shutting down".into() };
        self.requests.send(Request::Flush(Some(tx))).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    pub(super) fn note_appended(&self, records: u64) {
        let total = self.appended.fetch_add(records, Ordering::Relaxed) + records;
        if total >= self.interval_messages.load(Ordering::Relaxed) {
            self.appended.store(0, Ordering::Relaxed);
            let _ = self.requests.send(Request::Flush(None));
        }
    }
}

impl Flusher {
    /// Flushes everything and stops the task, so that sled is released once the last
    /// [`super::LogStore`] handle is dropped.
    pub(super) async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.requests.send(Request::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_adds_flushes_only_below_sleds_period() {
        // (wanted, sled's period) -> extra flush period (0: none)
        let cases = [
            ((Some(100), Some(1000)), 100),
            ((Some(1000), Some(1000)), 0),
            ((Some(60_000), Some(1000)), 0),
            ((Some(500), None), 500),
            ((None, Some(1000)), 0),
            ((Some(0), Some(1000)), 1),
        ];
        for ((wanted, sled), want) in cases {
            assert_eq!(extra_interval(wanted, sled), want, "{wanted:?} under {sled:?}");
        }
    }
}
