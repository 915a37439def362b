//! Who may hand hikyaku mail over SMTP: submitters (name + Argon2id password)
//! and source-address allowlist entries (CIDR), each bound to an account or
//! to the default account.

use sqlx::Row;

use super::{Conflict, Result, Store, StoreError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Submitter {
    pub id: i64,
    pub name: String,
    #[serde(skip)]
    pub password_hash: String,
    pub account_id: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AllowEntry {
    pub id: i64,
    pub cidr: String,
    pub account_id: Option<i64>,
    pub created_at: i64,
}

fn unique(e: sqlx::Error, what: Conflict) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        other => other.into(),
    }
}

impl Store {
    pub async fn add_submitter(
        &self,
        name: &str,
        password_hash: &str,
        account_id: Option<i64>,
        now: i64,
    ) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            sqlx::query(q("INSERT INTO submitters (name, password_hash, account_id, created_at) VALUES (?1, ?2, ?3, ?4)"))
            .bind(name)
            .bind(password_hash)
            .bind(account_id)
            .bind(now)
            .execute(p)
            .await
            .map_err(|e| unique(e, Conflict::SubmitterExists(name.to_string())))?;
            Ok(())
        })
    }

    pub async fn submitters(&self) -> Result<Vec<Submitter>> {
        crate::on_pool!(self, |p, q| {
            let rows = sqlx::query(q("SELECT * FROM submitters ORDER BY name"))
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Submitter {
                        id: r.try_get("id")?,
                        name: r.try_get("name")?,
                        password_hash: r.try_get("password_hash")?,
                        account_id: r.try_get("account_id")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .collect()
        })
    }

    pub async fn submitter(&self, name: &str) -> Result<Option<Submitter>> {
        Ok(self
            .submitters()
            .await?
            .into_iter()
            .find(|s| s.name == name))
    }

    pub async fn delete_submitter(&self, name: &str) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            let n = sqlx::query(q("DELETE FROM submitters WHERE name = ?1"))
                .bind(name)
                .execute(p)
                .await?
                .rows_affected();
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    pub async fn add_allow_entry(
        &self,
        cidr: &str,
        account_id: Option<i64>,
        now: i64,
    ) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            sqlx::query(q(
                "INSERT INTO allowlist (cidr, account_id, created_at) VALUES (?1, ?2, ?3)",
            ))
            .bind(cidr)
            .bind(account_id)
            .bind(now)
            .execute(p)
            .await
            .map_err(|e| unique(e, Conflict::AllowEntryExists(cidr.to_string())))?;
            Ok(())
        })
    }

    pub async fn allowlist(&self) -> Result<Vec<AllowEntry>> {
        crate::on_pool!(self, |p, q| {
            let rows = sqlx::query(q("SELECT * FROM allowlist ORDER BY cidr"))
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(AllowEntry {
                        id: r.try_get("id")?,
                        cidr: r.try_get("cidr")?,
                        account_id: r.try_get("account_id")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .collect()
        })
    }

    pub async fn delete_allow_entry(&self, cidr: &str) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            let n = sqlx::query(q("DELETE FROM allowlist WHERE cidr = ?1"))
                .bind(cidr)
                .execute(p)
                .await?
                .rows_affected();
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
    }
}
