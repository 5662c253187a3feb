//! Broker configuration: Kafka's setting names, from flags, environment variables
//! (`TRIBUTARY_*`) or a `server.properties` file (`--config`); flags win over the file.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tributary_common::config::{ConfigError, Listeners, Properties, ProtocolMap};
use tributary_common::ids::{BrokerId, ClusterId};
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
    // KRaft's: the container's single-node mode runs a ZooKeeper of its own instead.
    "process.roles",
    "controller.quorum.voters",
];

tributary_common::settings! {
    /// The broker's settings as flags (each also an environment variable); see [`Args`].
    flags BrokerFlags;
    /// The effective broker configuration: every setting, declared once in this table.
    config BrokerConfig;
    broker_id: BrokerId = required, "broker.id", "TRIBUTARY_BROKER_ID",
        "this broker's unique id (0..=2147483647)";
    listeners: Listeners = optional, "listeners", "TRIBUTARY_LISTENERS",
        "where to accept clients, NAME://host:port[,...]; an empty host means every interface (default: the advertised listeners on every interface, as the confluent image derives them, else PLAINTEXT://:9092)";
    advertised_listeners: Listeners = optional, "advertised.listeners", "TRIBUTARY_ADVERTISED_LISTENERS",
        "the addresses clients are told to use (default: the listeners, an empty or 0.0.0.0 host replaced by this machine's name)";
    listener_security_protocol_map: ProtocolMap = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        "listener.security.protocol.map", "TRIBUTARY_LISTENER_SECURITY_PROTOCOL_MAP",
        "the security protocol of each listener name, NAME:PROTOCOL[,...] with PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (see Security)";
    inter_broker_listener_name: String = optional, "inter.broker.listener.name", "TRIBUTARY_INTER_BROKER_LISTENER_NAME",
        "the advertised listener followers fetch from (default: the one named by security.inter.broker.protocol)";
    security_inter_broker_protocol: String = optional, "security.inter.broker.protocol", "TRIBUTARY_SECURITY_INTER_BROKER_PROTOCOL",
        "the listener name followers fetch from when inter.broker.listener.name is not set (default PLAINTEXT)";
    controller_listener_names: String = optional, "controller.listener.names", "TRIBUTARY_CONTROLLER_LISTENER_NAMES",
        "listener names a KRaft file or environment gives its controller; accepted and not served (the coordinator is the controller, reached through ZooKeeper)";
    cluster_id: ClusterId = optional, "cluster.id", "TRIBUTARY_CLUSTER_ID",
        "the id /cluster/id gets if this broker is the first of a new cluster (default: a random one); an existing cluster keeps its id";
    zookeeper_connect: String = required, "zookeeper.connect", "TRIBUTARY_ZOOKEEPER_CONNECT",
        "host:port[,host:port...][/chroot]";
    zookeeper_session_timeout_ms: u64 = "18000", "zookeeper.session.timeout.ms", "TRIBUTARY_ZOOKEEPER_SESSION_TIMEOUT_MS",
        "how long ZooKeeper keeps this broker registered after losing touch with it";
    zookeeper_connection_timeout_ms: u64 = optional, "zookeeper.connection.timeout.ms", "TRIBUTARY_ZOOKEEPER_CONNECTION_TIMEOUT_MS",
        "how long to wait for ZooKeeper at start (default: the session timeout)";
    zookeeper_set_acl: bool = "false", "zookeeper.set.acl", "TRIBUTARY_ZOOKEEPER_SET_ACL",
        "create znodes writable only by this process's ZooKeeper SASL login (readable by all, except SCRAM credentials and broker configs), as Kafka does; needs a login";
    zookeeper_sasl_jaas_file: PathBuf = optional, "zookeeper.sasl.jaas.file", "TRIBUTARY_ZOOKEEPER_SASL_JAAS_FILE",
        "a JAAS file whose Client section (org.apache.zookeeper.server.auth.DigestLoginModule username/password) logs in to ZooKeeper with SASL DIGEST-MD5 (default: the file -Djava.security.auth.login.config in KAFKA_OPTS names, or bitnami's KAFKA_ZOOKEEPER_PROTOCOL=SASL with KAFKA_ZOOKEEPER_USER/PASSWORD)";
    data_dir: PathBuf = "/tmp/tributary-logs", "log.dirs", "TRIBUTARY_DATA_DIR",
        "the data directory (one directory; log.dir is read too)";
    broker_rack: String = optional, "broker.rack", "TRIBUTARY_BROKER_RACK",
        "rack of this broker; when every broker sets one, new partitions are placed rack-aware";
    num_partitions: i32 = "1", "num.partitions", "TRIBUTARY_NUM_PARTITIONS",
        "partitions of auto-created topics and of CreateTopics with -1";
    default_replication_factor: i16 = "1", "default.replication.factor", "TRIBUTARY_DEFAULT_REPLICATION_FACTOR",
        "replicas of auto-created topics and of CreateTopics with -1";
    auto_create_topics_enable: bool = "true", "auto.create.topics.enable", "TRIBUTARY_AUTO_CREATE_TOPICS_ENABLE",
        "create a topic when a client asks for metadata of one that does not exist";
    log_retention_ms: i64 = "604800000", "log.retention.ms", "TRIBUTARY_LOG_RETENTION_MS",
        "how long records are kept, 7 days by default; -1 keeps them forever (log.retention.minutes and .hours are read too)";
    log_retention_bytes: i64 = "-1", "log.retention.bytes", "TRIBUTARY_LOG_RETENTION_BYTES",
        "bytes kept per partition; -1 means no limit";
    log_retention_check_interval_ms: u64 = "300000", "log.retention.check.interval.ms", "TRIBUTARY_LOG_RETENTION_CHECK_INTERVAL_MS",
        "how often retention runs";
    log_cleanup_policy: String = "delete", "log.cleanup.policy", "TRIBUTARY_LOG_CLEANUP_POLICY",
        "cleanup.policy of topics without their own: delete, compact or compact,delete";
    log_message_timestamp_type: String = "CreateTime", "log.message.timestamp.type", "TRIBUTARY_LOG_MESSAGE_TIMESTAMP_TYPE",
        "CreateTime (keep the producer's timestamps) or LogAppendTime (stamp records on append), for topics without their own message.timestamp.type";
    log_message_timestamp_before_max_ms: i64 = "9223372036854775807", "log.message.timestamp.before.max.ms", "TRIBUTARY_LOG_MESSAGE_TIMESTAMP_BEFORE_MAX_MS",
        "refuse CreateTime records stamped more than this before the broker's clock (INVALID_TIMESTAMP naming each record), for topics without their own message.timestamp.before.max.ms";
    log_message_timestamp_after_max_ms: i64 = "9223372036854775807", "log.message.timestamp.after.max.ms", "TRIBUTARY_LOG_MESSAGE_TIMESTAMP_AFTER_MAX_MS",
        "refuse CreateTime records stamped more than this after the broker's clock, for topics without their own message.timestamp.after.max.ms";
    log_message_timestamp_difference_max_ms: i64 = "9223372036854775807", "log.message.timestamp.difference.max.ms", "TRIBUTARY_LOG_MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS",
        "deprecated in Kafka 3.6: stands for before.max.ms and after.max.ms where those keep their defaults";
    log_segment_bytes: i64 = "1073741824", "log.segment.bytes", "TRIBUTARY_LOG_SEGMENT_BYTES",
        "segment.bytes of topics without their own: a partition's open chunk closes at this size (chunks close at 1-64 MiB on their own), which makes it cleanable";
    log_roll_ms: i64 = "604800000", "log.roll.ms", "TRIBUTARY_LOG_ROLL_MS",
        "segment.ms of topics without their own: the open chunk closes this long after its first record (log.roll.hours is read too)";
    log_cleaner_enable: bool = "true", "log.cleaner.enable", "TRIBUTARY_LOG_CLEANER_ENABLE",
        "run the log cleaner, which compacts topics whose cleanup.policy includes compact (__consumer_offsets among them)";
    log_cleaner_threads: usize = "1", "log.cleaner.threads", "TRIBUTARY_LOG_CLEANER_THREADS",
        "threads compacting logs, each one partition at a time";
    log_cleaner_io_max_bytes_per_second: f64 = "1.7976931348623157E308", "log.cleaner.io.max.bytes.per.second", "TRIBUTARY_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND",
        "bytes per second the cleaner threads together read and write, at most";
    log_cleaner_dedupe_buffer_size: i64 = "134217728", "log.cleaner.dedupe.buffer.size", "TRIBUTARY_LOG_CLEANER_DEDUPE_BUFFER_SIZE",
        "memory for the cleaners' key maps, shared by the threads; a pass cleans as far as its map reaches";
    log_cleaner_io_buffer_load_factor: f64 = "0.9", "log.cleaner.io.buffer.load.factor", "TRIBUTARY_LOG_CLEANER_IO_BUFFER_LOAD_FACTOR",
        "how full a key map may get before a pass stops mapping";
    log_cleaner_backoff_ms: u64 = "15000", "log.cleaner.backoff.ms", "TRIBUTARY_LOG_CLEANER_BACKOFF_MS",
        "how long a cleaner thread sleeps when no log needs cleaning";
    log_cleaner_min_cleanable_ratio: f64 = "0.5", "log.cleaner.min.cleanable.ratio", "TRIBUTARY_LOG_CLEANER_MIN_CLEANABLE_RATIO",
        "min.cleanable.dirty.ratio of topics without their own";
    log_cleaner_delete_retention_ms: i64 = "86400000", "log.cleaner.delete.retention.ms", "TRIBUTARY_LOG_CLEANER_DELETE_RETENTION_MS",
        "delete.retention.ms of topics without their own: how long a tombstone stays after its first cleaning";
    log_cleaner_min_compaction_lag_ms: i64 = "0", "log.cleaner.min.compaction.lag.ms", "TRIBUTARY_LOG_CLEANER_MIN_COMPACTION_LAG_MS",
        "min.compaction.lag.ms of topics without their own";
    log_cleaner_max_compaction_lag_ms: i64 = "9223372036854775807", "log.cleaner.max.compaction.lag.ms", "TRIBUTARY_LOG_CLEANER_MAX_COMPACTION_LAG_MS",
        "max.compaction.lag.ms of topics without their own";
    log_flush_interval_messages: u64 = "9223372036854775807", "log.flush.interval.messages", "TRIBUTARY_LOG_FLUSH_INTERVAL_MESSAGES",
        "flush after this many appended records (the default, Kafka's, means never by count); 1 also makes every acks=all wait for the flush";
    log_flush_interval_ms: u64 = "1000", "log.flush.interval.ms", "TRIBUTARY_LOG_FLUSH_INTERVAL_MS",
        "background flush period";
    message_max_bytes: i32 = "1048588", "message.max.bytes", "TRIBUTARY_MESSAGE_MAX_BYTES",
        "largest record batch accepted";
    socket_request_max_bytes: i32 = "104857600", "socket.request.max.bytes", "TRIBUTARY_SOCKET_REQUEST_MAX_BYTES",
        "largest request frame";
    max_connections: usize = "1000", "max.connections", "TRIBUTARY_MAX_CONNECTIONS",
        "connections served at once";
    min_insync_replicas: i32 = "1", "min.insync.replicas", "TRIBUTARY_MIN_INSYNC_REPLICAS",
        "replicas that must have a record before acks=all succeeds, for topics without their own";
    replica_lag_time_max_ms: i64 = "30000", "replica.lag.time.max.ms", "TRIBUTARY_REPLICA_LAG_TIME_MAX_MS",
        "a follower not caught up for this long leaves the ISR";
    replica_fetch_wait_max_ms: i32 = "500", "replica.fetch.wait.max.ms", "TRIBUTARY_REPLICA_FETCH_WAIT_MAX_MS",
        "how long a follower's fetch waits at the leader for new data";
    max_incremental_fetch_session_cache_slots: u32 = "1000", "max.incremental.fetch.session.cache.slots", "TRIBUTARY_MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS",
        "incremental fetch sessions (KIP-227) kept; 0 answers every fetch in full";
    replica_fetch_max_bytes: i32 = "1048576", "replica.fetch.max.bytes", "TRIBUTARY_REPLICA_FETCH_MAX_BYTES",
        "bytes per partition a follower asks for";
    replica_fetch_response_max_bytes: i32 = "10485760", "replica.fetch.response.max.bytes", "TRIBUTARY_REPLICA_FETCH_RESPONSE_MAX_BYTES",
        "bytes per follower fetch response";
    replica_fetch_backoff_ms: u64 = "1000", "replica.fetch.backoff.ms", "TRIBUTARY_REPLICA_FETCH_BACKOFF_MS",
        "pause after a failed follower fetch";
    offsets_topic_replication_factor: i16 = "3", "offsets.topic.replication.factor", "TRIBUTARY_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "replicas of __consumer_offsets; groups work once this many brokers are live (set 1 for a single broker)";
    offsets_topic_num_partitions: i32 = "50", "offsets.topic.num.partitions", "TRIBUTARY_OFFSETS_TOPIC_NUM_PARTITIONS",
        "partitions of __consumer_offsets when it is created";
    offsets_retention_minutes: i64 = "10080", "offsets.retention.minutes", "TRIBUTARY_OFFSETS_RETENTION_MINUTES",
        "how long the offsets of an empty group are kept (7 days)";
    offsets_retention_check_interval_ms: u64 = "600000", "offsets.retention.check.interval.ms", "TRIBUTARY_OFFSETS_RETENTION_CHECK_INTERVAL_MS",
        "how often expired offsets are removed";
    transaction_state_log_replication_factor: i16 = "3", "transaction.state.log.replication.factor", "TRIBUTARY_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "replicas of __transaction_state; transactions work once this many brokers are live (set 1 for a single broker)";
    transaction_state_log_min_isr: i32 = "2", "transaction.state.log.min.isr", "TRIBUTARY_TRANSACTION_STATE_LOG_MIN_ISR",
        "min.insync.replicas of __transaction_state when it is created";
    transaction_state_log_num_partitions: i32 = "50", "transaction.state.log.num.partitions", "TRIBUTARY_TRANSACTION_STATE_LOG_NUM_PARTITIONS",
        "partitions of __transaction_state when it is created";
    transaction_max_timeout_ms: i32 = "900000", "transaction.max.timeout.ms", "TRIBUTARY_TRANSACTION_MAX_TIMEOUT_MS",
        "longest transaction.timeout.ms a producer may ask for (INVALID_TRANSACTION_TIMEOUT beyond)";
    transactional_id_expiration_ms: i64 = "604800000", "transactional.id.expiration.ms", "TRIBUTARY_TRANSACTIONAL_ID_EXPIRATION_MS",
        "how long a transactional id with nothing open is remembered after its last change (7 days)";
    transaction_abort_timed_out_transaction_cleanup_interval_ms: u64 = "10000", "transaction.abort.timed.out.transaction.cleanup.interval.ms", "TRIBUTARY_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS",
        "how often transactions open past their timeout are aborted";
    group_initial_rebalance_delay_ms: i64 = "3000", "group.initial.rebalance.delay.ms", "TRIBUTARY_GROUP_INITIAL_REBALANCE_DELAY_MS",
        "how long a new group waits for more members before its first rebalance";
    group_min_session_timeout_ms: i32 = "6000", "group.min.session.timeout.ms", "TRIBUTARY_GROUP_MIN_SESSION_TIMEOUT_MS",
        "shortest session timeout a consumer may ask for";
    group_max_session_timeout_ms: i32 = "1800000", "group.max.session.timeout.ms", "TRIBUTARY_GROUP_MAX_SESSION_TIMEOUT_MS",
        "longest session timeout a consumer may ask for";
    group_max_size: i32 = "2147483647", "group.max.size", "TRIBUTARY_GROUP_MAX_SIZE",
        "members per group";
    offset_metadata_max_bytes: i32 = "4096", "offset.metadata.max.bytes", "TRIBUTARY_OFFSET_METADATA_MAX_BYTES",
        "longest commit metadata string";
    leader_replication_throttled_rate: i64 = "9223372036854775807", "leader.replication.throttled.rate", "TRIBUTARY_LEADER_REPLICATION_THROTTLED_RATE",
        "bytes per second a leader serves to out-of-sync followers of the replicas in leader.replication.throttled.replicas (usually set dynamically by kafka-reassign-partitions --throttle)";
    follower_replication_throttled_rate: i64 = "9223372036854775807", "follower.replication.throttled.rate", "TRIBUTARY_FOLLOWER_REPLICATION_THROTTLED_RATE",
        "bytes per second an out-of-sync follower fetches for the replicas in follower.replication.throttled.replicas";
    replication_quota_window_num: u32 = "11", "replication.quota.window.num", "TRIBUTARY_REPLICATION_QUOTA_WINDOW_NUM",
        "samples over which replication throttle rates are measured";
    replication_quota_window_size_seconds: u32 = "1", "replication.quota.window.size.seconds", "TRIBUTARY_REPLICATION_QUOTA_WINDOW_SIZE_SECONDS",
        "length of one replication throttle sample";
    quota_window_num: u32 = "11", "quota.window.num", "TRIBUTARY_QUOTA_WINDOW_NUM",
        "samples over which client quota rates are measured";
    quota_window_size_seconds: u32 = "1", "quota.window.size.seconds", "TRIBUTARY_QUOTA_WINDOW_SIZE_SECONDS",
        "length of one client quota sample";
    metrics_listen: std::net::SocketAddr = optional, "metrics.listen", "TRIBUTARY_METRICS_LISTEN",
        "host:port where Prometheus scrapes this broker's metrics at /metrics (default: not served)";
    authorizer_class_name: String = optional, "authorizer.class.name", "TRIBUTARY_AUTHORIZER_CLASS_NAME",
        "turns ACLs on with Kafka's ZooKeeper authorizer semantics (kafka.security.authorizer.AclAuthorizer; Kafka's other authorizer names are accepted); unset, every principal may do everything";
    super_users: String = optional, "super.users", "TRIBUTARY_SUPER_USERS",
        "principals allowed everything without ACLs, separated by ';' (User:admin;User:broker)";
    allow_everyone_if_no_acl_found: bool = "false", "allow.everyone.if.no.acl.found", "TRIBUTARY_ALLOW_EVERYONE_IF_NO_ACL_FOUND",
        "with an authorizer: whether a resource without any ACL is open to everyone";
    shutdown_grace_ms: u64 = "5000", "shutdown.grace.ms", "TRIBUTARY_SHUTDOWN_GRACE_MS",
        "on SIGTERM, how long connections may finish their requests before they are closed";
}

