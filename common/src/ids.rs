//! Identifiers in Kafka's vocabulary.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// A broker's numeric id (`broker.id`).
pub type BrokerId = i32;

/// A topic and one of its partitions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index, from 0.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic-partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A topic id (KIP-516): a UUID, written in ZooKeeper as 22 characters of unpadded base64url.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(pub uuid::Uuid);

impl TopicId {
    /// A fresh random id. Kafka never hands out the all-zero id or ids whose base64 starts with '-'.
    pub fn random() -> Self {
        loop {
            let id = uuid::Uuid::new_v4();
            let candidate = TopicId(id);
            if !candidate.to_string().starts_with('-') {
                return candidate;
            }
        }
    }

    /// Parses the 22-character base64url form.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let array: [u8; 16] = bytes.try_into().ok()?;
        Some(TopicId(uuid::Uuid::from_bytes(array)))
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0.as_bytes()))
    }
}

impl Serialize for TopicId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for TopicId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TopicId::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("invalid topic id {text:?}")))
    }
}

/// A Kafka cluster id as `/cluster/id` holds it: 22 characters of base64url (a UUID).
/// Clients treat it as an opaque string, so any such 22 characters are accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterId(pub String);

impl std::str::FromStr for ClusterId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() == 22 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            Ok(ClusterId(s.to_string()))
        } else {
            Err(format!("{s:?} is not a Kafka cluster id: 22 characters of base64url, e.g. MkU3OEVBNTcwNTJENDM2Qk"))
        }
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_id_round_trips_through_its_22_character_form() {
        let id = TopicId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 22);
        assert_eq!(TopicId::parse(&text), Some(id));
    }

    #[test]
    fn topic_id_rejects_wrong_lengths() {
        assert_eq!(TopicId::parse("abc"), None);
        assert_eq!(TopicId::parse(""), None);
    }
}
