//! Who may do what: system admins do everything; an organization's admins manage its
//! resources; its members read them. Another organization's resources are invisible.

use serde::{Deserialize, Serialize};

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, in every organization.
    SystemAdmin,
    /// Manages its organization's resources.
    Admin,
    /// Reads its organization's resources.
    Member,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's id (`None` for the bootstrap admin token from config or `admin.token`).
    pub token_id: Option<u64>,
    /// Its role.
    pub role: Role,
    /// Its organization (`None` for system admins).
    pub organization: Option<u64>,
}

/// How a caller may touch a resource of some organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Not at all: the resource must look nonexistent (404).
    Hidden,
    /// Read only: writes are forbidden (403).
    Read,
    /// Read and write.
    Manage,
}

impl Principal {
    /// The bootstrap system admin.
    pub fn bootstrap() -> Self {
        Self {
            token_id: None,
            role: Role::SystemAdmin,
            organization: None,
        }
    }

    /// How the caller is named in event metadata and the audit trail.
    pub fn actor(&self) -> String {
        match self.token_id {
            Some(id) => format!("token:{id}"),
            None => "admin".into(),
        }
    }

    /// Whether the caller is a system admin.
    pub fn is_system_admin(&self) -> bool {
        self.role == Role::SystemAdmin
    }

    /// The caller's access to resources of organization `org`.
    pub fn access(&self, org: u64) -> Access {
        match self.role {
            Role::SystemAdmin => Access::Manage,
            _ if self.organization != Some(org) => Access::Hidden,
            Role::Admin => Access::Manage,
            Role::Member => Access::Read,
        }
    }

    /// Whether the caller may read organization `org`'s resources.
    pub fn can_read(&self, org: u64) -> bool {
        self.access(org) != Access::Hidden
    }

    /// Whether the caller may change organization `org`'s resources.
    pub fn can_manage(&self, org: u64) -> bool {
        self.access(org) == Access::Manage
    }

    /// The only organization whose resources a list may show (`None`: all of them).
    pub fn scope(&self) -> Option<u64> {
        if self.is_system_admin() {
            None
        } else {
            self.organization
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_matrix() {
        let sys = Principal::bootstrap();
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
        assert_eq!(sys.access(5), Access::Manage);
        assert_eq!(admin.access(1), Access::Manage);
        assert_eq!(admin.access(2), Access::Hidden);
        assert_eq!(member.access(1), Access::Read);
        assert_eq!(member.access(2), Access::Hidden);
        assert_eq!((sys.scope(), admin.scope()), (None, Some(1)));
        assert_eq!(
            (sys.actor(), admin.actor()),
            ("admin".to_string(), "token:1".to_string())
        );
    }
}