/// The command line: a properties file, the settings, and logging.
#[derive(Debug, Parser, Default)]
#[command(
    name = "broker",
    version,
    about = "Tributary broker: Kafka-compatible, storing partitions in sled, coordinated through ZooKeeper"
)]
pub struct Args {
    /// A Kafka server.properties file; flags and environment variables override its values.
    #[arg(long, env = "TRIBUTARY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub settings: BrokerFlags,
    /// Log filter, RUST_LOG syntax (default info).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format: text or json.
    #[arg(long, env = "TRIBUTARY_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

fn invalid(key: &str, value: impl ToString, reason: &str) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

/// Kafka's other spellings of a setting, folded into the declared key before merging:
/// KRaft's `node.id` for `broker.id`, `log.dir` for `log.dirs`, `log.retention.minutes` and `.hours` for `log.retention.ms`
/// (Kafka's precedence: ms, then minutes, then hours).
fn fold_aliases(props: &mut Properties) -> Result<(), ConfigError> {
    // KRaft names a broker node.id; it stands for broker.id when that is not given.
    props.fold_alias("node.id", "broker.id");
    props.fold_alias("log.dir", "log.dirs");
    let units = [
        ("log.retention.minutes", "log.retention.ms", 60_000i64),
        ("log.retention.hours", "log.retention.ms", 3_600_000),
        ("log.roll.hours", "log.roll.ms", 3_600_000),
    ];
    for (key, target, factor) in units {
        let value: Option<i64> = props.take_parsed(key)?;
        if let Some(v) = value {
            if !props.contains(target) {
                props.set(target, v.saturating_mul(factor).to_string());
            }
        }
    }
    Ok(())
}

/// The configuration and what start-up should say about its sources.
#[derive(Debug)]
pub struct Loaded {
    /// The effective configuration.
    pub config: BrokerConfig,
    /// Kafka keys that were set but mean nothing here (thread pools, segment sizes).
    pub inert_keys: Vec<&'static str>,
    /// `KAFKA_*` variables naming Kafka settings Tributary does not implement.
    pub unimplemented: Vec<String>,
    /// `KAFKA_*` variables for the JVM, logging or the images' scripts.
    pub not_applicable: Vec<String>,
    /// The TLS and SASL settings (`ssl.*`, `sasl.*`, `listener.name.<l>.*`), kept apart
    /// because they hold secrets; [`crate::security::Security::build`] reads them.
    pub security: crate::security::SecurityProps,
}

impl BrokerConfig {
    /// The replica fetchers' settings.
    pub(crate) fn fetcher_config(&self) -> crate::replica::fetcher::FetcherConfig {
        crate::replica::fetcher::FetcherConfig {
            broker_id: self.broker_id,
            listener: self.inter_broker_listener(),
            max_wait_ms: self.replica_fetch_wait_max_ms,
            partition_max_bytes: self.replica_fetch_max_bytes,
            response_max_bytes: self.replica_fetch_response_max_bytes,
            backoff: Duration::from_millis(self.replica_fetch_backoff_ms),
            security: tributary_common::kafka_client::ClientSecurity::default(),
        }
    }

