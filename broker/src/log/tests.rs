use super::*;

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

fn policy() -> FlushPolicy {
    FlushPolicy { interval_ms: Some(1000), interval_messages: u64::MAX }
}

/// A batch of one record per value, timestamped `ts`.
fn batch_of(values: &[Vec<u8>], ts: i64) -> (BatchHeader, Bytes) {
    let recs: Vec<batch::KeyValue<'_>> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    let b = batch::build(0, ts, &recs);
    batch::validate(&b, usize::MAX).unwrap().remove(0)
}

fn records(n: usize, ts: i64) -> (BatchHeader, Bytes) {
    batch_of(&(0..n).map(|i| format!("v{i}").into_bytes()).collect::<Vec<_>>(), ts)
}

#[tokio::test]
async fn appends_assign_contiguous_offsets_and_reads_return_whole_batches() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    let a = log.append(&[records(3, 10)], 0, None).unwrap();
    let b = log.append(&[records(2, 20)], 0, None).unwrap();
    assert_eq!((a.base_offset, a.last_offset), (0, 2));
    assert_eq!((b.base_offset, b.last_offset), (3, 4));
    assert_eq!(log.offsets().log_end_offset, 5);
    // Offset 1 lives in the first batch, which is returned whole, followed by the second.
    let read = log.read(1, 1 << 20, 5).unwrap();
    let first = BatchHeader::parse(&read).unwrap();
    assert_eq!(first.base_offset, 0);
    let second = BatchHeader::parse(&read[first.total_len()..]).unwrap();
    assert_eq!(second.base_offset, 3);
    // The upper bound (high watermark) hides the second batch.
    assert_eq!(log.read(0, 1 << 20, 3).unwrap().len(), first.total_len());
    // At the log end there is nothing to read; past it is out of range.
    assert!(log.read(5, 1 << 20, 5).unwrap().is_empty());
    assert!(matches!(log.read(6, 1 << 20, 5), Err(Error::OffsetOutOfRange { .. })));
}

#[tokio::test]
async fn the_first_batch_is_returned_even_when_larger_than_max_bytes() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    log.append(&[records(10, 1)], 0, None).unwrap();
    log.append(&[records(10, 1)], 0, None).unwrap();
    let read = log.read(0, 1, 20).unwrap();
    assert_eq!(read.len(), BatchHeader::parse(&read).unwrap().total_len());
}

#[tokio::test]
async fn stored_batches_carry_the_leader_epoch_and_a_valid_crc() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    log.append(&[records(1, 1)], 4, Some(777)).unwrap();
    let read = log.read(0, 1 << 20, 1).unwrap();
    let h = BatchHeader::parse(&read).unwrap();
    assert_eq!((h.partition_leader_epoch, h.max_timestamp), (4, 777));
    assert!(batch::validate(&read, usize::MAX).is_ok());
}

#[tokio::test]
async fn data_survives_reopening_after_a_flush() {
    let dir = tempdir();
    {
        let store = LogStore::open(dir.path(), policy()).unwrap();
        let log = store.open_partition(&tp(), None).unwrap();
        log.append(&[records(3, 1)], 0, None).unwrap();
        store.flush().await.unwrap();
        store.close().await;
    }
    let store = reopen(dir.path());
    let log = store.open_partition(&tp(), None).unwrap();
    assert_eq!(log.offsets().log_end_offset, 3);
    assert_eq!(store.local_partitions(), vec![(tp(), None)]);
}

