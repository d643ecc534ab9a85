//! Wiring: metrics exporter, model loading, batcher, gRPC services (handoff, health, reflection) and
//! graceful shutdown. Health reports NOT_SERVING until the model is loaded and again while draining.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tracing::{error, info, warn};

use crate::audit::AuditLog;
use crate::batcher::Batcher;
use crate::cache::ResultCache;
use crate::config::ServerConfig;
use crate::customers::{CustomerMemory, Pseudonyms};
use crate::decision_log::claims::RedisClaims;
use crate::decision_log::{FeedbackClaims, Journal};
use crate::fleet::Fleet;
use crate::grpc::pb::handoff_server::HandoffServer;
use crate::grpc::pb::model_admin_server::ModelAdminServer;
use crate::grpc::{pb, AdminService, HandoffService, ObserveLayer};
use crate::model::repository::{PackageRef, Repository};
use crate::model::{Manifest, ModelRegistry};
use crate::policy::{self, Policy, SharedPolicy};
use crate::security::tls::ReloadingTls;
use crate::security::{Authenticator, GuardLayer};
use crate::shadow::{InferenceTap, Shadow};
use crate::swap::ModelManager;
use crate::telemetry as t;
use crate::tenants::Tenants;

/// The readiness service name.
const SERVICE_NAME: &str = crate::grpc::HANDOFF_SERVICE;

/// Readiness: `handoff.v1.Handoff` is SERVING while a model is loaded and the server is not
/// draining. Liveness (`""`) is SERVING whenever the process answers at all, so a slow model load
/// or a drain never gets the process restarted.
async fn set_ready(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status(SERVICE_NAME, status).await;
}

async fn reporter_alive(reporter: &HealthReporter) {
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
}

/// Serve until `shutdown` resolves, then drain: every call already accepted is answered. A startup
/// model that fails to load stops the server with its reason: serving nothing forever helps no one.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App::build(&config).await?;
    app.serve(&config, shutdown).await
}

/// Everything the server runs, built and checked before anything listens on the gRPC port.
struct App {
    router: tonic::transport::server::Router<
        tower::layer::util::Stack<
            GuardLayer,
            tower::layer::util::Stack<ObserveLayer, tower::layer::util::Identity>,
        >,
    >,
    listener: TcpListener,
    tls: Option<Arc<ReloadingTls>>,
    health: HealthReporter,
    manager: Arc<ModelManager>,
    fleet: Option<Arc<Fleet>>,
    batcher: Arc<Batcher>,
    journal: Arc<Journal>,
    /// Closed after the journal, once every call is answered.
    audit: AuditLog,
}

