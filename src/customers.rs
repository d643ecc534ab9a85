//! Customer memory for Route, Feedback and ForgetCustomer: the customer id is turned into a keyed
//! hash (HMAC-SHA256 with the server's `[customers] key`) before anything is stored, logged or
//! audited, and every store call runs within the caller's deadline. What is kept and how the policy
//! reads it is `policy::customer`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::policy::customer::{topic, Contacted, CustomerState, History};
use crate::policy::{StateError, StateStore, Turn};
use crate::tenants::Tenant;

/// `[customers]` in the server config.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustomersConfig {
    /// The secret customer ids are keyed-hashed with (any length; 32 random bytes in hex is
    /// plenty). Every replica sharing a Redis needs the same one. Unset: a random key per process,
    /// so memory lasts only as long as the process (and the server warns when state is in Redis).
    pub key: Option<String>,
    /// A customer's memory is forgotten this long after their last contact.
    pub retention_s: u64,
    /// A contact on another channel this recent is a channel switch (`channel_switch`).
    pub channel_switch_s: u64,
    /// Customers kept in memory at most with `state = "memory"` (the least recently seen go first).
    pub max_customers: usize,
}

impl Default for CustomersConfig {
    fn default() -> Self {
        CustomersConfig {
            key: None,
            retention_s: 30 * 24 * 3600,
            channel_switch_s: 4 * 3600,
            max_customers: 100_000,
        }
    }
}

type Keyed = Hmac<Sha256>;

/// Customer ids and conversation ids as they are kept: keyed hashes, never the ids.
#[derive(Clone)]
pub struct Pseudonyms {
    key: Vec<u8>,
}

impl Pseudonyms {
    pub fn new(key: &[u8]) -> Self {
        Pseudonyms { key: key.to_vec() }
    }

    /// A key nobody else has: memory kept with it lasts as long as this process.
    pub fn random() -> Self {
        Pseudonyms::new(&rand::random::<[u8; 32]>())
    }

