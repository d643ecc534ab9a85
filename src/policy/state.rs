//! State kept between calls, and the stores that keep it. A store keeps any `Kept` kind of state
//! under a key: a conversation's (`ConversationState`: recent embeddings, sentiment history, offers
//! made, escalation) or a customer's (`customer::CustomerState`). Stores update one key atomically
//! (read, decide, write under one lock), so concurrent calls on one key never lose an update.

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::vocab::Holder;
use super::{Action, Decision, Reason};

/// Customer turns remembered for repeated-question detection and the negativity trend.
pub const RECENT_TURNS: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentTurn {
    pub message_id: String,
    pub intent: String,
    pub embedding: CompactEmbedding,
    pub negativity: f32,
    /// Greetings, thanks and acknowledgements are never the question a later turn repeats.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub small_talk: bool,
    /// Hashes of the identifiers the turn carried (`phrases::identifiers`): a later turn with one
    /// not seen here adds information.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<u32>,
}

/// Answers kept per conversation for retries of the same `message_id`.
pub const ANSWERS_KEPT: usize = 3;

/// The answer a message got, kept so that a retry of the message gets it again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub message_id: String,
    pub decision_id: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub queue: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fallback: String,
    #[serde(default)]
    pub degraded: bool,
    pub reasons: Vec<Reason>,
}

impl Answer {
    pub fn of(message_id: &str, d: &Decision) -> Answer {
        Answer {
            message_id: message_id.to_string(),
            decision_id: d.decision_id.clone(),
            action: d.action.as_str().to_string(),
            queue: d.queue.clone(),
            priority: d.priority,
            fallback: d.fallback.clone(),
            degraded: d.degraded,
            reasons: d.reasons.clone(),
        }
    }

    /// The decision again, as a retry.
    pub fn decision(&self) -> Decision {
        Decision {
            decision_id: self.decision_id.clone(),
            action: Action::parse(&self.action).unwrap_or(Action::ContinueBot),
            queue: self.queue.clone(),
            priority: self.priority,
            reasons: self.reasons.clone(),
            degraded: self.degraded,
            fallback: self.fallback.clone(),
            reply_window_raised: false,
            retry: super::Retry::Answered,
            signals: Default::default(),
        }
    }
}

/// An L2-normalised embedding kept as int8 with one scale: 388 bytes instead of 1,536 for 384
/// dimensions, so 100,000 conversations × 5 turns hold ~0.2 GB of embeddings instead of ~0.8 GB.
/// Cosine similarity against it moves by less than 0.005 (see the tests), well inside the margin of
/// the `repeated_question` threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompactEmbedding {
    pub scale: f32,
    pub values: Vec<i8>,
}

impl CompactEmbedding {
    pub fn new(v: &[f32]) -> Self {
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let values = v
            .iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        CompactEmbedding { scale, values }
    }

    /// Dot product with a full-precision embedding (cosine similarity for unit vectors).
    pub fn dot(&self, other: &[f32]) -> f32 {
        let sum: f32 = self
            .values
            .iter()
            .zip(other)
            .map(|(q, y)| f32::from(*q) * y)
            .sum();
        sum * self.scale
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConversationState {
    pub turns: u32,
    /// Newest last, at most `RECENT_TURNS`.
    pub recent: VecDeque<RecentTurn>,
    /// Exponentially decayed average negativity over the conversation.
    pub negativity_avg: f32,
    pub consecutive_negative: u32,
    pub low_confidence_streak: u32,
    pub offers_made: u32,
    /// Offers the customer declined since the bot last took over.
    pub offers_declined: u32,
    /// Turns left in which offers are held back after a declined offer.
    pub offer_quiet: u32,
    /// Older states: escalated once (read, never written).
    #[serde(skip_serializing)]
    pub escalated: bool,
    /// Times escalated, kept across hand-backs.
    pub escalations: u32,
    pub holder: Holder,
    /// Where and how urgently the conversation waits while a person holds it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub held_queue: String,
    pub held_priority: i32,
    pub waiting_turns: u32,
    /// The last answers, newest last, at most `ANSWERS_KEPT`.
    pub answers: VecDeque<Answer>,
    /// Set by a store that could not use what it had stored as it was; never stored itself.
    #[serde(skip)]
    pub repair: Option<Repair>,
}

/// What a store did to stored state it could not use as it was (another writer, a bad migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Not a state at all: the conversation starts afresh.
    Unreadable,
    /// Counters or averages out of range: clamped to what a real conversation can reach.
    Clamped,
    /// Larger than any state we write: reset unread, the conversation starts afresh.
    Oversized,
    /// Not a value at all (a Redis list, say): reset, the conversation starts afresh.
    WrongType,
}

impl Repair {
    pub fn as_str(self) -> &'static str {
        match self {
            Repair::Unreadable => "unreadable",
            Repair::Clamped => "clamped",
            Repair::Oversized => "oversized",
            Repair::WrongType => "wrong_type",
        }
    }
}

