//! Server configuration: safe defaults, overridden by a TOML file (`--config`), then by `HANDOFF_*`
//! environment variables and command-line flags (both handled by clap in `main.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::batcher::BatcherConfig;
use crate::policy::{MemoryStore, PolicyConfig, RedisStore, StateStore};
use crate::security::auth::AuthConfig;
use crate::security::tls::TlsConfig;

/// The shipped default model package, relative to the working directory.
pub const DEFAULT_MODEL_DIR: &str = "models/handoff-zh-en/2.1.0";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address. Loopback by default: exposing it is a deliberate choice.
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics` listen address.
    pub metrics_addr: SocketAddr,
    /// Model package served at startup (`models/<name>/<version>`).
    pub model_dir: PathBuf,
    /// Repository of `<name>/<version>/` packages that the admin service and the watcher swap between.
    pub model_repository: PathBuf,
    /// How often to look for new versions of the active model (0 = never).
    pub watch_interval_ms: u64,
    /// Activate a new version found by the watcher (otherwise it is only loaded and validated).
    pub auto_activate: bool,
    /// Shadow samples waiting for the candidate model; beyond this they are dropped and counted.
    pub shadow_queue_capacity: usize,
    /// Inference worker threads; 0 means one per core.
    pub workers: usize,
    pub queue_capacity: usize,
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_queue_delay_us: u64,
    /// Model results kept for repeated texts (0 = no cache); see `cache.rs`.
    pub cache_capacity: usize,
    /// Longer texts are never cached (they rarely repeat and would fill the cache's memory).
    pub cache_max_text_bytes: usize,
    pub limits: Limits,
    /// On SIGTERM/SIGINT, report NOT_SERVING for this long before closing listeners, so load
    /// balancers stop sending new calls; calls already accepted are always answered.
    pub drain_ms: u64,
    /// An inline `[policy]` table (not reloaded); without it or `policy_file`, the built-in policy.
    pub policy: Option<PolicyConfig>,
    /// Policy file (`config/policy.toml`): when set, it replaces `[policy]` and is reloaded when it
    /// changes or on SIGHUP.
    pub policy_file: Option<PathBuf>,
    /// How often to look at the policy file's modification time.
    pub policy_poll_ms: u64,
    /// Conversation state store: "memory" (this process) or "redis://host:port[/db]" (shared by a fleet).
    pub state: String,
    /// Redis connect/read/write timeout: past it the decision is made from the message alone.
    pub state_timeout_ms: u64,
    /// Conversation state: forgotten after this many seconds without a turn.
    pub state_ttl_s: u64,
    /// Conversations kept in memory at most (the least recently active is dropped first).
    pub max_conversations: usize,
    /// TLS (and mutual TLS) on the gRPC port; without it, plain text: keep that on loopback.
    pub tls: Option<TlsConfig>,
    /// API keys and client certificates, with scopes and rate limits; empty: everyone may do anything.
    pub auth: AuthConfig,
    /// Requests in flight (admitted, not yet answered) at most; more are refused with
    /// RESOURCE_EXHAUSTED at once.
    pub max_in_flight: usize,
    /// JSON-lines audit log of decisions and admin actions (personal data redacted); none: off.
    pub audit_log: Option<PathBuf>,
    /// Decisions with their signals, and feedback on them, for replay and reports; off by default.
    pub decision_log: crate::decision_log::DecisionLogConfig,
    /// Spans over OTLP; off unless `otlp_endpoint` is set.
    pub tracing: crate::telemetry::otel::TracingConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_text_bytes: usize,
    pub max_batch_texts: usize,
    pub max_id_bytes: usize,
    /// Customer attributes per Route call, and bytes per attribute value.
    pub max_attributes: usize,
    pub max_attribute_bytes: usize,
    /// Deadline for requests that carry no `grpc-timeout`, in ms; 0: none (they wait as long as the
    /// queue is).
    pub default_deadline_ms: u64,
}

impl Limits {
    pub fn default_deadline(&self) -> Option<Duration> {
        (self.default_deadline_ms > 0).then(|| Duration::from_millis(self.default_deadline_ms))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_bytes: 4096,
            max_batch_texts: 64,
            max_id_bytes: 128,
            max_attributes: 16,
            max_attribute_bytes: 256,
            default_deadline_ms: 0,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            grpc_addr: "127.0.0.1:50051".parse().expect("valid"),
            metrics_addr: "127.0.0.1:9464".parse().expect("valid"),
            model_dir: PathBuf::from(DEFAULT_MODEL_DIR),
            model_repository: PathBuf::from("models"),
            watch_interval_ms: 5000,
            auto_activate: false,
            shadow_queue_capacity: 256,
            workers: 0,
            queue_capacity: 1024,
            max_batch_size: 32,
            max_batch_tokens: 4096,
            max_queue_delay_us: 0,
            cache_capacity: 10_000,
            cache_max_text_bytes: 256,
            limits: Limits::default(),
            drain_ms: 0,
            policy: None,
            policy_file: None,
            policy_poll_ms: 1000,
            state: "memory".into(),
            state_timeout_ms: 200,
            state_ttl_s: 24 * 3600,
            max_conversations: 100_000,
            tls: None,
            auth: AuthConfig::default(),
            max_in_flight: 2048,
            audit_log: None,
            decision_log: Default::default(),
            tracing: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("invalid config {0}: {1}")]
    Parse(PathBuf, #[source] toml::de::Error),
    #[error("invalid config: {0} must be at least 1")]
    Zero(&'static str),
    #[error("invalid config: limits.max_batch_texts ({texts}) cannot exceed queue_capacity ({capacity})")]
    BatchOverQueue { texts: usize, capacity: usize },
    #[error("invalid config: state = {0:?}: expected \"memory\" or \"redis://…\"")]
    StateKind(String),
    #[error("invalid config: state = {url:?}: {source}")]
    State {
        url: String,
        #[source]
        source: crate::policy::StateError,
    },
    #[error("invalid config: {0}")]
    DecisionLog(#[from] crate::decision_log::DecisionLogError),
    #[error("invalid config: {0}")]
    Tracing(#[from] crate::telemetry::otel::TracingError),
}

impl ServerConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("queue_capacity", self.queue_capacity),
            ("max_batch_size", self.max_batch_size),
            ("max_batch_tokens", self.max_batch_tokens),
            ("limits.max_text_bytes", self.limits.max_text_bytes),
            ("limits.max_batch_texts", self.limits.max_batch_texts),
            ("limits.max_id_bytes", self.limits.max_id_bytes),
            ("max_in_flight", self.max_in_flight),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Zero(name));
        }
        if self.limits.max_batch_texts > self.queue_capacity {
            return Err(ConfigError::BatchOverQueue {
                texts: self.limits.max_batch_texts,
                capacity: self.queue_capacity,
            });
        }
        self.decision_log.validate()?;
        self.tracing.validate()?;
        Ok(())
    }

    pub fn state_store(&self) -> Result<std::sync::Arc<dyn StateStore>, ConfigError> {
        let ttl = Duration::from_secs(self.state_ttl_s);
        if self.state == "memory" {
            Ok(std::sync::Arc::new(MemoryStore::new(
                ttl,
                self.max_conversations,
            )))
        } else if self.state.starts_with("redis://") {
            let timeout = Duration::from_millis(self.state_timeout_ms);
            let store = RedisStore::new(&self.state, ttl, timeout).map_err(|source| {
                ConfigError::State {
                    url: self.state.clone(),
                    source,
                }
            })?;
            Ok(std::sync::Arc::new(store))
        } else {
            Err(ConfigError::StateKind(self.state.clone()))
        }
    }

    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    pub fn batcher(&self) -> BatcherConfig {
        BatcherConfig {
            workers: self.worker_count(),
            queue_capacity: self.queue_capacity,
            max_batch_size: self.max_batch_size,
            max_batch_tokens: self.max_batch_tokens,
            max_queue_delay: Duration::from_micros(self.max_queue_delay_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_is_valid_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/handoff.toml");
        let c = ServerConfig::from_file(&path).unwrap();
        c.validate().unwrap();
        let d = ServerConfig::default();
        assert_eq!(
            (c.grpc_addr, c.queue_capacity, c.max_batch_size),
            (d.grpc_addr, d.queue_capacity, d.max_batch_size)
        );
        let policy_file = Path::new(env!("CARGO_MANIFEST_DIR")).join(c.policy_file.unwrap());
        let policy = crate::policy::file::load(&policy_file, None).unwrap();
        assert_eq!(policy.version(), "example-3");
    }

    #[test]
    fn unknown_keys_and_zero_limits_are_refused() {
        assert!(toml::from_str::<ServerConfig>("grpc_adr = \"127.0.0.1:1\"").is_err());
        let c: ServerConfig = toml::from_str("[limits]\nmax_text_bytes = 0").unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("limits.max_text_bytes"));
    }
}
