//! The `sqlite` backend (the default): one embedded file in WAL mode, for a single gateway.
//!
//! rusqlite is synchronous, so every operation runs on tokio's blocking pool. Writes go through
//! one connection and reads through another: in WAL mode readers never wait for the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::{
    Attempt, Backlog, Claimed, DeliveryState, DeliveryStatus, InboxItem, MatchKeys, NewDelivery,
    NewRequest, Outbox, RequestId, RequestState, UnmatchedCounts, UnmatchedEntry, Waiting,
    digest_from, digests_from_bytes, kind_from, request_id_from, status_from, subject_from,
};
use super::rows::{Added, OnConflict, Rows, list_contains, list_union};
use super::{
    Deleted, Digest, ImportMark, RecipientTag, RecordTag, Store, StoreError, StoreFuture, TagWrite,
};

/// Versioned schema changes, applied in order at start; each runs once per database.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE record_tags (
         digest BLOB PRIMARY KEY,
         controller TEXT NOT NULL,
         first_seen INTEGER NOT NULL,
         last_seen INTEGER NOT NULL
     );
     CREATE INDEX record_tags_last_seen ON record_tags (last_seen);
     CREATE TABLE record_recipients (
         record BLOB NOT NULL,
         recipient BLOB NOT NULL,
         PRIMARY KEY (record, recipient)
     );
     CREATE TABLE recipient_tags (
         digest BLOB NOT NULL,
         controller TEXT NOT NULL,
         first_seen INTEGER NOT NULL,
         last_seen INTEGER NOT NULL,
         PRIMARY KEY (digest, controller)
     );
     CREATE INDEX recipient_tags_last_seen ON recipient_tags (last_seen);",
    ),
    (
        2,
        "CREATE TABLE privacy_requests (
         id BLOB PRIMARY KEY,
         kind TEXT NOT NULL,
         received_at INTEGER NOT NULL,
         subject TEXT
     );
     CREATE TABLE privacy_deliveries (
         request_id BLOB NOT NULL REFERENCES privacy_requests (id),
         controller TEXT NOT NULL,
         webhook_id TEXT NOT NULL,
         verified INTEGER NOT NULL,
         status TEXT NOT NULL,
         attempts INTEGER NOT NULL DEFAULT 0,
         next_attempt_at INTEGER NOT NULL,
         lease_until INTEGER NOT NULL DEFAULT 0,
         claim INTEGER NOT NULL DEFAULT 0,
         last_error TEXT,
         updated_at INTEGER NOT NULL,
         settled_at INTEGER,
         PRIMARY KEY (request_id, controller)
     );
     CREATE INDEX privacy_deliveries_due ON privacy_deliveries (status, next_attempt_at);
     CREATE INDEX privacy_deliveries_inbox ON privacy_deliveries (controller, status);",
    ),
    (
        3,
        // Tag tables keyed by their digests alone (WITHOUT ROWID: one B-tree per table instead
        // of a rowid table and a key index), a record's recipients in its own row; where
        // imports stand; unmatched privacy requests.
        "CREATE TABLE record_tags_3 (
         digest BLOB PRIMARY KEY,
         controller TEXT NOT NULL,
         first_seen INTEGER NOT NULL,
         last_seen INTEGER NOT NULL,
         recipients BLOB NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO record_tags_3
         SELECT t.digest, t.controller, t.first_seen, t.last_seen,
             COALESCE((SELECT rg_digest_concat(l.recipient) FROM record_recipients l
                       WHERE l.record = t.digest), x'')
         FROM record_tags t;
     DROP TABLE record_tags;
     DROP TABLE record_recipients;
     ALTER TABLE record_tags_3 RENAME TO record_tags;
     CREATE INDEX record_tags_last_seen ON record_tags (last_seen);
     CREATE TABLE recipient_tags_3 (
         digest BLOB NOT NULL,
         controller TEXT NOT NULL,
         first_seen INTEGER NOT NULL,
         last_seen INTEGER NOT NULL,
         PRIMARY KEY (digest, controller)
     ) WITHOUT ROWID;
     INSERT INTO recipient_tags_3 SELECT digest, controller, first_seen, last_seen
         FROM recipient_tags;
     DROP TABLE recipient_tags;
     ALTER TABLE recipient_tags_3 RENAME TO recipient_tags;
     CREATE INDEX recipient_tags_last_seen ON recipient_tags (last_seen);
     CREATE TABLE tag_imports (
         name TEXT PRIMARY KEY,
         line INTEGER NOT NULL,
         updated_at INTEGER NOT NULL
     );
     CREATE TABLE privacy_unmatched (
         request_id BLOB PRIMARY KEY REFERENCES privacy_requests (id),
         received_at INTEGER NOT NULL,
         identifiers BLOB NOT NULL,
         tracking BLOB,
         expired INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX privacy_unmatched_age ON privacy_unmatched (expired, received_at);",
    ),
];

