//! Agent threads and topics (coded error style): CreateThread, ContinueThread, ListThreads,
//! GetThread, GetThreadMessages and ListTopics. The fake agent replies at once, so threads are
//! always IDLE; see `model/threads.rs`.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use chrono::TimeDelta;
use serde_json::{json, Value};
use uuid::Uuid;

use super::body::Fields;
use super::caller::Caller;
use super::context::{Params, PathParams};
use crate::errors::HexError;
use crate::model::{
    paginate, reply_to, title_from, Author, Message, Resource, Role, Start, Thread, Topic, Workspace,
};
use crate::{timestamp, FakeHex};

/// Starts a thread: the prompt, then the agent's reply. `projectId` runs it against a project,
/// `newProject` makes a draft project for it (not both).
pub(crate) async fn create(
    State(hex): State<FakeHex>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let body = caller.body(&body)?;
    let prompt = body.nonempty("prompt")?;
    let project = body.opt_str("projectId")?;
    let new_project = body.opt_bool("newProject")?.unwrap_or(false);
    if project.is_some() && new_project {
        return Err(body.bad("projectId", "cannot be given with newProject"));
    }
    body.opt_str("previewId")?;
    let muted = body.opt_bool("muted")?.unwrap_or(false);
    let attachments = body.opt_object("attachments")?;

    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let resources = resources(&caller, ws, attachments)?;
    let project_id = match (project, new_project) {
        (Some(raw), _) => {
            let id = caller.id(&raw, "Project")?;
            ws.project(id).ok_or_else(|| caller.not_found("Project"))?;
            Some(id)
        }
        (None, true) => {
            let creator = caller
                .email()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("agent@{}.example.com", caller.subdomain()));
            Some(ws.push_project(&title_from(&prompt), creator, false))
        }
        (None, false) => None,
    };
    let now = timestamp::now();
    let seq = ws.next_seq();
    let mut thread = Thread {
        id: Uuid::new_v4(),
        seq,
        user_id: caller.identity.user.as_ref().map(|u| u.id),
        project_id,
        title: title_from(&prompt),
        created_at: now,
        updated_at: now,
        messages: Vec::new(),
        topics: Vec::new(),
        resources,
        muted,
    };
    converse(ws, &mut thread, &prompt);
    let answer = json!({
        "threadId": thread.id.to_string(),
        "url": thread_url(&caller, &thread),
        "createdAt": timestamp::format(thread.created_at),
        "projectId": thread.project_id.map(|id| id.to_string()),
    });
    ws.threads.push(thread);
    Ok(Json(answer))
}

/// Sends a follow-up prompt to an (idle) thread.
pub(crate) async fn follow_up(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let id = caller.id(path.get("id"), "Thread")?;
    let body = caller.body(&body)?;
    let prompt = body.nonempty("prompt")?;
    let attachments = body.opt_object("attachments")?;
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let index = ws.threads.iter().position(|t| t.id == id).ok_or_else(|| caller.not_found("Thread"))?;
    let added = resources(&caller, ws, attachments)?;
    let mut thread = ws.threads[index].clone();
    for resource in added {
        if !thread.resources.iter().any(|r| r.id == resource.id) {
            thread.resources.push(resource);
        }
    }
    converse(ws, &mut thread, &prompt);
    let answer = json!({ "threadId": thread.id.to_string(), "url": thread_url(&caller, &thread) });
    ws.threads[index] = thread;
    Ok(Json(answer))
}

/// Adds the prompt and the agent's reply to a thread, and tags it with the topics named.
fn converse(ws: &mut Workspace, thread: &mut Thread, prompt: &str) {
    let now = timestamp::now();
    for (author, text) in [(Author::User, prompt.to_owned()), (Author::Assistant, reply_to(prompt))] {
        let seq = ws.next_seq();
        thread.messages.push(Message { seq, author, text, created_at: now });
    }
    let lower = prompt.to_lowercase();
    for topic in ws.topics.iter().filter(|t| lower.contains(&t.name.to_lowercase())) {
        if !thread.topics.contains(&topic.id) {
            thread.topics.push(topic.id);
        }
    }
    thread.updated_at = now;
}

