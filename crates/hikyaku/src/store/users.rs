//! Remote UI users, their sessions, API tokens and the first-start setup tokens.
//! Session ids and tokens are stored only as SHA-256 hashes.

use super::sql::DbRow as _;

use super::{Conflict, Result, Store, StoreError};
use crate::roles::Role;

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
    pub last_seen_at: i64,
}

/// An API token as the store holds it: never the token itself, only its
/// hash (which this type does not carry either).
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// The role it was given when it was made.
    pub role: Role,
    /// The user it belongs to and that user's current role. `None` for a
    /// token made before tokens belonged to users when no Administrator
    /// existed, or whose user was deleted (it is revoked then).
    pub user: Option<String>,
    pub user_role: Option<Role>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Whether an API token may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }
}

impl ApiToken {
    /// What the token may do now: its own role, narrowed to its user's
    /// current role (demoting the user narrows the token).
    pub fn effective_role(&self) -> Role {
        match self.user_role {
            Some(user) => self.role.at_most(user),
            None => self.role,
        }
    }

    pub fn state(&self, now: i64) -> TokenState {
        if self.revoked_at.is_some() {
            TokenState::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }
}

/// A new API token: its name, role, owner, expiry and the hash of its value.
#[derive(Debug, Clone)]
pub struct NewApiToken<'a> {
    pub name: &'a str,
    pub role: Role,
    pub token_hash: &'a str,
    pub user_id: i64,
    pub expires_at: Option<i64>,
    pub now: i64,
}

/// A query of API tokens with their users, ending in `$tail` (a literal:
/// the SQL stays static).
macro_rules! token_query {
    ($tail:literal) => {
        concat!(
            "SELECT t.id, t.name, t.role, t.created_at, t.last_used_at, t.expires_at, ",
            "t.revoked_at, u.name AS user_name, u.role AS user_role ",
            "FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id ",
            $tail
        )
    };
}

fn parse_role(role: &str) -> Result<Role> {
    Role::parse(role).ok_or_else(|| {
        StoreError::Conflict(Conflict::Corrupt(format!("unknown role {role} in store")))
    })
}

fn token_from_row(row: &impl super::sql::DbRow) -> Result<ApiToken> {
    let role: String = row.col("role")?;
    let user_role: Option<String> = row.col("user_role")?;
    Ok(ApiToken {
        id: row.col("id")?,
        name: row.col("name")?,
        role: parse_role(&role)?,
        user: row.col("user_name")?,
        user_role: user_role.as_deref().map(parse_role).transpose()?,
        created_at: row.col("created_at")?,
        last_used_at: row.col("last_used_at")?,
        expires_at: row.col("expires_at")?,
        revoked_at: row.col("revoked_at")?,
    })
}

/// What became of a setup token that was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupTokenState {
    Valid,
    Expired,
    Used,
    Unknown,
}

fn user_from_row(row: &impl super::sql::DbRow) -> Result<User> {
    let role: String = row.col("role")?;
    Ok(User {
        id: row.col("id")?,
        name: row.col("name")?,
        role: parse_role(&role)?,
        password_hash: row.col("password_hash")?,
        created_at: row.col("created_at")?,
    })
}

/// Refuses a change that would leave no Administrator (the caller is about
/// to remove one).
/// `admins`: the count [`ADMINS`] gives, read in the caller's transaction.
fn last_administrator_check(admins: i64) -> Result<()> {
    if admins <= 1 {
        return Err(StoreError::Conflict(Conflict::LastAdministrator));
    }
    Ok(())
}

/// How many Administrators there are.
const ADMINS: &str = "SELECT COUNT(*) FROM users WHERE role = 'administrator'";

