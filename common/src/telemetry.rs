//! Tracing set-up shared by both binaries: `RUST_LOG`-style filters, text or JSON lines on
//! stderr. Leader and ISR transitions use the `state_change` target, as Kafka's
//! state-change log does, so operators can filter them: `RUST_LOG=info,state_change=debug`.

use tracing_subscriber::EnvFilter;

/// Output format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}; use text or json")),
        }
    }
}

/// Installs the global subscriber. `filter` is a `RUST_LOG`-style directive string.
///
/// # Errors
/// A sentence naming the filter when it does not parse: a mistyped `RUST_LOG` is refused at
/// start rather than silently logging at another level.
pub fn init(filter: &str, format: LogFormat) -> Result<(), String> {
    check_filter(filter)?;
    let filter = EnvFilter::builder().parse(filter).map_err(|e| {
        format!("invalid log filter {filter:?} (RUST_LOG / --log-level): {e}; use e.g. info or info,state_change=debug")
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    Ok(())
}

/// Targets a bare word in a filter may name (a bare word is otherwise a level).
const KNOWN_TARGETS: &[&str] =
    &["state_change", "tributary_broker", "tributary_coordinator", "tributary_common", "broker", "coordinator"];

/// `EnvFilter` takes any bare word as a target, so `RUST_LOG=debg` would quietly log
/// nothing extra: a bare word must be a level, a known target, or a `module::path`.
fn check_filter(filter: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if directive.contains('=') || directive.contains('[') || directive.contains("::") {
            continue;
        }
        let word = directive.to_ascii_lowercase();
        if !LEVELS.contains(&word.as_str()) && !KNOWN_TARGETS.contains(&word.as_str()) {
            return Err(format!(
                "invalid log filter {filter:?} (RUST_LOG / --log-level): {directive:?} is neither a level ({}) nor a known target ({}); write target=level for other targets",
                LEVELS.join(", "),
                KNOWN_TARGETS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Resolves when the process receives SIGTERM or SIGINT (Ctrl-C). Only the binaries'
/// `main` functions call this; libraries take a cancellation token instead.
///
/// # Panics
/// If the SIGTERM handler cannot be installed (no signal support at all).
pub async fn termination_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("signal received; shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistyped_filters_are_refused() {
        // (filter, accepted)
        let cases = [
            ("info", true),
            ("INFO", true),
            ("info,state_change=debug", true),
            ("warn,tributary_broker::replica=trace", true),
            ("state_change", true),
            ("", true),
            ("debg", false),
            ("info,verbose", false),
            ("tributary_broker=loud", false),
        ];
        for (filter, accepted) in cases {
            let result = check_filter(filter)
                .and_then(|()| EnvFilter::builder().parse(filter).map(|_| ()).map_err(|e| e.to_string()));
            assert_eq!(result.is_ok(), accepted, "{filter:?}: {result:?}");
        }
    }
}
