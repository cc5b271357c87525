//! `--engine=sqlite` (cargo feature `peers`): SQLite (bundled with `rusqlite`) as a
//! key-value store, the way applications commonly use it.
//!
//! Settings: one table `kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID`, WAL journal
//! mode with `synchronous=NORMAL` (a commit is written to the WAL file but not fsynced:
//! the promise of Strata's `Buffered`), one transaction per write, one per batch. A
//! `Sync` write runs with `synchronous=FULL` (fsync at commit). A page cache of
//! `--cache_size` per connection. SQLite allows one writer at a time, so writes share
//! one connection behind a mutex; reads take a connection from a pool (WAL mode lets
//! them run beside the writer). No WAL-less path, compression or compaction policy
//! (those flags warn); `flush` checkpoints the WAL into the database file and
//! `compact` runs `VACUUM`. `--sync_writer=1` writes to a second table, `side`.

use std::sync::Arc;

use ::rusqlite::{Connection, OpenFlags};
use parking_lot::Mutex;

use super::peer_meter::{PeerFigures, PeerMeter};
use super::{warn_unsupported, Supported};
use crate::engine::{Batch, BenchEngine, Direction, Durability, EngineConfig, EngineError};

const DB_FILE: &str = "strata-bench.sqlite";

/// The writer connection and the `synchronous` level it is set to.
struct Writer {
    conn: Connection,
    sync: bool,
}

/// A SQLite database opened for the benchmarks.
pub struct SqliteEngine {
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
    cache_kib: i64,
    meter: PeerMeter,
    durability: Durability,
}

fn err(e: ::rusqlite::Error) -> EngineError {
    EngineError::new(e.to_string())
}

fn connect(path: &std::path::Path, cache_kib: i64) -> Result<Connection, EngineError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(EngineError::new(format!(
            "sqlite: journal_mode is {mode}, not wal"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-{cache_kib}; PRAGMA busy_timeout=60000;"
    ))
    .map_err(err)?;
    Ok(conn)
}

/// Opens SQLite in `config.path`.
///
/// # Errors
/// SQLite's open error.
pub fn open(config: &EngineConfig) -> Result<Arc<dyn BenchEngine>, EngineError> {
    warn_unsupported("sqlite", config, Supported::NONE);
    let path = config.path.join(DB_FILE);
    let cache_kib = (config.cache_bytes / 1024).max(1) as i64;
    let conn = connect(&path, cache_kib)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS side (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;",
    )
    .map_err(err)?;
    Ok(Arc::new(SqliteEngine {
        writer: Mutex::new(Writer { conn, sync: false }),
        readers: Mutex::new(Vec::new()),
        path,
        cache_kib,
        meter: PeerMeter::new(&config.path),
        durability: config.durability,
    }))
}

impl Writer {
    /// Sets `synchronous` for `durability` if it is not already.
    fn set_durability(&mut self, durability: Durability) -> Result<(), EngineError> {
        let sync = durability == Durability::Sync;
        if sync != self.sync {
            let level = if sync { "FULL" } else { "NORMAL" };
            self.conn
                .execute_batch(&format!("PRAGMA synchronous={level}"))
                .map_err(err)?;
            self.sync = sync;
        }
        Ok(())
    }

    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        let sql = format!("INSERT OR REPLACE INTO {table} (k, v) VALUES (?1, ?2)");
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute((key, value)))
            .map(|_| ())
            .map_err(err)
    }
}

impl SqliteEngine {
    /// Runs `f` on a reader connection from the pool (opening one if none is free).
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let pooled = self.readers.lock().pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path, self.cache_kib)?,
        };
        let result = f(&conn);
        self.readers.lock().push(conn);
        result
    }
}

fn blob<'a>(row: &'a ::rusqlite::Row<'_>, column: usize) -> Result<&'a [u8], EngineError> {
    row.get_ref(column)
        .map_err(err)?
        .as_blob()
        .map_err(|e| EngineError::new(e.to_string()))
}

