//! The request log (§11): `GET /v1/connections/{id}/requests` (`connections:read`) and
//! `GET /v1/requests` (`admin`), newest first, paged, with filters.

use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::connection_id;
use super::paging::{self, Page};
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, Code, Json, Path, Result};
use crate::input;
use crate::requestlog::{AnsweredBy, Via};
use crate::state::AppState;
use crate::store::{self, RequestFilter, RequestRecord, StatusFilter};

/// The query of both lists (`connection_id` only on `GET /v1/requests`), as sent.
#[derive(Debug, Default)]
struct RequestParams {
    connection_id: Option<String>,
    status: Option<String>,
    answered_by: Option<String>,
    via: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

const ACCEPTED: &str = "The query accepts status (a code like 429 or a class like 4xx), answered_by (hex or \
     hexbroker), via (proxy, api or mcp), since and until (RFC 3339 times), limit (1-200) and cursor";

/// `GET /v1/connections/{id}/requests`: one connection's calls.
pub async fn for_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Page<RequestRecord>>> {
    caller.require(Scope::ConnectionsRead)?;
    let id = connection_id(&id)?;
    let params = params(query.as_deref(), false)?;
    let (mut filter, limit) = filter(&params)?;
    state.store.connection(&caller.tenant, id).await?.ok_or_else(|| ApiError::not_found("connection"))?;
    filter.connection_id = Some(id);
    let rows = state.store.list_requests(&caller.tenant, &filter).await?;
    Ok(Json(Page::cut(rows, limit, |r| r.id)))
}

/// `GET /v1/requests`: the tenant's calls, of every connection or of `connection_id`'s.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Page<RequestRecord>>> {
    caller.require(Scope::Admin)?;
    let params = params(query.as_deref(), true)?;
    let (mut filter, limit) = filter(&params)?;
    if let Some(id) = &params.connection_id {
        filter.connection_id =
            Some(Uuid::parse_str(id).map_err(|_| invalid("connection_id is not a connection id.".into()))?);
    }
    let rows = state.store.list_requests(&caller.tenant, &filter).await?;
    Ok(Json(Page::cut(rows, limit, |r| r.id)))
}

/// A filter the request log cannot apply: 400 `invalid_query` (issue 19). A control character in
/// a caller's string is a 422 instead, as everywhere (§5); see [`params`].
fn invalid(message: String) -> ApiError {
    ApiError::bad_request(Code::InvalidQuery, message)
}

/// The query's parameters, read from its raw text. Any control character in a name or value is
/// refused first with 422 (§5); then an unknown, repeated or (on the connection's list)
/// `connection_id` parameter is a 400.
fn params(query: Option<&str>, admin: bool) -> Result<RequestParams> {
    let pairs: Vec<_> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).collect();
    for (name, value) in &pairs {
        let field = match name.as_ref() {
            "connection_id" => "connection_id",
            "status" => "status",
            "answered_by" => "answered_by",
            "via" => "via",
            "since" => "since",
            "until" => "until",
            "limit" => "limit",
            "cursor" => "cursor",
            _ => "A query parameter",
        };
        if input::has_control(name) {
            input::filter("A query parameter's name", Some(name.to_string()))
                .map_err(ApiError::invalid_query)?;
        }
        if input::has_control(value) {
            input::filter(field, Some(value.to_string())).map_err(ApiError::invalid_query)?;
        }
    }
    let accepted = || {
        if admin {
            invalid(format!("{ACCEPTED}, and connection_id."))
        } else {
            invalid(format!("{ACCEPTED}; the connection is the one in the path."))
        }
    };
    let mut params = RequestParams::default();
    for (name, value) in pairs {
        let slot = match name.as_ref() {
            "connection_id" if admin => &mut params.connection_id,
            "status" => &mut params.status,
            "answered_by" => &mut params.answered_by,
            "via" => &mut params.via,
            "since" => &mut params.since,
            "until" => &mut params.until,
            "limit" => &mut params.limit,
            "cursor" => &mut params.cursor,
            _ => return Err(accepted()),
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(invalid(format!("{name} is given more than once.")));
        }
    }
    Ok(params)
}