    fn mac(&self, domain: &str, id: &str) -> [u8; 32] {
        let mut mac = Keyed::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        // The domain keeps a customer id from ever hashing like a conversation id.
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(id.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The customer's key in the store and the audit log: 128 bits of the HMAC, in hex.
    pub fn customer(&self, customer_id: &str) -> String {
        self.mac("customer", customer_id)[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A conversation among the customer's contacts.
    pub fn conversation(&self, conversation_id: &str) -> u64 {
        let mac = self.mac("conversation", conversation_id);
        u64::from_le_bytes(mac[..8].try_into().expect("8 bytes"))
    }
}

pub struct CustomerMemory {
    store: Arc<dyn StateStore<CustomerState>>,
    /// None: memory is off (a shared store without `[customers] key`).
    names: Option<Pseudonyms>,
    retention: Duration,
    switch_window: Duration,
}

/// A decision as customer memory keeps it: the low half of its id (random bits and tag).
fn decision_key(id: &uuid::Uuid) -> u64 {
    id.as_u64_pair().1
}

/// Seconds since the Unix epoch, as contacts keep them.
fn unix_now() -> i64 {
    (crate::decision_log::now_ms() / 1000) as i64
}

impl CustomerMemory {
    /// `names` none: memory off, every call says so (customer memory in a store other replicas
    /// share needs the fleet's key: with a key per process it could be neither read back after a
    /// restart nor deleted).
    pub fn new(
        store: Arc<dyn StateStore<CustomerState>>,
        names: Option<Pseudonyms>,
        config: &CustomersConfig,
    ) -> Self {
        CustomerMemory {
            store,
            names,
            retention: Duration::from_secs(config.retention_s),
            switch_window: Duration::from_secs(config.channel_switch_s),
        }
    }

    /// The customer's key in the store and the audit log: the keyed hash of the id within its
    /// tenant (the same id under two tenants is two customers), prefixed with a named tenant.
    pub fn pseudonym(&self, tenant: &Tenant, customer_id: &str) -> Result<String, StateError> {
        let hash = self.names()?.customer(&tenant.scoped(customer_id));
        Ok(tenant.scoped(&hash).into_owned())
    }

    fn names(&self) -> Result<&Pseudonyms, StateError> {
        self.names.as_ref().ok_or(StateError::Off(
            "customer memory is off: state is shared in Redis and [customers] key is not set (the same on every replica)",
        ))
    }

    /// Memory is on (false: calls fail with `StateError::Off`).
    pub fn is_on(&self) -> bool {
        self.names.is_some()
    }

    /// The customer's history as this turn sees it, recording the turn (its conversation, channel
    /// and topic) in their memory. Retention runs from the wall clock: a replayed clock in `turn`
    /// (tests of opening hours) does not age memory.
    #[allow(clippy::too_many_arguments)]
    pub async fn recall(
        &self,
        tenant: &Tenant,
        customer_id: &str,
        conversation_id: &str,
        decision_id: &uuid::Uuid,
        turn: &Turn<'_>,
        deadline: Option<Instant>,
    ) -> Result<History, StateError> {
        let contacted = Contacted {
            conversation: self.names()?.conversation(conversation_id),
            decision: decision_key(decision_id),
            channel: turn.channel.as_str(),
            topic: topic(turn.intent, turn.intent_score),
            now: unix_now(),
        };
        let (retention, switch) = (
            self.retention.as_secs() as i64,
            self.switch_window.as_secs() as i64,
        );
        let mut history = History::default();
        let key = self.pseudonym(tenant, customer_id)?;
        self.store
            .update(
                &key,
                &mut |state: &mut CustomerState| {
                    history = state.observe(contacted, retention, switch);
                },
                deadline,
            )
            .await?;
        Ok(history)
    }

    /// The conversation was escalated: one more escalation in the customer's history.
    pub async fn escalated(
        &self,
        tenant: &Tenant,
        customer_id: &str,
        conversation_id: &str,
        deadline: Option<Instant>,
    ) -> Result<(), StateError> {
        let conversation = self.names()?.conversation(conversation_id);
        let key = self.pseudonym(tenant, customer_id)?;
        self.store
            .update(&key, &mut |s| s.escalated(conversation), deadline)
            .await
    }

    /// Feedback on `decision_id`, taken into the memory only when that decision was made for this
    /// customer (true): a caller cannot mark another customer unhappy, and feedback arriving after
    /// ForgetCustomer brings nothing back.
    #[allow(clippy::too_many_arguments)]
    pub async fn feedback(
        &self,
        tenant: &Tenant,
        customer_id: &str,
        decision_id: &uuid::Uuid,
        csat: u32,
        resolved_by: &str,
        deadline: Option<Instant>,
    ) -> Result<bool, StateError> {
        let key = self.pseudonym(tenant, customer_id)?;
        let (now, decision) = (unix_now(), decision_key(decision_id));
        let mut taken = false;
        self.store
            .update(
                &key,
                &mut |s| taken = s.feedback(decision, csat, resolved_by, now),
                deadline,
            )
            .await?;
        Ok(taken)
    }

    /// Delete the customer's memory; true if there was any.
    pub async fn forget(
        &self,
        tenant: &Tenant,
        customer_id: &str,
        deadline: Option<Instant>,
    ) -> Result<bool, StateError> {
        let key = self.pseudonym(tenant, customer_id)?;
        self.store.remove(&key, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_depend_on_the_key_and_never_show_the_id() {
        let a = Pseudonyms::new(b"fleet key one");
        let b = Pseudonyms::new(b"fleet key two");
        let id = "+86 138 0000 1234";
        assert_eq!(a.customer(id), a.customer(id), "stable under one key");
        assert_ne!(
            a.customer(id),
            b.customer(id),
            "another key, another pseudonym"
        );
        assert_ne!(a.customer(id), a.customer("+86 138 0000 1235"));
        assert_eq!(a.customer(id).len(), 32);
        assert!(!a.customer(id).contains("1234"));
        assert_ne!(
            a.conversation(id),
            u64::from_le_bytes(a.mac("customer", id)[..8].try_into().unwrap()),
            "a conversation id never hashes like the same customer id"
        );
    }
}
