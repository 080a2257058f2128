//! Organizations: the tenants every other resource belongs to.

use serde::{Deserialize, Serialize};

use super::event::{AuditInfo, Audited};
use super::{DomainError, FieldErrors, check_name};
use crate::codec::{CodecError, EventBody, decode_as};

/// Longest organization name.
pub const MAX_NAME: usize = 512;

/// Stream of one organization's events.
pub fn stream(id: u64) -> String {
    format!("organization-{id}")
}

/// An organization was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationCreated {
    /// Its id.
    pub id: u64,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
}

/// Version 1 of [`OrganizationCreated`], before organizations had a description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationCreatedV1 {
    /// Its id.
    pub id: u64,
    /// Unique name.
    pub name: String,
}

impl From<OrganizationCreatedV1> for OrganizationCreated {
    fn from(v1: OrganizationCreatedV1) -> Self {
        Self {
            id: v1.id,
            name: v1.name,
            description: String::new(),
        }
    }
}

impl EventBody for OrganizationCreated {
    const TYPE: &'static str = "organization.created";
    const VERSION: u16 = 2;

    fn upcast(version: u16, data: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_as::<OrganizationCreatedV1>(Self::TYPE, 1, data).map(Into::into),
            _ => Err(CodecError::UnknownVersion {
                event_type: Self::TYPE,
                version,
            }),
        }
    }
}

/// An organization's name or description changed (the full new values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationUpdated {
    /// Its id.
    pub id: u64,
    /// New name.
    pub name: String,
    /// New description.
    pub description: String,
}

impl EventBody for OrganizationUpdated {
    const TYPE: &'static str = "organization.updated";
}

/// An organization was deleted; its tokens stop working at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationDeleted {
    /// Its id.
    pub id: u64,
}

impl EventBody for OrganizationDeleted {
    const TYPE: &'static str = "organization.deleted";
}

/// An organization's payloads were erased: its data keys up to `through_generation` are
/// destroyed, so nothing sealed under them opens again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationErased {
    /// Its id.
    pub id: u64,
    /// The newest key generation destroyed (0: there was none yet).
    pub through_generation: u32,
}

impl EventBody for OrganizationErased {
    const TYPE: &'static str = "organization.erased";
}

impl Audited for OrganizationErased {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            serde_json::json!({"erased": "payloads", "through_generation": self.through_generation}),
        )
    }
}

/// Client input for `POST /api/v2/organizations/{id}/erase/`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseInput {
    /// The organization's name, to confirm which tenant's data goes.
    pub confirm: Option<String>,
}

/// Decides an erasure of organization `id` named `name`. `erased_before` tells whether it was
/// erased already; `live` is its newest data key generation, if it has one.
pub fn erase(
    id: u64,
    name: &str,
    input: EraseInput,
    erased_before: bool,
    live: Option<u32>,
) -> Result<OrganizationErased, DomainError> {
    match input.confirm.as_deref() {
        None => {
            return Err(FieldErrors::one(
                "confirm",
                "This field is required: send the organization's name to confirm the erasure.",
            ));
        }
        Some(confirm) if confirm != name => {
            return Err(FieldErrors::one(
                "confirm",
                "Does not match the organization's name.",
            ));
        }
        Some(_) => {}
    }
    if erased_before && live.is_none() {
        return Err(DomainError::Conflict(
            "The organization's payloads were already erased, and none was received since.".into(),
        ));
    }
    Ok(OrganizationErased {
        id,
        through_generation: live.unwrap_or(0),
    })
}

fn audit(id: u64, details: serde_json::Value) -> Option<AuditInfo> {
    Some(AuditInfo {
        organization: Some(id),
        resource_type: "organization",
        resource_id: id.to_string(),
        details,
    })
}

impl Audited for OrganizationCreated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            serde_json::json!({"name": self.name, "description": self.description}),
        )
    }
}

impl Audited for OrganizationUpdated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            self.id,
            serde_json::json!({"name": self.name, "description": self.description}),
        )
    }
}

impl Audited for OrganizationDeleted {
    fn audit(&self) -> Option<AuditInfo> {
        audit(self.id, serde_json::json!({}))
    }
}

/// Client input for creating or patching an organization.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationInput {
    /// Unique name.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Retention settings to change (see [`super::retention::Retention::patched`]).
    pub retention: Option<serde_json::Value>,
}

/// Decides a creation. `name_taken` tells whether another organization already has the name.
pub fn create(
    id: u64,
    input: OrganizationInput,
    name_taken: impl Fn(&str) -> bool,
) -> Result<OrganizationCreated, DomainError> {
    let mut errors = FieldErrors::default();
    let name = input.name.unwrap_or_default();
    check_name(&mut errors, "name", &name, MAX_NAME);
    let description = input.description.unwrap_or_default();
    errors.into_result()?;
    if name_taken(&name) {
        return Err(FieldErrors::one(
            "name",
            "Organization with this name already exists.",
        ));
    }
    Ok(OrganizationCreated {
        id,
        name,
        description,
    })
}

/// Decides a partial update of the organization whose current values are `(name, description)`.
pub fn update(
    id: u64,
    current: (&str, &str),
    input: OrganizationInput,
    name_taken: impl Fn(&str) -> bool,
) -> Result<Option<OrganizationUpdated>, DomainError> {
    let mut errors = FieldErrors::default();
    let name = input.name.unwrap_or_else(|| current.0.to_owned());
    check_name(&mut errors, "name", &name, MAX_NAME);
    errors.into_result()?;
    if name != current.0 && name_taken(&name) {
        return Err(FieldErrors::one(
            "name",
            "Organization with this name already exists.",
        ));
    }
    let description = input.description.unwrap_or_else(|| current.1.to_owned());
    if name == current.0 && description == current.1 {
        return Ok(None);
    }
    Ok(Some(OrganizationUpdated {
        id,
        name,
        description,
    }))
}

