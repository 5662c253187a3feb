//! The transaction coordinator's decisions (Kafka's `TransactionCoordinator` and
//! `TransactionMetadata`, KIP-98 with KIP-360's epoch bumps), as pure functions: a request
//! and the transaction's current metadata in, the answer and the metadata to store out.
//! Nothing here does I/O; the caller stores the new metadata in `__transaction_state`
//! (through the one write path) before it answers or sends markers.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;

/// A transaction's state, as Kafka stores it (the numbers are its on-disk codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnState {
    /// No transaction open.
    Empty,
    /// Partitions added, not ended.
    Ongoing,
    /// EndTxn(commit) accepted; markers being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fence; markers being written.
    PrepareAbort,
    /// Markers written: committed.
    CompleteCommit,
    /// Markers written: aborted.
    CompleteAbort,
    /// Expired and removed.
    Dead,
    /// A newer producer (or a timeout) fences an ongoing transaction; it is aborted next.
    PrepareEpochFence,
}

impl TxnState {
    /// Kafka's code.
    pub(crate) fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// From Kafka's code.
    pub(crate) fn from_code(code: i8) -> Option<TxnState> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    fn preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence)
    }
}

/// One transactional id's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TxnMeta {
    /// Current producer id.
    pub producer_id: i64,
    /// Current epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` the producer asked for.
    pub timeout_ms: i32,
    /// Where the transaction is.
    pub state: TxnState,
    /// Partitions in the open transaction (topic, partition).
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (ms), -1 when none.
    pub started_ms: i64,
    /// Last change (ms).
    pub updated_ms: i64,
}

/// What a request needs besides the metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The producer id the request names.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
}

/// The answer to an InitProducerId for a transactional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Init {
    /// Store `meta`, then answer with its producer id and epoch.
    Ready(TxnMeta),
    /// An ongoing transaction must be aborted first (store `meta`, in PrepareAbort with a
    /// bumped epoch, and write its markers); the producer retries (CONCURRENT_TRANSACTIONS).
    AbortFirst(TxnMeta),
    /// Refused.
    Error(ResponseError),
}

/// Epochs stop one short of `i16::MAX`, which marks "no epoch" on the wire.
const MAX_EPOCH: i16 = i16::MAX - 1;

/// InitProducerId with a transactional id. `current` is the stored metadata (if any),
/// `expected` the producer id and epoch the client already had (KIP-360; `None` for a
/// fresh producer), `new_id` a fresh producer id should one be needed.
pub(crate) fn init(
    current: Option<&TxnMeta>,
    timeout_ms: i32,
    max_timeout_ms: i32,
    expected: Option<Caller>,
    new_id: i64,
    now: i64,
) -> Init {
    if timeout_ms <= 0 || timeout_ms > max_timeout_ms {
        return Init::Error(ResponseError::InvalidTransactionTimeout);
    }
    let Some(cur) = current else {
        if expected.is_some() {
            // The client thinks it has a producer id for an id this coordinator never saw.
            return Init::Error(ResponseError::InvalidProducerIdMapping);
        }
        return Init::Ready(TxnMeta {
            producer_id: new_id,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            started_ms: -1,
            updated_ms: now,
        });
    };
    if cur.state.preparing() {
        return Init::Error(ResponseError::ConcurrentTransactions);
    }
    if let Some(e) = expected {
        // KIP-360: a producer that knows its id may bump its epoch only from the current one.
        if e.producer_id != cur.producer_id || e.producer_epoch != cur.producer_epoch {
            return Init::Error(ResponseError::ProducerFenced);
        }
    }
    if cur.state == TxnState::Ongoing {
        let mut next = bumped(cur, now);
        next.state = TxnState::PrepareAbort;
        return Init::AbortFirst(next);
    }
    let mut next = bumped(cur, now);
    next.state = TxnState::Empty;
    next.timeout_ms = timeout_ms;
    next.partitions.clear();
    next.started_ms = -1;
    if next.producer_epoch > MAX_EPOCH {
        next.producer_id = new_id;
        next.producer_epoch = 0;
    }
    Init::Ready(next)
}

