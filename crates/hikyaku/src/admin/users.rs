//! Remote UI users, the first Administrator and API tokens.

use super::{Admin, AdminError, Problem, hash_password, record};
use crate::clock::Clock;
use crate::i18n::Reason;
use crate::roles::{Permission, Role};
use crate::secrets::{hash_token, random_token};
use crate::store::Store;
use crate::store::audit::Action;

/// A role by its stored or CLI name.
pub fn parse_role(text: &str) -> Result<Role, Problem> {
    Role::parse(text).ok_or_else(|| Problem::UnknownRole(text.to_string()))
}

/// Checks a new user (or submitter) name and password.
pub fn validate_new_user(name: &str, password: &str) -> Result<(), Problem> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if !name_ok {
        return Err(Problem::NameInvalid);
    }
    if password.chars().count() < 10 {
        return Err(Problem::PasswordTooShort);
    }
    Ok(())
}

/// The detail of a user or API token entry: its name and role.
fn named_role(name: &str, role: Role) -> Reason {
    Reason::new("audit-user-role")
        .arg("name", name)
        .arg("role", role.as_str())
}

impl Admin<'_> {
    /// Adds a Remote UI user with the role named `role`.
    pub async fn add_user(
        &self,
        name: &str,
        password: String,
        role: &str,
    ) -> Result<Role, AdminError> {
        self.require(Permission::ManageUsers)?;
        let role = parse_role(role)?;
        validate_new_user(name, &password)?;
        let hash = hash_password(password).await?;
        self.store
            .create_user(name, role, &hash, self.clock.unix())
            .await?;
        self.audit(Action::UserAdd, named_role(name, role)).await;
        Ok(role)
    }

    /// Deletes a user (never the last Administrator: the store refuses).
    pub async fn delete_user(&self, name: &str) -> Result<(), AdminError> {
        self.require(Permission::ManageUsers)?;
        self.store.delete_user(name).await?;
        self.audit(
            Action::UserDelete,
            Reason::new("audit-user").arg("name", name),
        )
        .await;
        Ok(())
    }

    /// Creates an API token for `name`; returns the token, shown only once
    /// (the store keeps its hash).
    pub async fn add_api_token(
        &self,
        name: &str,
        role: &str,
    ) -> Result<(Role, String), AdminError> {
        self.require(Permission::ManageUsers)?;
        let role = parse_role(role)?;
        let token = format!("hky_{}", random_token(32));
        self.store
            .create_api_token(name, role, &hash_token(&token), self.clock.unix())
            .await?;
        self.audit(Action::ApiTokenAdd, named_role(name, role))
            .await;
        Ok((role, token))
    }
}

/// The first Administrator, created through the one-time setup link (no
/// one is signed in yet: the link is the permission).
pub async fn create_first_admin(
    store: &Store,
    clock: &dyn Clock,
    setup_token: &str,
    name: &str,
    password: String,
    source: &str,
) -> Result<(), AdminError> {
    validate_new_user(name, &password)?;
    let hash = hash_password(password).await?;
    store
        .create_first_admin(&hash_token(setup_token), name, &hash, clock.unix())
        .await?;
    record(
        store,
        clock,
        name,
        source,
        Action::Setup,
        &Reason::new("audit-setup"),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::testing;

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(validate_new_user("bob", "long enough!").is_ok());
        assert!(validate_new_user("printer@example.com", "long enough!").is_ok());
        assert!(matches!(
            validate_new_user("", "long enough!"),
            Err(Problem::NameInvalid)
        ));
        assert!(matches!(
            validate_new_user("a b", "long enough!"),
            Err(Problem::NameInvalid)
        ));
        assert!(matches!(
            validate_new_user(&"x".repeat(65), "long enough!"),
            Err(Problem::NameInvalid)
        ));
        assert!(matches!(
            validate_new_user("bob", "short"),
            Err(Problem::PasswordTooShort)
        ));
        assert!(matches!(parse_role("root"), Err(Problem::UnknownRole(r)) if r == "root"));
        assert_eq!(parse_role("network-admin").ok(), Some(Role::NetworkAdmin));
    }

    #[tokio::test]
    async fn only_administrators_manage_users() {
        let (_dir, store) = testing::store().await;
        for role in [Role::NetworkAdmin, Role::GeneralUser] {
            let admin = testing::admin(&store, role);
            let refused = admin
                .add_user("bob", "long enough!".into(), "administrator")
                .await;
            assert!(matches!(refused, Err(AdminError::Forbidden)), "{role:?}");
            assert!(matches!(
                admin.add_api_token("t", "general_user").await,
                Err(AdminError::Forbidden)
            ));
            assert!(matches!(
                admin.delete_user("bob").await,
                Err(AdminError::Forbidden)
            ));
        }
        assert!(store.list_users().await.expect("users").is_empty());
        assert!(store.audit_entries(10, 0).await.expect("audit").is_empty());
    }

    #[tokio::test]
    async fn adding_a_user_validates_and_audits() {
        let (_dir, store) = testing::store().await;
        let admin = testing::admin(&store, Role::Administrator);
        let bad_role = admin.add_user("bob", "long enough!".into(), "root").await;
        assert!(matches!(
            bad_role,
            Err(AdminError::Invalid(p)) if matches!(p[..], [Problem::UnknownRole(_)])
        ));
        let short = admin.add_user("bob", "short".into(), "general-user").await;
        assert!(matches!(
            short,
            Err(AdminError::Invalid(p)) if matches!(p[..], [Problem::PasswordTooShort])
        ));
        let role = admin
            .add_user("bob", "long enough!".into(), "general-user")
            .await
            .expect("added");
        assert_eq!(role, Role::GeneralUser);
        let twice = admin
            .add_user("bob", "long enough!".into(), "general-user")
            .await;
        assert!(matches!(twice, Err(AdminError::Store(_))));
        let entries = store.audit_entries(10, 0).await.expect("audit");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].action, "user_add");
        assert_eq!(entries[0].detail.to_string(), "bob (general_user)");
        assert_eq!(entries[0].actor, "tester");
    }
}
