//! Per-request context the front door puts in the request's extensions, and the small extractors
//! handlers use to read it: the trace id, the workspace, the query and the path parameters.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
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
    /// The origin the fake stands in for, as callers reach it: `http://HOST/SUBDOMAIN`, or
    /// `http://HOST` for a workspace served at the root. URLs the fake hands out (run status,
    /// next page) start with this.
    pub(crate) base_url: String,
}

impl WorkspaceCtx {
    /// The URL callers use for the routed path `path` (`/{subdomain}/api/…`): the workspace's
    /// base URL and the rest of the path, so that a workspace served at the root of its origin
    /// hands out URLs without the prefix it is routed under.
    pub(crate) fn url_of(&self, path: &str) -> String {
        let rest =
            path.strip_prefix('/').and_then(|p| p.strip_prefix(self.subdomain.as_str())).unwrap_or(path);
        format!("{}{rest}", self.base_url)
    }
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

    /// Every value of `name` (`statuses=a&statuses=b`), each also split at commas.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(',').filter(|s| !s.is_empty()).map(str::to_owned))
            .collect()
    }

    /// An optional integer within `min..=max`, `default` when absent.
    pub(crate) fn int(&self, name: &str, min: u64, max: u64, default: u64) -> Result<u64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{name} must be an integer between {min} and {max}")),
        }
    }

    /// An optional boolean (`true`/`false`), `false` when absent.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, String> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(format!("{name} must be true or false")),
        }
    }

    /// An optional value that must be one of `allowed`.
    pub(crate) fn choice(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, String> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(raw) if allowed.contains(&raw) => Ok(Some(raw.to_owned())),
            Some(raw) => Err(format!("{name} {raw:?} is not one of {}", allowed.join(", "))),
        }
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

/// The path parameters by name (`projectId`, `cellId`, …), for handlers of paths with several.
#[derive(Debug)]
pub(crate) struct PathParams(HashMap<String, String>);

impl PathParams {
    /// The value of parameter `name` (empty if the route has none by that name).
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Path(map)| PathParams(map))
            .map_err(IntoResponse::into_response)
    }
}
