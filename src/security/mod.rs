//! Who may call and how much: TLS and mutual TLS (`tls`), caller identity and scopes (`auth`),
//! per-caller rate limits (`rate`), and the tower layer that applies them before any work (`guard`).

pub mod auth;
pub mod guard;
pub mod rate;
pub mod tls;

pub use auth::{Authenticator, Caller, Scope};
pub use guard::GuardLayer;
