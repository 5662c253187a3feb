//! Consumer groups (Kafka's classic protocol): the per-group state machine as plain
//! functions ([`state`]), the `__consumer_offsets` record formats ([`records`]), and the
//! coordinator that owns the groups and persists them ([`coordinator`]).

pub(crate) mod coordinator;
pub(crate) mod records;
pub(crate) mod state;

pub(crate) use coordinator::GroupCoordinator;
pub(crate) use state::GroupConfig;
