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
    /// For entries that came from the environment: the variable that set each.
    origins: BTreeMap<String, String>,
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
        Self { source_name: source_name.to_string(), entries, origins: BTreeMap::new() }
    }

    /// Reads the Kafka images' environment variables (see [`kafka_env_key`]): every
    /// `KAFKA_*` variable that names a setting becomes an entry remembering its variable;
    /// the rest (the JVM's, logging's, the images' own switches) are returned by name.
    /// Empty values count as unset, as the bitnami image treats them.
    pub fn from_kafka_environment(vars: impl IntoIterator<Item = (String, String)>) -> (Self, Vec<String>) {
        let mut props = Self { source_name: "the KAFKA_* environment".into(), ..Self::default() };
        let mut not_applicable = Vec::new();
        let mut vars: Vec<(String, String)> = vars.into_iter().collect();
        // KAFKA_CFG_* (bitnami's current spelling) wins over the same key spelled the
        // confluent way: sort those last, so they are inserted last.
        vars.sort_by_key(|(name, _)| (name.starts_with("KAFKA_CFG_"), name.clone()));
        for (name, value) in vars {
            match kafka_env_key(&name) {
                KafkaEnv::Setting(key) if !value.trim().is_empty() => {
                    props.entries.insert(key.clone(), value);
                    props.origins.insert(key, name);
                }
                KafkaEnv::Setting(_) | KafkaEnv::ReadDirectly | KafkaEnv::Other => {}
                KafkaEnv::NotApplicable => not_applicable.push(name),
            }
        }
        not_applicable.sort();
        (props, not_applicable)
    }

    /// Lays `over` on top of these entries: its values win, and keep their origin.
    pub fn overlay(&mut self, over: Properties) {
        for (key, value) in over.entries {
            if let Some(origin) = over.origins.get(&key) {
                self.origins.insert(key.clone(), origin.clone());
            } else {
                self.origins.remove(&key);
            }
            self.entries.insert(key, value);
        }
    }

    /// Where a key's value came from, for messages: `KAFKA_LOG_RETENTION_MS` or the file.
    fn describe(&self, key: &str) -> String {
        match self.origins.get(key) {
            Some(var) => format!("{key} (set by {var})"),
            None => key.to_string(),
        }
    }

    /// Takes a raw value.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.origins.remove(key);
        self.entries.remove(key)
    }

    /// The keys set and not yet taken.
    pub fn keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Whether the key is set (and not yet taken).
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Sets a value, replacing any; used to fold another spelling into the declared key.
    pub fn set(&mut self, key: &str, value: String) {
        self.entries.insert(key.to_string(), value);
    }

    /// Folds another spelling into the declared key: takes `alias` and, unless `key` is
    /// set, stores its value (and the variable that set it) under `key`.
    pub fn fold_alias(&mut self, alias: &str, key: &str) {
        let origin = self.origins.remove(alias);
        let Some(value) = self.entries.remove(alias) else { return };
        if !self.contains(key) {
            self.entries.insert(key.to_string(), value);
            if let Some(origin) = origin {
                self.origins.insert(key.to_string(), origin);
            }
        }
    }

    /// Takes and parses a value.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the value does not parse.
    pub fn take_parsed<T: FromStr>(&mut self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let described = self.describe(key);
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|e: T::Err| ConfigError::Invalid {
                key: described,
                value: v.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Refuses whatever was not taken from the file; returns the environment variables
    /// whose keys were not taken (Kafka settings Tributary does not implement: a warning,
    /// as Kafka warns about configs it does not know).
    ///
    /// # Errors
    /// [`ConfigError::Unknown`] naming every leftover key of the file.
    pub fn finish(self) -> Result<Vec<String>, ConfigError> {
        let (from_env, from_file): (Vec<_>, Vec<_>) =
            self.entries.keys().cloned().partition(|k| self.origins.contains_key(k));
        if from_file.is_empty() {
            Ok(from_env.into_iter().filter_map(|k| self.origins.get(&k).cloned()).collect())
        } else {
            Err(ConfigError::Unknown { source_name: self.source_name, keys: from_file.join(", ") })
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
            /// The keys a flag, a variable or the file gave (the others hold their
            /// defaults): DescribeConfigs reports their source from this.
            pub given: std::collections::BTreeSet<&'static str>,
        }

        impl Default for $Config {
            fn default() -> Self {
                Self {
                    $( $field: $crate::__setting_default!($ty; $key; $default), )+
                    given: std::collections::BTreeSet::new(),
                }
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

            /// Sets one setting from its text as Kafka writes it (a dynamic config);
            /// `Ok(false)` when `key` is not in the table. Ranges are `validate`'s job.
            ///
            /// # Errors
            /// [`ConfigError::Invalid`] when the value does not parse as the setting's type.
            pub fn set_key(&mut self, key: &str, value: &str) -> Result<bool, $crate::config::ConfigError> {
                $( if key == $key {
                    let mut one = $crate::config::Properties::default();
                    one.set(key, value.to_string());
                    let parsed: Option<$ty> = one.take_parsed(key)?;
                    if let Some(v) = parsed {
                        self.$field = $crate::__setting_wrap!(v; $default);
                    }
                    return Ok(true);
                } )+
                Ok(false)
            }

            /// Flag, else file, else default; the keys taken are removed from `props`.
            fn merge(
                flags: $Flags,
                props: &mut $crate::config::Properties,
            ) -> Result<Self, $crate::config::ConfigError> {
                let mut given_keys = std::collections::BTreeSet::new();
                Ok(Self {
                    $( $field: {
                        // The file's value is taken (and checked) even when a flag wins,
                        // so that it is not later refused as unknown.
                        let from_file: Option<$ty> = props.take_parsed($key)?;
                        let given: Option<$ty> = flags.$field.or(from_file);
                        if given.is_some() {
                            given_keys.insert($key);
                        }
                        $crate::__setting_resolve!(given; $ty; $key; stringify!($field); $default)
                    }, )+
                    given: given_keys,
                })
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __setting_wrap {
    ($v:expr; optional) => {
        Some($v)
    };
    ($v:expr; $other:tt) => {
        $v
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

/// Checks a README's configuration table (the first table under `### <section>`) against
/// declared settings: every setting needs a row naming its flag and its key. Returns one
/// sentence per problem, so that a test can show them all.
pub fn undocumented_settings(readme: &str, section: &str, settings: &[Setting]) -> Vec<String> {
    let Some(after) = readme.split(&format!("### {section}\n")).nth(1) else {
        return vec![format!("the README has no ### {section} section")];
    };
    let Some(table) = after.split("\n\n").find(|block| block.contains("| flag |")) else {
        return vec![format!("the README's {section} section has no | flag | table")];
    };
    settings
        .iter()
        .filter_map(|setting| {
            let flag = format!("`{}`", setting.flag());
            match table.lines().find(|line| line.contains(&flag)) {
                None => Some(format!("no row for {flag}")),
                Some(row) if !row.contains(&format!("`{}`", setting.key)) => {
                    Some(format!("the row for {flag} lacks `{}`", setting.key))
                }
                Some(_) => None,
            }
        })
        .collect()
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
    /// DOUBLE
    Double = 6,
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

setting_value!(bool => Boolean, String => String, i16 => Short, i32 => Int, i64 => Long, u32 => Int, u64 => Long, usize => Int, f64 => Double, Listeners => List, ProtocolMap => List);

impl SettingValue for crate::ids::ClusterId {
    const TYPE: ConfigType = ConfigType::String;
    fn render(&self) -> Option<String> {
        Some(self.0.clone())
    }
}

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

/// What a `KAFKA_*` environment variable is, under the rules of the two images users'
/// compose files are written for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaEnv {
    /// It names this setting.
    Setting(String),
    /// It configures what Tributary does not have (the JVM, log4j, JMX, the bitnami
    /// image's own scripts, Kubernetes service links); named once at start-up.
    NotApplicable,
    /// Read by Tributary for itself rather than as one setting (`KAFKA_OPTS` for the JAAS
    /// file it names, bitnami's `KAFKA_ZOOKEEPER_*` login): see [`crate::zk::ZkSecurity::resolve`].
    ReadDirectly,
    /// Not a `KAFKA_*` variable.
    Other,
}

/// Variables Tributary reads for themselves (see [`KafkaEnv::ReadDirectly`]).
const READ_DIRECTLY_KAFKA_VARS: &[&str] = &[
    "KAFKA_OPTS",
    "KAFKA_ZOOKEEPER_PROTOCOL",
    "KAFKA_ZOOKEEPER_USER",
    "KAFKA_ZOOKEEPER_PASSWORD",
    "KAFKA_CLIENT_USERS",
    "KAFKA_CLIENT_PASSWORDS",
    "KAFKA_BROKER_USER",
    "KAFKA_BROKER_PASSWORD",
    "KAFKA_INTER_BROKER_USER",
    "KAFKA_INTER_BROKER_PASSWORD",
];

/// Variables the images read for themselves rather than as Kafka settings.
const NOT_APPLICABLE_KAFKA_VARS: &[&str] = &[
    // confluent's exclusions (JVM and logging)
    "KAFKA_VERSION",
    "KAFKA_HEAP_OPTS",
    "KAFKA_JMX_OPTS",
    "KAFKA_JMX_PORT",
    "KAFKA_JMX_HOSTNAME",
    "KAFKA_JVM_PERFORMANCE_OPTS",
    "KAFKA_GC_LOG_OPTS",
    "KAFKA_DEBUG",
    "KAFKA_TOOLS_LOG4J_LOGLEVEL",
    // bitnami's switches for its own scripts
    "KAFKA_ENABLE_KRAFT",
    "KAFKA_KRAFT_CLUSTER_ID",
    "KAFKA_SKIP_KRAFT_STORAGE_INIT",
    "KAFKA_CLIENT_LISTENER_NAME",
    "KAFKA_CONTROLLER_USER",
    "KAFKA_CONTROLLER_PASSWORD",
    "KAFKA_CERTIFICATE_PASSWORD",
    "KAFKA_TLS_TYPE",
    "KAFKA_TLS_CLIENT_AUTH",
    "KAFKA_ZOOKEEPER_TLS_TYPE",
    "KAFKA_ZOOKEEPER_TLS_VERIFY_HOSTNAME",
    "KAFKA_ZOOKEEPER_TLS_KEYSTORE_PASSWORD",
    "KAFKA_ZOOKEEPER_TLS_TRUSTSTORE_PASSWORD",
    "KAFKA_MOUNTED_CONF_DIR",
    "KAFKA_INITSCRIPTS_DIR",
    "KAFKA_VOLUME_DIR",
    "KAFKA_BASE_DIR",
    "KAFKA_HOME",
    "KAFKA_CONF_DIR",
    "KAFKA_CONF_FILE",
    "KAFKA_DAEMON_USER",
    "KAFKA_DAEMON_GROUP",
];

/// Maps an environment variable to a Kafka setting as the images do:
///
/// - bitnami, `KAFKA_CFG_*`: drop the prefix, lower-case, every `_` becomes `.`
///   (`KAFKA_CFG_LOG_RETENTION_HOURS` → `log.retention.hours`), with its exceptions for
///   `sasl_ssl` and `sasl_plaintext`;
/// - confluent, any other `KAFKA_*`: drop the prefix, lower-case, then `_` → `.`,
///   `__` → `_`, `___` → `-` (`KAFKA_CONFLUENT_SUPPORT__X` style names).
///
/// bitnami's legacy names (`KAFKA_BROKER_ID`, `KAFKA_LISTENERS`, `KAFKA_ZOOKEEPER_CONNECT`)
/// read the same under the confluent rule.
pub fn kafka_env_key(name: &str) -> KafkaEnv {
    let Some(rest) = name.strip_prefix("KAFKA_") else { return KafkaEnv::Other };
    if READ_DIRECTLY_KAFKA_VARS.contains(&name) {
        return KafkaEnv::ReadDirectly;
    }
    if NOT_APPLICABLE_KAFKA_VARS.contains(&name)
        || name.starts_with("KAFKA_LOG4J_")
        // Kubernetes service links for a service named "kafka": KAFKA_PORT=tcp://...,
        // KAFKA_PORT_9092_TCP_ADDR, KAFKA_SERVICE_HOST (the confluent image dies on these).
        || name == "KAFKA_PORT"
        || name.starts_with("KAFKA_PORT_")
        || name.starts_with("KAFKA_SERVICE_")
    {
        return KafkaEnv::NotApplicable;
    }
    if rest.is_empty() {
        return KafkaEnv::Other;
    }
    if let Some(cfg) = rest.strip_prefix("CFG_") {
        let key = cfg.to_ascii_lowercase().replace('_', ".");
        return KafkaEnv::Setting(key.replace("sasl.ssl", "sasl_ssl").replace("sasl.plaintext", "sasl_plaintext"));
    }
    let lower = rest.to_ascii_lowercase();
    let mut key = String::with_capacity(lower.len());
    let mut chars = lower.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            key.push(c);
            continue;
        }
        let mut run = 1;
        while chars.peek() == Some(&'_') {
            chars.next();
            run += 1;
        }
        // A run of underscores: three make '-', two '_', one '.'; longer runs are read
        // greedily from the left, as confluent's splitting does.
        while run > 0 {
            let (text, used) = match run {
                1 => (".", 1),
                2 => ("_", 2),
                _ => ("-", 3),
            };
            key.push_str(text);
            run -= used;
        }
    }
    KafkaEnv::Setting(key)
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

/// Parses Kafka's `listeners` / `advertised.listeners`: comma-separated `NAME://host:port`,
/// any listener name (upper-cased, as Kafka normalises them; each at most once). Which
/// protocol a name speaks is `listener.security.protocol.map`'s business. An empty host
/// means every interface.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `key` when an entry does not parse or a name repeats.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<Endpoint>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { key: key.into(), value: value.into(), reason };
    let mut out: Vec<Endpoint> = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut endpoint = Endpoint::parse(part)
            .filter(|e| !e.listener.is_empty() && e.listener.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| {
                invalid(format!("{part:?} is not NAME://host:port (e.g. PLAINTEXT://localhost:9092; names are letters, digits and _)"))
            })?;
        endpoint.listener = endpoint.listener.to_ascii_uppercase();
        if out.iter().any(|e| e.listener == endpoint.listener) {
            return Err(invalid(format!(
                "listener name {} is given twice; each name may appear once",
                endpoint.listener
            )));
        }
        out.push(endpoint);
    }
    if out.is_empty() {
        return Err(invalid("no listener given".into()));
    }
    Ok(out)
}

/// The security protocols Kafka knows.
pub const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// What a security protocol puts on the TCP connection: (TLS, SASL); none for a name
/// that is not one of [`SECURITY_PROTOCOLS`].
pub fn protocol_layers(protocol: &str) -> Option<(bool, bool)> {
    match protocol {
        "PLAINTEXT" => Some((false, false)),
        "SSL" => Some((true, false)),
        "SASL_PLAINTEXT" => Some((false, true)),
        "SASL_SSL" => Some((true, true)),
        _ => None,
    }
}

/// `listener.security.protocol.map`: listener name → security protocol, written
/// `NAME:PROTOCOL[,...]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProtocolMap(pub BTreeMap<String, String>);

impl ProtocolMap {
    /// The protocol of a listener name, if mapped.
    pub fn protocol(&self, listener: &str) -> Option<&str> {
        self.0.get(listener).map(String::as_str)
    }
}

impl FromStr for ProtocolMap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, protocol) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?} is not NAME:PROTOCOL (e.g. PLAINTEXT_HOST:PLAINTEXT)"))?;
            let (name, protocol) = (name.trim().to_ascii_uppercase(), protocol.trim().to_ascii_uppercase());
            if !SECURITY_PROTOCOLS.contains(&protocol.as_str()) {
                return Err(format!(
                    "{protocol:?} is not a security protocol; use one of {}",
                    SECURITY_PROTOCOLS.join(", ")
                ));
            }
            if map.insert(name.clone(), protocol).is_some() {
                return Err(format!("listener name {name} is mapped twice"));
            }
        }
        Ok(ProtocolMap(map))
    }
}

