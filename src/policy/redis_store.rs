//! State in Redis (conversations, customers: any `Kept` kind, under `handoff:{KIND}:{id}`), shared by
//! a fleet of replicas, over the async client: an update never blocks a thread. Each update reads the state, decides, and writes it back with a compare-and-set
//! script (written only if the stored value is still the one read). Turns of one conversation on a
//! replica take turns (a lock per conversation, by stripe), and a write lost to another replica is
//! retried until the deadline, so concurrent turns never lose an update; one that cannot be written in
//! time says so. One deadline covers the whole update. Keys expire after the TTL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

use super::redis_target::{Connection, Target};
use super::state::{Kept, Repair, StateError, StateFuture, StateStore, Update};
use crate::telemetry as t;

/// A store over one Redis, with the TTL of what it keeps. `with_ttl` gives another TTL over the same
/// connection and breaker (conversations and customers are forgotten at different ages).
#[derive(Clone)]
pub struct RedisStore {
    shared: std::sync::Arc<Shared>,
    ttl: Duration,
}

struct Shared {
    client: Target,
    /// Every key starts `{prefix}:` (`state_key_prefix`), so deployments can share one Redis.
    prefix: String,
    /// Opened on first use, so a server that starts while Redis is down still serves (degraded)
    /// and connects when Redis returns; once open it reconnects by itself.
    connection: tokio::sync::Mutex<Option<Connection>>,
    timeout: Duration,
    /// When Redis last failed to connect or answer in time. For `RETRY_AFTER` after it updates
    /// fail at once (the turn is decided from the message alone at full speed); then one update
    /// probes while the others still fail fast, and a success closes the breaker.
    down_since: std::sync::Mutex<Option<Instant>>,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

/// How long updates fail fast after Redis failed, before one probes it again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Locks that serialize one conversation's turns on a replica, by a hash of its id.
const STRIPES: usize = 256;

fn stripe(id: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish() as usize % STRIPES
}

/// The most bytes a stored state may have: a real one is a few KiB. A key no replica wrote (a
/// 17 MB value, a list) is reset rather than read, so it cannot stall the call reading it or
/// the calls sharing its thread.
pub const MAX_STATE_BYTES: usize = 256 << 10;

/// KEYS[1] = key; ARGV[1] = `MAX_STATE_BYTES`. Returns {0, ''} (no state), {1, value},
/// {2, its Redis type} (not a string) or {3, its length} (too long): never more than the cap.
const READ: &str = r#"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return {0, ''} end
if kind ~= 'string' then return {2, kind} end
local n = redis.call('STRLEN', KEYS[1])
if n > tonumber(ARGV[1]) then return {3, tostring(n)} end
return {1, redis.call('GET', KEYS[1])}
"#;

/// KEYS[1] = key; ARGV = [what was read: 0 nothing, 1 the value ARGV[2], 2 something to reset
/// (not a string, or longer than ARGV[5]), the value read, the new value, TTL seconds, the cap].
/// Writes only if the key still holds what was read; returns 1 if written.
const COMPARE_AND_SET: &str = r#"
local kind = redis.call('TYPE', KEYS[1]).ok
local unchanged
if ARGV[1] == '0' then
  unchanged = (kind == 'none')
elseif ARGV[1] == '1' then
  unchanged = (kind == 'string' and redis.call('GET', KEYS[1]) == ARGV[2])
else
  unchanged = (kind ~= 'none' and (kind ~= 'string' or redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[5])))
end
if not unchanged then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
return 1
"#;

/// Scripts are hashed once (their SHA1 is what EVALSHA sends), not per call.
static READ_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(READ));
static COMPARE_AND_SET_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(COMPARE_AND_SET));
static DELETE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new("return redis.call('DEL', KEYS[1])"));

/// What the read found under a conversation's key.
enum Stored {
    Nothing,
    Value(Vec<u8>),
    /// Not something we wrote: reset it.
    Reset(Repair),
}

impl Stored {
    fn parse((code, payload): (i64, Vec<u8>)) -> Stored {
        match code {
            0 => Stored::Nothing,
            1 => Stored::Value(payload),
            2 => Stored::Reset(Repair::WrongType),
            _ => Stored::Reset(Repair::Oversized),
        }
    }

