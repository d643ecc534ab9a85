//! Audit log: one JSON line per decision and per admin action, with the caller's identity, written
//! by its own thread so the hot path never waits on the disk. Records never carry the customer's
//! text. Fields the API caller fills (conversation and message ids: some fill them with phone
//! numbers) pass through `redact`; values the server made (decision ids, versions, rule ids) are
//! written as they are, so the trail joins the decisions served. A full queue drops the record and
//! counts it. The file rotates by size and age (`file.rs`); on shutdown `close` writes everything
//! queued and syncs, as the decision log does.

mod file;
pub mod redact;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use serde_json::Value;

pub use file::{rotated, AuditRotation};

use crate::telemetry as t;
use crate::telemetry::throttle::Throttled;

/// A full disk fails every record: one log line per interval says so.
static WRITE_FAILURES: Throttled = Throttled::new(std::time::Duration::from_secs(10));

/// Records waiting for the writer before new ones are dropped.
const QUEUE: usize = 8192;

enum Message {
    Record(Value),
    /// Write what is queued ahead, flush, sync and stop.
    Close,
}

#[derive(Clone, Default)]
pub struct AuditLog {
    tx: Option<Sender<Message>>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl AuditLog {
    /// Append to `path` (created if missing), rotated by `rotation`.
    pub fn open(path: &std::path::Path, rotation: AuditRotation) -> std::io::Result<Self> {
        let mut file = file::RotatingFile::open(path, rotation)?;
        let (tx, rx) = crossbeam_channel::bounded::<Message>(QUEUE);
        let writer = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                // Write what is queued, flush when the queue runs dry: lines reach the file within
                // one burst, and a burst costs one write.
                while let Ok(first) = rx.recv() {
                    for message in std::iter::once(first).chain(rx.try_iter()) {
                        let record = match message {
                            Message::Record(record) => record,
                            Message::Close => {
                                if let Err(e) = file.sync() {
                                    WRITE_FAILURES.error(|| format!("audit log sync failed: {e}"));
                                }
                                return;
                            }
                        };
                        let mut line = serde_json::to_vec(&record).unwrap_or_default();
                        line.push(b'\n');
                        if let Err(e) = file.write_line(&line) {
                            WRITE_FAILURES.error(|| format!("audit log write failed: {e}"));
                        }
                    }
                    if let Err(e) = file.flush() {
                        WRITE_FAILURES.error(|| format!("audit log flush failed: {e}"));
                    }
                }
            })?;
        Ok(AuditLog {
            tx: Some(tx),
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    /// Write every record queued so far, sync the file and stop the writer (after the server has
    /// answered its last call); records after this are dropped and counted.
    pub fn close(&self) {
        let Some(tx) = &self.tx else { return };
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(writer) = writer else { return };
        // Blocks while the queue is full: the writer is draining it.
        if tx.send(Message::Close).is_ok() {
            let _ = writer.join();
        }
    }

    /// No audit log.
    pub fn disabled() -> Self {
        AuditLog::default()
    }

    /// Queue one record: `fields` (server-made values, kept as they are) and `caller_supplied`
    /// (redacted), both objects; adds the time.
    pub fn record(&self, event: &str, mut fields: Value, mut caller_supplied: Value) {
        let Some(tx) = &self.tx else { return };
        redact::redact_json(&mut caller_supplied);
        if let (Value::Object(map), Value::Object(personal)) = (&mut fields, caller_supplied) {
            map.extend(personal);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            map.insert("ts_ms".into(), (now.as_millis() as u64).into());
            map.insert("event".into(), event.into());
        }
        if tx.try_send(Message::Record(fields)).is_err() {
            metrics::counter!(t::AUDIT_DROPPED).increment(1); // writer behind (or gone)
        }
    }
}
