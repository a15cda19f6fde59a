//! Everything that knows Hex: the origin template and the operator's own Hex origins
//! (`HEXBROKER_HEX_HOSTS`) with the subdomain rule ([`workspace`]), the token rules ([`token`]),
//! and `verify` (§6 steps 1–3 and 1b of the contract) with what Hex's answers mean ([`verify`],
//! [`identity`]). Nothing else builds Hex URLs. Refusals are this module's own errors;
//! `crate::error` says how each is answered.

mod identity;
mod token;
mod verify;
mod workspace;

use std::sync::Arc;
use std::time::Duration;

pub use token::{parse_token, token_hint, token_type, InvalidTokenFormat, TokenType, UnknownTokenType};
pub use verify::Rejection;
pub use workspace::{
    BadStoredSubdomain, BadStoredWorkspace, HexHost, InvalidSubdomain, Subdomain, Workspace,
};

/// hexbroker's own client for Hex (connect and verify); the proxy has its own.
#[derive(Debug, Clone)]
pub struct HexClient {
    template: Arc<str>,
    /// The operator's own Hex origins, canonical (as `Config::hex_hosts` holds them).
    hosts: Arc<[String]>,
    http: reqwest::Client,
}

impl HexClient {
    /// A client for the origin `template` (`{subdomain}` is substituted).
    pub fn new(template: &str, timeout: Duration) -> anyhow::Result<Self> {
        Self::with_hosts(template, &[], timeout)
    }

    /// A client for the origin `template` and the operator's own Hex origins `hosts` (canonical,
    /// as [`crate::Config`] checked them).
    pub fn with_hosts(template: &str, hosts: &[String], timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            // The environment's HTTP_PROXY and the like would see every Hex token in the clear.
            .no_proxy()
            .dns_resolver(Arc::new(verify::SystemResolver))
            .user_agent(concat!("hexbroker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { template: template.into(), hosts: hosts.into(), http })
    }

    /// Whether the operator named any Hex origins of their own.
    pub fn has_hosts(&self) -> bool {
        !self.hosts.is_empty()
    }
}
