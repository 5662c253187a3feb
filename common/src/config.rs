//! Kafka's `server.properties` format, and the helpers both binaries use to merge it with
//! command-line flags (flags win) and to refuse unknown or invalid settings by name.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use crate::znode::Endpoint;

/// A configuration problem, naming the key and what is wrong.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Unreadable {
        /// File path.
        path: String,
        /// OS error.
        reason: String,
    },
    /// The file has keys this program does not know.
    #[error("unknown setting(s) in {source_name}: {keys}; remove them or check the spelling (Kafka's names are used, e.g. broker.id, listeners, zookeeper.connect, log.dirs)")]
    Unknown {
        /// Where they came from.
        source_name: String,
        /// The keys, comma-separated.
        keys: String,
    },
    /// A value does not parse or is out of range.
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// The offending value.
        value: String,
        /// What is expected.
        reason: String,
    },
    /// A required setting is missing.
    #[error("missing required setting {key} (flag {flag})")]
    Missing {
        /// The properties key.
        key: String,
        /// The command-line flag.
        flag: String,
    },
}

/// Key/value pairs read from a `.properties` file; keys are taken as they are consumed, so
/// that whatever is left at the end can be refused as unknown.
#[derive(Debug, Default, Clone)]
pub struct Properties {
    source_name: String,
    entries: BTreeMap<String, String>,
}

impl Properties {
    /// Reads a file, or returns an empty set for `None`.
    ///
    /// # Errors
    /// [`ConfigError::Unreadable`] when the file cannot be read.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else { return Ok(Self::default()) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Unreadable { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(Self::parse(&path.display().to_string(), &text))
    }

    /// Parses Java properties text: `#`/`!` comments, `key=value`, `key: value` or
    /// `key value`, and lines continued with a trailing backslash.
    pub fn parse(source_name: &str, text: &str) -> Self {
        let mut entries = BTreeMap::new();
        let mut logical = String::new();
        for raw in text.lines() {
            let line = raw.trim_start();
            if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
                continue;
            }
            if let Some(continued) = line.strip_suffix('\\') {
                logical.push_str(continued);
                continue;
            }
            logical.push_str(line);
            let entry = std::mem::take(&mut logical);
            if let Some((k, v)) = split_entry(&entry) {
                entries.insert(k, v);
            }
        }
        if let Some((k, v)) = split_entry(&logical) {
            entries.insert(k, v);
        }
        Self { source_name: source_name.to_string(), entries }
    }

    /// Takes a raw value.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.entries.remove(key)
    }

    /// Whether the key is set (and not yet taken).
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Sets a value, replacing any; used to fold another spelling into the declared key.
    pub fn set(&mut self, key: &str, value: String) {
        self.entries.insert(key.to_string(), value);
    }

    /// Takes and parses a value.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the value does not parse.
    pub fn take_parsed<T: FromStr>(&mut self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|e: T::Err| ConfigError::Invalid {
                key: key.into(),
                value: v.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Refuses whatever was not taken.
    ///
    /// # Errors
    /// [`ConfigError::Unknown`] naming every leftover key.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.entries.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Unknown {
                source_name: self.source_name,
                keys: self.entries.keys().cloned().collect::<Vec<_>>().join(", "),
            })
        }
    }
}

/// One setting as declared in a [`settings!`](crate::settings) table: what `--help`, the
/// README's configuration tables and the start-up log are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The properties key, Kafka's name (`log.retention.ms`).
    pub key: &'static str,
    /// The field, from which the flag is derived (`log_retention_ms` → `--log-retention-ms`).
    pub field: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The default as it would be written in the file; `required` or `none` when there is none.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

impl Setting {
    /// The command-line flag.
    pub fn flag(&self) -> String {
        format!("--{}", self.field.replace('_', "-"))
    }
}

