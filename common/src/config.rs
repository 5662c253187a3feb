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
