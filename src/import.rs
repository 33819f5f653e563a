//! `recipient-gateway tags import`: a platform's history loaded into the tag store, before
//! go-live or while gateways serve.
//!
//! The input is JSON Lines, one document per line, shaped as the route's upstream answers; the
//! route's `records`, `record_keys`, `recipient`, `recipient_identifiers` and
//! `controller_member` find what live traffic would find (`config/record.rs` holds that one
//! definition). Lines are parsed and digested on a thread of their own while the store commits
//! the previous batch, through the store's one write path (`store/rows.rs`), except that what the
//! store already holds is kept as it is: importing a file twice writes nothing the second time.
//! Each batch commits the number of its last line with it, so `--resume` starts right after what
//! was committed. Memory is bounded by the batch size, whatever the file's.

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::{Config, Route};
use crate::json::Document;
use crate::store::rows::{Added, Rows};
use crate::store::{ImportMark, Store, StoreError};
use crate::tags::{TagKey, TagWrite, now};

/// Records per batch (one store transaction) unless `--batch` says otherwise: large enough that
/// sorted rows share the pages they dirty, small enough that a gateway writing to the same
/// SQLite file waits well under its busy timeout.
pub const DEFAULT_BATCH: usize = 250_000;

/// What to import and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The route whose answers the lines are shaped as.
    pub route: String,
    /// The customer of records whose `controller_member` names none.
    pub controller: Option<String>,
    /// Start after the last line an earlier run of the same import committed.
    pub resume: bool,
    /// Bad lines skipped (each reported) before one stops the import.
    pub max_errors: u64,
    /// Records per store transaction.
    pub batch: usize,
}

/// Where the lines come from.
pub enum Input {
    /// A file; its name (not its folder) names the import for `--resume`.
    File(std::path::PathBuf),
    /// Standard input, named `-`.
    Stdin,
}

impl Input {
    /// The name an import's mark is kept under, with its route: `shipments:history.jsonl`.
    fn mark_name(&self, route: &str) -> String {
        let name = match self {
            Input::File(path) => path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
            Input::Stdin => "-".into(),
        };
        format!("{route}:{name}")
    }

    /// The input's size in bytes, when it is a file (for the progress bar's ETA).
    pub fn size(&self) -> Option<u64> {
        match self {
            Input::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            Input::Stdin => None,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The line the import started after (`--resume`), 0 otherwise.
    pub resumed_after: u64,
    /// Lines read (after any resumed ones).
    pub lines: u64,
    /// Records found in them.
    pub records: u64,
    /// Records skipped: no `controller_member` value naming a customer, and no `--controller`.
    pub no_controller: u64,
    /// Tags the store did not hold (or record tags that learnt recipients).
    pub added: Added,
    /// Record keys the store already held (tagged by traffic or an earlier import).
    pub known: u64,
    /// Bad lines skipped under `--max-errors`.
    pub bad_lines: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl Summary {
    /// Records per second over the whole run.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The one line every import ends with.
    pub fn line(&self) -> String {
        let written = self.added.records + self.added.recipients;
        let mut line = format!(
            "imported {} records from {} lines in {:.1} s ({:.0} records/s): {} tags written \
             ({} record, {} recipient), {} skipped without a controller, {} already known, \
             {} bad lines skipped",
            self.records,
            self.lines,
            self.elapsed.as_secs_f64(),
            self.rate(),
            written,
            self.added.records,
            self.added.recipients,
            self.no_controller,
            self.known,
            self.bad_lines,
        );
        if self.resumed_after > 0 {
            line.push_str(&format!("; resumed after line {}", self.resumed_after));
        }
        if written == 0 && self.records > 0 {
            line.push_str("; nothing new: the store already held every tag");
        }
        line
    }
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The command line names something the config does not have.
    #[error("{0}")]
    Usage(String),
    /// The input could not be read.
    #[error("cannot read the input: {0}")]
    Read(std::io::Error),
    /// A malformed line, with everything before it committed.
    #[error(
        "line {line}: {reason}; every line before it is committed: fix the line and run again \
         with --resume (or skip bad lines with --max-errors N)"
    )]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it (never its content).
        reason: String,
        /// What was done before it.
        summary: Box<Summary>,
    },
    /// The store failed; batches committed before stay.
    #[error("{0}; batches committed before stay, and --resume carries on after them")]
    Store(StoreError),
}

