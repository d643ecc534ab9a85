//! The `handoff.v1.ModelAdmin` service: thin handlers over the swap manager.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb::model_admin_server::ModelAdmin;
use super::pb::{
    self, ActivateModelRequest, GetStatusRequest, ListModelsRequest, ListModelsResponse,
    ModelStatus, RollbackRequest, SetShadowRequest,
};
use crate::audit::AuditLog;
use crate::swap::{self, ModelManager};

pub struct AdminService {
    manager: Arc<ModelManager>,
    audit: AuditLog,
}

impl AdminService {
    pub fn new(manager: Arc<ModelManager>, audit: AuditLog) -> Self {
        AdminService { manager, audit }
    }

    /// Every change an admin makes goes to the audit log, refused or not.
    fn audited(
        &self,
        caller: String,
        rpc: &str,
        fields: serde_json::Value,
        result: Result<ModelStatus, Status>,
    ) -> Result<Response<ModelStatus>, Status> {
        let outcome = match &result {
            Ok(_) => "OK".to_string(),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        };
        self.audit.record(
            "admin",
            serde_json::json!({ "caller": caller, "rpc": rpc, "request": fields, "result": outcome }),
            serde_json::json!({}),
        );
        result.map(Response::new)
    }
}

fn model_ref(pair: Option<(String, String)>) -> Option<pb::ModelRef> {
    pair.map(|(name, version)| pb::ModelRef { name, version })
}

fn to_proto(s: swap::Status) -> ModelStatus {
    ModelStatus {
        active: model_ref(s.active),
        previous: model_ref(s.previous),
        shadow: model_ref(s.shadow),
        shadow_share: s.shadow_share,
    }
}

#[tonic::async_trait]
impl ModelAdmin for AdminService {
    async fn list_models(
        &self,
        _: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let status = self.manager.status().await;
        let is = |p: &crate::model::repository::PackageRef, pair: &Option<(String, String)>| {
            pair.as_ref()
                .is_some_and(|(n, v)| *n == p.name && *v == p.version)
        };
        let packages = self
            .manager
            .repository()
            .list()
            .into_iter()
            .map(|p| pb::PackageInfo {
                active: is(&p, &status.active),
                shadow: is(&p, &status.shadow),
                name: p.name,
                version: p.version,
            })
            .collect();
        Ok(Response::new(ListModelsResponse { packages }))
    }

    async fn activate_model(
        &self,
        request: Request<ActivateModelRequest>,
    ) -> Result<Response<ModelStatus>, Status> {
        let caller = super::caller_name(&request);
        let req = request.into_inner();
        let result = self.manager.activate(&req.name, &req.version).await;
        let fields = serde_json::json!({ "name": req.name, "version": req.version });
        let result = result.map(to_proto).map_err(Status::from);
        self.audited(caller, "ActivateModel", fields, result)
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<ModelStatus>, Status> {
        let caller = super::caller_name(&request);
        let result = self
            .manager
            .rollback()
            .await
            .map(to_proto)
            .map_err(Status::from);
        self.audited(caller, "Rollback", serde_json::json!({}), result)
    }

    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<ModelStatus>, Status> {
        Ok(Response::new(to_proto(self.manager.status().await)))
    }

    async fn set_shadow(
        &self,
        request: Request<SetShadowRequest>,
    ) -> Result<Response<ModelStatus>, Status> {
        let caller = super::caller_name(&request);
        let req = request.into_inner();
        let result = self
            .manager
            .set_shadow(&req.name, &req.version, req.share)
            .await
            .map(to_proto)
            .map_err(Status::from);
        let fields =
            serde_json::json!({ "name": req.name, "version": req.version, "share": req.share });
        self.audited(caller, "SetShadow", fields, result)
    }
}
