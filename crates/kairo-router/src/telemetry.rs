//! Logging setup. Every line goes through the configuration's
//! [`Redactor`](kairo_core::Redactor) on its way out, whichever crate
//! logged it and at whatever level, so no secret reaches the log.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use kairo_core::Redactor;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

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
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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
