//! Coordinator configuration from flags, `TRIBUTARY_*` environment variables or a
//! properties file (`--config`); flags win over the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tributary_common::config::{ConfigError, Properties};
use tributary_common::telemetry::LogFormat;
use tributary_common::zk::ZkSecurity;

tributary_common::settings! {
    /// The coordinator's settings as flags (each also an environment variable); see [`Args`].
    flags CoordinatorFlags;
    /// Effective coordinator configuration: every setting, declared once in this table.
    config CoordinatorConfig;
    zookeeper_connect: String = required, "zookeeper.connect", "TRIBUTARY_ZOOKEEPER_CONNECT",
        "host:port[,host:port...][/chroot]";
    zookeeper_session_timeout_ms: u64 = "6000", "zookeeper.session.timeout.ms", "TRIBUTARY_ZOOKEEPER_SESSION_TIMEOUT_MS",
        "how soon a standby takes over from a coordinator that died without closing its session (shorter than a broker's, so the controller role moves within seconds)";
    zookeeper_set_acl: bool = "false", "zookeeper.set.acl", "TRIBUTARY_ZOOKEEPER_SET_ACL",
        "create znodes writable only by this process's ZooKeeper SASL login, as the brokers do (give both the same login)";
    zookeeper_sasl_jaas_file: PathBuf = optional, "zookeeper.sasl.jaas.file", "TRIBUTARY_ZOOKEEPER_SASL_JAAS_FILE",
        "a JAAS file whose Client section (DigestLoginModule username/password) logs in to ZooKeeper with SASL DIGEST-MD5 (default: the file -Djava.security.auth.login.config in KAFKA_OPTS names, or KAFKA_ZOOKEEPER_PROTOCOL=SASL with KAFKA_ZOOKEEPER_USER/PASSWORD)";
    http_listen: SocketAddr = "127.0.0.1:8080", "http.listen", "TRIBUTARY_HTTP_LISTEN",
        "address of the HTTP admin API, IP:PORT";
    rest_listen: SocketAddr = optional, "rest.listen", "TRIBUTARY_REST_LISTEN",
        "address of the REST Proxy-compatible produce and consume API, IP:PORT (default: not served on a port of its own; it is always under /rest on the admin port)";
    consumer_instance_timeout_ms: u64 = "300000", "consumer.instance.timeout.ms", "TRIBUTARY_CONSUMER_INSTANCE_TIMEOUT_MS",
        "REST consumer instances idle this long are closed and leave their group";
    rest_consumer_instances_max: usize = "100", "rest.consumer.instances.max", "TRIBUTARY_REST_CONSUMER_INSTANCES_MAX",
        "REST consumer instances open at once, at most (each holds a Kafka consumer and up to 2 MiB of fetched records)";
    rest_max_request_bytes: usize = "16777216", "rest.max.request.bytes", "TRIBUTARY_REST_MAX_REQUEST_BYTES",
        "largest REST request body (413 above it)";
    http_auth: crate::admin::auth::Mode = "none", "http.auth", "TRIBUTARY_HTTP_AUTH",
        "authentication of the HTTP admin API, console and REST API: none, basic (HTTP Basic against the SCRAM users in ZooKeeper) or token (a bearer token from http.auth.token.file, whose holder may do everything)";
    http_auth_token_file: PathBuf = optional, "http.auth.token.file", "TRIBUTARY_HTTP_AUTH_TOKEN_FILE",
        "file holding the bearer token for http.auth=token";
    authorizer_class_name: String = optional, "authorizer.class.name", "TRIBUTARY_AUTHORIZER_CLASS_NAME",
        "with http.auth=basic: check the brokers' ACLs for each HTTP request (Kafka's authorizer class names)";
    super_users: String = optional, "super.users", "TRIBUTARY_SUPER_USERS",
        "principals allowed everything over HTTP, separated by ';' (User:admin)";
    allow_everyone_if_no_acl_found: bool = "false", "allow.everyone.if.no.acl.found", "TRIBUTARY_ALLOW_EVERYONE_IF_NO_ACL_FOUND",
        "with an authorizer: whether a resource without any ACL is open to everyone";
    client_config: PathBuf = optional, "client.config", "TRIBUTARY_CLIENT_CONFIG",
        "a Kafka client properties file (what kafka-topics --command-config takes: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.truststore.location, ...) for the coordinator's own connections to brokers: group lag and offsets, topic stats, the REST API's producer and consumers (default: PLAINTEXT)";
    client_listener_name: String = optional, "client.listener.name", "TRIBUTARY_CLIENT_LISTENER_NAME",
        "the broker listener those connections use (default: every advertised listener whose protocol is client.config's security.protocol)";
    controller_id: i32 = "3000", "controller.id", "TRIBUTARY_CONTROLLER_ID",
        "written into /controller when this coordinator is active; give each coordinator its own";
    unclean_leader_election_enable: bool = "false", "unclean.leader.election.enable", "TRIBUTARY_UNCLEAN_LEADER_ELECTION_ENABLE",
        "elect an out-of-sync replica when no in-sync one is left (loses data; topics may set their own)";
    auto_leader_rebalance_enable: bool = "true", "auto.leader.rebalance.enable", "TRIBUTARY_AUTO_LEADER_REBALANCE_ENABLE",
        "move leadership back to preferred replicas when a broker's imbalance passes the threshold";
    leader_imbalance_check_interval_seconds: u64 = "300", "leader.imbalance.check.interval.seconds", "TRIBUTARY_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS",
        "how often the imbalance is checked";
    leader_imbalance_per_broker_percentage: u32 = "10", "leader.imbalance.per.broker.percentage", "TRIBUTARY_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE",
        "share of a broker's preferred partitions led elsewhere that triggers a rebalance";
}

