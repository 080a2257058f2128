//! hookforge: an event-sourced webhook router.
#![forbid(unsafe_code)]

pub mod delivery;
pub mod journal;
pub mod signing;
