//! MCP for AI agents (§14 of the contract): the Model Context Protocol's Streamable HTTP
//! transport on `/mcp`, a small hand-written JSON-RPC layer whose tools are Hex's operations.
//! A tool call is a proxied call: it enters the proxy exactly where `/v1/proxy` does
//! ([`crate::proxy::forward`]), so path rules, limits, retries, the 401 follow-up, `last_used_at` and
//! metrics are the proxy's own.
//!
//! Sessions are stateless, so that any replica serves any request: the `Mcp-Session-Id` is a
//! random nonce and an HMAC (the keyed [`crate::crypto::Hasher`]) binding it to the key and the
//! connection. Ending a session (DELETE) is the one thing written down, in the database, so that
//! every replica answers 404 to it afterwards.

mod session;
mod tools;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{request::Parts, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::{Auth, Scope};
use crate::error::{ApiError, Code};
use crate::proxy::{Proxy, CONNECTION_ID_HEADER};
pub use tools::{snake_case, BadArguments, Call, Tool, Tools, ToolsError, HEX_SPEC};

/// The protocol versions served, newest first.
pub const PROTOCOL_VERSIONS: [&str; 2] = ["2025-06-18", "2025-03-26"];
/// The session header.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The header in which a client names the protocol version after initialization.
const VERSION_HEADER: &str = "mcp-protocol-version";
/// The largest Hex answer a tool call returns whole; a larger one is described, never cut.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;
/// The largest JSON-RPC message read.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// What `/mcp` needs of the application's state (axum's `FromRef`): the extractors' part, the
/// proxy's (a tool call is a proxied call), and the tools.
#[derive(Debug, Clone)]
pub struct Mcp {
    /// Who is calling.
    pub auth: Auth,
    /// Where tool calls go.
    pub proxy: Proxy,
    /// The tools made from Hex's spec, narrowed by `HEXBROKER_MCP_TOOLS`.
    pub tools: std::sync::Arc<Tools>,
}

/// Who is calling `/mcp`, and on which connection.
#[derive(Debug, Clone)]
struct McpCaller {
    connection_id: Uuid,
    /// The key (its id binds sessions; the request log names it).
    key: std::sync::Arc<crate::store::ApiKey>,
    /// `proxy:read` only: read-only tools.
    read_only: bool,
}

/// The Origin rule (DNS rebinding): a present `Origin` must be hexbroker's public origin or one
/// of `HEXBROKER_ALLOWED_ORIGINS`.
fn check_origin(state: &Mcp, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let own = state.proxy.config.public_url.origin().ascii_serialization();
    if origin.as_bytes() == own.as_bytes() || state.proxy.config.allowed_origins.iter().any(|o| o == origin) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        Code::OriginNotAllowed,
        "Requests to /mcp from this Origin are refused; add it to HEXBROKER_ALLOWED_ORIGINS if it is yours.",
    ))
}

/// A connection key, or an API key with `proxy`/`proxy:read` and `Connection-Id`.
async fn caller(state: &Mcp, parts: &Parts) -> Result<McpCaller, ApiError> {
    let key = crate::auth::authenticate(parts, &state.auth).await?;
    let read_only = !key.scopes.grants(Scope::Proxy);
    if !key.scopes.grants(Scope::ProxyRead) {
        return Err(ApiError::insufficient_scope(Scope::ProxyRead.name()));
    }
    let connection_id = match key.connection_id {
        Some(id) => id,
        None => {
            let id = parts.headers.get(CONNECTION_ID_HEADER).ok_or_else(|| {
                ApiError::bad_request(
                    Code::MissingConnectionId,
                    "With an API key, name the connection in the Connection-Id header (or use a connection key).",
                )
            })?;
            let id = id.to_str().map_err(|_| {
                ApiError::bad_request(Code::InvalidConnectionId, "The Connection-Id header is not ASCII.")
            })?;
            // As the routes read it: any other spelling names no connection.
            crate::input::canonical_uuid(id.trim()).ok_or_else(|| ApiError::not_found("connection"))?
        }
    };
    Ok(McpCaller { connection_id, read_only, key })
}

/// A JSON-RPC error object.
fn rpc_error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// A JSON-RPC error as an HTTP answer with `status`.
fn rpc_error_response(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    (status, axum::Json(rpc_error(id, code, message))).into_response()
}

