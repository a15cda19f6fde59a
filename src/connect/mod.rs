//! The connect policy (§5, §6): what a connect attempt must pass besides Hex's own judgement.
//! Today that is the allowance of attempts Hex refuses ([`attempts`]), which `POST /v1/connect`
//! (`routes::connect`) asks instead of asking Hex directly. All state is in memory, per replica.

mod attempts;

use std::net::SocketAddr;

use secrecy::SecretString;

use crate::config::Config;
use crate::hex::{HexClient, Workspace};
use crate::store::HexIdentity;
pub use attempts::{AttemptError, Attempter, ConnectAttempts};

/// `HEXBROKER_CONNECT_ATTEMPT_LIMIT`'s allowances, unless it is off.
#[derive(Debug)]
pub struct Attempts(Option<ConnectAttempts>);

impl Attempts {
    /// The allowances `config` sets.
    pub fn new(config: &Config) -> Self {
        Self(config.connect_attempt_limit.map(|limit| ConnectAttempts::new(limit, config.hex_timeout)))
    }

    /// Asks Hex about a submitted token, within `who`'s and `from`'s allowance of refusals.
    pub async fn verify(
        &self,
        hex: &HexClient,
        who: &[Attempter],
        from: Option<SocketAddr>,
        workspace: &Workspace,
        token: &SecretString,
    ) -> Result<HexIdentity, AttemptError> {
        match &self.0 {
            Some(attempts) => attempts.verify(hex, who, from, workspace, token).await,
            None => Ok(hex.verify(workspace, token).await?),
        }
    }

    /// Takes a place for an operator console sign-in from `from` in that address's allowance
    /// (§12: sign-ins count against the same guessing limit); with the limit off, always allowed.
    pub fn sign_in_attempt(&self, from: Option<SocketAddr>) -> Result<(), AttemptError> {
        self.0.as_ref().map_or(Ok(()), |a| a.sign_in_attempt(from))
    }

    /// Gives back the place a good sign-in from `from` took.
    pub fn sign_in_good(&self, from: Option<SocketAddr>) {
        if let Some(attempts) = &self.0 {
            attempts.sign_in_good(from);
        }
    }
}
