//! The `postgres` backend: one database shared by several gateway replicas.
//!
//! Every operation is a short transaction on a pooled connection. Migrations take a transaction
//! advisory lock, so replicas starting together apply each one once; retention deletes with
//! `FOR UPDATE SKIP LOCKED`, so replicas running it together neither block nor double-count.
//! Connections are plaintext: the database is expected on a private network or a local socket.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::{Deleted, Digest, RecipientTag, RecordTag, Store, StoreError, StoreFuture, TagWrite};

/// Versioned schema changes, applied in order at start.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE record_tags (
         digest BYTEA PRIMARY KEY,
         controller TEXT NOT NULL,
         first_seen BIGINT NOT NULL,
         last_seen BIGINT NOT NULL
     );
     CREATE INDEX record_tags_last_seen ON record_tags (last_seen);
     CREATE TABLE record_recipients (
         record BYTEA NOT NULL,
         recipient BYTEA NOT NULL,
         PRIMARY KEY (record, recipient)
     );
     CREATE TABLE recipient_tags (
         digest BYTEA NOT NULL,
         controller TEXT NOT NULL,
         first_seen BIGINT NOT NULL,
         last_seen BIGINT NOT NULL,
         PRIMARY KEY (digest, controller)
     );
     CREATE INDEX recipient_tags_last_seen ON recipient_tags (last_seen);",
)];

/// Key of the advisory lock that serialises migrations ("rg-tags").
const MIGRATION_LOCK: i64 = 0x0072_672d_7461_6773;

/// Longest wait for a pooled connection or a new one.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// Tags in PostgreSQL.
pub struct PostgresStore {
    pool: Pool,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl PostgresStore {
    /// Connects to `url` and brings the schema up to date.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| err(format!("invalid PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(err)?;
        let store = PostgresStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(err)?;
        let tx = client.transaction().await.map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at BIGINT NOT NULL
             )",
        )
        .await
        .map_err(err)?;
        let current: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(err)?
            .get(0);
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql).await.map_err(err)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at)
                 VALUES ($1, EXTRACT(EPOCH FROM now())::BIGINT)",
                &[version],
            )
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }
}

fn digest_from(bytes: Vec<u8>) -> Result<Digest, StoreError> {
    bytes
        .try_into()
        .map_err(|_| err("a stored digest is not 32 bytes"))
}

