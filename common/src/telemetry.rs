//! Tracing set-up shared by both binaries: `RUST_LOG`-style filters, text or JSON lines on
//! stderr. Leader and ISR transitions use the `state_change` target, as Kafka's
//! state-change log does, so operators can filter them: `RUST_LOG=info,state_change=debug`.

use std::sync::RwLock;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Fields stamped on every line this process logs, whichever task or thread logs it: the
/// broker's id, or the coordinator's controller id and (while active) its epoch.
static IDENTITY: RwLock<Vec<(&'static str, String)>> = RwLock::new(Vec::new());

/// Sets the fields every later log line carries (replacing earlier ones). Values that
/// parse as integers are numbers in JSON lines, others strings.
pub fn set_identity(fields: &[(&'static str, String)]) {
    let mut identity = IDENTITY.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    *identity = fields.to_vec();
}

fn identity() -> Vec<(&'static str, String)> {
    IDENTITY.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Wraps a formatter and stamps [`set_identity`]'s fields on every line: after the level
/// in text (`... INFO broker_id=1 target: ...`), as leading keys in JSON.
struct Stamped<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for Stamped<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let identity = identity();
        if identity.is_empty() {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&stamp(&line, &identity, self.json))
    }
}

/// Inserts the identity into one formatted line (pure, so it is table-tested).
fn stamp(line: &str, identity: &[(&'static str, String)], json: bool) -> String {
    if json {
        let Some(rest) = line.strip_prefix('{') else { return line.to_string() };
        let mut out = String::from("{");
        for (k, v) in identity {
            let value =
                if v.parse::<i64>().is_ok() { v.clone() } else { serde_json::Value::from(v.as_str()).to_string() };
            out.push_str(&format!("\"{k}\":{value},"));
        }
        out.push_str(rest);
        return out;
    }
    let text: Vec<String> = identity.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // "<timestamp> <spaces><LEVEL> <rest>": insert after the level word.
    let after_timestamp = line.find(' ').unwrap_or(0);
    let level_start = line[after_timestamp..].find(|c: char| c != ' ').map_or(line.len(), |i| after_timestamp + i);
    let level_end = line[level_start..].find(' ').map_or(line.len(), |i| level_start + i);
    format!("{} {}{}", &line[..level_end], text.join(" "), &line[level_end..])
}

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
    // No colour codes: these lines end up in files, journald and `docker logs`.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false);
    let result = match format {
        LogFormat::Text => builder.event_format(Stamped { inner: format::Format::default(), json: false }).try_init(),
        LogFormat::Json => {
            builder.json().event_format(Stamped { inner: format::Format::default().json(), json: true }).try_init()
        }
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
    fn every_line_is_stamped_with_the_process_identity() {
        let id = [("controller_id", "3000".to_string()), ("controller_epoch", "7".to_string())];
        let cases = [
            (
                "2026-12-02T01:00:00.000000Z  INFO tributary_coordinator::controller: elected",
                false,
                "2026-12-02T01:00:00.000000Z  INFO controller_id=3000 controller_epoch=7 tributary_coordinator::controller: elected",
            ),
            (
                "2026-12-02T01:00:00.000000Z ERROR client{peer=1.2.3.4:5}: x: y",
                false,
                "2026-12-02T01:00:00.000000Z ERROR controller_id=3000 controller_epoch=7 client{peer=1.2.3.4:5}: x: y",
            ),
            (
                "{\"timestamp\":\"t\",\"level\":\"INFO\"}",
                true,
                "{\"controller_id\":3000,\"controller_epoch\":7,\"timestamp\":\"t\",\"level\":\"INFO\"}",
            ),
        ];
        for (line, json, want) in cases {
            assert_eq!(stamp(line, &id, json), want);
        }
        let named = stamp("{\"a\":1}", &[("rack", "r 1".to_string())], true);
        assert_eq!(named, "{\"rack\":\"r 1\",\"a\":1}", "strings are quoted");
    }

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