/// The command line: a properties file, the settings, and logging.
#[derive(Debug, Parser, Default)]
#[command(
    name = "coordinator",
    version,
    about = "Tributary coordinator: controller election, leader election and the HTTP admin API"
)]
pub struct Args {
    /// A properties file (zookeeper.connect, http.listen, controller.id, ...); flags and environment variables override it.
    #[arg(long, env = "TRIBUTARY_COORDINATOR_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub settings: CoordinatorFlags,
    /// Log filter, RUST_LOG syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format: text or json.
    #[arg(long, env = "TRIBUTARY_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

fn invalid(key: &str, value: impl ToString, reason: &str) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

impl CoordinatorConfig {
    /// Reads flags, `TRIBUTARY_*` variables, the Kafka images' `KAFKA_*` variables and the
    /// `--config` file, in that order of precedence, and validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the unknown, missing or invalid setting.
    pub fn from_args(args: Args) -> Result<(Self, ZkSecurity), ConfigError> {
        Self::from_sources(args, std::env::vars())
    }

    /// [`Self::from_args`] with the environment given (tests). `KAFKA_*` variables are
    /// read as the broker reads them, between the flags and the file; the coordinator
    /// takes the settings it has (zookeeper.connect, ...) and leaves the broker's alone.
    /// The ZooKeeper login is found as the broker finds it.
    ///
    /// # Errors
    /// As [`Self::from_args`].
    pub fn from_sources(
        args: Args,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, ZkSecurity), ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut props = Properties::load(args.config.as_deref())?;
        props.overlay(Properties::from_kafka_environment(env.iter().cloned()).0);
        let config = CoordinatorConfig::merge(args.settings, &mut props)?;
        // Leftover environment variables are the broker's settings: not this program's
        // to warn about.
        let _broker_settings = props.finish()?;
        config.validate()?;
        let zookeeper =
            ZkSecurity::resolve(config.zookeeper_sasl_jaas_file.as_deref(), config.zookeeper_set_acl, &env)?;
        Ok((config, zookeeper))
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first value out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.leader_imbalance_check_interval_seconds == 0 {
            return Err(invalid("leader.imbalance.check.interval.seconds", 0, "must be at least 1"));
        }
        if self.zookeeper_session_timeout_ms < 1000 {
            return Err(invalid(
                "zookeeper.session.timeout.ms",
                self.zookeeper_session_timeout_ms,
                "must be at least 1000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn args(settings: CoordinatorFlags, config: Option<PathBuf>) -> Args {
        Args { config, settings, log_level: "info".into(), ..Default::default() }
    }

    #[test]
    fn flags_and_file_merge_and_bad_values_are_named() {
        CoordinatorConfig::default().validate().unwrap();
        Args::command().debug_assert();
        let flags = CoordinatorFlags {
            zookeeper_connect: Some("z:1".into()),
            http_listen: Some("0.0.0.0:9".parse().unwrap()),
            ..Default::default()
        };
        let c = CoordinatorConfig::from_sources(args(flags.clone(), None), []).unwrap().0;
        assert_eq!(c.http_listen.port(), 9);
        assert_eq!(c.controller_id, 3000);
        let file = std::env::temp_dir().join(format!("tributary-coord-cfg-{}", std::process::id()));
        std::fs::write(&file, "http.listen=localhost\n").unwrap();
        let err = CoordinatorConfig::from_sources(args(flags, Some(file)), []).unwrap_err().to_string();
        assert!(err.contains("http.listen") && err.contains("localhost"), "{err}");
        let err = CoordinatorConfig::from_sources(args(CoordinatorFlags::default(), None), []).unwrap_err().to_string();
        assert!(err.contains("zookeeper.connect"), "{err}");
        // A kafka container's environment: the coordinator takes ZooKeeper's address from
        // it and leaves the broker's settings alone.
        let env = [
            ("KAFKA_ZOOKEEPER_CONNECT", "zk:2181"),
            ("KAFKA_BROKER_ID", "1"),
            ("KAFKA_LISTENERS", "PLAINTEXT://:9092"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c = CoordinatorConfig::from_sources(args(CoordinatorFlags::default(), None), env).unwrap().0;
        assert_eq!(c.zookeeper_connect, "zk:2181");
    }

    #[test]
    fn the_readme_documents_every_setting() {
        let problems = tributary_common::config::undocumented_settings(
            include_str!("../../README.md"),
            "coordinator",
            CoordinatorConfig::SETTINGS,
        );
        assert!(problems.is_empty(), "README's coordinator table: {problems:?}");
    }
}
