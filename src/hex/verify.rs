//! `verify` (§6 steps 2–3): asking Hex whether a token works in a workspace, and what its
//! answers mean ([`Rejection`]).

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use super::identity::identity_from_me;
use super::{HexClient, Workspace};
use crate::store::HexIdentity;

/// Why Hex did not accept a token, as the contract maps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Hex answered 401.
    #[error("Hex rejected the token")]
    TokenRejected,
    /// Hex answered 403 to both checks.
    #[error("the token lacks the scope to read projects")]
    InsufficientScope,
    /// No such workspace (404, or its host does not resolve).
    #[error("no Hex workspace answers there")]
    WorkspaceNotFound,
    /// Hex answered 429.
    #[error("Hex is rate-limiting the token")]
    RateLimited {
        /// Seconds Hex asked us to wait, if it said.
        retry_after: Option<u64>,
    },
    /// Timeout, refused connection, 5xx or an answer we cannot read.
    #[error("Hex could not be reached or answered with an error")]
    Unavailable,
}

impl Rejection {
    /// For answers that say the stored token no longer works, why (for `status_reason`);
    /// `None` for passing trouble (rate limits, Hex unavailable) that says nothing about it.
    pub fn invalidation_reason(&self) -> Option<&'static str> {
        match self {
            Rejection::TokenRejected => Some("Hex rejected the token (expired, revoked or regenerated)."),
            Rejection::InsufficientScope => Some("The token no longer has the scope to read projects."),
            Rejection::WorkspaceNotFound => Some("The Hex workspace no longer answers at this subdomain."),
            Rejection::RateLimited { .. } | Rejection::Unavailable => None,
        }
    }
}

impl HexClient {
    /// Asks Hex whether `token` works in `workspace`: `users/me`, falling back to listing one
    /// project when Hex forbids or does not know `users/me` for this token, answers it with a
    /// 5xx, or answers 200 with a body that does not read as the spec's (§6 step 3).
    #[tracing::instrument(skip_all, fields(subdomain = workspace.subdomain()))]
    pub async fn verify(
        &self,
        workspace: &Workspace,
        token: &SecretString,
    ) -> Result<HexIdentity, Rejection> {
        let origin = self.origin(workspace);
        let me = self.get(&format!("{origin}/api/v1/users/me"), token).await?;
        match me.status() {
            StatusCode::OK => {
                match read_capped(me, MAX_ME_BODY).await.as_deref().and_then(identity_from_me) {
                    Some(identity) => return Ok(identity),
                    None => tracing::warn!(
                        "Hex's users/me answer does not read as the spec's; checking projects instead"
                    ),
                }
            }
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {}
            status if status.is_server_error() => {
                tracing::warn!(status = status.as_u16(), "Hex's users/me failed; checking projects instead");
            }
            other => return Err(common_rejection(other, &me)),
        }
        let projects = self.get(&format!("{origin}/api/v1/projects?limit=1"), token).await?;
        match projects.status() {
            StatusCode::OK => Ok(HexIdentity::default()),
            StatusCode::FORBIDDEN => Err(Rejection::InsufficientScope),
            StatusCode::NOT_FOUND => Err(Rejection::WorkspaceNotFound),
            other => Err(common_rejection(other, &projects)),
        }
    }

    async fn get(&self, url: &str, token: &SecretString) -> Result<reqwest::Response, Rejection> {
        self.http.get(url).bearer_auth(token.expose_secret()).send().await.map_err(|e| {
            if find_source::<DnsFailure>(&e).is_some() {
                tracing::info!("workspace host did not resolve");
                Rejection::WorkspaceNotFound
            } else {
                // reqwest's errors name the URL, which holds no secret.
                tracing::warn!(error = %e, timeout = e.is_timeout(), "Hex could not be reached");
                Rejection::Unavailable
            }
        })
    }
}

/// The longest `Retry-After` hexbroker passes on from Hex to a connect's caller.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

fn common_rejection(status: StatusCode, response: &reqwest::Response) -> Rejection {
    match status {
        StatusCode::UNAUTHORIZED => Rejection::TokenRejected,
        // Either form, whatever the value: a wait past an hour is read as an hour.
        StatusCode::TOO_MANY_REQUESTS => Rejection::RateLimited {
            retry_after: crate::proxy::retry_after(response.headers(), std::time::SystemTime::now())
                .map(|wait| wait.min(MAX_RETRY_AFTER).as_secs_f64().ceil() as u64),
        },
        other => {
            tracing::warn!(status = other.as_u16(), "Hex answered unexpectedly");
            Rejection::Unavailable
        }
    }
}

/// The most of a `users/me` body hexbroker reads; a bigger one is treated as unreadable.
const MAX_ME_BODY: usize = 64 * 1024;

/// The body of `response`, or `None` when it cannot be read or is larger than `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return None;
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// A name that did not resolve: the workspace does not exist.
#[derive(Debug, thiserror::Error)]
#[error("the host does not resolve")]
struct DnsFailure;

/// The system resolver, marking its failures so that `verify` can tell "no such workspace"
/// from "Hex is down".
pub(super) struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            match tokio::net::lookup_host((name.as_str(), 0)).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if addrs.is_empty() {
                        return Err(Box::new(DnsFailure) as Box<dyn StdError + Send + Sync>);
                    }
                    Ok(Box::new(addrs.into_iter()) as Addrs)
                }
                Err(_) => Err(Box::new(DnsFailure) as Box<dyn StdError + Send + Sync>),
            }
        })
    }
}

fn find_source<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}
