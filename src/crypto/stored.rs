//! Opening a stored connection for use: the one place a connection's token is opened (by the
//! proxy on a cache miss, by `POST /v1/connections/{id}/verify`, by the background checks), so
//! that the use-time checks of its row cannot be skipped by one of them.

use secrecy::SecretString;

use super::{CryptoError, Keyring, Sealed, TokenBinding};
use crate::hex::{BadStoredWorkspace, HexClient, Workspace};
use crate::store::Connection;

/// Why a stored connection cannot be used; nothing is sent anywhere.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// The row was edited outside hexbroker (another tenant, workspace or origin, a subdomain
    /// that is not a label, a swapped ciphertext): 424 `connection_tampered`.
    #[error("the stored connection failed its integrity check; its row was edited outside hexbroker")]
    Tampered,
    /// A genuine row whose origin `HEXBROKER_HEX_HOSTS` no longer lists: 424
    /// `hex_host_not_allowed`.
    #[error("the stored connection's Hex origin is not in HEXBROKER_HEX_HOSTS")]
    HostNotListed,
    /// The token could not be opened for another reason (a key no longer in the keyring).
    #[error(transparent)]
    Crypto(CryptoError),
}

/// Opens a stored connection for a call to Hex: its token opened under the seal that binds its
/// row (§9), and its workspace checked again: a subdomain by §6's rule, an origin of its own
/// against `HEXBROKER_HEX_HOSTS`. A row edited outside hexbroker is [`StoredError::Tampered`];
/// a genuine row whose origin is no longer listed [`StoredError::HostNotListed`]; both are
/// logged here, where they are found.
pub fn open_stored(
    keyring: &Keyring,
    hex: &HexClient,
    connection: &Connection,
    sealed: &Sealed,
) -> Result<(Workspace, SecretString), StoredError> {
    let binding = TokenBinding {
        connection_id: connection.id,
        tenant: &connection.tenant,
        subdomain: &connection.subdomain,
        hex_url: connection.hex_url.as_deref(),
    };
    let token = match keyring.open_token(binding, sealed) {
        Ok(token) => token,
        Err(CryptoError::Tampered) => return Err(tampered(connection)),
        Err(other) => return Err(StoredError::Crypto(other)),
    };
    match hex.stored_workspace(&connection.subdomain, connection.hex_url.as_deref()) {
        Ok(workspace) => Ok((workspace, token)),
        Err(BadStoredWorkspace::Tampered) => Err(tampered(connection)),
        Err(BadStoredWorkspace::HostNotListed) => {
            tracing::error!(
                connection_id = %connection.id,
                "a stored connection's Hex origin is not in HEXBROKER_HEX_HOSTS; not used"
            );
            Err(StoredError::HostNotListed)
        }
    }
}

fn tampered(connection: &Connection) -> StoredError {
    tracing::error!(
        connection_id = %connection.id,
        "a stored connection failed its integrity check (its row was edited outside hexbroker); not used"
    );
    StoredError::Tampered
}
