//! Logging setup. Every line goes through the configuration's
//! [`Redactor`](kairo_core::Redactor) on its way out, whichever crate
//! logged it and at whatever level, so no secret reaches the log.

use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::sync::Arc;

use kairo_core::Redactor;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global log subscriber: `RUST_LOG` if set, otherwise `level`;
/// `redactor` masks secrets in every line.
pub fn init(format: LogFormat, level: &str, redactor: Redactor) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(RedactingStderr(Arc::new(redactor)));
    // A second init (tests, embedding) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
    };
}

/// One JSON object per event, fields flattened; a field logged with `?` whose
/// value reads as a JSON list or object (`?vec_of_names`) stays one, instead
/// of becoming a string.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = JsonFields(serde_json::Map::new());
        fields.0.insert("timestamp".into(), chrono_now().into());
        fields
            .0
            .insert("level".into(), event.metadata().level().as_str().into());
        event.record(&mut fields);
        fields
            .0
            .insert("target".into(), event.metadata().target().into());
        writeln!(writer, "{}", serde_json::Value::Object(fields.0))
    }
}

/// The current time as RFC 3339 UTC with microseconds.
fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    kairo_core::handler::describe_time_micros(now.as_micros() as i64)
}

struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        let structured = (text.starts_with('[') || text.starts_with('{'))
            .then(|| serde_json::from_str::<serde_json::Value>(&text).ok())
            .flatten();
        self.0.insert(
            field.name().to_string(),
            structured.unwrap_or(serde_json::Value::String(text)),
        );
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

/// Standard error, with secrets masked. The formatter writes each event in
/// one piece, so a secret is never split across writes.
#[derive(Clone)]
struct RedactingStderr(Arc<Redactor>);

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(self.0.redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// Level filter, e.g. `info` or `kairo=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}
