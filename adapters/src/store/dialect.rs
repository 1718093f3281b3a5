//! For the stores written with plain `sqlx` queries beside the `Backend` trait (calendar
//! revisions, version migrations): one SQL text with `$n` placeholders, run on either backend.

use std::borrow::Cow;

/// A `$n`-placeholder statement in SQLite's `?n` form.
pub(crate) fn sqlite_sql(sql: &str) -> Cow<'_, str> {
    Cow::Owned(sql.replace('$', "?"))
}

/// `sql` in the dialect of `db`.
pub(crate) fn sql_for<'a>(db: &crate::store::Db, sql: &'a str) -> Cow<'a, str> {
    match db {
        crate::store::Db::Sqlite(_) => sqlite_sql(sql),
        crate::store::Db::Postgres(_) => Cow::Borrowed(sql),
    }
}

/// Runs `$body` with `$pool` bound to the backend's pool and `$q` to the SQL text in its dialect.
macro_rules! on_pool {
    ($db:expr, $sql:expr, |$pool:ident, $q:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(s) => {
                let $pool = s.pool();
                let $q = $crate::store::dialect::sqlite_sql($sql);
                $body
            }
            $crate::store::Db::Postgres(s) => {
                let $pool = s.pool();
                let $q: std::borrow::Cow<'_, str> = std::borrow::Cow::Borrowed($sql);
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// A function `$name(&row) -> $ty` that reads each field from the column of the same name, on
/// either backend's rows.
macro_rules! row_reader {
    (fn $name:ident -> $ty:ident { $($field:ident),* $(,)? }) => {
        fn $name<R: sqlx::Row>(r: &R) -> std::result::Result<$ty, sqlx::Error>
        where
            for<'c> &'c str: sqlx::ColumnIndex<R>,
            String: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
            i64: for<'d> sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
            Option<String>: for<'d> sqlx::Decode<'d, R::Database>,
            Option<i64>: for<'d> sqlx::Decode<'d, R::Database>,
        {
            Ok($ty {
                $($field: r.try_get(stringify!($field))?,)*
            })
        }
    };
}
pub(crate) use row_reader;