/// The writer connection's page cache, in KiB: part of the constant RSS the operations guide
/// documents beside `cache_entries`.
pub const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// The import's writer cache, in KiB: an import is a process of its own, and a cache that holds
/// the tag tables' upper levels and most leaves keeps sorted batches from reading pages back.
pub const IMPORT_CACHE_KIB: i64 = 128 * 1024;

/// WAL pages between the import's checkpoints (4 KiB pages: 256 MiB).
const IMPORT_CHECKPOINT_PAGES: i64 = 65_536;
/// WAL pages between a gateway's checkpoints (64 MiB; SQLite's default is 4 MiB).
const SERVE_CHECKPOINT_PAGES: i64 = 16_384;

/// What a connection is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A gateway: every commit durable (`synchronous = FULL`), a 32 MiB writer cache.
    Serve,
    /// `tags import`: `synchronous = NORMAL` (a commit lost to power failure takes its import
    /// mark with it, so `--resume` redoes exactly that batch) and a 512 MiB writer cache.
    Import,
}

/// Tags and privacy requests in a SQLite file.
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::caused_by(e)
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(err)?;
    register_functions(&conn)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    // FULL: a commit (a privacy request answered 202) survives power loss, not only a crash.
    // Tags are written in batches at most ten times a second, so the fsync per commit is cheap.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    // A multi-row upsert keeps a statement journal (to undo itself on error): in memory, not
    // in a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(err)?;
    Ok(conn)
}

/// The recipient-list functions the statements use (`store/rows.rs` holds their logic):
/// `rg_digest_union(list, more)`, `rg_digests_contain(list, digest)`, and the aggregate
/// `rg_digest_concat(digest)` the migration to in-row lists uses.
fn register_functions(conn: &Connection) -> Result<(), StoreError> {
    use rusqlite::functions::{Context, FunctionFlags};
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    fn blob(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Vec<u8>> {
        ctx.get::<Option<Vec<u8>>>(i).map(Option::unwrap_or_default)
    }
    conn.create_scalar_function("rg_digest_union", 2, flags, |ctx| {
        Ok(list_union(&blob(ctx, 0)?, &blob(ctx, 1)?))
    })
    .map_err(err)?;
    conn.create_scalar_function("rg_digests_contain", 2, flags, |ctx| {
        Ok(list_contains(&blob(ctx, 0)?, &blob(ctx, 1)?))
    })
    .map_err(err)?;
    conn.create_aggregate_function("rg_digest_concat", 1, flags, DigestConcat)
        .map_err(err)
}

/// `rg_digest_concat(digest)`: a group's digests side by side.
struct DigestConcat;

impl rusqlite::functions::Aggregate<Vec<u8>, Vec<u8>> for DigestConcat {
    fn init(&self, _: &mut rusqlite::functions::Context<'_>) -> rusqlite::Result<Vec<u8>> {
        Ok(Vec::new())
    }

    fn step(
        &self,
        ctx: &mut rusqlite::functions::Context<'_>,
        list: &mut Vec<u8>,
    ) -> rusqlite::Result<()> {
        list.extend_from_slice(&ctx.get::<Vec<u8>>(0)?);
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut rusqlite::functions::Context<'_>,
        list: Option<Vec<u8>>,
    ) -> rusqlite::Result<Vec<u8>> {
        Ok(list.unwrap_or_default())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_for(path, Purpose::Serve)
    }

    /// [`SqliteStore::open`], tuned for `purpose`.
    pub fn open_for(path: &Path, purpose: Purpose) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::new(format!("{}: {e}", dir.display())))?;
        }
        let mut writer = open(path)?;
        // Tag keys are random digests, so every insert lands on a random B-tree page; with
        // SQLite's default 2 MiB page cache most of them are read back from the file first.
        // A larger cache on the one writer keeps the upper levels and hot leaves resident.
        // Checkpoints far apart: a page that several batches dirty (random keys dirty pages
        // all over the tables) is copied into the database once, not once per batch.
        let (cache, checkpoint) = match purpose {
            Purpose::Serve => (WRITER_CACHE_KIB, SERVE_CHECKPOINT_PAGES),
            Purpose::Import => {
                writer
                    .pragma_update(None, "synchronous", "NORMAL")
                    .map_err(err)?;
                (IMPORT_CACHE_KIB, IMPORT_CHECKPOINT_PAGES)
            }
        };
        writer
            .pragma_update(None, "wal_autocheckpoint", checkpoint)
            .map_err(err)?;
        writer
            .pragma_update(None, "cache_size", -cache)
            .map_err(err)?;
        // Multi-row statements come in up to CHUNK lengths per table.
        writer.set_prepared_statement_cache_capacity(4 * CHUNK);
        migrate(&mut writer)?;
        let reader = open(path)?;
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    fn run<T: Send + 'static>(
        conn: &Arc<Mutex<Connection>>,
        op: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let conn = conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = conn
                    .lock()
                    .map_err(|_| StoreError::new("connection lock poisoned"))?;
                op(&mut conn)
            })
            .await
            .map_err(err)?
        })
    }
}

