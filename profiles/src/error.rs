//! Errors of the profile and run store.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: not an SQLite database (it was left untouched)")]
    NotADatabase { path: PathBuf },
    #[error("{path}: the database is damaged ({detail}); it was left untouched")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{path}: the database has schema version {found}, newer than this iolab's {supported}; \
         use a newer iolab or another --db"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("database: {0}")]
    Sql(rusqlite::Error),
    #[error("no profile named '{0}'")]
    NoProfile(String),
    #[error("a profile named '{0}' exists already")]
    ProfileExists(String),
    #[error("no run with id {0}")]
    NoRun(i64),
    #[error("no XDG data directory: set XDG_DATA_HOME or HOME, or pass --db")]
    NoDataDir,
}

// The SQLite error is part of the message, not a `source()` as well.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e)
    }
}
