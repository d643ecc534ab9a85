//! Model operations for a fleet of replicas sharing a Redis: the desired model (active, previous,
//! shadow and its share) is fleet state (`handoff:models`), so an admin call on any replica moves every
//! replica. Each replica follows it on its own (load, validate, warm up, then switch; a package that
//! fails here leaves this replica on its model and says so), joins it when it starts, and reports
//! what it serves (`handoff:replicas`), which `GetStatus` shows for the whole fleet.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::Script;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::policy::{RedisStore, StateError};
use crate::swap::{self, ModelManager};
use crate::telemetry as t;

/// Under the deployment's key prefix: `handoff:models`, `handoff:replicas` by default.
const MODELS: &str = "models";
const REPLICAS: &str = "replicas";
/// One Redis call's deadline.
const CALL: Duration = Duration::from_secs(2);

/// Record `generation` as applied (with its error), never going back to an older one: a publish
/// and a follow may race on one replica.
fn raise(applied: &mut (u64, Option<String>), generation: u64, error: Option<String>) {
    if generation >= applied.0 {
        *applied = (generation, error);
    }
}

/// What every replica should serve.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub active: Option<(String, String)>,
    /// What Rollback on any replica goes back to.
    #[serde(default)]
    pub previous: Option<(String, String)>,
    pub shadow: Option<(String, String)>,
    pub shadow_share: f32,
}

impl Desired {
    fn of(s: &swap::Status) -> Desired {
        Desired {
            active: s.active.clone(),
            previous: s.previous.clone(),
            shadow: s.shadow.clone(),
            shadow_share: s.shadow_share,
        }
    }
}

/// What one replica says it serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub replica: String,
    pub active: Option<(String, String)>,
    pub shadow: Option<(String, String)>,
    pub shadow_share: f32,
    /// The fleet generation it has applied (or failed to: `error`).
    pub generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub at_ms: u64,
}

/// KEYS[1] models; ARGV[1] the desired state, ARGV[2] the generation it was made from. Returns the
/// new generation, or -1 when another operation was published since (nothing written).
const PUBLISH: &str = r#"
local current = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if current ~= tonumber(ARGV[2]) then
  return -1
end
local g = redis.call('HINCRBY', KEYS[1], 'generation', 1)
redis.call('HSET', KEYS[1], 'state', ARGV[1])
return g
"#;
/// KEYS[1] models. Returns {generation, state} (false when never published).
const READ: &str = r#"
return redis.call('HMGET', KEYS[1], 'generation', 'state')
"#;
/// KEYS[1] replicas; ARGV[1] replica, ARGV[2] its report.
const REPORT: &str = r#"
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
"#;
/// KEYS[1] replicas; ARGV[1] now (ms), ARGV[2] how old a report may be. Returns the fresh reports
/// and drops the others (replicas gone, old pod names), so the hash does not grow.
const LIST: &str = r#"
local fresh = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, r = pcall(cjson.decode, all[i + 1])
  if ok and type(r) == 'table' and tonumber(ARGV[1]) - (tonumber(r.at_ms) or 0) <= tonumber(ARGV[2]) then
    table.insert(fresh, all[i + 1])
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return fresh
"#;

static PUBLISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH));
static READ_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(READ));
static REPORT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REPORT));
static LIST_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LIST));

/// An admin operation under way on this replica (see [`Fleet::begin`]).
pub struct Operation<'f> {
    _guard: tokio::sync::MutexGuard<'f, ()>,
    /// The fleet generation this replica was at when it began.
    generation: u64,
    /// The fleet's previous model at that generation: what Rollback goes back to.
    pub previous: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("another model operation reached the fleet first; this replica follows it")]
    Raced,
}

pub struct Fleet {
    redis: RedisStore,
    replica: String,
    manager: Arc<ModelManager>,
    /// The generation this replica last applied (or tried to), and what went wrong if it failed.
    applied: tokio::sync::Mutex<(u64, Option<String>)>,
    /// Held by an admin operation from catching up to publishing, and by the follower while it
    /// applies: the two never interleave on one replica.
    operating: tokio::sync::Mutex<()>,
    /// How often replicas look for a new desired state and report; a report older than three of
    /// these is a replica that is gone.
    interval: Duration,
    /// Versions the fleet gauge was set for, so one no replica serves any more goes to 0.
    exported: tokio::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Fleet {
    pub fn new(
        redis: RedisStore,
        replica: String,
        manager: Arc<ModelManager>,
        interval: Duration,
    ) -> Self {
        Fleet {
            redis,
            replica,
            manager,
            applied: tokio::sync::Mutex::new((0, None)),
            operating: tokio::sync::Mutex::new(()),
            interval,
            exported: Default::default(),
        }
    }

    async fn call<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        args: &[&[u8]],
    ) -> Result<T, StateError> {
        let deadline = Some(Instant::now() + CALL);
        let key = self.redis.key(key);
        self.redis.script(script, &key, args, deadline).await
    }

    /// The fleet's desired state and its generation; none before the first admin call.
    pub async fn desired(&self) -> Result<Option<(u64, Desired)>, StateError> {
        let (generation, state): (Option<u64>, Option<String>) =
            self.call(&READ_SCRIPT, MODELS, &[]).await?;
        Ok(match (generation, state) {
            (Some(g), Some(s)) => serde_json::from_str(&s).ok().map(|d| (g, d)),
            _ => None,
        })
    }

