//! The `recipient-gateway` command line. Everything it runs lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use recipient_gateway::config::Config;
use recipient_gateway::redact::Direction;
use recipient_gateway::{demo, logging, review, server, tls};

/// mimalloc instead of glibc's malloc: the redacting route allocates a parse tree, digests and
/// edits per body, and glibc's allocator took about 12% of its CPU (see `benches/README.md`).
/// Built without transparent huge pages (`no_thp`): with them, 1,000 idle TLS connections held
/// 65 MiB instead of 42.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A TLS reverse proxy that keeps shipment recipients' personal data with the customers who
/// control it.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Main configuration file.
    #[arg(long, global = true, default_value = "config/gateway.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic until SIGTERM/SIGINT, then drain gracefully.
    Run,
    /// Start the sample shipping API on loopback and the gateway in front of it.
    Demo,
    /// Validate the configuration (every rule compiled) and print the review report.
    Check {
        /// Report format.
        #[arg(long, value_enum, default_value = "markdown")]
        format: FormatArg,
        /// Folder of sample bodies (`<route>/*.json`; `*.request.json` are request bodies):
        /// adds dead rules and uncovered personal-data candidates.
        #[arg(long)]
        samples: Option<PathBuf>,
        /// Exit 2 on any warning or coverage finding.
        #[arg(long)]
        strict: bool,
    },
    /// Run rule test cases: each `*.json` in DIR is one case (name, route, direction, caller,
    /// controller, input, expect).
    TestRules {
        /// Folder of case files.
        dir: PathBuf,
    },
    /// Dry run: read a JSON body on stdin, apply a route's rules as the gateway would, print it.
    Redact {
        /// The route whose rules apply.
        #[arg(long)]
        route: String,
        /// Which body it is.
        #[arg(long, value_enum)]
        direction: DirectionArg,
        /// The calling client's id.
        #[arg(long)]
        caller: String,
        /// The client id controlling every record (leave out for an unknown controller).
        #[arg(long)]
        controller: Option<String>,
        /// Print each change (rule id, concrete path, action) to stderr.
        #[arg(long)]
        explain: bool,
    },
    /// Write a development CA and a localhost certificate/key pair.
    DevCerts {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Markdown,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DirectionArg {
    Request,
    Response,
}

/// Exit status for invalid usage or configuration (clap uses 2 for usage errors too).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            format,
            samples,
            strict,
        } => match Config::load(&cli.config) {
            Ok(config) => check(&config, &cli.config, format, samples.as_deref(), strict),
            Err(error) => config_error(&error),
        },
        Command::TestRules { dir } => match Config::load(&cli.config) {
            Ok(config) => test_rules(&config, &dir),
            Err(error) => config_error(&error),
        },
        Command::Redact {
            route,
            direction,
            caller,
            controller,
            explain,
        } => {
            let config = match Config::load(&cli.config) {
                Ok(config) => config,
                Err(error) => return config_error(&error),
            };
            let direction = match direction {
                DirectionArg::Request => Direction::Request,
                DirectionArg::Response => Direction::Response,
            };
            redact_stdin(
                &config,
                &route,
                direction,
                &caller,
                controller.as_deref(),
                explain,
            )
        }
        Command::DevCerts { out } => match tls::write_dev_certs(&out) {
            Ok(()) => {
                println!(
                    "wrote {}, {} and {} to {}",
                    tls::DEV_CA_CERT,
                    tls::DEV_CERT,
                    tls::DEV_KEY,
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run => {
            let config = match Config::load(&cli.config) {
                Ok(config) => config,
                Err(error) => return config_error(&error),
            };
            logging::init();
            runtime_result(serve(config))
        }
        Command::Demo => {
            // The demo runs on development secrets where the environment has none.
            let env = |name: &str| {
                std::env::var(name).ok().or_else(|| {
                    let value = demo::dev_secret(name)?;
                    eprintln!(
                        "demo: {name} is not set; using its development value from config/dev.env"
                    );
                    Some(value)
                })
            };
            let config = match Config::load_with_env(&cli.config, &env) {
                Ok(config) => config,
                Err(error) => return config_error(&error),
            };
            logging::init();
            runtime_result(run_demo(config, &cli.config))
        }
    }
}

fn redact_stdin(
    config: &Config,
    route: &str,
    direction: Direction,
    caller: &str,
    controller: Option<&str>,
    explain: bool,
) -> ExitCode {
    use std::io::{Read, Write};
    let mut body = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("error: cannot read stdin: {error}");
        return ExitCode::FAILURE;
    }
    match review::dry_run(config, route, direction, caller, controller, &body) {
        Ok(result) => {
            if explain {
                for (rule, path, action) in &result.changes {
                    eprintln!("{rule}\t{path}\t{}", action.as_str());
                }
                eprintln!("{} change(s)", result.changes.len());
            }
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(&result.body)
                .and_then(|()| stdout.write_all(b"\n"));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}.");
            if error.is_usage() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn config_error(error: &recipient_gateway::config::ConfigError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(EXIT_CONFIG)
}

fn runtime_result(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(config: Config) -> anyhow::Result<()> {
    tokio_runtime()?.block_on(async {
        server::run(Arc::new(config), shutdown_signal()?).await?;
        Ok(())
    })
}

fn run_demo(mut config: Config, config_path: &Path) -> anyhow::Result<()> {
    tokio_runtime()?.block_on(async {
        let api = demo::start_sample_api(([127, 0, 0, 1], 0).into())
            .await
            .context("cannot start the sample API")?;
        for upstream in config.upstreams.clone() {
            config.set_upstream_url(&upstream.name, &format!("http://{}", api.addr));
        }
        // One receiver per distinct loopback webhook address, standing in for the customers.
        let mut receivers = Vec::new();
        for client in &config.clients {
            let Some(webhook) = &client.webhook else {
                continue;
            };
            let Some(addr) = webhook
                .url
                .authority()
                .and_then(|a| a.as_str().parse::<std::net::SocketAddr>().ok())
                .filter(|a| a.ip().is_loopback())
            else {
                continue;
            };
            let secret = format!(
                "whsec_{}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    webhook.key.expose()
                )
            );
            let receiver = demo::start_webhook_receiver(addr, secret)
                .await
                .with_context(|| format!("cannot start the demo webhook receiver on {addr}"))?;
            receivers.push(receiver);
        }
        let tls = config.listen.tls.is_some();
        let server = server::Server::bind(Arc::new(config)).await?;
        let base = format!(
            "{}://localhost:{}",
            if tls { "https" } else { "http" },
            server.local_addr().port()
        );
        let ca = tidy(
            &config_path
                .parent()
                .unwrap_or(Path::new("."))
                .join("../certs/dev")
                .join(tls::DEV_CA_CERT),
        );
        let cacert = if tls {
            format!("--cacert {} ", ca.display())
        } else {
            String::new()
        };
        let key = |id: &str| {
            demo::DEMO_KEYS
                .iter()
                .find(|(client, _)| *client == id)
                .map_or("", |(_, key)| *key)
        };
        eprintln!(
            "\nrecipient-gateway demo\n\
             \x20 gateway     {base}\n\
             \x20 sample API  http://{api}\n\
             \x20 admin       http://{admin}/metrics\n\n\
             Acme sees its own recipients; Globex's records come back redacted:\n\
             \x20 curl {cacert}-H 'Authorization: Bearer {acme}' {base}/v1/shipments\n\
             Globex sees the opposite:\n\
             \x20 curl {cacert}-H 'Authorization: Bearer {globex}' {base}/v1/shipments\n\
             Platform analytics sees only per-customer pseudonyms (h:...):\n\
             \x20 curl {cacert}-H 'Authorization: Bearer {analytics}' {base}/v1/analytics/shipments\n\
             Acme creates a shipment (the date of birth never reaches the upstream):\n\
             \x20 curl {cacert}-H 'Authorization: Bearer {acme}' -H 'Content-Type: application/json' \\\n\
             \x20   -d '{{\"recipient\":{{\"name\":\"Ada\",\"email\":\"ada@example.com\",\"date_of_birth\":\"1990-01-01\"}}}}' {base}/v1/shipments\n\
             Without a key:\n\
             \x20 curl {cacert}{base}/v1/shipments\n\
             A recipient files a privacy request, proven by her tracking number (after Acme's list\n\
             above has tagged the records); it is delivered, signed, to Acme's webhook below:\n\
             \x20 curl {cacert}-H 'Content-Type: application/json' \\\n\
             \x20   -d '{{\"type\":\"delete\",\"email\":\"jane.doe@example.com\",\"tracking_number\":\"1ZACME0000000001\"}}' {base}/privacy/requests\n\
             Its public status, and Acme's privacy inbox:\n\
             \x20 curl {cacert}{base}/privacy/requests/<request_id>\n\
             \x20 curl {cacert}-H 'Authorization: Bearer {acme}' {base}/v1/privacy/requests\n\
             Metrics:\n\
             \x20 curl http://{admin}/metrics\n\n\
             Ctrl-C stops the demo.\n",
            api = api.addr,
            admin = server.admin_addr(),
            acme = key("acme"),
            globex = key("globex"),
            analytics = key("analytics"),
        );
        server.serve(shutdown_signal()?).await;
        drop(receivers);
        Ok(())
    })
}

/// `config/../certs/dev/ca.crt` as `certs/dev/ca.crt`: `..` folded lexically, for curl lines a
/// reader can paste.
fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Resolves on SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn check(
    config: &Config,
    path: &Path,
    format: FormatArg,
    samples: Option<&Path>,
    strict: bool,
) -> ExitCode {
    if let Some(dir) = samples
        && !dir.is_dir()
    {
        eprintln!("error: --samples {}: not a folder.", dir.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    let report = match review::report::Report::build(config, &path.display().to_string(), samples) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: cannot read the samples: {error}.");
            return ExitCode::FAILURE;
        }
    };
    match format {
        FormatArg::Markdown => print!("{}", report.to_markdown()),
        FormatArg::Json => println!("{}", report.to_json()),
    }
    if strict && report.has_findings() {
        eprintln!(
            "error: --strict: {} (warnings and findings fail a strict check).",
            report.summary_line()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    ExitCode::SUCCESS
}

fn test_rules(config: &Config, dir: &Path) -> ExitCode {
    let results = match review::rule_tests::run_dir(config, dir) {
        Ok(results) => results,
        Err(error) => {
            eprintln!(
                "error: cannot read rule tests in {}: {error}.",
                dir.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    print!("{}", review::rule_tests::render(&results));
    if results
        .iter()
        .all(|r| r.outcome == review::rule_tests::Outcome::Passed)
    {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
