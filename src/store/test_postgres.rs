//! Test support: a scratch PostgreSQL schema per test, from `GATEWAY_TEST_POSTGRES_URL`.
//!
//! Without the variable, PostgreSQL tests say loudly that they did not run; with
//! `GATEWAY_TEST_REQUIRE_POSTGRES` set (as `.ci/run` does) a missing or unusable server fails them.

use tokio_postgres::NoTls;

/// What a PostgreSQL test prints when it cannot run.
pub const SKIPPED: &str = "PostgreSQL TEST DID NOT RUN: set GATEWAY_TEST_POSTGRES_URL (e.g. \
     postgres://postgres@127.0.0.1:5432/test) to run it";

/// Says on the terminal, past the test harness's output capture, that a test did not run.
pub fn report_skipped(test: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "\n*** {test}: {SKIPPED} ***\n");
}

/// A URL whose connections use a fresh, empty schema, or `None` when no server is configured.
pub async fn scratch_url() -> Option<String> {
    let required = std::env::var_os("GATEWAY_TEST_REQUIRE_POSTGRES").is_some();
    let Ok(base) = std::env::var("GATEWAY_TEST_POSTGRES_URL") else {
        assert!(
            !required,
            "GATEWAY_TEST_REQUIRE_POSTGRES is set but GATEWAY_TEST_POSTGRES_URL is not"
        );
        return None;
    };
    let (client, connection) = tokio_postgres::connect(&base, NoTls)
        .await
        .unwrap_or_else(|e| panic!("GATEWAY_TEST_POSTGRES_URL is set but unusable: {e}"));
    tokio::spawn(connection);
    let schema = format!("rg_test_{}", hex::encode(rand::random::<[u8; 8]>()));
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create a scratch schema: {e}"));
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{separator}options=-c%20search_path%3D{schema}"
    ))
}
