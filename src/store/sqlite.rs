//! The `sqlite` backend (the default): one embedded file in WAL mode, for a single gateway.
//!
//! rusqlite is synchronous, so every operation runs on tokio's blocking pool. Writes go through
//! one connection and reads through another: in WAL mode readers never wait for the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::{Deleted, Digest, RecipientTag, RecordTag, Store, StoreError, StoreFuture, TagWrite};

/// Versioned schema changes, applied in order at start; each runs once per database.
const MIGRATIONS: &[(i64, &str)] = &[(
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
)];

/// Tags in a SQLite file.
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        }
        let mut writer = open(path)?;
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
                let mut conn = conn.lock().map_err(|_| err("connection lock poisoned"))?;
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

fn write_batch(conn: &mut Connection, batch: &[TagWrite]) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(err)?;
    {
        let mut record = tx
            .prepare_cached(
                "INSERT INTO record_tags (digest, controller, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (digest) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)
                 WHERE record_tags.controller = excluded.controller",
            )
            .map_err(err)?;
        let mut owner = tx
            .prepare_cached("SELECT controller FROM record_tags WHERE digest = ?1")
            .map_err(err)?;
        let mut link = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO record_recipients (record, recipient) VALUES (?1, ?2)",
            )
            .map_err(err)?;
        let mut recipient = tx
            .prepare_cached(
                "INSERT INTO recipient_tags (digest, controller, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (digest, controller) DO UPDATE SET
                     last_seen = MAX(last_seen, excluded.last_seen)",
            )
            .map_err(err)?;
        for write in batch {
            match write {
                TagWrite::Record {
                    digest,
                    controller,
                    recipients,
                    seen,
                } => {
                    record
                        .execute(params![&digest[..], &**controller, *seen as i64])
                        .map_err(err)?;
                    let owned_by: String = owner
                        .query_row(params![&digest[..]], |r| r.get(0))
                        .map_err(err)?;
                    if owned_by == **controller {
                        for r in recipients {
                            link.execute(params![&digest[..], &r[..]]).map_err(err)?;
                        }
                    }
                }
                TagWrite::Recipient {
                    digest,
                    controller,
                    seen,
                } => {
                    recipient
                        .execute(params![&digest[..], &**controller, *seen as i64])
                        .map_err(err)?;
                }
            }
        }
    }
    tx.commit().map_err(err)
}

fn digest_from(bytes: Vec<u8>) -> Result<Digest, StoreError> {
    bytes
        .try_into()
        .map_err(|_| err("a stored digest is not 32 bytes"))
}

impl Store for SqliteStore {
    fn write(&self, batch: Vec<TagWrite>) -> StoreFuture<'_, ()> {
        SqliteStore::run(&self.writer, move |conn| write_batch(conn, &batch))
    }

    fn record(&self, digest: Digest) -> StoreFuture<'_, Option<RecordTag>> {
        SqliteStore::run(&self.reader, move |conn| {
            let row: Option<(String, i64, i64)> = conn
                .prepare_cached(
                    "SELECT controller, first_seen, last_seen FROM record_tags WHERE digest = ?1",
                )
                .map_err(err)?
                .query_row(params![&digest[..]], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
                .map_err(err)?;
            let Some((controller, first_seen, last_seen)) = row else {
                return Ok(None);
            };
            let mut stmt = conn
                .prepare_cached("SELECT recipient FROM record_recipients WHERE record = ?1")
                .map_err(err)?;
            let recipients = stmt
                .query_map(params![&digest[..]], |r| r.get::<_, Vec<u8>>(0))
                .map_err(err)?
                .map(|r| r.map_err(err).and_then(digest_from))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(RecordTag {
                controller: controller.into(),
                first_seen: first_seen as u64,
                last_seen: last_seen as u64,
                recipients,
            }))
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
                        "SELECT digest, controller, first_seen, last_seen FROM record_tags
                         WHERE digest IN ({marks})"
                    ))
                    .map_err(err)?;
                let rows = tags
                    .query_map(params.as_slice(), |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })
                    .map_err(err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                let mut links = conn
                    .prepare(&format!(
                        "SELECT record, recipient FROM record_recipients WHERE record IN ({marks})"
                    ))
                    .map_err(err)?;
                let links = links
                    .query_map(params.as_slice(), |r| {
                        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
                    })
                    .map_err(err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(err)?;
                for (digest, controller, first_seen, last_seen) in rows {
                    let recipients = links
                        .iter()
                        .filter(|(record, _)| *record == digest)
                        .map(|(_, r)| digest_from(r.clone()))
                        .collect::<Result<Vec<_>, _>>()?;
                    found.push((
                        digest_from(digest)?,
                        RecordTag {
                            controller: controller.into(),
                            first_seen: first_seen as u64,
                            last_seen: last_seen as u64,
                            recipients,
                        },
                    ));
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
            // One selection of expired records; their recipient links go with exactly those.
            let gone: Vec<Vec<u8>> = tx
                .prepare_cached(
                    "DELETE FROM record_tags WHERE digest IN (
                         SELECT digest FROM record_tags WHERE last_seen < ?1 LIMIT ?2)
                     RETURNING digest",
                )
                .map_err(err)?
                .query_map(params![before as i64, limit], |r| r.get(0))
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?;
            {
                let mut unlink = tx
                    .prepare_cached("DELETE FROM record_recipients WHERE record = ?1")
                    .map_err(err)?;
                for digest in &gone {
                    unlink.execute(params![digest]).map_err(err)?;
                }
            }
            let recipients = tx
                .execute(
                    "DELETE FROM recipient_tags WHERE rowid IN (
                         SELECT rowid FROM recipient_tags WHERE last_seen < ?1 LIMIT ?2)",
                    params![before as i64, limit],
                )
                .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(Deleted {
                records: gone.len() as u64,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("tags.db")).unwrap();
        super::super::conformance::run(&store).await;
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
