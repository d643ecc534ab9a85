//! Caller identity and scopes. A caller is an API key (only its SHA-256 is configured, never the
//! key) or a client certificate's subject CN under mutual TLS. Each has scopes (`classify`, `route`, `feedback`,
//! `customers` (forget a customer), `admin`) and optionally a rate limit. With no keys and no clients configured, every caller is
//! anonymous with every scope: fine on loopback, nowhere else.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::rate::TokenBucket;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Classify,
    Route,
    Feedback,
    /// Forget a customer's memory.
    Customers,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Classify => "classify",
            Scope::Route => "route",
            Scope::Feedback => "feedback",
            Scope::Customers => "customers",
            Scope::Admin => "admin",
        }
    }

    /// The scope a gRPC method needs (`grpc::rpcs`); `None` for the open ones (health checks,
    /// reflection). Anything else under our package needs admin.
    pub fn for_path(path: &str) -> Option<Scope> {
        use crate::grpc::HANDOFF_SERVICE;
        if let Some(found) = crate::grpc::rpcs::lookup(path) {
            return Some(found.scope);
        }
        let service = path.strip_prefix('/')?.split_once('/')?.0;
        let package = HANDOFF_SERVICE.rsplit_once('.').map_or("", |(p, _)| p);
        service
            .starts_with(&format!("{package}."))
            .then_some(Scope::Admin)
    }
}

/// `[auth]` in the server config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub api_keys: Vec<ApiKeyConfig>,
    /// Mutual-TLS callers, by their certificate's subject CN.
    pub clients: Vec<ClientConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The caller's name, in the audit log and metrics.
    pub name: String,
    /// Hex SHA-256 of the key (`handoff hash-key`).
    pub sha256: String,
    pub scopes: Vec<Scope>,
    /// The tenant the key belongs to (`[[tenants]]`); none: an operator key, for any tenant.
    pub tenant: Option<String>,
    #[serde(flatten)]
    pub rate: RateConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Subject CN of the client certificate; also the caller's name.
    pub subject: String,
    pub scopes: Vec<Scope>,
    /// The tenant the client belongs to; none: an operator, for any tenant.
    pub tenant: Option<String>,
    #[serde(flatten)]
    pub rate: RateConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RateConfig {
    /// Requests per second this caller may make on average (none: unlimited).
    pub rate_per_s: Option<f64>,
    /// Requests it may make at once above the average (default: one second's worth).
    pub burst: Option<f64>,
}

/// Who is calling, once authenticated.
#[derive(Debug)]
pub struct Caller {
    pub name: String,
    /// "api_key", "client_cert" or "anonymous".
    pub via: &'static str,
    /// The tenant the caller belongs to; none: an operator, who names the tenant per call.
    pub tenant: Option<String>,
    scopes: Vec<Scope>,
    limit: Option<TokenBucket>,
}

impl Caller {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Take one request from the caller's rate limit; `Err(rate)` when over it.
    pub fn admit(&self) -> Result<(), f64> {
        match &self.limit {
            Some(bucket) => bucket.try_take(),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("missing credentials: send `authorization: Bearer <API key>` or a client certificate")]
    Missing,
    #[error("unknown API key")]
    UnknownKey,
    #[error("client certificate subject {0:?} is not a known caller")]
    UnknownClient(String),
    #[error("client certificate could not be read: {0}")]
    BadCertificate(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("client certificate has no subject CN")]
    NoCommonName,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("[auth] {0}: burst must be at least 1")]
    Burst(String),
    #[error("[auth] {caller}: rate_per_s = {rate} must be a positive number")]
    Rate { caller: String, rate: f64 },
    #[error("[auth] {0}: sha256 must be 64 hex digits (handoff hash-key prints it)")]
    Hash(String),
    #[error("[auth] {0}: no scopes")]
    NoScopes(String),
    #[error("[auth] caller {0:?} twice")]
    Duplicate(String),
}

pub struct Authenticator {
    keys: HashMap<[u8; 32], Arc<Caller>>,
    clients: HashMap<String, Arc<Caller>>,
    anonymous: Option<Arc<Caller>>,
}

pub(crate) fn bucket(
    name: &str,
    rate: &RateConfig,
) -> Result<Option<TokenBucket>, AuthConfigError> {
    match rate.rate_per_s {
        None => Ok(None),
        Some(r) if r > 0.0 && r.is_finite() => {
            let burst = rate.burst.unwrap_or(r.max(1.0));
            if !(burst >= 1.0 && burst.is_finite()) {
                return Err(AuthConfigError::Burst(name.to_string()));
            }
            Ok(Some(TokenBucket::new(r, burst)))
        }
        Some(rate) => Err(AuthConfigError::Rate {
            caller: name.to_string(),
            rate,
        }),
    }
}

fn parse_sha256(name: &str, hex: &str) -> Result<[u8; 32], AuthConfigError> {
    let bad = || AuthConfigError::Hash(name.to_string());
    // Byte by byte: slicing the string would panic inside a multi-byte character.
    let digit = |b: u8| char::from(b).to_digit(16).ok_or_else(bad);
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(out)
}

