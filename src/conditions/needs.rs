//! What part of a JSON document an expression can observe, as a tree mirroring the document.
//!
//! A [`Need`] says, for one value of the document, what must be converted into CEL for the
//! expression to evaluate exactly as it would on the whole document:
//!
//! * `all`: the value is used as a whole (compared, passed to a function, iterated with its
//!   elements escaping...): convert it in full;
//! * `fields`: the object members that are selected (`.f`, `["f"]`, `has(.f)`, `"f" in`), each with
//!   its own need; the other members are left out;
//! * `indices`: the list elements read with a constant index (`[0]`); the others become
//!   placeholders that nothing reads, so the list keeps its length;
//! * `each`: what is read of every element (or member value) by a comprehension
//!   (`exists`, `all`, `map`...) over the value;
//! * `shape`: every member or element must be present (`size()`, comprehensions), though not
//!   necessarily converted.
//!
//! A node with none of these means "present, never read": an object becomes an empty map, a list
//! a list of placeholders. A value that is neither object nor list is always converted whole.
//! Selecting a field of a list or iterating it after a field test converts the list whole, so
//! errors read the same as on the full document.

use std::collections::BTreeMap;

/// The need of a value converted in full.
pub(crate) static ALL: Need = Need {
    all: true,
    shape: false,
    fields: BTreeMap::new(),
    indices: BTreeMap::new(),
    each: None,
};

/// The need of a value that is only tested for presence.
pub(crate) static PRESENT: Need = Need {
    all: false,
    shape: false,
    fields: BTreeMap::new(),
    indices: BTreeMap::new(),
    each: None,
};

/// What an expression reads of one JSON value: see the module documentation.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Need {
    pub(crate) all: bool,
    pub(crate) shape: bool,
    pub(crate) fields: BTreeMap<String, Need>,
    pub(crate) indices: BTreeMap<i64, Need>,
    pub(crate) each: Option<Box<Need>>,
}

/// One step of an access path below a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `.name`, `["name"]`, `.?name`.
    Field(String),
    /// `[3]` with a constant integer.
    Index(i64),
    /// Any element (or member value), as bound to a comprehension variable.
    Each,
}

/// How the value at the end of a path is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    /// Read as a whole.
    Whole,
    /// Only its size is read.
    Shape,
    /// Only whether it exists.
    Presence,
}

impl Need {
    /// Records that the value at `path` below this one is used as `usage`.
    pub(crate) fn mark(&mut self, path: &[Step], usage: Usage) {
        let mut node = self;
        for step in path {
            node = match step {
                Step::Field(name) => node.fields.entry(name.clone()).or_default(),
                Step::Index(i) => node.indices.entry(*i).or_default(),
                Step::Each => node.each.get_or_insert_default(),
            };
        }
        match usage {
            Usage::Whole => node.all = true,
            Usage::Shape => node.shape = true,
            Usage::Presence => {}
        }
    }

    /// Adds everything `other` needs to this need.
    pub(crate) fn merge(&mut self, other: &Need) {
        self.all |= other.all;
        self.shape |= other.shape;
        for (name, need) in &other.fields {
            self.fields.entry(name.clone()).or_default().merge(need);
        }
        for (i, need) in &other.indices {
            self.indices.entry(*i).or_default().merge(need);
        }
        if let Some(each) = &other.each {
            self.each.get_or_insert_default().merge(each);
        }
    }

    /// Puts the tree in the form the converters read: a whole value drops its details, `each`
    /// implies `shape` and is folded into every named field and index, so a converter looks a
    /// member up in `fields` first and falls back to `each`.
    pub(crate) fn normalize(&mut self) {
        if self.all {
            *self = ALL.clone();
            return;
        }
        if let Some(each) = &mut self.each {
            each.normalize();
            self.shape = true;
            let each = each.as_ref();
            for need in self.fields.values_mut().chain(self.indices.values_mut()) {
                need.merge(each);
            }
        }
        for need in self.fields.values_mut().chain(self.indices.values_mut()) {
            need.normalize();
        }
    }

    /// The need of the object member `key`, or `None` if the member can be skipped.
    pub(crate) fn member(&self, key: &str) -> Option<&Need> {
        if self.all {
            return Some(&ALL);
        }
        self.fields
            .get(key)
            .or(self.each.as_deref())
            .or(self.shape.then_some(&PRESENT))
    }

    /// Whether a list at this node must be converted in full.
    pub(crate) fn whole_list(&self) -> bool {
        self.all || !self.fields.is_empty()
    }

    /// The need of element `index` of a list that is not converted in full, or `None` if a
    /// placeholder will do.
    pub(crate) fn element(&self, index: usize) -> Option<&Need> {
        i64::try_from(index)
            .ok()
            .and_then(|i| self.indices.get(&i))
            .or(self.each.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> Step {
        Step::Field(name.to_owned())
    }

    #[test]
    fn marks_build_the_tree_along_the_path() {
        let mut need = Need::default();
        need.mark(&[field("repository"), field("full_name")], Usage::Whole);
        need.mark(&[field("ref")], Usage::Presence);
        assert!(!need.all);
        assert!(need.fields["repository"].fields["full_name"].all);
        assert!(!need.fields["repository"].all);
        assert_eq!(need.fields["ref"], PRESENT);
        assert!(need.member("commits").is_none());
        assert_eq!(need.member("ref"), Some(&PRESENT));
    }

    #[test]
    fn each_is_folded_into_named_members_and_implies_shape() {
        let mut need = Need::default();
        need.mark(&[Step::Each, field("id")], Usage::Whole);
        need.mark(&[field("a"), field("name")], Usage::Whole);
        need.normalize();
        assert!(need.shape);
        let a = need.member("a").unwrap();
        assert!(a.fields["id"].all && a.fields["name"].all);
        let other = need.member("b").unwrap();
        assert!(other.fields["id"].all && !other.fields.contains_key("name"));
    }

    #[test]
    fn a_whole_value_drops_its_details() {
        let mut need = Need::default();
        need.mark(&[field("a")], Usage::Whole);
        need.mark(&[field("a"), field("b")], Usage::Presence);
        need.normalize();
        assert_eq!(need.fields["a"], ALL);
    }

    #[test]
    fn lists_are_whole_when_a_field_is_selected_on_them() {
        let mut need = Need::default();
        need.mark(&[Step::Index(1)], Usage::Whole);
        assert!(!need.whole_list());
        assert!(need.element(0).is_none());
        assert_eq!(need.element(1), Some(&ALL));
        need.mark(&[field("x")], Usage::Presence);
        assert!(need.whole_list());
    }
}
