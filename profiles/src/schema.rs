//! The schema and its migrations. `PRAGMA user_version` holds how many of
//! [`MIGRATIONS`] a database has had; opening a database applies the rest,
//! each in its own transaction, so an older database keeps every row.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: profiles, runs and their per-cell totals.
    "CREATE TABLE profiles (
        name TEXT PRIMARY KEY,
        format INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        profile_name TEXT NOT NULL,
        profile_body TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL,
        kernel TEXT NOT NULL,
        cpu_model TEXT NOT NULL,
        cores INTEGER NOT NULL,
        memory_bytes INTEGER NOT NULL
    );
    CREATE TABLE cells (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        mode TEXT NOT NULL,
        lun INTEGER NOT NULL,
        connections INTEGER NOT NULL,
        sessions INTEGER NOT NULL,
        block_bytes INTEGER NOT NULL,
        threads INTEGER NOT NULL,
        seconds REAL NOT NULL,
        read_bytes INTEGER NOT NULL,
        read_transfers INTEGER NOT NULL,
        write_bytes INTEGER NOT NULL,
        write_transfers INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        p50_us REAL NOT NULL,
        p99_us REAL NOT NULL,
        p999_us REAL NOT NULL,
        max_us REAL NOT NULL,
        PRIMARY KEY (run_id, idx)
    );",
    // 2: the interfaces a run used, and per-connection time series.
    "ALTER TABLE runs ADD COLUMN interfaces TEXT NOT NULL DEFAULT '';
    CREATE TABLE series (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        cell INTEGER NOT NULL,
        session INTEGER NOT NULL,
        cid INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        t_ms INTEGER NOT NULL,
        read_bytes INTEGER NOT NULL,
        write_bytes INTEGER NOT NULL,
        PRIMARY KEY (run_id, cell, session, cid, seq)
    ) WITHOUT ROWID;",
    // 3: values the lab changed on the host (sysctls, MTUs, PCI drivers), as
    // they were before the first change, so they can be put back after a crash.
    "CREATE TABLE originals (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        seq INTEGER NOT NULL,
        saved_ms INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    );",
    // 4: runs that span hosts: each host's facts and settings, and series
    // counted on either side (initiator or target) of any host.
    "CREATE TABLE series_v4 (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        host TEXT NOT NULL DEFAULT '',
        side TEXT NOT NULL DEFAULT '',
        cell INTEGER NOT NULL,
        session INTEGER NOT NULL,
        cid INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        t_ms INTEGER NOT NULL,
        read_bytes INTEGER NOT NULL,
        write_bytes INTEGER NOT NULL,
        PRIMARY KEY (run_id, host, side, cell, session, cid, seq)
    ) WITHOUT ROWID;
    INSERT INTO series_v4 (run_id, cell, session, cid, seq, t_ms, read_bytes, write_bytes)
        SELECT run_id, cell, session, cid, seq, t_ms, read_bytes, write_bytes FROM series;
    DROP TABLE series;
    ALTER TABLE series_v4 RENAME TO series;
    CREATE TABLE run_hosts (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        roles TEXT NOT NULL,
        agent TEXT NOT NULL,
        kernel TEXT NOT NULL,
        cpu_model TEXT NOT NULL,
        cores INTEGER NOT NULL,
        memory_bytes INTEGER NOT NULL,
        interfaces TEXT NOT NULL,
        settings TEXT NOT NULL,
        PRIMARY KEY (run_id, idx)
    );",
    // 5: cells run by another initiator than iolab's own (the kernel's).
    "ALTER TABLE cells ADD COLUMN initiator TEXT NOT NULL DEFAULT '';",
];

/// The schema version this build writes.
pub fn latest() -> u32 {
    MIGRATIONS.len() as u32
}

pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies the migrations after the database's version, up to `target`.
pub fn migrate_to(conn: &mut Connection, target: u32) -> rusqlite::Result<()> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Read inside the write lock: another process may have migrated meanwhile.
        let v = version(&tx)?;
        if v >= target {
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[v as usize])?;
        tx.pragma_update(None, "user_version", v + 1)?;
        tx.commit()?;
        tracing::debug!(from = v, to = v + 1, "migrated the iolab database");
    }
}