/// The filter and page size `params` ask for, checked.
fn filter(params: &RequestParams) -> Result<(RequestFilter, u32)> {
    let limit = match params.limit.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<u32>().map_err(|_| invalid("limit must be from 1 to 200.".into()))?),
    };
    let limit = paging::limit(limit).map_err(as_bad_request)?;
    let status = params.status.as_deref().map(status).transpose()?;
    let answered_by = match params.answered_by.as_deref() {
        None => None,
        Some(text) => Some(
            AnsweredBy::ALL
                .iter()
                .map(|a| a.as_str())
                .find(|a| *a == text)
                .ok_or_else(|| invalid("answered_by is hex or hexbroker.".into()))?,
        ),
    };
    let via = match params.via.as_deref() {
        None => None,
        Some(text) => Some(
            Via::ALL
                .iter()
                .map(|v| v.as_str())
                .find(|v| *v == text)
                .ok_or_else(|| invalid("via is proxy, api or mcp.".into()))?,
        ),
    };
    let since = params.since.as_deref().map(|t| time("since", t)).transpose()?;
    let until = params.until.as_deref().map(|t| time("until", t)).transpose()?;
    let cursor = paging::cursor(params.cursor.as_deref()).map_err(as_bad_request)?;
    let before_id = match (cursor, until.map(store::id_bound)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let filter = RequestFilter {
        connection_id: None,
        status,
        answered_by,
        via,
        from_id: since.map(store::id_bound),
        before_id,
        limit: paging::fetch(limit),
    };
    Ok((filter, limit))
}

/// The shared paging's refusal (a 422 on the other lists), as this list's 400.
fn as_bad_request(error: ApiError) -> ApiError {
    invalid(error.message().to_owned())
}

/// `429` (one status) or `4xx` (a class).
pub fn status(text: &str) -> Result<StatusFilter> {
    let bad = || invalid("status is a code like 429 or a class like 4xx.".into());
    let bytes = text.as_bytes();
    match bytes {
        [class @ b'1'..=b'5', x, y] if x.eq_ignore_ascii_case(&b'x') && y.eq_ignore_ascii_case(&b'x') => {
            Ok(StatusFilter::Class(u16::from(class - b'0')))
        }
        [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => text.parse().map(StatusFilter::Code).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// An RFC 3339 time, rounded up to the millisecond (entries are kept to the millisecond, so
/// `at >= since` and `at < until` hold exactly for the ids that these bounds select).
fn time(name: &str, text: &str) -> Result<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|_| invalid(format!("{name} is an RFC 3339 time like 2026-01-31T12:00:00Z.")))?
        .with_timezone(&Utc);
    let millis = at.timestamp_millis();
    let exact = at.timestamp_subsec_nanos() % 1_000_000 == 0;
    let millis = if exact { millis } else { millis.saturating_add(1) };
    // Before 1970 no entry exists; the bound is the earliest there is.
    Ok(DateTime::from_timestamp_millis(millis.max(0)).unwrap_or(DateTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_filter_is_a_code_or_a_class() {
        let cases = [
            ("429", Some(StatusFilter::Code(429))),
            ("200", Some(StatusFilter::Code(200))),
            ("4xx", Some(StatusFilter::Class(4))),
            ("5XX", Some(StatusFilter::Class(5))),
            ("600", None),
            ("6xx", None),
            ("0xx", None),
            ("42", None),
            ("4294967296", None),
            ("4x9", None),
            ("", None),
            ("-1", None),
        ];
        for (text, expected) in cases {
            assert_eq!(status(text).ok(), expected, "{text}");
        }
    }

    #[test]
    fn times_are_rfc_3339_and_round_up_to_the_millisecond() {
        assert_eq!(time("since", "2026-01-31T12:00:00Z").unwrap().timestamp_millis() % 1000, 0);
        let t = time("since", "2026-01-31T12:00:00.0001+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-31T11:00:00.001+00:00");
        assert!(time("since", "yesterday").is_err());
        assert!(time("since", "2026-01-31").is_err());
        assert_eq!(time("since", "1900-01-01T00:00:00Z").unwrap(), DateTime::UNIX_EPOCH);
    }
}