impl Store for PostgresStore {
    fn write(&self, batch: Vec<TagWrite>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut client = self.pool.get().await.map_err(err)?;
            let tx = client.transaction().await.map_err(err)?;
            let record = tx
                .prepare_cached(
                    "INSERT INTO record_tags (digest, controller, first_seen, last_seen)
                     VALUES ($1, $2, $3, $3)
                     ON CONFLICT (digest) DO UPDATE
                         SET last_seen = GREATEST(record_tags.last_seen, excluded.last_seen)
                         WHERE record_tags.controller = excluded.controller
                     RETURNING controller",
                )
                .await
                .map_err(err)?;
            let link = tx
                .prepare_cached(
                    "INSERT INTO record_recipients (record, recipient)
                     SELECT $1, unnest($2::BYTEA[]) ON CONFLICT DO NOTHING",
                )
                .await
                .map_err(err)?;
            let recipient = tx
                .prepare_cached(
                    "INSERT INTO recipient_tags (digest, controller, first_seen, last_seen)
                     VALUES ($1, $2, $3, $3)
                     ON CONFLICT (digest, controller) DO UPDATE
                         SET last_seen = GREATEST(recipient_tags.last_seen, excluded.last_seen)",
                )
                .await
                .map_err(err)?;
            for write in &batch {
                match write {
                    TagWrite::Record {
                        digest,
                        controller,
                        recipients,
                        seen,
                    } => {
                        let seen = *seen as i64;
                        // No row back: the record belongs to another controller.
                        let owned = tx
                            .query_opt(&record, &[&&digest[..], &&**controller, &seen])
                            .await
                            .map_err(err)?
                            .is_some();
                        if owned && !recipients.is_empty() {
                            let list: Vec<&[u8]> = recipients.iter().map(|r| &r[..]).collect();
                            tx.execute(&link, &[&&digest[..], &list])
                                .await
                                .map_err(err)?;
                        }
                    }
                    TagWrite::Recipient {
                        digest,
                        controller,
                        seen,
                    } => {
                        tx.execute(&recipient, &[&&digest[..], &&**controller, &(*seen as i64)])
                            .await
                            .map_err(err)?;
                    }
                }
            }
            tx.commit().await.map_err(err)
        })
    }

    fn record(&self, digest: Digest) -> StoreFuture<'_, Option<RecordTag>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let Some(row) = client
                .query_opt(
                    "SELECT controller, first_seen, last_seen FROM record_tags WHERE digest = $1",
                    &[&&digest[..]],
                )
                .await
                .map_err(err)?
            else {
                return Ok(None);
            };
            let recipients = client
                .query(
                    "SELECT recipient FROM record_recipients WHERE record = $1",
                    &[&&digest[..]],
                )
                .await
                .map_err(err)?
                .into_iter()
                .map(|r| digest_from(r.get(0)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(RecordTag {
                controller: row.get::<_, String>(0).into(),
                first_seen: row.get::<_, i64>(1) as u64,
                last_seen: row.get::<_, i64>(2) as u64,
                recipients,
            }))
        })
    }

    fn recipient(&self, digest: Digest) -> StoreFuture<'_, Vec<RecipientTag>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let rows = client
                .query(
                    "SELECT controller, first_seen, last_seen FROM recipient_tags
                     WHERE digest = $1 ORDER BY first_seen, controller",
                    &[&&digest[..]],
                )
                .await
                .map_err(err)?;
            Ok(rows
                .into_iter()
                .map(|r| RecipientTag {
                    controller: r.get::<_, String>(0).into(),
                    first_seen: r.get::<_, i64>(1) as u64,
                    last_seen: r.get::<_, i64>(2) as u64,
                })
                .collect())
        })
    }

    fn delete_expired(&self, before: u64, limit: u32) -> StoreFuture<'_, Deleted> {
        Box::pin(async move {
            let mut client = self.pool.get().await.map_err(err)?;
            let tx = client.transaction().await.map_err(err)?;
            let (before, limit) = (before as i64, i64::from(limit));
            let gone: Vec<Vec<u8>> = tx
                .query(
                    "DELETE FROM record_tags WHERE digest IN (
                         SELECT digest FROM record_tags WHERE last_seen < $1
                         LIMIT $2 FOR UPDATE SKIP LOCKED)
                     RETURNING digest",
                    &[&before, &limit],
                )
                .await
                .map_err(err)?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            tx.execute(
                "DELETE FROM record_recipients WHERE record = ANY($1)",
                &[&gone],
            )
            .await
            .map_err(err)?;
            let recipients = tx
                .execute(
                    "DELETE FROM recipient_tags WHERE ctid IN (
                         SELECT ctid FROM recipient_tags WHERE last_seen < $1
                         LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    &[&before, &limit],
                )
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            Ok(Deleted {
                records: gone.len() as u64,
                recipients,
            })
        })
    }

    fn counts(&self) -> StoreFuture<'_, (u64, u64)> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let row = client
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM record_tags), (SELECT COUNT(*) FROM recipient_tags)",
                    &[],
                )
                .await
                .map_err(err)?;
            Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            client.simple_query("SELECT 1").await.map_err(err)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_postgres::{SKIPPED, scratch_url};

    #[tokio::test]
    async fn conforms() {
        let Some(url) = scratch_url().await else {
            return eprintln!("{SKIPPED}");
        };
        let store = PostgresStore::open(&url).await.unwrap();
        super::super::conformance::run(&store).await;
    }

    #[tokio::test]
    async fn replicas_starting_together_migrate_once() {
        let Some(url) = scratch_url().await else {
            return eprintln!("{SKIPPED}");
        };
        let mut opens = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let url = url.clone();
            opens.spawn(async move { PostgresStore::open(&url).await.map(|_| ()) });
        }
        while let Some(opened) = opens.join_next().await {
            opened.unwrap().unwrap();
        }
        let store = PostgresStore::open(&url).await.unwrap();
        let client = store.pool.get().await.unwrap();
        let count: i64 = client
            .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(count, MIGRATIONS.len() as i64);
    }
}
