//! Server configuration in layers (figment): safe defaults, then a TOML file (`--config`), then
//! `HANDOFF_*` environment variables (`__` between levels: `HANDOFF_DECISION_LOG__DIR`), then
//! command-line flags and `--set key.path=value`. Every key can come from any layer, and an error
//! names the layer it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::batcher::BatcherConfig;
use crate::policy::customer::CustomerState;
use crate::policy::{ConversationState, MemoryStore, PolicyConfig, RedisStore, StateStore};
use crate::security::auth::AuthConfig;
use crate::security::tls::TlsConfig;

/// The shipped default model package, relative to the working directory.
pub const DEFAULT_MODEL_DIR: &str = "models/handoff-zh-en/2.2.2";

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
    /// A text alone in the server runs on two threads (the package's tensor-parallel stages), so
    /// an idle server answers a single call ~1.5x faster; batches never split. Off by itself on
    /// a machine (or CPU quota) with one core.
    pub split_single_calls: bool,
    /// A batch runs in groups of similar length; padding adds at most this percentage to a group's
    /// real tokens (padded tokens are nearly pure waste on CPU).
    pub max_batch_padding_percent: usize,
    /// Model results kept for repeated texts (0 = no cache); see `cache.rs`.
    pub cache_capacity: usize,
    /// Longer texts are never cached (they rarely repeat and would fill the cache's memory).
    pub cache_max_text_bytes: usize,
    pub limits: Limits,
    /// On SIGTERM/SIGINT, report NOT_SERVING for this long before closing listeners, so load
    /// balancers stop sending new calls; calls already accepted are always answered.
    pub drain_ms: u64,
    /// An inline `[policy]` table (not reloaded); without it or `policy_file`, the built-in policy.
    /// Only from the config file: rules are data with line numbers, not settings for the environment.
    #[serde(skip)]
    pub policy: Option<PolicyConfig>,
    /// Policy file (`config/policy.toml`): when set, it replaces `[policy]` and is reloaded when it
    /// changes or on SIGHUP.
    pub policy_file: Option<PathBuf>,
    /// How often to look at the policy file's modification time.
    pub policy_poll_ms: u64,
    /// Conversation state store: "memory" (this process) or "redis://host:port[/db]" (shared by a
    /// fleet; "rediss://" for TLS; several comma-separated: a Redis Cluster's nodes;
    /// "redis+sentinel://host:port[,host:port…]/service[/db]": the master Sentinel names).
    #[serde(deserialize_with = "lenient_string")]
    pub state: String,
    /// PEM file of the certificate authorities a `rediss://` state store is verified against; none:
    /// the system's roots.
    pub state_tls_ca: Option<PathBuf>,
    /// Every Redis key of this deployment starts `{state_key_prefix}:`, so several deployments
    /// (staging and production, two products) can share one Redis without sharing state.
    #[serde(deserialize_with = "lenient_string")]
    pub state_key_prefix: String,
    /// Redis connect/read/write timeout: past it the decision is made from the message alone.
    pub state_timeout_ms: u64,
    /// Conversation state: forgotten after this many seconds without a turn.
    pub state_ttl_s: u64,
    /// Conversations kept in memory at most (the least recently active is dropped first).
    pub max_conversations: usize,
    /// Customer memory across conversations (Route calls with a customer_id): its key, retention
    /// and bounds. Kept in the same store as conversation state.
    pub customers: crate::customers::CustomersConfig,
    /// With state in Redis: how often this replica looks for the fleet's model operations and
    /// reports what it serves.
    pub fleet_poll_ms: u64,
    /// Businesses served by this server, each with its own policy, state and records
    /// (`[[tenants]]`); none: one implicit tenant, `default`.
    pub tenants: Vec<crate::tenants::TenantConfig>,
    /// TLS (and mutual TLS) on the gRPC port; without it, plain text: keep that on loopback.
    pub tls: Option<TlsConfig>,
    /// API keys and client certificates, with scopes and rate limits; empty: everyone may do anything.
    pub auth: AuthConfig,
    /// Requests in flight (admitted, not yet answered) at most; more are refused with
    /// RESOURCE_EXHAUSTED at once.
    pub max_in_flight: usize,
    /// JSON-lines audit log of decisions and admin actions (personal data redacted); none: off.
    pub audit_log: Option<PathBuf>,
    /// How the audit log rotates.
    pub audit: crate::audit::AuditRotation,
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
            split_single_calls: true,
            max_batch_padding_percent: 10,
            cache_capacity: 10_000,
            cache_max_text_bytes: 256,
            limits: Limits::default(),
            drain_ms: 0,
            policy: None,
            policy_file: None,
            policy_poll_ms: 1000,
            state: "memory".into(),
            state_tls_ca: None,
            state_key_prefix: "handoff".into(),
            state_timeout_ms: 200,
            state_ttl_s: 24 * 3600,
            max_conversations: 100_000,
            customers: Default::default(),
            tenants: Vec::new(),
            fleet_poll_ms: 1000,
            tls: None,
            auth: AuthConfig::default(),
            max_in_flight: 2048,
            audit_log: None,
            audit: crate::audit::AuditRotation::default(),
            decision_log: Default::default(),
            tracing: Default::default(),
        }
    }
}