/// The entities a prompt's `attachments` name; projects and data connections must exist.
fn resources(
    caller: &Caller,
    ws: &Workspace,
    attachments: Option<Fields>,
) -> Result<Vec<Resource>, HexError> {
    let Some(attachments) = attachments else { return Ok(Vec::new()) };
    let mut found = Vec::new();
    for raw in attachments.opt_strings("projectIds")?.unwrap_or_default() {
        let project = Uuid::parse_str(&raw).ok().and_then(|id| ws.project(id));
        let project = project.ok_or_else(|| caller.bad_request(format!("projectIds: no project {raw:?}")))?;
        found.push(Resource { id: raw, resource_type: "PROJECT", name: project.title.clone() });
    }
    if let Some(raw) = attachments.opt_str("dataConnectionId")? {
        let connection = Uuid::parse_str(&raw).ok().and_then(|id| ws.connections.iter().find(|c| c.id == id));
        let connection = connection
            .ok_or_else(|| caller.bad_request(format!("dataConnectionId: no connection {raw:?}")))?;
        found.push(Resource { id: raw, resource_type: "DATA_CONNECTION", name: connection.name.clone() });
    }
    for (key, resource_type) in [
        ("tableIds", "TABLE"),
        ("semanticDatasetIds", "SEMANTIC_DATASET"),
        ("semanticViewIds", "SEMANTIC_VIEW"),
    ] {
        for raw in attachments.opt_strings(key)?.unwrap_or_default() {
            found.push(Resource { id: raw.clone(), resource_type, name: raw });
        }
    }
    Ok(found)
}

/// Threads newest first, filtered, cursor-paginated, muted ones left out. Needs the Manager role or higher with a
/// personal token, as the spec says.
pub(crate) async fn list(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, HexError> {
    if caller.identity.user.as_ref().is_some_and(|u| u.role < Role::Manager) {
        return Err(caller.forbidden("Listing threads needs the Manager role or higher"));
    }
    let bad = |details: String| caller.bad_request(details);
    let request = caller.page_request(&params, "thread", 100, 25)?;
    let source = params.choice("source", &["HEX", "SLACK", "MCP", "PUBLIC_API"]).map_err(bad)?;
    let kind = params.choice("type", &["THREADS", "NOTEBOOK", "MODELING"]).map_err(bad)?;
    let num_days = params.int("numDays", 1, u64::from(u32::MAX), 0).map_err(bad)?;
    let has_feedback = params.choice("hasFeedback", &["true", "false"]).map_err(bad)?;
    let (roles, warnings) = (params.all("roles"), params.all("warnings"));
    let (topics, resources) = (params.all("topicIds"), params.all("resourceIds"));
    let user = params.get("userId").filter(|u| !u.is_empty());
    let since = timestamp::now() - TimeDelta::days(num_days as i64);

    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let role_of =
        |t: &Thread| t.user_id.and_then(|id| ws.users.iter().find(|u| u.id == id)).map(|u| u.role.as_str());
    let threads: Vec<&Thread> = ws
        .threads
        .iter()
        .rev()
        // Muted threads stay out of aggregated views (*choice*: this list is one).
        .filter(|t| !t.muted)
        // Every fake thread comes from the public API, has no feedback and no warnings.
        .filter(|_| source.as_deref().is_none_or(|s| s == "PUBLIC_API"))
        .filter(|_| has_feedback.as_deref() != Some("true") && warnings.is_empty())
        .filter(|t| kind.as_deref().is_none_or(|k| k == t.kind()))
        .filter(|t| num_days == 0 || t.created_at >= since)
        .filter(|t| user.is_none_or(|u| t.user_id.is_some_and(|id| id.to_string() == u)))
        .filter(|t| roles.is_empty() || role_of(t).is_some_and(|r| roles.iter().any(|x| x == r)))
        .filter(|t| topics.is_empty() || t.topics.iter().any(|id| topics.contains(&id.to_string())))
        .filter(|t| resources.is_empty() || t.resources.iter().any(|r| resources.contains(&r.id)))
        .collect();
    let page = paginate(threads, |t| t.seq, "thread", request, Start::First).map_err(bad)?;
    let values: Vec<Value> = page
        .items
        .iter()
        .map(|t| {
            let mut item = summary_json(ws, t);
            item["id"] = json!(t.id.to_string());
            item["orgId"] = json!(ws.org_id.to_string());
            item["url"] = json!(thread_url(&caller, t));
            item
        })
        .collect();
    Ok(Json(json!({ "threads": values, "pagination": { "after": page.after, "before": page.before } })))
}

/// A thread, its status and the agent's latest response.
pub(crate) async fn get(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let id = caller.id(path.get("id"), "Thread")?;
    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let thread = ws.threads.iter().find(|t| t.id == id).ok_or_else(|| caller.not_found("Thread"))?;
    let mut response: Vec<Value> =
        thread.last_reply().map(|m| json!({ "type": "text", "text": m.text })).into_iter().collect();
    if let Some(project) = thread.project_id.and_then(|id| ws.project(id)) {
        response.push(json!({ "type": "project", "id": project.id.to_string(), "title": project.title }));
    }
    let resources: Vec<Value> = thread
        .resources
        .iter()
        .map(|r| json!({ "id": r.id, "resourceType": r.resource_type, "name": r.name }))
        .collect();
    let mut body = summary_json(ws, thread);
    body["threadId"] = json!(thread.id.to_string());
    body["status"] = json!("IDLE");
    body["url"] = json!(thread_url(&caller, thread));
    body["error"] = Value::Null;
    body["resources"] = Value::Array(resources);
    body["response"] = Value::Array(response);
    Ok(Json(body))
}

/// A thread's messages as text blocks prefixed with their author, oldest first within a page;
/// without a cursor the most recent page. `full=true` gives each message as a JSON record.
pub(crate) async fn messages(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let id = caller.id(path.get("id"), "Thread")?;
    let request = caller.page_request(&params, "message", 50, 25)?;
    let full = params.flag("full").map_err(|e| caller.bad_request(e))?;
    let model = hex.lock();
    let thread = model
        .ws(caller.subdomain())
        .threads
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| caller.not_found("Thread"))?;
    let messages: Vec<&Message> = thread.messages.iter().collect();
    let page =
        paginate(messages, |m| m.seq, "message", request, Start::Last).map_err(|e| caller.bad_request(e))?;
    let content: Vec<Value> = page
        .items
        .iter()
        .map(|m| {
            let created = timestamp::format(m.created_at);
            let text = match full {
                true => {
                    json!({ "role": m.author.label().to_lowercase(), "text": m.text, "createdAt": created })
                        .to_string()
                }
                false => format!("{}: {}", m.author.label(), m.text),
            };
            json!({ "type": "text", "text": text, "createdAt": created })
        })
        .collect();
    Ok(Json(json!({ "content": content, "pagination": { "after": page.after, "before": page.before } })))
}