/// More turns than any conversation has: a counter beyond it was not written by us.
const MAX_TURNS: u32 = 100_000;
/// Bounds of values a policy can set (the policy file checks its own settings against them).
pub const MAX_QUIET_TURNS: u32 = 100;
pub const MAX_PRIORITY: i32 = 1000;

/// A kind of state a store keeps: what it is called in keys, and how stored bytes are checked.
pub trait Kept: Default + Serialize + DeserializeOwned + Send + 'static {
    /// The middle of its Redis keys, `handoff:{KIND}:{id}`.
    const KIND: &'static str;
    /// Bring every value into the range the service produces; true if anything changed.
    fn clamp(&mut self) -> bool;
    /// What the store did to what it read, for the call to say so.
    fn repair(&self) -> Option<Repair>;
    fn set_repair(&mut self, repair: Repair);
    /// Holds nothing worth keeping: a store does not create a key for it (a late update after a
    /// deletion must not bring a record back).
    fn is_empty(&self) -> bool {
        false
    }

    /// State read back from a store's bytes, checked: unreadable bytes give a fresh state and
    /// out-of-range values are clamped, both marked with `set_repair`.
    fn from_stored(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Self>(bytes) {
            Ok(mut state) => {
                if state.clamp() {
                    state.set_repair(Repair::Clamped);
                }
                state
            }
            Err(_) => Self::repaired(Repair::Unreadable),
        }
    }

    /// A fresh state, marked with what happened to the stored one.
    fn repaired(repair: Repair) -> Self {
        let mut state = Self::default();
        state.set_repair(repair);
        state
    }
}

impl Kept for ConversationState {
    const KIND: &'static str = "conv";

    fn clamp(&mut self) -> bool {
        ConversationState::clamp(self)
    }

    fn repair(&self) -> Option<Repair> {
        self.repair
    }

    fn set_repair(&mut self, repair: Repair) {
        self.repair = Some(repair);
    }
}

