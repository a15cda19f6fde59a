//! fake-hex over real HTTP on real sockets: each test spawns its own fake on port 0 and talks to
//! it with reqwest.

mod at_root;
mod auth;
mod collaboration;
mod content;
mod errors;
mod instruments;
mod openapi;
mod projects;
mod rate_limits;
mod runs;
mod scopes;
mod spec_walk;
mod support;
mod users;
