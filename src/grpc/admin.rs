//! The `handoff.v1.ModelAdmin` service: thin handlers over the swap manager.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb::model_admin_server::ModelAdmin;
use super::pb::{
    self, ActivateModelRequest, GetStatusRequest, ListModelsRequest, ListModelsResponse,
    ModelStatus, RollbackRequest, SetShadowRequest,
};
use crate::audit::AuditLog;
use crate::fleet::{Fleet, FleetError, Report};
use crate::swap::{self, ModelManager};

pub struct AdminService {
    manager: Arc<ModelManager>,
    audit: AuditLog,
    /// Replicas sharing a Redis: model operations move all of them.
    fleet: Option<Arc<Fleet>>,
}

impl AdminService {
    pub fn new(manager: Arc<ModelManager>, audit: AuditLog, fleet: Option<Arc<Fleet>>) -> Self {
        AdminService {
            manager,
            audit,
            fleet,
        }
    }

    /// Run a model operation here and make it the fleet's; the answer shows the fleet. In a fleet
    /// the replica first catches up with the fleet's last operation, so this one builds on it;
    /// `operation` is given the fleet's previous model (none without a fleet).
    async fn for_fleet<F, Fut>(&self, operation: F) -> Result<ModelStatus, Status>
    where
        F: FnOnce(Option<(String, String)>) -> Fut,
        Fut: std::future::Future<Output = Result<swap::Status, swap::SwapError>>,
    {
        let Some(fleet) = &self.fleet else {
            let status = operation(None).await?;
            return Ok(self.with_fleet(status).await);
        };
        let op = fleet.begin().await.map_err(|e| {
            Status::unavailable(format!(
                "the fleet's model state is unreadable, nothing changed: {e}; retry"
            ))
        })?;
        let status = operation(op.previous.clone()).await?;
        fleet.publish(op, &status).await.map_err(|e| match e {
            FleetError::Raced => Status::aborted(format!("{e}: retry")),
            e => Status::unavailable(format!(
                "done on this replica, but not recorded for the fleet: {e}; the other replicas keep their models: retry"
            )),
        })?;
        Ok(self.with_fleet(status).await)
    }

    async fn with_fleet(&self, status: swap::Status) -> ModelStatus {
        let mut proto = to_proto(status);
        if let Some(fleet) = &self.fleet {
            let now = crate::decision_log::now_ms();
            proto.fleet = fleet
                .replicas()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|r: Report| pb::ReplicaStatus {
                    replica: r.replica,
                    active: model_ref(r.active),
                    shadow: model_ref(r.shadow),
                    shadow_share: r.shadow_share,
                    generation: r.generation,
                    error: r.error.unwrap_or_default(),
                    reported_ms_ago: now.saturating_sub(r.at_ms),
                })
                .collect();
        }
        proto
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
        fleet: Vec::new(),
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
        let fields = serde_json::json!({ "name": req.name, "version": req.version });
        let result = self
            .for_fleet(|_| self.manager.activate(&req.name, &req.version))
            .await;
        self.audited(caller, "ActivateModel", fields, result)
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<ModelStatus>, Status> {
        let caller = super::caller_name(&request);
        // In a fleet, back to the fleet's previous model, whichever replica is asked (a replica
        // that joined later has no previous of its own), as read when the replica caught up.
        let result = self
            .for_fleet(|previous| async move {
                match previous {
                    Some((name, version)) => self.manager.activate(&name, &version).await,
                    None => self.manager.rollback().await,
                }
            })
            .await;
        self.audited(caller, "Rollback", serde_json::json!({}), result)
    }

    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<ModelStatus>, Status> {
        Ok(Response::new(
            self.with_fleet(self.manager.status().await).await,
        ))
    }

    async fn set_shadow(
        &self,
        request: Request<SetShadowRequest>,
    ) -> Result<Response<ModelStatus>, Status> {
        let caller = super::caller_name(&request);
        let req = request.into_inner();
        let result = self
            .for_fleet(|_| self.manager.set_shadow(&req.name, &req.version, req.share))
            .await;
        let fields =
            serde_json::json!({ "name": req.name, "version": req.version, "share": req.share });
        self.audited(caller, "SetShadow", fields, result)
    }
}
