//! Guides: UpsertGuideDraft, PublishGuideDrafts and DeleteGuideDraft (tsoa error style) and
//! ListDraftGuides (coded). See `model/guides.rs`.
//!
//! A guide synced from one external source is not overwritten from another (or by hand) unless
//! `forceWrite` is set: such files are skipped with a warning (*choice*, after what `forceWrite`
//! suggests).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use super::body::Fields;
use super::caller::Caller;
use super::context::{Params, PathParams};
use crate::errors::HexError;
use crate::model::{paginate, Guide, Start};
use crate::FakeHex;

const MAX_CONTENTS: usize = 100_000;

/// Creates or updates the drafts of the files given, by `filePath`.
pub(crate) async fn upsert(
    State(hex): State<FakeHex>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let body = caller.body(&body)?;
    let force = body.opt_bool("forceWrite")?.unwrap_or(false);
    let mut files = Vec::new();
    for file in body.objects("files")? {
        let path = file.str("filePath")?;
        let contents = file.str("contents")?;
        if contents.chars().count() > MAX_CONTENTS {
            return Err(file.bad("contents", &format!("must be at most {MAX_CONTENTS} characters")));
        }
        let source = file.opt_object("externalSource")?.map(|s| external_source(&s)).transpose()?;
        files.push((path, contents, source));
    }
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let (mut written, mut warnings) = (Vec::new(), Vec::new());
    for (path, contents, source) in files {
        let guide = match ws.guides.iter().position(|g| g.file_path == path) {
            Some(index) => &mut ws.guides[index],
            None => {
                let seq = ws.next_seq();
                let guide = Guide {
                    id: Uuid::new_v4(),
                    seq,
                    file_path: path.clone(),
                    draft: None,
                    published: None,
                    external_source: source.clone(),
                };
                ws.guides.push(guide);
                ws.guides.last_mut().expect("just pushed")
            }
        };
        if !force && !same_origin(guide.external_source.as_ref(), source.as_ref()) {
            let message =
                format!("{path} is synced from {}; pass forceWrite to overwrite it", guide.source_name());
            warnings.push(json!({ "message": message, "filePath": path }));
            continue;
        }
        guide.draft = Some(contents);
        guide.external_source = source;
        written.push(guide_json(guide));
    }
    Ok(Json(json!({ "files": written, "warnings": warnings, "traceId": caller.trace.as_str() })))
}

/// Checks an `ExternalContextSourceInput`: `{"source": "unknown", "id"?}` or a GitHub locator.
fn external_source(source: &Fields) -> Result<Value, HexError> {
    if source.enumerated("source", &["unknown", "github"])? == "github" {
        for field in ["repo", "owner", "branch", "commitHash", "path"] {
            source.str(field)?;
        }
    }
    Ok(Value::Object(source.clone().into_map()))
}

/// Whether two external sources are the same origin (same kind, and for GitHub same repository).
fn same_origin(stored: Option<&Value>, given: Option<&Value>) -> bool {
    let origin = |s: Option<&Value>| s.map(|s| (s["source"].clone(), s["owner"].clone(), s["repo"].clone()));
    stored.is_none() || origin(stored) == origin(given)
}

/// Guides that have a draft, by file path, optionally only those from one external source.
pub(crate) async fn list_drafts(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, HexError> {
    let request = caller.page_request(&params, "guide", 100, 100)?;
    let source = params.get("externalSource").filter(|s| !s.is_empty());
    let model = hex.lock();
    let mut drafts: Vec<&Guide> = model
        .ws(caller.subdomain())
        .guides
        .iter()
        .filter(|g| g.draft.is_some() && source.is_none_or(|s| g.source_name() == s))
        .collect();
    drafts.sort_by(|a, b| a.file_path.cmp(&b.file_path));
    let page =
        paginate(drafts, |g| g.seq, "guide", request, Start::First).map_err(|e| caller.bad_request(e))?;
    let values: Vec<Value> = page.items.iter().map(|g| guide_json(g)).collect();
    Ok(Json(json!({ "values": values, "pagination": { "after": page.after, "before": page.before } })))
}

/// Publishes drafts: those named by `orgGuideFileIds`, or every draft.
pub(crate) async fn publish(
    State(hex): State<FakeHex>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let body = caller.body(&body)?;
    body.opt_bool("publishAllDraftGuides")?;
    let ids = body
        .opt_strings("orgGuideFileIds")?
        .map(|ids| ids.iter().map(|id| caller.uuid(id, "orgGuideFileIds[]")).collect::<Result<Vec<_>, _>>())
        .transpose()?;
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let chosen: Vec<usize> = match ids {
        Some(ids) => ids
            .iter()
            .map(|id| {
                let index =
                    ws.guides.iter().position(|g| g.id == *id).ok_or_else(|| caller.not_found("Guide"))?;
                match ws.guides[index].draft {
                    Some(_) => Ok(index),
                    None => Err(caller.bad_request(format!("Guide {id} has no draft to publish"))),
                }
            })
            .collect::<Result<_, _>>()?,
        None => (0..ws.guides.len()).filter(|i| ws.guides[*i].draft.is_some()).collect(),
    };
    let mut published = Vec::new();
    for index in chosen {
        let guide = &mut ws.guides[index];
        if let Some(draft) = guide.draft.take() {
            guide.published = Some(draft);
            published.push(guide_json(guide));
        }
    }
    Ok(Json(json!({
        "message": format!("Published {} guide(s)", published.len()),
        "publishedGuides": published,
        "traceId": caller.trace.as_str(),
    })))
}

/// Drops a guide's draft (and the guide, if it was never published): `204`.
pub(crate) async fn delete_draft(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
) -> Result<StatusCode, HexError> {
    let id = caller.uuid(path.get("orgGuideFileId"), "orgGuideFileId")?;
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let index = ws
        .guides
        .iter()
        .position(|g| g.id == id && g.draft.is_some())
        .ok_or_else(|| caller.not_found("Guide draft"))?;
    ws.guides[index].draft = None;
    if ws.guides[index].published.is_none() {
        ws.guides.remove(index);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A guide as `GuideFileApiResource`.
fn guide_json(guide: &Guide) -> Value {
    json!({ "id": guide.id.to_string(), "filePath": guide.file_path })
}
