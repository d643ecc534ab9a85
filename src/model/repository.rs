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
            // A release candidate is not "latest" while a release exists.
            let versions: Vec<_> = self.list().into_iter().filter(|p| p.name == name).collect();
            let newest_release = versions.iter().rposition(|p| !is_prerelease(&p.version));
            return match newest_release {
                Some(i) => versions.into_iter().nth(i),
                None => versions.into_iter().last(),
            };
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

/// Semantic-version order where both parse (1.10.0 > 1.9.2, and a pre-release ranks below its
/// release: 1.1.0-rc1 < 1.1.0); otherwise dotted parts compare one by one, numerically where both
/// are numbers.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp_precedence(&y),
        _ => compare_dotted(a, b),
    }
}

/// `1.1.0-rc1`: a semantic version with a pre-release part.
pub fn is_prerelease(version: &str) -> bool {
    semver::Version::parse(version).is_ok_and(|v| !v.pre.is_empty())
}

fn compare_dotted(a: &str, b: &str) -> Ordering {
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
        assert_eq!(compare_versions("1.1.0-rc1", "1.1.0"), Ordering::Less);
        assert_eq!(compare_versions("1.1.0-rc1", "1.0.9"), Ordering::Greater);
        assert_eq!(
            compare_versions("1.1.0-rc.2", "1.1.0-rc.10"),
            Ordering::Less
        );
        assert_eq!(compare_versions("release-2", "release-10"), Ordering::Less);
    }

    #[test]
    fn latest_is_the_newest_release_not_a_release_candidate() {
        let root = std::env::temp_dir().join(format!("handoff-latest-{}", std::process::id()));
        for v in ["1.0.0", "1.1.0-rc1", "1.0.10"] {
            let dir = root.join("m").join(v);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("manifest.toml"), "").unwrap();
        }
        let repo = Repository::new(&root);
        let latest = |repo: &Repository| repo.resolve("m", "latest").map(|p| p.version);
        assert_eq!(latest(&repo), Some("1.0.10".into()));
        std::fs::create_dir_all(root.join("m").join("1.1.0")).unwrap();
        std::fs::write(root.join("m/1.1.0/manifest.toml"), "").unwrap();
        assert_eq!(latest(&repo), Some("1.1.0".into()));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn resolve_refuses_paths_that_leave_the_repository() {
        let repo = Repository::new("models");
        assert!(repo.resolve("../etc", "1").is_none());
        assert!(repo.resolve("handoff-zh-en", "../../x").is_none());
        assert_eq!(
            repo.resolve("handoff-zh-en", "latest").map(|p| p.version),
            Some("2.2.2".into())
        );
    }
}
