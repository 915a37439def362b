//! Roles and what each may do. The matrix lives here once; every change of
//! the operations layer (`crate::admin`) and every page and API read asks
//! [`Role::allows`], and the README documents it.

use serde::{Deserialize, Serialize};

/// A Remote UI role, as on the seed's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Administrator,
    NetworkAdmin,
    GeneralUser,
}

/// Something a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Portal, Send Job History, the status of both providers.
    ViewStatus,
    /// Settings/Registration menu and the settings pages (read).
    ViewSettings,
    /// OAuth 2.0 (Microsoft) settings and authorization.
    ManageMicrosoft,
    /// OAuth 2.0 (Google) settings and authorization: Administrator only, as the seed says.
    ManageGoogle,
    /// E-mail Settings, submitters and the address allowlist.
    ManageEmail,
    /// Date/Time, CA Certificates, network settings.
    ManageNetwork,
    /// Users and API tokens.
    ManageUsers,
    /// The audit log.
    ReadAudit,
    /// Retry or delete jobs.
    ManageJobs,
}

impl Permission {
    /// Managing what sends as a provider's mailbox: its OAuth settings, and
    /// the E-mail Settings, submitters and allowlist entries that send
    /// through it. So a NetworkAdmin cannot point Google's token at another
    /// server or send as the Google mailbox: the seed reserves Google to
    /// Administrators.
    pub fn manage(provider: crate::provider::Provider) -> Permission {
        match provider {
            crate::provider::Provider::Microsoft => Permission::ManageMicrosoft,
            crate::provider::Provider::Google => Permission::ManageGoogle,
        }
    }
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Administrator, Role::NetworkAdmin, Role::GeneralUser];

    /// The stored and API name (`administrator`, `network_admin`, `general_user`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::NetworkAdmin => "network_admin",
            Role::GeneralUser => "general_user",
        }
    }

    /// Accepts the stored name and the CLI spelling (`network-admin`).
    pub fn parse(text: &str) -> Option<Role> {
        match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "administrator" | "admin" => Some(Role::Administrator),
            "network_admin" | "networkadmin" => Some(Role::NetworkAdmin),
            "general_user" | "generaluser" => Some(Role::GeneralUser),
            _ => None,
        }
    }

    /// How much the role may do: each role may do everything the roles
    /// below it may.
    fn rank(self) -> u8 {
        match self {
            Role::Administrator => 2,
            Role::NetworkAdmin => 1,
            Role::GeneralUser => 0,
        }
    }

    /// The lesser of two roles: what an API token may do when its own role
    /// and its user's current role differ.
    pub fn at_most(self, other: Role) -> Role {
        if other.rank() < self.rank() {
            other
        } else {
            self
        }
    }

    /// Whether this role may do everything `other` may.
    pub fn covers(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }

    /// The role matrix.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Administrator => true,
            Role::NetworkAdmin => matches!(
                permission,
                ViewStatus | ViewSettings | ManageMicrosoft | ManageEmail | ManageNetwork
            ),
            Role::GeneralUser => matches!(permission, ViewStatus),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_follows_the_seed() {
        assert!(Role::NetworkAdmin.allows(Permission::ManageMicrosoft));
        assert!(!Role::NetworkAdmin.allows(Permission::ManageGoogle));
        assert!(!Role::NetworkAdmin.allows(Permission::ManageUsers));
        assert!(!Role::GeneralUser.allows(Permission::ViewSettings));
        assert!(Role::GeneralUser.allows(Permission::ViewStatus));
        assert_eq!(Role::parse("network-admin"), Some(Role::NetworkAdmin));
        assert_eq!(Role::parse("root"), None);
        use crate::provider::Provider;
        assert!(Role::NetworkAdmin.allows(Permission::manage(Provider::Microsoft)));
        assert!(!Role::NetworkAdmin.allows(Permission::manage(Provider::Google)));
        assert!(Role::Administrator.allows(Permission::manage(Provider::Google)));
    }

    #[test]
    fn a_lesser_role_allows_nothing_more() {
        use Permission::*;
        let all = [
            ViewStatus,
            ViewSettings,
            ManageMicrosoft,
            ManageGoogle,
            ManageEmail,
            ManageNetwork,
            ManageUsers,
            ReadAudit,
            ManageJobs,
        ];
        for a in Role::ALL {
            for b in Role::ALL {
                let least = a.at_most(b);
                assert!(a.covers(least) && b.covers(least), "{a:?} {b:?}");
                for p in all {
                    if least.allows(p) {
                        assert!(a.allows(p) && b.allows(p), "{a:?} {b:?} {p:?}");
                    }
                }
            }
        }
        assert_eq!(
            Role::Administrator.at_most(Role::GeneralUser),
            Role::GeneralUser
        );
    }
}
