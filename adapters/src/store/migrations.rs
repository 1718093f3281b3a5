//! The embedded migrations of both backends, in one list so that a change made on both carries
//! the same version number on both. A migration whose text is the same in both dialects is one
//! file under `adapters/migrations/shared/`; one that differs has a file per backend under
//! `adapters/migrations/{sqlite,postgres}/`. (A migration's checksum is its text, so moving an
//! identical text between folders changes nothing for a database that already ran it.)

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// A migration's version, description, and its text on SQLite and on PostgreSQL (`None`: the
/// change concerns the other backend only).
type Step = (
    i64,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

macro_rules! both {
    ($file:literal) => {
        (
            Some(include_str!(concat!("../../migrations/sqlite/", $file))),
            Some(include_str!(concat!("../../migrations/postgres/", $file))),
        )
    };
}

/// One text for both backends.
macro_rules! shared {
    ($file:literal) => {{
        const SQL: &str = include_str!(concat!("../../migrations/shared/", $file));
        (Some(SQL), Some(SQL))
    }};
}

const fn step(
    version: i64,
    what: &'static str,
    (lite, pg): (Option<&'static str>, Option<&'static str>),
) -> Step {
    (version, what, lite, pg)
}

const MIGRATIONS: &[Step] = &[
    step(1, "durable", both!("0001_durable.sql")),
    step(
        2,
        "timer claims by instance",
        both!("0002_timer_claims_by_instance.sql"),
    ),
    step(
        3,
        "write path: json bodies, byte-wise keys",
        (
            None,
            Some(include_str!(
                "../../migrations/postgres/0003_write_path.sql"
            )),
        ),
    ),
    step(4, "refused timers", both!("0004_refused_timers.sql")),
    step(
        5,
        "calendar revisions",
        shared!("0005_calendar_revisions.sql"),
    ),
    step(6, "server tables", shared!("0006_server_tables.sql")),
    step(7, "event format", shared!("0007_event_format.sql")),
    step(8, "inbox addressees", both!("0008_inbox_addressees.sql")),
    step(
        14,
        "message reads, demo clock",
        both!("0014_messages_and_demo_clock.sql"),
    ),
    step(
        10,
        "definition sources, version migrations",
        both!("0010_definition_sources_and_migrations.sql"),
    ),
    step(
        15,
        "idempotency keys bound to their request",
        shared!("0015_request_bound_keys.sql"),
    ),
    step(16, "material files", both!("0016_material_files.sql")),
    step(17, "official documents", shared!("0017_documents.sql")),
    step(18, "event hash chain", shared!("0018_event_hash_chain.sql")),
    step(19, "material file places", shared!("0019_file_place.sql")),
];

/// Which backend's texts to run.
#[derive(Debug, Clone, Copy)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

/// The migrator of one backend.
pub(super) fn migrator(dialect: Dialect) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .filter_map(|&(version, what, lite, pg)| {
                let sql = match dialect {
                    Dialect::Sqlite => lite,
                    Dialect::Postgres => pg,
                }?;
                Some(Migration::new(
                    version,
                    what.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                ))
            })
            .collect(),
    )
}
