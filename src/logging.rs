//! Structured logs: one JSON object per line with `ts`, `level`, `msg` and the event's fields.
//!
//! Serving threads buffer their lines ([`buffer_this_thread`]) and write them in one system call
//! when the thread runs out of work, when the buffer fills, or at once for a warning or error, as
//! nginx's `access_log … buffer=`. A busy thread so writes its access lines per batch instead of
//! one `write` per request; an idle one writes each line as soon as its request is answered.
//! Other threads write each line as it comes.
//!
//! tracing-subscriber's own JSON format nests fields and names the message `message`; operators'
//! log pipelines expect the flat shape of reference §6, so the formatter is written here. Callers are
//! responsible for what they log: request handling logs only ids, route names, methods, paths
//! without query and numbers, never bodies, query strings, credentials or recipient identifiers.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the JSON-lines subscriber on stdout; `RUST_LOG` overrides the `info` default.
/// Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(JsonLines)
        .with_writer(Stdout)
        .try_init();
}

/// Bytes a serving thread buffers before it writes them out, whatever else it has to do.
const THREAD_BUFFER_BYTES: usize = 32 * 1024;

thread_local! {
    /// This thread's unwritten lines, when it buffers (serving threads).
    static BUFFERED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Makes this thread buffer its log lines until [`flush_this_thread`] (a serving thread calls it
/// whenever it runs out of work, from its runtime's park hook) or until the buffer fills.
pub fn buffer_this_thread() {
    BUFFERED.with(|buffer| *buffer.borrow_mut() = Some(Vec::with_capacity(THREAD_BUFFER_BYTES)));
}

/// Writes out the lines this thread has buffered.
pub fn flush_this_thread() {
    BUFFERED.with(|buffer| {
        if let Some(lines) = buffer.borrow_mut().as_mut() {
            write_out(lines);
        }
    });
}

fn write_out(lines: &mut Vec<u8>) {
    if !lines.is_empty() {
        // A closed or full stdout must not stop the proxy: the lines are dropped.
        let _ = std::io::stdout().lock().write_all(lines);
        lines.clear();
    }
}

/// Standard output, through this thread's buffer when it has one.
struct Stdout;

/// One line's way out; warnings and errors leave the buffer at once, with what precedes them.
struct Line {
    urgent: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stdout {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

impl std::io::Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        BUFFERED.with(|buffer| match buffer.borrow_mut().as_mut() {
            Some(lines) => {
                lines.extend_from_slice(bytes);
                if self.urgent || lines.len() >= THREAD_BUFFER_BYTES {
                    write_out(lines);
                }
                Ok(bytes.len())
            }
            None => std::io::stdout()
                .lock()
                .write_all(bytes)
                .map(|()| bytes.len()),
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The flat JSON line format.
///
/// Lines are written straight into the subscriber's buffer, with no map or intermediate strings:
/// the access line is written once per request, and building it through `serde_json::Value`s
/// was about a tenth of the CPU of a small proxied request.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // ts, level and msg lead every line; the event's other fields follow in their order.
        writer.write_str("{\"ts\":\"")?;
        write_timestamp(&mut writer)?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(level_name(event.metadata().level()))?;
        writer.write_str("\",\"msg\":\"")?;
        let mut message = Fields {
            out: &mut writer,
            part: Part::Message,
            result: Ok(()),
        };
        event.record(&mut message);
        message.result?;
        writer.write_char('"')?;
        let mut rest = Fields {
            out: &mut writer,
            part: Part::Others,
            result: Ok(()),
        };
        event.record(&mut rest);
        rest.result?;
        writer.write_str("}\n")
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Which fields a pass over an event writes: its message (`msg`, or tracing's implicit
/// `message`) as the contents of a JSON string, or every other field as `,"name":value`.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Message,
    Others,
}

/// A visitor writing fields as JSON straight into the line.
struct Fields<'a, W> {
    out: &'a mut W,
    part: Part,
    /// The first write error; `Visit` methods cannot return one.
    result: fmt::Result,
}

impl<W: fmt::Write> Fields<'_, W> {
    /// Writes one field when this pass wants it; `value` writes the JSON value.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        let is_message = matches!(field.name(), "msg" | "message");
        if self.result.is_err() || is_message != (self.part == Part::Message) {
            return;
        }
        if !is_message {
            // Names are usually identifiers, but tracing accepts any string literal as one.
            self.result = (|| {
                self.out.write_str(",\"")?;
                JsonEscaped(&mut *self.out).write_str(field.name())?;
                self.out.write_str("\":")
            })();
        }
        if self.result.is_ok() {
            self.result = value(self.out);
        }
    }

    /// A string value: quoted on its own, bare inside the message's quotes.
    fn text(&mut self, field: &Field, write: impl FnOnce(&mut JsonEscaped<'_, W>) -> fmt::Result) {
        let quoted = self.part == Part::Others;
        self.field(field, |out| {
            if quoted {
                out.write_char('"')?;
            }
            write(&mut JsonEscaped(&mut *out))?;
            if quoted {
                out.write_char('"')?;
            }
            Ok(())
        });
    }
}

impl<W: fmt::Write> Visit for Fields<'_, W> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, |out| write!(out, "{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, |out| out.write_str(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.number(field, value);
        } else {
            self.number(field, "null");
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value);
    }
}

impl<W: fmt::Write> Fields<'_, W> {
    /// A value whose `Display` is already JSON (numbers, booleans, `null`); a message that is one
    /// is written as its text.
    fn number(&mut self, field: &Field, value: impl fmt::Display) {
        self.field(field, |out| write!(out, "{value}"));
    }
}

