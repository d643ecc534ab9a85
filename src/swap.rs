//! Model swaps without downtime: load a package off the hot path, validate it (manifest, ONNX I/O,
//! golden examples, the labels the policy needs), warm it up at the batch sizes in use, then switch
//! atomically. A package that fails any step is refused with the reason and the old model keeps
//! serving. Batches already running finish on the model they took; the old model is freed with the
//! last of them (rollback reloads from disk rather than pinning a second model in memory).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::model::repository::{compare_versions, PackageRef, Repository};
use crate::model::{Model, ModelError, ModelRegistry};
use crate::policy::{Policy, SharedPolicy};
use crate::shadow::{Candidate, Shadow};
use crate::telemetry as t;

#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("no package {0}/{1} in the model repository")]
    NotFound(String, String),
    /// The reason names files relative to the package: callers name packages, not the server's
    /// directories (the log keeps the full path).
    #[error("package {package} refused: {}", .reason.to_string().replace(&format!("{}/", .dir.display()), &format!("{}/", .package)))]
    Refused {
        package: String,
        dir: std::path::PathBuf,
        #[source]
        reason: LoadError,
    },
    #[error("nothing to roll back to")]
    NoPrevious,
    #[error("shadow share {0} is outside [0, 1]")]
    Share(f32),
}

/// Why a package was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("warm-up failed: {0}")]
    WarmUp(#[source] ModelError),
    #[error("manifest says {manifest}, directory says {directory}")]
    Misplaced { manifest: String, directory: String },
    #[error("the loading thread failed: {0}")]
    Crashed(#[source] tokio::task::JoinError),
}

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub active: Option<(String, String)>,
    pub previous: Option<(String, String)>,
    pub shadow: Option<(String, String)>,
    pub shadow_share: f32,
}

#[derive(Default)]
struct History {
    active: Option<PackageRef>,
    previous: Option<PackageRef>,
    /// Versions the watcher already tried, so a broken package is not reloaded every interval.
    watched: HashSet<(String, String)>,
}

pub struct ModelManager {
    repo: Repository,
    registry: Arc<ModelRegistry>,
    policy: Arc<SharedPolicy>,
    shadow: Arc<Shadow>,
    warmup_batch_sizes: Vec<usize>,
    /// One swap at a time; readers of the active model never take this lock.
    history: Mutex<History>,
}

