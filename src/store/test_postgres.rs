//! Test support: a scratch PostgreSQL schema per test.
//!
//! The server is `GATEWAY_TEST_POSTGRES_URL`, or the local default this project's machines run
//! ([`DEFAULT_URL`]). Test files that need it run under a harness that calls [`probe`] first and
//! reports their tests as *ignored* when nothing answers, so a skipped test never looks like a
//! pass. With `GATEWAY_TEST_REQUIRE_POSTGRES` set (as `.ci/run` does) they run regardless and an
//! unusable server fails them.

use std::time::Duration;

use tokio_postgres::NoTls;

/// Where the tests look for PostgreSQL when `GATEWAY_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The server the tests use.
pub fn base_url() -> String {
    std::env::var("GATEWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Whether PostgreSQL tests must run (and fail) even when the server does not answer.
pub fn required() -> bool {
    std::env::var_os("GATEWAY_TEST_REQUIRE_POSTGRES").is_some()
}

/// Whether the server answers a query within three seconds; `Err` says why not (no credentials:
/// the URL is not part of the message).
pub async fn probe() -> Result<(), String> {
    let connect = async {
        let (client, connection) = tokio_postgres::connect(&base_url(), NoTls).await?;
        tokio::spawn(connection);
        client.simple_query("SELECT 1").await.map(|_| ())
    };
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("PostgreSQL does not answer: {error}")),
        Err(_) => Err("PostgreSQL did not answer within 3 s".to_string()),
    }
}

/// A URL whose connections use a fresh, empty schema. Panics when the server is unusable: callers
/// run only after [`probe`] succeeded, or when the server is [`required`].
pub async fn scratch_url() -> String {
    let base = base_url();
    let (client, connection) = tokio_postgres::connect(&base, NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is unusable: {e}"));
    tokio::spawn(connection);
    let schema = format!("rg_test_{}", hex::encode(rand::random::<[u8; 8]>()));
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create a scratch schema: {e}"));
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}
