//! The model repository: a directory of `<name>/<version>/` packages, each with a `manifest.toml`.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRef {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Repository {
    root: PathBuf,
}

impl Repository {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Repository { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every `<name>/<version>/manifest.toml` under the root, sorted by name then version.
    pub fn list(&self) -> Vec<PackageRef> {
        let mut out = Vec::new();
        for name in subdirs(&self.root) {
            for version in subdirs(&self.root.join(&name)) {
                let dir = self.root.join(&name).join(&version);
                if dir.join("manifest.toml").is_file() {
                    out.push(PackageRef {
                        name: name.clone(),
                        version,
                        dir,
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| compare_versions(&a.version, &b.version))
        });
        out
    }

    /// `version` may be "latest": the highest version of `name`.
    pub fn resolve(&self, name: &str, version: &str) -> Option<PackageRef> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return None;
        }
        if version == "latest" {
            return self.list().into_iter().rfind(|p| p.name == name);
        }
        if version.is_empty() || version.contains(['/', '\\']) || version.starts_with('.') {
            return None;
        }
        let dir = self.root.join(name).join(version);
        dir.join("manifest.toml").is_file().then(|| PackageRef {
            name: name.into(),
            version: version.into(),
            dir,
        })
    }
}

fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Dotted versions compare part by part, numerically where both parts are numbers: 1.10.0 > 1.9.2.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut pa = a.split(['.', '-']);
    let mut pb = b.split(['.', '-']);
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("1.10.0", "1.9.2"), Ordering::Greater);
        assert_eq!(compare_versions("1.0.0", "1.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.0", "1.0.1"), Ordering::Less);
    }

    #[test]
    fn resolve_refuses_paths_that_leave_the_repository() {
        let repo = Repository::new("models");
        assert!(repo.resolve("../etc", "1").is_none());
        assert!(repo.resolve("handoff-zh-en", "../../x").is_none());
        assert_eq!(
            repo.resolve("handoff-zh-en", "latest").map(|p| p.version),
            Some("2.0.0".into())
        );
    }
}