#[tokio::test]
async fn recovery_cuts_a_corrupt_tail_and_keeps_what_precedes_it() {
    let dir = tempdir();
    {
        let store = LogStore::open(dir.path(), policy()).unwrap();
        let log = store.open_partition(&tp(), None).unwrap();
        log.append(&[records(2, 1)], 0, None).unwrap();
        log.append(&[records(2, 1)], 0, None).unwrap();
        log.append(&[records(2, 1)], 0, None).unwrap();
        // Damage the middle batch as a torn write would: its bytes no longer match the CRC.
        let tree = tree_holding(&log, 2);
        let mut damaged = tree.get(key(2)).unwrap().unwrap().to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        tree.insert(key(2), damaged).unwrap();
        store.flush().await.unwrap();
        store.close().await;
    }
    let store = reopen(dir.path());
    let mut observed = Vec::new();
    let log = store.open_partition_observing(&tp(), None, &mut |h| observed.push(h.base_offset)).unwrap();
    assert_eq!(log.offsets().log_end_offset, 2, "the damaged batch and everything after it are cut");
    assert_eq!(observed, vec![0], "only the batches kept are reported");
    assert!(tree_holding(&log, 4).get(key(4)).unwrap().is_none());
    // New appends continue from the cut.
    assert_eq!(log.append(&[records(1, 1)], 0, None).unwrap().base_offset, 2);
}

#[tokio::test]
async fn a_new_topic_id_replaces_an_old_log_of_the_same_name() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let old = TopicId::random();
    let log = store.open_partition(&tp(), Some(old)).unwrap();
    log.append(&[records(2, 1)], 0, None).unwrap();
    drop(log);
    let log = store.open_partition(&tp(), Some(old)).unwrap();
    assert_eq!(log.offsets().log_end_offset, 2);
    drop(log);
    let log = store.open_partition(&tp(), Some(TopicId::random())).unwrap();
    assert_eq!(log.offsets().log_end_offset, 0);
}

#[tokio::test]
async fn retention_deletes_old_batches_from_the_front() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    log.append(&[records(2, 1_000)], 0, None).unwrap();
    log.append(&[records(2, 2_000)], 0, None).unwrap();
    log.append(&[records(2, 9_000)], 0, None).unwrap();
    // Older than 5 s at t=10 s: the first two batches.
    assert_eq!(log.apply_retention(10_000, 5_000, -1, 6).unwrap(), 2);
    assert_eq!(log.offsets().log_start_offset, 4);
    assert!(matches!(log.read(0, 100, 6), Err(Error::OffsetOutOfRange { .. })));
    // By size: anything above 0 bytes goes.
    assert_eq!(log.apply_retention(10_000, -1, 0, 6).unwrap(), 1);
    assert_eq!(log.offsets(), Offsets { log_start_offset: 6, log_end_offset: 6, size_bytes: 0 });
    drop(log);
    let log = store.open_partition(&tp(), None).unwrap();
    assert_eq!(log.offsets().log_end_offset, 6, "an emptied log keeps its end offset across reopen");
}

#[tokio::test]
async fn delete_records_moves_the_log_start_mid_batch_and_survives_a_reopen() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    for _ in 0..3 {
        log.append(&[records(2, 1_000)], 0, None).unwrap();
    }
    // (delete before, log start after): whole batches below go, the one holding it stays.
    for (before, start) in [(1, 1), (0, 1), (3, 3), (6, 6), (9, 6)] {
        assert_eq!(log.delete_records_before(before).unwrap(), start, "before {before}");
        assert_eq!(log.offsets().log_start_offset, start);
    }
    assert!(matches!(log.read(5, 100, 6), Err(Error::OffsetOutOfRange { .. })));
    assert_eq!(log.offsets().size_bytes, 0);
    drop(log);
    let log = store.open_partition(&tp(), None).unwrap();
    assert_eq!((log.offsets().log_start_offset, log.offsets().log_end_offset), (6, 6));
    // A log start inside a batch: the batch is still read whole (clients skip what is below).
    log.append(&[records(3, 1_000)], 0, None).unwrap();
    assert_eq!(log.delete_records_before(7).unwrap(), 7);
    assert!(!log.read(7, 1000, 9).unwrap().is_empty());
    assert!(matches!(log.read(6, 1000, 9), Err(Error::OffsetOutOfRange { .. })));
}