/// Declares a program's settings once: each line gives the field, its type, its default
/// (`"text"` parsed like a file value, `required`, or `optional`), the properties key, the
/// environment variable and the doc. It generates
///
/// - `$Flags`, a `clap::Args` struct of `Option`s (flatten it into the program's parser),
/// - `$Config`, the effective values (`Option<T>` for `optional` settings), its `Default`
///   (required ones take `T::default()`, for tests) and `$Config::SETTINGS`,
/// - `$Config::merge(flags, &mut properties)`: flag, else file, else default, else
///   [`ConfigError::Missing`]; a value that does not parse is [`ConfigError::Invalid`]
///   naming the key.
///
/// Range checks stay with the program (a `validate` beside the table).
#[macro_export]
macro_rules! settings {
    (
        $(#[$flags_meta:meta])*
        flags $Flags:ident;
        $(#[$config_meta:meta])*
        config $Config:ident;
        $( $field:ident : $ty:ty = $default:tt, $key:literal, $env:literal, $doc:literal; )+
    ) => {
        $(#[$flags_meta])*
        #[derive(Debug, Default, Clone, clap::Args)]
        pub struct $Flags {
            $(
                #[arg(long, env = $env, allow_negative_numbers = true, help = concat!($key, ": ", $doc, $crate::__setting_help_default!($default)))]
                pub $field: Option<$ty>,
            )+
        }

        $(#[$config_meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $Config {
            $(
                #[doc = concat!("`", $key, "`: ", $doc)]
                pub $field: $crate::__setting_type!($ty; $default),
            )+
        }

        impl Default for $Config {
            fn default() -> Self {
                Self { $( $field: $crate::__setting_default!($ty; $key; $default), )+ }
            }
        }

        impl $Config {
            /// Every setting, in declaration order.
            pub const SETTINGS: &'static [$crate::config::Setting] = &[
                $( $crate::config::Setting {
                    key: $key,
                    field: stringify!($field),
                    env: $env,
                    default: $crate::__setting_doc_default!($default),
                    doc: $doc,
                }, )+
            ];

            /// Every setting's key, value as Kafka would print it (`None` when an optional
            /// setting is unset) and Kafka's config type, for DescribeConfigs.
            pub fn values(&self) -> Vec<(&'static str, Option<String>, $crate::config::ConfigType)> {
                vec![ $( ($key, $crate::config::SettingValue::render(&self.$field), <$ty as $crate::config::SettingValue>::TYPE), )+ ]
            }

            /// `key=value` for every setting that has a value, for the start-up log.
            pub fn summary(&self) -> String {
                self.values()
                    .into_iter()
                    .filter_map(|(key, value, _)| value.map(|v| format!("{key}={v}")))
                    .collect::<Vec<_>>()
                    .join(" ")
            }

            /// Flag, else file, else default; the keys taken are removed from `props`.
            fn merge(
                flags: $Flags,
                props: &mut $crate::config::Properties,
            ) -> Result<Self, $crate::config::ConfigError> {
                Ok(Self {
                    $( $field: {
                        // The file's value is taken (and checked) even when a flag wins,
                        // so that it is not later refused as unknown.
                        let from_file: Option<$ty> = props.take_parsed($key)?;
                        let given: Option<$ty> = flags.$field.or(from_file);
                        $crate::__setting_resolve!(given; $ty; $key; stringify!($field); $default)
                    }, )+
                })
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __setting_type {
    ($ty:ty; optional) => { Option<$ty> };
    ($ty:ty; $other:tt) => { $ty };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __setting_default {
    ($ty:ty; $key:literal; required) => {
        <$ty as Default>::default()
    };
    ($ty:ty; $key:literal; optional) => {
        None
    };
    ($ty:ty; $key:literal; $text:literal) => {
        $crate::config::parse_default::<$ty>($key, $text)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __setting_resolve {
    ($given:ident; $ty:ty; $key:literal; $field:expr; required) => {
        match $given {
            Some(v) => v,
            None => {
                return Err($crate::config::ConfigError::Missing {
                    key: $key.into(),
                    flag: format!("--{}", $field.replace('_', "-")),
                })
            }
        }
    };
    ($given:ident; $ty:ty; $key:literal; $field:expr; optional) => {
        $given
    };
    ($given:ident; $ty:ty; $key:literal; $field:expr; $text:literal) => {
        match $given {
            Some(v) => v,
            None => $crate::config::parse_default::<$ty>($key, $text),
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __setting_help_default {
    (required) => {
        " (required)"
    };
    (optional) => {
        ""
    };
    ($text:literal) => {
        concat!(" (default ", $text, ")")
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __setting_doc_default {
    (required) => {
        "required"
    };
    (optional) => {
        "none"
    };
    ($text:literal) => {
        $text
    };
}

/// Kafka's config types, as DescribeConfigs reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    /// BOOLEAN
    Boolean = 1,
    /// STRING
    String = 2,
    /// INT
    Int = 3,
    /// SHORT
    Short = 4,
    /// LONG
    Long = 5,
    /// LIST
    List = 7,
}

/// A setting's value type: how Kafka prints it and which config type it is.
pub trait SettingValue {
    /// Kafka's type for it.
    const TYPE: ConfigType;
    /// The value as Kafka prints it; `None` for an unset optional setting.
    fn render(&self) -> Option<String>;
}

macro_rules! setting_value {
    ($($t:ty => $kind:ident),+ $(,)?) => {
        $( impl SettingValue for $t {
            const TYPE: ConfigType = ConfigType::$kind;
            fn render(&self) -> Option<String> {
                Some(self.to_string())
            }
        } )+
    };
}

setting_value!(bool => Boolean, String => String, i16 => Short, i32 => Int, i64 => Long, u32 => Int, u64 => Long, usize => Int, Listeners => List);

impl SettingValue for std::path::PathBuf {
    const TYPE: ConfigType = ConfigType::String;
    fn render(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

impl SettingValue for std::net::SocketAddr {
    const TYPE: ConfigType = ConfigType::String;
    fn render(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl<T: SettingValue> SettingValue for Option<T> {
    const TYPE: ConfigType = T::TYPE;
    fn render(&self) -> Option<String> {
        self.as_ref().and_then(SettingValue::render)
    }
}

/// Parses a declared default. A default that does not parse is a bug in the declaration,
/// caught by every program's `defaults_parse` test.
#[doc(hidden)]
pub fn parse_default<T: FromStr>(key: &str, text: &str) -> T
where
    T::Err: std::fmt::Display,
{
    match text.parse() {
        Ok(v) => v,
        Err(e) => panic!("the declared default {text:?} of {key} does not parse: {e}"),
    }
}

fn split_entry(entry: &str) -> Option<(String, String)> {
    let entry = entry.trim();
    if entry.is_empty() {
        return None;
    }
    let idx = entry.find(['=', ':', ' ', '\t'])?;
    let key = entry[..idx].trim().to_string();
    let mut rest = entry[idx..].trim_start();
    if rest.starts_with('=') || rest.starts_with(':') {
        rest = &rest[1..];
    }
    Some((key, rest.trim().to_string()))
}

/// A `listeners` or `advertised.listeners` value: comma-separated `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listeners(pub Vec<Endpoint>);

impl FromStr for Listeners {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match parse_listeners("listeners", s) {
            Ok(l) => Ok(Listeners(l)),
            Err(ConfigError::Invalid { reason, .. }) => Err(reason),
            Err(other) => Err(other.to_string()),
        }
    }
}

impl std::fmt::Display for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// Parses Kafka's `listeners` / `advertised.listeners`: comma-separated `NAME://host:port`.
/// Only the PLAINTEXT protocol is supported; an empty host means every interface.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `key` when an entry does not parse or is not PLAINTEXT.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<Endpoint>, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid { key: key.into(), value: value.into(), reason: reason.into() };
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let endpoint = Endpoint::parse(part)
            .ok_or_else(|| invalid("expected NAME://host:port, e.g. PLAINTEXT://localhost:9092"))?;
        if endpoint.listener != "PLAINTEXT" {
            return Err(invalid("only the PLAINTEXT listener is supported"));
        }
        out.push(endpoint);
    }
    if out.is_empty() {
        return Err(invalid("no listener given"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_kafkas_format() {
        let mut p = Properties::parse(
            "server.properties",
            "# comment\n! also\nbroker.id=1\nlisteners = PLAINTEXT://:9092\nlog.dirs: /tmp/a\nnum.partitions 3\nzookeeper.connect=a:1,\\\n  b:2\n",
        );
        assert_eq!(p.take("broker.id").as_deref(), Some("1"));
        assert_eq!(p.take("listeners").as_deref(), Some("PLAINTEXT://:9092"));
        assert_eq!(p.take("log.dirs").as_deref(), Some("/tmp/a"));
        assert_eq!(p.take_parsed::<i32>("num.partitions"), Ok(Some(3)));
        assert_eq!(p.take("zookeeper.connect").as_deref(), Some("a:1,b:2"));
        assert_eq!(p.finish(), Ok(()));
    }

    #[test]
    fn unknown_keys_are_named() {
        let p = Properties::parse("f", "brokr.id=1\nfoo=2\n");
        let err = p.finish().unwrap_err().to_string();
        assert!(err.contains("brokr.id, foo"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let mut p = Properties::parse("f", "num.partitions=many\n");
        let err = p.take_parsed::<i32>("num.partitions").unwrap_err().to_string();
        assert!(err.contains("num.partitions") && err.contains("many"), "{err}");
    }

    #[test]
    fn listeners_accept_plaintext_only() {
        let l = parse_listeners("listeners", "PLAINTEXT://localhost:9092").unwrap();
        assert_eq!(l[0].port, 9092);
        assert_eq!(parse_listeners("listeners", "PLAINTEXT://:9093").unwrap()[0].host, "");
        assert!(parse_listeners("listeners", "SSL://h:1").is_err());
        assert!(parse_listeners("listeners", "localhost").is_err());
    }
}
