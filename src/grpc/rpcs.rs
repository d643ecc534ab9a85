//! Our RPCs in one table: the label each is counted under in metrics and the scope an API key needs
//! to call it. A new RPC added to the proto and not here fails `every_proto_method_is_in_the_table`,
//! instead of being labelled "unknown" and quietly demanding the admin scope.

use crate::security::Scope;

/// Which of our services an RPC belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Handoff,
    ModelAdmin,
}

/// `(service, method, scope)`.
pub const RPCS: &[(Service, &str, Scope)] = &[
    (Service::Handoff, "Classify", Scope::Classify),
    (Service::Handoff, "ClassifyBatch", Scope::Classify),
    (Service::Handoff, "Route", Scope::Route),
    (Service::Handoff, "Feedback", Scope::Feedback),
    (Service::Handoff, "ForgetCustomer", Scope::Customers),
    (Service::ModelAdmin, "ListModels", Scope::Admin),
    (Service::ModelAdmin, "GetStatus", Scope::Admin),
    (Service::ModelAdmin, "ActivateModel", Scope::Admin),
    (Service::ModelAdmin, "Rollback", Scope::Admin),
    (Service::ModelAdmin, "SetShadow", Scope::Admin),
];

/// One of our RPCs as a path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub service: Service,
    /// The method's name, or "unknown" for a method of our services that the proto lacks (tonic
    /// answers it UNIMPLEMENTED); labels stay a closed set.
    pub method: &'static str,
    /// Unknown methods need admin: nothing is opened by accident.
    pub scope: Scope,
}

/// `/handoff.v1.Handoff/Route` → Route; `None` for other services (health checks, reflection).
pub fn lookup(path: &str) -> Option<Found> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let service = match service {
        super::HANDOFF_SERVICE => Service::Handoff,
        super::ADMIN_SERVICE => Service::ModelAdmin,
        _ => return None,
    };
    let found = RPCS
        .iter()
        .find(|(s, m, _)| *s == service && *m == method)
        .map(|(_, m, scope)| (*m, *scope));
    let (method, scope) = found.unwrap_or(("unknown", Scope::Admin));
    Some(Found {
        service,
        method,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_proto_method_is_in_the_table() {
        let proto = include_str!("../../proto/handoff/v1/handoff.proto");
        let mut methods: Vec<&str> = proto
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .filter_map(|l| l.split('(').next())
            .collect();
        methods.sort_unstable();
        let mut table: Vec<&str> = RPCS.iter().map(|(_, m, _)| *m).collect();
        table.sort_unstable();
        assert_eq!(methods, table);
    }

    #[test]
    fn paths_find_their_rpc_and_scope() {
        let route = lookup("/handoff.v1.Handoff/Route").unwrap();
        assert_eq!((route.method, route.scope), ("Route", Scope::Route));
        let other = lookup("/handoff.v1.Handoff/AnythingElse").unwrap();
        assert_eq!((other.method, other.scope), ("unknown", Scope::Admin));
        assert_eq!(lookup("/grpc.health.v1.Health/Check"), None);
    }
}