impl App {
    async fn build(config: &ServerConfig) -> anyhow::Result<App> {
        config.validate()?;
        t::install_metrics(config.metrics_addr).context("starting the metrics endpoint")?;
        crate::grpc::zero_decision_counters();
        let policy = SharedPolicy::new(match (&config.policy_file, config.policy.clone()) {
            (None, Some(inline)) => Policy::new(inline)?,
            (file, _) => policy::file::load_or_builtin(file.as_deref())?,
        });
        let registry = Arc::new(ModelRegistry::default());
        let shadow = Shadow::start(config.shadow_queue_capacity, policy.clone());
        let cache = ResultCache::new(config.cache_capacity, config.cache_max_text_bytes);
        let batcher = Batcher::start(
            config.batcher(),
            registry.clone(),
            Some(shadow.clone() as Arc<dyn InferenceTap>),
            cache,
        );
        let manager = Arc::new(ModelManager::new(
            Repository::new(&config.model_repository),
            registry.clone(),
            policy.clone(),
            shadow,
            config.max_batch_size,
        ));
        if let Some(path) = config.policy_file.clone() {
            let poll = Duration::from_millis(config.policy_poll_ms.max(50));
            tokio::spawn(reload_policy(path, poll, policy.clone(), registry.clone()));
        }

        let (health, health_service) = tonic_health::server::health_reporter();
        reporter_alive(&health).await;
        set_ready(&health, ServingStatus::NotServing).await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;

        let limits = config.limits.clone();
        let default_deadline = limits.default_deadline();
        let max_message = limits.max_text_bytes * limits.max_batch_texts + 64 * 1024;
        let audit = match &config.audit_log {
            Some(path) => AuditLog::open(path, config.audit.clone())
                .with_context(|| format!("opening the audit log {}", path.display()))?,
            None => AuditLog::disabled(),
        };
        let audit_log = audit.clone();
        let stores = config.stores()?;
        // Feedback is remembered where the fleet's state is: in its Redis, else in this process.
        let claims = stores.redis.clone().map(|redis| {
            let window = Duration::from_secs(config.decision_log.feedback_window_s);
            Arc::new(RedisClaims::new(redis, window)) as Arc<dyn FeedbackClaims>
        });
        let journal = Arc::new(Journal::open(&config.decision_log, claims)?);
        // Replicas sharing a Redis share their model operations too.
        let fleet = stores.redis.clone().map(|redis| {
            let replica = match config.decision_log.replica.as_str() {
                "" => format!("{}-{}", host_name(), config.grpc_addr.port()),
                name => name.to_string(),
            };
            let interval = Duration::from_millis(config.fleet_poll_ms.max(100));
            Arc::new(Fleet::new(redis, replica, manager.clone(), interval))
        });
        let names = match &config.customers.key {
            Some(key) => Some(Pseudonyms::new(key.as_bytes())),
            // In process: a key of its own is as good as any (memory ends with the process).
            None if config.state == "memory" => Some(Pseudonyms::random()),
            None => {
                warn!("no [customers] key: customer memory is off (Route decides without history, reason customer_unavailable); set the same key (HANDOFF_CUSTOMERS__KEY) on every replica to turn it on");
                None
            }
        };
        let customers = CustomerMemory::new(stores.customers.clone(), names, &config.customers);
        let tenants = Arc::new(Tenants::build(&config.tenants, &policy)?);
        let poll = Duration::from_millis(config.policy_poll_ms.max(50));
        for tenant in tenants.iter() {
            if let Some(path) = tenant.policy_file.clone() {
                tokio::spawn(reload_policy(
                    path,
                    poll,
                    tenant.policy.clone(),
                    registry.clone(),
                ));
            }
        }
        let service = HandoffServer::new(HandoffService::new(
            batcher.clone(),
            stores,
            customers,
            limits,
            audit.clone(),
            journal.clone(),
        ))
        .max_decoding_message_size(max_message);
        let auth = Arc::new(Authenticator::new(&config.auth)?);
        tenants.check_callers(auth.callers())?;
        if auth.is_open() && !config.grpc_addr.ip().is_loopback() {
            warn!(addr = %config.grpc_addr, "no [auth] callers configured: anyone who reaches this port may call every method, admin included");
        }
        let guard = GuardLayer::new(auth, tenants, audit.clone(), config.max_in_flight);
        let router = tonic::transport::Server::builder()
            .layer(ObserveLayer::new(default_deadline))
            .layer(guard)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(service)
            .add_service(ModelAdminServer::new(AdminService::new(
                manager.clone(),
                audit,
                fleet.clone(),
            )));

        // TLS files are checked before anything listens: a bad certificate stops the start with its reason.
        let tls = config.tls.clone().map(ReloadingTls::new).transpose()?;
        let listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding {}", config.grpc_addr))?;
        info!(grpc = %listener.local_addr()?, tls = tls.is_some(), metrics = %config.metrics_addr, workers = config.worker_count(), "listening");
        Ok(App {
            router,
            listener,
            tls,
            health,
            manager,
            fleet,
            batcher,
            journal,
            audit: audit_log,
        })
    }

