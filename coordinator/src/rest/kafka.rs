//! The REST API's Kafka clients, over librdkafka: the shared producer and the consumers
//! of consumer instances, bootstrapped from the brokers registered in ZooKeeper on the
//! listener and with the security `client.config` gives (see [`crate::brokers`]).
//! librdkafka logs through the `librdkafka` tracing target.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use tributary_common::snapshot::ClusterSnapshot;

use crate::brokers::BrokerClients;

use super::RestError;

/// A librdkafka configuration reaching the brokers of `s` as `client.config` says: their
/// endpoints on the chosen listener, and the connection's security settings.
pub(crate) fn base_config(clients: &BrokerClients, s: &ClusterSnapshot) -> Result<(ClientConfig, String), RestError> {
    let servers = clients.bootstrap(s).ok_or_else(no_broker)?;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &servers);
    for (key, value) in clients.librdkafka_settings() {
        config.set(key, value);
    }
    Ok((config, servers))
}

fn no_broker() -> RestError {
    RestError::unavailable("no broker is registered in ZooKeeper; start a broker and retry")
}

/// The shared producer: acks=all and idempotent, keys partitioned with murmur2 as the Java
/// client (and so Confluent's REST Proxy) partitions them.
#[derive(Clone)]
pub(crate) struct Producer(Arc<FutureProducer>);

impl Producer {
    pub(crate) fn new(clients: &BrokerClients, s: &ClusterSnapshot) -> Result<Producer, RestError> {
        let (mut config, servers) = base_config(clients, s)?;
        let producer: FutureProducer = config
            .set("client.id", "tributary-rest-proxy")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| RestError::kafka(format!("creating the REST API's producer: {e}")))?;
        tracing::info!(bootstrap = servers, "REST API producer created");
        Ok(Producer(Arc::new(producer)))
    }

    pub(crate) fn inner(&self) -> &FutureProducer {
        &self.0
    }
}

/// Settings of a consumer instance, as `POST /consumers/{group}` gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConsumerSettings {
    pub(crate) group: String,
    pub(crate) name: String,
    /// `auto.offset.reset`: earliest, latest (default) or none.
    pub(crate) auto_offset_reset: String,
    /// `auto.commit.enable` (default true, the Java consumer's default).
    pub(crate) auto_commit: bool,
    /// `fetch.min.bytes`.
    pub(crate) fetch_min_bytes: Option<u32>,
}

/// How much a consumer instance buffers, at most (librdkafka's `queued.max.messages.kbytes`):
/// bounded per instance, where librdkafka's default is 64 MiB.
const QUEUED_KBYTES: &str = "2048";

pub(crate) fn consumer(
    clients: &BrokerClients,
    s: &ClusterSnapshot,
    settings: &ConsumerSettings,
) -> Result<BaseConsumer, RestError> {
    let (mut config, _) = base_config(clients, s)?;
    config
        .set("group.id", &settings.group)
        .set("client.id", format!("tributary-rest-{}", settings.name))
        .set("auto.offset.reset", &settings.auto_offset_reset)
        .set("enable.auto.commit", if settings.auto_commit { "true" } else { "false" })
        // The REST Proxy commits what was handed out, not what librdkafka prefetched.
        .set("enable.auto.offset.store", "false")
        .set("queued.max.messages.kbytes", QUEUED_KBYTES)
        .set("fetch.max.bytes", "1048576")
        // The Java consumer's default, which REST Proxy users expect of instances.
        .set("partition.assignment.strategy", "range");
    if let Some(b) = settings.fetch_min_bytes {
        config.set("fetch.min.bytes", b.to_string());
    }
    config.create().map_err(|e| RestError::unprocessable(42204, format!("Invalid consumer configuration: {e}")))
}

/// The error code of a REST Proxy v2 produce answer for one record: 2 when retrying may
/// succeed, 1 when it cannot (pure).
pub(crate) fn produce_error_code(e: &KafkaError) -> u32 {
    use RDKafkaErrorCode as C;
    let retriable = matches!(
        e.rdkafka_error_code(),
        Some(
            C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::RequestTimedOut
                | C::NetworkException
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
                | C::MessageTimedOut
                | C::QueueFull
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::UnknownTopicOrPartition
                | C::NotCoordinator
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
        )
    );
    if retriable {
        2
    } else {
        1
    }
}

/// A consumer-side librdkafka error as the REST Proxy reports it.
pub(crate) fn consumer_error(what: &str, e: &KafkaError) -> RestError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownPartition) => {
            RestError::new(StatusCode::NOT_FOUND, 40402, format!("{what}: {e}"))
        }
        Some(RDKafkaErrorCode::State | RDKafkaErrorCode::InvalidArgument) => {
            RestError::new(StatusCode::CONFLICT, 40903, format!("Illegal state: {what}: {e}"))
        }
        _ => RestError::kafka(format!("{what}: {e}")),
    }
}

/// How long one librdkafka call that waits on a broker may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_errors_say_whether_a_retry_may_help() {
        let cases = [
            (RDKafkaErrorCode::MessageTimedOut, 2),
            (RDKafkaErrorCode::NotEnoughReplicas, 2),
            (RDKafkaErrorCode::LeaderNotAvailable, 2),
            (RDKafkaErrorCode::MessageSizeTooLarge, 1),
            (RDKafkaErrorCode::InvalidRecord, 1),
            (RDKafkaErrorCode::TopicAuthorizationFailed, 1),
        ];
        for (code, want) in cases {
            assert_eq!(produce_error_code(&KafkaError::MessageProduction(code)), want, "{code:?}");
        }
    }
}