/// The workspace's thread topics by name, cursor-paginated.
pub(crate) async fn topics(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, HexError> {
    let request = caller.page_request(&params, "topic", 100, 25)?;
    let model = hex.lock();
    let mut topics: Vec<(usize, &Topic)> = model.ws(caller.subdomain()).topics.iter().enumerate().collect();
    topics.sort_by_key(|(i, t)| (t.name.to_lowercase(), *i));
    let page = paginate(topics, |(i, _)| *i as u64, "topic", request, Start::First)
        .map_err(|e| caller.bad_request(e))?;
    let values: Vec<Value> =
        page.items.iter().map(|(_, t)| json!({ "id": t.id.to_string(), "name": t.name })).collect();
    Ok(Json(json!({ "topics": values, "pagination": { "after": page.after, "before": page.before } })))
}

/// The fields GetThread and ListThreads share.
fn summary_json(ws: &Workspace, thread: &Thread) -> Value {
    let topics: Vec<Value> = thread
        .topics
        .iter()
        .filter_map(|id| ws.topics.iter().find(|t| t.id == *id))
        .map(|t| json!({ "id": t.id.to_string(), "name": t.name }))
        .collect();
    json!({
        "title": thread.title,
        "creditsUsed": 0,
        "topics": topics,
        "warnings": [],
        "feedback": [],
        "warningsGeneratedAt": null,
        "threadSummary": thread.title,
        "threadIntent": null,
        "model": "Auto",
        "auto": true,
        "effectiveModel": "fake-hex-agent",
        "effortLevel": null,
        "userId": thread.user_id.map(|id| id.to_string()),
        "type": thread.kind(),
        "source": "PUBLIC_API",
        "createdAt": timestamp::format(thread.created_at),
        "updatedAt": timestamp::format(thread.updated_at),
        "sensitive": false,
    })
}

fn thread_url(caller: &Caller, thread: &Thread) -> String {
    format!("{}/app/threads/{}", caller.workspace.base_url, thread.id)
}
