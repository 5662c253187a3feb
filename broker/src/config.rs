//! Broker configuration: Kafka's setting names, from flags, environment variables
//! (`TRIBUTARY_*`) or a `server.properties` file (`--config`); flags win over the file.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tributary_common::config::{parse_listeners, ConfigError, Properties};
use tributary_common::ids::BrokerId;
use tributary_common::telemetry::LogFormat;
use tributary_common::znode::Endpoint;

/// Settings from a stock Kafka `server.properties` that have no meaning here (Tributary has
/// no thread pools or segment files to size). They are accepted so the stock file works,
/// and logged once at start-up.
const INERT_KAFKA_KEYS: &[&str] = &[
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "num.recovery.threads.per.data.dir",
    "log.segment.bytes",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
];

/// Command-line flags; each has an environment variable and a `server.properties` key.
#[derive(Debug, Parser, Default)]
#[command(
    name = "broker",
    version,
    about = "Tributary broker: Kafka-compatible, storing partitions in sled, coordinated through ZooKeeper"
)]
pub struct Args {
    /// A Kafka server.properties file; flags override its values.
    #[arg(long, env = "TRIBUTARY_CONFIG")]
    pub config: Option<PathBuf>,
    /// broker.id: this broker's unique id (0..=2147483647).
    #[arg(long, env = "TRIBUTARY_BROKER_ID")]
    pub broker_id: Option<BrokerId>,
    /// listeners: where to accept clients, e.g. PLAINTEXT://0.0.0.0:9092 (default PLAINTEXT://:9092).
    #[arg(long, env = "TRIBUTARY_LISTENERS")]
    pub listeners: Option<String>,
    /// advertised.listeners: the address clients are told to use (default: listeners, with an empty host replaced by this machine's name).
    #[arg(long, env = "TRIBUTARY_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// zookeeper.connect: host:port[,host:port...][/chroot].
    #[arg(long, env = "TRIBUTARY_ZOOKEEPER_CONNECT")]
    pub zookeeper_connect: Option<String>,
    /// zookeeper.session.timeout.ms (default 18000).
    #[arg(long, env = "TRIBUTARY_ZOOKEEPER_SESSION_TIMEOUT_MS")]
    pub zookeeper_session_timeout_ms: Option<u64>,
    /// zookeeper.connection.timeout.ms: how long to wait for ZooKeeper at start (default: the session timeout).
    #[arg(long, env = "TRIBUTARY_ZOOKEEPER_CONNECTION_TIMEOUT_MS")]
    pub zookeeper_connection_timeout_ms: Option<u64>,
    /// log.dirs: the data directory (one directory).
    #[arg(long, env = "TRIBUTARY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// broker.rack: rack of this broker, for rack-aware placement.
    #[arg(long, env = "TRIBUTARY_BROKER_RACK")]
    pub broker_rack: Option<String>,
    /// num.partitions: partitions of auto-created topics and of CreateTopics with -1 (default 1).
    #[arg(long, env = "TRIBUTARY_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// default.replication.factor (default 1).
    #[arg(long, env = "TRIBUTARY_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,
    /// auto.create.topics.enable (default true).
    #[arg(long, env = "TRIBUTARY_AUTO_CREATE_TOPICS_ENABLE")]
    pub auto_create_topics_enable: Option<bool>,
    /// log.retention.ms (default 604800000, 7 days; -1 keeps data forever).
    #[arg(long, env = "TRIBUTARY_LOG_RETENTION_MS")]
    pub log_retention_ms: Option<i64>,
    /// log.retention.bytes per partition (default -1, no limit).
    #[arg(long, env = "TRIBUTARY_LOG_RETENTION_BYTES")]
    pub log_retention_bytes: Option<i64>,
    /// log.retention.check.interval.ms (default 300000).
    #[arg(long, env = "TRIBUTARY_LOG_RETENTION_CHECK_INTERVAL_MS")]
    pub log_retention_check_interval_ms: Option<u64>,
    /// log.flush.interval.messages: flush after this many appended records (default: never by count).
    #[arg(long, env = "TRIBUTARY_LOG_FLUSH_INTERVAL_MESSAGES")]
    pub log_flush_interval_messages: Option<u64>,
    /// log.flush.interval.ms: background flush period (default 1000). acks=all always waits for a flush.
    #[arg(long, env = "TRIBUTARY_LOG_FLUSH_INTERVAL_MS")]
    pub log_flush_interval_ms: Option<u64>,
    /// message.max.bytes: largest record batch accepted (default 1048588).
    #[arg(long, env = "TRIBUTARY_MESSAGE_MAX_BYTES")]
    pub message_max_bytes: Option<i32>,
    /// socket.request.max.bytes: largest request frame (default 104857600).
    #[arg(long, env = "TRIBUTARY_SOCKET_REQUEST_MAX_BYTES")]
    pub socket_request_max_bytes: Option<i32>,
    /// max.connections: connections served at once (default 1000).
    #[arg(long, env = "TRIBUTARY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// offsets.topic.num.partitions: partitions of __consumer_offsets when it is created (default 50).
    #[arg(long, env = "TRIBUTARY_OFFSETS_TOPIC_NUM_PARTITIONS")]
    pub offsets_topic_num_partitions: Option<i32>,
    /// min.insync.replicas: replicas that must have a record before acks=all succeeds, for topics without their own (default 1).
    #[arg(long, env = "TRIBUTARY_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<i32>,
    /// replica.lag.time.max.ms: a follower not caught up for this long leaves the ISR (default 30000).
    #[arg(long, env = "TRIBUTARY_REPLICA_LAG_TIME_MAX_MS")]
    pub replica_lag_time_max_ms: Option<i64>,
    /// replica.fetch.wait.max.ms: how long a follower's fetch waits at the leader for new data (default 500).
    #[arg(long, env = "TRIBUTARY_REPLICA_FETCH_WAIT_MAX_MS")]
    pub replica_fetch_wait_max_ms: Option<i32>,
    /// replica.fetch.max.bytes: bytes per partition a follower asks for (default 1048576).
    #[arg(long, env = "TRIBUTARY_REPLICA_FETCH_MAX_BYTES")]
    pub replica_fetch_max_bytes: Option<i32>,
    /// replica.fetch.response.max.bytes: bytes per follower fetch response (default 10485760).
    #[arg(long, env = "TRIBUTARY_REPLICA_FETCH_RESPONSE_MAX_BYTES")]
    pub replica_fetch_response_max_bytes: Option<i32>,
    /// replica.fetch.backoff.ms: pause after a failed follower fetch (default 1000).
    #[arg(long, env = "TRIBUTARY_REPLICA_FETCH_BACKOFF_MS")]
    pub replica_fetch_backoff_ms: Option<u64>,
    /// offsets.topic.replication.factor: replicas of __consumer_offsets; groups are unavailable until this many brokers are live (default 3; set 1 for a single broker).
    #[arg(long, env = "TRIBUTARY_OFFSETS_TOPIC_REPLICATION_FACTOR")]
    pub offsets_topic_replication_factor: Option<i16>,
    /// offsets.retention.minutes: how long offsets of an empty group are kept (default 10080, 7 days).
    #[arg(long, env = "TRIBUTARY_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<i64>,
    /// offsets.retention.check.interval.ms (default 600000).
    #[arg(long, env = "TRIBUTARY_OFFSETS_RETENTION_CHECK_INTERVAL_MS")]
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// group.initial.rebalance.delay.ms: how long a new group waits for more members before its first rebalance (default 3000).
    #[arg(long, env = "TRIBUTARY_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<i64>,
    /// group.min.session.timeout.ms (default 6000).
    #[arg(long, env = "TRIBUTARY_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// group.max.session.timeout.ms (default 1800000).
    #[arg(long, env = "TRIBUTARY_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// group.max.size: members per group (default 2147483647).
    #[arg(long, env = "TRIBUTARY_GROUP_MAX_SIZE")]
    pub group_max_size: Option<i32>,
    /// offset.metadata.max.bytes: longest commit metadata string (default 4096).
    #[arg(long, env = "TRIBUTARY_OFFSET_METADATA_MAX_BYTES")]
    pub offset_metadata_max_bytes: Option<i32>,
    /// Grace period for draining connections on SIGTERM, in ms (default 5000).
    #[arg(long, env = "TRIBUTARY_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Log filter, RUST_LOG syntax (default info).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format: text or json.
    #[arg(long, env = "TRIBUTARY_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// The effective broker configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    /// broker.id
    pub broker_id: BrokerId,
    /// listeners
    pub listeners: Vec<Endpoint>,
    /// advertised.listeners
    pub advertised_listeners: Vec<Endpoint>,
    /// zookeeper.connect
    pub zookeeper_connect: String,
    /// zookeeper.session.timeout.ms
    pub zookeeper_session_timeout: Duration,
    /// zookeeper.connection.timeout.ms
    pub zookeeper_connection_timeout: Duration,
    /// log.dirs
    pub data_dir: PathBuf,
    /// broker.rack
    pub rack: Option<String>,
    /// num.partitions
    pub num_partitions: i32,
    /// default.replication.factor
    pub default_replication_factor: i16,
    /// auto.create.topics.enable
    pub auto_create_topics: bool,
    /// log.retention.ms
    pub log_retention_ms: i64,
    /// log.retention.bytes
    pub log_retention_bytes: i64,
    /// log.retention.check.interval.ms
    pub log_retention_check_interval_ms: u64,
    /// log.flush.interval.messages
    pub log_flush_interval_messages: u64,
    /// log.flush.interval.ms
    pub log_flush_interval_ms: u64,
    /// message.max.bytes
    pub message_max_bytes: i32,
    /// socket.request.max.bytes
    pub socket_request_max_bytes: i32,
    /// max.connections
    pub max_connections: usize,
    /// offsets.topic.num.partitions
    pub offsets_topic_num_partitions: i32,
    /// offsets.topic.replication.factor
    pub offsets_topic_replication_factor: i16,
    /// min.insync.replicas
    pub min_insync_replicas: i32,
    /// replica.lag.time.max.ms
    pub replica_lag_time_max_ms: i64,
    /// replica.fetch.wait.max.ms
    pub replica_fetch_wait_max_ms: i32,
    /// replica.fetch.max.bytes
    pub replica_fetch_max_bytes: i32,
    /// replica.fetch.response.max.bytes
    pub replica_fetch_response_max_bytes: i32,
    /// replica.fetch.backoff.ms
    pub replica_fetch_backoff_ms: u64,
    /// offsets.retention.minutes, in ms
    pub offsets_retention_ms: i64,
    /// offsets.retention.check.interval.ms
    pub offsets_retention_check_interval_ms: u64,
    /// group.initial.rebalance.delay.ms
    pub group_initial_rebalance_delay_ms: i64,
    /// group.min.session.timeout.ms
    pub group_min_session_timeout_ms: i32,
    /// group.max.session.timeout.ms
    pub group_max_session_timeout_ms: i32,
    /// group.max.size
    pub group_max_size: i32,
    /// offset.metadata.max.bytes
    pub offset_metadata_max_bytes: i32,
    /// Drain deadline on shutdown.
    pub shutdown_grace: Duration,
    /// Kafka keys accepted but without effect (logged at start).
    pub inert_keys: Vec<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            broker_id: 0,
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            zookeeper_connect: "localhost:2181".into(),
            zookeeper_session_timeout: Duration::from_millis(18_000),
            zookeeper_connection_timeout: Duration::from_millis(18_000),
            data_dir: PathBuf::from("/tmp/tributary-logs"),
            rack: None,
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            log_retention_ms: 7 * 24 * 3_600_000,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 300_000,
            log_flush_interval_messages: u64::MAX,
            log_flush_interval_ms: 1000,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: 104_857_600,
            max_connections: 1000,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_response_max_bytes: 10_485_760,
            replica_fetch_backoff_ms: 1000,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX,
            offset_metadata_max_bytes: 4096,
            shutdown_grace: Duration::from_millis(5000),
            inert_keys: Vec::new(),
        }
    }
}

