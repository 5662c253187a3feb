//! KIP-890 (part 1): a partition leader's defence against hanging transactions. Before a
//! transactional batch that would open a producer's transaction on a partition is
//! appended, the leader asks the transaction coordinator whether the partition is in the
//! producer's ongoing transaction (AddPartitionsToTxn v4, `verify_only`; answered locally
//! when this broker is the coordinator). A late batch of a transaction that already
//! ended, or a producer that never added the partition, is refused instead of leaving an
//! open transaction that would hold read_committed consumers back forever.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId};
use tributary_common::ids::TopicPartition;
use tributary_common::kafka_client::Connection;
use tributary_common::topic::TRANSACTION_STATE;

use super::state::Caller;
use crate::api::{s, BrokerContext};

/// Connections to other brokers' transaction coordinators, one per broker, reused.
#[derive(Default)]
pub(crate) struct Verifier {
    connections: tokio::sync::Mutex<HashMap<i32, Connection>>,
}

impl Verifier {
    /// Whether `tp` is in the ongoing transaction of `transactional_id` for `caller`.
    ///
    /// # Errors
    /// The coordinator's code when it could not tell (fenced producer, unknown id, not
    /// coordinator, unreachable).
    pub(crate) async fn verify(
        &self,
        ctx: &BrokerContext,
        transactional_id: &str,
        caller: Caller,
        tp: &TopicPartition,
    ) -> Result<bool, ResponseError> {
        let cluster = ctx.cluster();
        let topic = cluster.topics.get(TRANSACTION_STATE).ok_or(ResponseError::CoordinatorNotAvailable)?;
        let p = super::partition_for(transactional_id, topic.partitions.len() as i32);
        let leader = topic.partitions.get(&p).map_or(-1, |pm| pm.leader);
        let wanted = [(tp.topic.clone(), tp.partition)];
        if leader == ctx.config.broker_id {
            return ctx.txns.verify(transactional_id, caller, &wanted).map(|found| found[0]);
        }
        let endpoint = cluster
            .brokers
            .get(&leader)
            .and_then(|b| b.endpoint(&ctx.config.inter_broker_listener()).cloned())
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let mut t = AddPartitionsToTxnTopic::default();
        t.name = TopicName(s(tp.topic.clone()));
        t.partitions = vec![tp.partition];
        let mut txn = AddPartitionsToTxnTransaction::default();
        txn.transactional_id = TransactionalId(s(transactional_id));
        txn.producer_id = ProducerId(caller.producer_id);
        txn.producer_epoch = caller.producer_epoch;
        txn.verify_only = true;
        txn.topics = vec![t];
        let mut request = AddPartitionsToTxnRequest::default();
        request.transactions = vec![txn];
        let pooled = self.connections.lock().await.remove(&leader);
        let mut conn = match pooled {
            Some(c) => c,
            None => Connection::connect_secured(&endpoint.host, endpoint.port, "tributary-txn-verify", &ctx.security.inter_broker)
                .await
                .map_err(|_| ResponseError::CoordinatorNotAvailable)?,
        };
        let response = conn.call(4, &request).await.map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        self.connections.lock().await.insert(leader, conn);
        if response.error_code != 0 {
            return Err(ResponseError::try_from_code(response.error_code).unwrap_or(ResponseError::UnknownServerError));
        }
        let code = response
            .results_by_transaction
            .iter()
            .flat_map(|r| &r.topic_results)
            .flat_map(|t| &t.results_by_partition)
            .map(|p| p.partition_error_code)
            .next()
            .unwrap_or(ResponseError::InvalidTxnState.code());
        match code {
            0 => Ok(true),
            c if c == ResponseError::InvalidTxnState.code() => Ok(false),
            c => Err(ResponseError::try_from_code(c).unwrap_or(ResponseError::UnknownServerError)),
        }
    }
}
