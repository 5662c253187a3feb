//! `coordinator`: parses configuration, sets up logging and signals, and runs the library.

use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tributary_coordinator::config::{Args, CoordinatorConfig};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = tributary_common::telemetry::init(&args.log_level, args.log_format) {
        eprintln!("coordinator: {e}");
        return ExitCode::from(2);
    }
    let (config, zookeeper) = match CoordinatorConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("coordinator: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    tributary_common::telemetry::set_identity(&[("controller_id", config.controller_id.to_string())]);
    tracing::info!(settings = %config.summary(), "effective configuration");
    let http = match TcpListener::bind(config.http_listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("coordinator: cannot listen on {} for the admin API: {e}", config.http_listen);
            return ExitCode::from(1);
        }
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        tributary_common::telemetry::termination_signal().await;
        signal.cancel();
    });
    match tributary_coordinator::run(config, zookeeper, http, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coordinator: {e:#}");
            ExitCode::from(1)
        }
    }
}