impl ModelManager {
    pub fn new(
        repo: Repository,
        registry: Arc<ModelRegistry>,
        policy: Arc<SharedPolicy>,
        shadow: Arc<Shadow>,
        max_batch_size: usize,
    ) -> Self {
        let mut warmup_batch_sizes = vec![1, 8.min(max_batch_size), max_batch_size];
        warmup_batch_sizes.dedup();
        ModelManager {
            repo,
            registry,
            policy,
            shadow,
            warmup_batch_sizes,
            history: Mutex::default(),
        }
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Load, validate and warm up `pkg` on a blocking thread; counts the result.
    async fn load(&self, pkg: &PackageRef) -> Result<Arc<Model>, SwapError> {
        let (dir, policy, sizes) = (
            pkg.dir.clone(),
            self.policy.get(),
            self.warmup_batch_sizes.clone(),
        );
        let label = format!("{}/{}", pkg.name, pkg.version);
        let loaded = tokio::task::spawn_blocking(move || load_checked(&dir, &policy, &sizes))
            .await
            .map_err(LoadError::Crashed)
            .and_then(|r| r)
            .and_then(|model| {
                if model.name() == pkg.name && model.version() == pkg.version {
                    return Ok(model);
                }
                Err(LoadError::Misplaced {
                    manifest: format!("{}/{}", model.name(), model.version()),
                    directory: label.clone(),
                })
            });
        match loaded {
            Ok(model) => {
                metrics::counter!(t::MODEL_LOADS, "result" => "ok").increment(1);
                Ok(Arc::new(model))
            }
            Err(reason) => {
                metrics::counter!(t::MODEL_LOADS, "result" => "refused").increment(1);
                warn!(package = %label, reason = %reason, "model package refused");
                Err(SwapError::Refused {
                    package: label,
                    dir: pkg.dir.clone(),
                    reason,
                })
            }
        }
    }

    /// Activate `<name>/<version>` ("latest" allowed) from the repository.
    pub async fn activate(&self, name: &str, version: &str) -> Result<Status, SwapError> {
        let pkg = self
            .repo
            .resolve(name, version)
            .ok_or_else(|| SwapError::NotFound(name.into(), version.into()))?;
        self.activate_package(pkg).await
    }

    /// Activate a package directory (also used at startup, where it may lie outside the repository).
    pub async fn activate_package(&self, pkg: PackageRef) -> Result<Status, SwapError> {
        let mut history = self.history.lock().await;
        let model = self.load(&pkg).await?;
        self.switch(&mut history, pkg, model);
        Ok(self.status_of(&history))
    }

    pub async fn rollback(&self) -> Result<Status, SwapError> {
        let mut history = self.history.lock().await;
        let previous = history.previous.clone().ok_or(SwapError::NoPrevious)?;
        let model = self.load(&previous).await?;
        self.switch(&mut history, previous, model);
        Ok(self.status_of(&history))
    }

    fn switch(&self, history: &mut History, pkg: PackageRef, model: Arc<Model>) {
        let old = self.registry.activate(model);
        if let Some(old) = old {
            metrics::gauge!(t::MODEL_INFO, "name" => old.name().to_string(), "version" => old.version().to_string()).set(0.0);
            release(old);
        }
        metrics::gauge!(t::MODEL_INFO, "name" => pkg.name.clone(), "version" => pkg.version.clone()).set(1.0);
        info!(name = %pkg.name, version = %pkg.version, "model activated");
        if history.active.as_ref() != Some(&pkg) {
            history.previous = history.active.replace(pkg);
        }
    }

    pub async fn set_shadow(
        &self,
        name: &str,
        version: &str,
        share: f32,
    ) -> Result<Status, SwapError> {
        if !(0.0..=1.0).contains(&share) {
            return Err(SwapError::Share(share));
        }
        let history = self.history.lock().await;
        let replaced = self.shadow.current().map(|c| c.model);
        if share == 0.0 {
            self.shadow.set(None);
        } else {
            let pkg = self
                .repo
                .resolve(name, version)
                .ok_or_else(|| SwapError::NotFound(name.into(), version.into()))?;
            let model = self.load(&pkg).await?;
            self.shadow.set(Some(Candidate { model, share }));
        }
        if let Some(replaced) = replaced {
            release(replaced);
        }
        Ok(self.status_of(&history))
    }

    pub async fn status(&self) -> Status {
        self.status_of(&*self.history.lock().await)
    }

    fn status_of(&self, history: &History) -> Status {
        let pair = |p: &PackageRef| (p.name.clone(), p.version.clone());
        let shadow = self.shadow.current();
        Status {
            active: history.active.as_ref().map(pair),
            previous: history.previous.as_ref().map(pair),
            shadow: shadow
                .as_ref()
                .map(|c| (c.model.name().to_string(), c.model.version().to_string())),
            shadow_share: shadow.map(|c| c.share).unwrap_or(0.0),
        }
    }

    /// Poll the repository: a version of the active model newer than the active one is loaded and
    /// validated once; with `auto_activate` it is also activated.
    pub async fn watch(self: Arc<Self>, interval: Duration, auto_activate: bool) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(active) = self.history.lock().await.active.clone() else {
                continue;
            };
            let Some(newest) = self.repo.resolve(&active.name, "latest") else {
                continue;
            };
            if compare_versions(&newest.version, &active.version).is_le() {
                continue;
            }
            let key = (newest.name.clone(), newest.version.clone());
            if !self.history.lock().await.watched.insert(key) {
                continue;
            }
            info!(name = %newest.name, version = %newest.version, "new model version in the repository");
            let result = if auto_activate {
                self.activate_package(newest).await.map(|_| ())
            } else {
                self.load(&newest).await.map(|_| ())
            };
            if let Err(e) = result {
                warn!("watched package not used: {e}");
            }
        }
    }
}

fn load_checked(
    dir: &std::path::Path,
    policy: &Policy,
    warmup_batch_sizes: &[usize],
) -> Result<Model, LoadError> {
    let model = Model::load(dir)?;
    policy.check_labels(model.intent_labels())?;
    warm_up(&model, warmup_batch_sizes).map_err(LoadError::WarmUp)?;
    Ok(model)
}

/// Run the golden texts at each batch size, so the first live batches do not pay for first-run setup.
fn warm_up(model: &Model, batch_sizes: &[usize]) -> Result<(), ModelError> {
    let texts: Vec<String> = model
        .manifest
        .golden
        .iter()
        .map(|g| g.text.clone())
        .collect();
    let texts = if texts.is_empty() {
        vec!["hello".to_string()]
    } else {
        texts
    };
    let encoded = texts
        .iter()
        .map(|t| model.encode(t))
        .collect::<Result<Vec<_>, _>>()?;
    for &size in batch_sizes {
        let batch: Vec<_> = encoded.iter().cycle().take(size).collect();
        model.run(&batch)?;
    }
    // Timed once set up: the queue's wait estimate until live batches refine it, so a cold
    // server's first burst is admitted against its deadlines like any other.
    let started = std::time::Instant::now();
    model.run(&[&encoded[0]])?;
    model.set_warm_per_text(started.elapsed());
    Ok(())
}

/// The replaced model is freed when its last running batch lets go of it; then the allocator hands
/// the freed pages back to the OS. Without that glibc keeps them in its arenas, and every swap
/// would leave the process a model larger (25 activate/rollback cycles: +260 MiB).
fn release(old: Arc<Model>) {
    tokio::spawn(async move {
        let mut old = old;
        // Batches take a few ms; a minute covers any, and a model still held then is freed by
        // whoever holds it (without the trim).
        for _ in 0..600 {
            match Arc::try_unwrap(old) {
                Ok(model) => {
                    let _ = tokio::task::spawn_blocking(move || {
                        drop(model);
                        return_freed_memory();
                    })
                    .await;
                    return;
                }
                Err(still_used) => old = still_used,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
