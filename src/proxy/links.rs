//! Links in Hex's answers. RunProject answers carry `runStatusUrl`, GetProjectRuns answers
//! `nextPage` and `previousPage`: URLs of Hex's own API (HEX.md). A client that follows them
//! would leave hexbroker and send its connection key to Hex. On the proxy surfaces, those that
//! point at the workspace's own Hex API are rewritten to hexbroker's public origin, in the form
//! of the surface the call came by (`/v1/proxy/…` or `/api/…`); `runUrl`, a page for people,
//! stays. Only these JSON answers are read whole, and only up to [`MAX_LINKED_BODY`]: a bigger
//! one, and every other answer, streams through untouched.
//!
//! `Location` gets the same treatment on every answer, and one outside the workspace's Hex
//! origin is dropped (§7): Hex's answer does not send the caller elsewhere.

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::ProxyError;

/// The largest linked answer read whole to rewrite its links; a bigger one passes untouched.
pub const MAX_LINKED_BODY: usize = 1024 * 1024;

/// An answer whose body carries links to Hex's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    /// RunProject (`POST /v1/projects/{id}/runs`, legacy `POST /v1/project/{id}/run`):
    /// `runStatusUrl`.
    RunProject,
    /// GetProjectRuns (`GET /v1/projects/{id}/runs`, legacy `GET /v1/project/{id}/runs`):
    /// `nextPage` and `previousPage`.
    ProjectRuns,
}

impl Linked {
    /// Which linked answer a call of `method` to the Hex path `path` (after `/api`) gets, if any.
    /// Most calls are told apart by the path's end alone.
    pub fn of(method: &Method, path: &str) -> Option<Self> {
        if !(path.ends_with("/runs") || path.ends_with("/run")) {
            return None;
        }
        let mut segments = path.strip_prefix('/')?.split('/');
        let (v1, kind, id, last) = (segments.next()?, segments.next()?, segments.next()?, segments.next()?);
        if v1 != "v1" || id.is_empty() || segments.next().is_some() {
            return None;
        }
        match (method, kind, last) {
            (&Method::POST, "projects", "runs") | (&Method::POST, "project", "run") => Some(Self::RunProject),
            (&Method::GET, "projects" | "project", "runs") => Some(Self::ProjectRuns),
            _ => None,
        }
    }

    fn fields(self) -> &'static [&'static str] {
        match self {
            Self::RunProject => &["runStatusUrl"],
            Self::ProjectRuns => &["nextPage", "previousPage"],
        }
    }
}

/// A workspace's Hex origin, in parts: `{scheme}://{authority}{base}`, its API under `/api`.
#[derive(Debug, Clone, Copy)]
pub struct HexOrigin<'a> {
    /// `https` (or `http` for a local fake).
    pub scheme: &'a str,
    /// `acme.hex.tech`, or a host and port.
    pub authority: &'a str,
    /// The origin's path (`/acme` for a path-based fake), without a trailing slash; mostly empty.
    pub base: &'a str,
}

impl HexOrigin<'_> {
    /// The path and query after `/api` when `url` is a URL of this workspace's API (scheme and
    /// host compared without case).
    fn api_path<'u>(&self, url: &'u str) -> Option<&'u str> {
        self.api_path_of_path(self.after_authority(url)?)
    }

    /// The path and query after `{base}/api` when `path` (path-absolute) is in the API.
    fn api_path_of_path<'u>(&self, path: &'u str) -> Option<&'u str> {
        let rest = path.strip_prefix(self.base)?.strip_prefix("/api")?;
        rest.starts_with('/').then_some(rest)
    }

    /// Whether `url` is on this origin at all.
    fn on_origin(&self, url: &str) -> bool {
        self.after_authority(url).is_some()
    }

    /// What follows `{scheme}://{authority}` in `url`, if `url` starts so and the authority ends
    /// there.
    fn after_authority<'u>(&self, url: &'u str) -> Option<&'u str> {
        let rest = strip_prefix_ignore_case(url, self.scheme)?.strip_prefix("://")?;
        let rest = strip_prefix_ignore_case(rest, self.authority)?;
        (rest.is_empty() || rest.starts_with(['/', '?', '#'])).then_some(rest)
    }
}

fn strip_prefix_ignore_case<'u>(text: &'u str, prefix: &str) -> Option<&'u str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// Where links to a workspace's Hex API go once relayed.
#[derive(Debug, Clone, Copy)]
pub struct Relink<'a> {
    /// The workspace's Hex origin.
    pub origin: HexOrigin<'a>,
    /// hexbroker's public origin (`HEXBROKER_PUBLIC_URL`), without a trailing slash.
    pub public: &'a str,
    /// The surface the call came by: `/v1/proxy` or `/api`.
    pub surface: &'a str,
}

/// What becomes of a `Location`.
#[derive(Debug, PartialEq, Eq)]
enum Relocated {
    Keep,
    Drop,
    To(String),
}