fn token_inserted<T>(result: std::result::Result<T, sqlx::Error>, name: &str) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(StoreError::Conflict(
            Conflict::ApiTokenExists(name.to_string()),
        )),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    pub async fn count_users(&self) -> Result<i64> {
        crate::on_pool!(self, |p, q| {
            Ok(sqlx::query_scalar(q("SELECT COUNT(*) FROM users"))
                .fetch_one(p)
                .await?)
        })
    }

    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        now: i64,
    ) -> Result<i64> {
        crate::on_pool!(self, |p, q| {
            let result: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(q("INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING id"))
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now)
        .fetch_one(p)
        .await;
            match result {
                Ok(id) => Ok(id),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    Err(StoreError::Conflict(Conflict::UserExists(name.to_string())))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Creates the first Administrator and consumes the setup token in one
    /// transaction, so that two racing setup forms cannot both succeed.
    pub async fn create_first_admin(
        &self,
        token_hash: &str,
        name: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<i64> {
        crate::on_write!(self, |tx, q| {
            let users: i64 = sqlx::query_scalar(q("SELECT COUNT(*) FROM users"))
                .fetch_one(&mut *tx)
                .await?;
            if users > 0 {
                return Err(StoreError::Conflict(Conflict::SetupComplete));
            }
            let consumed = sqlx::query(q("UPDATE setup_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2"))
            .bind(token_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if consumed.rows_affected() != 1 {
                return Err(StoreError::Conflict(Conflict::SetupLinkInvalid));
            }
            let id: i64 = sqlx::query_scalar(q("INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, 'administrator', ?2, ?3) RETURNING id"))
            .bind(name)
            .bind(password_hash)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        crate::on_pool!(self, |p, q| {
            let row = sqlx::query(q("SELECT * FROM users WHERE name = ?1"))
                .bind(name)
                .fetch_optional(p)
                .await?;
            row.as_ref().map(user_from_row).transpose()
        })
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        crate::on_pool!(self, |p, q| {
            let rows = sqlx::query(q("SELECT * FROM users ORDER BY name"))
                .fetch_all(p)
                .await?;
            rows.iter().map(user_from_row).collect()
        })
    }

    /// Deletes a user and, through the foreign key, their sessions; their
    /// API tokens are revoked. Refuses to delete the last Administrator.
    pub async fn delete_user(&self, name: &str, now: i64) -> Result<()> {
        crate::on_write!(self, |tx, q| {
            let row = sqlx::query(q("SELECT id, role FROM users WHERE name = ?1"))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Err(StoreError::NotFound);
            };
            let id: i64 = row.col("id")?;
            let role: String = row.col("role")?;
            if role == Role::Administrator.as_str() {
                last_administrator_check(sqlx::query_scalar(q(ADMINS)).fetch_one(&mut *tx).await?)?;
            }
            sqlx::query(q(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
            ))
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(q("DELETE FROM users WHERE id = ?1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Gives a user another role; returns the role they had. Refuses to
    /// leave no Administrator.
    pub async fn set_user_role(&self, name: &str, role: Role) -> Result<Role> {
        crate::on_write!(self, |tx, q| {
            let old: Option<String> =
                sqlx::query_scalar(q("SELECT role FROM users WHERE name = ?1"))
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            let old = parse_role(&old.ok_or(StoreError::NotFound)?)?;
            if old == Role::Administrator && role != Role::Administrator {
                last_administrator_check(sqlx::query_scalar(q(ADMINS)).fetch_one(&mut *tx).await?)?;
            }
            sqlx::query(q("UPDATE users SET role = ?2 WHERE name = ?1"))
                .bind(name)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(old)
        })
    }

    /// Stores a user's new password hash and ends their sessions, except
    /// `keep` (the session that changed its own password). Returns how many
    /// sessions ended.
    pub async fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        keep: Option<&str>,
    ) -> Result<u64> {
        crate::on_write!(self, |tx, q| {
            let id: Option<i64> = sqlx::query_scalar(q("SELECT id FROM users WHERE name = ?1"))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let id = id.ok_or(StoreError::NotFound)?;
            sqlx::query(q("UPDATE users SET password_hash = ?2 WHERE id = ?1"))
                .bind(id)
                .bind(password_hash)
                .execute(&mut *tx)
                .await?;
            let ended = sqlx::query(q(
                "DELETE FROM sessions WHERE user_id = ?1 AND id_hash IS NOT ?2",
            ))
            .bind(id)
            .bind(keep)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(ended)
        })
    }

    pub async fn create_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf_token: &str,
        now: i64,
        source: &str,
    ) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            sqlx::query(q("INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen_at, source) VALUES (?1, ?2, ?3, ?4, ?4, ?5)"))
            .bind(id_hash)
            .bind(user_id)
            .bind(csrf_token)
            .bind(now)
            .bind(source)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Loads a session that has been used within `idle_secs`, and marks it
    /// used now; an idle one is deleted and reported as absent.
    pub async fn touch_session(
        &self,
        id_hash: &str,
        now: i64,
        idle_secs: i64,
    ) -> Result<Option<Session>> {
        crate::on_pool!(self, |p, q| {
            let row = sqlx::query(q("SELECT s.csrf_token, s.last_seen_at, u.* FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?1"))
        .bind(id_hash)
        .fetch_optional(p)
        .await?;
            let Some(row) = row else { return Ok(None) };
            let last_seen_at: i64 = row.col("last_seen_at")?;
            if now - last_seen_at > idle_secs {
                self.delete_session(id_hash).await?;
                return Ok(None);
            }
            // Writing on every request would serialise all page views on the
            // SQLite writer; a resolution of 10 s is plenty for an idle timeout.
            if now - last_seen_at >= 10 {
                sqlx::query(q(
                    "UPDATE sessions SET last_seen_at = ?2 WHERE id_hash = ?1",
                ))
                .bind(id_hash)
                .bind(now)
                .execute(p)
                .await?;
            }
            Ok(Some(Session {
                user: user_from_row(&row)?,
                csrf_token: row.col("csrf_token")?,
                last_seen_at: now,
            }))
        })
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            sqlx::query(q("DELETE FROM sessions WHERE id_hash = ?1"))
                .bind(id_hash)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// Deletes every session unused for more than `idle_secs` (the rule
    /// [`Store::touch_session`] applies to one), returning how many. Sessions
    /// nobody comes back to would otherwise stay in the table for ever.
    pub async fn delete_idle_sessions(&self, now: i64, idle_secs: i64) -> Result<u64> {
        crate::on_pool!(self, |p, q| {
            Ok(
                sqlx::query(q("DELETE FROM sessions WHERE last_seen_at < ?1 - ?2"))
                    .bind(now)
                    .bind(idle_secs)
                    .execute(p)
                    .await?
                    .rows_affected(),
            )
        })
    }

    /// Stores a token that belongs to no user (as earlier versions made
    /// them): it keeps the role it was given.
    pub async fn create_api_token(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
        now: i64,
    ) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            let result = sqlx::query(q("INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)"))
        .bind(name)
        .bind(role.as_str())
        .bind(token_hash)
        .bind(now)
        .execute(p)
        .await;
            token_inserted(result, name)
        })
    }

    /// Stores a token of a user. The name of a revoked or expired token may
    /// be given again: that row goes.
    pub async fn create_user_api_token(&self, t: &NewApiToken<'_>) -> Result<()> {
        crate::on_write!(self, |tx, q| {
            sqlx::query(q("DELETE FROM api_tokens WHERE name = ?1 AND (revoked_at IS NOT NULL OR expires_at <= ?2)"))
        .bind(t.name)
        .bind(t.now)
        .execute(&mut *tx)
        .await?;
            let result = sqlx::query(q(
                "INSERT INTO api_tokens (name, role, token_hash, created_at, user_id, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            ))
            .bind(t.name)
            .bind(t.role.as_str())
            .bind(t.token_hash)
            .bind(t.now)
            .bind(t.user_id)
            .bind(t.expires_at)
            .execute(&mut *tx)
            .await;
            token_inserted(result, t.name)?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The token with this hash, whatever its state; a usable one is marked
    /// used now.
    pub async fn api_token(&self, token_hash: &str, now: i64) -> Result<Option<ApiToken>> {
        crate::on_pool!(self, |p, q| {
            let row = sqlx::query(q(token_query!("WHERE t.token_hash = ?1")))
                .bind(token_hash)
                .fetch_optional(p)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let mut token = token_from_row(&row)?;
            // As with sessions: a resolution of 10 s spares the single writer.
            let stale = token.last_used_at.is_none_or(|at| now - at >= 10);
            if token.state(now) == TokenState::Active && stale {
                sqlx::query(q("UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1"))
                    .bind(token.id)
                    .bind(now)
                    .execute(p)
                    .await?;
                token.last_used_at = Some(now);
            }
            Ok(Some(token))
        })
    }

    /// Every API token, by name.
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiToken>> {
        crate::on_pool!(self, |p, q| {
            let rows = sqlx::query(q(token_query!("ORDER BY t.name")))
                .fetch_all(p)
                .await?;
            rows.iter().map(token_from_row).collect()
        })
    }

    /// Revokes the token named `name` (already revoked: nothing changes).
    pub async fn revoke_api_token(&self, name: &str, now: i64) -> Result<()> {
        crate::on_write!(self, |tx, q| {
            let found: Option<Option<i64>> =
                sqlx::query_scalar(q("SELECT revoked_at FROM api_tokens WHERE name = ?1"))
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            match found {
                None => return Err(StoreError::NotFound),
                Some(Some(_)) => return Ok(()),
                Some(None) => {}
            }
            sqlx::query(q("UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1"))
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn create_setup_token(&self, token_hash: &str, expires_at: i64) -> Result<()> {
        crate::on_pool!(self, |p, q| {
            sqlx::query(q(
                "INSERT INTO setup_tokens (token_hash, expires_at) VALUES (?1, ?2)",
            ))
            .bind(token_hash)
            .bind(expires_at)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    pub async fn setup_token_state(&self, token_hash: &str, now: i64) -> Result<SetupTokenState> {
        crate::on_pool!(self, |p, q| {
            let row = sqlx::query(q(
                "SELECT expires_at, used_at FROM setup_tokens WHERE token_hash = ?1",
            ))
            .bind(token_hash)
            .fetch_optional(p)
            .await?;
            let Some(row) = row else {
                return Ok(SetupTokenState::Unknown);
            };
            let used: Option<i64> = row.col("used_at")?;
            let expires_at: i64 = row.col("expires_at")?;
            Ok(if used.is_some() {
                SetupTokenState::Used
            } else if expires_at <= now {
                SetupTokenState::Expired
            } else {
                SetupTokenState::Valid
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use crate::roles::Role;
    use crate::store::Store;

    /// A database of a version before tokens had users: its tokens belong
    /// to the first Administrator after the upgrade, and keep working.
    #[tokio::test]
    async fn tokens_of_an_earlier_version_belong_to_the_first_administrator() {
        use std::str::FromStr;
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(dir.path().join(crate::store::DB_FILE))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let mut before = sqlx::migrate!("migrations/sqlite");
        let older: Vec<_> = before
            .migrations
            .iter()
            .filter(|m| m.version < 7)
            .cloned()
            .collect();
        before.migrations = std::borrow::Cow::Owned(older);
        before.run(&pool).await.unwrap();
        for (name, role) in [
            ("ops", "network_admin"),
            ("root", "administrator"),
            ("second", "administrator"),
        ] {
            sqlx::query(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, 'h', 0)",
            )
            .bind(name)
            .bind(role)
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query("INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ('old', 'administrator', 'hash-old', 0)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        let store = Store::open(dir.path()).await.unwrap();
        let token = store.api_token("hash-old", 100).await.unwrap().unwrap();
        assert_eq!(token.user.as_deref(), Some("root"));
        assert_eq!(token.effective_role(), Role::Administrator);
        assert_eq!(token.state(100), super::TokenState::Active);
        assert_eq!(token.last_used_at, Some(100));
        store.close().await;
    }

    #[tokio::test]
    async fn idle_sessions_are_purged_and_used_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let now = 1_000_000;
        let idle = 15 * 60;
        let user = store
            .create_user("alice", Role::Administrator, "hash", now)
            .await
            .unwrap();
        for (id, last_seen) in [
            ("fresh", now - 10),
            ("at-limit", now - idle),
            ("idle", now - idle - 1),
            ("long-gone", now - 30 * 24 * 3600),
        ] {
            store
                .create_session(id, user, "csrf", last_seen, "127.0.0.1")
                .await
                .unwrap();
        }
        assert_eq!(store.delete_idle_sessions(now, idle).await.unwrap(), 2);
        // What is left is exactly what touch_session still accepts (a
        // limit that large only reads, it expires nothing).
        for (id, kept) in [
            ("fresh", true),
            ("at-limit", true),
            ("idle", false),
            ("long-gone", false),
        ] {
            let found = store.touch_session(id, now, i64::MAX).await.unwrap();
            assert_eq!(found.is_some(), kept, "{id}");
        }
        assert_eq!(store.delete_idle_sessions(now, idle).await.unwrap(), 0);
        store.close().await;
    }
}
