//! Outbound webhook delivery: the building blocks an endpoint actor combines per attempt.
//!
//! [`envelope`] builds the JSON body, [`signing`] the signed headers, [`client`] performs one
//! attempt through the SSRF-guarded client of [`ssrf`], and [`retry`] decides what follows from
//! the outcome ([`retry_after`] parses the receiver's hint). All but `client` and the resolver in
//! `ssrf` are pure.

pub mod client;
pub mod envelope;
pub mod retry;
pub mod retry_after;
pub mod signing;
pub mod ssrf;

#[cfg(test)]
mod client_tests;

pub use client::{
    AttemptError, AttemptOutcome, ClientConfig, DeliveryClient, FailureKind, OutboundRequest,
};
pub use envelope::Envelope;
pub use retry::{Decision, OutcomeClass, RetryPolicy, decide};
pub use ssrf::{SsrfError, check_url, forbidden_reason};
