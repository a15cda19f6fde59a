//! fake-hex over real HTTP on real sockets: each test spawns its own fake on port 0 and talks to
//! it with reqwest.

mod auth;
mod instruments;
mod projects;
mod runs;
mod support;
mod users;