/// Applies missing migrations; `BEGIN IMMEDIATE` serialises gateways starting at once.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(err)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s','now'))",
            params![version],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}

/// Rows per multi-row statement: one statement's parse and setup serve this many rows.
const CHUNK: usize = 64;

/// `INSERT ... VALUES (?,?,?,?), ...` for `n` rows of `width` parameters, then `tail`.
fn values_sql(head: &str, width: usize, n: usize, tail: &str) -> String {
    let row = format!("({})", vec!["?"; width].join(","));
    format!("{head} VALUES {} {tail}", vec![row.as_str(); n].join(","))
}

/// Runs `sql(n)` over `rows` in chunks of [`CHUNK`] rows (the last chunk may be shorter), with
/// each row's parameters from `bind`; returns the rows changed.
fn chunked<T>(
    tx: &rusqlite::Transaction<'_>,
    rows: &[T],
    sql: impl Fn(usize) -> String,
    bind: impl Fn(&T, &mut Vec<rusqlite::types::Value>),
) -> Result<u64, StoreError> {
    let mut changed = 0;
    let mut params = Vec::new();
    for chunk in rows.chunks(CHUNK) {
        params.clear();
        for row in chunk {
            bind(row, &mut params);
        }
        changed += tx
            .prepare_cached(&sql(chunk.len()))
            .map_err(err)?
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(err)? as u64;
    }
    Ok(changed)
}

/// Writes a batch's rows, sorted by key, with multi-row statements: the one write path of live
/// sightings and imports.
fn apply_rows(
    tx: &rusqlite::Transaction<'_>,
    rows: &Rows,
    conflict: OnConflict,
) -> Result<Added, StoreError> {
    use rusqlite::types::Value;
    let blob = |d: &Digest| Value::Blob(d.to_vec());
    let text = |c: &Arc<str>| Value::Text(c.to_string());
    // First controller wins: another controller's sighting changes nothing. The owner's adds
    // the recipients its row does not list; the same list again is told by one comparison.
    let record_conflict = match conflict {
        OnConflict::Refresh => {
            "ON CONFLICT (digest) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen),
                 recipients = CASE WHEN excluded.recipients = recipients THEN recipients
                     ELSE rg_digest_union(recipients, excluded.recipients) END
             WHERE record_tags.controller = excluded.controller"
        }
        OnConflict::Keep => {
            "ON CONFLICT (digest) DO UPDATE
                 SET recipients = rg_digest_union(recipients, excluded.recipients)
             WHERE record_tags.controller = excluded.controller
               AND CASE WHEN excluded.recipients = recipients THEN 0
                   ELSE length(rg_digest_union(recipients, excluded.recipients)) > length(recipients)
                   END"
        }
    };
    let records = chunked(
        tx,
        &rows.records,
        |n| {
            values_sql(
                "INSERT INTO record_tags (digest, controller, first_seen, last_seen, recipients)",
                5,
                n,
                record_conflict,
            )
        },
        |r, p| {
            p.extend([
                blob(&r.digest),
                text(&r.controller),
                Value::Integer(r.first as i64),
                Value::Integer(r.last as i64),
                Value::Blob(r.recipient_bytes()),
            ])
        },
    )?;
    let recipient_conflict = match conflict {
        OnConflict::Refresh => {
            "ON CONFLICT (digest, controller) DO UPDATE
             SET last_seen = MAX(last_seen, excluded.last_seen)
             WHERE excluded.last_seen > recipient_tags.last_seen"
        }
        OnConflict::Keep => "ON CONFLICT DO NOTHING",
    };
    let recipients = chunked(
        tx,
        &rows.recipients,
        |n| {
            values_sql(
                "INSERT INTO recipient_tags (digest, controller, first_seen, last_seen)",
                4,
                n,
                recipient_conflict,
            )
        },
        |r, p| {
            p.extend([
                blob(&r.digest),
                text(&r.controller),
                Value::Integer(r.first as i64),
                Value::Integer(r.last as i64),
            ])
        },
    )?;
    Ok(Added {
        records,
        recipients,
    })
}

