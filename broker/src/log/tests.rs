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
    let log = store.open_partition_observing(&tp(), None, &mut each_batch(|h, _| observed.push(h.base_offset))).unwrap();
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
    follower.append_replicated(&fetched).unwrap();
    // Batches may not start below the follower's log end.
    assert!(matches!(follower.append_replicated(&fetched[1..]), Err(ReplicaAppendError::NotContiguous { .. })));
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
    // The first record holding the largest timestamp (KAFKA-16310).
    assert_eq!(log.max_timestamp(4).unwrap(), Some((2, 300)));
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
/// One batch of keyed records (`None` value = tombstone) from an idempotent producer
/// (`pid` ≥ 0) or none, compressed with `compression`.
fn keyed(
    pid: i64,
    seq: i32,
    compression: kafka_protocol::records::Compression,
    recs: &[(&str, Option<&str>)],
) -> (BatchHeader, Bytes) {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: if pid >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch where offset minus sequence changes.
            sequence: if pid >= 0 { seq + i as i32 } else { i as i32 - 1 },
            timestamp: 1_000,
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
    batch::validate(&buf.freeze(), usize::MAX).unwrap().remove(0)
}

/// Every data record of the log as (offset, key, value) (markers left out, as consumers do).
fn all_records(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let end = log.offsets().log_end_offset;
    let raw = log.read(log.offsets().log_start_offset, usize::MAX, end).unwrap();
    let mut out = Vec::new();
    for (h, b) in batch::verify_replicated(&raw).unwrap().into_iter().filter(|(h, _)| !h.is_control()) {
        let recs = batch::body::decode(&h, &b).unwrap();
        for r in &recs.list {
            let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
            out.push((h.base_offset + r.offset_delta, text(recs.key(r)).unwrap(), text(recs.value(r))));
        }
    }
    out
}

const NO_LIMITS: CleanLimits = CleanLimits { map_bytes: 1 << 30, io_bytes_per_second: f64::MAX };

fn compaction(delete_retention_ms: i64) -> cleaner::Compaction {
    cleaner::Compaction { min_cleanable_ratio: 0.5, min_lag_ms: 0, max_lag_ms: i64::MAX, delete_retention_ms }
}

/// Closes the open chunk (as the cleaner does once it is idle past `segment.ms`) and runs
/// one pass at `now` if the log is due; returns what it did.
fn clean_now(
    log: &PartitionLog,
    now: i64,
    c: &cleaner::Compaction,
    last_of: &dyn Fn(i64, i64) -> bool,
) -> Option<compact::CleanStats> {
    log.set_roll(Roll { bytes: u64::MAX, ms: 1 });
    let dirt = log.survey(now, log.offsets().log_end_offset, 0);
    if !cleaner::due(&dirt, c, now) {
        return None;
    }
    let producers = ProducerView { last_of_producer: last_of, aborted: &|_, _| false };
    log.clean(&dirt, now, c, &producers, NO_LIMITS, &|| false).unwrap()
}

#[tokio::test]
async fn compaction_keeps_the_latest_record_of_each_key_at_its_offset_in_every_codec() {
    use kafka_protocol::records::Compression;
    for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let dir = tempdir();
        let store = LogStore::open(dir.path(), policy()).unwrap();
        let log = store.open_partition(&tp(), None).unwrap();
        // 20 batches of 5 updates over keys k0..k3; key k(n % 4) gets value n.
        let mut n = 0;
        for _ in 0..20 {
            let values: Vec<(String, String)> = (0..5)
                .map(|_| {
                    n += 1;
                    (format!("k{}", n % 4), format!("v{n}"))
                })
                .collect();
            let recs: Vec<(&str, Option<&str>)> = values.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))).collect();
            log.append(&[keyed(-1, 0, codec, &recs)], 0, None).unwrap();
        }
        let before = log.offsets();
        let now = tributary_common::time::now_ms() + 1_000;
        let stats = clean_now(&log, now, &compaction(60_000), &|_, _| false).expect("due");
        assert_eq!(stats.upper, 100);
        let got = all_records(&log);
        let want: Vec<(i64, String, Option<String>)> =
            (97..=100).map(|n: i64| (n - 1, format!("k{}", n % 4), Some(format!("v{n}")))).collect();
        assert_eq!(got, want, "{codec:?}");
        let after = log.offsets();
        assert_eq!((after.log_start_offset, after.log_end_offset), (before.log_start_offset, before.log_end_offset));
        assert!(after.size_bytes < before.size_bytes / 5, "{codec:?}: {} -> {}", before.size_bytes, after.size_bytes);
        // Nothing dirty: the next survey finds the log clean.
        assert!(!cleaner::due(&log.survey(now, 100, 0), &compaction(60_000), now));
        // New appends go to a new chunk; offsets continue.
        let next = log.append(&[keyed(-1, 0, codec, &[("k1", Some("new"))])], 0, None).unwrap();
        assert_eq!(next.base_offset, 100);
    }
}

