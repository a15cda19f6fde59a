//! The network edge: what stands between a client's socket and the handlers. The listener with
//! its time limits and connection cap ([`server`]), the cap on requests in flight and the rate
//! per API key ([`overload`]), and the allowance of connect attempts that Hex refuses
//! ([`attempts`]). All state is in memory, per replica.

pub mod attempts;
pub(crate) mod gcra;
pub mod overload;
pub mod server;
pub mod workers;

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use uuid::Uuid;

use crate::config::Config;
use crate::error::ApiError;
use crate::hex::{HexClient, Workspace};
use crate::store::HexIdentity;
pub use attempts::{Attempter, ConnectAttempts};
pub use overload::{shed, InFlight, KeyRate};
pub use server::{serve_with, ClientAddr};
pub use workers::serve_on_workers;

/// The edge's limits and their state, in `AppState`.
#[derive(Debug)]
pub struct Guards {
    /// `HEXBROKER_MAX_IN_FLIGHT`.
    pub in_flight: InFlight,
    /// `HEXBROKER_KEY_RATE_LIMIT`, when set.
    pub key_rate: Option<KeyRate>,
    /// `HEXBROKER_CONNECT_ATTEMPT_LIMIT`, unless off.
    pub attempts: Option<ConnectAttempts>,
}

impl Guards {
    /// The limits `config` sets.
    pub fn new(config: &Config) -> Self {
        Self {
            in_flight: InFlight::new(config.max_in_flight),
            key_rate: config.key_rate_limit.map(KeyRate::new),
            attempts: config
                .connect_attempt_limit
                .map(|limit| ConnectAttempts::new(limit, config.hex_timeout)),
        }
    }

    /// Asks Hex about a submitted token, within `who`'s and `from`'s allowance of refusals.
    pub async fn verify_connect(
        &self,
        hex: &HexClient,
        who: &[Attempter],
        from: Option<SocketAddr>,
        workspace: &Workspace,
        token: &SecretString,
    ) -> Result<HexIdentity, ApiError> {
        match &self.attempts {
            Some(attempts) => attempts.verify(hex, who, from, workspace, token).await,
            None => Ok(hex.verify(workspace, token).await?),
        }
    }

    /// Takes a place for a console sign-in attempt from `from` (see
    /// [`ConnectAttempts::sign_in_attempt`]); with the limit off, always allowed.
    pub fn sign_in_attempt(&self, from: Option<SocketAddr>) -> Result<(), ApiError> {
        self.attempts.as_ref().map_or(Ok(()), |a| a.sign_in_attempt(from))
    }

    /// Gives back a good sign-in's place.
    pub fn sign_in_good(&self, from: Option<SocketAddr>) {
        if let Some(attempts) = &self.attempts {
            attempts.sign_in_good(from);
        }
    }

    /// Counts one request of API key `key` against its rate, if there is one.
    pub fn check_key_rate(&self, key: Uuid) -> Result<(), ApiError> {
        self.key_rate.as_ref().map_or(Ok(()), |rate| rate.check(key))
    }
}

/// Whole seconds for `Retry-After`, at least one.
fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1)
}
