//! Consumer groups (Kafka's classic protocol): the per-group state machine as plain
//! functions ([`state`]), the `__consumer_offsets` record formats ([`records`]), and the
//! coordinator that owns the groups and persists them ([`coordinator`]).

pub mod coordinator;
pub mod records;
pub mod state;

pub use coordinator::GroupCoordinator;
pub use state::GroupConfig;
