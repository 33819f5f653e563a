//! The `postgres` backend: one database shared by several gateway replicas.
//!
//! Every operation is a short transaction on a pooled connection. Migrations take a transaction
//! advisory lock, so replicas starting together apply each one once; retention deletes with
//! `FOR UPDATE SKIP LOCKED`, so replicas running it together neither block nor double-count.
//! Connections are encrypted with rustls when `[store] tls` asks for it (the default off
//! loopback).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

use std::sync::Arc;

use super::listen::{self, Invalidation};
use super::outbox::{
    Attempt, Backlog, Claimed, DeliveryState, DeliveryStatus, InboxItem, MatchKeys, NewDelivery,
    NewRequest, Outbox, RequestId, RequestState, UnmatchedCounts, UnmatchedEntry, Waiting,
    digest_from, digests_from_bytes, kind_from, request_id_from, status_from, subject_from,
};
use super::rows::{Added, OnConflict, Rows};
use super::{
    Deleted, Digest, ImportMark, RecipientTag, RecordTag, Store, StoreError, StoreFuture, TagWrite,
};
use tokio::sync::mpsc;

/// Versioned schema changes, applied in order at start.
const MIGRATIONS: &[(i32, &str)] = &[
    (
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
    ),
    (
        2,
        "CREATE TABLE privacy_requests (
         id BYTEA PRIMARY KEY,
         kind TEXT NOT NULL,
         received_at BIGINT NOT NULL,
         subject TEXT
     );
     CREATE TABLE privacy_deliveries (
         request_id BYTEA NOT NULL REFERENCES privacy_requests (id),
         controller TEXT NOT NULL,
         webhook_id TEXT NOT NULL,
         verified BOOLEAN NOT NULL,
         status TEXT NOT NULL,
         attempts INTEGER NOT NULL DEFAULT 0,
         next_attempt_at BIGINT NOT NULL,
         lease_until BIGINT NOT NULL DEFAULT 0,
         claim BIGINT NOT NULL DEFAULT 0,
         last_error TEXT,
         updated_at BIGINT NOT NULL,
         settled_at BIGINT,
         PRIMARY KEY (request_id, controller)
     );
     CREATE INDEX privacy_deliveries_due ON privacy_deliveries (status, next_attempt_at);
     CREATE INDEX privacy_deliveries_inbox ON privacy_deliveries (controller, status);",
    ),
    (
        3,
        // The intake rate limit shared by replicas: one GCRA instant per keyed, daily digest of a
        // client address (never the address), deleted once it has passed.
        "CREATE TABLE intake_rate (
         key BYTEA PRIMARY KEY,
         tat DOUBLE PRECISION NOT NULL
     );
     CREATE INDEX intake_rate_tat ON intake_rate (tat);",
    ),
    (
        4,
        // Where imports stand, and unmatched privacy requests with the digests they are matched
        // by (never the identifiers themselves).
        "CREATE TABLE tag_imports (
         name TEXT PRIMARY KEY,
         line BIGINT NOT NULL,
         updated_at BIGINT NOT NULL
     );
     CREATE TABLE privacy_unmatched (
         request_id BYTEA PRIMARY KEY REFERENCES privacy_requests (id),
         received_at BIGINT NOT NULL,
         identifiers BYTEA NOT NULL,
         tracking BYTEA,
         expired BOOLEAN NOT NULL DEFAULT false
     );
     CREATE INDEX privacy_unmatched_age ON privacy_unmatched (expired, received_at);",
    ),
    (
        5,
        // A record's recipients in its own row, as 32-byte digests side by side: a first
        // sighting is one row per record key, not one more per key and recipient. The list
        // functions match `store/rows.rs`.
        "CREATE FUNCTION rg_digests_contain(list BYTEA, digest BYTEA) RETURNS BOOLEAN
         LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
           SELECT EXISTS (SELECT 1 FROM generate_series(1, length(list), 32) AS i
                          WHERE substring(list FROM i FOR 32) = digest)
         $$;
     CREATE FUNCTION rg_digest_union(list BYTEA, more BYTEA) RETURNS BYTEA
         LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
           SELECT list || COALESCE(string_agg(d, ''::BYTEA ORDER BY first), ''::BYTEA)
           FROM (SELECT substring(more FROM i FOR 32) AS d, MIN(i) AS first
                 FROM generate_series(1, length(more), 32) AS i GROUP BY 1) AS n
           WHERE NOT rg_digests_contain(list, n.d)
         $$;
     ALTER TABLE record_tags ADD COLUMN recipients BYTEA NOT NULL DEFAULT ''::BYTEA;
     UPDATE record_tags t SET recipients = l.list
         FROM (SELECT record, string_agg(recipient, ''::BYTEA) AS list
               FROM record_recipients GROUP BY record) AS l
         WHERE l.record = t.digest;
     DROP TABLE record_recipients;",
    ),
];

