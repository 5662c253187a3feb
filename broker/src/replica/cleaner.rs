//! The log cleaner's threads (Kafka's `LogCleaner`): each repeatedly surveys the hosted
//! replicas of compacted topics, picks the filthiest log that is due
//! ([`crate::log::cleaner`]) and no other thread is cleaning, and runs one pass over it
//! ([`crate::log::PartitionLog::clean`]); with nothing due it sleeps
//! `log.cleaner.backoff.ms`. Leaders and followers clean their own copies, as in Kafka.
//!
//! Plain threads at a lowered priority, never the async runtime: a pass reads and
//! rewrites up to a dedupe buffer's worth of the log. `log.cleaner.threads`, the I/O rate
//! and the buffer size change at run time (dynamic broker configs); threads beyond the
//! wanted count park.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tributary_common::ids::TopicPartition;

use super::{Partition, ReplicaManager};
use crate::config::BrokerConfig;
use crate::log::cleaner::{self, Dirt};
use crate::log::{CleanLimits, ProducerView};

/// The cleaner's settings (static or dynamic).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CleanerSettings {
    /// `log.cleaner.enable`.
    pub enabled: bool,
    /// `log.cleaner.threads`.
    pub threads: usize,
    /// `log.cleaner.io.max.bytes.per.second`, shared by the threads.
    pub io_bytes_per_second: f64,
    /// `log.cleaner.dedupe.buffer.size` × `log.cleaner.io.buffer.load.factor`, shared.
    pub map_bytes: usize,
    /// `log.cleaner.backoff.ms`.
    pub backoff: Duration,
}

impl CleanerSettings {
    /// The settings in `c`.
    pub(crate) fn from_config(c: &BrokerConfig) -> CleanerSettings {
        CleanerSettings {
            enabled: c.log_cleaner_enable,
            threads: c.log_cleaner_threads,
            io_bytes_per_second: c.log_cleaner_io_max_bytes_per_second,
            map_bytes: (c.log_cleaner_dedupe_buffer_size.max(0) as f64 * c.log_cleaner_io_buffer_load_factor) as usize,
            backoff: Duration::from_millis(c.log_cleaner_backoff_ms),
        }
    }

    /// One thread's limits.
    fn limits(&self) -> CleanLimits {
        let threads = self.threads.max(1);
        CleanLimits {
            map_bytes: self.map_bytes / threads,
            io_bytes_per_second: self.io_bytes_per_second / threads as f64,
        }
    }
}

struct Shared {
    settings: CleanerSettings,
    /// Logs a thread is cleaning now.
    busy: HashSet<TopicPartition>,
    /// Logs whose last pass failed, left alone until then.
    resting: HashMap<TopicPartition, Instant>,
    stopping: bool,
}