    /// Answer health checks at once, load the startup model off the async threads, serve until
    /// `shutdown` (or a failed startup load), drain, and let the workers finish what is queued.
    async fn serve(
        self,
        config: &ServerConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            router,
            listener,
            tls,
            health,
            manager,
            fleet,
            batcher,
            journal,
            audit: audit_log,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let drain = Duration::from_millis(config.drain_ms);
        let draining_health = health.clone();
        let stop = async move {
            let _ = stop_rx.await;
            info!(
                drain_ms = drain.as_millis() as u64,
                "shutting down: NOT_SERVING, draining"
            );
            set_ready(&draining_health, ServingStatus::NotServing).await;
            tokio::time::sleep(drain).await;
        };
        let serving = match tls {
            Some(tls) => {
                tokio::spawn(tls.clone().watch());
                let incoming = crate::security::tls::incoming(listener, tls);
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
            }
            None => {
                // Without TCP_NODELAY small replies wait for the peer's delayed ACK (~40 ms on Linux).
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop))
            }
        };

        let mut startup = {
            let manager = manager.clone();
            let package = startup_package(&config.model_dir, manager.repository());
            let fleet = fleet.clone();
            tokio::spawn(async move {
                // A replica joining a fleet starts on the fleet's model, when this one has it.
                let joined = match &fleet {
                    Some(fleet) => fleet_package(fleet, manager.repository()).await,
                    None => None,
                };
                manager
                    .activate_package(joined.map_or(package, Ok)?)
                    .await?;
                anyhow::Ok(())
            })
        };
        tokio::pin!(shutdown);
        let mut serving = serving;
        let failed = tokio::select! {
            _ = &mut shutdown => {
                startup.abort(); // still loading: not ready, never made ready while draining
                None
            }
            ended = &mut serving => {
                // The server stopped on its own (a listener error): nothing to drain.
                startup.abort();
                ended??;
                return Err(anyhow::anyhow!("the gRPC server stopped unexpectedly"));
            }
            loaded = &mut startup => match loaded.map_err(anyhow::Error::from).and_then(|r| r) {
                Ok(()) => {
                    set_ready(&health, ServingStatus::Serving).await;
                    if let Some(fleet) = fleet.clone() {
                        tokio::spawn(fleet.follow());
                    }
                    if config.watch_interval_ms > 0 {
                        let interval = Duration::from_millis(config.watch_interval_ms);
                        tokio::spawn(manager.watch(interval, config.auto_activate));
                    }
                    tokio::select! {
                        _ = &mut shutdown => {}
                        ended = &mut serving => {
                            ended??;
                            return Err(anyhow::anyhow!("the gRPC server stopped unexpectedly"));
                        }
                    }
                    None
                }
                Err(e) => {
                    // Said before the drain's own lines, where an operator reads first.
                    error!("model failed to load: {}", crate::telemetry::explain::explain(&e));
                    Some(e)
                }
            },
        };
        let _ = stop_tx.send(());
        serving.await??;

        // Listeners are closed and in-flight calls answered; let the workers finish what is queued.
        tokio::task::spawn_blocking(move || batcher.shutdown()).await?;
        // Every call is answered: no decision can be made any more, so the log can be closed.
        tokio::task::spawn_blocking(move || journal.close()).await?;
        tokio::task::spawn_blocking(move || audit_log.close()).await?;
        if failed.is_some() {
            // The cause is logged above; the exit says only that this is why it stopped.
            anyhow::bail!("stopped: the model did not load");
        }
        info!("stopped");
        Ok(())
    }
}

/// The fleet's active package, if the fleet has one and this replica's repository holds it.
async fn fleet_package(fleet: &Fleet, repo: &Repository) -> Option<PackageRef> {
    match fleet.desired().await {
        Ok(Some((_, desired))) => {
            let (name, version) = desired.active?;
            let found = repo.resolve(&name, &version);
            if found.is_none() {
                warn!(%name, %version, "the fleet's model is not in this replica's repository: starting on the configured one");
            }
            found
        }
        Ok(None) => None,
        Err(e) => {
            warn!("the fleet's model state is unreadable, starting on the configured model: {e}");
            None
        }
    }
}

/// This machine's name, for telling replicas apart.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// The startup package: `model_dir` is either a package directory or `NAME@VERSION` (`NAME@latest`
/// for the newest) in the model repository.
fn startup_package(model: &std::path::Path, repo: &Repository) -> anyhow::Result<PackageRef> {
    let spec = model.to_string_lossy();
    if let Some((name, version)) = spec.split_once('@').filter(|_| !model.is_dir()) {
        return repo.resolve(name, version).with_context(|| {
            format!(
                "no package {name}@{version} in the model repository {}",
                repo.root().display()
            )
        });
    }
    let manifest = Manifest::load(model).with_context(|| {
        // A relative path is read from the working directory: say which, or "no such file" puzzles.
        match std::env::current_dir().ok().filter(|_| model.is_relative()) {
            Some(cwd) => format!(
                "model package {} (relative to the working directory {})",
                model.display(),
                cwd.display()
            ),
            None => format!("model package {}", model.display()),
        }
    })?;
    Ok(PackageRef {
        name: manifest.name,
        version: manifest.version,
        dir: model.to_path_buf(),
    })
}

/// Reload the policy file when it changes (polled) or on SIGHUP. A file that fails validation
/// (syntax, thresholds, queues, intents the active model lacks) is refused: the running policy stays.
async fn reload_policy(
    path: std::path::PathBuf,
    poll: Duration,
    policy: Arc<SharedPolicy>,
    registry: Arc<ModelRegistry>,
) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = modified(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut ticker = tokio::time::interval(poll);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        let forced = tokio::select! {
            _ = ticker.tick() => false,
            _ = hangup => true,
        };
        let now = modified(&path);
        if !forced && now == last {
            continue;
        }
        last = now;
        let labels = registry.current().map(|m| m.intent_labels().to_vec());
        match policy::file::load(&path, labels.as_deref()) {
            Ok(p) => {
                info!(version = p.version(), "policy reloaded");
                policy.replace(p);
                metrics::counter!(t::POLICY_RELOADS, "result" => "ok").increment(1);
            }
            Err(e) => {
                error!("policy file refused, the running policy stays: {e}");
                metrics::counter!(t::POLICY_RELOADS, "result" => "error").increment(1);
            }
        }
    }
}
