//! The `recipient-gateway` command line. Everything it runs lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use recipient_gateway::config::Config;
use recipient_gateway::import::{ImportError, Input, Options as ImportOptions};
use recipient_gateway::vocabulary::Direction;
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
    #[command(subcommand)]
    command: Command,
}

/// The configuration file, for the commands that read one.
#[derive(clap::Args)]
struct ConfigFile {
    /// Main configuration file; a relative path is relative to the working directory (the
    /// default suits a checkout of this repository; elsewhere give `--config` or set
    /// `GATEWAY_CONFIG`). Secrets its `*_env` keys name that the environment does not set are
    /// taken from a `dev.env` beside it, if there is one (development only).
    #[arg(long, env = "GATEWAY_CONFIG", default_value = "config/gateway.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic until SIGTERM/SIGINT, then drain gracefully.
    Run {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Start the sample shipping API on loopback and the gateway in front of it.
    Demo {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Validate the configuration (every rule compiled) and print the review report.
    Check {
        #[command(flatten)]
        file: ConfigFile,
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
        /// Write a rule for each uncovered finding to FILE (TOML), to edit and add.
        #[arg(long, value_name = "FILE", requires = "samples")]
        suggest_rules: Option<PathBuf>,
        /// Review a change instead: what `--config` does differently from this older config,
        /// field by field and caller by caller (with `--samples`, every sample value too). With
        /// `--strict`, exit 2 on any widening.
        #[arg(long, value_name = "OLD", conflicts_with = "suggest_rules")]
        against: Option<PathBuf>,
    },
    /// Run rule test cases: each `*.json` in DIR is one case (name, route, direction, caller,
    /// controller, input, expect).
    TestRules {
        #[command(flatten)]
        file: ConfigFile,
        /// Folder of case files.
        dir: PathBuf,
    },
    /// Dry run: read a JSON body on stdin, apply a route's rules as the gateway would, print it.
    ///
    /// Every record is taken to be controlled by `--controller` (unknown without it): the dry
    /// run reads neither the tag store nor `controller_member`, so it shows what the gateway
    /// forwards once it has decided who controls each record.
    Redact {
        #[command(flatten)]
        file: ConfigFile,
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
    /// The tag store: `tags import` loads a platform's history before (or while) it serves.
    Tags {
        #[command(subcommand)]
        command: TagsCommand,
    },
    /// Write a development CA and a localhost certificate/key pair.
    DevCerts {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Replace certificates and a key already in the folder.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TagsCommand {
    /// Tag a platform's existing records: JSON Lines shaped as the route's upstream answers,
    /// one document per line. Writes keyed digests only; importing twice writes nothing new.
    /// Privacy requests waiting for a controller are matched again at the end.
    Import {
        #[command(flatten)]
        file: ConfigFile,
        /// The route whose answers the lines are shaped as (records, keys, recipient).
        #[arg(long)]
        route: String,
        /// The customer controlling records whose `controller_member` names none.
        #[arg(long)]
        controller: Option<String>,
        /// Start after the last line an earlier run of this import (route and file name)
        /// committed.
        #[arg(long)]
        resume: bool,
        /// Skip up to N malformed lines, reporting each; the next one stops the import.
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_errors: u64,
        /// Records per store transaction.
        #[arg(long, value_name = "RECORDS", default_value_t = recipient_gateway::import::DEFAULT_BATCH)]
        batch: usize,
        /// The JSON Lines file (`-` or nothing: standard input).
        input: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Markdown,
    Json,
    /// One self-contained page: a matrix per route.
    Html,
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
            file,
            format,
            samples,
            strict,
            against: Some(old),
            ..
        } => match (Config::load(&file.config), Config::load(&old)) {
            (Ok(config), Ok(before)) => check_change(
                (&config, &file.config),
                (&before, &old),
                samples.as_deref(),
                format,
                strict,
            ),
            (Err(error), _) | (_, Err(error)) => config_error(&error),
        },
        Command::Check {
            file,
            format,
            samples,
            strict,
            suggest_rules,
            against: None,
        } => match Config::load(&file.config) {
            Ok(config) => check(
                &config,
                &file.config,
                format,
                samples.as_deref(),
                strict,
                suggest_rules.as_deref(),
            ),
            Err(error) => config_error(&error),
        },
        Command::TestRules { file, dir } => match Config::load(&file.config) {
            Ok(config) => {
                eprintln!("config: {}", file.config.display());
                test_rules(&config, &dir)
            }
            Err(error) => config_error(&error),
        },
        Command::Redact {
            file,
            route,
            direction,
            caller,
            controller,
            explain,
        } => {
            let config = match Config::load(&file.config) {
                Ok(config) => config,
                Err(error) => return config_error(&error),
            };
            eprintln!("config: {}", file.config.display());
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
        Command::Tags {
            command:
                TagsCommand::Import {
                    file,
                    route,
                    controller,
                    resume,
                    max_errors,
                    batch,
                    input,
                },
        } => {
            let config = match Config::load(&file.config) {
                Ok(config) => config,
                Err(error) => return config_error(&error),
            };
            let input = match input {
                Some(path) if path.as_os_str() != "-" => Input::File(path),
                _ => Input::Stdin,
            };
            let options = ImportOptions {
                route,
                controller,
                resume,
                max_errors,
                batch,
            };
            eprintln!("config: {}", file.config.display());
            match tokio_runtime().and_then(|rt| {
                rt.block_on(import_tags(config, input, &options))
                    .map_err(anyhow::Error::from)
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => match error.downcast_ref::<ImportError>() {
                    Some(ImportError::Usage(why)) => {
                        eprintln!("error: {why}.");
                        ExitCode::from(EXIT_CONFIG)
                    }
                    Some(ImportError::BadLine { summary, .. }) => {
                        println!("{}", summary.line());
                        eprintln!("error: {error}.");
                        ExitCode::FAILURE
                    }
                    _ => {
                        eprintln!("error: {error:#}.");
                        ExitCode::FAILURE
                    }
                },
            }
        }
        Command::DevCerts { out, force } => match tls::write_dev_certs(&out, force) {
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
        Command::Run { file } => {
            let config = match Config::load(&file.config) {
                Ok(config) => config,
                Err(error) => return config_error(&error),
            };
            logging::init();
            runtime_result(serve(config))
        }
        Command::Demo { file } => {
            let config = match Config::load(&file.config) {
                Ok(config) => config,
                Err(error) => return config_error(&error),
            };
            logging::init();
            runtime_result(run_demo(config, &file.config))
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
                let n = result.changes.len();
                eprintln!("{n} {}", if n == 1 { "change" } else { "changes" });
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

/// The main thread's runtime: the admin listener, reloads, webhook delivery and store upkeep. The
/// traffic itself is served by the server's worker threads, each with a runtime of its own.
fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `tags import`, then one matching run for the privacy requests waiting for a controller.
async fn import_tags(
    config: Config,
    input: Input,
    options: &ImportOptions,
) -> Result<(), ImportError> {
    use recipient_gateway::import;
    use recipient_gateway::privacy::{Clock, Desk};
    use recipient_gateway::tags::Tags;
    use std::io::IsTerminal;
    let config = Arc::new(config);
    let store = recipient_gateway::store::open_for_import(&config.store).await?;
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| import::Bar::new(input.size()));
    let progress: &dyn import::Progress = match &bar {
        Some(bar) => bar,
        None => &import::Quiet,
    };
    let imported =
        import::import(config.clone(), store.tags.clone(), input, options, progress).await;
    if let Some(bar) = &bar {
        bar.finish();
    }
    let summary = imported?;
    println!("{}", summary.line());
    let tags = Arc::new(Tags::new(
        recipient_gateway::server::tag_keys(&config),
        config.store.cache_entries,
        store.tags.clone(),
    ));
    let desk = Desk::new(&store, tags, Clock::default());
    let matched = desk.rematch().await?;
    let waiting = desk.report_unmatched().await?.waiting;
    println!(
        "privacy requests waiting for a controller: {matched} matched now, {waiting} still waiting"
    );
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    tokio_runtime()?.block_on(async {
        server::run(Arc::new(config), shutdown_signal()?).await?;
        Ok(())
    })
}

fn run_demo(config: Config, config_path: &Path) -> anyhow::Result<()> {
    tokio_runtime()?.block_on(async { demo::run(config, config_path, shutdown_signal()?).await })
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
    suggest_rules: Option<&Path>,
) -> ExitCode {
    if let Err(code) = samples_folder(samples) {
        return code;
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
        FormatArg::Html => print!("{}", report.to_html()),
    }
    if let Some(out) = suggest_rules {
        let rules = review::suggest::to_toml(&report.suggested_rules, &path.display().to_string());
        if let Err(error) = std::fs::write(out, rules) {
            eprintln!("error: cannot write {}: {error}.", out.display());
            return ExitCode::FAILURE;
        }
        eprintln!(
            "wrote {} suggested rule(s) to {}",
            report.suggested_rules.len(),
            out.display()
        );
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

/// `--samples DIR` must be a folder (exit 2 otherwise, as for any usage error).
fn samples_folder(samples: Option<&Path>) -> Result<(), ExitCode> {
    match samples {
        Some(dir) if !dir.is_dir() => {
            eprintln!("error: --samples {}: not a folder.", dir.display());
            Err(ExitCode::from(EXIT_CONFIG))
        }
        _ => Ok(()),
    }
}

fn check_change(
    (config, path): (&Config, &Path),
    (before, before_path): (&Config, &Path),
    samples: Option<&Path>,
    format: FormatArg,
    strict: bool,
) -> ExitCode {
    if let Err(code) = samples_folder(samples) {
        return code;
    }
    let report = match review::change::ChangeReport::build(
        config,
        before,
        &path.display().to_string(),
        &before_path.display().to_string(),
        samples,
    ) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: cannot read the samples: {error}.");
            return ExitCode::FAILURE;
        }
    };
    match format {
        FormatArg::Markdown => print!("{}", report.to_markdown()),
        FormatArg::Json => println!("{}", report.to_json()),
        FormatArg::Html => print!("{}", report.to_html()),
    }
    if strict && report.has_widenings() {
        eprintln!(
            "error: --strict: {} (a widening needs a second approval).",
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