/// Key of the advisory lock that serialises migrations ("rg-tags").
const MIGRATION_LOCK: i64 = 0x0072_672d_7461_6773;

/// Longest wait for a pooled connection or a new one.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// Tags and privacy requests in PostgreSQL.
pub struct PostgresStore {
    pool: Pool,
    /// How to connect, for the connection that listens for invalidations.
    config: tokio_postgres::Config,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::caused_by(e)
}

impl PostgresStore {
    /// Connects to `url`, over TLS with `tls` when given (`[store] tls`), and brings the schema
    /// up to date.
    pub async fn open(
        url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::new(format!("invalid PostgreSQL URL: {e}")))?;
        let manager_config = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(tls) => {
                // Encrypted or nothing: a server without TLS is an error, never a fallback.
                config.ssl_mode(SslMode::Require);
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                Manager::from_config(config.clone(), connector, manager_config())
            }
            None => {
                config.ssl_mode(SslMode::Disable);
                Manager::from_config(config.clone(), NoTls, manager_config())
            }
        };
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(err)?;
        let store = PostgresStore { pool, config, tls };
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

/// Writes a batch's rows, sorted by key, as array parameters (two statements whatever its
/// size): the one write path of live sightings and imports.
async fn apply_rows(
    tx: &tokio_postgres::Transaction<'_>,
    rows: &Rows,
    conflict: OnConflict,
) -> Result<Added, StoreError> {
    let digests = |d: &mut dyn Iterator<Item = &Digest>| d.map(|d| d.to_vec()).collect::<Vec<_>>();
    let texts =
        |c: &mut dyn Iterator<Item = &Arc<str>>| c.map(|c| c.to_string()).collect::<Vec<_>>();
    // First controller wins: another controller's sighting changes nothing. The owner's adds
    // the recipients its row does not list; the same list again (the common case: rows are
    // sorted) is told by one comparison, before the union function runs.
    let record_conflict = match conflict {
        OnConflict::Refresh => {
            "ON CONFLICT (digest) DO UPDATE
                 SET last_seen = GREATEST(record_tags.last_seen, excluded.last_seen),
                     recipients = CASE WHEN excluded.recipients = record_tags.recipients
                         THEN record_tags.recipients
                         ELSE rg_digest_union(record_tags.recipients, excluded.recipients) END
                 WHERE record_tags.controller = excluded.controller"
        }
        OnConflict::Keep => {
            "ON CONFLICT (digest) DO UPDATE
                 SET recipients = rg_digest_union(record_tags.recipients, excluded.recipients)
                 WHERE record_tags.controller = excluded.controller
                   AND CASE WHEN excluded.recipients = record_tags.recipients THEN false
                       ELSE length(rg_digest_union(record_tags.recipients, excluded.recipients))
                           > length(record_tags.recipients) END"
        }
    };
    let records = tx
        .execute(
            &format!(
                "INSERT INTO record_tags (digest, controller, first_seen, last_seen, recipients)
                 SELECT * FROM unnest($1::BYTEA[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[],
                     $5::BYTEA[])
                 {record_conflict}"
            ),
            &[
                &digests(&mut rows.records.iter().map(|r| &r.digest)),
                &texts(&mut rows.records.iter().map(|r| &r.controller)),
                &rows
                    .records
                    .iter()
                    .map(|r| r.first as i64)
                    .collect::<Vec<_>>(),
                &rows
                    .records
                    .iter()
                    .map(|r| r.last as i64)
                    .collect::<Vec<_>>(),
                &rows
                    .records
                    .iter()
                    .map(|r| r.recipient_bytes())
                    .collect::<Vec<_>>(),
            ],
        )
        .await
        .map_err(err)?;
    let recipient_conflict = match conflict {
        OnConflict::Refresh => {
            "ON CONFLICT (digest, controller) DO UPDATE
                 SET last_seen = GREATEST(recipient_tags.last_seen, excluded.last_seen)
                 WHERE excluded.last_seen > recipient_tags.last_seen"
        }
        OnConflict::Keep => "ON CONFLICT DO NOTHING",
    };
    let recipients = tx
        .execute(
            &format!(
                "INSERT INTO recipient_tags (digest, controller, first_seen, last_seen)
                 SELECT * FROM unnest($1::BYTEA[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[])
                 {recipient_conflict}"
            ),
            &[
                &digests(&mut rows.recipients.iter().map(|r| &r.digest)),
                &texts(&mut rows.recipients.iter().map(|r| &r.controller)),
                &rows
                    .recipients
                    .iter()
                    .map(|r| r.first as i64)
                    .collect::<Vec<_>>(),
                &rows
                    .recipients
                    .iter()
                    .map(|r| r.last as i64)
                    .collect::<Vec<_>>(),
            ],
        )
        .await
        .map_err(err)?;
    Ok(Added {
        records,
        recipients,
    })
}

/// A request's deliveries, pending and due at `at` (intake, or a later match): one statement.
async fn insert_deliveries(
    tx: &tokio_postgres::Transaction<'_>,
    id: &RequestId,
    deliveries: &[NewDelivery],
    at: u64,
) -> Result<(), StoreError> {
    let controllers: Vec<&str> = deliveries.iter().map(|d| &*d.controller).collect();
    let webhook_ids: Vec<&str> = deliveries.iter().map(|d| d.webhook_id.as_str()).collect();
    let verified: Vec<bool> = deliveries.iter().map(|d| d.verified).collect();
    tx.execute(
        "INSERT INTO privacy_deliveries (request_id, controller, webhook_id, verified,
             status, next_attempt_at, updated_at)
         SELECT $1, c, w, v, 'pending', $5, $5
         FROM unnest($2::TEXT[], $3::TEXT[], $4::BOOLEAN[]) AS d(c, w, v)",
        &[
            &&id[..],
            &controllers,
            &webhook_ids,
            &verified,
            &(at as i64),
        ],
    )
    .await
    .map_err(err)?;
    Ok(())
}

/// A `record_tags` row read as (controller, first_seen, last_seen, recipients, …).
fn record_tag_row(row: &tokio_postgres::Row) -> Result<RecordTag, StoreError> {
    Ok(RecordTag {
        controller: row.get::<_, String>(0).into(),
        first_seen: row.get::<_, i64>(1) as u64,
        last_seen: row.get::<_, i64>(2) as u64,
        recipients: digests_from_bytes(row.get(3))?,
    })
}

impl Store for PostgresStore {
    fn write(&self, batch: Vec<TagWrite>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let rows = Rows::from_writes(&batch);
            let mut client = self.pool.get().await.map_err(err)?;
            let tx = client.transaction().await.map_err(err)?;
            apply_rows(&tx, &rows, OnConflict::Refresh).await?;
            tx.commit().await.map_err(err)
        })
    }

    fn import(&self, rows: Rows, mark: ImportMark) -> StoreFuture<'_, Added> {
        Box::pin(async move {
            // Two halves of the key space on two connections at once: the server's work per
            // row is what limits an import, and it then runs on two cores.
            let write = |half: Rows| async move {
                let mut client = self.pool.get().await.map_err(err)?;
                let tx = client.transaction().await.map_err(err)?;
                // A batch lost to a crash is imported again on --resume: no commit waits for
                // the disk.
                tx.batch_execute("SET LOCAL synchronous_commit = off")
                    .await
                    .map_err(err)?;
                let added = apply_rows(&tx, &half, OnConflict::Keep).await?;
                tx.commit().await.map_err(err)?;
                Ok::<_, StoreError>(added)
            };
            let mut halves = rows.split(2).into_iter();
            let (left, right) = (halves.next(), halves.next());
            let (mut added, right) = tokio::try_join!(
                write(left.unwrap_or_default()),
                write(right.unwrap_or_default())
            )?;
            added.add(right);
            // The mark commits after the rows it covers: a crash between them only means the
            // batch is imported again, which changes nothing.
            let client = self.pool.get().await.map_err(err)?;
            client
                .execute(
                    "INSERT INTO tag_imports (name, line, updated_at)
                     VALUES ($1, $2, EXTRACT(EPOCH FROM now())::BIGINT)
                     ON CONFLICT (name) DO UPDATE SET line = excluded.line,
                         updated_at = excluded.updated_at",
                    &[&mark.name, &(mark.line as i64)],
                )
                .await
                .map_err(err)?;
            Ok(added)
        })
    }

    fn import_mark(&self, name: String) -> StoreFuture<'_, Option<u64>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let row = client
                .query_opt("SELECT line FROM tag_imports WHERE name = $1", &[&name])
                .await
                .map_err(err)?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn record(&self, digest: Digest) -> StoreFuture<'_, Option<RecordTag>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            client
                .query_opt(
                    "SELECT controller, first_seen, last_seen, recipients FROM record_tags
                     WHERE digest = $1",
                    &[&&digest[..]],
                )
                .await
                .map_err(err)?
                .map(|row| record_tag_row(&row))
                .transpose()
        })
    }

    fn records(&self, digests: Vec<Digest>) -> StoreFuture<'_, Vec<(Digest, RecordTag)>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let keys: Vec<&[u8]> = digests.iter().map(|d| &d[..]).collect();
            client
                .query(
                    "SELECT controller, first_seen, last_seen, recipients, digest
                     FROM record_tags WHERE digest = ANY($1)",
                    &[&keys],
                )
                .await
                .map_err(err)?
                .into_iter()
                .map(|row| Ok((digest_from(row.get(4))?, record_tag_row(&row)?)))
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
            let records = tx
                .execute(
                    "DELETE FROM record_tags WHERE digest IN (
                         SELECT digest FROM record_tags WHERE last_seen < $1
                         LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    &[&before, &limit],
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
            if records > 0 || recipients > 0 {
                let payload = listen::expired_payload(before as u64);
                tx.execute("SELECT pg_notify($1, $2)", &[&listen::CHANNEL, &payload])
                    .await
                    .map_err(err)?;
            }
            tx.commit().await.map_err(err)?;
            Ok(Deleted {
                records,
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

    fn invalidations(&self) -> Option<mpsc::Receiver<Invalidation>> {
        let (sender, receiver) = mpsc::channel(1024);
        let config = self.config.clone();
        match &self.tls {
            Some(tls) => {
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                tokio::spawn(listen::listen(config, connector, sender));
            }
            None => {
                tokio::spawn(listen::listen(config, NoTls, sender));
            }
        }
        Some(receiver)
    }

    fn erase(&self, controller: Arc<str>, recipients: Vec<Digest>) -> StoreFuture<'_, Deleted> {
        Box::pin(async move {
            let mut client = self.pool.get().await.map_err(err)?;
            let tx = client.transaction().await.map_err(err)?;
            let keys: Vec<&[u8]> = recipients.iter().map(|d| &d[..]).collect();
            let payload = listen::erased_payload(&controller, &recipients);
            // `position` finds candidates fast; the function checks a digest boundary.
            let records = tx
                .execute(
                    "DELETE FROM record_tags t WHERE t.controller = $1 AND EXISTS (
                         SELECT 1 FROM unnest($2::BYTEA[]) AS e(digest)
                         WHERE position(e.digest IN t.recipients) > 0
                           AND rg_digests_contain(t.recipients, e.digest))",
                    &[&&*controller, &keys],
                )
                .await
                .map_err(err)?;
            let recipients = tx
                .execute(
                    "DELETE FROM recipient_tags WHERE controller = $1 AND digest = ANY($2)",
                    &[&&*controller, &keys],
                )
                .await
                .map_err(err)?;
            // Delivered to every listening gateway when (and only if) the deletion commits.
            tx.execute("SELECT pg_notify($1, $2)", &[&listen::CHANNEL, &payload])
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            Ok(Deleted {
                records,
                recipients,
            })
        })
    }
}

