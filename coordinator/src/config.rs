//! Coordinator configuration from flags, `TRIBUTARY_*` environment variables or a
//! properties file (`--config`); flags win over the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tributary_common::config::{ConfigError, Properties};
use tributary_common::telemetry::LogFormat;

/// Shorter than a broker's 18 s: the controller role should move within seconds when a
/// coordinator dies (a clean stop hands it over at once, by closing the session).
const DEFAULT_SESSION_TIMEOUT_MS: u64 = 6000;

/// Command-line flags.
#[derive(Debug, Parser, Default)]
#[command(
    name = "coordinator",
    version,
    about = "Tributary coordinator: controller election, leader election and the HTTP admin API"
)]
pub struct Args {
    /// A properties file (zookeeper.connect, http.listen, controller.id, ...); flags override it.
    #[arg(long, env = "TRIBUTARY_COORDINATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// zookeeper.connect: host:port[,host:port...][/chroot].
    #[arg(long, env = "TRIBUTARY_ZOOKEEPER_CONNECT")]
    pub zookeeper_connect: Option<String>,
    /// zookeeper.session.timeout.ms (default 6000): how soon a standby takes over from a coordinator that died without closing its session.
    #[arg(long, env = "TRIBUTARY_ZOOKEEPER_SESSION_TIMEOUT_MS")]
    pub zookeeper_session_timeout_ms: Option<u64>,
    /// http.listen: address of the HTTP admin API (default 127.0.0.1:8080).
    #[arg(long, env = "TRIBUTARY_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// controller.id: written into /controller when this coordinator is active (default 3000); give each coordinator its own.
    #[arg(long, env = "TRIBUTARY_CONTROLLER_ID")]
    pub controller_id: Option<i32>,
    /// unclean.leader.election.enable: elect out-of-sync replicas when no in-sync one is left (default false; loses data).
    #[arg(long, env = "TRIBUTARY_UNCLEAN_LEADER_ELECTION_ENABLE")]
    pub unclean_leader_election_enable: Option<bool>,
    /// auto.leader.rebalance.enable: move leadership back to preferred replicas when a broker's imbalance passes the threshold (default true).
    #[arg(long, env = "TRIBUTARY_AUTO_LEADER_REBALANCE_ENABLE")]
    pub auto_leader_rebalance_enable: Option<bool>,
    /// leader.imbalance.check.interval.seconds: how often the imbalance is checked (default 300).
    #[arg(long, env = "TRIBUTARY_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS")]
    pub leader_imbalance_check_interval_seconds: Option<u64>,
    /// leader.imbalance.per.broker.percentage: share of a broker's preferred partitions led elsewhere that triggers a rebalance (default 10).
    #[arg(long, env = "TRIBUTARY_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE")]
    pub leader_imbalance_per_broker_percentage: Option<u32>,
    /// Log filter, RUST_LOG syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format: text or json.
    #[arg(long, env = "TRIBUTARY_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// Effective coordinator configuration.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// zookeeper.connect
    pub zookeeper_connect: String,
    /// zookeeper.session.timeout.ms
    pub session_timeout: Duration,
    /// http.listen
    pub http_listen: SocketAddr,
    /// controller.id
    pub controller_id: i32,
    /// unclean.leader.election.enable
    pub unclean_leader_election: bool,
    /// auto.leader.rebalance.enable
    pub auto_leader_rebalance: bool,
    /// leader.imbalance.check.interval.seconds
    pub leader_imbalance_check_interval: Duration,
    /// leader.imbalance.per.broker.percentage
    pub leader_imbalance_per_broker_percentage: u32,
}

impl CoordinatorConfig {
    /// Merges flags over the file and validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the unknown, missing or invalid setting.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let mut props = Properties::load(args.config.as_deref())?;
        let zookeeper_connect = args.zookeeper_connect.or(props.take("zookeeper.connect")).ok_or_else(|| {
            ConfigError::Missing { key: "zookeeper.connect".into(), flag: "--zookeeper-connect".into() }
        })?;
        let session_ms = args
            .zookeeper_session_timeout_ms
            .or(props.take_parsed("zookeeper.session.timeout.ms")?)
            .unwrap_or(DEFAULT_SESSION_TIMEOUT_MS);
        let listen = args.http_listen.or(props.take("http.listen")).unwrap_or_else(|| "127.0.0.1:8080".into());
        let http_listen = listen.parse().map_err(|_| ConfigError::Invalid {
            key: "http.listen".into(),
            value: listen.clone(),
            reason: "expected IP:PORT, e.g. 127.0.0.1:8080".into(),
        })?;
        let controller_id = args.controller_id.or(props.take_parsed("controller.id")?).unwrap_or(3000);
        let unclean = args
            .unclean_leader_election_enable
            .or(props.take_parsed("unclean.leader.election.enable")?)
            .unwrap_or(false);
        let auto_leader_rebalance =
            args.auto_leader_rebalance_enable.or(props.take_parsed("auto.leader.rebalance.enable")?).unwrap_or(true);
        let check_seconds: u64 = args
            .leader_imbalance_check_interval_seconds
            .or(props.take_parsed("leader.imbalance.check.interval.seconds")?)
            .unwrap_or(300);
        let leader_imbalance_per_broker_percentage: u32 = args
            .leader_imbalance_per_broker_percentage
            .or(props.take_parsed("leader.imbalance.per.broker.percentage")?)
            .unwrap_or(10);
        props.finish()?;
        if check_seconds == 0 {
            return Err(ConfigError::Invalid {
                key: "leader.imbalance.check.interval.seconds".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        if session_ms < 1000 {
            return Err(ConfigError::Invalid {
                key: "zookeeper.session.timeout.ms".into(),
                value: session_ms.to_string(),
                reason: "must be at least 1000".into(),
            });
        }
        Ok(Self {
            zookeeper_connect,
            session_timeout: Duration::from_millis(session_ms),
            http_listen,
            controller_id,
            unclean_leader_election: unclean,
            auto_leader_rebalance,
            leader_imbalance_check_interval: Duration::from_secs(check_seconds),
            leader_imbalance_per_broker_percentage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_file_merge_and_bad_values_are_named() {
        let args = Args {
            zookeeper_connect: Some("z:1".into()),
            http_listen: Some("0.0.0.0:9".into()),
            log_level: "info".into(),
            ..Default::default()
        };
        let c = CoordinatorConfig::from_args(args).unwrap();
        assert_eq!(c.http_listen.port(), 9);
        assert_eq!(c.controller_id, 3000);
        let args = Args {
            zookeeper_connect: Some("z:1".into()),
            http_listen: Some("localhost".into()),
            log_level: "info".into(),
            ..Default::default()
        };
        assert!(CoordinatorConfig::from_args(args).unwrap_err().to_string().contains("http.listen"));
        assert!(CoordinatorConfig::from_args(Args::default()).unwrap_err().to_string().contains("zookeeper.connect"));
    }
}