impl Relink<'_> {
    /// Hex's answer with its links pointed at hexbroker: `Location` on any answer, the body's
    /// links on a `linked` one. An answer with neither is given back as it came.
    pub async fn apply(
        &self,
        response: Response<Body>,
        linked: Option<Linked>,
    ) -> Result<Response<Body>, ProxyError> {
        let (mut parts, body) = response.into_parts();
        self.location(&mut parts.headers);
        let body = match linked {
            Some(linked) if parts.status.is_success() && is_plain_json(&parts.headers) => {
                match read_bounded(body, &parts.headers).await? {
                    Ok(whole) => match self.rewrite_json(&whole, linked.fields()) {
                        Some(rewritten) => {
                            parts.headers.remove(header::CONTENT_LENGTH);
                            Body::from(rewritten)
                        }
                        None => Body::from(whole),
                    },
                    Err(passed) => passed,
                }
            }
            _ => body,
        };
        Ok(Response::from_parts(parts, body))
    }

    /// Points a `Location` at hexbroker when it names the workspace's Hex API, keeps it when it
    /// names another page of the workspace, and drops it when it names any other place.
    fn location(&self, headers: &mut HeaderMap) {
        let Some(value) = headers.get(header::LOCATION) else { return };
        let relocated = value.to_str().map_or(Relocated::Drop, |text| self.relocate(text));
        match relocated {
            Relocated::Keep => {}
            Relocated::Drop => {
                tracing::info!("Hex's Location points outside the workspace's origin; dropped");
                headers.remove(header::LOCATION);
            }
            Relocated::To(url) => match HeaderValue::try_from(url) {
                Ok(value) => {
                    headers.insert(header::LOCATION, value);
                }
                Err(_) => {
                    headers.remove(header::LOCATION);
                }
            },
        }
    }

    fn relocate(&self, text: &str) -> Relocated {
        let origin = self.origin;
        if let Some(rest) = text.strip_prefix("//") {
            // Scheme-relative: on Hex's scheme.
            let absolute = format!("{}://{rest}", origin.scheme);
            return match self.relocate(&absolute) {
                Relocated::Keep => Relocated::To(absolute),
                other => other,
            };
        }
        if has_scheme(text) {
            if let Some(url) = self.on_broker(text) {
                return Relocated::To(url);
            }
            return if origin.on_origin(text) { Relocated::Keep } else { Relocated::Drop };
        }
        if text.starts_with('/') {
            // Path-absolute: on Hex's origin.
            return match origin.api_path_of_path(text) {
                Some(rest) => Relocated::To(format!("{}{}{rest}", self.public, self.surface)),
                None => Relocated::To(format!("{}://{}{text}", origin.scheme, origin.authority)),
            };
        }
        // Relative to the request's own path, which on hexbroker maps to the same Hex path.
        Relocated::Keep
    }

    /// `url` on hexbroker's surface, when it is a URL of the workspace's Hex API.
    fn on_broker(&self, url: &str) -> Option<String> {
        let rest = self.origin.api_path(url)?;
        Some(format!("{}{}{rest}", self.public, self.surface))
    }

    /// `body` (a JSON object) with the string values of `fields` that are links to the
    /// workspace's Hex API rewritten; `None` when there is nothing to rewrite or the body is not
    /// a JSON object. Everything else is copied as it came: the other values byte for byte, the
    /// keys in their order.
    fn rewrite_json(&self, body: &[u8], fields: &[&str]) -> Option<Vec<u8>> {
        let Entries(entries) = serde_json::from_slice(body).ok()?;
        let rewritten = |key: &str, value: &RawValue| {
            if !fields.contains(&key) {
                return None;
            }
            self.on_broker(&serde_json::from_str::<String>(value.get()).ok()?)
        };
        if !entries.iter().any(|(key, value)| rewritten(key, value).is_some()) {
            return None;
        }
        let mut out = Vec::with_capacity(body.len().saturating_add(64));
        out.push(b'{');
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, key).ok()?;
            out.push(b':');
            match rewritten(key, value) {
                Some(url) => serde_json::to_writer(&mut out, &url).ok()?,
                None => out.extend_from_slice(value.get().as_bytes()),
            }
        }
        out.push(b'}');
        Some(out)
    }
}

/// Whether the answer is JSON sent without a content coding (one that is coded passes as it
/// is: the proxy asks for linked answers without one, so that is Hex's choice).
fn is_plain_json(headers: &HeaderMap) -> bool {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let coded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    json && !coded
}

/// Reads `body` whole when it fits in [`MAX_LINKED_BODY`] (`Ok(Ok(bytes))`); otherwise gives
/// back a body that streams what was read and then the rest (`Ok(Err(body))`). A body that
/// breaks while read is Hex's broken answer: nothing has reached the caller yet.
async fn read_bounded(body: Body, headers: &HeaderMap) -> Result<Result<Bytes, Body>, ProxyError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_LINKED_BODY as u64) {
        return Ok(Err(body));
    }
    let mut body = body;
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ProxyError::BrokenAnswer(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            read.extend_from_slice(&data);
            if read.len() > MAX_LINKED_BODY {
                return Ok(Err(Body::new(Prefixed { prefix: Some(read.freeze()), rest: body })));
            }
        }
    }
    Ok(Ok(read.freeze()))
}

