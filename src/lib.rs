//! hexbroker: an HTTP credential broker for the Hex data platform.
//!
//! A caller submits a Hex workspace subdomain and API token; hexbroker checks them against Hex
//! ([`hex`]), seals the token ([`crypto`]) into the database ([`store`]), and from then on proxies
//! Hex API calls for callers that name the connection by id ([`proxy`]), who never see the token.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod background;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connect;
mod console;
pub mod crypto;
pub mod edge;
pub mod error;
pub mod events;
pub mod hex;
pub mod input;
pub mod keyfile;
pub mod lifecycle;
pub mod mcp;
pub mod metrics;
pub mod proxy;
pub mod reencrypt;
pub mod requestlog;
pub mod routes;
pub mod scopes;
pub mod signals;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod verify;

pub use app::serve;
pub use config::Config;
pub use routes::router;
pub use state::AppState;