impl ConversationState {
    /// Bring every value into the range the policy produces; true if anything changed.
    pub fn clamp(&mut self) -> bool {
        let before = self.clone();
        let unit = |x: f32| {
            if x.is_finite() {
                x.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        self.turns = self.turns.min(MAX_TURNS);
        if self.escalated && self.escalations == 0 {
            self.escalations = 1;
        }
        self.escalated = false;
        for counter in [
            &mut self.consecutive_negative,
            &mut self.low_confidence_streak,
            &mut self.offers_made,
            &mut self.offers_declined,
            &mut self.escalations,
            &mut self.waiting_turns,
        ] {
            *counter = (*counter).min(self.turns);
        }
        self.negativity_avg = unit(self.negativity_avg);
        self.offers_declined = self.offers_declined.min(self.offers_made);
        self.offer_quiet = self.offer_quiet.min(MAX_QUIET_TURNS);
        self.held_priority = self.held_priority.clamp(-MAX_PRIORITY, MAX_PRIORITY);
        while self.recent.len() > RECENT_TURNS {
            self.recent.pop_front();
        }
        while self.answers.len() > ANSWERS_KEPT {
            self.answers.pop_front();
        }
        for t in &mut self.recent {
            t.negativity = unit(t.negativity);
            if !t.embedding.scale.is_finite() || t.embedding.scale < 0.0 {
                t.embedding = CompactEmbedding::default();
            }
        }
        *self != before
    }

    /// Whether this message id was already counted (a re-sent message counts once).
    pub fn has_message(&self, message_id: &str) -> bool {
        !message_id.is_empty() && self.recent.iter().any(|t| t.message_id == message_id)
    }

    /// The answer this message id got, when it is among the last answers kept.
    pub fn answer(&self, message_id: &str) -> Option<&Answer> {
        if message_id.is_empty() {
            return None;
        }
        self.answers.iter().find(|a| a.message_id == message_id)
    }

    /// The caller handed the conversation back to the bot: the bot's part starts afresh (streaks,
    /// offers, repeats, the negativity average), while the turn count and the escalations stay.
    pub fn hand_back(&mut self) {
        *self = ConversationState {
            turns: self.turns,
            escalations: self.escalations,
            answers: std::mem::take(&mut self.answers),
            repair: self.repair,
            ..Default::default()
        };
    }
}

impl From<redis::RedisError> for StateError {
    fn from(e: redis::RedisError) -> Self {
        StateError::Redis(e)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Not a `#[source]`: the message carries Redis's own, and a decision's reason shows it.
    #[error("state store unavailable: {0}")]
    Redis(redis::RedisError),
    #[error("state store unavailable: no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The deadline ran out while other turns of the conversation were being written (this many
    /// of our writes lost to another replica; 0: still waiting for this replica's own turns).
    #[error("state store unavailable: other updates of the same key held it until the deadline ({0} writes lost to another replica)")]
    Contended(usize),
    #[error("state store unavailable: it failed {} ms ago; not asked again before {} ms", .since.as_millis(), .retry_in.as_millis())]
    Down { since: Duration, retry_in: Duration },
    /// A kind of state the server is not set up to keep (customer memory in a shared store
    /// without its key).
    #[error("{0}")]
    Off(&'static str),
    /// The `state` URL cannot be used.
    #[error("state URL: {0}")]
    Config(String),
}

impl StateError {
    /// The connection itself failed (not a conflict between writers).
    pub fn is_connection_fault(&self) -> bool {
        match self {
            StateError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    // A master demoted by a failover: the next connection asks for the new one.
                    || e.kind() == redis::ErrorKind::ReadOnly
            }
            StateError::Timeout(_) => true,
            StateError::Contended(_)
            | StateError::Down { .. }
            | StateError::Off(_)
            | StateError::Config(_) => false,
        }
    }
}

/// What a store runs on a key's state: the decision and its record, CPU only.
pub type Update<'a, S = ConversationState> = dyn FnMut(&mut S) + Send + 'a;

pub type StateFuture<'a, T = ()> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

pub trait StateStore<S: Kept = ConversationState>: Send + Sync {
    /// Run `f` on the state under `id` (a fresh one if unknown or expired) and store the result,
    /// atomically with respect to other updates of the same id. A store that waits on the
    /// network does so asynchronously, never blocking the calling thread, and gives up by `deadline`
    /// (the caller's, when it has one) or its own timeout, whichever comes first.
    fn update<'a>(
        &'a self,
        id: &'a str,
        f: &'a mut Update<'_, S>,
        deadline: Option<Instant>,
    ) -> StateFuture<'a>;

    /// Delete the state under `id`; true if there was any.
    fn remove<'a>(&'a self, id: &'a str, deadline: Option<Instant>) -> StateFuture<'a, bool>;
}

/// The default store: in-process, sharded, with a TTL and a bound on the number of conversations
/// (the least recently touched one is evicted when a shard is full). Each shard keeps its
/// conversations in touch order, so a new conversation at capacity costs O(1) under the lock, not
/// a scan of the shard; an expired conversation is the least recently touched, so it goes first.
pub struct MemoryStore<S = ConversationState> {
    shards: Vec<Mutex<LruCache<String, (S, Instant)>>>,
    ttl: Duration,
}

const SHARDS: usize = 16;

impl<S: Kept> MemoryStore<S> {
    /// At most `max_keys` states (conversations, customers), each forgotten `ttl` after its last update.
    pub fn new(ttl: Duration, max_keys: usize) -> Self {
        let capacity = std::num::NonZeroUsize::new(max_keys.div_ceil(SHARDS))
            .unwrap_or(std::num::NonZeroUsize::MIN);
        MemoryStore {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(capacity)))
                .collect(),
            ttl,
        }
    }

