//! CA certificates the administrator trusts in addition to the system roots.

use sqlx::Row;

use super::{Conflict, Result, Store, StoreError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredCa {
    pub id: i64,
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    #[serde(skip)]
    pub der: Vec<u8>,
    pub created_at: i64,
    /// Also a trust anchor of the Google account (added by an Administrator).
    pub for_google: bool,
}

/// A certificate to add.
#[derive(Debug, Clone)]
pub struct NewCa {
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
    pub for_google: bool,
}

impl Store {
    pub async fn add_ca_certificates(&self, certs: &[NewCa], now: i64) -> Result<()> {
        crate::on_write!(self, |tx, q| {
            for c in certs {
                let r = sqlx::query(q("INSERT INTO ca_certificates (fingerprint, subject, issuer, not_before, not_after, der, created_at, for_google) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"))
                .bind(&c.fingerprint)
                .bind(&c.subject)
                .bind(&c.issuer)
                .bind(c.not_before)
                .bind(c.not_after)
                .bind(&c.der)
                .bind(now)
                .bind(c.for_google)
                .execute(&mut *tx)
                .await;
                match r {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                        return Err(StoreError::Conflict(Conflict::CaExists(c.subject.clone())));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn ca_certificates(&self) -> Result<Vec<StoredCa>> {
        crate::on_pool!(self, |p, q| {
            let rows = sqlx::query(q("SELECT * FROM ca_certificates ORDER BY id"))
                .fetch_all(p)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(StoredCa {
                        id: r.try_get("id")?,
                        fingerprint: r.try_get("fingerprint")?,
                        subject: r.try_get("subject")?,
                        issuer: r.try_get("issuer")?,
                        not_before: r.try_get("not_before")?,
                        not_after: r.try_get("not_after")?,
                        der: r.try_get("der")?,
                        created_at: r.try_get("created_at")?,
                        for_google: r.try_get("for_google")?,
                    })
                })
                .collect()
        })
    }

    pub async fn delete_ca_certificate(&self, id: i64) -> Result<StoredCa> {
        crate::on_pool!(self, |p, q| {
            let all = self.ca_certificates().await?;
            let found = all
                .into_iter()
                .find(|c| c.id == id)
                .ok_or(StoreError::NotFound)?;
            sqlx::query(q("DELETE FROM ca_certificates WHERE id = ?1"))
                .bind(id)
                .execute(p)
                .await?;
            Ok(found)
        })
    }
}
