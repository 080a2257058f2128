//! Organization data as it is recorded: sealed under the organization's data key, or in the
//! clear for records written before data keys existed (and for payloads compaction cut).
//!
//! Sealing happens before the append and opening after the read (see
//! [`crate::secrets::DataKeys`]); the codec only carries the bytes, so decoding a record never
//! needs a key and a record whose key was destroyed still decodes.

use serde::{Deserialize, Serialize};

use super::Sealed;

/// `T` in the clear or sealed: postcard of `T`, encrypted under data key `generation` of the
/// record's organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protected<T> {
    /// Readable as is.
    Clear(T),
    /// Sealed under a data key.
    Sealed {
        /// Which of the organization's keys (keys are replaced after an erasure).
        generation: u32,
        /// Nonce and ciphertext.
        bytes: Sealed,
    },
}

impl<T: Default> Default for Protected<T> {
    fn default() -> Self {
        Self::Clear(T::default())
    }
}

impl<T> Protected<T> {
    /// The value if it is in the clear.
    pub fn clear(&self) -> Option<&T> {
        match self {
            Self::Clear(value) => Some(value),
            Self::Sealed { .. } => None,
        }
    }
}
