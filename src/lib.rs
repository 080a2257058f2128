//! hookforge: an event-sourced webhook router.
#![forbid(unsafe_code)]

pub mod actors;
pub mod app;
pub mod cli;
pub mod codec;
pub mod conditions;
pub mod config;
pub mod data_dir;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod intake;
pub mod jobs;
pub mod journal;
pub mod metrics;
pub mod projections;
pub mod retention;
pub mod secrets;
pub mod server;
pub mod signing;
pub mod store;
pub mod verify;
