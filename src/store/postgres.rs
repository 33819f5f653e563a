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

/// A batch as column arrays, one row per tag: sightings of the same tag are merged (an upsert
/// cannot touch a row twice in one statement). A record key sighted under two controllers in one
/// batch keeps the first, as it would have won row by row.
#[derive(Default)]
struct Rows {
    record_digests: Vec<Vec<u8>>,
    record_controllers: Vec<String>,
    record_first: Vec<i64>,
    record_last: Vec<i64>,
    link_records: Vec<Vec<u8>>,
    link_recipients: Vec<Vec<u8>>,
    link_controllers: Vec<String>,
    recipient_digests: Vec<Vec<u8>>,
    recipient_controllers: Vec<String>,
    recipient_first: Vec<i64>,
    recipient_last: Vec<i64>,
}

impl From<&Vec<TagWrite>> for Rows {
    fn from(batch: &Vec<TagWrite>) -> Rows {
        use std::collections::HashMap;
        let mut rows = Rows::default();
        let mut records: HashMap<Digest, usize> = HashMap::new();
        let mut recipients: HashMap<(Digest, &str), usize> = HashMap::new();
        for write in batch {
            match write {
                TagWrite::Record {
                    digest,
                    controller,
                    recipients: seen_with,
                    seen,
                } => {
                    let seen = *seen as i64;
                    match records.get(digest) {
                        Some(&i) if rows.record_controllers[i] != **controller => continue,
                        Some(&i) => {
                            rows.record_first[i] = rows.record_first[i].min(seen);
                            rows.record_last[i] = rows.record_last[i].max(seen);
                        }
                        None => {
                            records.insert(*digest, rows.record_digests.len());
                            rows.record_digests.push(digest.to_vec());
                            rows.record_controllers.push(controller.to_string());
                            rows.record_first.push(seen);
                            rows.record_last.push(seen);
                        }
                    }
                    for r in seen_with {
                        rows.link_records.push(digest.to_vec());
                        rows.link_recipients.push(r.to_vec());
                        rows.link_controllers.push(controller.to_string());
                    }
                }
                TagWrite::Recipient {
                    digest,
                    controller,
                    seen,
                } => {
                    let seen = *seen as i64;
                    match recipients.get(&(*digest, &**controller)) {
                        Some(&i) => {
                            rows.recipient_first[i] = rows.recipient_first[i].min(seen);
                            rows.recipient_last[i] = rows.recipient_last[i].max(seen);
                        }
                        None => {
                            recipients.insert((*digest, controller), rows.recipient_digests.len());
                            rows.recipient_digests.push(digest.to_vec());
                            rows.recipient_controllers.push(controller.to_string());
                            rows.recipient_first.push(seen);
                            rows.recipient_last.push(seen);
                        }
                    }
                }
            }
        }
        rows
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
            let rows = Rows::from(&batch);
            // Three statements per batch: each sighting is a row of an array parameter.
            tx.execute(
                "INSERT INTO record_tags (digest, controller, first_seen, last_seen)
                 SELECT * FROM unnest($1::BYTEA[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[])
                 ON CONFLICT (digest) DO UPDATE
                     SET last_seen = GREATEST(record_tags.last_seen, excluded.last_seen)
                     WHERE record_tags.controller = excluded.controller",
                &[
                    &rows.record_digests,
                    &rows.record_controllers,
                    &rows.record_first,
                    &rows.record_last,
                ],
            )
            .await
            .map_err(err)?;
            // Recipients are linked only to records their controller owns.
            tx.execute(
                "INSERT INTO record_recipients (record, recipient)
                 SELECT l.record, l.recipient
                 FROM unnest($1::BYTEA[], $2::BYTEA[], $3::TEXT[]) AS l(record, recipient, controller)
                 JOIN record_tags t ON t.digest = l.record AND t.controller = l.controller
                 ON CONFLICT DO NOTHING",
                &[&rows.link_records, &rows.link_recipients, &rows.link_controllers],
            )
            .await
            .map_err(err)?;
            tx.execute(
                "INSERT INTO recipient_tags (digest, controller, first_seen, last_seen)
                 SELECT * FROM unnest($1::BYTEA[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[])
                 ON CONFLICT (digest, controller) DO UPDATE
                     SET last_seen = GREATEST(recipient_tags.last_seen, excluded.last_seen)",
                &[
                    &rows.recipient_digests,
                    &rows.recipient_controllers,
                    &rows.recipient_first,
                    &rows.recipient_last,
                ],
            )
            .await
            .map_err(err)?;
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

    fn records(&self, digests: Vec<Digest>) -> StoreFuture<'_, Vec<(Digest, RecordTag)>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let keys: Vec<&[u8]> = digests.iter().map(|d| &d[..]).collect();
            let rows = client
                .query(
                    "SELECT digest, controller, first_seen, last_seen FROM record_tags
                     WHERE digest = ANY($1)",
                    &[&keys],
                )
                .await
                .map_err(err)?;
            let links = client
                .query(
                    "SELECT record, recipient FROM record_recipients WHERE record = ANY($1)",
                    &[&keys],
                )
                .await
                .map_err(err)?;
            rows.into_iter()
                .map(|row| {
                    let digest: Vec<u8> = row.get(0);
                    let recipients = links
                        .iter()
                        .filter(|l| l.get::<_, &[u8]>(0) == digest.as_slice())
                        .map(|l| digest_from(l.get(1)))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((
                        digest_from(digest)?,
                        RecordTag {
                            controller: row.get::<_, String>(1).into(),
                            first_seen: row.get::<_, i64>(2) as u64,
                            last_seen: row.get::<_, i64>(3) as u64,
                            recipients,
                        },
                    ))
                })
                .collect()
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
    use crate::store::test_postgres::{report_skipped, scratch_url};

    #[tokio::test]
    async fn conforms() {
        let Some(url) = scratch_url().await else {
            return report_skipped("conforms");
        };
        let store = PostgresStore::open(&url).await.unwrap();
        super::super::conformance::run(&store).await;
    }

    #[tokio::test]
    async fn replicas_starting_together_migrate_once() {
        let Some(url) = scratch_url().await else {
            return report_skipped("replicas_starting_together_migrate_once");
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
