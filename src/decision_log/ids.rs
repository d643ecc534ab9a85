//! Decision ids any replica can check without shared memory: a UUID (version 8) carrying the time
//! it was made and a tag, an HMAC over that time, random bits and the tenant, keyed with the fleet's
//! feedback key. Feedback for a decision is then taken on any replica, after restarts, for
//! `feedback_window_s`, and only from the tenant that got it; nothing has to be remembered until
//! feedback comes. Keys rotate with an overlap: the first signs, every one listed verifies.
//!
//! Layout (16 bytes): 0–5 Unix milliseconds, big-endian; 6 version 8 and 4 random bits; 7 random;
//! 8 variant (10) and 6 random bits; 9–10 random; 11–15 the first 5 bytes of
//! HMAC-SHA256(key, bytes 0–10 ‖ 0 ‖ tenant).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What an id says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Made by this fleet for this tenant, at this Unix millisecond.
    Signed { at_ms: u64 },
    /// A version-4 id from before signed ids: only the replica that made it knows it.
    Legacy,
    /// Neither: not ours, or another tenant's.
    Forged,
}

#[derive(Clone)]
pub struct DecisionIds {
    keys: Vec<Vec<u8>>,
}

const TAG: usize = 5;

impl DecisionIds {
    /// `keys[0]` signs; every key verifies. Empty: a random key of this process alone.
    pub fn new(keys: &[String]) -> Self {
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        if keys.is_empty() {
            return DecisionIds::random();
        }
        DecisionIds { keys }
    }

    pub fn random() -> Self {
        DecisionIds {
            keys: vec![rand::random::<[u8; 32]>().to_vec()],
        }
    }

    /// The MAC over an id's first 11 bytes and its tenant, before it is finished.
    fn mac(key: &[u8], head: &[u8], tenant: Option<&str>) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(head);
        mac.update(&[0]);
        mac.update(tenant.unwrap_or_default().as_bytes());
        mac
    }

    /// A new decision id for `tenant` (none: a server without tenants), made now.
    pub fn mint(&self, tenant: Option<&str>) -> uuid::Uuid {
        self.mint_at(crate::decision_log::now_ms(), tenant)
    }

    fn mint_at(&self, at_ms: u64, tenant: Option<&str>) -> uuid::Uuid {
        let mut b: [u8; 16] = rand::random();
        b[..6].copy_from_slice(&at_ms.to_be_bytes()[2..]);
        b[6] = 0x80 | (b[6] & 0x0f);
        b[8] = 0x80 | (b[8] & 0x3f);
        let tag = Self::mac(&self.keys[0], &b[..11], tenant)
            .finalize()
            .into_bytes();
        b[11..].copy_from_slice(&tag[..TAG]);
        uuid::Uuid::from_bytes(b)
    }

    /// Whether `id` is this fleet's, for `tenant`, and when it was made.
    pub fn check(&self, id: &uuid::Uuid, tenant: Option<&str>) -> Checked {
        match id.get_version_num() {
            4 => return Checked::Legacy,
            8 => {}
            _ => return Checked::Forged,
        }
        let b = id.as_bytes();
        // Compared in constant time by the MAC library: a tag is not guessed byte by byte.
        let ours = self.keys.iter().any(|key| {
            Self::mac(key, &b[..11], tenant)
                .verify_truncated_left(&b[11..])
                .is_ok()
        });
        if !ours {
            return Checked::Forged;
        }
        let mut ms = [0u8; 8];
        ms[2..].copy_from_slice(&b[..6]);
        Checked::Signed {
            at_ms: u64::from_be_bytes(ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_verify_under_any_listed_key_for_their_tenant_only() {
        let old = DecisionIds::new(&["old fleet key".into()]);
        let rotated = DecisionIds::new(&["new fleet key".into(), "old fleet key".into()]);
        let id = old.mint_at(1_800_000_000_123, Some("shop"));
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(
            rotated.check(&id, Some("shop")),
            Checked::Signed {
                at_ms: 1_800_000_000_123
            },
            "the previous key still verifies during the overlap"
        );
        assert_eq!(rotated.check(&id, Some("bank")), Checked::Forged);
        assert_eq!(rotated.check(&id, None), Checked::Forged);
        let new = rotated.mint(None);
        assert!(matches!(rotated.check(&new, None), Checked::Signed { .. }));
        assert_eq!(
            old.check(&new, None),
            Checked::Forged,
            "signed with the new key"
        );
        assert_eq!(old.check(&uuid::Uuid::new_v4(), None), Checked::Legacy);
        let mut tampered = *id.as_bytes();
        tampered[3] ^= 1; // another time, same tag
        assert_eq!(
            old.check(&uuid::Uuid::from_bytes(tampered), Some("shop")),
            Checked::Forged
        );
    }

    #[test]
    fn ids_are_unique_and_their_low_half_is_uniform_for_sampling() {
        let ids = DecisionIds::random();
        let minted: std::collections::HashSet<_> = (0..10_000).map(|_| ids.mint(None)).collect();
        assert_eq!(minted.len(), 10_000);
        // The sampler reads the low 64 bits after the variant: about half have the top bit set.
        let high = minted
            .iter()
            .filter(|id| (id.as_u64_pair().1 << 2) >> 63 == 1)
            .count();
        assert!((4_500..5_500).contains(&high), "{high}");
    }
}
