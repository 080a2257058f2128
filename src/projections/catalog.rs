//! A catalogue of organization-scoped templates: records by id, names unique per organization,
//! and the highest id ever used (ids are never reused). Shared by the job, workflow and
//! notification template read models.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// What the catalogue needs to know about a record.
pub trait Catalogued {
    /// Id.
    fn id(&self) -> u64;
    /// Owning organization.
    fn organization(&self) -> u64;
    /// Name, unique within the organization.
    fn name(&self) -> &str;
}

/// Template settings, which carry the template's name.
pub trait Named {
    /// Name, unique within the organization.
    fn name(&self) -> &str;
}

/// An organization-scoped template as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template<C> {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// Settings.
    pub config: C,
    /// Creation time (µs).
    pub created: i64,
    /// Last change (µs).
    pub modified: i64,
}

impl<C: Named> Catalogued for Template<C> {
    fn id(&self) -> u64 {
        self.id
    }
    fn organization(&self) -> u64 {
        self.organization
    }
    fn name(&self) -> &str {
        self.config.name()
    }
}

/// Records by id with per-organization unique names.
#[derive(Debug, Serialize, Deserialize)]
pub struct Catalog<T> {
    by_id: BTreeMap<u64, T>,
    names: HashSet<(u64, String)>,
    /// Highest id ever used.
    pub max_id: u64,
}

impl<T> Default for Catalog<T> {
    fn default() -> Self {
        Self {
            by_id: BTreeMap::new(),
            names: HashSet::new(),
            max_id: 0,
        }
    }
}

impl<T: Catalogued> Catalog<T> {
    /// The id the next record gets.
    pub fn next_id(&self) -> u64 {
        self.max_id + 1
    }

    /// The record with `id`.
    pub fn get(&self, id: u64) -> Option<&T> {
        self.by_id.get(&id)
    }

    /// All records, ascending by id.
    pub fn all(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.by_id.values()
    }

    /// Whether `organization` has a record named `name`.
    pub fn name_taken(&self, organization: u64, name: &str) -> bool {
        self.names.contains(&(organization, name.to_owned()))
    }

    /// Adds a record.
    pub fn insert(&mut self, record: T) {
        self.max_id = self.max_id.max(record.id());
        self.names
            .insert((record.organization(), record.name().to_owned()));
        self.by_id.insert(record.id(), record);
    }

    /// Changes record `id` in place, keeping the name index right.
    pub fn update(&mut self, id: u64, change: impl FnOnce(&mut T)) {
        if let Some(record) = self.by_id.get_mut(&id) {
            self.names
                .remove(&(record.organization(), record.name().to_owned()));
            change(record);
            self.names
                .insert((record.organization(), record.name().to_owned()));
        }
    }

    /// Removes record `id`.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let record = self.by_id.remove(&id)?;
        self.names
            .remove(&(record.organization(), record.name().to_owned()));
        Some(record)
    }
}

impl<C: Named> Catalog<Template<C>> {
    /// Folds a template's creation at `at` (µs).
    pub fn created(&mut self, id: u64, organization: u64, config: C, at: i64) {
        self.insert(Template {
            id,
            organization,
            config,
            created: at,
            modified: at,
        });
    }

    /// Folds a change to template `id`'s settings at `at` (µs).
    pub fn updated(&mut self, id: u64, config: C, at: i64) {
        self.update(id, |t| {
            t.config = config;
            t.modified = at;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Named(u64, u64, String);

    impl Catalogued for Named {
        fn id(&self) -> u64 {
            self.0
        }
        fn organization(&self) -> u64 {
            self.1
        }
        fn name(&self) -> &str {
            &self.2
        }
    }

    #[test]
    fn names_follow_renames_and_removals_and_ids_are_never_reused() {
        let mut catalog = Catalog::default();
        catalog.insert(Named(1, 7, "a".into()));
        catalog.insert(Named(2, 8, "a".into()));
        assert!(
            catalog.name_taken(7, "a") && catalog.name_taken(8, "a") && !catalog.name_taken(9, "a")
        );
        catalog.update(1, |n| n.2 = "b".into());
        assert!(!catalog.name_taken(7, "a") && catalog.name_taken(7, "b"));
        assert_eq!(catalog.remove(2).map(|n| n.0), Some(2));
        assert!(!catalog.name_taken(8, "a"));
        assert_eq!(catalog.max_id, 2);
        assert_eq!(catalog.all().count(), 1);
    }
}
