//! The fleet's record of feedback in Redis (`handoff:fb:{decision id}` → `{digest}:pending` while
//! one call writes it, `{digest}:written` once it is on a file), so the same feedback is taken once
//! and a contradicting one refused whichever replica each reaches.

use std::time::{Duration, Instant};

use super::journal::{Claim, FeedbackClaims};
use crate::policy::state::StateFuture;
use crate::policy::RedisStore;

/// How long a claim stays pending without being settled (a replica that died mid-write): then the
/// feedback can be sent again.
const PENDING: Duration = Duration::from_secs(60);
/// One Redis call's deadline for a claim (the store's own `state_timeout_ms` still caps it).
const CALL: Duration = Duration::from_secs(2);

/// KEYS[1] the decision's key; ARGV: digest, pending seconds. Returns new, duplicate, conflict, busy.
const CLAIM: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1] .. ':pending', 'EX', ARGV[2])
  return 'new'
end
local digest, state = string.match(v, '^(.-):(%a+)$')
if digest ~= ARGV[1] then return 'conflict' end
if state == 'written' then return 'duplicate' end
return 'busy'
"#;

/// KEYS[1]; ARGV: digest, 1 written / 0 not, seconds to remember it. Only this digest's pending claim.
const SETTLE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] .. ':pending' then return 0 end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[1], ARGV[1] .. ':written', 'EX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
"#;

static CLAIM_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(CLAIM));
static SETTLE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(SETTLE));

/// Feedback remembered in `store`'s Redis for a window from when it was written (a little longer
/// than the decision's own window: harmless, since older decisions are refused first).
pub struct RedisClaims {
    store: RedisStore,
    /// Written feedback is remembered this long (the feedback window).
    window: Duration,
}

impl RedisClaims {
    pub fn new(store: RedisStore, window: Duration) -> Self {
        RedisClaims { store, window }
    }
}

impl FeedbackClaims for RedisClaims {
    fn claim<'a>(&'a self, id: &'a uuid::Uuid, digest: u64) -> StateFuture<'a, Claim> {
        Box::pin(async move {
            let (digest, pending) = (digest.to_string(), PENDING.as_secs().to_string());
            let args: [&[u8]; 2] = [digest.as_bytes(), pending.as_bytes()];
            let answer: String = self
                .store
                .script(
                    &CLAIM_SCRIPT,
                    &self.store.key(&format!("fb:{}", id.hyphenated())),
                    &args,
                    Some(Instant::now() + CALL),
                )
                .await?;
            Ok(match answer.as_str() {
                "new" => Claim::New,
                "duplicate" => Claim::Duplicate,
                "conflict" => Claim::Conflict,
                _ => Claim::Busy,
            })
        })
    }

    fn settle<'a>(&'a self, id: &'a uuid::Uuid, digest: u64, written: bool) -> StateFuture<'a> {
        Box::pin(async move {
            let digest = digest.to_string();
            let keep = self.window.as_secs().max(1).to_string();
            let args: [&[u8]; 3] = [
                digest.as_bytes(),
                if written { b"1" } else { b"0" },
                keep.as_bytes(),
            ];
            let _: i64 = self
                .store
                .script(
                    &SETTLE_SCRIPT,
                    &self.store.key(&format!("fb:{}", id.hyphenated())),
                    &args,
                    Some(Instant::now() + CALL),
                )
                .await?;
            Ok(())
        })
    }
}