// Each variant's text names its cause, so none is a `source()`: a chain printed with `{:#}`
// says each cause once.
impl From<std::io::Error> for ImportError {
    fn from(error: std::io::Error) -> ImportError {
        ImportError::Read(error)
    }
}

impl From<StoreError> for ImportError {
    fn from(error: StoreError) -> ImportError {
        ImportError::Store(error)
    }
}

/// What an import reports as it goes: a progress bar on a terminal, nothing otherwise.
pub trait Progress: Send + Sync {
    /// `bytes` of the input read and `records` committed so far.
    fn committed(&self, bytes: u64, records: u64);
    /// A bad line skipped under `--max-errors`.
    fn skipped(&self, line: u64, reason: &str);
}

/// No progress shown (a pipe, a test).
pub struct Quiet;

impl Progress for Quiet {
    fn committed(&self, _: u64, _: u64) {}
    fn skipped(&self, line: u64, reason: &str) {
        eprintln!("line {line}: {reason} (skipped)");
    }
}

/// One batch from the reader; its writes become sorted rows before it goes to the store.
struct Batch {
    writes: Vec<TagWrite>,
    rows: Rows,
    /// The last line it covers.
    line: u64,
    /// Input bytes read up to that line.
    bytes: u64,
    records: u64,
    /// Record keys offered (to count the known ones).
    keys: u64,
    no_controller: u64,
    /// The sighting time of its tags: when it was read. Retention counts from the import; and
    /// since each batch's time is at least the last one's, the stores' last-seen indexes grow at
    /// their end instead of taking every key in the middle.
    seen: u64,
}

/// What the reader sends the writer.
enum Event {
    Batch(Batch),
    Skipped { line: u64, reason: String },
    Stop { line: u64, reason: String },
}

/// How a line's records become tag writes.
struct Reader {
    config: Arc<Config>,
    route: Arc<Route>,
    key: TagKey,
    fallback: Option<Arc<str>>,
}

impl Reader {
    /// Appends the writes of one line's records; `Err` is what is wrong with the line.
    fn line(&self, text: &[u8], batch: &mut Batch) -> Result<(), String> {
        let doc = Document::parse(text).map_err(|e| e.to_string().replace("the body", "it"))?;
        let records = self
            .route
            .plan
            .find_records(&doc)
            .map_err(|e| e.to_string())?;
        for record in records {
            let keys: Vec<_> = self.route.record_key_values(&doc, record).collect();
            let identifiers: Vec<_> = self
                .route
                .recipient_identifier_values(&doc, record)
                .collect();
            // A selected object with nothing to tag (a list's wrapper under `records = ["$",
            // …]`) is no record of anyone's.
            if keys.is_empty() && identifiers.is_empty() {
                continue;
            }
            batch.records += 1;
            let controller = self
                .config
                .member_controller(&self.route, &doc, record)
                .or_else(|| self.fallback.clone());
            let Some(controller) = controller else {
                batch.no_controller += 1;
                continue;
            };
            let recipients: Vec<_> = identifiers
                .iter()
                .map(|value| self.key.recipient_once(value))
                .collect();
            for value in keys {
                batch.keys += 1;
                batch.writes.push(TagWrite::Record {
                    digest: self.key.record_once(&value),
                    controller: controller.clone(),
                    recipients: recipients.clone(),
                    seen: batch.seen,
                });
            }
            batch
                .writes
                .extend(recipients.iter().map(|digest| TagWrite::Recipient {
                    digest: *digest,
                    controller: controller.clone(),
                    seen: batch.seen,
                }));
        }
        Ok(())
    }

