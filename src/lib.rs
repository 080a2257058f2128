//! hookforge: an event-sourced webhook router.
#![forbid(unsafe_code)]

pub mod conditions;
pub mod journal;
pub mod signing;