fn invalid(key: &str, value: impl ToString, reason: &str) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

impl BrokerConfig {
    /// The replica fetchers' settings.
    pub fn fetcher_config(&self) -> crate::replica::fetcher::FetcherConfig {
        crate::replica::fetcher::FetcherConfig {
            broker_id: self.broker_id,
            max_wait_ms: self.replica_fetch_wait_max_ms,
            partition_max_bytes: self.replica_fetch_max_bytes,
            response_max_bytes: self.replica_fetch_response_max_bytes,
            backoff: Duration::from_millis(self.replica_fetch_backoff_ms),
        }
    }

    /// The settings the group state machine uses.
    pub fn group_config(&self) -> crate::group::GroupConfig {
        crate::group::GroupConfig {
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            min_session_timeout_ms: self.group_min_session_timeout_ms,
            max_session_timeout_ms: self.group_max_session_timeout_ms,
            max_size: self.group_max_size as usize,
        }
    }

    /// Merges flags over the properties file and checks every value.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first unknown, missing or invalid setting.
    pub fn from_args(args: Args) -> Result<BrokerConfig, ConfigError> {
        let mut props = Properties::load(args.config.as_deref())?;
        let d = BrokerConfig::default();
        let broker_id = args
            .broker_id
            .or(props.take_parsed("broker.id")?)
            .ok_or_else(|| ConfigError::Missing { key: "broker.id".into(), flag: "--broker-id".into() })?;
        let listeners_text =
            args.listeners.or(props.take("listeners")).unwrap_or_else(|| "PLAINTEXT://:9092".to_string());
        let listeners = parse_listeners("listeners", &listeners_text)?;
        let advertised_listeners = match args.advertised_listeners.or(props.take("advertised.listeners")) {
            Some(text) => parse_listeners("advertised.listeners", &text)?,
            None => listeners
                .iter()
                .map(|l| Endpoint {
                    host: if l.host.is_empty() || l.host == "0.0.0.0" { local_hostname() } else { l.host.clone() },
                    ..l.clone()
                })
                .collect(),
        };
        let zookeeper_connect = args.zookeeper_connect.or(props.take("zookeeper.connect")).ok_or_else(|| {
            ConfigError::Missing { key: "zookeeper.connect".into(), flag: "--zookeeper-connect".into() }
        })?;
        let session_ms =
            args.zookeeper_session_timeout_ms.or(props.take_parsed("zookeeper.session.timeout.ms")?).unwrap_or(18_000);
        let connection_ms = args
            .zookeeper_connection_timeout_ms
            .or(props.take_parsed("zookeeper.connection.timeout.ms")?)
            .unwrap_or(session_ms);
        let log_dirs = props.take("log.dirs");
        let log_dir = props.take("log.dir");
        let data_dir = match args.data_dir {
            Some(p) => p,
            None => match log_dirs.or(log_dir) {
                Some(text) => {
                    if text.contains(',') {
                        return Err(invalid(
                            "log.dirs",
                            &text,
                            "Tributary uses one data directory; give a single path",
                        ));
                    }
                    PathBuf::from(text.trim())
                }
                None => d.data_dir.clone(),
            },
        };
        let rack = args.broker_rack.or(props.take("broker.rack"));
        let num_partitions = args.num_partitions.or(props.take_parsed("num.partitions")?).unwrap_or(d.num_partitions);
        let default_replication_factor = args
            .default_replication_factor
            .or(props.take_parsed("default.replication.factor")?)
            .unwrap_or(d.default_replication_factor);
        let auto_create_topics = args
            .auto_create_topics_enable
            .or(props.take_parsed("auto.create.topics.enable")?)
            .unwrap_or(d.auto_create_topics);
        let hours: Option<i64> = props.take_parsed("log.retention.hours")?;
        let minutes: Option<i64> = props.take_parsed("log.retention.minutes")?;
        let file_ms: Option<i64> = props.take_parsed("log.retention.ms")?;
        let log_retention_ms = args
            .log_retention_ms
            .or(file_ms)
            .or(minutes.map(|m| m * 60_000))
            .or(hours.map(|h| h * 3_600_000))
            .unwrap_or(d.log_retention_ms);
        let log_retention_bytes =
            args.log_retention_bytes.or(props.take_parsed("log.retention.bytes")?).unwrap_or(d.log_retention_bytes);
        let log_retention_check_interval_ms = args
            .log_retention_check_interval_ms
            .or(props.take_parsed("log.retention.check.interval.ms")?)
            .unwrap_or(d.log_retention_check_interval_ms);
        let log_flush_interval_messages = args
            .log_flush_interval_messages
            .or(props.take_parsed("log.flush.interval.messages")?)
            .unwrap_or(d.log_flush_interval_messages);
        let log_flush_interval_ms = args
            .log_flush_interval_ms
            .or(props.take_parsed("log.flush.interval.ms")?)
            .unwrap_or(d.log_flush_interval_ms);
        let message_max_bytes =
            args.message_max_bytes.or(props.take_parsed("message.max.bytes")?).unwrap_or(d.message_max_bytes);
        let socket_request_max_bytes = args
            .socket_request_max_bytes
            .or(props.take_parsed("socket.request.max.bytes")?)
            .unwrap_or(d.socket_request_max_bytes);
        let max_connections =
            args.max_connections.or(props.take_parsed("max.connections")?).unwrap_or(d.max_connections);
        let offsets_topic_num_partitions = args
            .offsets_topic_num_partitions
            .or(props.take_parsed("offsets.topic.num.partitions")?)
            .unwrap_or(d.offsets_topic_num_partitions);
        let offsets_topic_replication_factor = args
            .offsets_topic_replication_factor
            .or(props.take_parsed("offsets.topic.replication.factor")?)
            .unwrap_or(d.offsets_topic_replication_factor);
        let min_insync_replicas =
            args.min_insync_replicas.or(props.take_parsed("min.insync.replicas")?).unwrap_or(d.min_insync_replicas);
        let replica_lag_time_max_ms = args
            .replica_lag_time_max_ms
            .or(props.take_parsed("replica.lag.time.max.ms")?)
            .unwrap_or(d.replica_lag_time_max_ms);
        let replica_fetch_wait_max_ms = args
            .replica_fetch_wait_max_ms
            .or(props.take_parsed("replica.fetch.wait.max.ms")?)
            .unwrap_or(d.replica_fetch_wait_max_ms);
        let replica_fetch_max_bytes = args
            .replica_fetch_max_bytes
            .or(props.take_parsed("replica.fetch.max.bytes")?)
            .unwrap_or(d.replica_fetch_max_bytes);
        let replica_fetch_response_max_bytes = args
            .replica_fetch_response_max_bytes
            .or(props.take_parsed("replica.fetch.response.max.bytes")?)
            .unwrap_or(d.replica_fetch_response_max_bytes);
        let replica_fetch_backoff_ms = args
            .replica_fetch_backoff_ms
            .or(props.take_parsed("replica.fetch.backoff.ms")?)
            .unwrap_or(d.replica_fetch_backoff_ms);
        let offsets_retention_ms = args
            .offsets_retention_minutes
            .or(props.take_parsed("offsets.retention.minutes")?)
            .map_or(d.offsets_retention_ms, |m: i64| m.saturating_mul(60_000));
        let offsets_retention_check_interval_ms = args
            .offsets_retention_check_interval_ms
            .or(props.take_parsed("offsets.retention.check.interval.ms")?)
            .unwrap_or(d.offsets_retention_check_interval_ms);
        let group_initial_rebalance_delay_ms = args
            .group_initial_rebalance_delay_ms
            .or(props.take_parsed("group.initial.rebalance.delay.ms")?)
            .unwrap_or(d.group_initial_rebalance_delay_ms);
        let group_min_session_timeout_ms = args
            .group_min_session_timeout_ms
            .or(props.take_parsed("group.min.session.timeout.ms")?)
            .unwrap_or(d.group_min_session_timeout_ms);
        let group_max_session_timeout_ms = args
            .group_max_session_timeout_ms
            .or(props.take_parsed("group.max.session.timeout.ms")?)
            .unwrap_or(d.group_max_session_timeout_ms);
        let group_max_size = args.group_max_size.or(props.take_parsed("group.max.size")?).unwrap_or(d.group_max_size);
        let offset_metadata_max_bytes = args
            .offset_metadata_max_bytes
            .or(props.take_parsed("offset.metadata.max.bytes")?)
            .unwrap_or(d.offset_metadata_max_bytes);
        let shutdown_grace = Duration::from_millis(args.shutdown_grace_ms.unwrap_or(5000));
        let inert_keys: Vec<String> =
            INERT_KAFKA_KEYS.iter().filter(|k| props.take(k).is_some()).map(|k| k.to_string()).collect();
        props.finish()?;

        let config = BrokerConfig {
            broker_id,
            listeners,
            advertised_listeners,
            zookeeper_connect,
            zookeeper_session_timeout: Duration::from_millis(session_ms),
            zookeeper_connection_timeout: Duration::from_millis(connection_ms),
            data_dir,
            rack,
            num_partitions,
            default_replication_factor,
            auto_create_topics,
            log_retention_ms,
            log_retention_bytes,
            log_retention_check_interval_ms,
            log_flush_interval_messages,
            log_flush_interval_ms,
            message_max_bytes,
            socket_request_max_bytes,
            max_connections,
            offsets_topic_num_partitions,
            offsets_topic_replication_factor,
            min_insync_replicas,
            replica_lag_time_max_ms,
            replica_fetch_wait_max_ms,
            replica_fetch_max_bytes,
            replica_fetch_response_max_bytes,
            replica_fetch_backoff_ms,
            offsets_retention_ms,
            offsets_retention_check_interval_ms,
            group_initial_rebalance_delay_ms,
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            group_max_size,
            offset_metadata_max_bytes,
            shutdown_grace,
            inert_keys,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first value out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.broker_id < 0 {
            return Err(invalid("broker.id", self.broker_id, "must be 0 or more"));
        }
        if self.num_partitions < 1 {
            return Err(invalid("num.partitions", self.num_partitions, "must be at least 1"));
        }
        if self.default_replication_factor < 1 {
            return Err(invalid("default.replication.factor", self.default_replication_factor, "must be at least 1"));
        }
        if self.message_max_bytes < 64 {
            return Err(invalid("message.max.bytes", self.message_max_bytes, "must be at least 64"));
        }
        if self.socket_request_max_bytes < 1024 {
            return Err(invalid("socket.request.max.bytes", self.socket_request_max_bytes, "must be at least 1024"));
        }
        if self.zookeeper_session_timeout < Duration::from_millis(1000) {
            return Err(invalid(
                "zookeeper.session.timeout.ms",
                self.zookeeper_session_timeout.as_millis(),
                "must be at least 1000",
            ));
        }
        if self.log_flush_interval_ms == 0 {
            return Err(invalid("log.flush.interval.ms", 0, "must be at least 1"));
        }
        if self.log_flush_interval_messages == 0 {
            return Err(invalid("log.flush.interval.messages", 0, "must be at least 1"));
        }
        if self.max_connections == 0 {
            return Err(invalid("max.connections", 0, "must be at least 1"));
        }
        if self.offsets_topic_num_partitions < 1 {
            return Err(invalid(
                "offsets.topic.num.partitions",
                self.offsets_topic_num_partitions,
                "must be at least 1",
            ));
        }
        if self.offsets_topic_replication_factor < 1 {
            let rf = self.offsets_topic_replication_factor;
            return Err(invalid("offsets.topic.replication.factor", rf, "must be at least 1"));
        }
        if self.min_insync_replicas < 1 {
            return Err(invalid("min.insync.replicas", self.min_insync_replicas, "must be at least 1"));
        }
        if self.replica_lag_time_max_ms < 100 {
            return Err(invalid("replica.lag.time.max.ms", self.replica_lag_time_max_ms, "must be at least 100"));
        }
        if self.replica_fetch_wait_max_ms < 0
            || i64::from(self.replica_fetch_wait_max_ms) >= self.replica_lag_time_max_ms
        {
            return Err(invalid(
                "replica.fetch.wait.max.ms",
                self.replica_fetch_wait_max_ms,
                "must be 0 or more and below replica.lag.time.max.ms, or idle followers would leave the ISR",
            ));
        }
        if self.replica_fetch_max_bytes < 1024 || self.replica_fetch_response_max_bytes < 1024 {
            return Err(invalid(
                "replica.fetch.max.bytes",
                self.replica_fetch_max_bytes.min(self.replica_fetch_response_max_bytes),
                "replica.fetch.max.bytes and replica.fetch.response.max.bytes must be at least 1024",
            ));
        }
        if self.offsets_retention_ms < 60_000 {
            return Err(invalid("offsets.retention.minutes", self.offsets_retention_ms / 60_000, "must be at least 1"));
        }
        if self.offsets_retention_check_interval_ms == 0 {
            return Err(invalid("offsets.retention.check.interval.ms", 0, "must be at least 1"));
        }
        if self.group_initial_rebalance_delay_ms < 0 {
            let v = self.group_initial_rebalance_delay_ms;
            return Err(invalid("group.initial.rebalance.delay.ms", v, "must be 0 or more"));
        }
        if self.group_min_session_timeout_ms < 1
            || self.group_min_session_timeout_ms > self.group_max_session_timeout_ms
        {
            let v = self.group_min_session_timeout_ms;
            return Err(invalid(
                "group.min.session.timeout.ms",
                v,
                "must be at least 1 and at most group.max.session.timeout.ms",
            ));
        }
        if self.group_max_size < 1 {
            return Err(invalid("group.max.size", self.group_max_size, "must be at least 1"));
        }
        if self.offset_metadata_max_bytes < 0 {
            return Err(invalid("offset.metadata.max.bytes", self.offset_metadata_max_bytes, "must be 0 or more"));
        }
        Ok(())
    }
}

fn local_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args { log_level: "info".into(), ..Args::default() }
    }

    fn write(text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("tributary-cfg-{}-{}", std::process::id(), text.len()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_stock_server_properties_file_is_accepted_and_flags_win() {
        let file = write(
            "broker.id=0\nnum.network.threads=3\nlisteners=PLAINTEXT://localhost:9092\nlog.dirs=/tmp/kafka-logs\nnum.partitions=1\nlog.retention.hours=168\nzookeeper.connect=localhost:2181\ngroup.initial.rebalance.delay.ms=0\noffsets.topic.replication.factor=1\ntransaction.state.log.min.isr=1\n",
        );
        let c = BrokerConfig::from_args(Args { config: Some(file), num_partitions: Some(4), ..args() }).unwrap();
        assert_eq!(c.broker_id, 0);
        assert_eq!(c.num_partitions, 4, "the flag wins over the file");
        assert_eq!(c.log_retention_ms, 168 * 3_600_000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/kafka-logs"));
        assert_eq!(c.advertised_listeners[0].host, "localhost");
        assert_eq!(c.inert_keys, vec!["num.network.threads", "transaction.state.log.min.isr"]);
        assert_eq!((c.group_initial_rebalance_delay_ms, c.offsets_topic_replication_factor), (0, 1));
    }

    #[test]
    fn unknown_and_invalid_settings_are_refused_by_name() {
        let file = write("broker.id=1\nzookeeper.connect=z:1\nlog.retention.hourz=1\n");
        let err = BrokerConfig::from_args(Args { config: Some(file), ..args() }).unwrap_err().to_string();
        assert!(err.contains("log.retention.hourz"), "{err}");
        let err = BrokerConfig::from_args(Args {
            broker_id: Some(1),
            zookeeper_connect: Some("z:1".into()),
            num_partitions: Some(0),
            ..args()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("num.partitions"), "{err}");
        let err =
            BrokerConfig::from_args(Args { zookeeper_connect: Some("z:1".into()), ..args() }).unwrap_err().to_string();
        assert!(err.contains("broker.id"), "{err}");
    }
}
