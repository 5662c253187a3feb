//! When a write to a partition counts as done: the one durability rule every append
//! completes through (client produce, group metadata, offset commits), parameterised by
//! `acks`. Pure: the caller reads the partition's state and applies the answer.
//!
//! Kafka never waits for an fsync: with another in-sync replica holding a batch,
//! replication is the durability. Tributary adds one guarantee Kafka leaves to the page
//! cache: while the leader is the only in-sync replica, an acks=all write also waits for
//! the local flush, so `kill -9` of a lone broker never loses an acknowledged record.
//! `log.flush.interval.messages=1` (or a topic's `flush.messages=1`) makes every acks=all
//! write wait for the flush, as every message is flushed in Kafka with that setting.

/// The `acks` of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acks {
    /// acks=0: nobody waits (the client gets no response).
    None,
    /// acks=1: done once the leader has appended.
    Leader,
    /// acks=-1 / all: done once every in-sync replica has it (and `min.insync.replicas` held).
    All,
}

impl Acks {
    /// The wire value, if it is one of 0, 1, -1.
    pub(crate) fn from_wire(acks: i16) -> Option<Acks> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

/// What a write must wait for before it is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Required {
    /// The high watermark must pass the write's last offset.
    pub(crate) replication: bool,
    /// The leader's log must be flushed to disk past it.
    pub(crate) flush: bool,
}

/// The rule. `isr_len` is the partition's ISR size when asked (at the append, and again
/// once replicated: an ISR that shrank to the leader meanwhile leaves its copy the only
/// one); `flush_every_message` is `flush.messages <= 1` for the topic.
pub(crate) fn required(acks: Acks, isr_len: usize, flush_every_message: bool) -> Required {
    match acks {
        Acks::None | Acks::Leader => Required::default(),
        Acks::All => Required { replication: true, flush: isr_len < 2 || flush_every_message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_all_waits_for_the_isr_and_flushes_only_a_lone_copy() {
        // (acks, isr size, flush.messages <= 1) -> (replication, flush)
        let cases = [
            (Acks::None, 1, false, (false, false)),
            (Acks::None, 1, true, (false, false)),
            (Acks::Leader, 1, false, (false, false)),
            (Acks::Leader, 3, true, (false, false)),
            (Acks::All, 1, false, (true, true)),
            (Acks::All, 0, false, (true, true)),
            (Acks::All, 2, false, (true, false)),
            (Acks::All, 3, false, (true, false)),
            (Acks::All, 3, true, (true, true)),
        ];
        for (acks, isr, every, (replication, flush)) in cases {
            assert_eq!(required(acks, isr, every), Required { replication, flush }, "{acks:?} isr={isr} every={every}");
        }
    }

    #[test]
    fn only_0_1_and_minus_1_are_acks() {
        assert_eq!(Acks::from_wire(0), Some(Acks::None));
        assert_eq!(Acks::from_wire(1), Some(Acks::Leader));
        assert_eq!(Acks::from_wire(-1), Some(Acks::All));
        for bad in [2, -2, 100, i16::MIN] {
            assert_eq!(Acks::from_wire(bad), None);
        }
    }
}
