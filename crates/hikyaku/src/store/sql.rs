//! One operation, two engines. Store operations are written once, with
//! SQLite's SQL (`?N` placeholders); [`on_pool!`](crate::on_pool) and
//! [`on_write!`](crate::on_write) run the body once per engine, with the
//! engine's own connection and `q`, which gives the statement in that
//! engine's dialect: unchanged for SQLite (its path stays exactly as it
//! was), translated once and kept for PostgreSQL (`$N` placeholders, the
//! reserved word `authorization` quoted, `LIKE` as `ILIKE` because SQLite's
//! is case-insensitive). An operation whose SQL differs in more than that
//! matches on [`Engine`](super::Engine) itself.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use sqlx::{Decode, Postgres, Sqlite, Type};

/// The statement for SQLite: as written.
pub(crate) fn lite(sql: &'static str) -> &'static str {
    sql
}

/// The statement for PostgreSQL, translated at first use. The statements
/// are the program's own constants, so the cache is bounded.
pub(crate) fn pg(sql: &'static str) -> &'static str {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static str>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let mut cache = match cache.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(done) = cache.get(sql) {
        return done;
    }
    let done: &'static str = Box::leak(translate(sql).into_boxed_str());
    cache.insert(sql, done);
    done
}

/// SQLite's dialect to PostgreSQL's, outside string literals.
fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.char_indices().peekable();
    let mut in_string = false;
    while let Some((i, c)) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\'' {
                in_string = false;
            }
            continue;
        }
        match c {
            '\'' => {
                in_string = true;
                out.push(c);
            }
            '?' => {
                out.push('$');
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = &sql[i..end];
                let before = sql[..i].chars().next_back();
                // A qualified name (`t.authorization`) or a bare one.
                if word.eq_ignore_ascii_case("authorization") && before != Some('"') {
                    out.push_str("\"authorization\"");
                } else if word.eq_ignore_ascii_case("LIKE") {
                    out.push_str("ILIKE");
                } else {
                    out.push_str(word);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// A column type both engines read.
pub(crate) trait Col:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}
impl<T> Col for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A result row of either engine, read by column name.
pub(crate) trait DbRow {
    fn col<T: Col>(&self, name: &str) -> sqlx::Result<T>;
}

impl DbRow for sqlx::sqlite::SqliteRow {
    fn col<T: Col>(&self, name: &str) -> sqlx::Result<T> {
        sqlx::Row::try_get(self, name)
    }
}

impl DbRow for sqlx::postgres::PgRow {
    fn col<T: Col>(&self, name: &str) -> sqlx::Result<T> {
        sqlx::Row::try_get(self, name)
    }
}

/// Runs `$body` on the store's engine with `$pool` its pool and `$q` its
/// dialect (see the module's text).
#[macro_export]
#[doc(hidden)]
macro_rules! on_pool {
    ($store:expr, |$pool:ident, $q:ident| $body:expr) => {
        $crate::on_pool!($store, |$pool, $q, _is_pg| $body)
    };
    ($store:expr, |$pool:ident, $q:ident, $is_pg:ident| $body:expr) => {
        match $store.engine() {
            $crate::store::Engine::Sqlite(engine) => {
                let $pool = engine.pool();
                let $q = $crate::store::sql::lite;
                let $is_pg = false;
                $body
            }
            $crate::store::Engine::Postgres(engine) => {
                let $pool = engine.pool();
                let $q = $crate::store::sql::pg;
                let $is_pg = true;
                $body
            }
        }
    };
}

/// Runs `$body` in a write transaction `$tx` of the store's engine (SQLite:
/// `BEGIN IMMEDIATE` under the write lock), with `$q` its dialect. The body
/// commits; dropped, the transaction rolls back.
#[macro_export]
#[doc(hidden)]
macro_rules! on_write {
    ($store:expr, |$tx:ident, $q:ident| $body:expr) => {
        $crate::on_write!($store, |$tx, $q, _is_pg| $body)
    };
    ($store:expr, |$tx:ident, $q:ident, $is_pg:ident| $body:expr) => {
        match $store.engine() {
            $crate::store::Engine::Sqlite(engine) => {
                #[allow(unused_mut)]
                let mut $tx = engine.write().await?;
                let $q = $crate::store::sql::lite;
                let $is_pg = false;
                $body
            }
            $crate::store::Engine::Postgres(engine) => {
                #[allow(unused_mut)]
                let mut $tx = engine.pool().begin().await?;
                let $q = $crate::store::sql::pg;
                let $is_pg = true;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn placeholders_reserved_words_and_like_become_postgresql() {
        assert_eq!(
            translate(
                "UPDATE accounts SET authorization = ?2, note = 'a?b like' WHERE id = ?1 AND name LIKE ?3"
            ),
            "UPDATE accounts SET \"authorization\" = $2, note = 'a?b like' WHERE id = $1 AND name ILIKE $3"
        );
        assert_eq!(
            translate("SELECT a.authorization_x FROM t"),
            "SELECT a.authorization_x FROM t"
        );
    }
}