    /// Reads every line after `skip`, sending a batch per `size` records; bad lines are
    /// skipped up to `max_errors`, and the next one stops the import after the batch before it.
    fn run(
        self,
        mut input: Box<dyn BufRead + Send>,
        skip: u64,
        size: usize,
        max_errors: u64,
        events: mpsc::Sender<Event>,
    ) -> std::io::Result<()> {
        let fresh = |line, bytes| Batch {
            writes: Vec::new(),
            rows: Rows::default(),
            line,
            bytes,
            records: 0,
            keys: 0,
            no_controller: 0,
            seen: now(),
        };
        let (mut number, mut bytes, mut bad) = (0u64, 0u64, 0u64);
        let mut batch = fresh(skip, 0);
        let mut text = Vec::new();
        // A line is a body the gateway would have to hold whole: no longer than it would take.
        let limit = self.config.limits.max_body_bytes;
        loop {
            text.clear();
            let read = (&mut input).take(limit + 1).read_until(b'\n', &mut text)?;
            if read == 0 {
                break;
            }
            let too_long = text.len() as u64 > limit && !text.ends_with(b"\n");
            let skipped = if too_long {
                input.skip_until(b'\n')?
            } else {
                0
            };
            number += 1;
            bytes += (read + skipped) as u64;
            if number <= skip {
                continue;
            }
            let line = trim_line(&text);
            if !too_long && line.iter().all(u8::is_ascii_whitespace) {
                batch.line = number;
                batch.bytes = bytes;
                continue;
            }
            let parsed = if too_long {
                Err(format!(
                    "it is longer than [limits] max_body_bytes ({limit} bytes)"
                ))
            } else {
                self.line(line, &mut batch)
            };
            if let Err(reason) = parsed {
                bad += 1;
                if bad > max_errors {
                    let stop = Event::Stop {
                        line: number,
                        reason,
                    };
                    let _ = events.blocking_send(Event::Batch(batch.sorted()));
                    let _ = events.blocking_send(stop);
                    return Ok(());
                }
                let skipped = Event::Skipped {
                    line: number,
                    reason,
                };
                if events.blocking_send(skipped).is_err() {
                    return Ok(());
                }
            }
            batch.line = number;
            batch.bytes = bytes;
            if batch.records as usize >= size {
                let full = std::mem::replace(&mut batch, fresh(number, bytes));
                if events.blocking_send(Event::Batch(full.sorted())).is_err() {
                    return Ok(());
                }
            }
        }
        let _ = events.blocking_send(Event::Batch(batch.sorted()));
        Ok(())
    }
}

impl Batch {
    /// Merges and sorts the writes into rows here, on the reader's thread, while the store
    /// writes the batch before; the writes' memory goes at once.
    fn sorted(mut self) -> Batch {
        self.rows = Rows::from_writes(&std::mem::take(&mut self.writes));
        self
    }
}

/// The line without its line ending.
fn trim_line(text: &[u8]) -> &[u8] {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.strip_suffix(b"\r").unwrap_or(text)
}

