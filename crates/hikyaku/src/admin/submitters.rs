//! SMTP submitters (name and password) and the address allowlist, each
//! bound to an account or to the default one. Adding or removing one that
//! sends through an account takes the right to manage that account, so a
//! NetworkAdmin cannot send as the Google mailbox.

use super::users::validate_new_user;
use super::{Admin, AdminError, Problem, hash_password};
use crate::i18n::Reason;
use crate::intake::cidr::Cidr;
use crate::provider::Provider;
use crate::roles::Permission;
use crate::store::audit::Action;

impl Admin<'_> {
    /// The account a binding names: `""` the default account; else the
    /// account's id or name, or a provider for its default delegated account.
    pub async fn account_named(&self, text: &str) -> Result<Option<i64>, AdminError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(self.find_account(text).await?.id))
    }

    /// Refuses unless the actor may make something send through `account`.
    /// A binding to no account (`None`) goes out through the default
    /// account, or the only Active one when none is the default; both can
    /// change later without the binding changing, so it takes the right to
    /// manage every account.
    async fn require_sending(&self, account: Option<i64>) -> Result<(), AdminError> {
        let providers: Vec<Provider> = match account {
            Some(id) => vec![self.store.account(id).await?.provider],
            None => self
                .store
                .accounts()
                .await?
                .into_iter()
                .map(|a| a.provider)
                .collect(),
        };
        for p in providers {
            self.require(Permission::manage(p))?;
        }
        Ok(())
    }

    /// Adds an SMTP submitter sending through the account named `provider`.
    pub async fn add_submitter(
        &self,
        name: &str,
        password: String,
        provider: &str,
    ) -> Result<(), AdminError> {
        self.require(Permission::ManageEmail)?;
        validate_new_user(name, &password)?;
        let account = self.account_named(provider).await?;
        self.require_sending(account).await?;
        let hash = hash_password(password).await?;
        self.store
            .add_submitter(name, &hash, account, self.clock.unix())
            .await?;
        self.audit(Action::SubmitterAdd, submitter(name)).await;
        Ok(())
    }

    /// Removes a submitter: the same right as to add it.
    pub async fn delete_submitter(&self, name: &str) -> Result<(), AdminError> {
        self.require(Permission::ManageEmail)?;
        if let Some(s) = self.store.submitter(name).await? {
            self.require_sending(s.account_id).await?;
        }
        self.store.delete_submitter(name).await?;
        self.audit(Action::SubmitterDelete, submitter(name)).await;
        Ok(())
    }

    /// Adds an allowlist entry; returns it as stored (normalized CIDR).
    pub async fn add_allow_entry(&self, cidr: &str, provider: &str) -> Result<String, AdminError> {
        self.require(Permission::ManageEmail)?;
        let cidr = Cidr::parse(cidr).map_err(Problem::Cidr)?.to_string();
        let account = self.account_named(provider).await?;
        self.require_sending(account).await?;
        self.store
            .add_allow_entry(&cidr, account, self.clock.unix())
            .await?;
        self.audit(Action::AllowlistAdd, allowlist(&cidr)).await;
        Ok(cidr)
    }

    /// Removes an allowlist entry (given as the CIDR text it is stored
    /// under): the same right as to add it.
    pub async fn delete_allow_entry(&self, cidr: &str) -> Result<(), AdminError> {
        self.require(Permission::ManageEmail)?;
        let entry = self
            .store
            .allowlist()
            .await?
            .into_iter()
            .find(|e| e.cidr == cidr);
        if let Some(e) = entry {
            self.require_sending(e.account_id).await?;
        }
        self.store.delete_allow_entry(cidr).await?;
        self.audit(Action::AllowlistDelete, allowlist(cidr)).await;
        Ok(())
    }
}

/// The detail of a submitter entry: its name.
fn submitter(name: &str) -> Reason {
    Reason::new("audit-submitter").arg("name", name)
}

/// The detail of an allowlist entry: the address range.
fn allowlist(cidr: &str) -> Reason {
    Reason::new("audit-allowlist").arg("cidr", cidr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::testing;
    use crate::roles::Role;

    #[tokio::test]
    async fn what_sends_as_google_is_the_administrators() {
        let (_dir, store) = testing::store().await;
        let network = testing::admin(&store, Role::NetworkAdmin);
        assert!(matches!(
            network
                .add_submitter("printer", "long enough!".into(), "google")
                .await,
            Err(AdminError::Forbidden)
        ));
        assert!(matches!(
            network.add_allow_entry("10.0.0.0/8", "google").await,
            Err(AdminError::Forbidden)
        ));
        network
            .add_allow_entry("10.0.0.0/8", "microsoft")
            .await
            .expect("NetworkAdmin manages Microsoft");
        let admin = testing::admin(&store, Role::Administrator);
        admin
            .add_submitter("scanner", "long enough!".into(), "google")
            .await
            .expect("added");
        assert!(matches!(
            network.delete_submitter("scanner").await,
            Err(AdminError::Forbidden)
        ));
        let user = testing::admin(&store, Role::GeneralUser);
        assert!(matches!(
            user.delete_allow_entry("10.0.0.0/8").await,
            Err(AdminError::Forbidden)
        ));
    }

    /// A binding to no account may end up sending through Google (the
    /// default may be cleared, Google may be the only Active account), so
    /// it is the Administrator's, whatever the default is now.
    #[tokio::test]
    async fn a_binding_to_no_account_is_the_administrators() {
        let (_dir, store) = testing::store().await;
        let network = testing::admin(&store, Role::NetworkAdmin);
        assert!(matches!(
            network
                .add_submitter("printer", "long enough!".into(), "")
                .await,
            Err(AdminError::Forbidden)
        ));
        assert!(matches!(
            network.add_allow_entry("192.0.2.0/28", "").await,
            Err(AdminError::Forbidden)
        ));
        let admin = testing::admin(&store, Role::Administrator);
        admin
            .add_allow_entry("192.0.2.0/28", "")
            .await
            .expect("the Administrator may");
        assert!(matches!(
            network.delete_allow_entry("192.0.2.0/28").await,
            Err(AdminError::Forbidden)
        ));
        admin
            .delete_allow_entry("192.0.2.0/28")
            .await
            .expect("removed");
    }

    #[tokio::test]
    async fn entries_are_validated() {
        let (_dir, store) = testing::store().await;
        let admin = testing::admin(&store, Role::Administrator);
        assert!(matches!(
            admin.add_allow_entry("0.0.0.0/0", "").await,
            Err(AdminError::Invalid(p)) if matches!(p[..], [Problem::Cidr(_)])
        ));
        assert!(matches!(
            admin.add_allow_entry("10.0.0.1/32", "yahoo").await,
            Err(AdminError::Invalid(p)) if matches!(p[..], [Problem::UnknownAccount(_)])
        ));
        assert!(matches!(
            admin.add_submitter("a b", "long enough!".into(), "").await,
            Err(AdminError::Invalid(p)) if matches!(p[..], [Problem::NameInvalid])
        ));
        assert_eq!(
            admin
                .add_allow_entry("192.168.1.7/24", "")
                .await
                .expect("added"),
            "192.168.1.0/24"
        );
    }
}
