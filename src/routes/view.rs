//! What the handlers share of a connection's shape: [`ConnectionView`], a connection as callers
//! see it (from `/v1/connections…` and `POST /v1/connect` alike). Not a route.

use serde::Serialize;
use uuid::Uuid;

use crate::error::Result;
use crate::hex::{Subdomain, Workspace};
use crate::state::AppState;
use crate::store::{Connection, RequestCounts};

/// A connection as callers see it: the stored fields, its current status, its Hex origin, and
/// its recent calls (from the request log's hourly counts).
#[derive(Debug, Serialize)]
pub struct ConnectionView {
    #[serde(flatten)]
    connection: Connection,
    /// The connection's own origin when it has one (as stored, if it reads as an origin), else
    /// the template's; `None` (null) when the stored subdomain fails §6's rule: no URL is built
    /// from it.
    hex_url: Option<String>,
    #[serde(flatten)]
    counts: RequestCounts,
}

impl ConnectionView {
    /// The view of `connection`, with `expired` derived from its token's expiry, and no calls
    /// counted (see [`ConnectionView::load`]).
    pub fn new(state: &AppState, mut connection: Connection) -> Self {
        // Taken out of the connection, which would otherwise name `hex_url` a second time.
        let hex_url = match connection.hex_url.take() {
            Some(own) => {
                url::Url::parse(&own).ok().filter(|u| u.origin().ascii_serialization() == own).map(|_| own)
            }
            None => Subdomain::from_stored(&connection.subdomain)
                .ok()
                .map(|s| state.hex.origin(&Workspace::Template(s))),
        };
        Self {
            connection: connection.with_current_status(state.clock.now()),
            hex_url,
            counts: RequestCounts::default(),
        }
    }

    /// The view of `connection` with its counts of recent calls.
    pub async fn load(state: &AppState, connection: Connection) -> Result<Self> {
        let counts = Self::counts(state, std::slice::from_ref(&connection)).await?;
        Ok(Self::counted(state, connection, &counts))
    }

    /// The counts of recent calls of `connections`, read in one query.
    pub async fn counts(state: &AppState, connections: &[Connection]) -> Result<Vec<(Uuid, RequestCounts)>> {
        let ids: Vec<Uuid> = connections.iter().map(|c| c.id).collect();
        let since = crate::requestlog::counts_since(state.clock.now());
        Ok(state.store.request_counts(&ids, since).await?)
    }

    /// The view of `connection` with its counts from `counts` (none there: no calls).
    pub fn counted(state: &AppState, connection: Connection, counts: &[(Uuid, RequestCounts)]) -> Self {
        let found = counts.iter().find(|(id, _)| *id == connection.id).map(|(_, c)| *c);
        let mut view = Self::new(state, connection);
        view.counts = found.unwrap_or_default();
        view
    }
}