/// Where state is kept.
pub struct Stores {
    pub conversations: std::sync::Arc<dyn StateStore>,
    pub customers: std::sync::Arc<dyn StateStore<CustomerState>>,
    /// The Redis a fleet shares, when state is kept there (feedback is remembered there too).
    pub redis: Option<RedisStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // A source is printed after the message (`{:#}`), never inside it too: no "X: X".
    #[error("cannot read config {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("invalid config {0}")]
    Parse(PathBuf, #[source] toml::de::Error),
    /// figment's message names the key and the layer it came from (file, variable, flag).
    #[error("invalid config: {0}")]
    Layer(Box<figment::Error>),
    #[error("--set {0:?}: expected KEY=VALUE, e.g. --set decision_log.dir=/var/lib/handoff")]
    Set(String),
    #[error("invalid config: {0} must be at least 1")]
    Zero(&'static str),
    #[error("invalid config: limits.max_batch_texts ({texts}) cannot exceed queue_capacity ({capacity})")]
    BatchOverQueue { texts: usize, capacity: usize },
    #[error("invalid config: customers.key must be at least 16 bytes (openssl rand -hex 32); it has {0}")]
    CustomersKey(usize),
    #[error(
        "invalid config: decision_log.feedback_keys: each at least 16 bytes (openssl rand -hex 32)"
    )]
    FeedbackKey,
    #[error("invalid config: replicas sharing a Redis need decision_log.{0} set (at least 16 bytes: openssl rand -hex 16), the same on every replica (a random one per process splits the fleet's records)")]
    FleetSetting(&'static str),
    #[error("invalid config: state = {0:?}: expected \"memory\", \"redis://…\", \"rediss://…\" or \"redis+sentinel://…\"")]
    StateKind(String),
    #[error("invalid config: state_key_prefix = {0:?}: 1 to 64 characters, no spaces or braces")]
    KeyPrefix(String),
    #[error("invalid config: state = {url:?}")]
    State {
        url: String,
        #[source]
        source: crate::policy::StateError,
    },
    #[error("invalid config")]
    DecisionLog(#[from] crate::decision_log::DecisionLogError),
    #[error("invalid config")]
    Tracing(#[from] crate::telemetry::otel::TracingError),
}

/// A text setting given as a number or a flag (`HANDOFF_DECISION_LOG__REPLICA=0`: figment reads
/// environment values that look like numbers as numbers) is still text.
pub fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(Text)
}

/// Top-level keys of `ServerConfig`: `HANDOFF_*` variables outside them (`HANDOFF_CONFIG`,
/// `HANDOFF_LOG_FORMAT`, other tools' `HANDOFF_PYTHON`) are not settings. Checked by a test.
pub const KEYS: &[&str] = &[
    "grpc_addr",
    "metrics_addr",
    "model_dir",
    "model_repository",
    "watch_interval_ms",
    "auto_activate",
    "shadow_queue_capacity",
    "workers",
    "queue_capacity",
    "max_batch_size",
    "max_batch_tokens",
    "max_queue_delay_us",
    "split_single_calls",
    "max_batch_padding_percent",
    "cache_capacity",
    "cache_max_text_bytes",
    "limits",
    "drain_ms",
    "policy_file",
    "policy_poll_ms",
    "state",
    "state_tls_ca",
    "state_key_prefix",
    "state_timeout_ms",
    "state_ttl_s",
    "max_conversations",
    "customers",
    "tenants",
    "fleet_poll_ms",
    "tls",
    "auth",
    "max_in_flight",
    "audit_log",
    "audit",
    "decision_log",
    "tracing",
];

/// OpenTelemetry's standard variables read as `[tracing]` settings.
const OTEL_VARIABLES: [(&str, &str); 6] = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "tracing.otlp_endpoint"),
    ("OTEL_EXPORTER_OTLP_CERTIFICATE", "tracing.otlp_ca"),
    ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "tracing.otlp_ca"),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "tracing.otlp_endpoint",
    ),
    ("OTEL_SERVICE_NAME", "tracing.service_name"),
    ("OTEL_TRACES_SAMPLER_ARG", "tracing.sample_ratio"),
];

