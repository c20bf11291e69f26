//! What kind of failure a database error is: the one place that reads
//! sea-orm's and sqlx's error types. [`is_unavailable`]: out of reach (→
//! UNAVAILABLE, retryable); [`Unique::is_violated_by`]: a unique constraint,
//! by name, refused the write (the only constraint a client can trip; a
//! service answers it with its own reason); anything else is a fault of the
//! service (→ an opaque INTERNAL). The services decide on these, not on
//! types, and the gRPC error kit knows nothing of databases.

use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// One unique constraint, named as each backend names it in its error: the
/// constraint's (or unique index's) name on PostgreSQL, `table.column` in
/// SQLite's message ("UNIQUE constraint failed: users.username"). Matching
/// by name means a unique constraint added later (say, on email) is not
/// taken for this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unique {
    /// The constraint's or unique index's name (PostgreSQL).
    pub name: &'static str,
    /// The table it is on.
    pub table: &'static str,
    /// Its one column.
    pub column: &'static str,
}

impl Unique {
    /// Whether `e` is a unique violation of this constraint.
    pub fn is_violated_by(&self, e: &DbErr) -> bool {
        let Some(SqlErr::UniqueConstraintViolation(message)) = e.sql_err() else {
            return false;
        };
        match database_error(e).and_then(|db| db.constraint()) {
            Some(name) => name == self.name,
            // SQLite names no constraint; its message lists `table.column`
            // after the colon, comma-separated for a key of several columns.
            None => message.rsplit_once(": ").is_some_and(|(_, columns)| {
                let mut columns = columns.split(", ");
                columns
                    .next()
                    .is_some_and(|c| c.split_once('.') == Some((self.table, self.column)))
                    && columns.next().is_none()
            }),
        }
    }
}

/// The database's own error inside `e`, if the database answered one.
fn database_error(e: &DbErr) -> Option<&(dyn sea_orm::sqlx::error::DatabaseError + 'static)> {
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => {
            s.as_database_error()
        }
        _ => None,
    }
}

/// Whether `e` means the database could not be reached or dropped the
/// connection (down, restarting, pool exhausted, network), as opposed to a
/// query it refused. Callers answer UNAVAILABLE for these: a retry later can
/// succeed.
pub fn is_unavailable(e: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => {
            match &**s {
                Sqlx::Io(_)
                | Sqlx::PoolTimedOut
                | Sqlx::PoolClosed
                | Sqlx::Tls(_)
                | Sqlx::WorkerCrashed => true,
                // PostgreSQL saying it is going away or cannot take the
                // connection: class 08 (connection exception), 57P01-03
                // (shutdown, crash shutdown, starting up), 53300 (too many
                // connections).
                Sqlx::Database(db) => db.code().is_some_and(|code| {
                    code.starts_with("08")
                        || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
                }),
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait as _, Database};

    use super::*;

    #[test]
    fn out_of_reach_is_unavailable_and_a_refused_query_is_not() {
        let gone = DbErr::Conn(RuntimeErr::Internal("connection refused".into()));
        assert!(is_unavailable(&gone));
        let bug = DbErr::Custom("no such table: credentials".into());
        assert!(!is_unavailable(&bug));
    }

    /// Two unique columns on a real database: each violation matches its
    /// own constraint only, by the names the backend gives.
    async fn violations_match_their_own_constraint_only(url: &str) {
        // A TEMP table: private to this connection (no clash with another
        // test run on the same PostgreSQL), gone when it closes.
        let table = "people";
        let mut options = sea_orm::ConnectOptions::new(url);
        // One connection: `:memory:` and PostgreSQL's TEMP tables live in it.
        options.max_connections(1);
        let db = Database::connect(options).await.expect("database");
        db.execute_unprepared(&format!(
            "CREATE TEMP TABLE {table} (id INTEGER PRIMARY KEY, name TEXT UNIQUE, email TEXT); \
             CREATE UNIQUE INDEX {table}_email_idx ON {table} (email); \
             INSERT INTO {table} (id, name, email) VALUES (1, 'ann', 'a@x')"
        ))
        .await
        .expect("schema");
        // PostgreSQL names a column's UNIQUE `<table>_<column>_key`.
        let name = Unique {
            name: "people_name_key",
            table,
            column: "name",
        };
        let email = Unique {
            name: "people_email_idx",
            table,
            column: "email",
        };
        let insert = |id: u8, name: &str, email: &str| {
            format!("INSERT INTO {table} (id, name, email) VALUES ({id}, '{name}', '{email}')")
        };
        let same_name = db
            .execute_unprepared(&insert(2, "ann", "b@x"))
            .await
            .expect_err("name taken");
        assert!(!is_unavailable(&same_name), "{same_name}");
        assert!(name.is_violated_by(&same_name), "{same_name}");
        assert!(!email.is_violated_by(&same_name), "{same_name}");
        let same_email = db
            .execute_unprepared(&insert(3, "bob", "a@x"))
            .await
            .expect_err("email taken");
        assert!(email.is_violated_by(&same_email), "{same_email}");
        assert!(!name.is_violated_by(&same_email), "{same_email}");
        // Not a unique violation at all.
        let missing = db
            .execute_unprepared("INSERT INTO nobody VALUES (1)")
            .await
            .expect_err("no table");
        assert!(!is_unavailable(&missing), "{missing}");
        assert!(!name.is_violated_by(&missing));
    }

    #[tokio::test]
    async fn sqlite_violations_match_their_own_constraint_only() {
        violations_match_their_own_constraint_only("sqlite::memory:").await;
    }

    #[tokio::test]
    async fn postgres_violations_match_their_own_constraint_only() {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("skipped: TEST_DATABASE_URL is not set (no PostgreSQL to ask)");
            return;
        };
        violations_match_their_own_constraint_only(&url).await;
    }
}