    /// The transaction coordinator's settings.
    pub(crate) fn txn_config(&self) -> crate::txn::TxnConfig {
        crate::txn::TxnConfig {
            max_timeout_ms: self.transaction_max_timeout_ms,
            id_expiration_ms: self.transactional_id_expiration_ms,
        }
    }

    /// The replication throttles' measuring window.
    pub(crate) fn replication_quota_window(&self) -> crate::quota::Window {
        crate::quota::Window {
            samples: self.replication_quota_window_num as usize,
            sample_ms: i64::from(self.replication_quota_window_size_seconds) * 1000,
        }
    }

    /// The client quotas' measuring window.
    pub(crate) fn quota_window(&self) -> crate::quota::Window {
        crate::quota::Window {
            samples: self.quota_window_num as usize,
            sample_ms: i64::from(self.quota_window_size_seconds) * 1000,
        }
    }

    /// The settings the group state machine uses.
    pub(crate) fn group_config(&self) -> crate::group::GroupConfig {
        crate::group::GroupConfig {
            initial_rebalance_delay_ms: self.group_initial_rebalance_delay_ms,
            min_session_timeout_ms: self.group_min_session_timeout_ms,
            max_session_timeout_ms: self.group_max_session_timeout_ms,
            max_size: self.group_max_size as usize,
        }
    }

