//! hookforge: an event-sourced webhook router.
#![forbid(unsafe_code)]

pub mod journal;
pub mod signing;
pub mod verify;
