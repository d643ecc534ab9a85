//! Reading a decision-log directory: every replica's decision and feedback files, one record per
//! line, for `handoff replay`, `report`, `export` and `export-examples`. Lines torn by a crash are
//! skipped and counted; a line of some other writer is refused.
//!
//! Logs run to hundreds of millions of lines, so decisions are read as a stream ([`LogStream`]):
//! one thread per replica parses that replica's files (in the order they were written) while the
//! caller folds them, merged into time order across replicas. Memory holds a few chunks per
//! replica and the feedback index, never the log. Tools that need every decision at once (the
//! export of training examples, tests) collect the stream into [`DecisionLogData`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::entry::{FeedbackEntry, LoggedDecision, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum LogReadError {
    #[error("reading {0}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{0} holds no decisions-*.jsonl files")]
    Empty(PathBuf),
    #[error("{}:{line}: unknown action {action:?} (known: {})", path.display(), crate::policy::Action::NAMES.join(", "))]
    UnknownAction {
        path: PathBuf,
        line: usize,
        action: String,
    },
}

/// Unreadable lines named in full, at most: the count goes on past them.
const NAMED_UNREADABLE: usize = 10;
/// Decisions a replica's reader parses ahead, per chunk and in chunks: bounds memory per replica.
const CHUNK: usize = 512;
const CHUNKS_AHEAD: usize = 4;

/// Lines that did not parse (a line cut short by a crash, say): skipped and counted.
#[derive(Debug, Default, Clone)]
pub struct Unreadable {
    pub lines: usize,
    /// The first of them, as `file:line`.
    pub named: Vec<String>,
}

impl Unreadable {
    fn add(&mut self, path: &Path, line: usize) {
        self.lines += 1;
        if self.named.len() < NAMED_UNREADABLE {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            self.named.push(format!("{name}:{line}"));
        }
    }

    fn merge(&mut self, other: Unreadable) {
        self.lines += other.lines;
        self.named.extend(other.named);
        self.named.sort();
        self.named.truncate(NAMED_UNREADABLE);
    }
}

/// The log's files of one kind, grouped by the replica that wrote them, each group in writing order.
fn files_by_replica(dir: &Path, kind: &str) -> Result<Vec<Vec<PathBuf>>, LogReadError> {
    let mut groups: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LogReadError::Io(dir.to_path_buf(), e))? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".jsonl") || !name.starts_with(&format!("{kind}-")) {
            continue;
        }
        // Files not named by the writer (copied, renamed) are read as a replica of their own.
        let replica = match super::writer::parse_name(name) {
            Some((_, replica)) => replica.to_string(),
            None => name.to_string(),
        };
        groups.entry(replica).or_default().push(path);
    }
    Ok(groups
        .into_values()
        .map(|mut files| {
            files.sort();
            files
        })
        .collect())
}

/// Each non-blank line of a file with its number (from 1), read a line at a time. A line torn by a
/// crash (even mid-character) is one unreadable line, not an unreadable file.
fn for_each_line<E: From<LogReadError>>(
    path: &Path,
    mut f: impl FnMut(usize, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let io = |e| LogReadError::Io(path.to_path_buf(), e);
    let mut reader =
        std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(path).map_err(io)?);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            return Ok(());
        }
        number += 1;
        if !line.iter().all(u8::is_ascii_whitespace) {
            f(number, &line)?;
        }
    }
}

fn of_tenant(record: &Option<String>, tenant: Option<&str>) -> bool {
    tenant.is_none_or(|t| record.as_deref().unwrap_or(crate::tenants::IMPLICIT) == t)
}

/// Every feedback line of the log (of `tenant`, when given), in file order.
fn for_each_feedback(
    dir: &Path,
    tenant: Option<&str>,
    unreadable: &mut Unreadable,
    mut f: impl FnMut(FeedbackEntry),
) -> Result<(), LogReadError> {
    for path in files_by_replica(dir, "feedback")?.concat() {
        for_each_line(&path, |line, text| {
            match serde_json::from_slice::<FeedbackEntry>(text) {
                Ok(entry) if of_tenant(&entry.tenant, tenant) => f(entry),
                Ok(_) => {}
                Err(_) => unreadable.add(&path, line),
            }
            Ok::<_, LogReadError>(())
        })?;
    }
    Ok(())
}

