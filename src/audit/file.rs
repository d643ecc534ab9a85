//! The audit log's file, rotated like the decision log: past `max_file_bytes` or `max_file_age_s`
//! the file is closed, renamed `<name>.<unix ms>` beside it, and a new one opened under the
//! configured name (so a shipper tailing that path follows); the oldest rotated files beyond
//! `max_files` are deleted.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `[audit]` in the server config: rotation of `audit_log`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditRotation {
    /// The file is rotated past this size or this age.
    pub max_file_bytes: u64,
    pub max_file_age_s: u64,
    /// Files kept, the one being written included; the oldest rotated ones are deleted.
    pub max_files: usize,
}

impl Default for AuditRotation {
    fn default() -> Self {
        AuditRotation {
            max_file_bytes: 64 << 20,
            max_file_age_s: 24 * 3600,
            max_files: 30,
        }
    }
}

impl AuditRotation {
    /// The first setting that is 0 (each must be at least 1).
    pub fn zero(&self) -> Option<&'static str> {
        [
            ("audit.max_file_bytes", self.max_file_bytes == 0),
            ("audit.max_file_age_s", self.max_file_age_s == 0),
            ("audit.max_files", self.max_files == 0),
        ]
        .into_iter()
        .find_map(|(name, zero)| zero.then_some(name))
    }
}

pub struct RotatingFile {
    path: PathBuf,
    rotation: AuditRotation,
    out: BufWriter<File>,
    bytes: u64,
    opened: Instant,
}

impl RotatingFile {
    /// Append to `path` (created if missing); what it already holds counts toward its size.
    pub fn open(path: &Path, rotation: AuditRotation) -> std::io::Result<Self> {
        let file = append(path)?;
        let bytes = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            rotation,
            out: BufWriter::new(file),
            bytes,
            opened: Instant::now(),
        })
    }

    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let r = &self.rotation;
        let full = self.bytes > 0 && self.bytes + line.len() as u64 > r.max_file_bytes;
        if full || self.opened.elapsed() >= Duration::from_secs(r.max_file_age_s) {
            self.rotate()?;
        }
        self.out.write_all(line)?;
        self.bytes += line.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Flush and sync: called once, on shutdown.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync()?;
        let ms = crate::decision_log::now_ms();
        let mut rotated = sibling(&self.path, &format!("{ms:013}"));
        // Two rotations in one millisecond (a tiny max_file_bytes) must not overwrite each other.
        let mut n = 0;
        while rotated.exists() {
            n += 1;
            rotated = sibling(&self.path, &format!("{ms:013}-{n}"));
        }
        std::fs::rename(&self.path, &rotated)?;
        self.out = BufWriter::new(append(&self.path)?);
        (self.bytes, self.opened) = (0, Instant::now());
        prune(&self.path, self.rotation.max_files)
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// `<dir>/<name>.<suffix>`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{name}.{suffix}"))
}

/// Rotated files of `path`, oldest first.
pub fn rotated(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!("{name}.");
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let Some(n) = p.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            n.strip_prefix(&prefix).is_some_and(|rest| {
                let stamp = rest.split('-').next().unwrap_or_default();
                stamp.len() == 13 && stamp.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Delete the oldest rotated files so that, with the one being written, `max_files` remain.
fn prune(path: &Path, max_files: usize) -> std::io::Result<()> {
    let files = rotated(path)?;
    let excess = (files.len() + 1).saturating_sub(max_files);
    for old in files.into_iter().take(excess) {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("handoff-audit-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let rotation = AuditRotation {
            max_file_bytes: 100,
            max_file_age_s: 3600,
            max_files: 3,
        };
        let mut file = RotatingFile::open(&path, rotation).unwrap();
        let line = format!("{}\n", "x".repeat(39)); // 40 bytes: two a file
        for _ in 0..9 {
            file.write_line(line.as_bytes()).unwrap();
        }
        file.sync().unwrap();
        let kept = rotated(&path).unwrap();
        assert_eq!(kept.len(), 2, "{kept:?}");
        for p in kept.iter().chain([&path]) {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.len() <= 100, "{}: {} bytes", p.display(), text.len());
        }
        // 9 lines, 2 a file: the newest three files hold the last 5 (2 + 2 + 1).
        let total: usize = kept
            .iter()
            .chain([&path])
            .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
            .sum();
        assert_eq!(total, 5);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
