//! The integration tests, as one test binary (`cargo test --test it`): one module per area, each
//! test named `module::…` (`proxy::on_sqlite::a_get_reaches_hex…`), so the crate is linked once
//! rather than once per file. `tests/allocations.rs` stays its own binary: its counting global
//! allocator must not apply to the whole suite.

#[macro_use]
mod common;

mod at_rest;
mod auth;
mod browser;
mod caller_input;
mod cli;
mod connect;
mod connections;
mod console;
mod console_browser;
mod deploy;
mod drop_in;
mod edge;
mod events;
mod events_bench;
mod hex_hosts;
mod hostile;
mod mcp;
mod metrics;
mod openapi;
mod proxy;
mod reencrypt;
mod request_log;
mod revocation;
mod sessions;
mod store;
mod streaming;
mod tampering;
mod watch;
mod watch_bench;
mod webhook_endpoints;
mod workspaces;