/// A request's deliveries, pending and due at `at` (intake, or a later match).
fn insert_deliveries(
    tx: &rusqlite::Transaction<'_>,
    id: &RequestId,
    deliveries: &[NewDelivery],
    at: u64,
) -> Result<(), StoreError> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO privacy_deliveries (request_id, controller, webhook_id, verified,
                 status, next_attempt_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
        )
        .map_err(err)?;
    for delivery in deliveries {
        insert
            .execute(params![
                &id[..],
                &*delivery.controller,
                delivery.webhook_id,
                delivery.verified,
                at as i64
            ])
            .map_err(err)?;
    }
    Ok(())
}

/// A `record_tags` row read as (controller, first_seen, last_seen, recipients).
fn record_tag_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RecordTag, StoreError>> {
    let (controller, first_seen, last_seen, recipients): (String, i64, i64, Vec<u8>) =
        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
    Ok(digests_from_bytes(&recipients).map(|recipients| RecordTag {
        controller: controller.into(),
        first_seen: first_seen as u64,
        last_seen: last_seen as u64,
        recipients,
    }))
}

impl Store for SqliteStore {
    fn write(&self, batch: Vec<TagWrite>) -> StoreFuture<'_, ()> {
        SqliteStore::run(&self.writer, move |conn| {
            let rows = Rows::from_writes(&batch);
            let tx = conn.transaction().map_err(err)?;
            apply_rows(&tx, &rows, OnConflict::Refresh)?;
            tx.commit().map_err(err)
        })
    }

    fn import(&self, rows: Rows, mark: ImportMark) -> StoreFuture<'_, Added> {
        SqliteStore::run(&self.writer, move |conn| {
            let tx = conn.transaction().map_err(err)?;
            let added = apply_rows(&tx, &rows, OnConflict::Keep)?;
            tx.execute(
                "INSERT INTO tag_imports (name, line, updated_at)
                 VALUES (?1, ?2, strftime('%s','now'))
                 ON CONFLICT (name) DO UPDATE SET line = excluded.line,
                     updated_at = excluded.updated_at",
                params![mark.name, mark.line as i64],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(added)
        })
    }

    fn import_mark(&self, name: String) -> StoreFuture<'_, Option<u64>> {
        SqliteStore::run(&self.reader, move |conn| {
            conn.query_row(
                "SELECT line FROM tag_imports WHERE name = ?1",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|line| line.map(|l| l as u64))
            .map_err(err)
        })
    }

    fn record(&self, digest: Digest) -> StoreFuture<'_, Option<RecordTag>> {
        SqliteStore::run(&self.reader, move |conn| {
            conn.prepare_cached(
                "SELECT controller, first_seen, last_seen, recipients FROM record_tags
                 WHERE digest = ?1",
            )
            .map_err(err)?
            .query_row(params![&digest[..]], record_tag_row)
            .optional()
            .map_err(err)?
            .transpose()
        })
    }

    fn records(&self, digests: Vec<Digest>) -> StoreFuture<'_, Vec<(Digest, RecordTag)>> {
        SqliteStore::run(&self.reader, move |conn| {
            let mut found = Vec::new();
            for chunk in digests.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(",");
                let params: Vec<&dyn rusqlite::ToSql> =
                    chunk.iter().map(|d| d as &dyn rusqlite::ToSql).collect();
                let mut tags = conn
                    .prepare(&format!(
                        "SELECT controller, first_seen, last_seen, recipients, digest
                         FROM record_tags WHERE digest IN ({marks})"
                    ))
                    .map_err(err)?;
                let rows = tags
                    .query_map(params.as_slice(), |r| {
                        Ok((r.get::<_, Vec<u8>>(4)?, record_tag_row(r)?))
                    })
                    .map_err(err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                for (digest, tag) in rows {
                    found.push((digest_from(digest)?, tag?));
                }
            }
            Ok(found)
        })
    }

    fn recipient(&self, digest: Digest) -> StoreFuture<'_, Vec<RecipientTag>> {
        SqliteStore::run(&self.reader, move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT controller, first_seen, last_seen FROM recipient_tags
                     WHERE digest = ?1 ORDER BY first_seen, controller",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![&digest[..]], |r| {
                    Ok(RecipientTag {
                        controller: r.get::<_, String>(0)?.into(),
                        first_seen: r.get::<_, i64>(1)? as u64,
                        last_seen: r.get::<_, i64>(2)? as u64,
                    })
                })
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            Ok(rows)
        })
    }

    fn delete_expired(&self, before: u64, limit: u32) -> StoreFuture<'_, Deleted> {
        SqliteStore::run(&self.writer, move |conn| {
            let tx = conn.transaction().map_err(err)?;
            let records = tx
                .prepare_cached(
                    "DELETE FROM record_tags WHERE digest IN (
                         SELECT digest FROM record_tags WHERE last_seen < ?1 LIMIT ?2)",
                )
                .map_err(err)?
                .execute(params![before as i64, limit])
                .map_err(err)?;
            let recipients = tx
                .execute(
                    "DELETE FROM recipient_tags WHERE (digest, controller) IN (
                         SELECT digest, controller FROM recipient_tags
                         WHERE last_seen < ?1 LIMIT ?2)",
                    params![before as i64, limit],
                )
                .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(Deleted {
                records: records as u64,
                recipients: recipients as u64,
            })
        })
    }

    fn counts(&self) -> StoreFuture<'_, (u64, u64)> {
        SqliteStore::run(&self.reader, |conn| {
            let count = |table: &str| -> Result<u64, StoreError> {
                conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(err)
            };
            Ok((count("record_tags")?, count("recipient_tags")?))
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        SqliteStore::run(&self.reader, |conn| {
            conn.query_row("SELECT 1", [], |_| Ok(())).map_err(err)
        })
    }

    fn erase(&self, controller: Arc<str>, recipients: Vec<Digest>) -> StoreFuture<'_, Deleted> {
        SqliteStore::run(&self.writer, move |conn| {
            let tx = conn.transaction().map_err(err)?;
            let mut deleted = Deleted::default();
            {
                // `instr` finds candidates fast; the function checks a digest boundary.
                let mut records = tx
                    .prepare_cached(
                        "DELETE FROM record_tags WHERE controller = ?1
                           AND instr(recipients, ?2) > 0 AND rg_digests_contain(recipients, ?2)",
                    )
                    .map_err(err)?;
                let mut recipient = tx
                    .prepare_cached(
                        "DELETE FROM recipient_tags WHERE digest = ?1 AND controller = ?2",
                    )
                    .map_err(err)?;
                for digest in &recipients {
                    deleted.records += records
                        .execute(params![&*controller, &digest[..]])
                        .map_err(err)? as u64;
                    deleted.recipients += recipient
                        .execute(params![&digest[..], &*controller])
                        .map_err(err)? as u64;
                }
            }
            tx.commit().map_err(err)?;
            Ok(deleted)
        })
    }
}