/// The cleaner threads of one broker.
pub(crate) struct LogCleaner {
    replicas: Weak<ReplicaManager>,
    shared: Mutex<Shared>,
    wake: Condvar,
    stopping: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl LogCleaner {
    /// Starts `settings.threads` threads over the replicas `replicas` hosts.
    pub(crate) fn start(replicas: &Arc<ReplicaManager>, settings: CleanerSettings) -> Arc<LogCleaner> {
        let cleaner = Arc::new(LogCleaner {
            replicas: Arc::downgrade(replicas),
            shared: Mutex::new(Shared {
                settings: settings.clone(),
                busy: HashSet::new(),
                resting: HashMap::new(),
                stopping: false,
            }),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        cleaner.configure(settings);
        cleaner
    }

    /// Applies new settings: more threads start at once, surplus ones park.
    pub(crate) fn configure(self: &Arc<Self>, settings: CleanerSettings) {
        let wanted = if settings.enabled { settings.threads } else { 0 };
        self.shared.lock().expect("cleaner lock").settings = settings;
        let mut threads = self.threads.lock().expect("cleaner threads lock");
        while threads.len() < wanted {
            let index = threads.len();
            let me = self.clone();
            let handle = std::thread::Builder::new()
                .name(format!("log-cleaner-{index}"))
                .spawn(move || {
                    super::lower_priority();
                    me.run(index);
                })
                .expect("starting a log cleaner thread");
            threads.push(handle);
        }
        self.wake.notify_all();
    }

    /// Stops the threads (a pass in progress stops at its next batch, leaving a valid
    /// log) and waits for them.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.shared.lock().expect("cleaner lock").stopping = true;
        self.wake.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().expect("cleaner threads lock"));
        for t in threads {
            let _ = t.join();
        }
    }

    fn run(&self, index: usize) {
        loop {
            let (settings, work) = {
                let mut shared = self.shared.lock().expect("cleaner lock");
                if shared.stopping {
                    return;
                }
                let active = shared.settings.enabled && index < shared.settings.threads;
                let work = if active { self.pick(&mut shared) } else { None };
                (shared.settings.clone(), work)
            };
            let Some((tp, partition, dirt)) = work else {
                let shared = self.shared.lock().expect("cleaner lock");
                if shared.stopping {
                    return;
                }
                let _ = self.wake.wait_timeout(shared, settings.backoff.max(Duration::from_millis(10)));
                continue;
            };
            let failed = self.clean(&tp, &partition, &dirt, &settings);
            let mut shared = self.shared.lock().expect("cleaner lock");
            shared.busy.remove(&tp);
            if failed {
                shared.resting.insert(tp, Instant::now() + settings.backoff.max(Duration::from_secs(1)));
            }
        }
    }

    /// The filthiest due log nobody is cleaning, marked busy.
    fn pick(&self, shared: &mut Shared) -> Option<(TopicPartition, Arc<Partition>, Dirt)> {
        let replicas = self.replicas.upgrade()?;
        let now = tributary_common::time::now_ms();
        let instant = Instant::now();
        shared.resting.retain(|_, until| *until > instant);
        let mut candidates = Vec::new();
        for (tp, p) in replicas.all() {
            let config = p.role().config;
            if !config.compact || shared.busy.contains(&tp) || shared.resting.contains_key(&tp) {
                continue;
            }
            // Nothing at or past the last stable offset: open transactions are not compacted.
            let dirt = p.log().survey(now, p.last_stable_offset(), config.compaction.min_lag_ms);
            if cleaner::due(&dirt, &config.compaction, now) {
                candidates.push((tp, p, dirt));
            }
        }
        let dirts: Vec<Dirt> = candidates.iter().map(|(_, _, d)| *d).collect();
        let chosen = candidates.swap_remove(cleaner::filthiest(&dirts)?);
        shared.busy.insert(chosen.0.clone());
        Some(chosen)
    }

    /// One pass; returns whether it failed.
    fn clean(&self, tp: &TopicPartition, partition: &Partition, dirt: &Dirt, settings: &CleanerSettings) -> bool {
        let config = partition.role().config;
        let now = tributary_common::time::now_ms();
        let last_of_producer = |pid: i64, last: i64| partition.is_last_batch_of(pid, last);
        let aborted_txns = partition.aborted_ranges();
        let aborted = |pid: i64, offset: i64| {
            aborted_txns.iter().any(|t| t.producer_id == pid && t.first_offset <= offset && offset < t.last_offset)
        };
        let producers = ProducerView { last_of_producer: &last_of_producer, aborted: &aborted };
        let stop = || self.stopping.load(Ordering::Acquire);
        let before = partition.log().offsets().size_bytes;
        tracing::info!(%tp, first_dirty_offset = dirt.first_dirty, first_uncleanable_offset = dirt.upper, dirty_ratio = format!("{:.2}", dirt.ratio()), dirty_bytes = dirt.dirty_bytes, tombstones_due = dirt.tombstones_due, "beginning to compact the log");
        match partition.log().clean(dirt, now, &config.compaction, &producers, settings.limits(), &stop) {
            Ok(Some(s)) => {
                let after = partition.log().offsets().size_bytes;
                tracing::info!(
                    %tp,
                    cleaned_up_to = s.upper,
                    dirty_ratio = format!("{:.2}", dirt.ratio()),
                    keys = s.keys,
                    log_bytes_before = before,
                    log_bytes_after = after,
                    rewritten_bytes_before = s.bytes_before,
                    rewritten_bytes_after = s.bytes_after,
                    records_removed = s.records_removed,
                    tombstones_removed = s.tombstones_removed,
                    markers_removed = s.markers_removed,
                    chunks_dropped = s.chunks_dropped,
                    elapsed_ms = s.elapsed_ms,
                    "compacted the log: kept the latest record of each key below the cleaned offset"
                );
                false
            }
            Ok(None) => false,
            Err(e) => {
                tracing::error!(%tp, error = %e, "the log cleaner failed on this partition; its log stays valid but uncompacted; retrying after log.cleaner.backoff.ms; check the data directory");
                true
            }
        }
    }
}
