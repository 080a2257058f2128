//! API tokens: bearer credentials with a role, scoped to an organization. Only a digest is
//! stored; the token itself is shown once, on creation.

use serde::{Deserialize, Serialize};

use super::access::{Principal, Role};
use super::event::{AuditInfo, Audited};
use super::{DomainError, FieldErrors};
use crate::codec::{Digest, EventBody};

/// Longest token description.
pub const MAX_DESCRIPTION: usize = 1024;

/// Stream of one token's events.
pub fn stream(id: u64) -> String {
    format!("token-{id}")
}

/// A token was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// Its id.
    pub id: u64,
    /// The organization it acts in (`None` for system admins).
    pub organization: Option<u64>,
    /// What it may do.
    pub role: Role,
    /// Free text.
    pub description: String,
    /// SHA-256 of the token.
    pub digest: Digest,
    /// The first and last characters, to recognise it in lists (`hf_abc***xyz`).
    pub hint: String,
}

impl EventBody for TokenCreated {
    const TYPE: &'static str = "token.created";
}

/// A token was revoked; it stops working at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    /// Its id.
    pub id: u64,
    /// Its organization, for the audit trail.
    pub organization: Option<u64>,
}

impl EventBody for TokenRevoked {
    const TYPE: &'static str = "token.revoked";
}

impl Audited for TokenCreated {
    fn audit(&self) -> Option<AuditInfo> {
        Some(AuditInfo {
            organization: self.organization,
            resource_type: "token",
            resource_id: self.id.to_string(),
            details: serde_json::json!({"role": self.role, "description": self.description, "token": self.hint}),
        })
    }
}

impl Audited for TokenRevoked {
    fn audit(&self) -> Option<AuditInfo> {
        Some(AuditInfo {
            organization: self.organization,
            resource_type: "token",
            resource_id: self.id.to_string(),
            details: serde_json::json!({}),
        })
    }
}

/// Client input for issuing a token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    /// Organization the token acts in; required unless the role is `system_admin`.
    pub organization: Option<u64>,
    /// `admin`, `member` or (system admins only) `system_admin`.
    pub role: Option<Role>,
    /// Free text.
    pub description: Option<String>,
}

/// Decides whether `caller` may issue the token described by `input`.
/// `org_exists` tells whether an organization id is live.
pub fn create(
    caller: &Principal,
    id: u64,
    input: TokenInput,
    digest: Digest,
    hint: String,
    org_exists: impl Fn(u64) -> bool,
) -> Result<TokenCreated, DomainError> {
    let mut errors = FieldErrors::default();
    let role = input.role.unwrap_or(Role::Member);
    let description = input.description.unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION {
        errors.add(
            "description",
            format!("Ensure this field has no more than {MAX_DESCRIPTION} characters."),
        );
    }
    let organization = match (role, input.organization) {
        (Role::SystemAdmin, None) => None,
        (Role::SystemAdmin, Some(_)) => {
            errors.add(
                "organization",
                "A system_admin token belongs to no organization.",
            );
            None
        }
        (_, None) => {
            errors.add("organization", "This field is required.");
            None
        }
        (_, Some(org)) => Some(org),
    };
    errors.into_result()?;
    if role == Role::SystemAdmin && !caller.is_system_admin() {
        return Err(DomainError::Forbidden(
            "Only a system admin can issue system_admin tokens.".into(),
        ));
    }
    if let Some(org) = organization {
        if !org_exists(org) || !caller.can_read(org) {
            return Err(FieldErrors::one(
                "organization",
                format!("Organization {org} does not exist."),
            ));
        }
        if !caller.can_manage(org) {
            return Err(DomainError::Forbidden(
                "Only an organization admin can issue tokens.".into(),
            ));
        }
    }
    Ok(TokenCreated {
        id,
        organization,
        role,
        description,
        digest,
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(org: Option<u64>, role: Role) -> TokenInput {
        TokenInput {
            organization: org,
            role: Some(role),
            description: None,
        }
    }

    #[test]
    fn who_may_issue_what() {
        let sysadmin = Principal::bootstrap();
        let admin = Principal {
            token_id: Some(1),
            role: Role::Admin,
            organization: Some(1),
        };
        let member = Principal {
            token_id: Some(2),
            role: Role::Member,
            organization: Some(1),
        };
        let exists = |org| org <= 2;
        let issue = |p: &Principal, i| create(p, 10, i, Digest::default(), "h".into(), exists);

        assert!(issue(&sysadmin, input(Some(2), Role::Admin)).is_ok());
        assert!(issue(&sysadmin, input(None, Role::SystemAdmin)).is_ok());
        assert!(issue(&admin, input(Some(1), Role::Member)).is_ok());
        assert!(matches!(
            issue(&admin, input(None, Role::SystemAdmin)),
            Err(DomainError::Forbidden(_))
        ));
        assert!(matches!(
            issue(&member, input(Some(1), Role::Member)),
            Err(DomainError::Forbidden(_))
        ));
        // Another tenant's organization looks the same as a missing one.
        let other = issue(&admin, input(Some(2), Role::Member)).unwrap_err();
        let missing = issue(&admin, input(Some(3), Role::Member)).unwrap_err();
        assert!(matches!(
            (&other, &missing),
            (DomainError::Invalid(_), DomainError::Invalid(_))
        ));
        assert!(matches!(
            issue(&sysadmin, input(None, Role::Admin)),
            Err(DomainError::Invalid(_))
        ));
    }
}