/// Imports `input` into `store` as `options` say; returns what it did.
pub async fn import(
    config: Arc<Config>,
    store: Arc<dyn Store>,
    input: Input,
    options: &Options,
    progress: &dyn Progress,
) -> Result<Summary, ImportError> {
    let started = Instant::now();
    let route = config
        .routes
        .iter()
        .find(|r| r.name == options.route)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
            ImportError::Usage(format!(
                "no route is named '{}'; the config's routes are: {}",
                options.route,
                known.join(", ")
            ))
        })?;
    if route.record_keys.is_empty() && route.recipient.is_none() {
        return Err(ImportError::Usage(format!(
            "route '{}' has neither record_keys nor a recipient: there is nothing to tag",
            route.name
        )));
    }
    let fallback = match &options.controller {
        Some(id) => Some(config.known_customer(id).ok_or_else(|| {
            ImportError::Usage(format!("--controller '{id}' is not a customer client"))
        })?),
        None => None,
    };
    if fallback.is_none() && route.controller_member.is_none() {
        return Err(ImportError::Usage(format!(
            "route '{}' has no controller_member: name the customer with --controller",
            route.name
        )));
    }
    let name = input.mark_name(&route.name);
    let resumed_after = if options.resume {
        store.import_mark(name.clone()).await?.unwrap_or(0)
    } else {
        0
    };
    let reader: Box<dyn BufRead + Send> = match &input {
        Input::File(path) => Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(path)?,
        )),
        Input::Stdin => Box::new(std::io::BufReader::with_capacity(1 << 20, std::io::stdin())),
    };
    let lines = Reader {
        key: TagKey::new(config.tag_key.expose()),
        config: config.clone(),
        route,
        fallback,
    };
    // One batch queued while one is written and the next is read: memory stays at three.
    let (events, mut received) = mpsc::channel(1);
    let (size, max_errors) = (options.batch.max(1), options.max_errors);
    let reading = tokio::task::spawn_blocking(move || {
        lines.run(reader, resumed_after, size, max_errors, events)
    });
    let mut summary = Summary {
        resumed_after,
        ..Summary::default()
    };
    let mut stopped = None;
    while let Some(event) = received.recv().await {
        match event {
            Event::Batch(batch) => {
                summary.lines = batch.line.saturating_sub(resumed_after);
                summary.records += batch.records;
                summary.no_controller += batch.no_controller;
                if batch.rows.is_empty() && batch.line == resumed_after {
                    continue;
                }
                let mark = ImportMark {
                    name: name.clone(),
                    line: batch.line,
                };
                let added = store.import(batch.rows, mark).await?;
                summary.known += batch.keys.saturating_sub(added.records);
                summary.added.add(added);
                progress.committed(batch.bytes, summary.records);
            }
            Event::Skipped { line, reason } => {
                summary.bad_lines += 1;
                progress.skipped(line, &reason);
            }
            Event::Stop { line, reason } => stopped = Some((line, reason)),
        }
    }
    reading
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    summary.elapsed = started.elapsed();
    match stopped {
        Some((line, reason)) => Err(ImportError::BadLine {
            line,
            reason,
            summary: Box::new(summary),
        }),
        None => Ok(summary),
    }
}

/// A progress bar on the terminal (stderr): bytes with rate and ETA for a file, records and
/// their rate for a pipe.
pub struct Bar {
    bar: indicatif::ProgressBar,
    started: Instant,
}

