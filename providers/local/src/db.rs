//! The target's metadata database: `<state_dir>/state.db` (SQLite, WAL).
//!
//! One connection per [`Stack`](mlctl_core::Stack), shared by its components behind a mutex;
//! several processes (two `mlctl apply` on the same directory, a CLI reading runs while an
//! apply trains) share the file through SQLite's own locking, with `busy_timeout` so a short
//! write by one does not fail the other.
//!
//! # Schema
//! Versioned with `PRAGMA user_version`; [`MIGRATIONS`] holds one SQL script per version and
//! every open brings the file up to date inside an immediate transaction, so two processes
//! opening a fresh directory at once do not both migrate.

use crate::PROVIDER;
use mlctl_core::error::{ErrorKind, ProviderError, Result};
use rusqlite::{Connection, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a statement waits for another process's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema versions, oldest first; `user_version` = how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: state, datasets, jobs, runs, registry.
    r#"
    CREATE TABLE resources (
        project     TEXT NOT NULL,
        resource    TEXT NOT NULL,          -- `Kind/name`
        record      TEXT NOT NULL,          -- ObservedResource as JSON
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (project, resource)
    );
    CREATE TABLE history (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        project     TEXT NOT NULL,
        resource    TEXT NOT NULL,
        action      TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        commit_sha  TEXT NOT NULL,
        at          TEXT NOT NULL,
        detail      TEXT NOT NULL
    );
    CREATE INDEX history_by_resource ON history (project, resource, seq);
    -- At most one row per project: taking the lock is an INSERT, which fails while a row exists.
    CREATE TABLE apply_lock (
        project     TEXT PRIMARY KEY,
        id          TEXT NOT NULL,
        holder      TEXT NOT NULL,
        host        TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        since       TEXT NOT NULL,
        command     TEXT NOT NULL
    );
    CREATE TABLE datasets (
        project     TEXT NOT NULL,
        name        TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        digest      TEXT NOT NULL,
        version     TEXT NOT NULL,          -- DatasetVersion as JSON
        created_at  TEXT NOT NULL,
        PRIMARY KEY (project, name, fingerprint)
    );
    -- https:// sources: downloaded once, then pinned by digest.
    CREATE TABLE downloads (
        url         TEXT PRIMARY KEY,
        digest      TEXT NOT NULL,
        bytes       INTEGER NOT NULL,
        fetched_at  TEXT NOT NULL
    );
    CREATE TABLE jobs (
        name         TEXT PRIMARY KEY,      -- deterministic job name
        project      TEXT NOT NULL,
        resource     TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        mode         TEXT NOT NULL,         -- `builtin` or `script`
        status       TEXT NOT NULL,         -- `running`, `completed`, `failed`
        request      TEXT NOT NULL,         -- what is needed to (re-)run it, as JSON
        result       TEXT,                  -- TrainingResult as JSON once completed
        reason       TEXT,                  -- why it failed
        progress     REAL,
        message      TEXT,
        owner_host   TEXT NOT NULL,         -- the process running it: a job whose owner died is re-run
        owner_pid    INTEGER NOT NULL,
        owner_start  INTEGER NOT NULL DEFAULT 0,  -- the owner's start time (pid reuse)
        attempt      INTEGER NOT NULL,
        run_id       TEXT,
        log_path     TEXT,
        submitted_at TEXT NOT NULL,
        finished_at  TEXT
    );
    CREATE TABLE runs (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        project      TEXT NOT NULL,
        job_name     TEXT NOT NULL,
        resource     TEXT NOT NULL,
        status       TEXT NOT NULL,         -- `running`, `completed`, `failed`
        params       TEXT NOT NULL,         -- JSON object
        metrics      TEXT NOT NULL,         -- JSON object
        artifacts    TEXT NOT NULL,         -- JSON array of URIs
        data_digest  TEXT NOT NULL,
        code_digest  TEXT,
        commit_sha   TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        duration_secs REAL NOT NULL DEFAULT 0,
        parent       TEXT REFERENCES runs (id),
        trial        INTEGER,
        log_path     TEXT,
        error        TEXT
    );
    CREATE INDEX runs_by_resource ON runs (project, resource, seq);
    CREATE TABLE models (
        project      TEXT NOT NULL,
        name         TEXT NOT NULL,
        description  TEXT,
        created_at   TEXT NOT NULL,
        PRIMARY KEY (project, name)
    );
    CREATE TABLE model_versions (
        project      TEXT NOT NULL,
        model        TEXT NOT NULL,
        version      INTEGER NOT NULL,
        stage        TEXT NOT NULL,
        approval     TEXT NOT NULL,         -- `auto` or `manual`
        approved     INTEGER NOT NULL,
        artifact_uri TEXT NOT NULL,
        metrics      TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        lineage      TEXT NOT NULL,
        tags         TEXT NOT NULL,
        description  TEXT,
        created_at   TEXT NOT NULL,
        PRIMARY KEY (project, model, version),
        FOREIGN KEY (project, model) REFERENCES models (project, name) ON DELETE CASCADE
    );
    CREATE TABLE stage_transitions (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        project      TEXT NOT NULL,
        model        TEXT NOT NULL,
        version      INTEGER NOT NULL,
        from_stage   TEXT,
        to_stage     TEXT NOT NULL,
        at           TEXT NOT NULL
    );
    CREATE INDEX stage_transitions_by_model ON stage_transitions (project, model, seq);
    "#,
    // 2: dataset versions carry their tags (mlctl's and the user's labels), as jobs and model
    // versions already did.
    r#"
    ALTER TABLE datasets ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
    "#,
    // 3: the rows a run was trained and scored on (JSON `Evaluation`).
    r#"
    ALTER TABLE runs ADD COLUMN evaluation TEXT;
    "#,
    // 4: a version can be rejected as well as approved (SageMaker's ModelApprovalStatus:
    // `pendingManualApproval`, `approved`, `rejected`); `approved` is kept in step with it.
    r#"
    ALTER TABLE model_versions ADD COLUMN approval_status TEXT NOT NULL DEFAULT 'pendingManualApproval';
    UPDATE model_versions SET approval_status = 'approved' WHERE approved != 0;
    "#,
    // 5: the lock holder's boot and process start time, so a lock whose holder provably died
    // on this machine is taken over without `force-unlock`.
    r#"
    ALTER TABLE apply_lock ADD COLUMN boot_id TEXT;
    ALTER TABLE apply_lock ADD COLUMN process_start INTEGER;
    "#,
    // 6: the lock's lease: its holder renews the heartbeat, and a lock whose lease expired is
    // taken over from any machine.
    r#"
    ALTER TABLE apply_lock ADD COLUMN heartbeat TEXT;
    ALTER TABLE apply_lock ADD COLUMN lease_seconds INTEGER;
    "#,
    // 7: the target's key for digests of secrets (`mlctl_core::secrets`): one row, made on
    // first use.
    r#"
    CREATE TABLE target_keys (
        name        TEXT PRIMARY KEY,       -- `secret-digest`
        key         TEXT NOT NULL,          -- 64 hex digits
        created_at  TEXT NOT NULL
    );
    "#,
    // 8: monitor evaluations, a time series per monitor (`mlctl monitor run`).
    r#"
    CREATE TABLE monitor_results (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        project  TEXT NOT NULL,
        monitor  TEXT NOT NULL,
        at       TEXT NOT NULL,
        result   TEXT NOT NULL
    );
    CREATE INDEX monitor_results_by_monitor ON monitor_results (project, monitor, seq);
    "#,
];