impl BenchEngine for SqliteEngine {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> Result<(), EngineError> {
        self.meter.wrote(key.len() + value.len());
        let mut w = self.writer.lock();
        w.set_durability(durability)?;
        w.put("kv", key, value)
    }

    fn write_batch(&self, batch: &Batch, durability: Durability) -> Result<(), EngineError> {
        let mut w = self.writer.lock();
        w.set_durability(durability)?;
        w.conn.execute_batch("BEGIN").map_err(err)?;
        for (key, value) in batch.iter() {
            self.meter.wrote(key.len() + value.len());
            if let Err(e) = w.put("kv", key, value) {
                let _ = w.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        let committed = w.conn.execute_batch("COMMIT").map_err(err);
        if committed.is_err() {
            let _ = w.conn.execute_batch("ROLLBACK");
        }
        committed
    }

    fn put_side_sync(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        self.meter.wrote(key.len() + value.len());
        let mut w = self.writer.lock();
        w.set_durability(Durability::Sync)?;
        w.put("side", key, value)
    }

    fn get(&self, key: &[u8], visit: &mut dyn FnMut(&[u8])) -> Result<bool, EngineError> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT v FROM kv WHERE k = ?1")
                .map_err(err)?;
            let mut rows = stmt.query([key]).map_err(err)?;
            match rows.next().map_err(err)? {
                Some(row) => {
                    visit(blob(row, 0)?);
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    }

    fn delete(&self, key: &[u8]) -> Result<(), EngineError> {
        self.meter.wrote(key.len());
        let mut w = self.writer.lock();
        w.set_durability(self.durability)?;
        w.conn
            .prepare_cached("DELETE FROM kv WHERE k = ?1")
            .and_then(|mut stmt| stmt.execute([key]))
            .map(|_| ())
            .map_err(err)
    }

    fn scan(
        &self,
        direction: Direction,
        from: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<usize, EngineError> {
        if limit == 0 {
            return Ok(0);
        }
        // SQLite reads a negative LIMIT as "no limit".
        let limit_sql = i64::try_from(limit).unwrap_or(-1);
        self.with_reader(|conn| {
            let (sql, from) = match (direction, from) {
                (Direction::Forward, None) => ("SELECT k, v FROM kv ORDER BY k LIMIT ?1", None),
                (Direction::Forward, Some(k)) => (
                    "SELECT k, v FROM kv WHERE k >= ?2 ORDER BY k LIMIT ?1",
                    Some(k),
                ),
                (Direction::Reverse, None) => {
                    ("SELECT k, v FROM kv ORDER BY k DESC LIMIT ?1", None)
                }
                (Direction::Reverse, Some(k)) => (
                    "SELECT k, v FROM kv WHERE k <= ?2 ORDER BY k DESC LIMIT ?1",
                    Some(k),
                ),
            };
            let mut stmt = conn.prepare_cached(sql).map_err(err)?;
            let mut rows = match from {
                Some(k) => stmt.query((limit_sql, k)),
                None => stmt.query([limit_sql]),
            }
            .map_err(err)?;
            let mut n = 0;
            while let Some(row) = rows.next().map_err(err)? {
                visit(blob(row, 0)?, blob(row, 1)?);
                n += 1;
            }
            Ok(n)
        })
    }

    fn flush(&self) -> Result<(), EngineError> {
        let w = self.writer.lock();
        w.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(err)
    }

    fn compact(&self) -> Result<(), EngineError> {
        {
            let w = self.writer.lock();
            w.conn.execute_batch("VACUUM").map_err(err)?;
        }
        self.flush()
    }

    fn stats_line(&self) -> Option<String> {
        Some(self.meter.stats_line(self, PeerFigures::default()))
    }

    fn stats_text(&self) -> Option<String> {
        Some(self.meter.stats_text())
    }

    fn close(&self) -> Result<(), EngineError> {
        let mut w = self.writer.lock();
        w.set_durability(Durability::Sync)?;
        w.conn
            .query_row("PRAGMA wal_checkpoint(FULL)", [], |_| Ok(()))
            .map_err(err)
    }
}
