//! Group commit: every caller of [`Flusher::flush`] waiting at the moment a flush starts
//! shares that one flush; callers arriving during it share the next one. The task also
//! flushes after `log.flush.interval.messages` appended records, read afresh each time so a
//! dynamic change applies at once. (The periodic `log.flush.interval.ms` flush is sled's own
//! thread, which also cleans sled's segments; its period is fixed when the store opens.)

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
}

impl Flusher {
    pub(super) fn start(db: sled::Db, policy: FlushPolicy) -> Flusher {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        let appended = Arc::new(AtomicU64::new(0));
        let counter = appended.clone();
        tokio::spawn(async move {
            let mut stop = None;
            while let Some(first) = rx.recv().await {
                let mut waiters = Vec::new();
                for request in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    match request {
                        Request::Flush(w) => waiters.extend(w),
                        Request::Stop(done) => stop = Some(done),
                    }
                }
                counter.store(0, Ordering::Relaxed);
                let result = db
                    .flush_async()
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::Storage { what: "flushing the log store".into(), reason: e.to_string() });
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
        Flusher { requests: tx, appended, interval_messages: Arc::new(AtomicU64::new(policy.interval_messages)) }
    }

    /// Applies a new `log.flush.interval.messages` (a dynamic config change).
    pub(super) fn set_interval_messages(&self, records: u64) {
        self.interval_messages.store(records, Ordering::Relaxed);
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