    /// The compare-and-set's first two arguments for it.
    fn expected(&self) -> (&'static str, &[u8]) {
        match self {
            Stored::Nothing => ("0", b""),
            Stored::Value(v) => ("1", v),
            Stored::Reset(_) => ("2", b""),
        }
    }
}

impl RedisStore {
    /// `url` is `redis://host:port[/db]` (`rediss://` for TLS, verified against `ca` when given),
    /// or a comma-separated list of a cluster's nodes; `timeout` bounds each whole update.
    pub fn new(
        url: &str,
        ttl: Duration,
        timeout: Duration,
        ca: Option<&[u8]>,
        prefix: &str,
    ) -> Result<Self, StateError> {
        let client = Target::open(url, timeout, ca)?;
        let shared = Shared {
            client,
            prefix: prefix.to_string(),
            connection: tokio::sync::Mutex::new(None),
            timeout,
            down_since: std::sync::Mutex::new(None),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        };
        Ok(RedisStore {
            shared: std::sync::Arc::new(shared),
            ttl,
        })
    }

    /// `{prefix}:{name}`: a key of this deployment (`handoff:models`, `handoff:fb:…`).
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.shared.prefix)
    }

    /// `{prefix}:conv:{id}`, `{prefix}:cust:{id}`.
    fn kept_key<S: Kept>(&self, id: &str) -> String {
        self.key(&format!("{}:{id}", S::KIND))
    }

    /// The same Redis, connection and breaker, keeping what it writes for `ttl`.
    pub fn with_ttl(&self, ttl: Duration) -> RedisStore {
        RedisStore {
            shared: self.shared.clone(),
            ttl,
        }
    }

    async fn connection(&self) -> Result<Connection, StateError> {
        let mut slot = self.shared.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self.shared.client.connect(self.shared.timeout).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Retried until written: the caller's deadline (the timeout around it) bounds the retries, not
    /// a count. `conflicts` counts the writes lost to another replica, so a deadline that runs out
    /// during contention is reported as contention, not as Redis being down.
    async fn update_checked<S: Kept>(
        &self,
        id: &str,
        f: &mut Update<'_, S>,
        conflicts: &AtomicUsize,
    ) -> Result<(), StateError> {
        let key = self.kept_key::<S>(id);
        // Turns of one conversation on this replica take turns: they never race each other through
        // the compare-and-set; only other replicas' writes can make it retry.
        let _turn = self.shared.stripes[stripe(&key)].lock().await;
        // Counted as one: a deadline that runs out while this replica's other turns of the
        // conversation hold the lock is contention too, not Redis being down.
        conflicts.fetch_add(1, Ordering::Relaxed);
        let mut con = self.connection().await?;
        let ttl = self.ttl.as_secs().max(1);
        let (read, compare_and_set) = (&*READ_SCRIPT, &*COMPARE_AND_SET_SCRIPT);
        let mut attempt = 0u32;
        loop {
            if attempt > 0 {
                // Contenders that read the same version would collide again at once: spread them.
                let jitter = rand::random::<u64>() % (2u64 << attempt.min(6));
                tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
            }
            let stored = Stored::parse(
                read.key(&key)
                    .arg(MAX_STATE_BYTES)
                    .invoke_async(&mut con)
                    .await?,
            );
            // Unreadable or out-of-range state (another writer, an older format) is repaired
            // rather than failing the conversation; the decision says so.
            let mut state = match &stored {
                Stored::Nothing => S::default(),
                Stored::Value(v) => S::from_stored(v),
                Stored::Reset(repair) => S::repaired(*repair),
            };
            let repair = state.repair();
            f(&mut state);
            // A NaN would be written as null and make the whole state unreadable next time.
            state.clamp();
            if matches!(stored, Stored::Nothing) && state.is_empty() {
                return Ok(());
            }
            let bytes = serde_json::to_vec(&state).expect("state serialises");
            let (mode, expected) = stored.expected();
            let written: i32 = compare_and_set
                .key(&key)
                .arg(mode)
                .arg(expected)
                .arg(bytes)
                .arg(ttl)
                .arg(MAX_STATE_BYTES)
                .invoke_async(&mut con)
                .await?;
            if written == 1 {
                if let Some(repair) = repair {
                    // No id: callers put phone numbers in them.
                    warn!(
                        repair = repair.as_str(),
                        kind = S::KIND,
                        "stored state repaired"
                    );
                    metrics::counter!(t::STATE_REPAIRS, "repair" => repair.as_str()).increment(1);
                }
                return Ok(());
            }
            conflicts.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
        }
    }
}

