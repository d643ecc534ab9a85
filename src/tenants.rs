//! Businesses served by one server: each tenant has its own policy file (rules, queues, hours,
//! keywords), reloaded and refused on its own, an optional rate limit, and its own partition of
//! conversation state, customer memory and decision-log records. A server with no `[[tenants]]`
//! has one implicit tenant, `default`, and behaves exactly as before tenants existed (state keys
//! and log records unchanged).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::policy::{self, SharedPolicy};
use crate::security::auth::{bucket, AuthConfigError, RateConfig};
use crate::security::rate::TokenBucket;

/// The implicit tenant's name, in metrics and for `--tenant`.
pub const IMPLICIT: &str = "default";

/// The request header an operator key (one of no tenant) names the tenant it acts for with.
pub const HEADER: &str = "x-handoff-tenant";

/// One `[[tenants]]` entry of the server config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// a-z, 0-9, `_` and `-`, at most 32 bytes: it appears in metric labels and state keys.
    pub name: String,
    /// The tenant's policy; without one, the server's (`policy_file`, else the built-in policy).
    pub policy_file: Option<PathBuf>,
    /// Requests per second the tenant's callers may make together (none: unlimited).
    #[serde(flatten)]
    pub rate: RateConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("[[tenants]] name {0:?}: use 1 to 32 of a-z, 0-9, _ and -")]
    Name(String),
    #[error("[[tenants]] {0:?} twice")]
    Duplicate(String),
    #[error("[[tenants]] {0:?} is reserved for the implicit tenant of a server without tenants")]
    Reserved(String),
    #[error("[auth] caller {caller:?} names tenant {tenant:?}, which is not configured (tenants: {known})")]
    UnknownTenant {
        caller: String,
        tenant: String,
        known: String,
    },
    #[error(transparent)]
    Rate(#[from] AuthConfigError),
}

pub struct Tenant {
    pub name: String,
    /// The implicit tenant of a server without `[[tenants]]`.
    pub implicit: bool,
    pub policy: Arc<SharedPolicy>,
    /// Its own file, reloaded on its own (none: it shares the server's policy).
    pub policy_file: Option<PathBuf>,
    limit: Option<TokenBucket>,
}

impl Tenant {
    /// A caller's id (a conversation, a customer) as this tenant's state keeps it: the same id
    /// under two tenants is two keys. The implicit tenant keeps ids as they are.
    pub fn scoped<'a>(&self, id: &'a str) -> Cow<'a, str> {
        if self.implicit {
            Cow::Borrowed(id)
        } else {
            // Tenant names hold no ':', so the first one ends the name.
            Cow::Owned(format!("{}:{id}", self.name))
        }
    }

    /// Take one request from the tenant's rate limit; `Err(rate)` when over it.
    pub fn admit(&self) -> Result<(), f64> {
        self.limit.as_ref().map_or(Ok(()), TokenBucket::try_take)
    }

    /// How decision-log records name the tenant: not at all for the implicit one.
    pub fn logged_name(&self) -> Option<&str> {
        (!self.implicit).then_some(self.name.as_str())
    }
}

pub struct Tenants {
    list: Vec<Arc<Tenant>>,
    by_name: HashMap<String, usize>,
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Tenants {
    /// The configured tenants, each with its policy loaded (a file that does not load leaves that
    /// tenant refusing calls with the reason until a reload succeeds); none configured: the
    /// implicit tenant on `server_policy`.
    pub fn build(
        configs: &[TenantConfig],
        server_policy: &Arc<SharedPolicy>,
    ) -> Result<Tenants, TenantError> {
        let mut list = Vec::new();
        let mut by_name = HashMap::new();
        if configs.is_empty() {
            list.push(Arc::new(Tenant {
                name: IMPLICIT.into(),
                implicit: true,
                policy: server_policy.clone(),
                policy_file: None,
                limit: None,
            }));
            by_name.insert(IMPLICIT.to_string(), 0);
        }
        for c in configs {
            if !valid_name(&c.name) {
                return Err(TenantError::Name(c.name.clone()));
            }
            if c.name == IMPLICIT {
                return Err(TenantError::Reserved(c.name.clone()));
            }
            if by_name.insert(c.name.clone(), list.len()).is_some() {
                return Err(TenantError::Duplicate(c.name.clone()));
            }
            let policy = match &c.policy_file {
                None => server_policy.clone(),
                Some(path) => match policy::file::load(path, None) {
                    Ok(p) => SharedPolicy::new(p),
                    Err(e) => {
                        tracing::error!(tenant = %c.name, "policy file refused, the tenant's calls are refused until it loads: {e}");
                        SharedPolicy::unloaded(e.to_string())
                    }
                },
            };
            list.push(Arc::new(Tenant {
                name: c.name.clone(),
                implicit: false,
                policy,
                policy_file: c.policy_file.clone(),
                limit: bucket(&format!("tenant {}", c.name), &c.rate)?,
            }));
        }
        Ok(Tenants { list, by_name })
    }

    pub fn find(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.by_name.get(name).map(|&i| &self.list[i])
    }

    /// The implicit tenant, on a server without `[[tenants]]`.
    pub fn implicit(&self) -> Option<&Arc<Tenant>> {
        self.list.first().filter(|t| t.implicit)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.list.iter()
    }

    pub fn names(&self) -> String {
        let names: Vec<&str> = self.list.iter().map(|t| t.name.as_str()).collect();
        names.join(", ")
    }

    /// Every caller's tenant must be configured.
    pub fn check_callers<'a>(
        &self,
        callers: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<(), TenantError> {
        for (caller, tenant) in callers {
            if let Some(tenant) = tenant {
                if self.find(tenant).is_none_or(|t| t.implicit) {
                    return Err(TenantError::UnknownTenant {
                        caller: caller.to_string(),
                        tenant: tenant.to_string(),
                        known: self.names(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> TenantConfig {
        TenantConfig {
            name: name.into(),
            policy_file: None,
            rate: RateConfig::default(),
        }
    }

    #[test]
    fn names_are_checked_and_ids_are_scoped_per_tenant() {
        let shared = SharedPolicy::new(policy::Policy::builtin());
        let none = Tenants::build(&[], &shared).unwrap();
        let implicit = none.implicit().unwrap();
        assert_eq!(implicit.scoped("c1"), "c1", "no tenants: keys as before");
        let two = Tenants::build(&[config("shop"), config("bank")], &shared).unwrap();
        assert!(two.implicit().is_none());
        assert_eq!(two.find("shop").unwrap().scoped("c1"), "shop:c1");
        assert_ne!(
            two.find("shop").unwrap().scoped("c1"),
            two.find("bank").unwrap().scoped("c1")
        );
        for bad in ["", "Shop", "a:b", "x y", &"a".repeat(33)] {
            assert!(matches!(
                Tenants::build(&[config(bad)], &shared),
                Err(TenantError::Name(_))
            ));
        }
        assert!(matches!(
            Tenants::build(&[config("a"), config("a")], &shared),
            Err(TenantError::Duplicate(_))
        ));
        assert!(matches!(
            Tenants::build(&[config("default")], &shared),
            Err(TenantError::Reserved(_))
        ));
        assert!(two.check_callers([("k", Some("shop"))]).is_ok());
        assert!(two.check_callers([("k", Some("toys"))]).is_err());
        assert!(none.check_callers([("k", Some("default"))]).is_err());
    }
}
