//! Remote UI users, the first Administrator and API tokens.

use super::{Admin, AdminError, Problem, hash_password, record};
use crate::clock::Clock;
use crate::i18n::Reason;
use crate::roles::{Permission, Role};
use crate::secrets::{hash_token, random_token};
use crate::store::Store;
use crate::store::audit::Action;
use crate::store::users::{ApiToken, NewApiToken};

/// A role by its stored or CLI name.
pub fn parse_role(text: &str) -> Result<Role, Problem> {
    Role::parse(text).ok_or_else(|| Problem::UnknownRole(text.to_string()))
}

/// Checks a new user (or submitter) name and password.
pub fn validate_new_user(name: &str, password: &str) -> Result<(), Problem> {
    if !valid_name(name) {
        return Err(Problem::NameInvalid);
    }
    check_password(password)
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

    /// Deletes a user (never the last Administrator: the store refuses);
    /// their sessions end and their API tokens are revoked.
    pub async fn delete_user(&self, name: &str) -> Result<(), AdminError> {
        self.require(Permission::ManageUsers)?;
        self.store.delete_user(name, self.clock.unix()).await?;
        self.audit(
            Action::UserDelete,
            Reason::new("audit-user").arg("name", name),
        )
        .await;
        Ok(())
    }

    /// Gives a user another role (never leaving no Administrator). Their
    /// sessions and API tokens act with the new role from the next request.
    pub async fn set_user_role(&self, name: &str, role: &str) -> Result<Role, AdminError> {
        self.require(Permission::ManageUsers)?;
        let role = parse_role(role)?;
        let old = self.store.set_user_role(name, role).await?;
        self.audit(
            Action::UserRole,
            Reason::new("audit-user-role-change")
                .arg("name", name)
                .arg("old", old.as_str())
                .arg("role", role.as_str()),
        )
        .await;
        Ok(role)
    }

    /// An Administrator sets another user's password; every session of
    /// that user ends.
    pub async fn reset_password(&self, name: &str, password: String) -> Result<(), AdminError> {
        self.require(Permission::ManageUsers)?;
        check_password(&password)?;
        let hash = hash_password(password).await?;
        let ended = self.store.set_password(name, &hash, None).await?;
        self.audit(
            Action::UserPasswordReset,
            Reason::new("audit-password-reset")
                .arg("name", name)
                .arg("sessions", ended),
        )
        .await;
        Ok(())
    }

    /// A user changes their own password, proving the current one. Every
    /// other session of theirs ends; `keep` (the session asking) stays.
    /// Any role may: it is their own.
    pub async fn change_own_password(
        &self,
        user: &str,
        current: String,
        new: String,
        keep: Option<&str>,
    ) -> Result<(), AdminError> {
        let stored = self
            .store
            .user_by_name(user)
            .await?
            .ok_or_else(|| Problem::UnknownUser(user.to_string()))?;
        if !crate::passwords::verify(current, stored.password_hash).await {
            self.audit(
                Action::PasswordChange,
                Reason::new("audit-password-change-refused").arg("name", user),
            )
            .await;
            return Err(Problem::CurrentPasswordWrong.into());
        }
        check_password(&new)?;
        let hash = hash_password(new).await?;
        let ended = self.store.set_password(user, &hash, keep).await?;
        self.audit(
            Action::PasswordChange,
            Reason::new("audit-password-change")
                .arg("name", user)
                .arg("sessions", ended),
        )
        .await;
        Ok(())
    }

    /// Creates an API token; returns it with the token value, shown only
    /// once (the store keeps its SHA-256 hash). The token belongs to
    /// `t.user` (none: the only Administrator, as the command line acts
    /// for the Administrator); its role is at most that user's.
    pub async fn add_api_token(&self, t: &TokenRequest) -> Result<NewToken, AdminError> {
        self.require(Permission::ManageUsers)?;
        if !valid_name(&t.name) {
            return Err(Problem::TokenNameInvalid.into());
        }
        let owner = match &t.user {
            Some(name) => self
                .store
                .user_by_name(name)
                .await?
                .ok_or_else(|| Problem::UnknownUser(name.clone()))?,
            None => {
                let admins: Vec<_> = self
                    .store
                    .list_users()
                    .await?
                    .into_iter()
                    .filter(|u| u.role == Role::Administrator)
                    .collect();
                match <[_; 1]>::try_from(admins) {
                    Ok([only]) => only,
                    Err(_) => return Err(Problem::TokenOwnerMissing.into()),
                }
            }
        };
        let role = match t.role.as_deref().filter(|r| !r.trim().is_empty()) {
            Some(r) => parse_role(r)?,
            None => owner.role,
        };
        if !owner.role.covers(role) {
            return Err(Problem::TokenRoleAboveUser {
                role: role.as_str(),
                user_role: owner.role.as_str(),
            }
            .into());
        }
        let now = self.clock.unix();
        let expires_at = parse_expires_in(t.expires_in.as_deref().unwrap_or(""))?
            .map(|secs| now.saturating_add(secs));
        let token = format!("hky_{}", random_token(32));
        self.store
            .create_user_api_token(&NewApiToken {
                name: &t.name,
                role,
                token_hash: &hash_token(&token),
                user_id: owner.id,
                expires_at,
                now,
            })
            .await?;
        self.audit(
            Action::ApiTokenAdd,
            Reason::new("audit-api-token")
                .arg("name", &t.name)
                .arg("role", role.as_str())
                .arg("user", &owner.name)
                .arg(
                    "expires",
                    expires_at.map_or("-".to_string(), |at| {
                        crate::clock::from_unix(at).date().to_string()
                    }),
                ),
        )
        .await;
        Ok(NewToken {
            name: t.name.clone(),
            role,
            user: owner.name,
            expires_at,
            token,
        })
    }

    /// Every API token (never their values: the store has only hashes).
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, AdminError> {
        self.require(Permission::ManageUsers)?;
        Ok(self.store.list_api_tokens().await?)
    }

    /// Revokes an API token: requests with it are refused from now on.
    pub async fn revoke_api_token(&self, name: &str) -> Result<(), AdminError> {
        self.require(Permission::ManageUsers)?;
        self.store.revoke_api_token(name, self.clock.unix()).await?;
        self.audit(
            Action::ApiTokenRevoke,
            Reason::new("audit-user").arg("name", name),
        )
        .await;
        Ok(())
    }
}