    /// The addresses registered in `/brokers/ids/<id>`: `advertised.listeners`, else the
    /// listeners with an empty or wildcard host replaced by this machine's name.
    pub fn advertised(&self) -> Vec<Endpoint> {
        match &self.advertised_listeners {
            Some(l) => l.0.clone(),
            None => self
                .served_listeners()
                .iter()
                .map(|l| Endpoint {
                    host: if l.host.is_empty() || l.host == "0.0.0.0" { local_hostname() } else { l.host.clone() },
                    ..l.clone()
                })
                .collect(),
        }
    }

    /// `listeners`; when not given, the advertised listeners on every interface (the
    /// confluent image's rule, so a compose file that sets only
    /// `KAFKA_ADVERTISED_LISTENERS` works), else `PLAINTEXT://:9092`.
    pub fn listeners(&self) -> Vec<Endpoint> {
        match (&self.listeners, &self.advertised_listeners) {
            (Some(l), _) => l.0.clone(),
            (None, Some(a)) => a.0.iter().map(|e| Endpoint { host: String::new(), ..e.clone() }).collect(),
            (None, None) => vec![Endpoint { listener: "PLAINTEXT".into(), host: String::new(), port: 9092 }],
        }
    }

    /// Listener names given to a KRaft controller (`controller.listener.names`), upper-cased.
    pub fn controller_listeners(&self) -> Vec<String> {
        self.controller_listener_names
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|n| n.trim().to_ascii_uppercase())
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// The listeners this broker serves: `listeners` without the controller's.
    pub fn served_listeners(&self) -> Vec<Endpoint> {
        let controller = self.controller_listeners();
        self.listeners().into_iter().filter(|l| !controller.contains(&l.listener)).collect()
    }

