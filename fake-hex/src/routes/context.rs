//! Per-request context the front door puts in the request's extensions, and the small extractors
//! handlers use to read it: the trace id, the workspace, and the query parameters.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use uuid::Uuid;

/// The request's trace id: sent as `x-trace-id` and as `traceId` in bodies.
#[derive(Clone, Debug)]
pub(crate) struct TraceId(pub(crate) String);

impl TraceId {
    /// A fresh random trace id (32 hex digits).
    pub(crate) fn new() -> Self {
        TraceId(Uuid::new_v4().simple().to_string())
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TraceId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<TraceId>().cloned().unwrap_or_else(TraceId::new))
    }
}

/// The workspace a request is addressed to (known to exist: the front door checked).
#[derive(Clone, Debug)]
pub(crate) struct WorkspaceCtx {
    pub(crate) subdomain: String,
    /// How callers reach the fake: `http://HOST`.
    pub(crate) origin: String,
    /// The origin the fake stands in for, as callers reach it: `http://HOST/SUBDOMAIN`. URLs the
    /// fake hands out (run status, next page) start with this.
    pub(crate) base_url: String,
}

impl<S: Send + Sync> FromRequestParts<S> for WorkspaceCtx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<WorkspaceCtx>()
            .cloned()
            .expect("the front door sets the workspace before routing"))
    }
}

/// The query string as name/value pairs. Unlike axum's `Query<T>` it never rejects: handlers
/// validate each parameter themselves and answer in their endpoint's error style.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let pairs = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| pairs)
            .unwrap_or_default();
        Ok(Params(pairs))
    }
}

/// Parses an optional integer query parameter within `min..=max`, with a default when absent.
pub(crate) fn int_param(
    params: &Params,
    name: &str,
    min: u64,
    max: u64,
    default: u64,
) -> Result<u64, String> {
    match params.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("{name} must be an integer between {min} and {max}")),
    }
}