impl std::fmt::Display for ProtocolMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// One operation of IncrementalAlterConfigs (Kafka's `AlterConfigOp.OpType`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlterOp {
    /// Set the value.
    Set(String),
    /// Remove the override (back to the inherited value).
    Delete,
    /// Add elements to a list (those not there yet).
    Append(String),
    /// Remove elements from a list.
    Subtract(String),
}

impl AlterOp {
    /// From the wire: operation code 0-3 and the value.
    ///
    /// # Errors
    /// A sentence for an unknown code or a missing value.
    pub fn from_wire(key: &str, code: i8, value: Option<&str>) -> Result<AlterOp, String> {
        let value = || value.map(str::to_string).ok_or_else(|| format!("Null value not supported for config {key}"));
        Ok(match code {
            0 => AlterOp::Set(value()?),
            1 => AlterOp::Delete,
            2 => AlterOp::Append(value()?),
            3 => AlterOp::Subtract(value()?),
            other => {
                return Err(format!(
                    "Unknown config operation {other} for config {key} (0 set, 1 delete, 2 append, 3 subtract)"
                ))
            }
        })
    }
}

/// Applies IncrementalAlterConfigs operations to an entity's stored overrides, as Kafka's
/// `prepareIncrementalConfigs` does. `list_default(key)` is `Some(default)` for list-typed
/// keys (APPEND and SUBTRACT start from the override, else that default) and `None` for
/// the others, which refuse APPEND and SUBTRACT.
///
/// # Errors
/// A sentence for a repeated key or a list operation on a key that is not a list.
pub fn alter_overrides(
    current: &BTreeMap<String, String>,
    ops: &[(String, AlterOp)],
    list_default: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut seen = std::collections::BTreeSet::new();
    if let Some((key, _)) = ops.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(format!("Error due to duplicate config keys: {key}"));
    }
    let mut next = current.clone();
    for (key, op) in ops {
        let elements = |text: &str| -> Vec<String> {
            text.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect()
        };
        match op {
            AlterOp::Set(v) => {
                next.insert(key.clone(), v.clone());
            }
            AlterOp::Delete => {
                next.remove(key);
            }
            AlterOp::Append(v) | AlterOp::Subtract(v) => {
                let verb = if matches!(op, AlterOp::Append(_)) { "append" } else { "subtract" };
                let Some(default) = list_default(key) else {
                    return Err(format!("Config value {verb} is not allowed for config key: {key}"));
                };
                let mut list = elements(next.get(key).map_or(default.as_str(), String::as_str));
                for e in elements(v) {
                    if matches!(op, AlterOp::Append(_)) {
                        if !list.contains(&e) {
                            list.push(e);
                        }
                    } else {
                        list.retain(|x| *x != e);
                    }
                }
                next.insert(key.clone(), list.join(","));
            }
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_operations_follow_kafkas_rules() {
        let current: BTreeMap<String, String> = [("retention.ms".to_string(), "5".to_string())].into();
        let list = |k: &str| (k == "cleanup.policy").then(|| "delete".to_string());
        type Case<'a> = (&'a [(&'a str, AlterOp)], Result<&'a [(&'a str, &'a str)], &'a str>);
        let cases: &[Case] = &[
            (&[("retention.ms", AlterOp::Set("7".into()))], Ok(&[("retention.ms", "7")])),
            (&[("retention.ms", AlterOp::Delete)], Ok(&[])),
            (&[("other", AlterOp::Delete)], Ok(&[("retention.ms", "5")])),
            (
                &[("cleanup.policy", AlterOp::Append("compact".into()))],
                Ok(&[("cleanup.policy", "delete,compact"), ("retention.ms", "5")]),
            ),
            (
                &[("cleanup.policy", AlterOp::Subtract("delete".into()))],
                Ok(&[("cleanup.policy", ""), ("retention.ms", "5")]),
            ),
            (
                &[("retention.ms", AlterOp::Append("1".into()))],
                Err("Config value append is not allowed for config key: retention.ms"),
            ),
            (
                &[("retention.ms", AlterOp::Delete), ("retention.ms", AlterOp::Set("1".into()))],
                Err("Error due to duplicate config keys: retention.ms"),
            ),
        ];
        for (ops, want) in cases {
            let ops: Vec<(String, AlterOp)> = ops.iter().map(|(k, o)| (k.to_string(), o.clone())).collect();
            let got = alter_overrides(&current, &ops, list);
            let want = want
                .map(|pairs| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>())
                .map_err(str::to_string);
            assert_eq!(got, want, "{ops:?}");
        }
        assert_eq!(AlterOp::from_wire("k", 0, None), Err("Null value not supported for config k".into()));
        assert_eq!(AlterOp::from_wire("k", 1, None), Ok(AlterOp::Delete));
        assert!(AlterOp::from_wire("k", 9, Some("x")).is_err());
    }

    #[test]
    fn kafka_environment_variables_map_to_keys_as_the_images_map_them() {
        let cases = [
            ("KAFKA_BROKER_ID", KafkaEnv::Setting("broker.id".into())),
            ("KAFKA_ZOOKEEPER_CONNECT", KafkaEnv::Setting("zookeeper.connect".into())),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", KafkaEnv::Setting("offsets.topic.replication.factor".into())),
            ("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", KafkaEnv::Setting("listener.security.protocol.map".into())),
            ("KAFKA_CONFLUENT_SUPPORT__CUSTOMER__ID", KafkaEnv::Setting("confluent.support_customer_id".into())),
            ("KAFKA_A___B", KafkaEnv::Setting("a-b".into())),
            ("KAFKA_CFG_LOG_RETENTION_HOURS", KafkaEnv::Setting("log.retention.hours".into())),
            ("KAFKA_CFG_LISTENER_NAME_SASL_SSL_X", KafkaEnv::Setting("listener.name.sasl_ssl.x".into())),
            ("KAFKA_HEAP_OPTS", KafkaEnv::NotApplicable),
            ("KAFKA_LOG4J_ROOT_LOGLEVEL", KafkaEnv::NotApplicable),
            ("KAFKA_JMX_PORT", KafkaEnv::NotApplicable),
            ("KAFKA_PORT", KafkaEnv::NotApplicable),
            ("KAFKA_PORT_9092_TCP_ADDR", KafkaEnv::NotApplicable),
            ("KAFKA_ENABLE_KRAFT", KafkaEnv::NotApplicable),
            ("KAFKA_OPTS", KafkaEnv::ReadDirectly),
            ("KAFKA_ZOOKEEPER_PASSWORD", KafkaEnv::ReadDirectly),
            ("KAFKA_LOG_DIRS", KafkaEnv::Setting("log.dirs".into())),
            ("ALLOW_PLAINTEXT_LISTENER", KafkaEnv::Other),
            ("TRIBUTARY_BROKER_ID", KafkaEnv::Other),
            ("KAFKA_", KafkaEnv::Other),
        ];
        for (name, want) in cases {
            assert_eq!(kafka_env_key(name), want, "{name}");
        }
    }

    #[test]
    fn the_environment_layers_over_the_file_and_names_its_variables() {
        let vars = [
            ("KAFKA_NUM_PARTITIONS", "3"),
            ("KAFKA_CFG_NUM_PARTITIONS", "4"),
            ("KAFKA_LOG_RETENTION_MS", "soon"),
            ("KAFKA_EMPTY", ""),
            ("KAFKA_HEAP_OPTS", "-Xmx1G"),
            ("KAFKA_NOT_IMPLEMENTED_HERE", "1"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let (env, not_applicable) = Properties::from_kafka_environment(vars);
        assert_eq!(not_applicable, vec!["KAFKA_HEAP_OPTS"]);
        let mut props = Properties::parse("server.properties", "num.partitions=2\nbroker.id=7\n");
        props.overlay(env);
        assert_eq!(
            props.take_parsed::<i32>("num.partitions"),
            Ok(Some(4)),
            "KAFKA_CFG_ wins, then KAFKA_, then the file"
        );
        assert_eq!(props.take_parsed::<i32>("broker.id"), Ok(Some(7)));
        let err = props.take_parsed::<i64>("log.retention.ms").unwrap_err().to_string();
        assert!(err.contains("KAFKA_LOG_RETENTION_MS") && err.contains("soon"), "{err}");
        assert_eq!(props.finish(), Ok(vec!["KAFKA_NOT_IMPLEMENTED_HERE".to_string()]));
    }

    #[test]
    fn readme_tables_are_checked_against_the_declarations() {
        const S: &[Setting] = &[
            Setting { key: "a.b", field: "a_b", env: "T_A_B", default: "1", doc: "" },
            Setting { key: "c.d", field: "c_d", env: "T_C_D", default: "1", doc: "" },
        ];
        let readme = "# x\n### tool\n\n| flag | key | default |\n|---|---|---|\n| `--a-b` | `a.b` | 1 |\n| `--c-d` | `c.x` | 1 |\n\n### other\n";
        assert_eq!(undocumented_settings(readme, "tool", S), vec!["the row for `--c-d` lacks `c.d`".to_string()]);
        assert_eq!(undocumented_settings(readme, "other", S).len(), 1, "no table");
        assert_eq!(undocumented_settings(readme, "missing", S).len(), 1, "no section");
    }

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
        assert_eq!(p.finish(), Ok(vec![]));
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
    fn listeners_take_any_name_once_and_the_map_names_their_protocols() {
        let map: ProtocolMap = "PLAINTEXT:PLAINTEXT, plaintext_host:plaintext,CONTROLLER:PLAINTEXT".parse().unwrap();
        assert_eq!(map.protocol("PLAINTEXT_HOST"), Some("PLAINTEXT"));
        assert_eq!(map.to_string(), "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT");
        assert!("A:TLS".parse::<ProtocolMap>().is_err());
        assert!("A".parse::<ProtocolMap>().is_err());
        assert!("A:SSL,A:PLAINTEXT".parse::<ProtocolMap>().is_err());
        let l = parse_listeners("listeners", "PLAINTEXT://localhost:9092").unwrap();
        assert_eq!(l[0].port, 9092);
        assert_eq!(parse_listeners("listeners", "PLAINTEXT://:9093").unwrap()[0].host, "");
        let named = parse_listeners("listeners", "plaintext://kafka-1:9092, PLAINTEXT_HOST://localhost:29092").unwrap();
        assert_eq!(named.iter().map(|e| e.listener.as_str()).collect::<Vec<_>>(), ["PLAINTEXT", "PLAINTEXT_HOST"]);
        assert!(parse_listeners("listeners", "localhost").is_err());
        assert!(parse_listeners("listeners", "A-B://h:1").is_err(), "names are letters, digits and _");
        let twice = parse_listeners("listeners", "A://h:1,a://h:2").unwrap_err().to_string();
        assert!(twice.contains("given twice"), "{twice}");
    }
}