    /// The listener followers fetch from: `inter.broker.listener.name`, else the listener
    /// named by `security.inter.broker.protocol` (Kafka's rule), upper-cased.
    pub fn inter_broker_listener(&self) -> String {
        self.inter_broker_listener_name
            .as_deref()
            .or(self.security_inter_broker_protocol.as_deref())
            .unwrap_or("PLAINTEXT")
            .to_ascii_uppercase()
    }

    /// Checks the listeners against each other and the protocol map, as Kafka does, and
    /// refuses protocols Tributary does not serve yet.
    fn validate_listeners(&self) -> Result<(), ConfigError> {
        let map = &self.listener_security_protocol_map;
        let advertised = self.advertised();
        let served = self.served_listeners();
        if served.is_empty() {
            return Err(invalid(
                "listeners",
                Listeners(self.listeners()),
                "every listener is a controller listener (controller.listener.names); add one for clients",
            ));
        }
        if let Some(e) = advertised.iter().find(|a| self.controller_listeners().contains(&a.listener)) {
            return Err(invalid(
                "advertised.listeners",
                e,
                "a controller listener (controller.listener.names) cannot be advertised to clients",
            ));
        }
        for (key, endpoints) in [("listeners", &served), ("advertised.listeners", &advertised)] {
            for e in endpoints {
                match map.protocol(&e.listener) {
                    None => {
                        return Err(invalid(
                            key,
                            e,
                            &format!(
                                "listener name {} has no entry in listener.security.protocol.map ({map}); add {}:PLAINTEXT",
                                e.listener, e.listener
                            ),
                        ))
                    }
                    Some("PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL") => {}
                    Some(other) => {
                        return Err(invalid(
                            key,
                            e,
                            &format!("listener {} speaks {other}, which is not a security protocol; use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL in listener.security.protocol.map", e.listener),
                        ))
                    }
                }
            }
        }
        let listeners = self.listeners();
        if let Some(e) = advertised.iter().find(|a| !listeners.iter().any(|l| l.listener == a.listener)) {
            return Err(invalid(
                "advertised.listeners",
                e,
                &format!(
                    "listener name {} is advertised but not in listeners; every advertised name must be listened on",
                    e.listener
                ),
            ));
        }
        if let (Some(name), Some(protocol)) = (&self.inter_broker_listener_name, &self.security_inter_broker_protocol) {
            return Err(invalid(
                "inter.broker.listener.name",
                name,
                &format!("security.inter.broker.protocol is set too ({protocol}); set only one of them"),
            ));
        }
        let inter = self.inter_broker_listener();
        if !advertised.iter().any(|a| a.listener == inter) {
            let names: Vec<&str> = advertised.iter().map(|a| a.listener.as_str()).collect();
            return Err(invalid(
                "inter.broker.listener.name",
                &inter,
                &format!("followers fetch from the {inter} listener, which is not advertised ({}); set inter.broker.listener.name to one that is", names.join(", ")),
            ));
        }
        Ok(())
    }

    /// The authorizer's settings, or `None` without `authorizer.class.name`.
    ///
    /// # Errors
    /// An authorizer class Tributary does not stand in for.
    pub fn authorizer(&self) -> Result<Option<tributary_common::acl::AuthorizerConfig>, ConfigError> {
        tributary_common::acl::AuthorizerConfig::from_settings(
            self.authorizer_class_name.as_deref(),
            self.super_users.as_deref(),
            self.allow_everyone_if_no_acl_found,
        )
        .map_err(|reason| invalid("authorizer.class.name", self.authorizer_class_name.as_deref().unwrap_or_default(), &reason))
    }

    /// `zookeeper.session.timeout.ms`.
    pub fn zookeeper_session_timeout(&self) -> Duration {
        Duration::from_millis(self.zookeeper_session_timeout_ms)
    }

    /// `zookeeper.connection.timeout.ms`, defaulting to the session timeout.
    pub fn zookeeper_connection_timeout(&self) -> Duration {
        Duration::from_millis(self.zookeeper_connection_timeout_ms.unwrap_or(self.zookeeper_session_timeout_ms))
    }

    /// `offsets.retention.minutes`, in milliseconds.
    pub(crate) fn offsets_retention_ms(&self) -> i64 {
        self.offsets_retention_minutes.saturating_mul(60_000)
    }

    /// `shutdown.grace.ms`.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// Reads the configuration from every source, in this order of precedence: flags,
    /// `TRIBUTARY_*` variables, the Kafka images' `KAFKA_*` / `KAFKA_CFG_*` variables,
    /// the `--config` file; then checks every value.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first unknown (in the file), missing or invalid setting,
    /// and the variable that set it when it came from the environment.
    pub fn from_args(args: Args) -> Result<Loaded, ConfigError> {
        Self::from_sources(args, std::env::vars())
    }