#[tokio::test]
async fn tombstones_stay_for_delete_retention_after_their_first_pass_and_older_values_go_at_once() {
    use kafka_protocol::records::Compression::None as Plain;
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    log.append(&[keyed(-1, 0, Plain, &[("a", Some("1")), ("b", Some("1"))])], 0, None).unwrap();
    log.append(&[keyed(-1, 0, Plain, &[("b", Some("2"))])], 0, None).unwrap();
    log.append(&[keyed(-1, 0, Plain, &[("a", None)])], 0, None).unwrap();
    let t0 = tributary_common::time::now_ms() + 1_000;
    let c = compaction(5_000);
    clean_now(&log, t0, &c, &|_, _| false).expect("first pass");
    let first = all_records(&log);
    assert_eq!(
        first,
        vec![(2, "b".into(), Some("2".into())), (3, "a".into(), None)],
        "the tombstone stays, a=1 and b=1 go"
    );
    // Nothing dirty and the tombstone not expired: not due.
    assert!(clean_now(&log, t0 + 4_999, &c, &|_, _| false).is_none());
    // Expired: due with nothing dirty (KIP-534), and the tombstone goes.
    let stats = clean_now(&log, t0 + 5_000, &c, &|_, _| false).expect("tombstone pass");
    assert_eq!(stats.tombstones_removed, 1);
    assert_eq!(all_records(&log), vec![(2, "b".into(), Some("2".into()))]);
    // The log's last batch stays, emptied, so the log end does not move back.
    let raw = log.read(3, usize::MAX, 4).unwrap();
    let last = BatchHeader::parse(&raw).unwrap();
    assert_eq!((last.base_offset, last.record_count), (3, 0));
    // ... and the log opens again with its gap, offsets unchanged.
    store.flush().await.unwrap();
    store.close().await;
    drop(log);
    drop(store);
    let store = reopen(dir.path());
    let log = store.open_partition(&tp(), None).unwrap();
    assert_eq!(log.offsets().log_end_offset, 4);
    assert_eq!(all_records(&log), vec![(2, "b".into(), Some("2".into()))]);
    let next = log.append(&[keyed(-1, 0, Plain, &[("c", Some("1"))])], 0, None).unwrap();
    assert_eq!(next.base_offset, 4);
}

#[tokio::test]
async fn an_idempotent_producers_last_batch_is_kept_empty_with_its_offsets_and_sequence() {
    use kafka_protocol::records::Compression::None as Plain;
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    log.append(&[keyed(7, 0, Plain, &[("a", Some("1")), ("a", Some("2"))])], 0, None).unwrap(); // 0-1
    log.append(&[keyed(7, 2, Plain, &[("a", Some("3"))])], 0, None).unwrap(); // 2
    log.append(&[keyed(-1, 0, Plain, &[("a", Some("4"))])], 0, None).unwrap(); // 3, no producer
    let now = tributary_common::time::now_ms() + 1_000;
    // Producer 7's last batch ends at offset 2.
    let stats = clean_now(&log, now, &compaction(0), &|pid, last| pid == 7 && last == 2).expect("due");
    assert_eq!(stats.batches_deleted, 1, "the first batch goes whole");
    let raw = log.read(0, usize::MAX, 4).unwrap();
    let batches = batch::verify_replicated(&raw).unwrap();
    let kept: Vec<(i64, i64, i32, i32)> =
        batches.iter().map(|(h, _)| (h.base_offset, h.last_offset(), h.record_count, h.base_sequence)).collect();
    assert_eq!(kept, vec![(2, 2, 0, 2), (3, 3, 1, -1)]);
    // A follower copying the cleaned log keeps the gap and the empty batch.
    let follower_store = LogStore::open(&dir.path().join("follower"), policy()).unwrap();
    let follower = follower_store.open_partition(&tp(), None).unwrap();
    follower.append_replicated(&batches).unwrap();
    assert_eq!(follower.offsets().log_end_offset, 4);
    assert_eq!(all_records(&follower), vec![(3, "a".into(), Some("4".into()))]);
    // A batch below the log end is still refused.
    assert!(matches!(follower.append_replicated(&batches[1..]), Err(ReplicaAppendError::NotContiguous { .. })));
}

