//! `broker`: parses configuration, sets up logging and signals, and runs the library.

use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tributary_broker::config::{Args, BrokerConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = tributary_common::telemetry::init(&args.log_level, args.log_format) {
        eprintln!("broker: {e}");
        return ExitCode::from(2);
    }
    let (config, inert_keys) = match BrokerConfig::from_args(args) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            eprintln!("broker: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(?config, "effective configuration");
    if !inert_keys.is_empty() {
        tracing::info!(keys = ?inert_keys, "these Kafka settings have no effect in Tributary and are ignored");
    }
    let mut listeners = Vec::new();
    for l in &config.listeners.0 {
        let host = if l.host.is_empty() { "0.0.0.0" } else { l.host.as_str() };
        match TcpListener::bind((host, l.port)).await {
            Ok(listener) => listeners.push(listener),
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
    match tributary_broker::run(config, listeners, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("broker stopped: {e:#}");
            eprintln!("broker: {e:#}");
            ExitCode::from(1)
        }
    }
}