/// What feedback said per decision, keyed by a 64-bit hash of the decision id: ~40 bytes a decision
/// with feedback, where the entries themselves take ~200. Two ids share a hash with odds of about
/// one in 10^6 for a log of 10^7 decisions with 10^6 feedback: acceptable for a report.
#[derive(Debug, Default)]
pub struct FeedbackIndex {
    by_id: HashMap<u64, Verdict>,
}

/// A decision id as 64 bits, the same in every thread of this process (fixed keys): the feedback
/// index's key, and the order the report's sweep sample is drawn in.
pub(crate) fn id_hash(decision_id: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(decision_id)
}

impl FeedbackIndex {
    fn key(decision_id: &str) -> u64 {
        id_hash(decision_id)
    }

    /// The first feedback per decision counts, as the server keeps it.
    fn insert(&mut self, entry: &FeedbackEntry) {
        self.by_id
            .entry(Self::key(&entry.decision_id))
            .or_insert_with(|| entry.verdict());
    }

    pub fn get(&self, decision_id: &str) -> Option<Verdict> {
        self.by_id.get(&Self::key(decision_id)).copied()
    }

    /// Decisions with feedback.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

enum Parsed {
    Chunk(Vec<LoggedDecision>),
    Done(Unreadable),
    Failed(LogReadError),
}

/// Why a replica's reader stops early.
enum Halt {
    Failed(LogReadError),
    /// The stream was dropped: nobody reads what is parsed.
    HungUp,
}

impl From<LogReadError> for Halt {
    fn from(e: LogReadError) -> Self {
        Halt::Failed(e)
    }
}

/// Parse one replica's decision files in order, a chunk at a time, until the reader hangs up.
fn read_replica(files: Vec<PathBuf>, tenant: Option<String>, out: SyncSender<Parsed>) {
    let mut unreadable = Unreadable::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    for path in &files {
        let read = for_each_line(path, |line, text| {
            match serde_json::from_slice::<LoggedDecision>(text) {
                // A line of some other writer: replaying it would count nonsense as changes.
                Ok(d) if crate::policy::Action::parse(&d.action).is_none() => {
                    return Err(Halt::Failed(LogReadError::UnknownAction {
                        path: path.clone(),
                        line,
                        action: d.action,
                    }));
                }
                Ok(d) if of_tenant(&d.tenant, tenant.as_deref()) => chunk.push(d),
                Ok(_) => {}
                Err(_) => unreadable.add(path, line),
            }
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                out.send(Parsed::Chunk(full)).map_err(|_| Halt::HungUp)?;
            }
            Ok(())
        });
        match read {
            Ok(()) => {}
            Err(Halt::Failed(e)) => {
                let _ = out.send(Parsed::Failed(e));
                return;
            }
            Err(Halt::HungUp) => return,
        }
    }
    if !chunk.is_empty() && out.send(Parsed::Chunk(chunk)).is_err() {
        return;
    }
    let _ = out.send(Parsed::Done(unreadable));
}

struct ReplicaStream {
    parsed: Receiver<Parsed>,
    ahead: VecDeque<LoggedDecision>,
    done: bool,
}

impl ReplicaStream {
    /// The next decision's time, waiting for the reader when its buffer is empty.
    fn peek_ts(&mut self, unreadable: &mut Unreadable) -> Result<Option<u64>, LogReadError> {
        while self.ahead.is_empty() && !self.done {
            match self.parsed.recv() {
                Ok(Parsed::Chunk(c)) => self.ahead.extend(c),
                Ok(Parsed::Done(u)) => {
                    unreadable.merge(u);
                    self.done = true;
                }
                Ok(Parsed::Failed(e)) => return Err(e),
                Err(_) => self.done = true,
            }
        }
        Ok(self.ahead.front().map(|d| d.ts_ms))
    }
}

/// Every decision of a log directory in time order (each replica's in the order it wrote them), with
/// the feedback index read up front. Unreadable lines are known once the stream has ended.
pub struct LogStream {
    replicas: Vec<ReplicaStream>,
    pub feedback: FeedbackIndex,
    unreadable: Unreadable,
    failed: bool,
}

impl LogStream {
    /// Open `dir`, only `tenant`'s records when given (`default`: those of a server without tenants).
    pub fn open(dir: &Path, tenant: Option<&str>) -> Result<Self, LogReadError> {
        Self::open_with(dir, tenant, |_| {})
    }