#[tokio::test]
async fn the_cleaner_stops_at_the_high_watermark_the_open_chunk_and_its_map_budget() {
    use kafka_protocol::records::Compression::None as Plain;
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    // One chunk per batch.
    log.set_roll(Roll { bytes: 1, ms: i64::MAX });
    for i in 0..6 {
        let v = format!("{i}");
        log.append(&[keyed(-1, 0, Plain, &[("k", Some(v.as_str())), (&format!("u{i}"), Some("x"))])], 0, None).unwrap();
    }
    let now = tributary_common::time::now_ms() + 1_000;
    // The open (last) chunk is not cleanable; the high watermark at 6 stops before chunk 6..8.
    let dirt = log.survey(now, 6, 0);
    assert_eq!((dirt.first_dirty, dirt.upper), (0, 6));
    // A map budget of one key's entry: the pass maps one chunk and cleans up to its end.
    let tight = CleanLimits { map_bytes: 1, io_bytes_per_second: f64::MAX };
    let none = ProducerView { last_of_producer: &|_, _| false, aborted: &|_, _| false };
    let stats = log.clean(&dirt, now, &compaction(0), &none, tight, &|| false).unwrap().unwrap();
    assert_eq!(stats.upper, 2);
    assert_eq!(log.survey(now, 6, 0).first_dirty, 2);
    let stats = log.clean(&log.survey(now, 6, 0), now, &compaction(0), &none, NO_LIMITS, &|| false).unwrap().unwrap();
    assert_eq!(stats.upper, 6);
    let keys: Vec<(i64, String)> = all_records(&log).into_iter().map(|(o, k, _)| (o, k)).collect();
    let want: Vec<(i64, String)> = vec![
        (1, "u0".into()),
        (3, "u1".into()),
        (4, "k".into()),
        (5, "u2".into()),
        (6, "k".into()),
        (7, "u3".into()),
        (8, "k".into()),
        (9, "u4".into()),
        (10, "k".into()),
        (11, "u5".into()),
    ];
    assert_eq!(keys, want, "k's values at 6, 8 and 10 are above the high watermark or in the open chunk");
}