/// A body that gives `prefix`, then `rest`.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: Body,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(prefix))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}

/// Whether `text` starts with a URI scheme (RFC 3986 §3.1) and its colon.
fn has_scheme(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once(':') else { return false };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// A JSON object's entries in their order, the values as they were written.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &'static str) -> HexOrigin<'static> {
        let (scheme, rest) = text.split_once("://").unwrap();
        let (authority, base) = rest.split_once('/').map_or((rest, ""), |(a, _)| (a, &rest[a.len()..]));
        HexOrigin { scheme, authority, base }
    }

    #[test]
    fn only_run_project_and_project_runs_carry_links() {
        let cases = [
            (Method::POST, "/v1/projects/p1/runs", Some(Linked::RunProject)),
            (Method::POST, "/v1/project/p1/run", Some(Linked::RunProject)),
            (Method::GET, "/v1/projects/p1/runs", Some(Linked::ProjectRuns)),
            (Method::GET, "/v1/project/p1/runs", Some(Linked::ProjectRuns)),
            (Method::GET, "/v1/projects/p1/runs/r1", None),
            (Method::DELETE, "/v1/projects/p1/runs", None),
            (Method::POST, "/v1/projects//runs", None),
            (Method::GET, "/v1/projects", None),
            (Method::GET, "/v2/projects/p1/runs", None),
            (Method::GET, "/v1/projects/p1/x/runs", None),
            (Method::POST, "/v1/project/p1/runs", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(Linked::of(&method, path), expected, "{method} {path}");
        }
    }

    fn flip_scheme(origin: &str) -> String {
        match origin.strip_prefix("https://") {
            Some(rest) => format!("http://{rest}"),
            None => origin.replacen("http://", "https://", 1),
        }
    }

    #[test]
    fn links_to_the_workspace_api_point_at_the_surface_and_others_stay_or_go() {
        for base_origin in ["https://acme.hex.tech", "http://127.0.0.1:9/acme"] {
            let api = base_origin;
            let o = origin(base_origin);
            let upper = format!("{}://{}{}", o.scheme.to_uppercase(), o.authority.to_uppercase(), o.base);
            let relink = Relink {
                origin: origin(base_origin),
                public: "https://broker.example",
                surface: "/v1/proxy",
            };
            let cases = [
                (
                    format!("{api}/api/v1/projects/p/runs?offset=2"),
                    Relocated::To("https://broker.example/v1/proxy/v1/projects/p/runs?offset=2".into()),
                ),
                (format!("{upper}/api/v1/x"), Relocated::To("https://broker.example/v1/proxy/v1/x".into())),
                (format!("{api}/app/p/latest"), Relocated::Keep),
                ("https://evil.example/api/v1/x".into(), Relocated::Drop),
                (format!("{}://{}.evil.example/api/v1/x", o.scheme, o.authority), Relocated::Drop),
                ("javascript:alert(1)".into(), Relocated::Drop),
                ("//evil.example/x".into(), Relocated::Drop),
                (format!("{}/api/v1/x", flip_scheme(base_origin)), Relocated::Drop),
                ("runs/1".into(), Relocated::Keep),
            ];
            for (location, expected) in cases {
                assert_eq!(relink.relocate(&location), expected, "{base_origin}: {location}");
            }
        }
        let relink =
            Relink { origin: origin("http://127.0.0.1:9/acme"), public: "http://b:1", surface: "/api" };
        assert_eq!(relink.relocate("/acme/api/v1/x"), Relocated::To("http://b:1/api/v1/x".into()));
        assert_eq!(relink.relocate("/acme/app/y"), Relocated::To("http://127.0.0.1:9/acme/app/y".into()));
    }

    #[test]
    fn json_links_are_rewritten_in_place_and_everything_else_kept() {
        let relink =
            Relink { origin: origin("https://acme.hex.tech"), public: "http://b:1", surface: "/api" };
        let body = br#"{"runs":[{"runUrl":"https://acme.hex.tech/app/p"}], "nextPage" : "https://acme.hex.tech/api/v1/projects/p/runs?limit=2&offset=2","previousPage":null,"z":1.50,"traceId":"t"}"#;
        let out = relink.rewrite_json(body, Linked::ProjectRuns.fields()).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"runs":[{"runUrl":"https://acme.hex.tech/app/p"}],"nextPage":"http://b:1/api/v1/projects/p/runs?limit=2&offset=2","previousPage":null,"z":1.50,"traceId":"t"}"#
        );
        let foreign = br#"{"nextPage":"https://other.hex.tech/api/v1/x"}"#;
        assert_eq!(relink.rewrite_json(foreign, Linked::ProjectRuns.fields()), None);
        assert_eq!(relink.rewrite_json(b"[1]", Linked::ProjectRuns.fields()), None);
        assert_eq!(relink.rewrite_json(b"not json", Linked::ProjectRuns.fields()), None);
    }
}