fn bumped(cur: &TxnMeta, now: i64) -> TxnMeta {
    TxnMeta { producer_epoch: cur.producer_epoch.saturating_add(1), updated_ms: now, ..cur.clone() }
}

/// Checks that the caller is the transactional id's current producer.
fn check_producer(cur: &TxnMeta, caller: Caller) -> Result<(), ResponseError> {
    if caller.producer_id != cur.producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if caller.producer_epoch < cur.producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    if caller.producer_epoch > cur.producer_epoch {
        return Err(ResponseError::InvalidProducerEpoch);
    }
    Ok(())
}

/// AddPartitionsToTxn / AddOffsetsToTxn: the metadata with `add` in the transaction (to
/// store before answering), or `Ok(None)` when they are all in already.
///
/// # Errors
/// Kafka's code for the whole request.
pub(crate) fn add_partitions(
    cur: Option<&TxnMeta>,
    caller: Caller,
    add: &[(String, i32)],
    now: i64,
) -> Result<Option<TxnMeta>, ResponseError> {
    let cur = cur.ok_or(ResponseError::InvalidProducerIdMapping)?;
    check_producer(cur, caller)?;
    if cur.state.preparing() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if cur.state == TxnState::Dead {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    let fresh = cur.state != TxnState::Ongoing;
    if !fresh && add.iter().all(|p| cur.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = cur.clone();
    if fresh {
        next.partitions.clear();
        next.started_ms = now;
    }
    next.state = TxnState::Ongoing;
    next.partitions.extend(add.iter().cloned());
    next.updated_ms = now;
    Ok(Some(next))
}

/// The answer to an EndTxn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Store `meta` (PrepareCommit / PrepareAbort), answer, then write the markers.
    Prepare(TxnMeta),
    /// Already ended this way (a retry): answer at once.
    Done,
    /// Refused.
    Error(ResponseError),
}

/// EndTxn(commit or abort).
pub(crate) fn end(cur: Option<&TxnMeta>, caller: Caller, commit: bool, now: i64) -> End {
    let Some(cur) = cur else { return End::Error(ResponseError::InvalidProducerIdMapping) };
    if let Err(e) = check_producer(cur, caller) {
        return End::Error(e);
    }
    match (cur.state, commit) {
        (TxnState::Ongoing, _) => {
            let mut next = cur.clone();
            next.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
            next.updated_ms = now;
            End::Prepare(next)
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => End::Done,
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            End::Error(ResponseError::ConcurrentTransactions)
        }
        // Nothing open (Empty), the other end prepared or done, fenced: as Kafka.
        _ => End::Error(ResponseError::InvalidTxnState),
    }
}

/// The metadata once every marker of a prepared transaction is written: Complete*, the
/// partitions cleared. `None` when `cur` is not preparing an end.
pub(crate) fn complete(cur: &TxnMeta, now: i64) -> Option<TxnMeta> {
    let state = match cur.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        TxnState::PrepareAbort => TxnState::CompleteAbort,
        _ => return None,
    };
    Some(TxnMeta { state, partitions: BTreeSet::new(), started_ms: -1, updated_ms: now, ..cur.clone() })
}

/// A transaction open past its timeout: aborted with a bumped epoch, which fences the
/// producer that let it expire (Kafka's `abortTimedOutTransactions`). `None` when it has
/// not expired.
pub(crate) fn expire(cur: &TxnMeta, now: i64) -> Option<TxnMeta> {
    if cur.state != TxnState::Ongoing || cur.started_ms < 0 || now - cur.started_ms <= i64::from(cur.timeout_ms) {
        return None;
    }
    let mut next = bumped(cur, now);
    next.state = TxnState::PrepareAbort;
    Some(next)
}

