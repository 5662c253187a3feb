//! Tracing set-up shared by both binaries: `RUST_LOG`-style filters, text or JSON lines on
//! stderr. Leader and ISR transitions use the `state_change` target, as Kafka's
//! state-change log does, so operators can filter them: `RUST_LOG=info,state_change=debug`.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, RwLock};

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

/// Installs the global subscriber. `filter` is a `RUST_LOG`-style directive string; the
/// levels of single loggers can later be changed with [`set_logger_level`].
///
/// # Errors
/// A sentence naming the filter when it does not parse: a mistyped `RUST_LOG` is refused at
/// start rather than silently logging at another level.
pub fn init(filter: &str, format: LogFormat) -> Result<(), String> {
    check_filter(filter)?;
    let parsed = EnvFilter::builder().parse(filter).map_err(|e| {
        format!("invalid log filter {filter:?} (RUST_LOG / --log-level): {e}; use e.g. info or info,state_change=debug")
    })?;
    // No colour codes: these lines end up in files, journald and `docker logs`.
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false);
    let installed = match format {
        LogFormat::Text => {
            let builder = builder
                .event_format(Stamped { inner: format::Format::default(), json: false })
                .with_env_filter(parsed)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().map(|()| reloader(move |f| handle.reload(f).map_err(|e| e.to_string())))
        }
        LogFormat::Json => {
            let builder = builder
                .json()
                .event_format(Stamped { inner: format::Format::default().json(), json: true })
                .with_env_filter(parsed)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.try_init().map(|()| reloader(move |f| handle.reload(f).map_err(|e| e.to_string())))
        }
    };
    // A second init (tests) keeps the first subscriber.
    if let Ok(reload) = installed {
        let _ = RELOAD.set(reload);
        let mut levels = LEVELS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *levels = LoggerLevels { base: filter.to_string(), overrides: BTreeMap::new() };
    }
    Ok(())
}

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

fn reloader(f: impl Fn(EnvFilter) -> Result<(), String> + Send + Sync + 'static) -> Reload {
    Box::new(f)
}

static RELOAD: OnceLock<Reload> = OnceLock::new();
static LEVELS: Mutex<LoggerLevels> = Mutex::new(LoggerLevels { base: String::new(), overrides: BTreeMap::new() });

/// The filter given at start and the loggers changed since (Kafka's BROKER_LOGGER
/// resources): kept in memory only, as Kafka keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct LoggerLevels {
    base: String,
    /// Logger (`root` or a target) to level, lower-case.
    overrides: BTreeMap<String, String>,
}

/// Kafka's name of the logger every other inherits from.
pub const ROOT_LOGGER: &str = "root";

/// Kafka's log levels and the `tracing` level each maps to (FATAL is ERROR here).
const KAFKA_LEVELS: &[(&str, &str)] = &[
    ("TRACE", "trace"),
    ("DEBUG", "debug"),
    ("INFO", "info"),
    ("WARN", "warn"),
    ("ERROR", "error"),
    ("FATAL", "error"),
    ("OFF", "off"),
];

impl LoggerLevels {
    /// The root level and the target directives of the base filter.
    fn parse_base(&self) -> (String, Vec<(String, String)>) {
        let mut root = "error".to_string();
        let mut targets = Vec::new();
        for d in self.base.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match d.split_once('=') {
                Some((t, l)) => targets.push((t.to_string(), l.to_ascii_lowercase())),
                None if KAFKA_LEVELS.iter().any(|(_, l)| d.eq_ignore_ascii_case(l)) => root = d.to_ascii_lowercase(),
                None => targets.push((d.to_string(), "trace".to_string())),
            }
        }
        (root, targets)
    }

    /// The directive string in force: the root level, the base filter's targets, then the
    /// changed loggers (later directives for the same target win in `EnvFilter`'s ranking
    /// only by specificity, so a changed target replaces the base one).
    fn compose(&self) -> String {
        let (root, targets) = self.parse_base();
        let root = self.overrides.get(ROOT_LOGGER).cloned().unwrap_or(root);
        let mut parts = vec![root];
        for (t, l) in targets {
            if !self.overrides.contains_key(&t) {
                parts.push(format!("{t}={l}"));
            }
        }
        for (t, l) in &self.overrides {
            if t != ROOT_LOGGER {
                parts.push(format!("{t}={l}"));
            }
        }
        parts.join(",")
    }

    /// Each of `known` (and `root`, and every target named anywhere) with its level, in
    /// Kafka's upper case: the most specific directive naming it or a parent module.
    fn levels(&self, known: &[&str]) -> Vec<(String, String)> {
        let composed = LoggerLevels { base: self.compose(), overrides: BTreeMap::new() };
        let (root, targets) = composed.parse_base();
        let mut names: Vec<String> = known.iter().map(|k| k.to_string()).collect();
        names.extend(targets.iter().map(|(t, _)| t.clone()));
        names.sort();
        names.dedup();
        let mut out = vec![(ROOT_LOGGER.to_string(), root.to_ascii_uppercase())];
        for name in names.into_iter().filter(|n| n != ROOT_LOGGER) {
            let level = targets
                .iter()
                .filter(|(t, _)| name == *t || name.starts_with(&format!("{t}::")))
                .max_by_key(|(t, _)| t.len())
                .map_or_else(|| root.clone(), |(_, l)| l.clone());
            out.push((name, level.to_ascii_uppercase()));
        }
        out
    }
}

