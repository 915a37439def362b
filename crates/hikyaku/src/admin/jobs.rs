//! Send Job History: Retry now and Delete (the Administrator's).

use super::{Admin, AdminError, Live};
use crate::i18n::Reason;
use crate::queue::JobStore as _;
use crate::roles::Permission;
use crate::store::StoreError;
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

    /// Makes every deferred job due now (`hikyaku queue retry --all-deferred`);
    /// returns how many. A job that moved on meanwhile (claimed, delivered)
    /// is left as it is.
    pub async fn retry_deferred_jobs(&self, live: &Live<'_>) -> Result<u64, AdminError> {
        self.require(Permission::ManageJobs)?;
        let filter = crate::queue::JobFilter {
            state: Some(crate::queue::JobState::Deferred),
            ..Default::default()
        };
        // The ids first: each retry moves a job out of the filtered list.
        let mut ids = Vec::new();
        loop {
            let offset = i64::try_from(ids.len()).unwrap_or(i64::MAX);
            let page = self.store.jobs(&filter, 1000, offset).await?;
            let done = page.len() < 1000;
            ids.extend(page.into_iter().map(|j| j.id));
            if done {
                break;
            }
        }
        let mut retried = 0;
        for id in ids {
            match self.store.retry_job(&id, self.clock.unix()).await {
                Ok(()) => {
                    self.audit(Action::JobRetry, job(&id)).await;
                    retried += 1;
                }
                Err(StoreError::NotFound | StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if retried > 0 {
            (live.wake)();
        }
        Ok(retried)
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