/// Whether an idle transactional id is to be forgotten (`transactional.id.expiration.ms`):
/// no transaction open or ending, and no change for longer than the expiration.
pub(crate) fn idle_expired(cur: &TxnMeta, now: i64, expiration_ms: i64) -> bool {
    matches!(cur.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
        && now.saturating_sub(cur.updated_ms) > expiration_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(state: TxnState, epoch: i16) -> TxnMeta {
        TxnMeta {
            producer_id: 5,
            producer_epoch: epoch,
            timeout_ms: 60_000,
            state,
            partitions: BTreeSet::from([("t".to_string(), 0)]),
            started_ms: 100,
            updated_ms: 100,
        }
    }

    fn caller(epoch: i16) -> Caller {
        Caller { producer_id: 5, producer_epoch: epoch }
    }

    #[test]
    fn init_producer_id_bumps_fences_and_checks_the_timeout() {
        let fresh = init(None, 60_000, 900_000, None, 9, 1);
        assert!(
            matches!(&fresh, Init::Ready(m) if m.producer_id == 9 && m.producer_epoch == 0 && m.state == TxnState::Empty)
        );
        assert_eq!(init(None, 900_001, 900_000, None, 9, 1), Init::Error(ResponseError::InvalidTransactionTimeout));
        assert_eq!(init(None, 0, 900_000, None, 9, 1), Init::Error(ResponseError::InvalidTransactionTimeout));
        // A restart of the producer: the epoch moves on.
        let again = init(Some(&meta(TxnState::CompleteCommit, 3)), 60_000, 900_000, None, 9, 2);
        assert!(
            matches!(&again, Init::Ready(m) if m.producer_id == 5 && m.producer_epoch == 4 && m.partitions.is_empty())
        );
        // An open transaction is aborted first, under the new epoch (fencing the old producer).
        let open = init(Some(&meta(TxnState::Ongoing, 3)), 60_000, 900_000, None, 9, 2);
        assert!(matches!(&open, Init::AbortFirst(m) if m.producer_epoch == 4 && m.state == TxnState::PrepareAbort));
        for state in [TxnState::PrepareCommit, TxnState::PrepareAbort, TxnState::PrepareEpochFence] {
            assert_eq!(
                init(Some(&meta(state, 3)), 60_000, 900_000, None, 9, 2),
                Init::Error(ResponseError::ConcurrentTransactions)
            );
        }
        // KIP-360: only the current producer may bump.
        assert_eq!(
            init(Some(&meta(TxnState::Empty, 3)), 60_000, 900_000, Some(caller(2)), 9, 2),
            Init::Error(ResponseError::ProducerFenced)
        );
        assert!(
            matches!(init(Some(&meta(TxnState::Empty, 3)), 60_000, 900_000, Some(caller(3)), 9, 2), Init::Ready(m) if m.producer_epoch == 4)
        );
        // Epochs exhausted: a new producer id.
        let worn = init(Some(&meta(TxnState::Empty, MAX_EPOCH)), 60_000, 900_000, None, 9, 2);
        assert!(matches!(&worn, Init::Ready(m) if m.producer_id == 9 && m.producer_epoch == 0));
    }

    #[test]
    fn partitions_join_an_open_transaction_only_for_the_current_producer() {
        let add = vec![("t".to_string(), 1)];
        // (state, caller epoch, expected)
        let cases: Vec<(TxnState, i16, Result<bool, ResponseError>)> = vec![
            (TxnState::Empty, 3, Ok(true)),
            (TxnState::CompleteCommit, 3, Ok(true)),
            (TxnState::Ongoing, 3, Ok(true)),
            (TxnState::Ongoing, 2, Err(ResponseError::ProducerFenced)),
            (TxnState::Ongoing, 4, Err(ResponseError::InvalidProducerEpoch)),
            (TxnState::PrepareCommit, 3, Err(ResponseError::ConcurrentTransactions)),
        ];
        for (state, epoch, want) in cases {
            let got = add_partitions(Some(&meta(state, 3)), caller(epoch), &add, 500).map(|m| m.is_some());
            assert_eq!(got, want, "{state:?} epoch {epoch}");
        }
        let next = add_partitions(Some(&meta(TxnState::CompleteAbort, 3)), caller(3), &add, 500).unwrap().unwrap();
        assert_eq!((next.state, next.started_ms), (TxnState::Ongoing, 500));
        assert_eq!(next.partitions, BTreeSet::from([("t".to_string(), 1)]), "a new transaction starts empty");
        assert_eq!(
            add_partitions(Some(&meta(TxnState::Ongoing, 3)), caller(3), &[("t".to_string(), 0)], 500),
            Ok(None)
        );
        assert_eq!(add_partitions(None, caller(3), &add, 500), Err(ResponseError::InvalidProducerIdMapping));
        let wrong_id = Caller { producer_id: 6, producer_epoch: 3 };
        assert_eq!(
            add_partitions(Some(&meta(TxnState::Ongoing, 3)), wrong_id, &add, 500),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn end_txn_prepares_once_and_retries_are_answered() {
        // (state, commit, expected)
        let cases = [
            (TxnState::Ongoing, true, "prepare"),
            (TxnState::Ongoing, false, "prepare"),
            (TxnState::CompleteCommit, true, "done"),
            (TxnState::CompleteAbort, false, "done"),
            (TxnState::CompleteCommit, false, "InvalidTxnState"),
            (TxnState::CompleteAbort, true, "InvalidTxnState"),
            (TxnState::PrepareCommit, true, "ConcurrentTransactions"),
            (TxnState::PrepareCommit, false, "InvalidTxnState"),
            (TxnState::Empty, true, "InvalidTxnState"),
            (TxnState::Empty, false, "InvalidTxnState"),
        ];
        for (state, commit, want) in cases {
            let got = match end(Some(&meta(state, 3)), caller(3), commit, 700) {
                End::Prepare(m) => {
                    assert_eq!(m.state, if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort });
                    "prepare".to_string()
                }
                End::Done => "done".to_string(),
                End::Error(e) => format!("{e:?}"),
            };
            assert_eq!(got, want, "{state:?} commit={commit}");
        }
        assert_eq!(
            end(Some(&meta(TxnState::Ongoing, 3)), caller(2), true, 700),
            End::Error(ResponseError::ProducerFenced)
        );
        let done = complete(&meta(TxnState::PrepareCommit, 3), 800).unwrap();
        assert_eq!((done.state, done.partitions.len(), done.started_ms), (TxnState::CompleteCommit, 0, -1));
        assert_eq!(complete(&meta(TxnState::Ongoing, 3), 800), None);
    }

    #[test]
    fn idle_transactional_ids_are_forgotten_only_when_nothing_is_open() {
        // (state, now, expiration, forgotten); updated at 100
        let cases = [
            (TxnState::CompleteCommit, 1_101, 1_000, true),
            (TxnState::CompleteAbort, 1_101, 1_000, true),
            (TxnState::Empty, 1_101, 1_000, true),
            (TxnState::CompleteCommit, 1_100, 1_000, false),
            (TxnState::Ongoing, 1_000_000, 1_000, false),
            (TxnState::PrepareCommit, 1_000_000, 1_000, false),
        ];
        for (state, now, expiration, want) in cases {
            assert_eq!(idle_expired(&meta(state, 3), now, expiration), want, "{state:?} at {now}");
        }
    }

    #[test]
    fn open_transactions_expire_with_a_fencing_epoch_bump() {
        let m = meta(TxnState::Ongoing, 3); // started at 100, 60 s timeout
        assert_eq!(expire(&m, 60_100), None);
        let expired = expire(&m, 60_101).unwrap();
        assert_eq!((expired.state, expired.producer_epoch), (TxnState::PrepareAbort, 4));
        assert_eq!(expire(&meta(TxnState::CompleteCommit, 3), 1_000_000), None);
        for code in 0..8 {
            assert_eq!(TxnState::from_code(code).unwrap().code(), code);
        }
        assert_eq!(TxnState::from_code(8), None);
    }
}