/// `HANDOFF_*` variables read by something other than the config layers: the command line's own
/// (`--config`, `--log-format`, `--otlp-endpoint`) and the test tools'.
const OTHER_VARIABLES: &[&str] = &[
    "CONFIG",
    "LOG_FORMAT",
    "OTLP_ENDPOINT",
    "PYTHON",
    "CHROMIUM",
];

/// The environment variable that sets config `key` (a dotted path): `limits.max_text_bytes` is
/// `HANDOFF_LIMITS__MAX_TEXT_BYTES`, two underscores between levels.
pub fn variable_for(key: &str) -> String {
    format!("HANDOFF_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// `HANDOFF_*` variables that are no setting, each with the variable most likely meant: a
/// misspelt one (`HANDOFF_DECISION_LOG_DIR`, one underscore where levels need two) would
/// otherwise be ignored without a word, while the same typo in a file is refused.
pub fn unknown_variables(names: impl IntoIterator<Item = String>) -> Vec<(String, Option<String>)> {
    names
        .into_iter()
        .filter_map(|name| {
            let key = name.strip_prefix("HANDOFF_")?.to_string();
            let top = key.split("__").next().unwrap_or_default();
            let known = KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
                || OTHER_VARIABLES.contains(&key.as_str());
            (!known).then(|| (name.clone(), nearest_variable(&key)))
        })
        .collect()
}

fn nearest_variable(key: &str) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    // A table's key with one underscore before the field: the level separator is two.
    const TABLES: &[&str] = &[
        "limits",
        "customers",
        "tls",
        "auth",
        "decision_log",
        "tracing",
    ];
    let table = TABLES.iter().find_map(|k| {
        let field = lower.strip_prefix(k)?.strip_prefix('_')?;
        (!field.is_empty() && !field.starts_with('_')).then(|| {
            format!(
                "HANDOFF_{}__{}",
                k.to_ascii_uppercase(),
                field.to_ascii_uppercase()
            )
        })
    });
    table.or_else(|| {
        let (distance, k) = KEYS
            .iter()
            .map(|k| (strsim::levenshtein(&lower, k), k))
            .min()?;
        (distance <= 2.max(k.len() / 4)).then(|| format!("HANDOFF_{}", k.to_ascii_uppercase()))
    })
}

/// One named layer of values (a file's table, the flags, the `--set`s).
struct Layer {
    name: String,
    values: Vec<(String, figment::value::Value)>,
}

impl figment::Provider for Layer {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.name.clone())
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (key, value) in &self.values {
            let path: Vec<&str> = key.split('.').collect();
            insert(&mut dict, &path, value.clone());
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// Put `value` at the dotted `path` of `dict`, making the tables on the way.
fn insert(dict: &mut figment::value::Dict, path: &[&str], value: figment::value::Value) {
    use figment::value::{Dict, Value};
    let [first, rest @ ..] = path else { return };
    if rest.is_empty() {
        dict.insert(first.to_string(), value);
        return;
    }
    let entry = dict
        .entry(first.to_string())
        .or_insert_with(|| Value::from(Dict::new()));
    if !matches!(entry, Value::Dict(..)) {
        *entry = Value::from(Dict::new());
    }
    if let Value::Dict(_, inner) = entry {
        insert(inner, rest, value);
    }
}

/// A `--set` value: TOML when it parses as one (`8192`, `true`, `["a"]`), else the text itself.
fn set_value(text: &str) -> figment::value::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| figment::value::Value::serialize(v).ok())
        .unwrap_or_else(|| text.into())
}

