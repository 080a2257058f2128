//! API tokens by id and by digest, for authentication and listing.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::View;
use crate::domain::Event;
use crate::domain::access::Role;
use crate::journal::{EventFilter, RecordedEvent};

/// A live token (its secret part is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Id.
    pub id: u64,
    /// Organization (none for system admins).
    pub organization: Option<u64>,
    /// Role.
    pub role: Role,
    /// Free text.
    pub description: String,
    /// Masked form.
    pub hint: String,
    /// Creation time (µs since the epoch).
    pub created: i64,
    /// Who issued it.
    pub created_by: String,
}

/// Live (unrevoked) tokens.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TokensView {
    by_id: BTreeMap<u64, TokenRecord>,
    by_digest: HashMap<[u8; 32], u64>,
    /// Highest id ever used.
    pub max_id: u64,
}

impl TokensView {
    /// The live token with this digest.
    pub fn by_digest(&self, digest: &[u8; 32]) -> Option<&TokenRecord> {
        self.by_digest.get(digest).and_then(|id| self.by_id.get(id))
    }

    /// The live token with `id`.
    pub fn get(&self, id: u64) -> Option<&TokenRecord> {
        self.by_id.get(&id)
    }

    /// All live tokens, ascending by id.
    pub fn all(&self) -> impl DoubleEndedIterator<Item = &TokenRecord> {
        self.by_id.values()
    }
}

impl View for TokensView {
    const NAME: &'static str = "tokens";

    fn filter() -> EventFilter {
        EventFilter::category("token")
    }

    fn apply(&mut self, event: &RecordedEvent) {
        match Event::decode(event) {
            Ok(Some(Event::TokenCreated(e))) => {
                self.max_id = self.max_id.max(e.id);
                self.by_digest.insert(e.digest.0, e.id);
                let record = TokenRecord {
                    id: e.id,
                    organization: e.organization,
                    role: e.role,
                    description: e.description,
                    hint: e.hint,
                    created: event.recorded_at,
                    created_by: event.metadata.actor.clone(),
                };
                self.by_id.insert(e.id, record);
            }
            Ok(Some(Event::TokenRevoked(e))) => {
                self.by_id.remove(&e.id);
                self.by_digest.retain(|_, id| *id != e.id);
            }
            _ => {}
        }
    }
}
