//! DeleteRecords (Kafka's `ReplicaManager.deleteRecords` with `DelayedDeleteRecords`): the
//! leader moves its log start offset, followers move theirs when their next fetch response
//! carries the leader's, and the request completes once the low watermark (the smallest log
//! start over the in-sync replicas) has reached the requested offset.

use std::sync::Arc;
use std::time::Duration;

use tributary_common::ids::TopicPartition;

use super::partition::{Key, Partition, ReplicaError};
use super::purgatory::any_moved;
use super::ReplicaManager;
use crate::log;

/// Why a DeleteRecords on one partition failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DeleteRecordsError {
    /// Not led here, or unknown.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Beyond the high watermark, or negative other than -1.
    #[error("offset {offset} is out of range for {tp}: records can be deleted up to the high watermark {high_watermark} (-1 means the high watermark)")]
    OffsetOutOfRange {
        /// The partition.
        tp: TopicPartition,
        /// The offset asked for.
        offset: i64,
        /// The high watermark.
        high_watermark: i64,
    },
    /// The log could not be changed.
    #[error(transparent)]
    Storage(#[from] log::Error),
    /// The followers did not move their log start in time.
    #[error("{tp}: the leader deleted the records, but in-sync followers had not followed after the request's timeout (low watermark {low_watermark})")]
    Timeout {
        /// The partition.
        tp: TopicPartition,
        /// Where the low watermark stood.
        low_watermark: i64,
    },
}

/// The log start offset a DeleteRecords asks for: `requested`, or the high watermark for
/// -1; refused above the high watermark and below -1 (Kafka's rule).
pub(crate) fn target_offset(
    tp: &TopicPartition,
    requested: i64,
    high_watermark: i64,
) -> Result<i64, DeleteRecordsError> {
    match requested {
        -1 => Ok(high_watermark),
        o if (0..=high_watermark).contains(&o) => Ok(o),
        offset => Err(DeleteRecordsError::OffsetOutOfRange { tp: tp.clone(), offset, high_watermark }),
    }
}

async fn advance(partition: &Arc<Partition>, offset: i64) -> Result<i64, log::Error> {
    let p = partition.clone();
    tokio::task::spawn_blocking(move || p.advance_log_start(offset)).await.unwrap_or_else(|e| {
        Err(log::Error::Storage { what: "moving the log start offset".into(), reason: e.to_string() })
    })
}

impl ReplicaManager {
    /// Deletes the records of a partition led here below `requested` (-1: the high
    /// watermark) and waits up to `timeout` for the in-sync followers to follow. Returns
    /// the low watermark.
    ///
    /// # Errors
    /// [`DeleteRecordsError`] as documented on each variant.
    pub(crate) async fn delete_records(
        &self,
        tp: &TopicPartition,
        requested: i64,
        timeout: Duration,
    ) -> Result<i64, DeleteRecordsError> {
        let partition = self.leader_partition(tp, -1)?;
        let target = target_offset(tp, requested, partition.high_watermark())?;
        let before = partition.log().offsets().log_start_offset;
        if target > before {
            let start = advance(&partition, target).await?;
            tracing::info!(%tp, log_start_offset = start, previous = before, "DeleteRecords moved the log start offset; records below it are gone");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let progress = partition.progress(Key::HighWatermark);
            let version = progress.version();
            let low = partition.low_watermark();
            if low >= target {
                return Ok(low);
            }
            // Leadership may have moved meanwhile: the new leader answers a retry.
            self.leader_partition(tp, -1)?;
            let keys = [(progress, version)];
            tokio::select! {
                () = any_moved(&keys) => {},
                () = tokio::time::sleep_until(deadline) => {
                    return Err(DeleteRecordsError::Timeout { tp: tp.clone(), low_watermark: partition.low_watermark() });
                }
            }
        }
    }

    /// A follower takes up its leader's log start offset (sent in every fetch response),
    /// up to its own log end: records the leader deleted (retention, DeleteRecords) go here
    /// too, so a later leader does not serve them again.
    pub(crate) async fn follow_log_start(&self, partition: &Arc<Partition>, leader_log_start: i64) {
        let offsets = partition.log().offsets();
        let target = leader_log_start.min(offsets.log_end_offset);
        if target <= offsets.log_start_offset {
            return;
        }
        if let Err(e) = advance(partition, target).await {
            tracing::error!(tp = %partition.tp(), error = %e, "moving this follower's log start to the leader's failed; check the data directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_offset_asked_for_up_to_the_high_watermark() {
        let tp = TopicPartition::new("t", 0);
        // (requested, high watermark, target or None for OFFSET_OUT_OF_RANGE)
        let cases = [(-1, 7, Some(7)), (0, 7, Some(0)), (7, 7, Some(7)), (3, 7, Some(3)), (8, 7, None), (-2, 7, None)];
        for (requested, hw, want) in cases {
            let got = target_offset(&tp, requested, hw).ok();
            assert_eq!(got, want, "requested {requested} with high watermark {hw}");
        }
    }
}
