//! handoff: decides when a customer-service bot must hand a conversation to a human agent.
//!
//! Layers, each knowing nothing of the ones above it: `model` (packages, tract runtime), `batcher`
//! (dynamic batching on worker threads), `policy` (decisions), `grpc` (transport), `security`
//! (TLS, callers, limits), `audit` (the decision and admin trail), `server` (wiring).

pub mod audit;
pub mod batcher;
pub mod cache;
pub mod config;
pub mod conversations;
mod cpu_slots;
pub mod customers;
pub mod decision_log;
pub mod fleet;
pub mod grpc;
pub mod model;
pub mod policy;
pub mod route;
pub mod security;
pub mod server;
pub mod shadow;
pub mod swap;
pub mod telemetry;
pub mod tenants;
