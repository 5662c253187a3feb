//! OffsetForLeaderEpoch and InitProducerId.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    ProducerId,
};
use tokio::sync::Mutex;

use super::{replica_error_code, tp, BrokerContext};

pub(super) fn offset_for_leader_epoch(
    ctx: &BrokerContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in request.topics {
        let mut out = OffsetForLeaderTopicResult::default();
        out.topic = topic.topic.clone();
        for p in topic.partitions {
            let mut r = EpochEndOffset::default();
            r.partition = p.partition;
            r.leader_epoch = -1;
            r.end_offset = -1;
            match ctx.replicas.leader_partition(&tp(&topic.topic.0, p.partition), p.current_leader_epoch) {
                Ok(partition) => {
                    if let Some((epoch, end)) = partition.log().end_offset_for_epoch(p.leader_epoch) {
                        r.leader_epoch = epoch;
                        r.end_offset = end;
                    }
                }
                Err(e) => r.error_code = replica_error_code(&e),
            }
            out.partitions.push(r);
        }
        response.topics.push(out);
    }
    response
}

/// Hands out producer ids from blocks reserved in ZooKeeper.
#[derive(Default)]
pub(crate) struct ProducerIds {
    /// (next id, last id of the block).
    block: Mutex<Option<(i64, i64)>>,
}

impl ProducerIds {
    pub(super) async fn next(&self, ctx: &BrokerContext) -> Result<i64, crate::zk::Error> {
        let mut block = self.block.lock().await;
        match *block {
            Some((next, end)) if next <= end => {
                *block = Some((next + 1, end));
                Ok(next)
            }
            _ => {
                let (start, end) = ctx.zk.next_producer_id_block().await?;
                tracing::info!(
                    block_start = start,
                    block_end = end,
                    "reserved a producer id block in /latest_producer_id_block"
                );
                *block = Some((start + 1, end));
                Ok(start)
            }
        }
    }
}

pub(super) async fn init_producer_id(
    ctx: &BrokerContext,
    version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if let Some(id) = request.transactional_id.clone().filter(|id| !id.is_empty()) {
        return super::txn::init_transactional(ctx, version, request, id.as_str()).await;
    }
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    match ctx.producer_ids.next(ctx).await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not allocate a producer id");
            response.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    response
}
