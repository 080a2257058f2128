//! The actor runtime (ractor): a supervisor that restarts failed children by replaying their
//! streams, and the projector that feeds read models from the journal.

pub mod dispatcher;
pub mod endpoint;
pub mod idle;
pub mod manager;
pub mod outbound;
pub mod parking;
pub mod projector;
pub mod registry;
pub mod rule;
pub mod rule_store;
pub mod rules;
pub mod runner;
pub mod sleepers;
pub mod supervisor;

pub use self::parking::Parking;
pub use self::projector::{Projector, StoredProjector};
pub use self::supervisor::{ChildSpec, Supervisor, SupervisorMsg};