    fn shard(&self, id: &str) -> &Mutex<LruCache<String, (S, Instant)>> {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: Kept> StateStore<S> for MemoryStore<S> {
    fn update<'a>(
        &'a self,
        id: &'a str,
        f: &'a mut Update<'_, S>,
        _deadline: Option<Instant>,
    ) -> StateFuture<'a> {
        Box::pin(std::future::ready(self.update_now(id, f)))
    }

    fn remove<'a>(&'a self, id: &'a str, _deadline: Option<Instant>) -> StateFuture<'a, bool> {
        let mut shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
        Box::pin(std::future::ready(Ok(shard.pop(id).is_some())))
    }
}

impl<S: Kept> MemoryStore<S> {
    /// `StateStore::update` without a future: the in-process store never waits.
    pub fn update_now(&self, id: &str, f: &mut dyn FnMut(&mut S)) -> Result<(), StateError> {
        let mut shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(entry) = shard.get_mut(id) {
            if now.duration_since(entry.1) >= self.ttl {
                entry.0 = S::default();
            }
            f(&mut entry.0);
            entry.1 = now;
            return Ok(());
        }
        let mut state = S::default();
        f(&mut state);
        if state.is_empty() {
            return Ok(());
        }
        // At capacity this drops the least recently touched conversation.
        shard.push(id.to_string(), (state, now));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full shard drops the conversation touched longest ago, not one touched since.
    #[test]
    fn a_full_shard_evicts_the_least_recently_touched_conversation() {
        let store = MemoryStore::new(Duration::from_secs(60), 2 * SHARDS);
        let first = "c0".to_string();
        let same: Vec<String> = (1..10_000)
            .map(|i| format!("c{i}"))
            .filter(|id| std::ptr::eq(store.shard(id), store.shard(&first)))
            .take(2)
            .collect();
        let (a, b, c) = (&first, &same[0], &same[1]);
        let turn = |id: &str| {
            let mut turns = 0;
            store
                .update_now(id, &mut |s: &mut ConversationState| {
                    s.turns += 1;
                    turns = s.turns;
                })
                .unwrap();
            turns
        };
        assert_eq!((turn(a), turn(b), turn(a)), (1, 1, 2));
        turn(c); // the shard holds two: b, touched longest ago, goes
        assert_eq!(turn(a), 3, "a was touched since");
        assert_eq!(turn(b), 1, "b starts afresh");
    }

    /// The Redis store resets anything larger than `MAX_STATE_BYTES` unread: a state we write,
    /// at its largest (every list full, ids at the default limit, a 1024-wide embedding), stays
    /// well under it.
    #[test]
    fn the_largest_state_we_write_fits_the_store_cap() {
        let id = "x".repeat(128);
        let reason = Reason {
            rule_id: "r".repeat(64),
            signal: "s".repeat(32),
            value: -1.0 / 3.0,
            threshold: 2.0 / 3.0,
            detail: "d".repeat(200),
        };
        let state = ConversationState {
            turns: MAX_TURNS,
            recent: (0..RECENT_TURNS)
                .map(|_| RecentTurn {
                    message_id: id.clone(),
                    intent: "security_incident".into(),
                    embedding: CompactEmbedding::new(&[-0.999; 1024]),
                    negativity: 1.0 / 3.0,
                    small_talk: true,
                    info: (0..super::super::phrases::MAX_IDENTIFIERS as u32)
                        .map(|i| u32::MAX - i)
                        .collect(),
                })
                .collect(),
            held_queue: "q".repeat(64),
            answers: (0..ANSWERS_KEPT)
                .map(|_| Answer {
                    message_id: id.clone(),
                    decision_id: uuid::Uuid::new_v4().to_string(),
                    action: "offer_human".into(),
                    queue: "q".repeat(64),
                    priority: MAX_PRIORITY,
                    fallback: "f".repeat(64),
                    degraded: true,
                    reasons: vec![reason.clone(); 12],
                })
                .collect(),
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&state).unwrap().len();
        let cap = super::super::redis_store::MAX_STATE_BYTES;
        assert!(bytes * 4 < cap, "{bytes} bytes, cap {cap}");
    }

    #[test]
    fn stored_state_is_checked_before_use() {
        assert_eq!(
            ConversationState::from_stored(b"{not json").repair,
            Some(Repair::Unreadable)
        );
        assert_eq!(
            ConversationState::from_stored(br#"{"turns": -1}"#).repair,
            Some(Repair::Unreadable)
        );
        let s = ConversationState::from_stored(
            br#"{"turns": 3, "negativity_avg": 5.0, "offers_made": 7, "consecutive_negative": 4000000000}"#,
        );
        assert_eq!(s.repair, Some(Repair::Clamped));
        assert_eq!(
            (s.negativity_avg, s.offers_made, s.consecutive_negative),
            (1.0, 3, 3)
        );
        let good = ConversationState {
            turns: 2,
            negativity_avg: 0.4,
            offers_made: 1,
            ..Default::default()
        };
        let back = ConversationState::from_stored(&serde_json::to_vec(&good).unwrap());
        assert_eq!(back, good, "a state we wrote reads back unrepaired");
    }

    #[test]
    fn concurrent_updates_of_one_conversation_are_not_lost() {
        let store = std::sync::Arc::new(MemoryStore::<ConversationState>::new(
            Duration::from_secs(60),
            1000,
        ));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        store.update_now("c", &mut |s| s.turns += 1).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let mut turns = 0;
        store.update_now("c", &mut |s| turns = s.turns).unwrap();
        assert_eq!(turns, 4000);
    }

    #[test]
    fn compact_embeddings_keep_cosine_similarity_within_half_a_hundredth() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let unit = |rng: &mut rand::rngs::StdRng, base: &[f32], noise: f32| {
            let v: Vec<f32> = base
                .iter()
                .map(|b| b + noise * rng.gen_range(-1.0f32..1.0))
                .collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let mut worst = 0.0f32;
        for _ in 0..200 {
            let base: Vec<f32> = (0..384).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
            let a = unit(&mut rng, &base, 0.0);
            // Near neighbours (similarity ~0.9, where the threshold sits) and unrelated vectors.
            for noise in [0.3, 0.6, 5.0] {
                let b = unit(&mut rng, &base, noise);
                let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
                worst = worst.max((CompactEmbedding::new(&a).dot(&b) - exact).abs());
            }
        }
        assert!(worst < 0.005, "worst cosine error {worst}");
        assert_eq!(CompactEmbedding::new(&[0.0; 4]).dot(&[1.0; 4]), 0.0);
    }

    #[test]
    fn memory_is_bounded_and_state_expires() {
        let store = MemoryStore::<ConversationState>::new(Duration::from_millis(50), 32);
        for i in 0..1000 {
            store
                .update_now(&format!("c{i}"), &mut |s| s.turns = 1)
                .unwrap();
        }
        assert!(store.len() <= 32, "{} conversations kept", store.len());
        store.update_now("x", &mut |s| s.turns = 7).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let mut turns = 99;
        store.update_now("x", &mut |s| turns = s.turns).unwrap();
        assert_eq!(turns, 0, "expired state starts fresh");
    }
}