impl ServerConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::load(Some(path), Vec::new(), &[])
    }

    /// Defaults < `file` < `HANDOFF_*` variables < `flags` (key, value) < `sets` ("key.path=value").
    pub fn load(
        file: Option<&Path>,
        flags: Vec<(String, figment::value::Value)>,
        sets: &[String],
    ) -> Result<Self, ConfigError> {
        use figment::providers::Env;
        let mut layers = figment::Figment::new();
        let mut inline_policy = None;
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
            // Parsed here first: TOML errors keep their line numbers.
            let mut table: toml::Table =
                toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e))?;
            // The inline policy is read from the original text, so its errors keep their lines.
            if table.remove("policy").is_some() {
                #[derive(Deserialize)]
                struct PolicyOnly {
                    policy: PolicyConfig,
                }
                let only = toml::from_str::<PolicyOnly>(&text)
                    .map_err(|e| ConfigError::Parse(path.into(), e))?;
                inline_policy = Some(only.policy);
            }
            let values = table
                .into_iter()
                .map(|(k, v)| {
                    let v = figment::value::Value::serialize(v)
                        .map_err(|e| ConfigError::Layer(Box::new(e)))?;
                    Ok((k, v))
                })
                .collect::<Result<_, ConfigError>>()?;
            layers = layers.merge(Layer {
                name: format!("config file {}", path.display()),
                values,
            });
        }
        // OpenTelemetry's standard variables, which collectors' charts and operators set for every
        // workload; our own HANDOFF_TRACING__* variables, flags and --set beat them.
        layers = layers.merge(
            Env::raw()
                .only(&OTEL_VARIABLES.map(|(var, _)| var))
                .map(|var| {
                    let key = OTEL_VARIABLES
                        .iter()
                        .find(|(v, _)| var.as_str().eq_ignore_ascii_case(v))
                        .map_or("", |(_, key)| key);
                    key.into()
                }),
        );
        // Keys are still upper-case here (figment lower-cases them after filtering).
        layers = layers.merge(Env::prefixed("HANDOFF_").split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
        }));
        layers = layers.merge(Layer {
            name: "command-line flags".into(),
            values: flags,
        });
        let sets = sets
            .iter()
            .map(|s| match s.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), set_value(v))),
                _ => Err(ConfigError::Set(s.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        layers = layers.merge(Layer {
            name: "--set".into(),
            values: sets,
        });
        let mut config: ServerConfig = layers
            .extract()
            .map_err(|e| ConfigError::Layer(Box::new(e)))?;
        config.policy = inline_policy;
        Ok(config)
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
        if let Some(key) = &self.customers.key {
            if key.len() < 16 {
                return Err(ConfigError::CustomersKey(key.len()));
            }
        }
        let log = &self.decision_log;
        if log.feedback_keys.iter().any(|k| k.len() < 16) {
            return Err(ConfigError::FeedbackKey);
        }
        if self.shares_state() && log.dir.is_some() {
            // At least 16 bytes: conversation ids may hold phone numbers, and a short salt would let
            // the logged hashes be guessed back.
            if log.conversation_salt.len() < 16 {
                return Err(ConfigError::FleetSetting("conversation_salt"));
            }
            if log.feedback_keys.is_empty() {
                return Err(ConfigError::FleetSetting("feedback_keys"));
            }
        }
        if let Some(name) = self.audit.zero() {
            return Err(ConfigError::Zero(name));
        }
        let prefix = &self.state_key_prefix;
        // A brace would make a Redis Cluster hash tag of it, putting every key on one node.
        if prefix.is_empty()
            || prefix.len() > 64
            || prefix.contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
        {
            return Err(ConfigError::KeyPrefix(prefix.clone()));
        }
        self.decision_log.validate()?;
        self.tracing.validate()?;
        Ok(())
    }

    /// Conversation state and customer memory, both in this process or both in one Redis (one
    /// connection, each with its own TTL).
    /// State lives in a Redis (or a Redis Cluster) that replicas share.
    pub fn shares_state(&self) -> bool {
        [
            "redis://",
            "rediss://",
            "redis+sentinel://",
            "rediss+sentinel://",
        ]
        .iter()
        .any(|scheme| self.state.starts_with(scheme))
    }

    pub fn stores(&self) -> Result<Stores, ConfigError> {
        use std::sync::Arc;
        let ttl = Duration::from_secs(self.state_ttl_s);
        let retention = Duration::from_secs(self.customers.retention_s);
        if self.state == "memory" {
            Ok(Stores {
                conversations: Arc::new(MemoryStore::<ConversationState>::new(
                    ttl,
                    self.max_conversations,
                )),
                customers: Arc::new(MemoryStore::<CustomerState>::new(
                    retention,
                    self.customers.max_customers,
                )),
                redis: None,
            })
        } else if self.shares_state() {
            let timeout = Duration::from_millis(self.state_timeout_ms);
            let ca = match &self.state_tls_ca {
                Some(path) => {
                    Some(std::fs::read(path).map_err(|e| ConfigError::Read(path.clone(), e))?)
                }
                None => None,
            };
            let prefix = &self.state_key_prefix;
            let store = RedisStore::new(&self.state, ttl, timeout, ca.as_deref(), prefix).map_err(
                |source| ConfigError::State {
                    url: without_password(&self.state),
                    source,
                },
            )?;
            Ok(Stores {
                customers: Arc::new(store.with_ttl(retention)),
                conversations: Arc::new(store.clone()),
                redis: Some(store),
            })
        } else {
            Err(ConfigError::StateKind(without_password(&self.state)))
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
            // A second thread only helps with a second core to run it (cgroup quotas count).
            split_single_calls: self.split_single_calls
                && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2),
            max_padding_percent: self.max_batch_padding_percent,
        }
    }
}

