//! Send Job History: Retry now and Delete (the Administrator's).

use super::{Admin, AdminError, Live};
use crate::i18n::Reason;
use crate::queue::JobStore as _;
use crate::roles::Permission;
use crate::store::audit::Action;

impl Admin<'_> {
    /// Makes a deferred or failed job due now and wakes the delivery.
    pub async fn retry_job(&self, live: &Live<'_>, id: &str) -> Result<(), AdminError> {
        self.require(Permission::ManageJobs)?;
        self.store.job(id).await?;
        self.store.retry_job(id, self.clock.unix()).await?;
        (live.wake)();
        self.audit(Action::JobRetry, job(id)).await;
        Ok(())
    }

    /// Deletes a job that is not being delivered.
    pub async fn delete_job(&self, id: &str) -> Result<(), AdminError> {
        self.require(Permission::ManageJobs)?;
        self.store.job(id).await?;
        self.store.delete_job(id).await?;
        self.audit(Action::JobDelete, job(id)).await;
        Ok(())
    }
}

/// The detail of a job entry: its id.
fn job(id: &str) -> Reason {
    Reason::new("audit-job").arg("job", id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::testing;
    use crate::roles::Role;

    #[tokio::test]
    async fn only_administrators_delete_jobs() {
        let (_dir, store) = testing::store().await;
        for role in [Role::NetworkAdmin, Role::GeneralUser] {
            assert!(matches!(
                testing::admin(&store, role).delete_job("x").await,
                Err(AdminError::Forbidden)
            ));
        }
        assert!(matches!(
            testing::admin(&store, Role::Administrator)
                .delete_job("x")
                .await,
            Err(AdminError::Store(crate::store::StoreError::NotFound))
        ));
    }
}
