//! The `handoff` commands, one module per group: the server and its probe, the offline model and
//! policy tools, the decision-log tools and the conversation benchmark. `main.rs` only parses and
//! dispatches.

pub mod conversations;
pub mod decision_log;
pub mod model;
pub mod policy;
pub mod serve;