impl Outbox for SqliteStore {
    fn insert(&self, request: NewRequest) -> StoreFuture<'_, ()> {
        SqliteStore::run(&self.writer, move |conn| {
            let subject = request
                .subject
                .as_ref()
                .map(|s| serde_json::to_string(s).map_err(err))
                .transpose()?;
            let tx = conn.transaction().map_err(err)?;
            tx.execute(
                "INSERT INTO privacy_requests (id, kind, received_at, subject)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    &request.id[..],
                    request.kind.as_str(),
                    request.received_at as i64,
                    subject
                ],
            )
            .map_err(err)?;
            insert_deliveries(&tx, &request.id, &request.deliveries, request.received_at)?;
            if let Some(keys) = &request.unmatched {
                tx.execute(
                    "INSERT INTO privacy_unmatched (request_id, received_at, identifiers, tracking)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        &request.id[..],
                        request.received_at as i64,
                        keys.identifiers.concat(),
                        (!keys.tracking.is_empty()).then(|| keys.tracking.concat())
                    ],
                )
                .map_err(err)?;
            }
            tx.commit().map_err(err)
        })
    }

    fn state(&self, id: RequestId) -> StoreFuture<'_, Option<RequestState>> {
        SqliteStore::run(&self.reader, move |conn| {
            let received_at: Option<i64> = conn
                .prepare_cached("SELECT received_at FROM privacy_requests WHERE id = ?1")
                .map_err(err)?
                .query_row(params![&id[..]], |r| r.get(0))
                .optional()
                .map_err(err)?;
            let Some(received_at) = received_at else {
                return Ok(None);
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT verified, status FROM privacy_deliveries WHERE request_id = ?1",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![&id[..]], |r| {
                    Ok((r.get::<_, bool>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            let deliveries = rows
                .into_iter()
                .map(|(verified, status)| {
                    Ok(DeliveryState {
                        verified,
                        status: status_from(&status)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(Some(RequestState {
                received_at: received_at as u64,
                deliveries,
            }))
        })
    }

    fn claim(
        &self,
        controllers: Vec<Arc<str>>,
        now: u64,
        lease_until: u64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<Claimed>> {
        SqliteStore::run(&self.writer, move |conn| {
            let names: Vec<&str> = controllers.iter().map(|c| &**c).collect();
            let names = serde_json::to_string(&names).map_err(err)?;
            let claim: u64 = rand::random();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err)?;
            let mut claimed = {
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE privacy_deliveries
                         SET attempts = attempts + 1, lease_until = ?3, claim = ?4, updated_at = ?2
                         WHERE rowid IN (
                             SELECT rowid FROM privacy_deliveries
                             WHERE status = 'pending' AND next_attempt_at <= ?2
                               AND lease_until <= ?2
                               AND controller IN (SELECT value FROM json_each(?1))
                             ORDER BY next_attempt_at LIMIT ?5)
                         RETURNING request_id, controller, webhook_id, verified, attempts",
                    )
                    .map_err(err)?;
                let rows = stmt
                    .query_map(
                        params![names, now as i64, lease_until as i64, claim as i64, limit],
                        |r| {
                            Ok((
                                r.get::<_, Vec<u8>>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, bool>(3)?,
                                r.get::<_, u32>(4)?,
                            ))
                        },
                    )
                    .map_err(err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                let mut request = tx
                    .prepare_cached(
                        "SELECT kind, received_at, subject FROM privacy_requests WHERE id = ?1",
                    )
                    .map_err(err)?;
                let mut claimed = Vec::with_capacity(rows.len());
                for (id, controller, webhook_id, verified, attempts) in rows {
                    let (kind, received_at, subject) = request
                        .query_row(params![&id], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, Option<String>>(2)?,
                            ))
                        })
                        .map_err(err)?;
                    claimed.push(Claimed {
                        request_id: request_id_from(id)?,
                        controller: controller.into(),
                        webhook_id,
                        kind: kind_from(&kind)?,
                        received_at: received_at as u64,
                        verified,
                        subject: subject_from(subject)?,
                        attempts,
                        claim,
                    });
                }
                claimed
            };
            tx.commit().map_err(err)?;
            claimed.sort_by_key(|c| c.received_at);
            Ok(claimed)
        })
    }

    fn finish(
        &self,
        request_id: RequestId,
        controller: Arc<str>,
        claim: u64,
        attempt: Attempt,
    ) -> StoreFuture<'_, bool> {
        SqliteStore::run(&self.writer, move |conn| {
            let (status, next, error, at, settled) = match &attempt {
                Attempt::Delivered { at } => ("delivered", None, None, *at, Some(*at)),
                Attempt::Retry { at, next, error } => {
                    ("pending", Some(*next), Some(error.as_str()), *at, None)
                }
                Attempt::Dead { at, error } => ("dead", None, Some(error.as_str()), *at, None),
            };
            let changed = conn
                .prepare_cached(
                    "UPDATE privacy_deliveries
                     SET status = ?4, next_attempt_at = COALESCE(?5, next_attempt_at),
                         last_error = ?6, updated_at = ?7, settled_at = ?8, lease_until = 0
                     WHERE request_id = ?1 AND controller = ?2 AND claim = ?3
                       AND status = 'pending'",
                )
                .map_err(err)?
                .execute(params![
                    &request_id[..],
                    &*controller,
                    claim as i64,
                    status,
                    next.map(|n| n as i64),
                    error,
                    at as i64,
                    settled.map(|s| s as i64)
                ])
                .map_err(err)?;
            Ok(changed == 1)
        })
    }

    fn inbox(
        &self,
        controller: Arc<str>,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<InboxItem>> {
        SqliteStore::run(&self.reader, move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT r.id, r.kind, d.status, r.received_at, d.verified, r.subject
                     FROM privacy_deliveries d JOIN privacy_requests r ON r.id = d.request_id
                     WHERE d.controller = ?1 AND (?2 IS NULL OR d.status = ?2)
                     ORDER BY r.received_at, r.id LIMIT ?3",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(
                    params![&*controller, status.map(DeliveryStatus::as_str), limit],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, bool>(4)?,
                            r.get::<_, Option<String>>(5)?,
                        ))
                    },
                )
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            rows.into_iter()
                .map(|(id, kind, status, received_at, verified, subject)| {
                    Ok(InboxItem {
                        request_id: request_id_from(id)?,
                        kind: kind_from(&kind)?,
                        status: status_from(&status)?,
                        received_at: received_at as u64,
                        verified,
                        subject: subject_from(subject)?,
                    })
                })
                .collect()
        })
    }

    fn acknowledge(
        &self,
        request_id: RequestId,
        controller: Arc<str>,
        at: u64,
    ) -> StoreFuture<'_, bool> {
        SqliteStore::run(&self.writer, move |conn| {
            let tx = conn.transaction().map_err(err)?;
            let found = tx
                .query_row(
                    "SELECT 1 FROM privacy_deliveries WHERE request_id = ?1 AND controller = ?2",
                    params![&request_id[..], &*controller],
                    |_| Ok(()),
                )
                .optional()
                .map_err(err)?
                .is_some();
            tx.execute(
                "UPDATE privacy_deliveries
                 SET status = 'acknowledged', settled_at = ?3, updated_at = ?3, lease_until = 0
                 WHERE request_id = ?1 AND controller = ?2 AND status <> 'acknowledged'",
                params![&request_id[..], &*controller, at as i64],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(found)
        })
    }

    fn expire_subjects(&self, before: u64, limit: u32) -> StoreFuture<'_, u64> {
        SqliteStore::run(&self.writer, move |conn| {
            let erased = conn
                .prepare_cached(
                    "UPDATE privacy_requests SET subject = NULL WHERE id IN (
                         SELECT r.id FROM privacy_requests r
                         WHERE r.subject IS NOT NULL AND NOT EXISTS (
                             SELECT 1 FROM privacy_deliveries d
                             WHERE d.request_id = r.id
                               AND (d.settled_at IS NULL OR d.settled_at >= ?1))
                           AND NOT EXISTS (
                             SELECT 1 FROM privacy_unmatched u WHERE u.request_id = r.id)
                         LIMIT ?2)",
                )
                .map_err(err)?
                .execute(params![before as i64, limit])
                .map_err(err)?;
            Ok(erased as u64)
        })
    }

    fn backlog(&self) -> StoreFuture<'_, Backlog> {
        SqliteStore::run(&self.reader, |conn| {
            let (pending, oldest) = conn
                .query_row(
                    "SELECT COUNT(*), MIN(r.received_at)
                     FROM privacy_deliveries d JOIN privacy_requests r ON r.id = d.request_id
                     WHERE d.status = 'pending'",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
                )
                .map_err(err)?;
            Ok(Backlog {
                pending: pending as u64,
                oldest: oldest.map(|o| o as u64),
            })
        })
    }

    fn waiting(&self, after: Option<RequestId>, limit: u32) -> StoreFuture<'_, Vec<Waiting>> {
        SqliteStore::run(&self.reader, move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT u.request_id, u.received_at, u.identifiers, u.tracking, r.subject
                     FROM privacy_unmatched u LEFT JOIN privacy_requests r ON r.id = u.request_id
                     WHERE u.expired = 0 AND u.request_id > ?1 ORDER BY u.request_id LIMIT ?2",
                )
                .map_err(err)?;
            let after = after.map_or_else(Vec::new, |a| a.to_vec());
            let rows = stmt
                .query_map(params![after, limit], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, Option<Vec<u8>>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            rows.into_iter()
                .map(|(id, received_at, identifiers, tracking, subject)| {
                    Ok(Waiting {
                        id: request_id_from(id)?,
                        received_at: received_at as u64,
                        keys: MatchKeys {
                            identifiers: digests_from_bytes(&identifiers)?,
                            tracking: tracking
                                .map_or(Ok(Vec::new()), |t| digests_from_bytes(&t))?,
                        },
                        subject: subject_from(subject)?,
                    })
                })
                .collect()
        })
    }

    fn matched(
        &self,
        id: RequestId,
        deliveries: Vec<NewDelivery>,
        at: u64,
    ) -> StoreFuture<'_, bool> {
        SqliteStore::run(&self.writer, move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err)?;
            let waited = tx
                .execute(
                    "DELETE FROM privacy_unmatched WHERE request_id = ?1 AND expired = 0",
                    params![&id[..]],
                )
                .map_err(err)?;
            if waited == 0 {
                return Ok(false);
            }
            insert_deliveries(&tx, &id, &deliveries, at)?;
            tx.commit().map_err(err)?;
            Ok(true)
        })
    }

    fn expire_unmatched(&self, before: u64, limit: u32) -> StoreFuture<'_, u64> {
        SqliteStore::run(&self.writer, move |conn| {
            let tx = conn.transaction().map_err(err)?;
            let ids: Vec<Vec<u8>> = tx
                .prepare_cached(
                    "UPDATE privacy_unmatched SET expired = 1, identifiers = x'', tracking = NULL
                     WHERE request_id IN (
                         SELECT request_id FROM privacy_unmatched
                         WHERE expired = 0 AND received_at < ?1 LIMIT ?2)
                     RETURNING request_id",
                )
                .map_err(err)?
                .query_map(params![before as i64, limit], |r| r.get(0))
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?;
            {
                let mut erase = tx
                    .prepare_cached("UPDATE privacy_requests SET subject = NULL WHERE id = ?1")
                    .map_err(err)?;
                for id in &ids {
                    erase.execute(params![id]).map_err(err)?;
                }
            }
            tx.commit().map_err(err)?;
            Ok(ids.len() as u64)
        })
    }

    fn unmatched(&self, limit: u32) -> StoreFuture<'_, Vec<UnmatchedEntry>> {
        SqliteStore::run(&self.reader, move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT u.request_id, r.kind, u.received_at, u.expired
                     FROM privacy_unmatched u JOIN privacy_requests r ON r.id = u.request_id
                     ORDER BY u.received_at, u.request_id LIMIT ?1",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(params![limit], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                })
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            rows.into_iter()
                .map(|(id, kind, received_at, expired)| {
                    Ok(UnmatchedEntry {
                        id: request_id_from(id)?,
                        kind: kind_from(&kind)?,
                        received_at: received_at as u64,
                        expired,
                    })
                })
                .collect()
        })
    }

    fn unmatched_counts(&self) -> StoreFuture<'_, UnmatchedCounts> {
        SqliteStore::run(&self.reader, |conn| {
            conn.query_row(
                "SELECT COUNT(*) FILTER (WHERE expired = 0), COUNT(*) FILTER (WHERE expired = 1)
                 FROM privacy_unmatched",
                [],
                |r| {
                    Ok(UnmatchedCounts {
                        waiting: r.get::<_, i64>(0)? as u64,
                        expired: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .map_err(err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("tags.db")).unwrap();
        super::super::conformance::run(&store).await;
        super::super::conformance::run_outbox(&store).await;
    }

    #[tokio::test]
    async fn survives_reopening_and_migrates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/tags.db");
        let store = SqliteStore::open(&path).unwrap();
        let controller: Arc<str> = "acme".into();
        store
            .write(vec![TagWrite::Record {
                digest: [1; 32],
                controller: controller.clone(),
                recipients: vec![[2; 32]],
                seen: 10,
            }])
            .await
            .unwrap();
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        let tag = reopened.record([1; 32]).await.unwrap().unwrap();
        assert_eq!((&*tag.controller, tag.recipients.len()), ("acme", 1));
        let versions: i64 = reopened
            .reader
            .lock()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(versions, MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn a_database_from_before_in_row_recipients_keeps_every_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tags.db");
        {
            // The schema as version 2 left it, with a record listing two recipients.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,
                     applied_at INTEGER NOT NULL);
                 INSERT INTO schema_migrations VALUES (1, 0), (2, 0);",
            )
            .unwrap();
            for (_, sql) in &MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute(
                "INSERT INTO record_tags VALUES (?1, 'acme', 10, 20)",
                params![&[1u8; 32][..]],
            )
            .unwrap();
            for recipient in [[2u8; 32], [3u8; 32]] {
                conn.execute(
                    "INSERT INTO record_recipients VALUES (?1, ?2)",
                    params![&[1u8; 32][..], &recipient[..]],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO recipient_tags VALUES (?1, 'acme', 10, 20)",
                params![&[2u8; 32][..]],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let tag = store.record([1; 32]).await.unwrap().unwrap();
        assert_eq!(
            (&*tag.controller, tag.first_seen, tag.last_seen),
            ("acme", 10, 20)
        );
        let mut recipients = tag.recipients;
        recipients.sort();
        assert_eq!(recipients, vec![[2; 32], [3; 32]]);
        assert_eq!(store.recipient([2; 32]).await.unwrap().len(), 1);
        // Erasure finds the record by a recipient in its list.
        let erased = store.erase("acme".into(), vec![[3; 32]]).await.unwrap();
        assert_eq!(erased.records, 1);
    }

    #[test]
    fn concurrent_opens_migrate_safely() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tags.db");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path).map(|_| ()))
            })
            .collect();
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
    }
}
