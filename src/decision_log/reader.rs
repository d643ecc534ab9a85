//! Reading a decision-log directory: every replica's decision and feedback files, one record per
//! line, for `handoff replay`, `report` and `export-examples`. Lines torn by a crash are skipped and
//! counted; a line of some other writer is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::entry::{FeedbackEntry, LoggedDecision};

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

/// Every replica's decisions and feedback in a directory.
#[derive(Debug, Default)]
pub struct DecisionLogData {
    /// By conversation, then time.
    pub decisions: Vec<LoggedDecision>,
    /// The first feedback per decision id.
    pub feedback: HashMap<String, FeedbackEntry>,
    /// Lines that did not parse (a line cut short by a crash, say): skipped and counted.
    pub unreadable_lines: usize,
    /// The first of them, as `file:line`.
    pub unreadable: Vec<String>,
}

impl DecisionLogData {
    /// Keep only `tenant`'s decisions and feedback (`default`: those of a server without tenants).
    pub fn only_tenant(&mut self, tenant: &str) {
        let ours = |t: &Option<String>| t.as_deref().unwrap_or(crate::tenants::IMPLICIT) == tenant;
        self.decisions.retain(|d| ours(&d.tenant));
        self.feedback.retain(|_, f| ours(&f.tenant));
    }

    pub fn read(dir: &Path) -> Result<Self, LogReadError> {
        let io = |e| LogReadError::Io(dir.to_path_buf(), e);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        let mut data = DecisionLogData::default();
        let named = |p: &Path, kind: &str| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(kind))
        };
        for path in &files {
            let lines = read_lines(path)?;
            let mut unreadable = |line: usize| {
                data.unreadable_lines += 1;
                if data.unreadable.len() < NAMED_UNREADABLE {
                    let name = path.file_name().unwrap_or_default().to_string_lossy();
                    data.unreadable.push(format!("{name}:{line}"));
                }
            };
            if named(path, "decisions-") {
                for (line, text) in lines {
                    match serde_json::from_slice::<LoggedDecision>(&text) {
                        // A line of some other writer: replaying it would count nonsense as changes.
                        Ok(d) if crate::policy::Action::parse(&d.action).is_none() => {
                            return Err(LogReadError::UnknownAction {
                                path: path.clone(),
                                line,
                                action: d.action,
                            });
                        }
                        Ok(d) => data.decisions.push(d),
                        Err(_) => unreadable(line),
                    }
                }
            } else if named(path, "feedback-") {
                for (line, text) in lines {
                    match serde_json::from_slice::<FeedbackEntry>(&text) {
                        Ok(f) => {
                            data.feedback.entry(f.decision_id.clone()).or_insert(f);
                        }
                        Err(_) => unreadable(line),
                    }
                }
            }
        }
        if !files.iter().any(|p| named(p, "decisions-")) {
            return Err(LogReadError::Empty(dir.to_path_buf()));
        }
        data.decisions.sort_by(|a, b| {
            (&a.conversation, a.ts_ms, &a.decision_id).cmp(&(
                &b.conversation,
                b.ts_ms,
                &b.decision_id,
            ))
        });
        Ok(data)
    }
}

/// Lines as bytes with their numbers (from 1), blank ones left out: a line torn by a crash (even
/// mid-character) is one unreadable line, not an unreadable file.
fn read_lines(path: &Path) -> Result<Vec<(usize, Vec<u8>)>, LogReadError> {
    let bytes = std::fs::read(path).map_err(|e| LogReadError::Io(path.to_path_buf(), e))?;
    Ok(bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| (i + 1, l.to_vec()))
        .collect())
}
