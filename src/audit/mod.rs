//! Audit log: one JSON line per decision and per admin action, with the caller's identity, written
//! by its own thread so the hot path never waits on the disk. Records never carry the customer's
//! text. Fields the API caller fills (conversation and message ids: some fill them with phone
//! numbers) pass through `redact`; values the server made (decision ids, versions, rule ids) are
//! written as they are, so the trail joins the decisions served. A full queue drops the record and
//! counts it.

pub mod redact;

use std::io::Write;
use std::path::Path;

use crossbeam_channel::Sender;
use serde_json::Value;

use crate::telemetry as t;
use crate::telemetry::throttle::Throttled;

/// A full disk fails every record: one log line per interval says so.
static WRITE_FAILURES: Throttled = Throttled::new(std::time::Duration::from_secs(10));

/// Records waiting for the writer before new ones are dropped.
const QUEUE: usize = 8192;

#[derive(Clone, Default)]
pub struct AuditLog {
    tx: Option<Sender<Value>>,
}

impl AuditLog {
    /// Append to `path` (created if missing).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = crossbeam_channel::bounded::<Value>(QUEUE);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                // Write what is queued, flush when the queue runs dry: lines reach the file within
                // one burst, and a burst costs one write.
                while let Ok(first) = rx.recv() {
                    for record in std::iter::once(first).chain(rx.try_iter()) {
                        let line = serde_json::to_string(&record).unwrap_or_default();
                        if let Err(e) = writeln!(out, "{line}") {
                            WRITE_FAILURES.error(|| format!("audit log write failed: {e}"));
                        }
                    }
                    if let Err(e) = out.flush() {
                        WRITE_FAILURES.error(|| format!("audit log flush failed: {e}"));
                    }
                }
            })?;
        Ok(AuditLog { tx: Some(tx) })
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
        if tx.try_send(fields).is_err() {
            metrics::counter!(t::AUDIT_DROPPED).increment(1); // writer behind (or gone)
        }
    }
}
