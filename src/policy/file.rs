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

/// Read and validate a policy file; `intents` are the active model's labels, if one is loaded.
pub fn load(path: &Path, intents: Option<&[String]>) -> Result<Policy, PolicyFileError> {
    let fail = |line, message: String| PolicyFileError {
        path: path.display().to_string(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(None, e.to_string()))?;
    let config: PolicyConfig = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
        fail(line, e.message().to_string())
    })?;
    let locate = |e: PolicyError| {
        let needle = match &e {
            PolicyError::Threshold(key, _) => format!("{key} "),
            PolicyError::UnknownIntent(intent, _) => format!("\"{intent}\""),
            PolicyError::Queue(name, _) => format!("\"{name}\""),
        };
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(needle.trim_end()) || l.contains(&needle));
        fail(line.map(|l| l + 1), e.to_string())
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
}

impl SharedPolicy {
    pub fn new(policy: Policy) -> Arc<Self> {
        Arc::new(SharedPolicy {
            current: RwLock::new(Arc::new(policy)),
        })
    }

    pub fn get(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn replace(&self, policy: Policy) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
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
        let syntax = write("syntax", "version = \"x\"\noffer_negativity = = 0.5\n");
        assert_eq!(load(&syntax, None).unwrap_err().line, Some(2));
        let unknown = write("unknown", "version = \"x\"\n\nofer_negativity = 0.5\n");
        let e = load(&unknown, None).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let range = write("range", "version = \"x\"\noffer_negativity = 1.5\n");
        let e = load(&range, None).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            e.to_string()
                .contains(":2: policy threshold offer_negativity"),
            "{e}"
        );
        let intent = write(
            "intent",
            "high_risk_intents = [\n  { intent = \"fraud\", queue = \"risk\" },\n]\n",
        );
        let labels: Vec<String> = ["request_human", "complaint", "cancel_service"]
            .map(String::from)
            .to_vec();
        let e = load(&intent, Some(&labels)).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            load(&intent, None).is_ok(),
            "labels are checked only against a model"
        );
    }
}
