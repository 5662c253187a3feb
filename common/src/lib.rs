//! Shared pieces of Tributary's broker and coordinator.
//!
//! The two binaries never link each other; they meet in ZooKeeper. This crate holds what
//! both must agree on: the znode paths and JSON payloads in Apache Kafka's own layout
//! ([`znode`]), identifiers ([`ids`]), topic rules and replica placement ([`topic`]),
//! Kafka-style `server.properties` parsing ([`config`]), a small Kafka protocol client
//! ([`kafka_client`]), the ZooKeeper session helper
//! ([`zk`]) and tracing set-up ([`telemetry`]).
#![warn(missing_docs)]

pub mod acl;
pub mod config;
pub mod dynamic;
pub mod ids;
pub mod jaas;
pub mod kafka_client;
pub mod metrics;
pub mod scram;
pub mod snapshot;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod topic;
pub mod zk;
pub mod znode;
