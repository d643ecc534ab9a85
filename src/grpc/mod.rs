//! gRPC transport: thin handlers that validate, call the batcher and the policy, and map results and
//! errors to the proto. No inference or policy logic lives here.

mod admin;
pub mod codec;
mod convert;
mod deadline;
mod observe;
pub mod rpcs;
mod service;
pub(crate) mod status;
mod validate;

pub mod pb {
    tonic::include_proto!("handoff.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("handoff_descriptor");
}

pub use admin::AdminService;

/// Our services' full names, from the generated servers so they cannot drift from the proto.
pub const HANDOFF_SERVICE: &str =
    <pb::handoff_server::HandoffServer<HandoffService> as tonic::server::NamedService>::NAME;
pub const ADMIN_SERVICE: &str =
    <pb::model_admin_server::ModelAdminServer<AdminService> as tonic::server::NamedService>::NAME;
pub use crate::route::record::zero_counters as zero_decision_counters;
pub use observe::ObserveLayer;
pub use service::HandoffService;

/// The caller the guard layer admitted ("anonymous" without auth configured).
fn caller_name<T>(request: &tonic::Request<T>) -> String {
    request
        .extensions()
        .get::<std::sync::Arc<crate::security::Caller>>()
        .map_or_else(|| "anonymous".to_string(), |c| c.name.clone())
}