/// Errors inside a database closure: SQLite's, or ours (a missing row, bad JSON).
#[derive(Debug)]
pub(crate) enum DbError {
    Sql(rusqlite::Error),
    Provider(ProviderError),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sql(e)
    }
}

impl From<ProviderError> for DbError {
    fn from(e: ProviderError) -> Self {
        DbError::Provider(e)
    }
}

impl From<serde_json::Error> for DbError {
    fn from(e: serde_json::Error) -> Self {
        DbError::Provider(ProviderError::new(
            ErrorKind::Other,
            PROVIDER,
            "state.db",
            format!("corrupt JSON in the state database: {e}"),
        ))
    }
}

/// Results of database closures.
pub(crate) type DbResult<T> = std::result::Result<T, DbError>;

/// Maps a SQLite error to a provider error; a busy database is worth retrying.
pub(crate) fn sql_error(operation: &str, e: rusqlite::Error) -> ProviderError {
    let kind = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            ErrorKind::Transient
        }
        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied) => {
            ErrorKind::PermissionDenied
        }
        _ => ErrorKind::Other,
    };
    ProviderError::new(kind, PROVIDER, operation, format!("state database: {e}"))
}

fn map_err(operation: &str, e: DbError) -> ProviderError {
    match e {
        DbError::Sql(e) => sql_error(operation, e),
        DbError::Provider(e) => e,
    }
}

/// The shared connection to `state.db`.
#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// The state directory `state.db` is in.
    pub(crate) fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Opens (creating and migrating as needed) `state.db` in `state_dir`.
    pub(crate) fn open(state_dir: &Path) -> Result<Db> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| ProviderError::io(PROVIDER, "create state directory", e))?;
        let path = state_dir.join("state.db");
        let mut conn = Connection::open(&path).map_err(|e| sql_error("open state.db", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sql_error("open state.db", e))?;
        // WAL: readers never block the writer, and a crash never leaves a half-written page.
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(|e| sql_error("open state.db", e))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| sql_error("open state.db", e))?;
        migrate(&mut conn).map_err(|e| sql_error("migrate state.db", e))?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Runs `f` on the connection from a blocking thread.
    pub(crate) async fn call<T, F>(&self, operation: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> DbResult<T> + Send + 'static,
    {
        let db = self.clone();
        match tokio::task::spawn_blocking(move || db.call_sync(operation, f)).await {
            Ok(r) => r,
            Err(e) => Err(ProviderError::new(
                ErrorKind::Other,
                PROVIDER,
                operation,
                format!("state database task failed: {e}"),
            )),
        }
    }

    /// Runs `f` on the connection on this thread (for code already on a blocking thread).
    pub(crate) fn call_sync<T>(
        &self,
        operation: &str,
        f: impl FnOnce(&mut Connection) -> DbResult<T>,
    ) -> Result<T> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back an
        // unfinished transaction when the next one begins.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|e| map_err(operation, e))
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current >= MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let current: usize = tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()
}

/// Serialises to JSON text for a column.
pub(crate) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_set_user_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let v: i64 = db
            .call_sync("t", |c| {
                Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        drop(db);
        // Re-opening an up-to-date database changes nothing.
        let db = Db::open(dir.path()).unwrap();
        let mode: String = db
            .call_sync("t", |c| {
                Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