/// Decides whether an organization that still owns `owned` resources (noun, count) may be
/// deleted. It may not: its rules would keep accepting webhooks and its endpoints keep
/// delivering for a tenant nobody could administer any more, so the caller deletes them first.
pub fn check_deletable(owned: &[(&str, usize)]) -> Result<(), DomainError> {
    let parts: Vec<String> = owned
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(noun, n)| format!("{n} {noun}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    let listed = match parts.as_slice() {
        [] => return Ok(()),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    };
    Err(DomainError::Conflict(format!(
        "The organization still owns {listed}; delete them first."
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_organization_that_owns_resources_cannot_be_deleted() {
        assert!(check_deletable(&[]).is_ok());
        assert!(check_deletable(&[("event rule", 0), ("outbound webhook", 0)]).is_ok());
        let message = |owned: &[(&str, usize)]| match check_deletable(owned) {
            Err(DomainError::Conflict(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message(&[("event rule", 1)]),
            "The organization still owns 1 event rule; delete them first."
        );
        assert_eq!(
            message(&[
                ("event rule", 2),
                ("job template", 0),
                ("workflow job template", 1),
                ("outbound webhook", 3)
            ]),
            "The organization still owns 2 event rules, 1 workflow job template and 3 outbound webhooks; delete them first."
        );
    }
    #[test]
    fn an_erasure_is_confirmed_by_name_and_not_repeated_without_new_data() {
        let input = |confirm: Option<&str>| EraseInput {
            confirm: confirm.map(str::to_owned),
        };
        let field = |r: Result<OrganizationErased, DomainError>| match r {
            Err(DomainError::Invalid(f)) => f.0.keys().cloned().collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(erase(1, "Acme", input(None), false, Some(1))),
            ["confirm"]
        );
        assert_eq!(
            field(erase(1, "Acme", input(Some("acme")), false, Some(1))),
            ["confirm"]
        );
        assert_eq!(
            erase(1, "Acme", input(Some("Acme")), false, Some(3)).unwrap(),
            OrganizationErased {
                id: 1,
                through_generation: 3
            }
        );
        assert_eq!(
            erase(1, "Acme", input(Some("Acme")), false, None).unwrap(),
            OrganizationErased {
                id: 1,
                through_generation: 0
            }
        );
        assert!(matches!(
            erase(1, "Acme", input(Some("Acme")), true, None),
            Err(DomainError::Conflict(_))
        ));
        assert_eq!(
            erase(1, "Acme", input(Some("Acme")), true, Some(4))
                .unwrap()
                .through_generation,
            4,
            "data received after an erasure can be erased again"
        );
    }

    use crate::codec::{decode, encode};
    use crate::journal::{Metadata, RecordedEvent};

    #[test]
    fn creation_validates_and_refuses_taken_names() {
        let ok = create(
            1,
            OrganizationInput {
                name: Some("Acme".into()),
                description: None,
                retention: None,
            },
            |_| false,
        )
        .unwrap();
        assert_eq!(
            ok,
            OrganizationCreated {
                id: 1,
                name: "Acme".into(),
                description: String::new()
            }
        );
        let blank = create(2, OrganizationInput::default(), |_| false).unwrap_err();
        assert!(matches!(blank, DomainError::Invalid(ref f) if f.0.contains_key("name")));
        let taken = create(
            2,
            OrganizationInput {
                name: Some("Acme".into()),
                description: None,
                retention: None,
            },
            |n| n == "Acme",
        );
        assert!(matches!(taken, Err(DomainError::Invalid(_))));
    }

    #[test]
    fn updates_keep_unset_fields_and_skip_no_ops() {
        let input = OrganizationInput {
            name: None,
            description: Some("new".into()),
            retention: None,
        };
        let updated = update(1, ("Acme", "old"), input, |_| true)
            .unwrap()
            .unwrap();
        assert_eq!(
            (updated.name.as_str(), updated.description.as_str()),
            ("Acme", "new")
        );
        let same = OrganizationInput {
            name: Some("Acme".into()),
            description: None,
            retention: None,
        };
        assert_eq!(update(1, ("Acme", "old"), same, |_| true).unwrap(), None);
    }

    #[test]
    fn a_version_1_record_is_upcast() {
        // Written by the pre-release schema: {id, name}, no description.
        let v1 = OrganizationCreatedV1 {
            id: 9,
            name: "Legacy".into(),
        };
        let record = RecordedEvent {
            position: 0,
            stream: stream(9),
            revision: 0,
            event_type: "organization.created".into(),
            schema_version: 1,
            recorded_at: 0,
            metadata: Metadata::default(),
            data: postcard::to_stdvec(&v1).unwrap().into(),
            compacted: false,
        };
        let current: OrganizationCreated = decode(&record).unwrap();
        assert_eq!(
            current,
            OrganizationCreated {
                id: 9,
                name: "Legacy".into(),
                description: String::new()
            }
        );

        let new = encode(&current, Metadata::default());
        assert_eq!(new.schema_version, 2);
        let unknown = RecordedEvent {
            schema_version: 7,
            ..record
        };
        assert!(matches!(
            decode::<OrganizationCreated>(&unknown),
            Err(CodecError::UnknownVersion { version: 7, .. })
        ));
    }
}