#[tokio::test]
async fn epochs_map_to_end_offsets() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    log.append(&[records(2, 1)], 0, None).unwrap();
    log.append(&[records(3, 1)], 2, None).unwrap();
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 2)));
    assert_eq!(log.end_offset_for_epoch(1), Some((0, 2)));
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 5)));
    assert_eq!(log.end_offset_for_epoch(9), Some((2, 5)));
    assert_eq!(log.end_offset_for_epoch(-1), None);
}

#[tokio::test]
async fn a_follower_stores_the_leaders_batches_unchanged_and_truncates_at_batch_boundaries() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let leader = store.open_partition(&tp(), None).unwrap();
    leader.append(&[records(2, 1)], 1, None).unwrap();
    leader.append(&[records(3, 1)], 4, None).unwrap();
    let follower = store.open_partition(&TopicPartition::new("t", 1), None).unwrap();
    let fetched = batch::validate(&leader.read(0, 1 << 20, 5).unwrap(), usize::MAX).unwrap();
    // Batches must start at the follower's log end.
    assert!(matches!(follower.append_replicated(&fetched[1..]), Err(ReplicaAppendError::NotContiguous { .. })));
    follower.append_replicated(&fetched).unwrap();
    assert_eq!(follower.read(0, 1 << 20, 5).unwrap(), leader.read(0, 1 << 20, 5).unwrap());
    // The epoch cache follows the batches' leader epochs.
    assert_eq!(follower.end_offset_for_epoch(1), Some((1, 2)));
    assert_eq!(follower.end_offset_for_epoch(4), Some((4, 5)));
    // Truncating inside the second batch removes it whole, with its epoch.
    assert_eq!(follower.truncate_to(3).unwrap(), 2);
    assert_eq!(follower.offsets().log_end_offset, 2);
    assert_eq!(follower.latest_epoch(), Some(1));
    assert!(follower.read(2, 1 << 20, 10).unwrap().is_empty());
    // A reset restarts the log at the leader's log start.
    follower.truncate_fully_and_start_at(4).unwrap();
    assert_eq!((follower.offsets().log_start_offset, follower.offsets().log_end_offset), (4, 4));
    assert_eq!(follower.latest_epoch(), None);
}

#[tokio::test]
async fn the_high_watermark_checkpoint_survives_a_restart_capped_at_the_log_end() {
    let dir = tempdir();
    {
        let store = LogStore::open(dir.path(), policy()).unwrap();
        let log = store.open_partition(&tp(), None).unwrap();
        log.append(&[records(4, 1)], 0, None).unwrap();
        log.checkpoint_high_watermark(3).unwrap();
        store.flush().await.unwrap();
        store.close().await;
    }
    let store = reopen(dir.path());
    let log = store.open_partition(&tp(), None).unwrap();
    assert_eq!(log.checkpointed_high_watermark(), 3);
    log.truncate_to(0).unwrap();
    assert_eq!(log.checkpointed_high_watermark(), 0);
}

#[tokio::test]
async fn timestamps_find_offsets() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    log.append(&[records(2, 100)], 0, None).unwrap();
    log.append(&[records(2, 300)], 0, None).unwrap();
    assert_eq!(log.offset_for_timestamp(50, 4).unwrap(), Some((0, 100)));
    assert_eq!(log.offset_for_timestamp(200, 4).unwrap(), Some((2, 300)));
    assert_eq!(log.offset_for_timestamp(400, 4).unwrap(), None);
    assert_eq!(log.max_timestamp(4).unwrap(), Some((3, 300)));
}

fn tree_holding(log: &PartitionLog, offset: i64) -> sled::Tree {
    log.state.lock().unwrap().chunks.holding(offset).unwrap().1.tree.clone()
}

fn chunk_sizes(log: &PartitionLog) -> Vec<(i64, usize)> {
    log.state.lock().unwrap().chunks.iter().map(|(base, c)| (base, c.batches)).collect()
}

/// A one-record batch with a value of `len` bytes.
fn big(len: usize, ts: i64) -> (BatchHeader, Bytes) {
    batch_of(&[vec![b'x'; len]], ts)
}

