//! The Kafka wire: length-prefixed frames ([`connection`]) and request decoding / response
//! encoding with the `kafka-protocol` crate ([`codec`]).

pub(crate) mod codec;
pub(crate) mod connection;