impl RedisStore {
    /// Fail fast while the breaker is open; the caller that finds it expired probes (and keeps the
    /// others failing fast meanwhile).
    fn breaker(&self) -> Result<(), StateError> {
        let mut down = self
            .shared
            .down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(since) = *down {
            let elapsed = since.elapsed();
            if elapsed < RETRY_AFTER {
                return Err(StateError::Down {
                    since: elapsed,
                    retry_in: RETRY_AFTER - elapsed,
                });
            }
            *down = Some(Instant::now());
        }
        Ok(())
    }

    fn set_down(&self, down: bool) {
        let mut slot = self
            .shared
            .down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *slot = down.then(Instant::now);
    }
}

impl RedisStore {
    /// The caller's deadline, when sooner than our own timeout, bounds the whole call.
    fn budget(&self, deadline: Option<Instant>) -> Duration {
        let timeout = self.shared.timeout;
        deadline.map_or(timeout, |d| {
            d.saturating_duration_since(Instant::now()).min(timeout)
        })
    }
}

impl RedisStore {
    /// Run `script` on `key` with `args`, within the deadline and behind the breaker like every
    /// update: for the small records other parts of the service keep in the same Redis.
    pub async fn script<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        key: &str,
        args: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<T, StateError> {
        self.breaker()?;
        let budget = self.budget(deadline);
        let run = async {
            let mut con = self.connection().await?;
            let mut call = script.key(key);
            for a in args {
                call.arg(*a);
            }
            Ok::<T, StateError>(call.invoke_async(&mut con).await?)
        };
        let result = tokio::time::timeout(budget, run)
            .await
            .unwrap_or(Err(StateError::Timeout(budget)));
        match &result {
            Ok(_) => self.set_down(false),
            Err(e) if e.is_connection_fault() && budget >= self.shared.timeout => {
                self.set_down(true)
            }
            Err(_) => {}
        }
        result
    }
}

impl<S: Kept> StateStore<S> for RedisStore {
    fn remove<'a>(&'a self, id: &'a str, deadline: Option<Instant>) -> StateFuture<'a, bool> {
        Box::pin(async move {
            let removed: i64 = self
                .script(&DELETE_SCRIPT, &self.kept_key::<S>(id), &[], deadline)
                .await?;
            Ok(removed > 0)
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        f: &'a mut Update<'_, S>,
        deadline: Option<Instant>,
    ) -> StateFuture<'a> {
        Box::pin(async move {
            self.breaker()?;
            let budget = self.budget(deadline);
            let conflicts = AtomicUsize::new(0);
            let result = tokio::time::timeout(budget, self.update_checked(id, f, &conflicts))
                .await
                .unwrap_or_else(|_| match conflicts.load(Ordering::Relaxed) {
                    // Timed out waiting on Redis itself (the lock was taken, nothing conflicted).
                    1 => Err(StateError::Timeout(budget)),
                    // Still waiting for this replica's other turns of the conversation.
                    0 => Err(StateError::Contended(0)),
                    n => Err(StateError::Contended(n - 1)),
                });
            match &result {
                Ok(()) => self.set_down(false),
                // A short caller deadline running out says nothing about Redis.
                Err(StateError::Timeout(t)) if *t < self.shared.timeout => {}
                Err(e) if e.is_connection_fault() => {
                    self.set_down(true);
                    // The next update connects afresh instead of waiting out the client's own
                    // reconnect backoff: a Redis that is back serves the very next probe. Never
                    // waits: if another update holds the slot, it is connecting already.
                    if let Ok(mut slot) = self.shared.connection.try_lock() {
                        slot.take();
                    }
                }
                Err(_) => {}
            }
            result
        })
    }
}
