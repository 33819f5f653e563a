//! Waiting in real time for what a test cannot be told directly: a condition polled until it
//! holds, with a deadline, so a test waits as long as the event takes and no longer.

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it gives `Some`, and returns that; after `limit`, panics
/// with `failure` (which says what was seen).
pub async fn eventually<T>(
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
    failure: impl Fn() -> String,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(done) = check().await {
            return done;
        }
        assert!(started.elapsed() < limit, "after {limit:?}: {}", failure());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