#[tokio::test]
async fn aborted_transactions_records_go_and_markers_follow_their_transactions_out() {
    use crate::record::control::{marker_batch, Marker};
    use kafka_protocol::records::Compression::None as Plain;
    let txn = |pid: i64, recs: &[(&str, Option<&str>)]| {
        let (_, b) = keyed(pid, 0, Plain, recs);
        let mut raw = b.to_vec();
        crate::record::set_transactional(&mut raw, pid, 0);
        batch::validate(&Bytes::from(raw), usize::MAX).unwrap().remove(0)
    };
    let marker =
        |pid: i64, m: Marker| batch::validate(&marker_batch(pid, 0, 0, m, 1_000), usize::MAX).unwrap().remove(0);
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    log.append(&[txn(1, &[("k", Some("a1"))])], 0, None).unwrap(); // 0, committed below
    log.append(&[marker(1, Marker::Commit)], 0, None).unwrap(); // 1
    log.append(&[txn(2, &[("k", Some("b1")), ("j", Some("b2"))])], 0, None).unwrap(); // 2-3, aborted below
    log.append(&[marker(2, Marker::Abort)], 0, None).unwrap(); // 4
    log.append(&[keyed(-1, 0, Plain, &[("k", Some("c1"))])], 0, None).unwrap(); // 5
    log.append(&[keyed(-1, 0, Plain, &[("z", Some("1"))])], 0, None).unwrap(); // 6, the log's last
    let aborted = |pid: i64, offset: i64| pid == 2 && (2..4).contains(&offset);
    let producers = ProducerView { last_of_producer: &|_, _| false, aborted: &aborted };
    let c = compaction(1_000);
    let t0 = tributary_common::time::now_ms() + 1_000;
    log.set_roll(Roll { bytes: u64::MAX, ms: 1 });
    let dirt = log.survey(t0, 7, 0);
    let first = log.clean(&dirt, t0, &c, &producers, NO_LIMITS, &|| false).unwrap().unwrap();
    assert_eq!(first.markers_removed, 0, "markers stay for delete.retention.ms after their first pass");
    // The aborted records never count as k's latest value and are gone; a1 was superseded.
    assert_eq!(all_records(&log), vec![(5, "k".into(), Some("c1".into())), (6, "z".into(), Some("1".into()))]);
    let offsets: Vec<i64> = batch::verify_replicated(&log.read(0, usize::MAX, 7).unwrap())
        .unwrap()
        .iter()
        .map(|(h, _)| h.base_offset)
        .collect();
    assert_eq!(offsets, vec![1, 4, 5, 6]);
    // Past the horizon the markers go too (their transactions have nothing left).
    let later = log.survey(t0 + 1_000, 7, 0);
    assert!(cleaner::due(&later, &c, t0 + 1_000), "markers waiting for their horizon make the log due");
    let second = log.clean(&later, t0 + 1_000, &c, &producers, NO_LIMITS, &|| false).unwrap().unwrap();
    assert_eq!(second.markers_removed, 2);
    let offsets: Vec<i64> = batch::verify_replicated(&log.read(0, usize::MAX, 7).unwrap())
        .unwrap()
        .iter()
        .map(|(h, _)| h.base_offset)
        .collect();
    assert_eq!(offsets, vec![5, 6]);
}

