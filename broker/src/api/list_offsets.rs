//! ListOffsets: earliest (-2), latest (-1: the high watermark, or the last stable offset
//! for read_committed), max timestamp (-3), or the first offset at or after a timestamp.
//!
//! As in Kafka, replica id -2 (a debugging client, such as the coordinator's admin API)
//! may ask any replica, not only the leader, and "latest" then means the log end offset.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{replica_error_code, tp, BrokerContext};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// Kafka's `ListOffsetsRequest.DEBUGGING_REPLICA_ID`.
const DEBUGGING_REPLICA_ID: i32 = -2;

pub(super) fn handle(ctx: &BrokerContext, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    for topic in request.topics {
        let mut out = ListOffsetsTopicResponse::default();
        out.name = topic.name.clone();
        for lp in topic.partitions {
            let mut r = ListOffsetsPartitionResponse::default();
            r.partition_index = lp.partition_index;
            r.timestamp = -1;
            r.offset = -1;
            r.leader_epoch = -1;
            let tp = tp(&topic.name.0, lp.partition_index);
            let debugging = request.replica_id.0 == DEBUGGING_REPLICA_ID;
            let found = if debugging {
                ctx.replicas.get(&tp).ok_or(crate::replica::ReplicaError::UnknownPartition(tp.clone()))
            } else {
                ctx.replicas.leader_partition(&tp, lp.current_leader_epoch)
            };
            let partition = match found {
                Ok(p) => p,
                Err(e) => {
                    r.error_code = replica_error_code(&e);
                    out.partitions.push(r);
                    continue;
                }
            };
            let upper = if debugging {
                partition.log().offsets().log_end_offset
            } else if request.isolation_level == 1 {
                partition.last_stable_offset()
            } else {
                partition.high_watermark()
            };
            if version >= 4 {
                // The field exists from v4; older versions must leave it at its default.
                r.leader_epoch = partition.role().leader_epoch;
            }
            let found = match lp.timestamp {
                LATEST => Ok(Some((upper, -1))),
                EARLIEST => Ok(Some((partition.log().offsets().log_start_offset, -1))),
                MAX_TIMESTAMP => partition.log().max_timestamp(upper),
                ts if ts < 0 => {
                    r.error_code = ResponseError::InvalidRequest.code();
                    out.partitions.push(r);
                    continue;
                }
                ts => partition.log().offset_for_timestamp(ts, upper),
            };
            match found {
                Ok(Some((offset, timestamp))) => {
                    r.offset = offset;
                    r.timestamp = timestamp;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(%tp, error = %e, "offset lookup failed");
                    r.error_code = ResponseError::KafkaStorageError.code();
                }
            }
            out.partitions.push(r);
        }
        response.topics.push(out);
    }
    response
}
