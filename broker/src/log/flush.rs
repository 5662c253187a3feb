//! Group commit: every caller of [`Flusher::flush`] waiting at the moment a flush starts
//! shares that one flush; callers arriving during it share the next one. The task also
//! flushes after `log.flush.interval.messages` appended records.
//!
//! The write backlog: sled takes an insert into its in-memory buffers and writes them to
//! its log file on its own threads. Under a burst of acks=1 writes those threads fell
//! seconds behind (3 GB at 217 MiB/s left a flush of 8.7 s, six `sled-io` threads still
//! writing 1.5 s after the last record was acknowledged): every acknowledged record in
//! that backlog lives only in the broker's memory, where `kill -9` loses it, and the next
//! acks=all write waits for all of it. So the task also flushes every
//! [`FLUSH_EVERY_BYTES`] appended, and writers wait for a flush while more than
//! [`MAX_BACKLOG_BYTES`] are appended and not yet flushed ([`backlog_rule`]): appends
//! run at most that far ahead of the disk. With 64 and 256 MiB, 3 GB bursts ran at
//! 199-206 MiB/s with no flush over 16 ms, and an acks=all end-to-end run right after one
//! had p99 4.3-6.9 ms; a 1 GiB acks=1 produce, short enough for the backlog to absorb
//! most of it before, measured 189-227 MiB/s instead of 330-373 (README, the write backlog).
//!
//! The periodic flush is sled's own thread, which also cleans sled's segments; its period
//! is fixed when the store opens: `log.flush.interval.ms`, but never longer than
//! [`WRITE_EVERY_MS`] ([`sled_flush_period`]). sled writes its buffers to the file in one
//! `pwrite` each, and a write of 5-8 MiB held a CPU for 7-20 ms in the kernel on the
//! two-core benchmark VM (`perf sched`: the broker's and the clients' threads waited
//! 2.4-9.6 ms for a CPU meanwhile), which was the whole end-to-end tail of acks=1 at
//! 5,000 records/s (p99 3.4-7.6 ms, in bursts) and of RF 3 (p99 9.7-18.9 ms). Written every
//! 50 ms, the writes stay a few hundred KiB: p99 2.5-3.3 ms and 2.9-3.0 ms (README, where
//! the end-to-end tail goes). A dynamic `log.flush.interval.ms` shorter than that period
//! makes this task flush that often too, so the setting holds as Kafka defines it, the
//! longest a record waits for a flush; a longer one changes nothing, as sled's thread
//! already flushes more often.

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

/// The longest sled's flush thread waits between two writes of what was appended.
pub(crate) const WRITE_EVERY_MS: u64 = 50;

/// The period of sled's flush thread for `log.flush.interval.ms` = `wanted_ms` (None:
/// only by message count): the interval asked for, at most [`WRITE_EVERY_MS`].
pub(crate) fn sled_flush_period(wanted_ms: Option<u64>) -> Option<u64> {
    Some(wanted_ms.map_or(WRITE_EVERY_MS, |w| w.clamp(1, WRITE_EVERY_MS)))
}

/// Bytes appended since a flush was last started or asked for, past which the task
/// starts one on its own.
pub(crate) const FLUSH_EVERY_BYTES: u64 = 64 << 20;
/// Bytes appended and not yet flushed past which writers wait for a flush.
pub(crate) const MAX_BACKLOG_BYTES: u64 = 256 << 20;

/// What the write backlog calls for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Backlog {
    /// Start a flush nobody waits for.
    pub(crate) flush: bool,
    /// Writers wait for a flush before they are answered.
    pub(crate) wait: bool,
}

/// The rule, from three byte counts since the store opened: `appended`, `requested` (what
/// had been appended when a flush was last asked for or started) and `flushed` (what had
/// been appended when the last successful flush started).
pub(crate) fn backlog_rule(appended: u64, requested: u64, flushed: u64) -> Backlog {
    Backlog {
        flush: appended.saturating_sub(requested) >= FLUSH_EVERY_BYTES,
        wait: appended.saturating_sub(flushed) > MAX_BACKLOG_BYTES,
    }
}

