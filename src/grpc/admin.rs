//! The `handoff.v1.ModelAdmin` service: thin handlers over the swap manager.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb::model_admin_server::ModelAdmin;
use super::pb::{
    self, ActivateModelRequest, GetStatusRequest, ListModelsRequest, ListModelsResponse,
    ModelStatus, RollbackRequest, SetShadowRequest,
};
use crate::swap::{self, ModelManager, SwapError};

pub struct AdminService {
    manager: Arc<ModelManager>,
}

impl AdminService {
    pub fn new(manager: Arc<ModelManager>) -> Self {
        AdminService { manager }
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

fn to_status(e: SwapError) -> Status {
    match e {
        SwapError::NotFound(..) => Status::not_found(e.to_string()),
        SwapError::Refused(..) | SwapError::NoPrevious => {
            Status::failed_precondition(e.to_string())
        }
        SwapError::Share(_) => Status::invalid_argument(e.to_string()),
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
        let req = request.into_inner();
        let status = self
            .manager
            .activate(&req.name, &req.version)
            .await
            .map_err(to_status)?;
        Ok(Response::new(to_proto(status)))
    }

    async fn rollback(&self, _: Request<RollbackRequest>) -> Result<Response<ModelStatus>, Status> {
        Ok(Response::new(to_proto(
            self.manager.rollback().await.map_err(to_status)?,
        )))
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
        let req = request.into_inner();
        let status = self
            .manager
            .set_shadow(&req.name, &req.version, req.share)
            .await
            .map_err(to_status)?;
        Ok(Response::new(to_proto(status)))
    }
}
