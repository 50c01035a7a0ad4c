//! Mailroom's server: the settings API, encrypted storage, administrator
//! sign-in, and the test email (Entra token + SMTP session).
//!
//! `main.rs` is thin; tests build the router with [`server::app`] and drive it
//! with `oneshot`, or start it on port 0 with [`server::Server`].

pub mod apps;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod error;
pub mod expiry;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod relay;
pub mod sendmail;
pub mod server;
pub mod settings;
pub mod state;
pub mod store;
/// The PostgreSQL store (also `store::postgres`).
pub use store::postgres as pg;
/// The queue and the apps (also `store::queue`).
pub use store::queue;
pub mod test_email;
pub mod upstream;
pub mod webhooks;