    /// Start an admin operation here: first bring this replica to the fleet's latest desired state
    /// (an operation sent through a balancer can land on a replica that has not followed the one
    /// before yet; done on stale state, it would publish that state and undo the other), then hold
    /// it until [`Fleet::publish`].
    pub async fn begin(&self) -> Result<Operation<'_>, FleetError> {
        let guard = self.operating.lock().await;
        let (generation, previous) = match self.desired().await? {
            Some((generation, desired)) => {
                // A generation whose package failed here is not tried again: the operation then
                // builds on what this replica serves (how a broken model is rolled back).
                if generation > self.applied.lock().await.0 {
                    self.apply(generation, &desired).await;
                }
                (generation, desired.previous)
            }
            None => (0, None),
        };
        Ok(Operation {
            _guard: guard,
            generation,
            previous,
        })
    }

    /// This replica just reached `status` by the admin call `op` began: make it the fleet's, unless
    /// another operation reached the fleet first (then this replica follows that one).
    pub async fn publish(
        &self,
        op: Operation<'_>,
        status: &swap::Status,
    ) -> Result<(), FleetError> {
        let state = serde_json::to_string(&Desired::of(status)).expect("serialises");
        let from = op.generation.to_string();
        let generation: i64 = self
            .call(
                &PUBLISH_SCRIPT,
                MODELS,
                &[state.as_bytes(), from.as_bytes()],
            )
            .await?;
        drop(op);
        let Ok(generation) = u64::try_from(generation) else {
            return Err(FleetError::Raced);
        };
        raise(&mut *self.applied.lock().await, generation, None);
        info!(generation, "fleet model state published");
        Ok(self.report().await?)
    }

    async fn report(&self) -> Result<(), StateError> {
        let status = self.manager.status().await;
        let (generation, error) = self.applied.lock().await.clone();
        let report = Report {
            replica: self.replica.clone(),
            active: status.active,
            shadow: status.shadow,
            shadow_share: status.shadow_share,
            generation,
            error,
            at_ms: crate::decision_log::now_ms(),
        };
        let json = serde_json::to_string(&report).expect("serialises");
        let _: i64 = self
            .call(
                &REPORT_SCRIPT,
                REPLICAS,
                &[self.replica.as_bytes(), json.as_bytes()],
            )
            .await?;
        Ok(())
    }

    /// Every replica's last report, newest first, without those gone quiet for three intervals.
    pub async fn replicas(&self) -> Result<Vec<Report>, StateError> {
        let now = crate::decision_log::now_ms().to_string();
        let stale = (3 * self.interval.as_millis() as u64 + CALL.as_millis() as u64).to_string();
        let raw: Vec<String> = self
            .call(&LIST_SCRIPT, REPLICAS, &[now.as_bytes(), stale.as_bytes()])
            .await?;
        let mut reports: Vec<Report> = raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        reports.sort_by(|a, b| a.replica.cmp(&b.replica));
        Ok(reports)
    }

    /// Bring this replica to the desired state of `generation`; an error is kept for the report
    /// and the generation is not tried again (a broken package is not reloaded every interval).
    async fn apply(&self, generation: u64, desired: &Desired) {
        let status = self.manager.status().await;
        let mut error = None;
        if let Some((name, version)) = &desired.active {
            if status.active.as_ref() != Some(&(name.clone(), version.clone())) {
                info!(generation, %name, %version, "following the fleet's model");
                if let Err(e) = self.manager.activate(name, version).await {
                    warn!(generation, "the fleet's model did not load here: {e}");
                    error = Some(e.to_string());
                }
            }
        }
        let shadow_now = (status.shadow.clone(), status.shadow_share);
        let shadow_wanted = (desired.shadow.clone(), desired.shadow_share);
        if error.is_none() && shadow_now != shadow_wanted {
            let (name, version) = desired.shadow.clone().unwrap_or_default();
            if let Err(e) = self
                .manager
                .set_shadow(&name, &version, desired.shadow_share)
                .await
            {
                error = Some(e.to_string());
            }
        }
        raise(&mut *self.applied.lock().await, generation, error);
    }

    /// Whether this replica serves something else than `desired` (a publish that failed after a
    /// local switch, the watcher's auto-activation, an operation that raced this one).
    async fn drifted(&self, desired: &Desired) -> bool {
        let s = self.manager.status().await;
        desired.active.is_some() && s.active != desired.active
            || (s.shadow.clone(), s.shadow_share) != (desired.shadow.clone(), desired.shadow_share)
    }

    /// Follow the fleet's desired state and report, every interval, until the process ends.
    pub async fn follow(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.desired().await {
                Ok(Some((generation, desired))) => {
                    let (applied, failed) = self.applied.lock().await.clone();
                    // A new operation, or drift from the current one (not retried once it failed
                    // here: a broken package is not reloaded every interval).
                    let _operating = self.operating.lock().await;
                    let drifted = failed.is_none() && self.drifted(&desired).await;
                    if generation > applied || drifted {
                        self.apply(generation, &desired).await;
                    }
                }
                Ok(None) => {}
                Err(e) => warn!("the fleet's model state is unreadable: {e}"),
            }
            if let Err(e) = self.report().await {
                warn!("this replica's model state was not reported to the fleet: {e}");
            }
            self.export().await;
        }
    }

    /// The fleet as this replica sees it: replicas per serving version, in a gauge.
    async fn export(&self) {
        let Ok(reports) = self.replicas().await else {
            return;
        };
        let mut by_version = std::collections::BTreeMap::<String, f64>::new();
        for r in &reports {
            let version = r.active.as_ref().map_or("none".into(), |(_, v)| v.clone());
            *by_version.entry(version).or_default() += 1.0;
        }
        let mut exported = self.exported.lock().await;
        for gone in exported.iter().filter(|v| !by_version.contains_key(*v)) {
            metrics::gauge!(t::FLEET_REPLICAS, "version" => gone.clone()).set(0.0);
        }
        for (version, n) in &by_version {
            metrics::gauge!(t::FLEET_REPLICAS, "version" => version.clone()).set(*n);
        }
        exported.extend(by_version.into_keys());
    }
}