#[tokio::test]
async fn large_batches_go_nine_to_a_tree_and_read_back_across_trees() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    // 120 KiB batches: nine make a chunk of more than 1 MiB.
    for i in 0..20 {
        log.append(&[big(120 << 10, i)], 0, None).unwrap();
    }
    assert_eq!(chunk_sizes(&log), vec![(0, 9), (9, 9), (18, 2)]);
    // One read crosses from the first tree into the second.
    let read = log.read(7, 3 * (121 << 10), 20).unwrap();
    let offsets: Vec<i64> = batch::validate(&read, usize::MAX).unwrap().iter().map(|(h, _)| h.base_offset).collect();
    assert_eq!(offsets, vec![7, 8, 9]);
    assert_eq!(log.headers_from(0).unwrap().len(), 20);
    assert_eq!(log.offset_for_timestamp(15, 20).unwrap().map(|(o, _)| o), Some(15));
    assert_eq!(log.max_timestamp(20).unwrap().map(|(o, _)| o), Some(19));

    // Truncating inside the second tree drops the third and cuts the second.
    assert_eq!(log.truncate_to(12).unwrap(), 12);
    assert_eq!(chunk_sizes(&log), vec![(0, 9), (9, 3)]);
    log.append(&[big(120 << 10, 12)], 0, None).unwrap();
    assert_eq!(chunk_sizes(&log), vec![(0, 9), (9, 4)]);
    store.flush().await.unwrap();
    let size = log.offsets().size_bytes;
    drop(log);

    // Reopened, the same chunks and offsets.
    let log = store.open_partition(&tp(), None).unwrap();
    assert_eq!(chunk_sizes(&log), vec![(0, 9), (9, 4)]);
    assert_eq!((log.offsets().log_end_offset, log.offsets().size_bytes), (13, size));

    // Retention by size drops the first tree whole, then cuts into the second.
    let one = size / 13;
    assert_eq!(log.apply_retention(0, -1, (3 * one) as i64, 13).unwrap(), 10);
    assert_eq!(chunk_sizes(&log), vec![(9, 3)]);
    assert_eq!(log.offsets().log_start_offset, 10);
    assert!(matches!(log.read(5, 1 << 20, 13), Err(Error::OffsetOutOfRange { .. })));
    assert_eq!(BatchHeader::parse(&log.read(10, 1, 13).unwrap()).unwrap().base_offset, 10);

    // Deleting the partition drops every tree it had.
    drop(log);
    store.delete_partition(&tp()).unwrap();
    assert!(chunks::tree_names(&store.db, "log/t/0").is_empty());
}

#[tokio::test]
async fn a_log_written_as_one_tree_opens_and_continues_in_chunks() {
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    // The layout before chunks: every batch in the partition's own tree.
    let old = store.db.open_tree("log/t/0").unwrap();
    let mut offset = 0;
    for _ in 0..12 {
        let (h, bytes) = big(120 << 10, 1);
        let mut value = sled::IVec::from(bytes.as_ref());
        batch::stamp_in_place(&mut value, offset, 0, None);
        old.insert(key(offset), value).unwrap();
        offset += i64::from(h.last_offset_delta) + 1;
    }
    let log = store.open_partition(&tp(), None).unwrap();
    assert_eq!(log.offsets().log_end_offset, 12);
    assert_eq!(log.append(&[big(120 << 10, 1)], 0, None).unwrap().base_offset, 12);
    assert_eq!(chunk_sizes(&log), vec![(0, 12), (12, 1)]);
    assert_eq!(log.headers_from(11).unwrap().len(), 2);
}

/// Reopens a store just closed: sled releases its file lock from a background thread
/// shortly after the last handle goes, so an immediate reopen may briefly find it held.
fn reopen(dir: &Path) -> LogStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match LogStore::open(dir, policy()) {
            Ok(store) => return store,
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

struct TempDir(std::path::PathBuf);
impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn tempdir() -> TempDir {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("tributary-log-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    TempDir(p)
}