/// A state URL as errors show it: passwords (`redis://user:PASSWORD@host`) replaced by `***`, in
/// every node of a list, since start-up errors land in logs.
fn without_password(url: &str) -> String {
    static USERINFO: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(://[^:/@,]*:)[^@/,]*@").expect("valid pattern")
    });
    USERINFO.replace_all(url, "${1}***@").into_owned()
}

#[cfg(test)]
// figment's Jail takes closures returning its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_is_valid_and_matches_the_defaults() {
        // In a jail: another test sets HANDOFF_* variables, and the jail keeps them apart.
        figment::Jail::expect_with(|_| {
            shipped_example_config_is_valid();
            Ok(())
        });
    }

    fn shipped_example_config_is_valid() {
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
        assert_eq!(policy.version(), "example-6");
    }

    #[test]
    fn every_key_can_come_from_the_environment_or_a_set_and_errors_name_the_layer() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("h.toml", "workers = 3\n[decision_log]\nsample_rate = 0.5\n")?;
            jail.set_env("HANDOFF_WORKERS", "5");
            jail.set_env("HANDOFF_DECISION_LOG__MAX_FILES", "9");
            jail.set_env("HANDOFF_PYTHON", "/usr/bin/python3"); // not a setting: ignored
            jail.set_env("HANDOFF_DECISION_LOG__REPLICA", "0"); // text, though it looks like a number
            let sets = [
                "limits.max_text_bytes=8192".to_string(),
                "tracing.service_name=edge".into(),
            ];
            let flags = vec![("drain_ms".to_string(), figment::value::Value::from(250u64))];
            let c = ServerConfig::load(Some(Path::new("h.toml")), flags, &sets).unwrap();
            assert_eq!(c.workers, 5, "the environment beats the file");
            assert_eq!(c.decision_log.sample_rate, 0.5);
            assert_eq!(c.decision_log.max_files, 9);
            assert_eq!(c.decision_log.replica, "0");
            assert_eq!(c.limits.max_text_bytes, 8192);
            assert_eq!(c.tracing.service_name, "edge");
            assert_eq!(c.drain_ms, 250);

            // OpenTelemetry's own variables set [tracing]; ours beat them.
            jail.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
            jail.set_env("OTEL_SERVICE_NAME", "handoff-eu");
            jail.set_env("OTEL_TRACES_SAMPLER_ARG", "0.25");
            let c = ServerConfig::load(None, Vec::new(), &[]).unwrap();
            assert_eq!(
                c.tracing.otlp_endpoint.as_deref(),
                Some("http://collector:4317")
            );
            assert_eq!(c.tracing.service_name, "handoff-eu");
            assert_eq!(c.tracing.sample_ratio, 0.25);
            jail.set_env("HANDOFF_TRACING__SERVICE_NAME", "ours");
            let c = ServerConfig::load(None, Vec::new(), &[]).unwrap();
            assert_eq!(c.tracing.service_name, "ours");
            jail.set_env("HANDOFF_QUEUE_CAPACITY", "lots");
            let e = ServerConfig::load(None, Vec::new(), &[])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("QUEUE_CAPACITY") && e.contains("`HANDOFF_` environment variable"),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn the_key_list_names_every_top_level_key() {
        figment::Jail::expect_with(|_| {
            key_list_names_every_top_level_key();
            Ok(())
        });
    }

    fn key_list_names_every_top_level_key() {
        // Each listed key is a field (an unknown one is refused as such)...
        for key in KEYS {
            let e = ServerConfig::load(None, Vec::new(), &[format!("{key}=[]")]);
            let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(!msg.contains("unknown field"), "{key}: {msg}");
        }
        let e = ServerConfig::load(None, Vec::new(), &["no_such_key=1".into()]).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        // ...and every section of the example config, which documents them all, is listed.
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/handoff.toml"),
        )
        .unwrap();
        for line in text.lines() {
            let line = line.trim_start_matches(['#', ' ']);
            if let Some(header) = line.strip_prefix('[') {
                let key = header
                    .trim_start_matches('[')
                    .split(['.', ']'])
                    .next()
                    .unwrap();
                assert!(
                    KEYS.contains(&key) || key == "policy",
                    "[{key}] in config/handoff.toml is not in KEYS"
                );
            }
        }
    }

    /// Printed as the binary prints it (`{:#}`: message, then each source), every part once.
    #[test]
    fn a_config_error_says_each_thing_once() {
        let mut config = ServerConfig::default();
        config.decision_log.sample_rate = 3.0;
        let printed = format!("{:#}", anyhow::Error::from(config.validate().unwrap_err()));
        assert_eq!(printed.matches("sample_rate = 3").count(), 1, "{printed}");
        let store = ServerConfig {
            state: "redis://:x".into(),
            ..Default::default()
        };
        let printed = format!("{:#}", anyhow::Error::from(store.stores().err().unwrap()));
        assert_eq!(printed.matches("did not parse").count(), 1, "{printed}");
    }

    #[test]
    fn misspelt_variables_are_named_with_the_one_meant() {
        let found = unknown_variables(
            [
                "HANDOFF_DECISION_LOG_DIR",
                "HANDOFF_QUEUE_CAPACTY",
                "HANDOFF_DECISION_LOG__DIR",
                "HANDOFF_WORKERS",
                "HANDOFF_CONFIG",
                "HANDOFF_PYTHON",
                "HANDOFF_SOMETHING_ELSE_ENTIRELY",
                "PATH",
            ]
            .map(String::from),
        );
        let nearest = |var: &str| Some(var.to_string());
        assert_eq!(
            found,
            vec![
                (
                    "HANDOFF_DECISION_LOG_DIR".into(),
                    nearest("HANDOFF_DECISION_LOG__DIR")
                ),
                (
                    "HANDOFF_QUEUE_CAPACTY".into(),
                    nearest("HANDOFF_QUEUE_CAPACITY")
                ),
                ("HANDOFF_SOMETHING_ELSE_ENTIRELY".into(), None),
            ]
        );
    }

    #[test]
    fn an_inline_policy_comes_from_the_file_with_its_line_numbers() {
        figment::Jail::expect_with(|jail| {
            // The built-in policy's tables, moved under [policy].
            let builtin: String = include_str!("policy/builtin.toml")
                .lines()
                .map(|l| {
                    if let Some(rest) = l.strip_prefix("[[") {
                        format!("[[policy.{rest}\n")
                    } else if let Some(rest) = l.strip_prefix('[') {
                        format!("[policy.{rest}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            jail.create_file("ok.toml", &format!("workers = 1\n[policy]\n{builtin}"))?;
            let c = ServerConfig::load(Some(Path::new("ok.toml")), Vec::new(), &[]).unwrap();
            assert!(c.policy.is_some());
            let broken = builtin.replacen("action = ", "action = 12 #", 1);
            jail.create_file("bad.toml", &format!("workers = 1\n[policy]\n{broken}"))?;
            let e = ServerConfig::load(Some(Path::new("bad.toml")), Vec::new(), &[]).unwrap_err();
            let line = 2
                + broken
                    .lines()
                    .position(|l| l.contains("action = 12"))
                    .unwrap()
                + 1;
            // The TOML error (with its line) is the source, printed after the message.
            let source = std::error::Error::source(&e).map(|s| s.to_string());
            assert!(
                source.is_some_and(|s| s.contains(&format!("line {line}"))),
                "{e}: {:?}",
                std::error::Error::source(&e)
            );
            Ok(())
        });
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
        let c: ServerConfig = toml::from_str("[audit]\nmax_files = 0").unwrap();
        let refused = c.validate().unwrap_err().to_string();
        assert!(
            refused.contains("audit.max_files must be at least 1"),
            "{refused}"
        );
        assert!(toml::from_str::<ServerConfig>("[audit]\nmax_file = 3").is_err());
        for bad in ["", "a b", "{tag}"] {
            let c: ServerConfig = toml::from_str(&format!("state_key_prefix = {bad:?}")).unwrap();
            let refused = c.validate().unwrap_err().to_string();
            assert!(refused.contains("state_key_prefix"), "{refused}");
        }
    }

    #[test]
    fn state_urls_in_errors_carry_no_password() {
        assert_eq!(
            without_password("redis://:s3cret@h:6379,redis://app:s3cret@h2:6379/0"),
            "redis://:***@h:6379,redis://app:***@h2:6379/0"
        );
        assert_eq!(
            without_password("rediss+sentinel://:pw@s1:26379,s2:26379/mymaster"),
            "rediss+sentinel://:***@s1:26379,s2:26379/mymaster"
        );
        assert_eq!(without_password("redis://h:6379"), "redis://h:6379");
        let refused = ServerConfig {
            state: "memcached://:hunter2@h".into(),
            ..Default::default()
        }
        .stores()
        .err()
        .unwrap()
        .to_string();
        assert!(!refused.contains("hunter2"), "{refused}");
    }
}
