//! `broker`: parses configuration, sets up logging and signals, and runs the library.

use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;
use tributary_broker::config::{Args, BrokerConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = tributary_common::telemetry::init(&args.log_level, args.log_format) {
        eprintln!("broker: {e}");
        return ExitCode::from(2);
    }
    let loaded = match BrokerConfig::from_args(args) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            eprintln!("broker: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let config = loaded.config;
    let security = match tributary_broker::security::Security::build(&config, &loaded.security) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("invalid security configuration: {e}");
            eprintln!("broker: invalid security configuration: {e}");
            return ExitCode::from(2);
        }
    };
    tributary_common::telemetry::set_identity(&[("broker_id", config.broker_id.to_string())]);
    tracing::info!(settings = %config.summary(), "effective configuration");
    if !loaded.inert_keys.is_empty() {
        tracing::info!(keys = ?loaded.inert_keys, "these Kafka settings have no effect in Tributary and are ignored");
    }
    if !loaded.not_applicable.is_empty() {
        tracing::info!(variables = ?loaded.not_applicable, "these variables configure the JVM, logging or a Kafka image's scripts; they do not apply to Tributary and are ignored");
    }
    tracing::info!(listeners = ?security.describe(), "listener security");
    if !loaded.security.inert().is_empty() {
        tracing::info!(keys = ?loaded.security.inert(), "these TLS settings tune a JVM's TLS and have no effect with rustls (which offers TLS 1.2 and 1.3 with modern AEAD cipher suites only); they are ignored");
    }
    if !loaded.unimplemented.is_empty() {
        tracing::warn!(variables = ?loaded.unimplemented, "these variables name Kafka settings Tributary does not implement; they are ignored (check the spelling if you expected one to apply)");
    }
    // Bound now, so a port in use stops the start at once; listening (and so accepting
    // connections) starts only once the broker can answer them.
    let mut listeners = Vec::new();
    for name in config.controller_listeners() {
        tracing::info!(listener = name, "not serving this listener: controller.listener.names gives it to a KRaft controller, and Tributary's controller is the coordinator, reached through ZooKeeper");
    }
    for l in &config.served_listeners() {
        match bind(&l.host, l.port).await {
            Ok(socket) => listeners.push((l.listener.clone(), socket)),
            Err(e) => {
                eprintln!("broker: cannot listen on {l}: {e}; is another broker or Kafka using that port?");
                return ExitCode::from(1);
            }
        }
    }
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        tributary_common::telemetry::termination_signal().await;
        signal.cancel();
    });
    match tributary_broker::run(config, security, listeners, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("broker stopped: {e:#}");
            eprintln!("broker: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Binds (without listening) to `host:port`; an empty host means every interface.
async fn bind(host: &str, port: u16) -> std::io::Result<TcpSocket> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} has no address")))?;
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}