/// `POST /mcp`: one JSON-RPC message; a request gets its response as `application/json`, a
/// notification or a client's response gets 202.
pub async fn post(State(state): State<Mcp>, request: Request) -> Response {
    match post_inner(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn post_inner(state: &Mcp, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    check_origin(state, &parts.headers)?;
    let caller = caller(state, &parts).await?;
    let Ok(bytes) = axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await else {
        return Ok(rpc_error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
            -32600,
            "Message too large.",
        ));
    };
    let Ok(message) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(rpc_error_response(
            StatusCode::BAD_REQUEST,
            Value::Null,
            -32700,
            "Parse error: not JSON.",
        ));
    };
    let Some(object) = message.as_object() else {
        return Ok(rpc_error_response(
            StatusCode::BAD_REQUEST,
            Value::Null,
            -32600,
            "Invalid request: send one JSON-RPC message (batches are not supported).",
        ));
    };
    // MCP: an id is a string or an integer, never null. A request or notification has a string
    // `method` and, when present, object `params`; a response of the client's has an id and an
    // object `result` or `error`. Anything else is not a message (openapi.yaml says the same).
    let id = object.get("id").cloned();
    let id_ok = match &id {
        None | Some(Value::String(_)) => true,
        Some(Value::Number(n)) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        Some(_) => false,
    };
    let is_2_0 = object.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let method = object.get("method").and_then(Value::as_str);
    let params_ok = object.get("params").is_none_or(Value::is_object);
    let is_response = id.is_some()
        && (object.get("result").is_some_and(Value::is_object)
            || object.get("error").is_some_and(Value::is_object));
    let (method, id) = match (method, id) {
        (Some(method), id) if is_2_0 && id_ok && params_ok => (method, id),
        (_, Some(_)) if is_2_0 && id_ok && is_response => return Ok(StatusCode::ACCEPTED.into_response()),
        (_, id) => {
            return Ok(rpc_error_response(
                StatusCode::BAD_REQUEST,
                id.filter(|_| id_ok).unwrap_or(Value::Null),
                -32600,
                "Invalid request: not a JSON-RPC 2.0 request, notification or response.",
            ))
        }
    };
    // A notification (`notifications/initialized`, `notifications/cancelled`, …): accepted,
    // nothing to say.
    let Some(id) = id else { return Ok(StatusCode::ACCEPTED.into_response()) };
    let params = object.get("params").cloned().unwrap_or(Value::Null);

    if method == "initialize" {
        return Ok(initialize(state, &caller, id, &params));
    }
    // A session is optional (every request carries its credential anyway), but one that is sent
    // must be live and the caller's.
    if parts.headers.contains_key(SESSION_HEADER) {
        if let Some(response) = session::check(state, &caller, &parts.headers).await? {
            return Ok(response);
        }
    }
    if let Some(version) = parts.headers.get(VERSION_HEADER) {
        if !PROTOCOL_VERSIONS.iter().any(|v| version.as_bytes() == v.as_bytes()) {
            return Ok(rpc_error_response(
                StatusCode::BAD_REQUEST,
                id,
                -32600,
                "Unsupported MCP-Protocol-Version; this server speaks 2025-06-18 and 2025-03-26.",
            ));
        }
    }
    let outcome = match method {
        "ping" => Ok(json!({})),
        "tools/list" => Ok(list(state, &caller)),
        "tools/call" => call(state, &caller, &params).await,
        _ => Err((-32601, format!("Method not found: {method}"))),
    };
    let body = match outcome {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => rpc_error(id, code, message),
    };
    Ok(axum::Json(body).into_response())
}

/// `initialize`: the version (the client's when served, else the newest), capabilities, and a
/// new session.
fn initialize(state: &Mcp, caller: &McpCaller, id: Value, params: &Value) -> Response {
    let asked = params["protocolVersion"].as_str().unwrap_or("");
    let version = PROTOCOL_VERSIONS.iter().find(|v| **v == asked).unwrap_or(&PROTOCOL_VERSIONS[0]);
    let result = json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "hexbroker", "title": "hexbroker: Hex through a connection", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "Each tool is one operation of Hex's public API, called on the Hex workspace of this connection. Read-only tools are marked readOnlyHint.",
    });
    let session = session::issue(state, caller);
    let mut response = axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response();
    if let Ok(value) = HeaderValue::from_str(&session) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

/// `tools/list`: every tool this caller may call.
fn list(state: &Mcp, caller: &McpCaller) -> Value {
    let tools: Vec<&Value> = state
        .tools
        .all()
        .iter()
        .filter(|t| t.read_only || !caller.read_only)
        .map(|t| &t.definition)
        .collect();
    json!({"tools": tools})
}