impl Outbox for PostgresStore {
    fn admit(
        &self,
        key: [u8; 32],
        now: f64,
        interval: f64,
        burst: f64,
    ) -> Option<StoreFuture<'_, Result<(), f64>>> {
        Some(Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            // One statement decides atomically across replicas: the instant moves on only when
            // the request fits the burst.
            let admitted = client
                .query_opt(
                    "INSERT INTO intake_rate AS r (key, tat) VALUES ($1, $2::float8 + $3::float8)
                     ON CONFLICT (key) DO UPDATE SET tat = GREATEST(r.tat, $2::float8) + $3::float8
                     WHERE GREATEST(r.tat, $2::float8) - $2::float8 <= $4::float8
                     RETURNING tat",
                    &[&&key[..], &now, &interval, &burst],
                )
                .await
                .map_err(err)?;
            if admitted.is_some() {
                // Now and then, forget addresses whose instant has passed.
                if rand::random::<u8>() == 0 {
                    client
                        .execute("DELETE FROM intake_rate WHERE tat < $1", &[&now])
                        .await
                        .map_err(err)?;
                }
                return Ok(Ok(()));
            }
            let tat: f64 = client
                .query_one("SELECT tat FROM intake_rate WHERE key = $1", &[&&key[..]])
                .await
                .map_err(err)?
                .get(0);
            Ok(Err(tat - now - burst))
        }))
    }

    fn insert(&self, request: NewRequest) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let subject = request
                .subject
                .as_ref()
                .map(|s| serde_json::to_string(s).map_err(err))
                .transpose()?;
            let mut client = self.pool.get().await.map_err(err)?;
            let tx = client.transaction().await.map_err(err)?;
            let received_at = request.received_at as i64;
            tx.execute(
                "INSERT INTO privacy_requests (id, kind, received_at, subject)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &&request.id[..],
                    &request.kind.as_str(),
                    &received_at,
                    &subject,
                ],
            )
            .await
            .map_err(err)?;
            insert_deliveries(&tx, &request.id, &request.deliveries, request.received_at).await?;
            if let Some(keys) = &request.unmatched {
                tx.execute(
                    "INSERT INTO privacy_unmatched (request_id, received_at, identifiers, tracking)
                     VALUES ($1, $2, $3, $4)",
                    &[
                        &&request.id[..],
                        &received_at,
                        &keys.identifiers.concat(),
                        &(!keys.tracking.is_empty()).then(|| keys.tracking.concat()),
                    ],
                )
                .await
                .map_err(err)?;
            }
            tx.commit().await.map_err(err)
        })
    }

    fn state(&self, id: RequestId) -> StoreFuture<'_, Option<RequestState>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let Some(row) = client
                .query_opt(
                    "SELECT received_at FROM privacy_requests WHERE id = $1",
                    &[&&id[..]],
                )
                .await
                .map_err(err)?
            else {
                return Ok(None);
            };
            let deliveries = client
                .query(
                    "SELECT verified, status FROM privacy_deliveries WHERE request_id = $1",
                    &[&&id[..]],
                )
                .await
                .map_err(err)?
                .into_iter()
                .map(|r| {
                    Ok(DeliveryState {
                        verified: r.get(0),
                        status: status_from(r.get(1))?,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(Some(RequestState {
                received_at: row.get::<_, i64>(0) as u64,
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
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let names: Vec<&str> = controllers.iter().map(|c| &**c).collect();
            let claim: u64 = rand::random();
            // SKIP LOCKED: replicas claiming at once each get different rows, never the same.
            let rows = client
                .query(
                    "UPDATE privacy_deliveries d
                     SET attempts = d.attempts + 1, lease_until = $3, claim = $4, updated_at = $2
                     FROM privacy_requests r
                     WHERE r.id = d.request_id AND (d.request_id, d.controller) IN (
                         SELECT request_id, controller FROM privacy_deliveries
                         WHERE status = 'pending' AND next_attempt_at <= $2
                           AND lease_until <= $2 AND controller = ANY($1)
                         ORDER BY next_attempt_at LIMIT $5
                         FOR UPDATE SKIP LOCKED)
                     RETURNING d.request_id, d.controller, d.webhook_id, d.verified, d.attempts,
                         r.kind, r.received_at, r.subject",
                    &[
                        &names,
                        &(now as i64),
                        &(lease_until as i64),
                        &(claim as i64),
                        &i64::from(limit),
                    ],
                )
                .await
                .map_err(err)?;
            let mut claimed = rows
                .into_iter()
                .map(|r| {
                    Ok(Claimed {
                        request_id: request_id_from(r.get(0))?,
                        controller: r.get::<_, String>(1).into(),
                        webhook_id: r.get(2),
                        verified: r.get(3),
                        attempts: r.get::<_, i32>(4) as u32,
                        kind: kind_from(r.get(5))?,
                        received_at: r.get::<_, i64>(6) as u64,
                        subject: subject_from(r.get(7))?,
                        claim,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
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
        Box::pin(async move {
            let (status, next, error, at, settled) = match &attempt {
                Attempt::Delivered { at } => ("delivered", None, None, *at, Some(*at as i64)),
                Attempt::Retry { at, next, error } => (
                    "pending",
                    Some(*next as i64),
                    Some(error.as_str()),
                    *at,
                    None,
                ),
                Attempt::Dead { at, error } => ("dead", None, Some(error.as_str()), *at, None),
            };
            let client = self.pool.get().await.map_err(err)?;
            let changed = client
                .execute(
                    "UPDATE privacy_deliveries
                     SET status = $4, next_attempt_at = COALESCE($5, next_attempt_at),
                         last_error = $6, updated_at = $7, settled_at = $8, lease_until = 0
                     WHERE request_id = $1 AND controller = $2 AND claim = $3
                       AND status = 'pending'",
                    &[
                        &&request_id[..],
                        &&*controller,
                        &(claim as i64),
                        &status,
                        &next,
                        &error,
                        &(at as i64),
                        &settled,
                    ],
                )
                .await
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
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let rows = client
                .query(
                    "SELECT r.id, r.kind, d.status, r.received_at, d.verified, r.subject
                     FROM privacy_deliveries d JOIN privacy_requests r ON r.id = d.request_id
                     WHERE d.controller = $1 AND ($2::TEXT IS NULL OR d.status = $2)
                     ORDER BY r.received_at, r.id LIMIT $3",
                    &[
                        &&*controller,
                        &status.map(DeliveryStatus::as_str),
                        &i64::from(limit),
                    ],
                )
                .await
                .map_err(err)?;
            rows.into_iter()
                .map(|r| {
                    Ok(InboxItem {
                        request_id: request_id_from(r.get(0))?,
                        kind: kind_from(r.get(1))?,
                        status: status_from(r.get(2))?,
                        received_at: r.get::<_, i64>(3) as u64,
                        verified: r.get(4),
                        subject: subject_from(r.get(5))?,
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
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let row = client
                .query_opt(
                    "WITH acked AS (
                         UPDATE privacy_deliveries
                         SET status = 'acknowledged', settled_at = $3, updated_at = $3,
                             lease_until = 0
                         WHERE request_id = $1 AND controller = $2 AND status <> 'acknowledged'
                         RETURNING 1)
                     SELECT 1 FROM privacy_deliveries WHERE request_id = $1 AND controller = $2",
                    &[&&request_id[..], &&*controller, &(at as i64)],
                )
                .await
                .map_err(err)?;
            Ok(row.is_some())
        })
    }

    fn expire_subjects(&self, before: u64, limit: u32) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            client
                .execute(
                    "UPDATE privacy_requests SET subject = NULL WHERE id IN (
                         SELECT r.id FROM privacy_requests r
                         WHERE r.subject IS NOT NULL AND NOT EXISTS (
                             SELECT 1 FROM privacy_deliveries d
                             WHERE d.request_id = r.id
                               AND (d.settled_at IS NULL OR d.settled_at >= $1))
                           AND NOT EXISTS (
                             SELECT 1 FROM privacy_unmatched u WHERE u.request_id = r.id)
                         LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    &[&(before as i64), &i64::from(limit)],
                )
                .await
                .map_err(err)
        })
    }

    fn backlog(&self) -> StoreFuture<'_, Backlog> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let row = client
                .query_one(
                    "SELECT COUNT(*), MIN(r.received_at)
                     FROM privacy_deliveries d JOIN privacy_requests r ON r.id = d.request_id
                     WHERE d.status = 'pending'",
                    &[],
                )
                .await
                .map_err(err)?;
            Ok(Backlog {
                pending: row.get::<_, i64>(0) as u64,
                oldest: row.get::<_, Option<i64>>(1).map(|o| o as u64),
            })
        })
    }

    fn waiting(&self, after: Option<RequestId>, limit: u32) -> StoreFuture<'_, Vec<Waiting>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let after = after.map_or_else(Vec::new, |a| a.to_vec());
            let rows = client
                .query(
                    "SELECT u.request_id, u.received_at, u.identifiers, u.tracking, r.subject
                     FROM privacy_unmatched u LEFT JOIN privacy_requests r ON r.id = u.request_id
                     WHERE NOT u.expired AND u.request_id > $1 ORDER BY u.request_id LIMIT $2",
                    &[&after, &i64::from(limit)],
                )
                .await
                .map_err(err)?;
            rows.into_iter()
                .map(|r| {
                    Ok(Waiting {
                        id: request_id_from(r.get(0))?,
                        received_at: r.get::<_, i64>(1) as u64,
                        keys: MatchKeys {
                            identifiers: digests_from_bytes(r.get(2))?,
                            tracking: r
                                .get::<_, Option<Vec<u8>>>(3)
                                .map_or(Ok(Vec::new()), |t| digests_from_bytes(&t))?,
                        },
                        subject: subject_from(r.get(4))?,
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
        Box::pin(async move {
            let mut client = self.pool.get().await.map_err(err)?;
            let tx = client.transaction().await.map_err(err)?;
            // The delete decides between replicas matching at once: one of them removes the row.
            let waited = tx
                .execute(
                    "DELETE FROM privacy_unmatched WHERE request_id = $1 AND NOT expired",
                    &[&&id[..]],
                )
                .await
                .map_err(err)?;
            if waited == 0 {
                return Ok(false);
            }
            insert_deliveries(&tx, &id, &deliveries, at).await?;
            tx.commit().await.map_err(err)?;
            Ok(true)
        })
    }

    fn expire_unmatched(&self, before: u64, limit: u32) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut client = self.pool.get().await.map_err(err)?;
            let tx = client.transaction().await.map_err(err)?;
            let ids: Vec<Vec<u8>> = tx
                .query(
                    "UPDATE privacy_unmatched SET expired = true, identifiers = '', tracking = NULL
                     WHERE request_id IN (
                         SELECT request_id FROM privacy_unmatched
                         WHERE NOT expired AND received_at < $1
                         LIMIT $2 FOR UPDATE SKIP LOCKED)
                     RETURNING request_id",
                    &[&(before as i64), &i64::from(limit)],
                )
                .await
                .map_err(err)?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            tx.execute(
                "UPDATE privacy_requests SET subject = NULL WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            Ok(ids.len() as u64)
        })
    }

    fn unmatched(&self, limit: u32) -> StoreFuture<'_, Vec<UnmatchedEntry>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let rows = client
                .query(
                    "SELECT u.request_id, r.kind, u.received_at, u.expired
                     FROM privacy_unmatched u JOIN privacy_requests r ON r.id = u.request_id
                     ORDER BY u.received_at, u.request_id LIMIT $1",
                    &[&i64::from(limit)],
                )
                .await
                .map_err(err)?;
            rows.into_iter()
                .map(|r| {
                    Ok(UnmatchedEntry {
                        id: request_id_from(r.get(0))?,
                        kind: kind_from(r.get(1))?,
                        received_at: r.get::<_, i64>(2) as u64,
                        expired: r.get(3),
                    })
                })
                .collect()
        })
    }

    fn unmatched_counts(&self) -> StoreFuture<'_, UnmatchedCounts> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(err)?;
            let row = client
                .query_one(
                    "SELECT COUNT(*) FILTER (WHERE NOT expired), COUNT(*) FILTER (WHERE expired)
                     FROM privacy_unmatched",
                    &[],
                )
                .await
                .map_err(err)?;
            Ok(UnmatchedCounts {
                waiting: row.get::<_, i64>(0) as u64,
                expired: row.get::<_, i64>(1) as u64,
            })
        })
    }
}