#[tokio::test]
async fn a_follower_truncates_across_a_compacted_range_at_batch_boundaries() {
    use kafka_protocol::records::Compression::None as Plain;
    let dir = tempdir();
    let store = LogStore::open(dir.path(), policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    for v in ["1", "2", "3", "4"] {
        log.append(&[keyed(-1, 0, Plain, &[("k", Some(v)), ("k", Some(v))])], 0, None).unwrap();
    }
    clean_now(&log, tributary_common::time::now_ms() + 1_000, &compaction(0), &|_, _| false).unwrap();
    // Only k=4 (offset 7) is left, in the log's last batch (6-7); 0-5 are gaps.
    assert_eq!(all_records(&log), vec![(7, "k".into(), Some("4".into()))]);
    // Truncating into a gap lands on the gap's offset; into a batch, on the batch's start.
    assert_eq!(log.truncate_to(9).unwrap(), 8);
    assert_eq!(log.truncate_to(7).unwrap(), 6);
    assert_eq!(log.offsets().log_end_offset, 6);
    assert_eq!(log.truncate_to(3).unwrap(), 3);
    let next = log.append(&[keyed(-1, 0, Plain, &[("k", Some("5"))])], 0, None).unwrap();
    assert_eq!(next.base_offset, 3);
    assert_eq!(all_records(&log), vec![(3, "k".into(), Some("5".into()))]);
}

/// A [`Rebuild`] that records what it is offered and handed.
#[derive(Default)]
struct Recorder {
    /// Whether it takes a snapshot offered.
    take: bool,
    offered: Option<(i64, Vec<u8>)>,
    batches: Vec<i64>,
    discarded: bool,
}

impl Rebuild for Recorder {
    fn snapshot(&mut self, offset: i64, raw: &[u8]) -> bool {
        self.offered = Some((offset, raw.to_vec()));
        self.take
    }
    fn discard_snapshot(&mut self) {
        self.discarded = true;
        self.batches.clear();
    }
    fn batch(&mut self, h: &BatchHeader, _: Option<Marker>) {
        self.batches.push(h.base_offset);
    }
}

/// A checkpoint point at `offset` with the log's truncation count now.
fn at(log: &PartitionLog, offset: i64) -> Point {
    Point { offset, ..log.end_point() }
}

fn summary_of(store: &LogStore, chunk: &str) -> Option<chunks::Summary> {
    let tree = store.db.open_tree("chunk-summaries").unwrap();
    tree.get(chunk).unwrap().map(|raw| serde_json::from_slice(&raw).unwrap())
}

/// Eight chunks of one two-record batch each (offsets 0..16); a snapshot "at <offset>"
/// stored at `snapshot` and the recovery point at 12.
async fn chunked_log(dir: &Path, snapshot: i64) -> (Vec<(i64, usize)>, Offsets) {
    let store = LogStore::open(dir, policy()).unwrap();
    let log = store.open_partition(&tp(), None).unwrap();
    log.set_roll(Roll { bytes: 1, ms: i64::MAX });
    for i in 0..6 {
        log.append(&[records(2, i)], 0, None).unwrap();
    }
    for i in 6..8 {
        log.append(&[records(2, i)], 0, None).unwrap();
    }
    assert!(log.save_snapshot(at(&log, snapshot), format!("at {snapshot}").as_bytes()).unwrap());
    log.set_recovery_point(at(&log, 12)).unwrap();
    let before = (chunk_sizes(&log), log.offsets());
    store.flush().await.unwrap();
    store.close().await;
    before
}

#[tokio::test]
async fn a_restart_takes_closed_chunks_below_the_snapshot_from_their_summaries() {
    let dir = tempdir();
    let (chunks_before, offsets_before) = chunked_log(dir.path(), 8).await;
    assert_eq!(chunks_before.len(), 8);
    let store = reopen(dir.path());
    let mut taken = Recorder { take: true, ..Recorder::default() };
    let log = store.open_partition_observing(&tp(), None, &mut taken).unwrap();
    assert_eq!(taken.offered, Some((8, b"at 8".to_vec())));
    assert_eq!(taken.batches, vec![8, 10, 12, 14], "only the batches from the snapshot on are reported");
    assert_eq!(log.recovered(), (4, 4), "chunks 0-6 end at or below the snapshot: not read");
    assert_eq!((chunk_sizes(&log), log.offsets()), (chunks_before.clone(), offsets_before.clone()));
    // Everything still reads, and appends go on from the end.
    assert_eq!(log.headers_from(0).unwrap().len(), 8);
    assert_eq!(BatchHeader::parse(&log.read(3, 1, 16).unwrap()).unwrap().base_offset, 2);
    assert_eq!(log.append(&[records(1, 9)], 0, None).unwrap().base_offset, 16);
    // The last chunk takes appends again: it has no summary; the closed ones keep theirs.
    assert!(summary_of(&store, "log/t/0@16").is_none());
    assert_eq!(summary_of(&store, "log/t/0@2").map(|s| (s.base, s.batches, s.end)), Some((2, 1, 4)));
}

#[tokio::test]
async fn a_restart_without_a_usable_snapshot_reads_every_chunk_and_reports_every_batch() {
    let dir = tempdir();
    let (chunks_before, offsets_before) = chunked_log(dir.path(), 8).await;
    // Refused (another version, damaged): every batch is reported.
    let store = reopen(dir.path());
    let mut refused = Recorder::default();
    let log = store.open_partition_observing(&tp(), None, &mut refused).unwrap();
    assert_eq!(refused.offered.map(|(at, _)| at), Some(8));
    assert_eq!(refused.batches, (0..8).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(log.recovered(), (0, 8));
    assert_eq!((chunk_sizes(&log), log.offsets()), (chunks_before.clone(), offsets_before.clone()));

    // A snapshot past the recovery point is never offered: batches it saw may be lost.
    let dir = tempdir();
    chunked_log(dir.path(), 14).await;
    let store = reopen(dir.path());
    let mut taken = Recorder { take: true, ..Recorder::default() };
    let log = store.open_partition_observing(&tp(), None, &mut taken).unwrap();
    assert_eq!(taken.offered, None);
    assert_eq!(taken.batches.len(), 8);
    assert_eq!(log.recovered(), (0, 8));
    assert_eq!((chunk_sizes(&log), log.offsets()), (chunks_before, offsets_before));
}

#[tokio::test]
async fn truncation_drops_a_snapshot_past_the_cut_and_the_summary_of_the_chunk_left_last() {
    let dir = tempdir();
    chunked_log(dir.path(), 8).await;
    let store = reopen(dir.path());
    let log = store.open_partition(&tp(), None).unwrap();
    let before_truncation = at(&log, 16);
    assert!(log.save_snapshot(at(&log, 10), b"at 10").unwrap());
    assert!(summary_of(&store, "log/t/0@6").is_some());
    // Offset 9 is inside the batch at 8: it goes whole, and chunk 6 is the last again.
    assert_eq!(log.truncate_to(9).unwrap(), 8);
    assert!(summary_of(&store, "log/t/0@6").is_none(), "the last chunk takes appends: no summary");
    assert!(summary_of(&store, "log/t/0@8").is_none(), "a dropped chunk's summary goes with it");
    assert!(store.snapshots.get("log/t/0").unwrap().is_none(), "the snapshot saw batches now gone");
    // A snapshot at or below the cut stays.
    assert!(log.save_snapshot(at(&log, 4), b"at 4").unwrap());
    assert_eq!(log.truncate_to(6).unwrap(), 6);
    assert!(store.snapshots.get("log/t/0").unwrap().is_some());
    // A checkpoint taken before a truncation stores nothing after it, even once the log
    // has grown past it again (those offsets hold other batches now).
    for i in 0..6 {
        log.append(&[records(2, i)], 0, None).unwrap();
    }
    assert!(log.offsets().log_end_offset >= 16);
    assert!(!log.save_snapshot(before_truncation, b"stale").unwrap(), "taken before a truncation");
    log.set_recovery_point(before_truncation).unwrap();
    assert_eq!(store.snapshots.get("log/t/0").unwrap().map(|v| v[8..].to_vec()), Some(b"at 4".to_vec()));
    assert_eq!(log.state.lock().unwrap().meta.recovery_point, 6);
}

#[tokio::test]
async fn retention_inside_a_closed_chunk_rewrites_its_summary() {
    let dir = tempdir();
    let size = {
        let store = LogStore::open(dir.path(), policy()).unwrap();
        let log = store.open_partition(&tp(), None).unwrap();
        for i in 0..20 {
            log.append(&[big(120 << 10, i)], 0, None).unwrap();
        }
        assert_eq!(chunk_sizes(&log), vec![(0, 9), (9, 9), (18, 2)]);
        let one = log.offsets().size_bytes / 20;
        // Keep 15 batches: five go from the front of the first (closed) chunk.
        assert_eq!(log.apply_retention(0, -1, (15 * one) as i64, 20).unwrap(), 5);
        assert_eq!(summary_of(&store, "log/t/0@0").map(|s| (s.batches, s.bytes)), Some((4, 4 * one)));
        assert!(log.save_snapshot(at(&log, 20), b"at 20").unwrap());
        log.set_recovery_point(at(&log, 20)).unwrap();
        store.flush().await.unwrap();
        store.close().await;
        log.offsets()
    };
    let store = reopen(dir.path());
    let mut taken = Recorder { take: true, ..Recorder::default() };
    let log = store.open_partition_observing(&tp(), None, &mut taken).unwrap();
    assert_eq!(log.recovered(), (2, 1));
    assert!(taken.batches.is_empty());
    assert_eq!(chunk_sizes(&log), vec![(0, 4), (9, 9), (18, 2)]);
    assert_eq!(log.offsets(), size);
    assert_eq!(log.offsets().log_start_offset, 5);
    assert_eq!(BatchHeader::parse(&log.read(5, 1, 20).unwrap()).unwrap().base_offset, 5);
}

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