/// Hex SHA-256 of an API key, as configured.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        let mut names = std::collections::HashSet::new();
        // Keys and client certificates are callers alike: one name space, the same checks.
        let mut caller = |name: &str, via, scopes: &[Scope], tenant: &Option<String>, rate| {
            if scopes.is_empty() {
                return Err(AuthConfigError::NoScopes(name.to_string()));
            }
            if !names.insert(name.to_string()) {
                return Err(AuthConfigError::Duplicate(name.to_string()));
            }
            Ok(Arc::new(Caller {
                name: name.to_string(),
                via,
                tenant: tenant.clone(),
                scopes: scopes.to_vec(),
                limit: bucket(name, rate)?,
            }))
        };
        let mut keys = HashMap::new();
        for k in &config.api_keys {
            let c = caller(&k.name, "api_key", &k.scopes, &k.tenant, &k.rate)?;
            keys.insert(parse_sha256(&k.name, &k.sha256)?, c);
        }
        let mut clients = HashMap::new();
        for c in &config.clients {
            let client = caller(&c.subject, "client_cert", &c.scopes, &c.tenant, &c.rate)?;
            clients.insert(c.subject.clone(), client);
        }
        let anonymous = (keys.is_empty() && clients.is_empty()).then(|| {
            Arc::new(Caller {
                name: "anonymous".into(),
                via: "anonymous",
                tenant: None,
                scopes: vec![
                    Scope::Classify,
                    Scope::Route,
                    Scope::Feedback,
                    Scope::Customers,
                    Scope::Admin,
                ],
                limit: None,
            })
        });
        Ok(Authenticator {
            keys,
            clients,
            anonymous,
        })
    }

    pub fn is_open(&self) -> bool {
        self.anonymous.is_some()
    }

    /// Every configured caller's name and tenant.
    pub fn callers(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.keys
            .values()
            .chain(self.clients.values())
            .map(|c| (c.name.as_str(), c.tenant.as_deref()))
    }

    /// Who is calling: an API key in `authorization: Bearer …` (or `x-api-key`) first, else the
    /// verified client certificate.
    pub fn identify(
        &self,
        headers: &http::HeaderMap,
        peer_cert: Option<&CertificateDer<'_>>,
    ) -> Result<Arc<Caller>, AuthError> {
        if let Some(anonymous) = &self.anonymous {
            return Ok(anonymous.clone());
        }
        let key = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
        if let Some(key) = key {
            let digest: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
            return self.keys.get(&digest).cloned().ok_or(AuthError::UnknownKey);
        }
        if let Some(cert) = peer_cert {
            let subject = common_name(cert)?;
            return self
                .clients
                .get(&subject)
                .cloned()
                .ok_or(AuthError::UnknownClient(subject));
        }
        Err(AuthError::Missing)
    }
}

/// The token of `authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// The subject CN of a certificate rustls already verified against the client CA.
fn common_name(cert: &CertificateDer<'_>) -> Result<String, AuthError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(AuthError::BadCertificate)?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(AuthError::NoCommonName)?;
    Ok(cn.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        toml::from_str(&format!(
            "[[api_keys]]\nname = \"bot\"\nsha256 = \"{}\"\nscopes = [\"route\"]\nrate_per_s = 2\nburst = 2\n",
            hash_key("s3cret")
        ))
        .unwrap()
    }

    #[test]
    fn keys_are_matched_by_hash_and_scoped() {
        let auth = Authenticator::new(&config()).unwrap();
        let mut headers = http::HeaderMap::new();
        assert_eq!(
            auth.identify(&headers, None).unwrap_err(),
            AuthError::Missing
        );
        headers.insert("authorization", "Bearer wrong".parse().unwrap());
        assert_eq!(
            auth.identify(&headers, None).unwrap_err(),
            AuthError::UnknownKey
        );
        headers.insert("authorization", "Bearer s3cret".parse().unwrap());
        let caller = auth.identify(&headers, None).unwrap();
        assert_eq!(caller.name, "bot");
        assert!(caller.may(Scope::Route) && !caller.may(Scope::Admin));
        assert!(caller.admit().is_ok() && caller.admit().is_ok());
        assert!(caller.admit().is_err(), "burst of 2 spent");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let auth = Authenticator::new(&config()).unwrap();
        for value in ["bearer s3cret", "BEARER s3cret", "Bearer s3cret"] {
            let mut headers = http::HeaderMap::new();
            headers.insert("authorization", value.parse().unwrap());
            assert_eq!(
                auth.identify(&headers, None).unwrap().name,
                "bot",
                "{value}"
            );
        }
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Basic s3cret".parse().unwrap());
        assert_eq!(
            auth.identify(&headers, None).unwrap_err(),
            AuthError::Missing
        );
    }

    #[test]
    fn bad_config_is_refused_and_no_config_is_open() {
        let mut c = config();
        c.api_keys[0].sha256 = "abc".into();
        assert!(Authenticator::new(&c).is_err());
        // 64 bytes, not one of them ASCII: refused, not a panic on a char boundary.
        c.api_keys[0].sha256 = "é".repeat(32);
        let err = Authenticator::new(&c).err().expect("refused").to_string();
        assert!(err.contains("64 hex digits"), "{err}");
        c.api_keys[0].sha256 = "g".repeat(64);
        assert!(Authenticator::new(&c).is_err());
        assert!(Authenticator::new(&AuthConfig::default())
            .unwrap()
            .is_open());
        assert_eq!(
            Scope::for_path("/handoff.v1.ModelAdmin/Rollback"),
            Some(Scope::Admin)
        );
        assert_eq!(Scope::for_path("/grpc.health.v1.Health/Check"), None);
    }
}
