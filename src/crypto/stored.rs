//! Opening a stored connection for use: the one place a connection's token is opened (by the
//! proxy on a cache miss, by `POST /v1/connections/{id}/verify`, by the background checks), so
//! that the use-time checks of its row cannot be skipped by one of them.

use axum::http::StatusCode;
use secrecy::SecretString;

use super::{CryptoError, Keyring, Sealed, TokenBinding};
use crate::error::{ApiError, Code};
use crate::hex::{BadStoredWorkspace, HexClient, Workspace};
use crate::store::Connection;

/// Opens a stored connection for a call to Hex: its token opened under the seal that binds its
/// row (§9), and its workspace checked again: a subdomain by §6's rule, an origin of its own
/// against `HEXBROKER_HEX_HOSTS`. A row edited outside hexbroker (another tenant, workspace or
/// origin, a subdomain that is not a label, a swapped ciphertext) answers 424
/// `connection_tampered`; a genuine row whose origin is no longer listed answers 424
/// `hex_host_not_allowed`. Either way nothing is sent anywhere.
pub fn open_stored(
    keyring: &Keyring,
    hex: &HexClient,
    connection: &Connection,
    sealed: &Sealed,
) -> Result<(Workspace, SecretString), ApiError> {
    let binding = TokenBinding {
        connection_id: connection.id,
        tenant: &connection.tenant,
        subdomain: &connection.subdomain,
        hex_url: connection.hex_url.as_deref(),
    };
    let token = match keyring.open_token(binding, sealed) {
        Ok(token) => token,
        Err(CryptoError::Tampered) => return Err(tampered(connection)),
        Err(other) => return Err(ApiError::internal(other)),
    };
    match hex.stored_workspace(&connection.subdomain, connection.hex_url.as_deref()) {
        Ok(workspace) => Ok((workspace, token)),
        Err(BadStoredWorkspace::Tampered) => Err(tampered(connection)),
        Err(BadStoredWorkspace::HostNotListed) => {
            tracing::error!(
                connection_id = %connection.id,
                "a stored connection's Hex origin is not in HEXBROKER_HEX_HOSTS; not used"
            );
            Err(ApiError::new(
                StatusCode::FAILED_DEPENDENCY,
                Code::HexHostNotAllowed,
                "This connection's Hex address is not one this deployment may call (HEXBROKER_HEX_HOSTS no longer lists it), so hexbroker will not use it; tell the operator (quote the x-request-id).",
            ))
        }
    }
}

fn tampered(connection: &Connection) -> ApiError {
    tracing::error!(
        connection_id = %connection.id,
        "a stored connection failed its integrity check (its row was edited outside hexbroker); not used"
    );
    ApiError::new(
        StatusCode::FAILED_DEPENDENCY,
        Code::ConnectionTampered,
        "This connection's stored record failed its integrity check, so hexbroker will not use it; reconnect it, and tell the operator (quote the x-request-id).",
    )
}
