//! The server side of the command line: `serve` (settings in layers, logging, tracing, the signal
//! that drains it), the `health` probe containers run beside it, and `hash-key` for its API keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use handoff::config::ServerConfig;
use handoff::telemetry::otel::Exporter;
use tonic_health::pb::health_check_response::ServingStatus;

/// Settings come in layers: defaults < `--config` file < `HANDOFF_*` variables < these flags <
/// `--set`. Every key has a variable (`HANDOFF_LIMITS__MAX_TEXT_BYTES`) and can be given with `--set`.
/// A flag's field serializes to its config key (renamed where the flag is shorter), so the flags
/// are listed here once and become a config layer as they are.
#[derive(Args, serde::Serialize)]
pub struct ServeArgs {
    /// TOML config file (see config/handoff.toml).
    #[arg(long, env = "HANDOFF_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    #[arg(long, help = about("grpc_addr", "gRPC listen address", DEFAULTS.grpc_addr))]
    grpc_addr: Option<SocketAddr>,
    #[arg(long, help = about("metrics_addr", "Prometheus /metrics listen address", DEFAULTS.metrics_addr))]
    metrics_addr: Option<SocketAddr>,
    #[arg(long, help = about("model_dir", "Model package served at startup (a directory, or NAME@VERSION / NAME@latest in the repository)", DEFAULTS.model_dir.display()))]
    #[serde(rename = "model_dir")]
    model: Option<PathBuf>,
    #[arg(long, help = about("model_repository", "Repository of <name>/<version>/ packages for swaps", DEFAULTS.model_repository.display()))]
    model_repository: Option<PathBuf>,
    #[arg(long, help = about("watch_interval_ms", "How often to look for new model versions, in ms (0 = never)", DEFAULTS.watch_interval_ms))]
    watch_interval_ms: Option<u64>,
    #[arg(long, help = about("auto_activate", "Activate new versions the watcher finds", DEFAULTS.auto_activate))]
    auto_activate: Option<bool>,
    #[arg(long, help = about("policy_file", "Policy file, reloaded on change or SIGHUP", "none: the built-in policy"))]
    #[serde(rename = "policy_file")]
    policy: Option<PathBuf>,
    #[arg(long, help = about("state", "Conversation state: \"memory\", \"redis://host:port[/db]\" (several, comma-separated: a Redis Cluster) or \"redis+sentinel://host:port[,…]/service\"", &DEFAULTS.state))]
    state: Option<String>,
    #[arg(long, help = about("workers", "Inference worker threads (0 = one per core)", DEFAULTS.workers))]
    workers: Option<usize>,
    #[arg(long, help = about("queue_capacity", "Texts waiting for inference at most; beyond: RESOURCE_EXHAUSTED", DEFAULTS.queue_capacity))]
    queue_capacity: Option<usize>,
    #[arg(long, help = about("max_batch_size", "Texts per inference batch at most", DEFAULTS.max_batch_size))]
    max_batch_size: Option<usize>,
    #[arg(long, help = about("max_batch_tokens", "Padded tokens per batch at most", DEFAULTS.max_batch_tokens))]
    max_batch_tokens: Option<usize>,
    #[arg(long, help = about("max_queue_delay_us", "How long a batch waits for company, in µs (0 = run what is queued)", DEFAULTS.max_queue_delay_us))]
    max_queue_delay_us: Option<u64>,
    #[arg(long, help = about("drain_ms", "On SIGTERM, NOT_SERVING for this long before listeners close, in ms", DEFAULTS.drain_ms))]
    drain_ms: Option<u64>,
    #[arg(long, help = about("cache_capacity", "Model results kept for repeated texts (0 = no result cache)", DEFAULTS.cache_capacity))]
    cache_capacity: Option<usize>,
    #[arg(
        long,
        env = "HANDOFF_OTLP_ENDPOINT",
        help = "OTLP/gRPC collector for spans, e.g. http://otel-collector:4317 or https://… (TLS; CA: [tracing] otlp_ca) [default: none: no spans exported]"
    )]
    #[serde(rename = "tracing.otlp_endpoint")]
    otlp_endpoint: Option<String>,
    /// Any config key, as a dotted path and a TOML value: --set decision_log.dir=/var/lib/handoff
    /// --set limits.max_text_bytes=8192 (repeatable; beats every other layer).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    #[serde(skip)]
    set: Vec<String>,
}

