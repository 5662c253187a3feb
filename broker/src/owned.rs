//! The partitions of an internal topic (`__consumer_offsets`, `__transaction_state`) whose
//! coordinator state this broker owns because it leads them: which are loading, which are
//! loaded, at which leader epoch. The group and the transaction coordinators both keep
//! one, updated from each metadata snapshot, so a partition's state is taken up when
//! leadership arrives and dropped when it leaves, the same way for both.

use std::collections::HashMap;
use std::sync::Arc;

use tributary_common::ids::{BrokerId, TopicPartition};

use crate::metadata::ClusterMetadata;
use crate::replica::{Partition, ReplicaManager};

/// Where an owned partition is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Load {
    /// Being replayed for this leader epoch.
    Loading(i32),
    /// Replayed; serving this leader epoch.
    Loaded(i32),
}

impl Load {
    fn epoch(self) -> i32 {
        match self {
            Load::Loading(e) | Load::Loaded(e) => e,
        }
    }
}

/// A partition to replay: (partition, leader epoch, local replica).
pub(crate) type ToLoad = (i32, i32, Arc<Partition>);

/// The owned partitions of one internal topic.
#[derive(Debug, Default)]
pub(crate) struct Owned {
    /// The topic's partition count (0 while it does not exist).
    pub(crate) count: i32,
    partitions: HashMap<i32, Load>,
}

impl Owned {
    /// Takes up a metadata snapshot: the partitions of `topic` that `broker_id` leads and
    /// hosts now. Returns those it no longer owns (their state is to be dropped) and those
    /// newly owned (to replay, marked loading).
    pub(crate) fn take_up(
        &mut self,
        meta: &ClusterMetadata,
        replicas: &ReplicaManager,
        broker_id: BrokerId,
        topic: &str,
    ) -> (Vec<i32>, Vec<ToLoad>) {
        let mut led = HashMap::new();
        self.count = 0;
        if let Some(t) = meta.topics.get(topic) {
            self.count = t.partitions.len() as i32;
            for (p, pm) in &t.partitions {
                if pm.leader == broker_id {
                    if let Some(local) = replicas.get(&TopicPartition::new(topic, *p)) {
                        led.insert(*p, (pm.leader_epoch, local));
                    }
                }
            }
        }
        let gone: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(p, load)| led.get(*p).is_none_or(|(e, _)| *e != load.epoch()))
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            self.partitions.remove(p);
        }
        let mut to_load = Vec::new();
        for (p, (epoch, local)) in led {
            if let std::collections::hash_map::Entry::Vacant(e) = self.partitions.entry(p) {
                e.insert(Load::Loading(epoch));
                to_load.push((p, epoch, local));
            }
        }
        (gone, to_load)
    }

    /// Where partition `p` is, if owned.
    pub(crate) fn get(&self, p: i32) -> Option<Load> {
        self.partitions.get(&p).copied()
    }

    /// Marks `p` loaded at `epoch`; false when leadership moved on while it loaded (the
    /// replay is to be discarded).
    pub(crate) fn loaded(&mut self, p: i32, epoch: i32) -> bool {
        if self.get(p) != Some(Load::Loading(epoch)) {
            return false;
        }
        self.partitions.insert(p, Load::Loaded(epoch));
        true
    }

    /// Whether any owned partition is still loading.
    pub(crate) fn any_loading(&self) -> bool {
        self.partitions.values().any(|l| matches!(l, Load::Loading(_)))
    }
}