    /// Open `dir`, handing every feedback entry to `whole` as the index is built (for callers
    /// that keep the entries themselves), so the feedback files are read once.
    fn open_with(
        dir: &Path,
        tenant: Option<&str>,
        mut whole: impl FnMut(FeedbackEntry),
    ) -> Result<Self, LogReadError> {
        let groups = files_by_replica(dir, "decisions")?;
        if groups.is_empty() {
            return Err(LogReadError::Empty(dir.to_path_buf()));
        }
        let mut unreadable = Unreadable::default();
        let mut feedback = FeedbackIndex::default();
        for_each_feedback(dir, tenant, &mut unreadable, |entry| {
            feedback.insert(&entry);
            whole(entry);
        })?;
        let replicas = groups
            .into_iter()
            .map(|files| {
                let (tx, rx) = sync_channel(CHUNKS_AHEAD);
                let tenant = tenant.map(str::to_string);
                std::thread::Builder::new()
                    .name("log-reader".into())
                    .spawn(move || read_replica(files, tenant, tx))
                    .map_err(|e| LogReadError::Io(dir.to_path_buf(), e))?;
                Ok(ReplicaStream {
                    parsed: rx,
                    ahead: VecDeque::new(),
                    done: false,
                })
            })
            .collect::<Result<_, LogReadError>>()?;
        Ok(LogStream {
            replicas,
            feedback,
            unreadable,
            failed: false,
        })
    }

    /// Lines skipped so far (all of them once the stream has ended).
    pub fn unreadable(&self) -> &Unreadable {
        &self.unreadable
    }

    /// Every decision with what feedback said of it, in time order; the lines skipped, once done.
    pub fn for_each<E: From<LogReadError>>(
        mut self,
        mut f: impl FnMut(&LoggedDecision, Option<Verdict>) -> Result<(), E>,
    ) -> Result<Unreadable, E> {
        while let Some(d) = self.next() {
            let d = d?;
            f(&d, self.feedback.get(&d.decision_id))?;
        }
        Ok(self.unreadable)
    }
}

impl Iterator for LogStream {
    type Item = Result<LoggedDecision, LogReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut earliest: Option<(u64, usize)> = None;
        for (i, r) in self.replicas.iter_mut().enumerate() {
            match r.peek_ts(&mut self.unreadable) {
                Ok(Some(ts)) if earliest.is_none_or(|(t, _)| ts < t) => earliest = Some((ts, i)),
                Ok(_) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        let (_, i) = earliest?;
        self.replicas[i].ahead.pop_front().map(Ok)
    }
}

/// Every replica's decisions and feedback in a directory, in memory.
#[derive(Debug, Default)]
pub struct DecisionLogData {
    /// By conversation, then time.
    pub decisions: Vec<LoggedDecision>,
    /// The first feedback per decision id.
    pub feedback: HashMap<String, FeedbackEntry>,
    pub unreadable: Unreadable,
}

impl DecisionLogData {
    /// Read `dir` whole; only `tenant`'s records when given.
    pub fn read(dir: &Path, tenant: Option<&str>) -> Result<Self, LogReadError> {
        // The whole entries too: the export names the caller, tests compare entries.
        let mut feedback = HashMap::new();
        let mut stream = LogStream::open_with(dir, tenant, |f: FeedbackEntry| {
            feedback.entry(f.decision_id.clone()).or_insert(f);
        })?;
        let mut decisions = Vec::new();
        for d in stream.by_ref() {
            decisions.push(d?);
        }
        let mut data = DecisionLogData {
            decisions,
            feedback,
            unreadable: stream.unreadable,
        };
        data.decisions.sort_by(|a, b| {
            (&a.conversation, a.ts_ms, &a.decision_id).cmp(&(
                &b.conversation,
                b.ts_ms,
                &b.decision_id,
            ))
        });
        Ok(data)
    }

    /// Every decision with what feedback said of it.
    pub fn for_each(&self, mut f: impl FnMut(&LoggedDecision, Option<Verdict>)) {
        for d in &self.decisions {
            f(
                d,
                self.feedback
                    .get(&d.decision_id)
                    .map(FeedbackEntry::verdict),
            );
        }
    }
}
