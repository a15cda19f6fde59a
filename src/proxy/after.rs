//! After the answer: the call recorded in the request log (§11), and a Hex 401 followed up
//! (§7): one odd path may answer 401 for a good token, so hexbroker asks Hex about the token
//! itself, beside the response, and invalidates the connection only if Hex refuses that very
//! token. The caller gets Hex's own answer whatever the follow-up does.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Response;
use secrecy::SecretString;
use uuid::Uuid;

use super::{Exchange, Proxy, Refusal, Target};
use crate::audit::{Action, AuditContext};
use crate::lifecycle::{Change, Status};
use crate::requestlog::Call;
use crate::store::{Applied, Expect, StoreResult};

/// A Hex 401 re-checks a connection's token at most this often (per replica).
const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// How a forwarded call ended, with what the request log wants to know of it.
pub(super) struct Outcome {
    pub(super) result: Result<Response<Body>, Refusal>,
    pub(super) exchange: Exchange,
}

/// Records the call (when the log is on) and returns its answer. A refusal is recorded only when
/// the call named a connection of the caller's tenant: one that names none is nobody's call.
pub(super) async fn record(
    proxy: &Proxy,
    tenant: &str,
    id: Uuid,
    call: Option<Call>,
    outcome: Outcome,
) -> Result<Response<Body>, Refusal> {
    let Some(call) = call else { return outcome.result };
    match outcome.result {
        Ok(response) => Ok(call.answered(response, outcome.exchange)),
        Err(refusal) => {
            let known = found_first(&refusal)
                || (!matches!(refusal, Refusal::NotFound) && known(proxy, tenant, id).await);
            if known {
                call.refused(refusal.status(), refusal.code(), outcome.exchange);
            }
            Err(refusal)
        }
    }
}

/// Whether `refusal` came after the connection was found in the caller's tenant: every one but
/// the path's (checked first) and those of finding the connection itself.
fn found_first(refusal: &Refusal) -> bool {
    !matches!(refusal, Refusal::Path(_) | Refusal::NotFound | Refusal::Stored(_) | Refusal::Store(_))
}

/// Whether connection `id` is one of `tenant`'s (cached, else read).
pub(super) async fn known(proxy: &Proxy, tenant: &str, id: Uuid) -> bool {
    proxy.targets.get(tenant, id).is_some() || matches!(proxy.store.connection(tenant, id).await, Ok(Some(_)))
}

/// Follows up Hex's 401 to a call to `target`: the token is re-checked beside the response.
pub(super) fn unauthorized(proxy: &Proxy, tenant: &str, target: &Target) {
    tracing::info!(connection_id = %target.id, "Hex answered 401 to a proxied call; re-checking the token");
    after_unauthorized(
        proxy,
        Unauthorized {
            tenant: tenant.to_owned(),
            id: target.id,
            subdomain: target.subdomain.to_string(),
            hex_url: target.hex_url.as_deref().map(str::to_owned),
            nonce: target.token_nonce.to_vec(),
            token: target.token(),
        },
    );
}

/// A proxied call that Hex answered 401: what it was sent with.
#[derive(Debug)]
pub struct Unauthorized {
    /// The connection's tenant.
    pub tenant: String,
    /// The connection.
    pub id: Uuid,
    /// Its workspace.
    pub subdomain: String,
    /// Its own Hex origin, if it has one.
    pub hex_url: Option<String>,
    /// The nonce of the sealed token the call used (names that token).
    pub nonce: Vec<u8>,
    /// The token the call used.
    pub token: SecretString,
}

/// Re-checks the token of a call Hex answered 401, beside the response (spawned; the caller gets
/// Hex's answer whatever happens here), at most once a minute per connection.
fn after_unauthorized(proxy: &Proxy, call: Unauthorized) {
    if !proxy.usage.may_recheck(call.id, Instant::now(), RECHECK_EVERY) {
        return;
    }
    // Counted here, before the response goes back, so the decision is visible at once.
    proxy.metrics.watched("recheck", 1);
    let proxy = proxy.clone();
    tokio::spawn(async move {
        if let Err(e) = recheck_after_unauthorized(&proxy, call).await {
            tracing::warn!(error = %e, "could not record the re-check after a Hex 401");
        }
    });
}

/// Asks Hex about the token a 401'd call used; marks the connection `invalid` only when Hex
/// refuses it and the connection still holds that token and is still active. Returns whether
/// it did.
pub async fn recheck_after_unauthorized(proxy: &Proxy, call: Unauthorized) -> StoreResult<bool> {
    // Checked again as the proxy did: an origin taken off the list meanwhile is not called.
    let Ok(workspace) = proxy.hex.stored_workspace(&call.subdomain, call.hex_url.as_deref()) else {
        return Ok(false);
    };
    let rejection = match proxy.hex.verify(&workspace, &call.token).await {
        Ok(_) => {
            tracing::info!(connection_id = %call.id, "Hex answered 401 on one path but still accepts the token");
            return Ok(false);
        }
        Err(rejection) => rejection,
    };
    let Some(reason) = rejection.invalidation_reason() else {
        tracing::info!(connection_id = %call.id, ?rejection, "could not re-check the token after a Hex 401");
        return Ok(false);
    };
    let expect = Expect { token_nonce: Some(call.nonce.clone()), status: Some(Status::Active) };
    let audit = AuditContext::system(Action::StatusChange);
    match proxy.store.apply(&call.tenant, call.id, &Change::Refused(reason), &audit, &expect).await? {
        Applied::Done(_) => {
            tracing::warn!(connection_id = %call.id, reason, "Hex refuses the token: connection marked invalid");
            proxy.metrics.watched("invalidated", 1);
            Ok(true)
        }
        _ => {
            tracing::info!(connection_id = %call.id, "the token that failed was replaced (or the connection changed) meanwhile; left as is");
            Ok(false)
        }
    }
}