/// Writes what it is given as the contents of a JSON string (RFC 8259 §7 escapes).
struct JsonEscaped<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut clean = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[clean..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            clean = i + 1;
        }
        self.0.write_str(&s[clean..])
    }
}

/// RFC 3339 UTC with milliseconds. Written here with a few integer operations rather than
/// through the `time` crate's formatter (which the privacy API's second-precision stamps use):
/// it runs once per log line.
fn write_timestamp(out: &mut impl fmt::Write) -> fmt::Result {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's civil-from-days algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats one event through the real subscriber stack and parses the line back.
    fn line_of(emit: impl FnOnce()) -> (String, serde_json::Value) {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "{text:?}"
        );
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (text, value)
    }

    #[test]
    fn lines_are_flat_json_with_every_value_escaped() {
        let awkward = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} unicode é ✓";
        let (_, line) = line_of(|| {
            tracing::warn!(
                msg = awkward,
                text = awkward,
                debug = ?awkward,
                count = 7u64,
                "odd \"name\"" = 1u64,
                delta = -3i64,
                ratio = 0.25,
                nan = f64::NAN,
                ok = true,
            )
        });
        assert_eq!(line["level"], "warn");
        assert_eq!(line["msg"], awkward);
        assert_eq!(line["text"], awkward);
        assert_eq!(line["debug"], format!("{awkward:?}"));
        assert_eq!(line["count"], 7);
        assert_eq!(line["delta"], -3);
        assert_eq!(line["ratio"], 0.25);
        assert_eq!(line["nan"], serde_json::Value::Null);
        assert_eq!(line["ok"], true);
        assert_eq!(line["odd \"name\""], 1);
        assert_eq!(line.as_object().unwrap().len(), 11, "{line}");
    }

    #[test]
    fn a_message_without_msg_is_tracings_message_and_leads_the_line() {
        let (text, line) =
            line_of(|| tracing::info!(port = 8443u64, "listening on {}", "loopback"));
        assert_eq!(line["msg"], "listening on loopback");
        assert_eq!(line["port"], 8443);
        assert!(line.get("message").is_none(), "{line}");
        let ts = line["ts"].as_str().unwrap();
        let head = format!(r#"{{"ts":"{ts}","level":"info","msg":"listening on loopback","#);
        assert!(text.starts_with(&head), "{text}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn timestamp_shape() {
        let mut ts = String::new();
        write_timestamp(&mut ts).unwrap();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T');
    }
}
