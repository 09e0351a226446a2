//! The SQLite store: profiles, runs, and the host values the lab changed.
//!
//! One file, WAL mode and a busy timeout, so the console and command-line
//! runs can write at once. A file that is not an SQLite database, or one
//! that is damaged, is reported and never written.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::error::StoreError;
use crate::run::{Cell, HostFacts, Run, RunHost, RunSummary, SeriesPoint};
use crate::schema;
use crate::time::now_ms;

/// What every SQLite 3 database file starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// How long a writer waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A profile as stored: its name, format version and TOML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProfile {
    pub name: String,
    pub format: u32,
    pub body: String,
    pub updated_ms: i64,
}

/// A host value as it was before the lab first changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub key: String,
    pub value: String,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// `$XDG_DATA_HOME/iolab/iolab.db`, or `~/.local/share/iolab/iolab.db`.
pub fn default_path() -> Result<PathBuf, StoreError> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").ok_or(StoreError::NoDataDir)?)
            .join(".local/share"),
    };
    Ok(base.join("iolab").join("iolab.db"))
}

impl Store {
    /// Opens (or creates) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, schema::latest())
    }

    /// Opens the database and migrates it only up to `version` (for migration tests).
    #[doc(hidden)]
    pub fn open_at_version(path: &Path, version: u32) -> Result<Store, StoreError> {
        Self::open_with(path, version)
    }

    fn open_with(path: &Path, version: u32) -> Result<Store, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            cause: source,
        };
        let exists = path.exists();
        if exists {
            check_magic(path).map_err(io)??;
        } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                cause: source,
            })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let damaged = |e: rusqlite::Error| classify(path, e);
        let mut conn = Connection::open_with_flags(path, flags).map_err(damaged)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(damaged)?;
        // Two processes creating the file at once both start in rollback
        // mode, and SQLite answers one of them SQLITE_BUSY at once (without
        // the busy handler) when both upgrade a read to a write: switching to
        // WAL or migrating. The set-up is idempotent, so it is simply retried.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(5);
        loop {
            match Self::set_up(&mut conn, path, exists, version) {
                Err(StoreError::Sql(e)) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "database busy while opening; retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
                Ok(()) => break,
            }
        }
        Ok(Store {
            conn,
            path: path.to_owned(),
        })
    }

    /// Checks the schema version and integrity, turns on WAL and migrates.
    fn set_up(
        conn: &mut Connection,
        path: &Path,
        exists: bool,
        version: u32,
    ) -> Result<(), StoreError> {
        let damaged = |e: rusqlite::Error| classify(path, e);
        let found = schema::version(conn).map_err(damaged)?;
        if found > schema::latest() {
            return Err(StoreError::NewerSchema {
                path: path.to_owned(),
                found,
                supported: schema::latest(),
            });
        }
        if exists {
            let verdict: String = conn
                .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
                .map_err(damaged)?;
            if verdict != "ok" {
                return Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    detail: verdict,
                });
            }
        }
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .map_err(damaged)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(damaged)?;
        schema::migrate_to(conn, version).map_err(damaged)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(schema::version(&self.conn)?)
    }

    /// Runs raw SQL (for tests that build old databases).
    #[doc(hidden)]
    pub fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    // ---- profiles ----

    pub fn profiles(&self) -> Result<Vec<StoredProfile>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT name, format, body, updated_ms FROM profiles ORDER BY name")?;
        let rows = st.query_map([], profile_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn profile(&self, name: &str) -> Result<Option<StoredProfile>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, format, body, updated_ms FROM profiles WHERE name = ?1",
                [name],
                profile_row,
            )
            .optional()?)
    }

    /// Adds a profile; refuses a name in use unless `replace`.
    pub fn put_profile(
        &mut self,
        name: &str,
        format: u32,
        body: &str,
        replace: bool,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM profiles WHERE name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if exists && !replace {
            return Err(StoreError::ProfileExists(name.into()));
        }
        tx.execute(
            "INSERT INTO profiles (name, format, body, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(name) DO UPDATE SET format = ?2, body = ?3, updated_ms = ?4",
            params![name, format, body, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn delete_profile(&mut self, name: &str) -> Result<(), StoreError> {
        match self
            .conn
            .execute("DELETE FROM profiles WHERE name = ?1", [name])?
        {
            0 => Err(StoreError::NoProfile(name.into())),
            _ => Ok(()),
        }
    }

    // ---- runs ----

    /// Stores a run under a new id (runs are never overwritten) and returns the id.
    pub fn add_run(&mut self, run: &Run) -> Result<i64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let h = &run.host;
        tx.execute(
            "INSERT INTO runs (profile_name, profile_body, started_ms, ended_ms, kernel, cpu_model, cores, memory_bytes, interfaces)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run.profile_name,
                run.profile_body,
                run.started_ms,
                run.ended_ms,
                h.kernel,
                h.cpu_model,
                h.cores,
                h.memory_bytes as i64,
                h.interfaces.join("\n"),
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut cell = tx.prepare(
                "INSERT INTO cells (run_id, idx, mode, lun, connections, sessions, block_bytes, threads, seconds,
                 read_bytes, read_transfers, write_bytes, write_transfers, errors, p50_us, p99_us, p999_us, max_us, initiator)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?;
            for (i, c) in run.cells.iter().enumerate() {
                cell.execute(params![
                    id,
                    i as i64,
                    c.mode,
                    c.lun as i64,
                    c.connections,
                    c.sessions,
                    c.block_bytes,
                    c.threads,
                    c.seconds,
                    c.read_bytes as i64,
                    c.read_transfers as i64,
                    c.write_bytes as i64,
                    c.write_transfers as i64,
                    c.errors as i64,
                    c.p50_us,
                    c.p99_us,
                    c.p999_us,
                    c.max_us,
                    c.initiator,
                ])?;
            }
            let mut point = tx.prepare(
                "INSERT INTO series (run_id, host, side, cell, session, cid, seq, t_ms, read_bytes, write_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for p in &run.series {
                point.execute(params![
                    id,
                    p.host,
                    p.side,
                    p.cell,
                    p.session,
                    p.cid,
                    p.seq,
                    p.t_ms as i64,
                    p.read_bytes as i64,
                    p.write_bytes as i64,
                ])?;
            }
            let mut host = tx.prepare(
                "INSERT INTO run_hosts (run_id, idx, name, roles, agent, kernel, cpu_model, cores, memory_bytes, interfaces, settings)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for (i, h) in run.hosts.iter().enumerate() {
                let settings: Vec<String> =
                    h.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                host.execute(params![
                    id,
                    i as i64,
                    h.name,
                    h.roles.join(","),
                    h.agent,
                    h.facts.kernel,
                    h.facts.cpu_model,
                    h.facts.cores,
                    h.facts.memory_bytes as i64,
                    h.facts.interfaces.join("\n"),
                    settings.join("\n"),
                ])?;
            }
        }
        tx.commit()?;
        Ok(id)
    }

    pub fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT r.id, r.profile_name, r.started_ms, r.ended_ms, r.kernel,
                    (SELECT COUNT(*) FROM cells c WHERE c.run_id = r.id)
             FROM runs r ORDER BY r.id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(RunSummary {
                id: r.get(0)?,
                profile_name: r.get(1)?,
                started_ms: r.get(2)?,
                ended_ms: r.get(3)?,
                kernel: r.get(4)?,
                cells: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn run(&self, id: i64) -> Result<Run, StoreError> {
        let mut run = self
            .conn
            .query_row(
                "SELECT profile_name, profile_body, started_ms, ended_ms, kernel, cpu_model, cores, memory_bytes, interfaces
                 FROM runs WHERE id = ?1",
                [id],
                |r| {
                    let interfaces: String = r.get(8)?;
                    Ok(Run {
                        id: Some(id),
                        profile_name: r.get(0)?,
                        profile_body: r.get(1)?,
                        started_ms: r.get(2)?,
                        ended_ms: r.get(3)?,
                        host: HostFacts {
                            kernel: r.get(4)?,
                            cpu_model: r.get(5)?,
                            cores: r.get(6)?,
                            memory_bytes: r.get::<_, i64>(7)? as u64,
                            interfaces: interfaces
                                .lines()
                                .map(str::to_owned)
                                .collect(),
                        },
                        cells: Vec::new(),
                        series: Vec::new(),
                        hosts: Vec::new(),
                    })
                },
            )
            .optional()?
            .ok_or(StoreError::NoRun(id))?;
        let mut st = self.conn.prepare(
            "SELECT mode, lun, connections, sessions, block_bytes, threads, seconds, read_bytes, read_transfers,
                    write_bytes, write_transfers, errors, p50_us, p99_us, p999_us, max_us, initiator
             FROM cells WHERE run_id = ?1 ORDER BY idx",
        )?;
        run.cells = st
            .query_map([id], |r| {
                Ok(Cell {
                    mode: r.get(0)?,
                    lun: r.get::<_, i64>(1)? as u64,
                    connections: r.get(2)?,
                    sessions: r.get(3)?,
                    block_bytes: r.get(4)?,
                    threads: r.get(5)?,
                    seconds: r.get(6)?,
                    read_bytes: r.get::<_, i64>(7)? as u64,
                    read_transfers: r.get::<_, i64>(8)? as u64,
                    write_bytes: r.get::<_, i64>(9)? as u64,
                    write_transfers: r.get::<_, i64>(10)? as u64,
                    errors: r.get::<_, i64>(11)? as u64,
                    p50_us: r.get(12)?,
                    p99_us: r.get(13)?,
                    p999_us: r.get(14)?,
                    max_us: r.get(15)?,
                    initiator: r.get(16)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut st = self.conn.prepare(
            "SELECT cell, session, cid, seq, t_ms, read_bytes, write_bytes, host, side
             FROM series WHERE run_id = ?1 ORDER BY host, side, cell, session, cid, seq",
        )?;
        run.series = st
            .query_map([id], |r| {
                Ok(SeriesPoint {
                    cell: r.get(0)?,
                    session: r.get(1)?,
                    cid: r.get(2)?,
                    seq: r.get(3)?,
                    t_ms: r.get::<_, i64>(4)? as u64,
                    read_bytes: r.get::<_, i64>(5)? as u64,
                    write_bytes: r.get::<_, i64>(6)? as u64,
                    host: r.get(7)?,
                    side: r.get(8)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut st = self.conn.prepare(
            "SELECT name, roles, agent, kernel, cpu_model, cores, memory_bytes, interfaces, settings
             FROM run_hosts WHERE run_id = ?1 ORDER BY idx",
        )?;
        let lines = |s: String| -> Vec<String> { s.lines().map(str::to_owned).collect() };
        run.hosts = st
            .query_map([id], |r| {
                let roles: String = r.get(1)?;
                Ok(RunHost {
                    name: r.get(0)?,
                    roles: roles
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    agent: r.get(2)?,
                    facts: HostFacts {
                        kernel: r.get(3)?,
                        cpu_model: r.get(4)?,
                        cores: r.get(5)?,
                        memory_bytes: r.get::<_, i64>(6)? as u64,
                        interfaces: lines(r.get(7)?),
                    },
                    settings: lines(r.get(8)?)
                        .into_iter()
                        .map(|l| match l.split_once('=') {
                            Some((k, v)) => (k.to_string(), v.to_string()),
                            None => (l, String::new()),
                        })
                        .collect(),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(run)
    }

    // ---- originals: host values before the lab changed them ----

    /// Records each value under `scope` unless one is recorded already: the
    /// first recorded value is the host's own, and later changes keep it.
    pub fn save_originals(&mut self, scope: &str, values: &[Original]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM originals WHERE scope = ?1",
            [scope],
            |r| r.get(0),
        )?;
        let now = now_ms();
        for v in values {
            seq += 1;
            tx.execute(
                "INSERT OR IGNORE INTO originals (scope, key, value, seq, saved_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![scope, v.key, v.value, seq, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The recorded values of `scope`, in the order they were first recorded.
    pub fn originals(&self, scope: &str) -> Result<Vec<Original>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT key, value FROM originals WHERE scope = ?1 ORDER BY seq")?;
        let rows = st.query_map([scope], |r| {
            Ok(Original {
                key: r.get(0)?,
                value: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Scopes that have recorded values.
    pub fn original_scopes(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT scope FROM originals ORDER BY scope")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets recorded values once they are back in place.
    pub fn forget_originals(&mut self, scope: &str, keys: &[String]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for k in keys {
            tx.execute(
                "DELETE FROM originals WHERE scope = ?1 AND key = ?2",
                params![scope, k],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn profile_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredProfile> {
    Ok(StoredProfile {
        name: r.get(0)?,
        format: r.get(1)?,
        body: r.get(2)?,
        updated_ms: r.get(3)?,
    })
}

/// Whether a non-empty file starts like an SQLite database (an empty file is a new one).
fn check_magic(path: &Path) -> std::io::Result<Result<(), StoreError>> {
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)?.take(16).read_to_end(&mut head)?;
    Ok(if head.is_empty() || head == SQLITE_MAGIC {
        Ok(())
    } else {
        Err(StoreError::NotADatabase {
            path: path.to_owned(),
        })
    })
}

/// SQLite's verdicts on a damaged file become [`StoreError::Corrupt`].
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_owned(),
            detail: e.to_string(),
        },
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase {
            path: path.to_owned(),
        },
        _ => StoreError::Sql(e),
    }
}