/// What an administrator asks for when making an API token.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub name: String,
    /// None or empty: the user's role.
    pub role: Option<String>,
    /// The user it belongs to; None: the only Administrator.
    pub user: Option<String>,
    /// E.g. `90d`; None or empty: it does not expire.
    pub expires_in: Option<String>,
}

/// A token just made, with its value (shown once).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub user: String,
    pub expires_at: Option<i64>,
    pub token: String,
}

/// Longest expiry a token may be given: ten years.
const MAX_EXPIRY_DAYS: i64 = 3650;

/// `90d`, `12h`, `2w`, `30m` as seconds; empty or `never` for no expiry.
pub fn parse_expires_in(text: &str) -> Result<Option<i64>, Problem> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let bad = || Problem::ExpiresIn(text.chars().take(32).collect());
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit_secs = match unit.trim().to_ascii_lowercase().as_str() {
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(unit_secs).ok_or_else(bad)?;
    if n == 0 || secs > MAX_EXPIRY_DAYS * 86_400 {
        return Err(bad());
    }
    Ok(Some(secs))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

fn check_password(password: &str) -> Result<(), Problem> {
    if password.chars().count() < 10 {
        return Err(Problem::PasswordTooShort);
    }
    Ok(())
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
            let token = TokenRequest {
                name: "t".into(),
                ..TokenRequest::default()
            };
            assert!(matches!(
                admin.add_api_token(&token).await,
                Err(AdminError::Forbidden)
            ));
            assert!(matches!(
                admin.revoke_api_token("t").await,
                Err(AdminError::Forbidden)
            ));
            assert!(matches!(
                admin.api_tokens().await,
                Err(AdminError::Forbidden)
            ));
            assert!(matches!(
                admin.set_user_role("bob", "administrator").await,
                Err(AdminError::Forbidden)
            ));
            assert!(matches!(
                admin.reset_password("bob", "long enough!".into()).await,
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

#[cfg(test)]
mod token_tests {
    use super::*;
    use crate::admin::testing;
    use crate::store::users::TokenState;

    fn request(name: &str, role: Option<&str>, user: Option<&str>) -> TokenRequest {
        TokenRequest {
            name: name.into(),
            role: role.map(str::to_string),
            user: user.map(str::to_string),
            expires_in: None,
        }
    }

    #[test]
    fn expiry_text() {
        assert_eq!(parse_expires_in("").ok(), Some(None));
        assert_eq!(parse_expires_in("never").ok(), Some(None));
        assert_eq!(parse_expires_in("90d").ok(), Some(Some(90 * 86_400)));
        assert_eq!(parse_expires_in("12h").ok(), Some(Some(12 * 3600)));
        assert_eq!(parse_expires_in("2w").ok(), Some(Some(14 * 86_400)));
        assert_eq!(parse_expires_in(" 30m ").ok(), Some(Some(1800)));
        for bad in [
            "0d",
            "d",
            "90",
            "90y",
            "-1d",
            "3651d",
            "99999999999999999999d",
        ] {
            assert!(
                matches!(parse_expires_in(bad), Err(Problem::ExpiresIn(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_belongs_to_a_user_and_never_exceeds_their_role() {
        let (_dir, store) = testing::store().await;
        let admin = testing::admin(&store, Role::Administrator);
        // No Administrator yet: the owner must be named.
        assert!(testing::refused_for(
            admin.add_api_token(&request("t", None, None)).await,
            |p| matches!(p, Problem::TokenOwnerMissing)
        ));
        admin
            .add_user("root", "long enough!".into(), "administrator")
            .await
            .expect("root");
        admin
            .add_user("net", "long enough!".into(), "network-admin")
            .await
            .expect("net");
        // The only Administrator owns a token made without --user.
        let made = admin
            .add_api_token(&request("ci", None, None))
            .await
            .expect("token");
        assert_eq!(
            (made.user.as_str(), made.role),
            ("root", Role::Administrator)
        );
        assert!(made.token.starts_with("hky_"));
        assert!(testing::refused_for(
            admin
                .add_api_token(&request("up", Some("administrator"), Some("net")))
                .await,
            |p| matches!(p, Problem::TokenRoleAboveUser { .. })
        ));
        assert!(testing::refused_for(
            admin
                .add_api_token(&request("x", None, Some("ghost")))
                .await,
            |p| matches!(p, Problem::UnknownUser(_))
        ));
        assert!(testing::refused_for(
            admin.add_api_token(&request("a b", None, None)).await,
            |p| matches!(p, Problem::TokenNameInvalid)
        ));
        let net = admin
            .add_api_token(&request("net-token", None, Some("net")))
            .await
            .expect("net token");
        assert_eq!(net.role, Role::NetworkAdmin);
        // Only the hash is stored; a lookup by the value's hash finds it.
        let found = store
            .api_token(&hash_token(&net.token), 1)
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(found.effective_role(), Role::NetworkAdmin);
        // Demoting the user narrows the token.
        admin
            .set_user_role("net", "general-user")
            .await
            .expect("demoted");
        let found = store
            .api_token(&hash_token(&net.token), 2)
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!(found.effective_role(), Role::GeneralUser);
        assert_eq!(found.role, Role::NetworkAdmin);
        // Deleting the user revokes it.
        admin.delete_user("net").await.expect("deleted");
        let found = store
            .api_token(&hash_token(&net.token), 3)
            .await
            .expect("lookup")
            .expect("kept to say why");
        assert_eq!(found.state(3), TokenState::Revoked);
        // Revoking by name; the name may then be given again.
        admin.revoke_api_token("ci").await.expect("revoked");
        assert!(matches!(
            admin.revoke_api_token("nothing").await,
            Err(AdminError::Store(crate::store::StoreError::NotFound))
        ));
        let again = admin
            .add_api_token(&request("ci", Some("general_user"), None))
            .await
            .expect("name reused");
        assert_eq!(again.role, Role::GeneralUser);
        let codes: Vec<String> = store
            .audit_entries(50, 0)
            .await
            .expect("audit")
            .into_iter()
            .map(|e| e.action)
            .collect();
        for code in [
            "api_token_add",
            "api_token_revoke",
            "user_role",
            "user_delete",
        ] {
            assert!(codes.iter().any(|c| c == code), "{code}: {codes:?}");
        }
    }

    #[tokio::test]
    async fn roles_and_passwords_keep_an_administrator() {
        let (_dir, store) = testing::store().await;
        let admin = testing::admin(&store, Role::Administrator);
        admin
            .add_user("root", "long enough!".into(), "administrator")
            .await
            .expect("root");
        assert!(matches!(
            admin.set_user_role("root", "general-user").await,
            Err(AdminError::Store(crate::store::StoreError::Conflict(
                crate::store::Conflict::LastAdministrator
            )))
        ));
        admin
            .add_user("second", "long enough!".into(), "administrator")
            .await
            .expect("second");
        admin
            .set_user_role("root", "general-user")
            .await
            .expect("another Administrator remains");
        assert!(matches!(
            admin.set_user_role("ghost", "general-user").await,
            Err(AdminError::Store(crate::store::StoreError::NotFound))
        ));
        // Own password: the current one is required.
        assert!(testing::refused_for(
            admin
                .change_own_password("second", "wrong one!!".into(), "new password!".into(), None)
                .await,
            |p| matches!(p, Problem::CurrentPasswordWrong)
        ));
        assert!(testing::refused_for(
            admin
                .change_own_password("second", "long enough!".into(), "short".into(), None)
                .await,
            |p| matches!(p, Problem::PasswordTooShort)
        ));
        admin
            .change_own_password(
                "second",
                "long enough!".into(),
                "new password!".into(),
                None,
            )
            .await
            .expect("changed");
        let hash = store
            .user_by_name("second")
            .await
            .expect("user")
            .expect("exists")
            .password_hash;
        assert!(crate::passwords::verify("new password!".into(), hash).await);
    }
}