    /// [`Self::from_args`] with the environment given (tests).
    ///
    /// # Errors
    /// As [`Self::from_args`].
    pub fn from_sources(args: Args, env: impl IntoIterator<Item = (String, String)>) -> Result<Loaded, ConfigError> {
        let props = Properties::load(args.config.as_deref())?;
        Self::from_properties(args, props, env)
    }

    /// [`Self::from_sources`] with the file already read into `props`.
    ///
    /// # Errors
    /// As [`Self::from_args`].
    pub fn from_properties(
        args: Args,
        mut props: Properties,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        fold_aliases(&mut props)?;
        let env: Vec<(String, String)> = env.into_iter().collect();
        let (mut from_env, not_applicable) = Properties::from_kafka_environment(env.iter().cloned());
        fold_aliases(&mut from_env)?;
        props.overlay(from_env);
        let config = BrokerConfig::merge(args.settings, &mut props)?;
        let mut security = crate::security::SecurityProps::take(&mut props);
        security.read_environment(&env)?;
        security.zookeeper = tributary_common::zk::ZkSecurity::resolve(
            config.zookeeper_sasl_jaas_file.as_deref(),
            config.zookeeper_set_acl,
            &env,
        )?;
        let inert_keys: Vec<&'static str> =
            INERT_KAFKA_KEYS.iter().copied().filter(|k| props.take(k).is_some()).collect();
        let unimplemented = props.finish()?;
        config.validate()?;
        Ok(Loaded { config, inert_keys, unimplemented, not_applicable, security })
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
        if self.log_segment_bytes < 14 {
            return Err(invalid("log.segment.bytes", self.log_segment_bytes, "must be at least 14"));
        }
        if self.log_roll_ms < 1 {
            return Err(invalid("log.roll.ms", self.log_roll_ms, "must be at least 1"));
        }
        if !matches!(
            self.log_cleanup_policy.replace(' ', "").as_str(),
            "delete" | "compact" | "compact,delete" | "delete,compact"
        ) {
            return Err(invalid(
                "log.cleanup.policy",
                &self.log_cleanup_policy,
                "must be delete, compact or compact,delete",
            ));
        }
        if !(0.0..=1.0).contains(&self.log_cleaner_min_cleanable_ratio) {
            return Err(invalid(
                "log.cleaner.min.cleanable.ratio",
                self.log_cleaner_min_cleanable_ratio,
                "must be between 0 and 1",
            ));
        }
        if !(self.log_cleaner_io_buffer_load_factor > 0.0 && self.log_cleaner_io_buffer_load_factor <= 1.0) {
            return Err(invalid(
                "log.cleaner.io.buffer.load.factor",
                self.log_cleaner_io_buffer_load_factor,
                "must be above 0 and at most 1",
            ));
        }
        if self.log_cleaner_dedupe_buffer_size < 1 << 20 {
            return Err(invalid(
                "log.cleaner.dedupe.buffer.size",
                self.log_cleaner_dedupe_buffer_size,
                "must be at least 1048576",
            ));
        }
        if self.log_cleaner_min_compaction_lag_ms < 0 || self.log_cleaner_max_compaction_lag_ms < 1 {
            return Err(invalid(
                "log.cleaner.max.compaction.lag.ms",
                self.log_cleaner_max_compaction_lag_ms,
                "compaction lags must be at least 0 (min) and 1 (max)",
            ));
        }
        if !matches!(self.log_message_timestamp_type.as_str(), "CreateTime" | "LogAppendTime") {
            return Err(invalid(
                "log.message.timestamp.type",
                &self.log_message_timestamp_type,
                "must be CreateTime or LogAppendTime",
            ));
        }
        for (key, value) in [
            ("log.message.timestamp.before.max.ms", self.log_message_timestamp_before_max_ms),
            ("log.message.timestamp.after.max.ms", self.log_message_timestamp_after_max_ms),
            ("log.message.timestamp.difference.max.ms", self.log_message_timestamp_difference_max_ms),
        ] {
            if value < 0 {
                return Err(invalid(key, value, "must be at least 0"));
            }
        }
        if self.message_max_bytes < 64 {
            return Err(invalid("message.max.bytes", self.message_max_bytes, "must be at least 64"));
        }
        if self.socket_request_max_bytes < 1024 {
            return Err(invalid("socket.request.max.bytes", self.socket_request_max_bytes, "must be at least 1024"));
        }
        if self.zookeeper_session_timeout_ms < 1000 {
            return Err(invalid(
                "zookeeper.session.timeout.ms",
                self.zookeeper_session_timeout_ms,
                "must be at least 1000",
            ));
        }
        self.validate_listeners()?;
        self.authorizer()?;
        if let Some(dir) = self.data_dir.to_str().filter(|d| d.contains(',')) {
            return Err(invalid("log.dirs", dir, "Tributary uses one data directory; give a single path"));
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
        if self.offsets_retention_minutes < 1 {
            return Err(invalid("offsets.retention.minutes", self.offsets_retention_minutes, "must be at least 1"));
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
        if self.leader_replication_throttled_rate < 0 || self.follower_replication_throttled_rate < 0 {
            return Err(invalid(
                "leader.replication.throttled.rate",
                self.leader_replication_throttled_rate.min(self.follower_replication_throttled_rate),
                "leader.replication.throttled.rate and follower.replication.throttled.rate must be 0 or more",
            ));
        }
        if self.replication_quota_window_num < 2 || self.replication_quota_window_size_seconds < 1 {
            return Err(invalid(
                "replication.quota.window.num",
                self.replication_quota_window_num,
                "must be at least 2, with replication.quota.window.size.seconds at least 1",
            ));
        }
        if self.quota_window_num < 2 {
            return Err(invalid("quota.window.num", self.quota_window_num, "must be at least 2"));
        }
        if self.quota_window_size_seconds < 1 {
            return Err(invalid("quota.window.size.seconds", self.quota_window_size_seconds, "must be at least 1"));
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
    use clap::CommandFactory;

    fn args() -> Args {
        Args { log_level: "info".into(), ..Args::default() }
    }

    fn flags() -> BrokerFlags {
        BrokerFlags { broker_id: Some(1), zookeeper_connect: Some("z:1".into()), ..BrokerFlags::default() }
    }

    fn write(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("tributary-cfg-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn every_declared_default_parses_and_passes_validation() {
        let c = BrokerConfig::default();
        assert_eq!(Listeners(c.listeners()).to_string(), "PLAINTEXT://:9092");
        assert_eq!(c.log_retention_ms, 7 * 24 * 3_600_000);
        assert_eq!(c.log_flush_interval_messages, i64::MAX as u64, "Kafka's default: never by count");
        assert_eq!(c.offsets_retention_ms(), 7 * 24 * 3_600_000);
        c.validate().unwrap();
        Args::command().debug_assert();
    }

    #[test]
    fn a_stock_server_properties_file_is_accepted_and_flags_win() {
        let file = write(
            "stock",
            "broker.id=0\nnum.network.threads=3\nlisteners=PLAINTEXT://localhost:9092\nlog.dirs=/tmp/kafka-logs\nnum.partitions=1\nlog.retention.hours=168\nzookeeper.connect=localhost:2181\ngroup.initial.rebalance.delay.ms=0\noffsets.topic.replication.factor=1\ntransaction.state.log.min.isr=1\n",
        );
        let settings = BrokerFlags { num_partitions: Some(4), ..BrokerFlags::default() };
        let Loaded { config: c, inert_keys: inert, .. } =
            BrokerConfig::from_sources(Args { config: Some(file), settings, ..args() }, []).unwrap();
        assert_eq!(c.broker_id, 0);
        assert_eq!(c.num_partitions, 4, "the flag wins over the file");
        assert_eq!(c.log_retention_ms, 168 * 3_600_000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/kafka-logs"));
        assert_eq!(c.advertised()[0].host, "localhost");
        assert_eq!(inert, vec!["num.network.threads"]);
        assert_eq!((c.group_initial_rebalance_delay_ms, c.offsets_topic_replication_factor), (0, 1));
        assert_eq!(c.transaction_state_log_min_isr, 1);
    }

    #[test]
    fn kafkas_other_spellings_fold_into_the_declared_key_with_kafkas_precedence() {
        let cases = [
            ("log.retention.hours=2\n", 2 * 3_600_000),
            ("log.retention.minutes=3\nlog.retention.hours=2\n", 3 * 60_000),
            ("log.retention.ms=5\nlog.retention.minutes=3\nlog.retention.hours=2\n", 5),
        ];
        for (i, (text, want)) in cases.into_iter().enumerate() {
            let file = write(&format!("alias{i}"), text);
            let c = BrokerConfig::from_sources(Args { config: Some(file), settings: flags(), ..args() }, []).unwrap();
            assert_eq!(c.config.log_retention_ms, want, "{text}");
        }
        let file = write("logdir", "log.dir=/a\n");
        let c = BrokerConfig::from_sources(Args { config: Some(file), settings: flags(), ..args() }, []).unwrap();
        assert_eq!(c.config.data_dir, PathBuf::from("/a"));
        let file = write("logdirs", "log.dirs=/a,/b\n");
        let err = BrokerConfig::from_sources(Args { config: Some(file), settings: flags(), ..args() }, []).unwrap_err();
        assert!(err.to_string().contains("one data directory"), "{err}");
    }

    #[test]
    fn named_listeners_are_checked_as_kafka_checks_them() {
        let with = |extra: &[(&str, &str)]| {
            let env = extra.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            BrokerConfig::from_sources(Args { settings: flags(), ..args() }, env).map(|l| l.config)
        };
        // The confluent tutorial's listeners: two names, both PLAINTEXT.
        let c = with(&[
            ("KAFKA_LISTENERS", "PLAINTEXT://0.0.0.0:9092,PLAINTEXT_HOST://0.0.0.0:29092"),
            ("KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://kafka-1:9092,PLAINTEXT_HOST://localhost:29092"),
            ("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT"),
            ("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"),
        ])
        .unwrap();
        assert_eq!(c.advertised()[1].to_string(), "PLAINTEXT_HOST://localhost:29092");
        assert_eq!(c.inter_broker_listener(), "PLAINTEXT");
        // (extra settings, a word the refusal must contain)
        let refused: [(&[(&str, &str)], &str); 5] = [
            (&[("KAFKA_LISTENERS", "INTERNAL://:9092")], "no entry in listener.security.protocol.map"),
            (
                &[("KAFKA_LISTENERS", "SSL://:9093"), ("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "SSL:TLS")],
                "not a security protocol",
            ),
            (
                &[
                    ("KAFKA_LISTENERS", "PLAINTEXT://:9092"),
                    ("KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://h:9092,OTHER://h:1"),
                    ("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "OTHER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
                ],
                "not in listeners",
            ),
            (&[("KAFKA_INTER_BROKER_LISTENER_NAME", "REPLICATION")], "not advertised"),
            (
                &[
                    ("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"),
                    ("KAFKA_SECURITY_INTER_BROKER_PROTOCOL", "PLAINTEXT"),
                ],
                "only one of them",
            ),
        ];
        for (extra, needle) in refused {
            let err = with(extra).unwrap_err().to_string();
            assert!(err.contains(needle), "{extra:?}: {err}");
        }
    }

    #[test]
    fn a_kraft_style_environment_reads_as_a_single_broker() {
        // The environment of the tutorial's single confluent container (KRaft variables),
        // with the ZooKeeper address the container's entrypoint adds.
        let env = [
            (
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT",
            ),
            ("KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://kafka-server:29092,PLAINTEXT_HOST://localhost:9092"),
            (
                "KAFKA_LISTENERS",
                "CONTROLLER://kafka-server:19092,PLAINTEXT://kafka-server:29092,PLAINTEXT_HOST://0.0.0.0:9092",
            ),
            ("KAFKA_NODE_ID", "1"),
            ("KAFKA_PROCESS_ROLES", "broker,controller"),
            ("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka-server:19092"),
            ("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"),
            ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
            ("TRIBUTARY_ZOOKEEPER_CONNECT", "127.0.0.1:2181"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let settings = BrokerFlags { zookeeper_connect: Some("127.0.0.1:2181".into()), ..BrokerFlags::default() };
        let loaded = BrokerConfig::from_sources(Args { settings, ..args() }, env).unwrap();
        assert_eq!(loaded.config.broker_id, 1, "node.id stands for broker.id");
        let served: Vec<String> = loaded.config.served_listeners().iter().map(ToString::to_string).collect();
        assert_eq!(served, ["PLAINTEXT://kafka-server:29092", "PLAINTEXT_HOST://0.0.0.0:9092"]);
        assert_eq!(loaded.inert_keys, vec!["process.roles", "controller.quorum.voters"]);
        assert!(loaded.unimplemented.is_empty(), "{:?}", loaded.unimplemented);
    }

    #[test]
    fn without_listeners_the_advertised_ones_are_listened_on_every_interface() {
        let env = [
            ("KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://kafka-1:9092,PLAINTEXT_HOST://localhost:29092"),
            ("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c = BrokerConfig::from_sources(Args { settings: flags(), ..args() }, env).unwrap().config;
        assert_eq!(Listeners(c.served_listeners()).to_string(), "PLAINTEXT://:9092,PLAINTEXT_HOST://:29092");
    }

    #[test]
    fn kafka_variables_sit_between_flags_and_the_file() {
        let file = write("layers", "broker.id=1\nzookeeper.connect=file:1\nnum.partitions=2\nlog.retention.ms=5\n");
        let env = [
            ("KAFKA_ZOOKEEPER_CONNECT", "env:1"),
            ("KAFKA_NUM_PARTITIONS", "3"),
            ("KAFKA_LOG_RETENTION_HOURS", "1"),
            ("KAFKA_HEAP_OPTS", "-Xmx1G"),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"),
            ("KAFKA_COMPRESSION_TYPE", "gzip"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let settings = BrokerFlags { num_partitions: Some(4), ..BrokerFlags::default() };
        let loaded = BrokerConfig::from_sources(Args { config: Some(file), settings, ..args() }, env).unwrap();
        assert_eq!(loaded.config.zookeeper_connect, "env:1", "the environment wins over the file");
        assert_eq!(loaded.config.num_partitions, 4, "a flag wins over the environment");
        assert_eq!(loaded.config.log_retention_ms, 3_600_000, "the environment's hours win over the file's ms");
        assert!(loaded.inert_keys.is_empty());
        assert_eq!(loaded.config.transaction_state_log_min_isr, 1);
        assert_eq!(loaded.unimplemented, vec!["KAFKA_COMPRESSION_TYPE"], "named in a warning, not refused");
        assert_eq!(loaded.not_applicable, vec!["KAFKA_HEAP_OPTS"]);

        let env = [("KAFKA_CFG_NUM_PARTITIONS", "many")].map(|(k, v)| (k.to_string(), v.to_string()));
        let err = BrokerConfig::from_sources(Args { settings: flags(), ..args() }, env).unwrap_err().to_string();
        assert!(err.contains("KAFKA_CFG_NUM_PARTITIONS") && err.contains("many"), "{err}");
        // Through another spelling too: the variable that set it is still named.
        let env = [("KAFKA_NODE_ID", "one")].map(|(k, v)| (k.to_string(), v.to_string()));
        let settings = BrokerFlags { zookeeper_connect: Some("z:1".into()), ..BrokerFlags::default() };
        let err = BrokerConfig::from_sources(Args { settings, ..args() }, env).unwrap_err().to_string();
        assert!(err.contains("KAFKA_NODE_ID") && err.contains("one"), "{err}");
    }

    #[test]
    fn unknown_and_invalid_settings_are_refused_by_name() {
        let file = write("unknown", "broker.id=1\nzookeeper.connect=z:1\nlog.retention.hourz=1\n");
        let err = BrokerConfig::from_sources(Args { config: Some(file), ..args() }, []).unwrap_err().to_string();
        assert!(err.contains("log.retention.hourz"), "{err}");
        let settings = BrokerFlags { num_partitions: Some(0), ..flags() };
        let err = BrokerConfig::from_sources(Args { settings, ..args() }, []).unwrap_err().to_string();
        assert!(err.contains("num.partitions"), "{err}");
        let file = write("badvalue", "listeners=SSL://h:1\nlistener.security.protocol.map=SSL:TLS\n");
        let err = BrokerConfig::from_sources(Args { config: Some(file), settings: flags(), ..args() }, []).unwrap_err();
        assert!(err.to_string().contains("listener.security.protocol.map") && err.to_string().contains("TLS"), "{err}");
        let settings = BrokerFlags { zookeeper_connect: Some("z:1".into()), ..BrokerFlags::default() };
        let err = BrokerConfig::from_sources(Args { settings, ..args() }, []).unwrap_err().to_string();
        assert!(err.contains("broker.id") && err.contains("--broker-id"), "{err}");
    }

    #[test]
    fn flags_read_their_environment_variables() {
        let parsed = Args::try_parse_from(["broker", "--broker-id", "7", "--log-retention-ms", "-1"]).unwrap();
        assert_eq!((parsed.settings.broker_id, parsed.settings.log_retention_ms), (Some(7), Some(-1)));
        let command = Args::command();
        for setting in BrokerConfig::SETTINGS {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id().as_str() == setting.field)
                .unwrap_or_else(|| panic!("{} has no flag", setting.key));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(setting.env), "{}", setting.key);
            assert_eq!(arg.get_long().map(|l| format!("--{l}")), Some(setting.flag()), "{}", setting.key);
        }
    }

    /// The README's table is documentation of this one: each row names a declared flag and
    /// key, and every declared setting has a row.
    #[test]
    fn the_readme_documents_every_setting() {
        let problems = tributary_common::config::undocumented_settings(
            include_str!("../../README.md"),
            "broker",
            BrokerConfig::SETTINGS,
        );
        assert!(problems.is_empty(), "README's broker table: {problems:?}");
    }
}