/// `tools/call`: checks the arguments, then sends the call through the proxy.
async fn call(state: &Mcp, caller: &McpCaller, params: &Value) -> Result<Value, (i64, String)> {
    let Some(name) = params["name"].as_str() else {
        return Err((-32602, "Invalid params: name the tool in `name`.".into()));
    };
    let Some(tool) = state.tools.get(name) else {
        return Err((-32602, format!("Unknown tool: {name}")));
    };
    if caller.read_only && !tool.read_only {
        return Ok(refused(
            StatusCode::FORBIDDEN.as_u16(),
            "read_only_key",
            "This key is read-only (proxy:read): it may call only read-only tools.",
            None,
        ));
    }
    let call = tool
        .call(params.get("arguments"))
        .map_err(|BadArguments(why)| (-32602, format!("Invalid params: {why}")))?;
    Ok(send(state, caller, tool, call).await)
}

/// Sends `call` to Hex through the proxy's own path and turns the answer into a tool result.
async fn send(state: &Mcp, caller: &McpCaller, tool: &Tool, call: Call) -> Value {
    let uri = format!("/mcp{}", call.path_and_query);
    let mut builder = axum::http::Request::builder().method(tool.method.clone()).uri(uri);
    builder = builder.header(header::ACCEPT, "application/json");
    let body = match call.body {
        Some(bytes) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(bytes)
        }
        None if tool.method == Method::GET => Body::empty(),
        None => Body::from(Bytes::new()),
    };
    let Ok(request) = builder.body(body) else {
        return refused(400, "invalid_path", "The tool's arguments do not make a valid Hex path.", None);
    };
    tracing::info!(tool = %tool.name, key_id = %caller.key.id, connection_id = %caller.connection_id, "MCP tool call");
    let via = crate::requestlog::Via::Mcp;
    match crate::proxy::forward(&state.proxy, &caller.key, caller.connection_id, via, request).await {
        Err(refusal) => {
            let error = ApiError::from(refusal);
            refused(error.status_code().as_u16(), error.code().as_str(), error.message(), error.retry_after())
        }
        Ok(response) => from_hex(response).await,
    }
}

/// A refusal by hexbroker as a tool result a model can read.
fn refused(status: u16, code: &str, message: &str, retry_after: Option<u64>) -> Value {
    let mut error = json!({"answered_by": "hexbroker", "status": status, "code": code, "message": message});
    if let Some(seconds) = retry_after {
        error["retry_after_seconds"] = json!(seconds);
    }
    let text = format!("hexbroker refused the call ({status} {code}): {message}");
    json!({"isError": true, "content": [{"type": "text", "text": text}], "structuredContent": {"error": error}})
}

/// Hex's answer as a tool result: 2xx JSON as `structuredContent` (when an object) and text;
/// 4xx/5xx as an error result carrying Hex's status and body; images as image content.
async fn from_hex(response: axum::http::Response<Body>) -> Value {
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = match axum::body::to_bytes(response.into_body(), MAX_RESULT_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let text = format!(
                "Hex answered {} with more than {} bytes, more than a tool result carries; narrow the call (a smaller limit, filters).",
                status.as_u16(),
                MAX_RESULT_BYTES
            );
            return json!({"isError": true, "content": [{"type": "text", "text": text}]});
        }
    };
    let parsed = serde_json::from_slice::<Value>(&bytes).ok();
    if !status.is_success() {
        let body =
            parsed.clone().unwrap_or_else(|| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        let text = format!("Hex answered {}: {}", status.as_u16(), String::from_utf8_lossy(&bytes));
        return json!({
            "isError": true,
            "content": [{"type": "text", "text": text}],
            "structuredContent": {"error": {"answered_by": "hex", "status": status.as_u16(), "body": body}},
        });
    }
    if content_type.starts_with("image/") {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let mime = content_type.split(';').next().unwrap_or("image/png").trim();
        return json!({"content": [{"type": "image", "data": data, "mimeType": mime}]});
    }
    match parsed {
        Some(value) => {
            let text = serde_json::to_string(&value).unwrap_or_default();
            let mut result = json!({"content": [{"type": "text", "text": text}]});
            if value.is_object() {
                result["structuredContent"] = value;
            }
            result
        }
        None if bytes.is_empty() => {
            json!({"content": [{"type": "text", "text": format!("Hex answered {} with no body.", status.as_u16())}]})
        }
        None => json!({"content": [{"type": "text", "text": String::from_utf8_lossy(&bytes).into_owned()}]}),
    }
}

/// `DELETE /mcp`: ends the session named in `Mcp-Session-Id`; later use of it answers 404.
pub async fn delete(State(state): State<Mcp>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let outcome = async {
        check_origin(&state, &parts.headers)?;
        let caller = caller(&state, &parts).await?;
        if let Some(response) = session::check(&state, &caller, &parts.headers).await? {
            return Ok(response);
        }
        session::end(&state, &parts.headers).await?;
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    };
    outcome.await.unwrap_or_else(IntoResponse::into_response)
}