/// Byte counts since the store opened (see [`backlog_rule`]).
#[derive(Default)]
struct ByteMarks {
    appended: AtomicU64,
    requested: AtomicU64,
    flushed: AtomicU64,
}

impl ByteMarks {
    fn rule(&self) -> Backlog {
        backlog_rule(
            self.appended.load(Ordering::Relaxed),
            self.requested.load(Ordering::Relaxed),
            self.flushed.load(Ordering::Relaxed),
        )
    }
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
    bytes: Arc<ByteMarks>,
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
        let bytes = Arc::new(ByteMarks::default());
        let marks = bytes.clone();
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
                let mark = marks.appended.load(Ordering::Relaxed);
                marks.requested.fetch_max(mark, Ordering::Relaxed);
                let started = std::time::Instant::now();
                let result = db
                    .flush_async()
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::Storage { what: "flushing the log store".into(), reason: e.to_string() });
                crate::metrics::METRICS.flushed(started.elapsed());
                if result.is_ok() {
                    marks.flushed.fetch_max(mark, Ordering::Relaxed);
                }
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
            bytes,
            interval_messages: Arc::new(AtomicU64::new(policy.interval_messages)),
            static_interval_ms: sled_flush_period(policy.interval_ms),
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

    pub(super) fn note_appended(&self, records: u64, bytes: u64) {
        let appended = self.bytes.appended.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let total = self.appended.fetch_add(records, Ordering::Relaxed) + records;
        let by_count = total >= self.interval_messages.load(Ordering::Relaxed);
        if by_count {
            self.appended.store(0, Ordering::Relaxed);
        }
        let by_bytes = self.bytes.rule().flush;
        if by_bytes {
            self.bytes.requested.fetch_max(appended, Ordering::Relaxed);
        }
        if by_count || by_bytes {
            let _ = self.requests.send(Request::Flush(None));
        }
    }

    /// Waits for a flush when the write backlog is over [`MAX_BACKLOG_BYTES`]; a failed
    /// flush is the flush task's to report, and fails only the writes that need it.
    pub(super) async fn pace(&self) {
        if self.bytes.rule().wait {
            let _ = self.flush().await;
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
    fn sled_writes_at_least_every_fifty_ms() {
        // log.flush.interval.ms -> sled's flush period
        let cases = [
            (None, Some(50)),
            (Some(1000), Some(50)),
            (Some(50), Some(50)),
            (Some(20), Some(20)),
            (Some(0), Some(1)),
            (Some(u64::MAX), Some(50)),
        ];
        for (wanted, period) in cases {
            assert_eq!(sled_flush_period(wanted), period, "{wanted:?}");
        }
        // A dynamic interval above the period adds no flushes; one below it does.
        assert_eq!(extra_interval(Some(1000), sled_flush_period(Some(1000))), 0);
        assert_eq!(extra_interval(Some(10), sled_flush_period(Some(1000))), 10);
    }

    #[test]
    fn the_backlog_starts_flushes_and_then_holds_writers() {
        const M: u64 = 1 << 20;
        // (appended, requested, flushed) -> (flush, wait)
        let cases = [
            ((0, 0, 0), (false, false)),
            ((63 * M, 0, 0), (false, false)),
            ((64 * M, 0, 0), (true, false)),
            ((100 * M, 64 * M, 0), (false, false)),
            ((128 * M, 64 * M, 0), (true, false)),
            ((256 * M, 256 * M, 0), (false, false)),
            ((256 * M + 1, 256 * M, 0), (false, true)),
            ((400 * M, 200 * M, 0), (true, true)),
            ((400 * M, 400 * M, 200 * M), (false, false)),
            ((5000 * M, 4990 * M, 4700 * M), (false, true)),
            // A flush that started after the counts were read cannot make these go negative.
            ((10 * M, 20 * M, 20 * M), (false, false)),
        ];
        for ((appended, requested, flushed), (flush, wait)) in cases {
            assert_eq!(
                backlog_rule(appended, requested, flushed),
                Backlog { flush, wait },
                "appended {appended} requested {requested} flushed {flushed}"
            );
        }
    }

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
