//! The policy in force, and its file: loaded and validated with line numbers in every error, swapped
//! atomically on reload. A file that fails validation never replaces the running policy.

use std::path::Path;
use std::sync::{Arc, RwLock};

use super::{Policy, PolicyConfig, PolicyError};

/// Why a policy file was refused, with the 1-based line the problem is on when it can be found.
#[derive(Debug, thiserror::Error)]
#[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyFileError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

/// The policy in `path` when one is named, else the built-in policy (offline tools and the server
/// start alike, so "no file" means the same policy everywhere).
pub fn load_or_builtin(path: Option<&Path>) -> Result<Policy, PolicyFileError> {
    match path {
        Some(path) => load(path, None),
        None => Ok(Policy::builtin()),
    }
}

/// Read and validate a policy file; `intents` are the active model's labels, if one is loaded.
pub fn load(path: &Path, intents: Option<&[String]>) -> Result<Policy, PolicyFileError> {
    let fail = |line, message: String| PolicyFileError {
        path: path.display().to_string(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(None, e.to_string()))?;
    // Bytes, not str: an offset inside an escaped TOML string may not fall on a char boundary.
    let line_at = |offset: usize| {
        let end = offset.min(text.len());
        text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    };
    let config: PolicyConfig = toml::from_str(&text).map_err(|e| {
        // toml leaves the message empty for some errors (a file cut inside a string): say something.
        let message = match e.message() {
            "" => e
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_string(),
            m => m.to_string(),
        };
        fail(e.span().map(|s| line_at(s.start)), message)
    })?;
    let locate = |e: PolicyError| {
        let line = match (e.span(), &e) {
            (Some(span), _) => Some(line_at(span.start)),
            // A setting's key, e.g. "signals.negative_turn": its last part starts a line.
            (None, PolicyError::Setting { key, .. }) => {
                let name = key.rsplit('.').next().unwrap_or(key);
                text.lines()
                    .position(|l| {
                        l.trim_start()
                            .strip_prefix(name)
                            .is_some_and(|r| r.trim_start().starts_with('='))
                    })
                    .map(|l| l + 1)
            }
            (None, _) => None,
        };
        fail(line, e.to_string())
    };
    let policy = Policy::new(config).map_err(locate)?;
    if let Some(intents) = intents {
        policy.check_labels(intents).map_err(locate)?;
    }
    Ok(policy)
}

/// The policy every decision uses; replaced whole on reload, so a decision never sees half of one.
pub struct SharedPolicy {
    current: RwLock<Arc<Policy>>,
    /// Why the file this policy comes from has never loaded: until it does, nothing is decided
    /// with it (a tenant whose file is broken at start is refused while the others serve).
    refused: RwLock<Option<String>>,
}

impl SharedPolicy {
    pub fn new(policy: Policy) -> Arc<Self> {
        publish(&policy);
        Arc::new(SharedPolicy {
            current: RwLock::new(Arc::new(policy)),
            refused: RwLock::new(None),
        })
    }

    /// A policy whose file was refused at start: `usable` says why until `replace` brings one.
    pub fn unloaded(why: String) -> Arc<Self> {
        Arc::new(SharedPolicy {
            current: RwLock::new(Arc::new(Policy::builtin())),
            refused: RwLock::new(Some(why)),
        })
    }

    /// The policy to decide with, unless its file has never loaded (why not).
    pub fn usable(&self) -> Result<Arc<Policy>, String> {
        match &*self.refused.read().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(why.clone()),
            None => Ok(self.get()),
        }
    }

    pub fn get(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn replace(&self, policy: Policy) {
        publish(&policy);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
        *self.refused.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What the policy tells dashboards: each queue's staffing hint.
fn publish(policy: &Policy) {
    for (queue, capacity) in policy.queue_capacities() {
        metrics::gauge!(crate::telemetry::QUEUE_CAPACITY, "queue" => queue.to_string())
            .set(capacity as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("handoff-policy-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn errors_name_the_line() {
        let builtin = crate::policy::config::BUILTIN;
        let lines = builtin.lines().count();
        let syntax = write("syntax", "version = \"x\"\nbase_priority = = 5\n");
        assert_eq!(load(&syntax, None).unwrap_err().line, Some(2));
        let unknown = write("unknown", &format!("{builtin}\nofer_negativity = 0.5\n"));
        let e = load(&unknown, None).unwrap_err();
        assert_eq!(e.line, Some(lines + 2), "{e}");
        let range = write(
            "range",
            &builtin.replace("low_margin = 0.1", "low_margin = 1.1"),
        );
        let e = load(&range, None).unwrap_err();
        let want = builtin
            .lines()
            .position(|l| l.starts_with("low_margin"))
            .unwrap()
            + 1;
        assert_eq!(e.line, Some(want), "{e}");
        assert!(
            e.to_string()
                .contains("signals.low_margin: 1.1 is outside [0, 1]"),
            "{e}"
        );
        let rule = format!(
            "{builtin}\n[[rules]]\nid = \"fraud\"\nwhen = \"intent == 'fraud' and negativty > 0.5\"\naction = \"escalate\"\n"
        );
        let e = load(&write("signal", &rule), None).unwrap_err();
        assert_eq!(e.line, Some(lines + 4), "{e}");
        assert!(
            e.to_string().contains("unknown signal \"negativty\""),
            "{e}"
        );
        let intent = write("intent", &rule.replace("negativty", "negativity"));
        let labels: Vec<String> = [
            "request_human",
            "complaint",
            "cancel_service",
            "security_incident",
        ]
        .map(String::from)
        .to_vec();
        let e = load(&intent, Some(&labels)).unwrap_err();
        assert_eq!(e.line, Some(lines + 4), "{e}");
        assert!(e.to_string().contains("names intent \"fraud\""), "{e}");
        assert!(
            load(&intent, None).is_ok(),
            "labels are checked only against a model"
        );
    }
}
