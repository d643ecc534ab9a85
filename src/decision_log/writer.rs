//! The writer: decisions and feedback go through a bounded queue to one thread that appends JSON
//! lines, so the hot path never waits on the disk. Files rotate by size and age and the oldest are
//! deleted past `max_files`; `close` drains the queue, flushes and syncs, so every line queued before
//! a graceful shutdown reaches the disk.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::Deserialize;

use super::entry::{FeedbackEntry, LoggedDecision};
use crate::telemetry as t;
use crate::telemetry::throttle::Throttled;

/// A full disk fails every line: one log line per interval says so, the counter counts them all.
static WRITE_FAILURES: Throttled = Throttled::new(Duration::from_secs(10));

/// Lines waiting for the writer before new ones are dropped (and counted): ~10 s at peak.
const QUEUE: usize = 1 << 16;

/// `[decision_log]` in the server config.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionLogConfig {
    /// Directory this replica writes its files to (created if missing); none: no decision log.
    pub dir: Option<PathBuf>,
    /// Share of decisions written, 0 to 1, drawn by decision id. Feedback is always written.
    pub sample_rate: f64,
    /// A file is closed and a new one started past this size or this age.
    pub max_file_bytes: u64,
    pub max_file_age_s: u64,
    /// Files of each kind this replica keeps; the oldest are deleted.
    pub max_files: usize,
    /// Keep each message's text, redacted (phone numbers, e-mail addresses, ids), for retraining.
    /// Off by default: without it no customer text is written.
    pub keep_redacted_text: bool,
    /// This replica's name in file names; empty: the host name, else the process id.
    #[serde(deserialize_with = "crate::config::lenient_string")]
    pub replica: String,
    /// Feedback is taken for this long after a decision.
    pub feedback_window_s: u64,
    /// Decisions remembered for feedback at most (~60 bytes each); the oldest are forgotten first.
    pub max_pending_feedback: usize,
    /// Salt for the conversation hash; empty: a random one per start (turns still group within a
    /// run). Set it to group a conversation's turns across replicas and restarts.
    #[serde(deserialize_with = "crate::config::lenient_string")]
    pub conversation_salt: String,
    /// Keys decision ids are signed with, so feedback is taken on any replica and after restarts:
    /// the first signs, all verify (list the previous key second while rotating). Empty: a random
    /// key per start (feedback only on the replica that decided, until it restarts).
    pub feedback_keys: Vec<String>,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        DecisionLogConfig {
            dir: None,
            sample_rate: 1.0,
            max_file_bytes: 64 << 20,
            max_file_age_s: 3600,
            max_files: 168,
            keep_redacted_text: false,
            replica: String::new(),
            feedback_window_s: 7 * 24 * 3600,
            max_pending_feedback: 500_000,
            conversation_salt: String::new(),
            feedback_keys: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecisionLogError {
    #[error("[decision_log] sample_rate = {0} is outside [0, 1]")]
    SampleRate(f64),
    #[error("[decision_log] {0} must be > 0")]
    Zero(&'static str),
    #[error("[decision_log] replica {0:?}: use letters, digits, '-' and '_' only")]
    Replica(String),
    #[error("creating the decision log directory {0}")]
    Dir(PathBuf, #[source] std::io::Error),
    #[error("the decision log directory {0} is not writable (a probe file could not be written)")]
    Unwritable(PathBuf, #[source] std::io::Error),
    #[error("starting the decision log writer")]
    Thread(#[source] std::io::Error),
}

impl DecisionLogConfig {
    pub fn validate(&self) -> Result<(), DecisionLogError> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(DecisionLogError::SampleRate(self.sample_rate));
        }
        for (name, v) in [
            ("max_file_bytes", self.max_file_bytes),
            ("max_file_age_s", self.max_file_age_s),
            ("max_files", self.max_files as u64),
            ("feedback_window_s", self.feedback_window_s),
            ("max_pending_feedback", self.max_pending_feedback as u64),
        ] {
            if v == 0 {
                return Err(DecisionLogError::Zero(name));
            }
        }
        if !self
            .replica
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(DecisionLogError::Replica(self.replica.clone()));
        }
        Ok(())
    }

    fn replica_name(&self) -> String {
        if !self.replica.is_empty() {
            return self.replica.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| {
                h.trim()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect::<String>()
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("pid{}", std::process::id()))
    }
}

/// Told whether a feedback line reached the file (written and flushed), or why not.
pub type Ack = Box<dyn FnOnce(Result<(), String>) + Send>;

enum Line {
    Decision(Box<LoggedDecision>),
    Feedback(FeedbackEntry, Ack),
    /// Everything before it is written: flush, sync and stop.
    Close,
}

/// Handle to the writer; cheap to clone. A disabled log accepts nothing and writes nothing.
#[derive(Clone, Default)]
pub struct DecisionLog {
    tx: Option<Sender<Line>>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
    sample_below: u64,
    keep_text: bool,
}

impl DecisionLog {
    pub fn disabled() -> Self {
        DecisionLog::default()
    }

    pub fn open(config: &DecisionLogConfig) -> Result<Self, DecisionLogError> {
        config.validate()?;
        let Some(dir) = config.dir.clone() else {
            return Ok(DecisionLog::disabled());
        };
        std::fs::create_dir_all(&dir).map_err(|e| DecisionLogError::Dir(dir.clone(), e))?;
        probe_writable(&dir).map_err(|e| DecisionLogError::Unwritable(dir.clone(), e))?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let rotation = Rotation {
            dir,
            replica: config.replica_name(),
            max_bytes: config.max_file_bytes,
            max_age: Duration::from_secs(config.max_file_age_s),
            max_files: config.max_files,
        };
        let writer = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_lines(rx, rotation))
            .map_err(DecisionLogError::Thread)?;
        Ok(DecisionLog {
            tx: Some(tx),
            writer: Arc::new(Mutex::new(Some(writer))),
            sample_below: (config.sample_rate * u64::MAX as f64) as u64,
            keep_text: config.keep_redacted_text,
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn keeps_text(&self) -> bool {
        self.keep_text
    }

    /// Whether this decision is in the sample: the same id always gets the same answer.
    pub fn samples(&self, decision_id: &uuid::Uuid) -> bool {
        // The top two bits of a v4 UUID's low half are its variant (always 10): shifted out, the
        // rest is uniform.
        let random = decision_id.as_u64_pair().1 << 2;
        self.enabled() && (self.sample_below == u64::MAX || random < self.sample_below)
    }

    pub fn decision(&self, d: LoggedDecision) {
        self.send(Line::Decision(Box::new(d)));
    }

    /// Queue feedback; false when the queue is full (the caller is told to retry, nothing is lost).
    /// Otherwise `ack` is called once the line is on the file, or could not be written.
    pub fn feedback(&self, f: FeedbackEntry, ack: Ack) -> bool {
        self.send(Line::Feedback(f, ack))
    }

    fn send(&self, line: Line) -> bool {
        let Some(tx) = &self.tx else { return false };
        let queued = tx.try_send(line).is_ok();
        if !queued {
            metrics::counter!(t::DECISION_LOG_DROPPED).increment(1);
        }
        queued
    }

    /// Write everything queued, flush and sync, then stop the writer. Call once no more decisions
    /// can be made (after the server has answered its last call); later lines are not written.
    pub fn close(&self) {
        let Some(tx) = &self.tx else { return };
        // Blocking send: a full queue still gets its Close, after the lines ahead of it.
        let _ = tx.send(Line::Close);
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// An unwritable directory (read-only mount, wrong owner) must stop the start, not lose every line.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    let written = std::fs::write(&probe, b"probe\n");
    let _ = std::fs::remove_file(&probe);
    written
}

struct Rotation {
    dir: PathBuf,
    replica: String,
    max_bytes: u64,
    max_age: Duration,
    max_files: usize,
}

/// One kind of file (`decisions` or `feedback`): the open one and when to start the next.
struct Rotating {
    kind: &'static str,
    file: Option<(BufWriter<File>, u64, Instant)>,
    seq: u64,
    /// A write failed part-way: the next line starts on a line of its own, so the torn one is the
    /// only unreadable line.
    torn: bool,
    /// Why lines were dropped since the last flush: feedback waiting on that flush was lost too.
    lost: Option<String>,
}

impl Rotating {
    fn new(kind: &'static str) -> Self {
        Rotating {
            kind,
            file: None,
            seq: 0,
            torn: false,
            lost: None,
        }
    }

    fn write(&mut self, r: &Rotation, line: &[u8]) -> std::io::Result<()> {
        let stale = self.file.as_ref().is_some_and(|(_, bytes, opened)| {
            *bytes >= r.max_bytes || opened.elapsed() >= r.max_age
        });
        if stale {
            self.finish()?;
        }
        if self.file.is_none() {
            // A file that cannot be deleted must not stop the log: report it and write on.
            if let Err(e) = prune(r, self.kind) {
                metrics::counter!(t::DECISION_LOG_ERRORS).increment(1);
                WRITE_FAILURES.error(|| {
                    format!("decision log: deleting old {} files failed: {e}", self.kind)
                });
            }
            self.file = Some((BufWriter::new(self.create(r)?), 0, Instant::now()));
            self.torn = false;
        }
        let (out, bytes, _) = self.file.as_mut().expect("opened above");
        let written = match std::mem::take(&mut self.torn) {
            true => out.write_all(b"\n").and_then(|()| out.write_all(line)),
            false => out.write_all(line),
        };
        match written {
            Ok(()) => {
                *bytes += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.discard_unwritten(&e);
                Err(e)
            }
        }
    }

    /// File names sort by time: `<kind>-<replica>-<ms since epoch>-<seq>.jsonl`.
    fn create(&mut self, r: &Rotation) -> std::io::Result<File> {
        self.seq += 1;
        let name = format!(
            "{}-{}-{:013}-{:04}.jsonl",
            self.kind,
            r.replica,
            super::entry::now_ms(),
            self.seq
        );
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(r.dir.join(name))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let Some((out, _, _)) = &mut self.file else {
            return Ok(());
        };
        let flushed = out.flush();
        if let Err(e) = &flushed {
            self.discard_unwritten(e);
        }
        flushed
    }

    /// Lines that failed are dropped (and were counted), never written later: a caller told its
    /// feedback was not recorded must not find it in the log after all when the disk frees up.
    fn discard_unwritten(&mut self, why: &std::io::Error) {
        self.lost.get_or_insert_with(|| why.to_string());
        if let Some((out, bytes, opened)) = self.file.take() {
            let (file, _unwritten) = out.into_parts();
            self.file = Some((BufWriter::new(file), bytes, opened));
            self.torn = true;
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let Some((mut out, _, _)) = self.file.take() {
            out.flush()?;
            out.get_ref().sync_all()?;
        }
        Ok(())
    }
}

/// `(kind, replica)` of a file this writer names `<kind>-<replica>-<13 digits>-<4 digits>.jsonl`.
/// Replica names may hold '-', so the name is taken apart from the right.
pub fn parse_name(name: &str) -> Option<(&str, &str)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (rest, seq) = stem.rsplit_once('-')?;
    let (rest, ms) = rest.rsplit_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(seq, 4) || !digits(ms, 13) {
        return None;
    }
    rest.split_once('-')
}

/// Delete this replica's oldest files of `kind` beyond `max_files` (counting the one about to open).
fn prune(r: &Rotation, kind: &str) -> std::io::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&r.dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| file_name(p).and_then(parse_name) == Some((kind, r.replica.as_str())))
        .collect();
    files.sort();
    let excess = (files.len() + 1).saturating_sub(r.max_files);
    let mut failed = Ok(());
    for old in files.into_iter().take(excess) {
        if let Err(e) = std::fs::remove_file(&old) {
            failed = Err(e);
        }
    }
    failed
}

fn file_name(p: &Path) -> Option<&str> {
    p.file_name()?.to_str()
}

fn write_lines(rx: Receiver<Line>, rotation: Rotation) {
    let mut decisions = Rotating::new("decisions");
    let mut feedback = Rotating::new("feedback");
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        metrics::counter!(t::DECISION_LOG_ERRORS).increment(1);
        WRITE_FAILURES.error(|| format!("decision log {what} failed: {e}"));
    };
    // Feedback waiting for its line to be flushed, with what its write gave.
    let mut acks: Vec<(Ack, Result<(), String>)> = Vec::new();
    // Write what is queued, flush when the queue runs dry: a burst costs one write per file.
    while let Ok(first) = rx.recv() {
        for line in std::iter::once(first).chain(rx.try_iter()) {
            let (out, kind, json, ack) = match line {
                Line::Decision(d) => (&mut decisions, "decision", serde_json::to_vec(&d), None),
                Line::Feedback(f, ack) => {
                    (&mut feedback, "feedback", serde_json::to_vec(&f), Some(ack))
                }
                Line::Close => {
                    if let Err(e) = decisions.finish() {
                        fail("final flush", &e);
                    }
                    let finished = feedback.finish().map_err(|e| {
                        fail("final flush", &e);
                        e.to_string()
                    });
                    let lost = feedback.lost.take().map_or(Ok(()), Err);
                    answer(&mut acks, finished.and(lost));
                    return;
                }
            };
            let written = json.map_err(std::io::Error::from).and_then(|mut json| {
                json.push(b'\n');
                out.write(&rotation, &json)
            });
            match &written {
                Ok(()) => metrics::counter!(t::DECISION_LOG_WRITTEN, "kind" => kind).increment(1),
                Err(e) => fail("write", e),
            }
            if let Some(ack) = ack {
                acks.push((ack, written.map_err(|e| e.to_string())));
            }
        }
        if let Err(e) = decisions.flush() {
            fail("flush", &e);
        }
        decisions.lost = None;
        if let Err(e) = feedback.flush() {
            fail("flush", &e);
        }
        answer(&mut acks, feedback.lost.take().map_or(Ok(()), Err));
    }
}

/// Tell each waiting feedback call its outcome: its own write's, else the flush's.
fn answer(acks: &mut Vec<(Ack, Result<(), String>)>, flushed: Result<(), String>) {
    for (ack, written) in acks.drain(..) {
        ack(written.and(flushed.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_taken_apart_from_the_right() {
        assert_eq!(
            parse_name("decisions-handoff-canary-1795663047421-0001.jsonl"),
            Some(("decisions", "handoff-canary"))
        );
        assert_eq!(
            parse_name("feedback-pod_7-1795663047421-0012.jsonl"),
            Some(("feedback", "pod_7"))
        );
        for other in [
            "decisions-x-17956630-0001.jsonl",
            "decisions-x-1795663047421-1.jsonl",
            "notes.txt",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_sample_rate_samples_that_share_of_decisions() {
        for rate in [0.1, 0.5, 0.9] {
            let log = DecisionLog {
                tx: Some(crossbeam_channel::bounded(1).0),
                sample_below: (rate * u64::MAX as f64) as u64,
                ..Default::default()
            };
            let n = 20_000;
            let kept = (0..n)
                .filter(|_| log.samples(&uuid::Uuid::new_v4()))
                .count();
            let share = kept as f64 / n as f64;
            assert!((share - rate).abs() < 0.02, "rate {rate}: sampled {share}");
        }
    }
}