static DEFAULTS: std::sync::LazyLock<ServerConfig> =
    std::sync::LazyLock::new(ServerConfig::default);

/// Help text that names the variable setting config `key` and the value used when no layer sets it.
/// The variable is read by the config layers (`ServerConfig::load`), not by clap, so the flag, the
/// variable, the file and `--set` keep one order of precedence.
fn about(key: &str, text: &str, default: impl std::fmt::Display) -> String {
    let var = handoff::config::variable_for(key);
    format!("{text} [env: {var}] [default: {default}]")
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        use figment::value::Value;
        let Value::Dict(_, given) = Value::serialize(&self)? else {
            unreachable!("a struct serializes to a dict")
        };
        // Flags not given serialize as empty values: they leave the layers below alone.
        let flags = given
            .into_iter()
            .filter(|(_, v)| !matches!(v, Value::Empty(..)))
            .collect();
        let c = ServerConfig::load(self.config.as_deref(), flags, &self.set)?;
        c.validate()?;
        Ok(c)
    }
}

/// Run the service until SIGTERM or Ctrl-C has drained it.
pub fn serve(args: ServeArgs, json_logs: bool) -> anyhow::Result<ExitCode> {
    let config = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // The OTLP channel needs the runtime, so logging starts inside it.
        let (exporter, tracer) = match Exporter::build(&config.tracing)? {
            Some((exporter, tracer)) => (Some(exporter), Some(tracer)),
            None => (None, None),
        };
        handoff::telemetry::init_tracing(json_logs, tracer);
        warn_unknown_variables();
        let served = handoff::server::run(config, shutdown_signal()).await;
        if let Some(exporter) = exporter {
            tokio::task::spawn_blocking(move || exporter.shutdown()).await?;
        }
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Said once at start, where an operator looking for why a setting did not take looks first.
fn warn_unknown_variables() {
    let names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    for (var, nearest) in handoff::config::unknown_variables(names) {
        match nearest {
            Some(meant) => tracing::warn!("{var} is not a setting and is ignored: did you mean {meant}?"),
            None => tracing::warn!("{var} is not a setting and is ignored (settings: `handoff serve --help`, README Configuration)"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[derive(Args)]
pub struct HealthArgs {
    /// host:port or http://host:port (plain text: the probe runs beside the server).
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// "handoff.v1.Handoff" (readiness: a model is loaded, not draining) or "" (liveness).
    #[arg(long, default_value = "handoff.v1.Handoff")]
    service: String,
    /// Give up after this long.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// Exit 0 when the server answers SERVING for the service asked about.
pub fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(check(&args.addr, &args.service, timeout))?;
    println!("{}", status.as_str_name());
    Ok(if status == ServingStatus::Serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One `grpc.health.v1.Health/Check` call.
async fn check(addr: &str, service: &str, timeout: Duration) -> anyhow::Result<ServingStatus> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let channel = tonic::transport::Endpoint::from_shared(uri)?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .with_context(|| format!("health check of {service:?} at {addr}"))?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
}

/// The SHA-256 of the key on stdin, as `[[auth.api_keys]] sha256` wants it.
pub fn hash_key() -> anyhow::Result<ExitCode> {
    let mut key = String::new();
    std::io::stdin().read_line(&mut key)?;
    if key.trim().is_empty() {
        anyhow::bail!("no key on stdin (make one with: openssl rand -hex 32)");
    }
    println!("{}", handoff::security::auth::hash_key(&key));
    Ok(ExitCode::SUCCESS)
}
