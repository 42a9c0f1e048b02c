//! The NDJSON logger: one JSON object per line on stdout.
//!
//! Every line carries `ts` (RFC 3339 UTC, ms), `level` and `event`, then the
//! event's own fields. A request thread only formats its line and hands it to
//! a bounded channel with `try_send`; one writer thread owns stdout. When the
//! writer cannot keep up (a slow pipe, a stopped terminal) lines are dropped
//! and counted rather than making a request wait, and the writer reports the
//! count as a `log.dropped` event once it catches up.

use std::fmt::Display;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use crate::{clock, json};

/// Severity of a log line, ordered from chatty to grave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    /// Parses `DEBUG`, `INFO`, `WARN` (or `WARNING`), `ERROR`, in any case.
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_uppercase().as_str() {
            "DEBUG" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARN" | "WARNING" => Some(Level::Warn),
            "ERROR" => Some(Level::Error),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// Lines that may wait for the writer before new ones are dropped.
const QUEUE_LINES: usize = 16 * 1024;

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SINK: OnceLock<SyncSender<Msg>> = OnceLock::new();

enum Msg {
    Line(String),
    Flush(SyncSender<()>),
}

/// Sets the level and starts the writer thread (once; later calls only set
/// the level). Until this is called, events are discarded.
pub fn init(level: Level) {
    set_level(level);
    SINK.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_loop(rx));
        if let Err(e) = spawned {
            eprintln!("log: cannot start the writer thread: {e}");
        }
        tx
    });
}

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// True if an event at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

/// Waits (at most a second) until every line queued so far is on stdout.
pub fn flush() {
    let Some(tx) = SINK.get() else { return };
    let (ack_tx, ack_rx) = sync_channel(1);
    if tx.send(Msg::Flush(ack_tx)).is_ok() {
        let _ = ack_rx.recv_timeout(Duration::from_secs(1));
    }
}

fn write_loop(rx: Receiver<Msg>) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    while let Ok(msg) = rx.recv() {
        let mut acks = Vec::new();
        let mut next = Some(msg);
        // Drain whatever is queued, then flush once: one syscall per burst.
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => {
                    let _ = out.write_all(line.as_bytes());
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            if let Some(line) = Event::new(Level::Warn, "log.dropped")
                .uint("lines", dropped)
                .finish()
            {
                let _ = out.write_all(line.as_bytes());
            }
        }
        let _ = out.flush();
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// A log line under construction. Built with chained field setters and sent
/// with [`Event::emit`]; when its level is filtered out, every call is a no-op.
///
/// ```
/// use fabric_telemetry::log::{Event, Level};
/// Event::new(Level::Info, "startup").str("addr", "127.0.0.1:9001").emit();
/// ```
#[must_use = "an event is only written by .emit()"]
pub struct Event {
    buf: Option<String>,
}

impl Event {
    pub fn new(level: Level, event: &str) -> Event {
        if !enabled(level) {
            return Event { buf: None };
        }
        Event::always(level, event)
    }

    /// An event written whatever `LOG_LEVEL` says: `startup` (whose `addr`
    /// a script needs) and `shutdown`.
    pub fn always(level: Level, event: &str) -> Event {
        let mut buf = String::with_capacity(192);
        buf.push_str("{\"ts\":\"");
        clock::push_rfc3339_ms(&mut buf, clock::epoch_ms());
        buf.push_str("\",\"level\":\"");
        buf.push_str(level.as_str());
        buf.push_str("\",\"event\":");
        json::push_str(&mut buf, event);
        Event { buf: Some(buf) }
    }

    fn key(&mut self, key: &str) -> Option<&mut String> {
        let buf = self.buf.as_mut()?;
        buf.push(',');
        json::push_str(buf, key);
        buf.push(':');
        Some(buf)
    }

    /// A string field (escaped).
    pub fn str(mut self, key: &str, value: &str) -> Event {
        if let Some(buf) = self.key(key) {
            json::push_str(buf, value);
        }
        self
    }

    /// An unsigned integer field.
    pub fn uint(self, key: &str, value: u64) -> Event {
        self.raw(key, value)
    }

    /// A signed integer field.
    pub fn int(self, key: &str, value: i64) -> Event {
        self.raw(key, value)
    }

    /// A boolean field.
    pub fn bool(self, key: &str, value: bool) -> Event {
        self.raw(key, value)
    }

    /// A duration in milliseconds with microsecond resolution (`1.234`).
    pub fn ms(mut self, key: &str, d: Duration) -> Event {
        if let Some(buf) = self.key(key) {
            json::push_f64(buf, (d.as_micros() as f64) / 1000.0);
        }
        self
    }

    /// A floating-point field (`null` if not finite).
    pub fn float(mut self, key: &str, value: f64) -> Event {
        if let Some(buf) = self.key(key) {
            json::push_f64(buf, value);
        }
        self
    }

    fn raw(mut self, key: &str, value: impl Display) -> Event {
        use std::fmt::Write;
        if let Some(buf) = self.key(key) {
            let _ = write!(buf, "{value}");
        }
        self
    }

    fn finish(self) -> Option<String> {
        let mut buf = self.buf?;
        buf.push_str("}\n");
        Some(buf)
    }

    /// Queues the line for stdout without waiting; drops it (and counts the
    /// drop) if the writer is behind.
    pub fn emit(self) {
        let Some(line) = self.finish() else { return };
        let Some(tx) = SINK.get() else { return };
        match tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_any_case() {
        assert_eq!(Level::parse("debug"), Some(Level::Debug));
        assert_eq!(Level::parse("Info"), Some(Level::Info));
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("error"), Some(Level::Error));
        assert_eq!(Level::parse("loud"), None);
    }

    #[test]
    fn event_is_one_json_object_per_line() {
        // Error is never filtered, whatever another test set the level to.
        let line = Event::new(Level::Error, "poll.error")
            .str("reason", "bad \"csv\"\nline 2")
            .uint("n", 7)
            .int("neg", -3)
            .bool("ok", false)
            .ms("took", Duration::from_micros(1234))
            .float("nan", f64::NAN)
            .finish()
            .unwrap();
        assert!(line.ends_with("}\n"));
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["event"], "poll.error");
        assert_eq!(v["reason"], "bad \"csv\"\nline 2");
        assert_eq!(v["n"], 7);
        assert_eq!(v["neg"], -3);
        assert_eq!(v["ok"], false);
        assert_eq!(v["took"], 1.234);
        assert!(v["nan"].is_null());
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn filtered_events_do_nothing() {
        assert!(enabled(Level::Error));
        let e = Event { buf: None }.str("k", "v").uint("n", 1);
        assert!(e.finish().is_none());
    }
}