impl Bar {
    /// A bar for an input of `size` bytes, if known.
    pub fn new(size: Option<u64>) -> Bar {
        let bar = match size {
            Some(size) => indicatif::ProgressBar::new(size).with_style(
                indicatif::ProgressStyle::with_template(
                    "{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("a valid template"),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .expect("a valid template"),
            ),
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar {
            bar,
            started: Instant::now(),
        }
    }

    /// Removes the bar (the summary line follows).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn committed(&self, bytes: u64, records: u64) {
        self.bar.set_position(bytes);
        let rate = records as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar
            .set_message(format!("{records} records, {rate:.0} records/s"));
    }

    fn skipped(&self, line: u64, reason: &str) {
        self.bar.println(format!("line {line}: {reason} (skipped)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    /// Skipped lines, as a progress bar would show them.
    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<u64>>);

    impl Progress for Seen {
        fn committed(&self, _: u64, _: u64) {}
        fn skipped(&self, line: u64, _: &str) {
            self.0.lock().unwrap().push(line);
        }
    }

    fn config(dir: &std::path::Path) -> Arc<Config> {
        let path = dir.join("gateway.toml");
        std::fs::write(
            &path,
            r#"
[listen]
address = "127.0.0.1:0"
tls = false
[keys]
tag_key = "import-test-tag-key-0123456789"
[store]
backend = "memory"
[[client]]
id = "acme"
kind = "customer"
name = "Acme"
api_key_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"]
[[client]]
id = "analytics"
kind = "internal"
name = "Analytics"
api_key_sha256 = ["1111111111111111111111111111111111111111111111111111111111111111"]
[[upstream]]
name = "api"
url = "http://127.0.0.1:9"
[[route]]
name = "shipments"
path_prefix = "/v1/shipments"
upstream = "api"
records = ["$", "$.shipments[*]"]
record_keys = ["id"]
recipient = "recipient"
recipient_identifiers = ["email"]
controller_member = "customer_id"
"#,
        )
        .unwrap();
        Arc::new(Config::load_with_env(&path, &|_| None).unwrap())
    }

    fn options(max_errors: u64) -> Options {
        Options {
            route: "shipments".into(),
            controller: None,
            resume: false,
            max_errors,
            batch: 2,
        }
    }

    const LINES: &str = concat!(
        r#"{"id":"s1","customer_id":"acme","recipient":{"email":"a@x.example"}}"#,
        "\n",
        r#"{"id":"s2", oops}"#,
        "\n",
        r#"{"shipments":[{"id":"s3","customer_id":"initech"},{"id":"s4","customer_id":"analytics"}]}"#,
        "\n\n",
        r#"{"id":"s5","customer_id":"acme","recipient":{"email":"b@x.example"}}"#,
        "\n",
    );

    #[tokio::test]
    async fn bad_lines_are_skipped_up_to_the_limit_and_records_without_a_controller_counted() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("history.jsonl");
        std::fs::write(&input, LINES).unwrap();
        let store = Arc::new(MemoryStore::new());
        let seen = Seen::default();
        let summary = import(
            config(dir.path()),
            store.clone(),
            Input::File(input),
            &options(1),
            &seen,
        )
        .await
        .unwrap();
        assert_eq!(*seen.0.lock().unwrap(), [2]);
        assert_eq!(
            (summary.lines, summary.records, summary.no_controller),
            (5, 4, 2),
            "neither an unknown client nor an internal one controls a record"
        );
        assert_eq!((summary.added.records, summary.added.recipients), (2, 2));
        assert_eq!(summary.bad_lines, 1);
        assert_eq!(
            store
                .import_mark("shipments:history.jsonl".into())
                .await
                .unwrap(),
            Some(5)
        );
    }

    #[tokio::test]
    async fn a_bad_line_past_the_limit_stops_after_committing_the_lines_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("history.jsonl");
        std::fs::write(&input, LINES).unwrap();
        let store = Arc::new(MemoryStore::new());
        let stopped = import(
            config(dir.path()),
            store.clone(),
            Input::File(input),
            &options(0),
            &Quiet,
        )
        .await
        .unwrap_err();
        let ImportError::BadLine { line, summary, .. } = &stopped else {
            panic!("{stopped}");
        };
        assert_eq!((*line, summary.records), (2, 1));
        let message = stopped.to_string();
        assert!(
            message.starts_with("line 2: it is not valid JSON"),
            "{message}"
        );
        assert!(
            !message.contains("oops"),
            "never the line's content: {message}"
        );
        assert_eq!(
            store
                .import_mark("shipments:history.jsonl".into())
                .await
                .unwrap(),
            Some(1)
        );
    }

    #[tokio::test]
    async fn a_line_longer_than_the_body_limit_is_a_bad_line_and_never_held_whole() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let limit = config.limits.max_body_bytes as usize;
        let input = dir.path().join("history.jsonl");
        let long = format!("{{\"id\":\"{}\"}}", "x".repeat(limit));
        let good = r#"{"id":"s9","customer_id":"acme"}"#;
        std::fs::write(&input, format!("{long}\n{good}\n")).unwrap();
        let seen = Seen::default();
        let summary = import(
            config,
            Arc::new(MemoryStore::new()),
            Input::File(input),
            &options(1),
            &seen,
        )
        .await
        .unwrap();
        assert_eq!(*seen.0.lock().unwrap(), [1]);
        assert_eq!(
            (summary.lines, summary.records, summary.added.records),
            (2, 1, 1)
        );
    }

    #[tokio::test]
    async fn unknown_routes_and_controllers_are_usage_errors_naming_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let store = Arc::new(MemoryStore::new());
        let mut wrong = options(0);
        wrong.route = "parcels".into();
        let error = import(config.clone(), store.clone(), Input::Stdin, &wrong, &Quiet)
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the config's routes are: shipments"),
            "{error}"
        );
        let mut internal = options(0);
        internal.controller = Some("analytics".into());
        let error = import(config, store, Input::Stdin, &internal, &Quiet)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("not a customer client"),
            "{error}"
        );
    }
}
