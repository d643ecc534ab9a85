//! Conversation state in Redis, shared by a fleet of replicas. Each update is an optimistic
//! transaction (WATCH the key, read, decide, MULTI/SET/EXEC; retried when another replica wrote the
//! same conversation meanwhile), so concurrent turns never lose an update. Keys expire after the TTL.

use std::sync::Mutex;
use std::time::Duration;

use redis::{Commands, Connection};
use tracing::warn;

use super::state::{ConversationState, StateError, StateStore};
use crate::telemetry as t;

pub struct RedisStore {
    client: redis::Client,
    /// Idle connections; a call takes one (or opens one) and gives it back when it succeeded.
    pool: Mutex<Vec<Connection>>,
    ttl: Duration,
    timeout: Duration,
}

const KEY_PREFIX: &str = "handoff:conv:";
const MAX_IDLE: usize = 32;

fn unavailable(e: impl std::fmt::Display) -> StateError {
    StateError::Unavailable(e.to_string())
}

impl RedisStore {
    /// `url` is `redis://host:port[/db]`. Connections are opened on first use, so a server that
    /// starts while Redis is down still serves (degraded) and recovers when Redis returns.
    pub fn new(url: &str, ttl: Duration, timeout: Duration) -> Result<Self, StateError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        Ok(RedisStore {
            client,
            pool: Mutex::default(),
            ttl,
            timeout,
        })
    }

    fn connection(&self) -> Result<Connection, StateError> {
        if let Some(c) = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(c);
        }
        let con = self
            .client
            .get_connection_with_timeout(self.timeout)
            .map_err(unavailable)?;
        con.set_read_timeout(Some(self.timeout))
            .map_err(unavailable)?;
        con.set_write_timeout(Some(self.timeout))
            .map_err(unavailable)?;
        Ok(con)
    }

    fn give_back(&self, con: Connection) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < MAX_IDLE {
            pool.push(con);
        }
    }
}

impl StateStore for RedisStore {
    fn update(
        &self,
        id: &str,
        f: &mut dyn FnMut(&mut ConversationState),
    ) -> Result<(), StateError> {
        let key = format!("{KEY_PREFIX}{id}");
        let mut con = self.connection()?;
        let ttl = self.ttl.as_secs().max(1);
        let result: redis::RedisResult<()> = redis::transaction(&mut con, &[&key], |con, pipe| {
            let raw: Option<Vec<u8>> = con.get(&key)?;
            // Unreadable or out-of-range state (another writer, an older format) is repaired
            // rather than failing the conversation; the decision says so.
            let mut state = raw
                .as_deref()
                .map(ConversationState::from_stored)
                .unwrap_or_default();
            if let Some(repair) = state.repair {
                warn!(conversation_key = %key, repair = repair.as_str(), "stored conversation state repaired");
                metrics::counter!(t::STATE_REPAIRS, "repair" => repair.as_str()).increment(1);
            }
            f(&mut state);
            let bytes = serde_json::to_vec(&state).expect("state serialises");
            pipe.set_ex(&key, bytes, ttl).ignore().query(con)
        });
        match result {
            Ok(()) => {
                self.give_back(con);
                Ok(())
            }
            Err(e) => Err(unavailable(e)), // the connection may be broken: drop it
        }
    }
}
