//! Tests run under their own harness (`harness = false`): what each needs (PostgreSQL, a browser,
//! Prometheus), reported as ignored when it is missing; fixed property-test runners; this process's
//! memory.

use std::path::{Path, PathBuf};

/// A proptest runner with a fixed seed (a failure reproduces) and no persistence, for the
/// differential tests: `cases` from the environment variable `env`, else `default`.
pub fn fixed_runner(env: &str, default: u32) -> (proptest::test_runner::TestRunner, u32) {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let cases = std::env::var(env)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    (runner, cases)
}

/// A test of a `harness = false` file: its name, whether it needs PostgreSQL, and its body.
pub type Test = (
    &'static str,
    Needs,
    fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
);

/// What a [`Test`] needs beyond the gateway itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    Postgres,
    /// PostgreSQL with TLS on, its CA in `GATEWAY_TEST_POSTGRES_CA` (`.ci/run` sets both up).
    PostgresTls,
    /// Chromium and chromedriver on the `PATH` (`.ci/run` installs Debian's), and axe-core
    /// where [`axe_core`] finds it (`.ci/run` installs it from npm).
    Browser,
    /// Debian's `prometheus` server on the `PATH` (`.ci/run` installs it).
    Prometheus,
}

/// axe-core's script: `GATEWAY_TEST_AXE`, else where `.ci/run` installs it
/// (`target/axe/node_modules/axe-core/axe.min.js`).
pub fn axe_core() -> PathBuf {
    std::env::var_os("GATEWAY_TEST_AXE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/axe/node_modules/axe-core/axe.min.js")
        },
        PathBuf::from,
    )
}

/// Where `name` is on the `PATH`, if anywhere.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| file.is_file())
}

/// Whether Chromium and chromedriver are on the `PATH` and axe-core is installed.
pub fn browser_installed() -> bool {
    on_path("chromium").is_some() && on_path("chromedriver").is_some() && axe_core().is_file()
}

/// The `main` of the test files whose tests need PostgreSQL (`harness = false`): the tests run
/// under libtest-mimic, each on its own multi-threaded runtime, and those that need PostgreSQL
/// are reported as *ignored* when it does not answer, so a skipped test never counts as passed.
/// With `GATEWAY_TEST_REQUIRE_POSTGRES` they run regardless and fail on an unusable server.
pub fn run_tests(tests: &[Test]) -> std::process::ExitCode {
    use recipient_gateway::store::test_postgres;
    let args = libtest_mimic::Arguments::from_args();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    };
    let postgres = if tests
        .iter()
        .any(|(_, needs, _)| matches!(needs, Needs::Postgres | Needs::PostgresTls))
    {
        runtime().block_on(test_postgres::probe())
    } else {
        Ok(())
    };
    let skip_postgres = postgres.is_err() && !test_postgres::required();
    if let (true, Err(why)) = (skip_postgres, &postgres) {
        eprintln!("PostgreSQL tests are ignored: {why}");
    }
    let no_ca = std::env::var_os("GATEWAY_TEST_POSTGRES_CA").is_none();
    if no_ca
        && tests
            .iter()
            .any(|(_, needs, _)| *needs == Needs::PostgresTls)
    {
        eprintln!("PostgreSQL TLS tests are ignored: GATEWAY_TEST_POSTGRES_CA is not set");
    }
    let skip_browser =
        !browser_installed() && std::env::var_os("GATEWAY_TEST_REQUIRE_BROWSER").is_none();
    if skip_browser && tests.iter().any(|(_, needs, _)| *needs == Needs::Browser) {
        eprintln!(
            "browser tests are ignored: chromium and chromedriver are not both on the PATH, or \
             axe-core is not at {} (.ci/run installs them)",
            axe_core().display()
        );
    }
    let skip_prometheus = on_path("prometheus").is_none()
        && std::env::var_os("GATEWAY_TEST_REQUIRE_PROMETHEUS").is_none();
    if skip_prometheus
        && tests
            .iter()
            .any(|(_, needs, _)| *needs == Needs::Prometheus)
    {
        eprintln!(
            "Prometheus tests are ignored: `prometheus` is not on the PATH (.ci/run installs it)"
        );
    }
    let trials = tests
        .iter()
        .map(|&(name, needs, test)| {
            libtest_mimic::Trial::test(name, move || {
                runtime().block_on(test());
                Ok(())
            })
            .with_ignored_flag(match needs {
                Needs::Nothing => false,
                Needs::Postgres => skip_postgres,
                Needs::PostgresTls => skip_postgres || no_ca,
                Needs::Browser => skip_browser,
                Needs::Prometheus => skip_prometheus,
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}