/// Every logger of `known` (the process's module targets) with its level, `root` first.
pub fn logger_levels(known: &[&str]) -> Vec<(String, String)> {
    LEVELS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).levels(known)
}

/// Whether `logger` was changed with [`set_logger_level`] since start.
pub fn logger_changed(logger: &str) -> bool {
    LEVELS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).overrides.contains_key(logger)
}

/// Checks a Kafka log level name; returns the `tracing` level it maps to.
///
/// # Errors
/// A sentence listing the valid levels.
pub fn kafka_level(logger: &str, level: &str) -> Result<&'static str, String> {
    KAFKA_LEVELS.iter().find(|(k, _)| k.eq_ignore_ascii_case(level.trim())).map(|(_, l)| *l).ok_or_else(|| {
        let valid: Vec<&str> = KAFKA_LEVELS.iter().map(|(k, _)| *k).collect();
        format!(
            "Cannot set the log level of {logger} to {level} as it is not a supported log level. Valid levels are {}",
            valid.join(", ")
        )
    })
}

/// Sets (`Some`) or resets (`None`, back to what it inherits) one logger's level at run
/// time; `level` is a Kafka level name.
///
/// # Errors
/// A sentence for an unknown level, resetting the root logger, or a filter that cannot be
/// installed.
pub fn set_logger_level(logger: &str, level: Option<&str>) -> Result<(), String> {
    let mut levels = LEVELS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut next = levels.clone();
    match level {
        Some(l) => {
            next.overrides.insert(logger.to_string(), kafka_level(logger, l)?.to_string());
        }
        None if logger == ROOT_LOGGER => return Err("Removing the log level of the root logger is not allowed".into()),
        None => {
            next.overrides.remove(logger);
        }
    }
    let filter = EnvFilter::builder().parse(next.compose()).map_err(|e| format!("logger {logger}: {e}"))?;
    if let Some(reload) = RELOAD.get() {
        reload(filter)?;
    }
    *levels = next;
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
    fn logger_levels_compose_over_the_start_filter() {
        let known = ["broker", "broker::replica", "state_change"];
        let mut l = LoggerLevels { base: "info,state_change=debug".into(), overrides: BTreeMap::new() };
        assert_eq!(l.compose(), "info,state_change=debug");
        let levels = l.levels(&known);
        assert_eq!(levels[0], ("root".into(), "INFO".into()));
        assert!(levels.contains(&("state_change".into(), "DEBUG".into())));
        assert!(levels.contains(&("broker::replica".into(), "INFO".into())));
        l.overrides.insert("broker".into(), "trace".into());
        l.overrides.insert("state_change".into(), "warn".into());
        l.overrides.insert("root".into(), "error".into());
        assert_eq!(l.compose(), "error,broker=trace,state_change=warn");
        let levels = l.levels(&known);
        assert!(levels.contains(&("broker::replica".into(), "TRACE".into())), "{levels:?}");
        assert!(levels.contains(&("root".into(), "ERROR".into())));
        assert!(EnvFilter::builder().parse(l.compose()).is_ok());
        assert_eq!(kafka_level("x", "fatal"), Ok("error"));
        assert!(kafka_level("x", "LOUD").unwrap_err().contains("Valid levels are TRACE"));
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
