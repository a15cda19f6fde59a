//! Data connections: CreateDataConnection, EditDataConnection and UpdateDataConnectionSchema
//! (tsoa error style), ListDataConnections and GetDataConnection (coded). Secrets given on
//! create or edit are kept but never shown. EditDataConnection answers `201`, as the spec says.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::body::Fields;
use super::caller::Caller;
use super::context::{Params, PathParams};
use crate::errors::HexError;
use crate::model::{
    connection_type, paginate, resolve_schema_object, DataConnection, Role, Start, Workspace,
    CONNECTION_TYPES,
};
use crate::{timestamp, FakeHex};

const SHARING_ACCESS: [&str; 3] = ["NONE", "QUERY", "VIEW_RESULTS"];
const PUBLIC_ACCESS: [&str; 2] = ["NONE", "VIEW_RESULTS"];
const REFRESH_ACCESS: [&str; 2] = ["ADMINS", "USERS_WITH_QUERY_ACCESS"];

/// The workspace's connections by name (or creation), cursor-paginated. Personal tokens of
/// non-admins see the basic fields only (*choice*).
pub(crate) async fn list(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, HexError> {
    let bad = |details: String| caller.bad_request(details);
    let request = caller.page_request(&params, "data-connection", 100, 25)?;
    let by_created =
        params.choice("sortBy", &["NAME", "CREATED_AT"]).map_err(bad)?.as_deref() == Some("CREATED_AT");
    let descending =
        params.choice("sortDirection", &["ASC", "DESC"]).map_err(bad)?.as_deref() == Some("DESC");
    let basic = caller.identity.user.as_ref().is_some_and(|u| u.role < Role::Admin);
    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let mut connections: Vec<&DataConnection> = ws.connections.iter().collect();
    match by_created {
        true => connections.sort_by_key(|c| (c.created_at, c.seq)),
        false => connections.sort_by_key(|c| (c.name.to_lowercase(), c.seq)),
    }
    if descending {
        connections.reverse();
    }
    let page = paginate(connections, |c| c.seq, "data-connection", request, Start::First).map_err(bad)?;
    let values: Vec<Value> =
        page.items.iter().map(|c| if basic { basic_json(c) } else { connection_json(ws, c) }).collect();
    Ok(Json(json!({ "values": values, "pagination": { "after": page.after, "before": page.before } })))
}

/// One connection (its id is a plain string in the spec: anything else is not found).
pub(crate) async fn get(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let id = caller.id(path.get("dataConnectionId"), "Data connection")?;
    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let connection =
        ws.connections.iter().find(|c| c.id == id).ok_or_else(|| caller.not_found("Data connection"))?;
    Ok(Json(connection_json(ws, connection)))
}

/// Creates a connection: `201`. ClickHouse connections cannot be created through the API (the
/// spec has no ClickHouse variant of `CreateConnectionDetails`): 422.
pub(crate) async fn create(
    State(hex): State<FakeHex>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, HexError> {
    let body = caller.body(&body)?;
    let name = body.nonempty("name")?;
    let names: Vec<&str> = CONNECTION_TYPES.iter().map(|t| t.name).collect();
    let kind = connection_type(&body.enumerated("type", &names)?).expect("checked against the types");
    let Some(required) = kind.required else {
        return Err(
            caller.unprocessable(format!("{} connections cannot be created through the API", kind.name))
        );
    };
    let details = details_of(&body.object("connectionDetails")?, kind.name)?;
    if let Some(missing) = required.iter().find(|f| !details.contains_key(**f)) {
        return Err(body.bad(&format!("connectionDetails.{}.{missing}", kind.name), "is required"));
    }
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let seq = ws.next_seq();
    let mut connection = DataConnection {
        id: Uuid::new_v4(),
        seq,
        name,
        kind,
        description: None,
        details,
        connect_via_ssh: false,
        include_magic: true,
        allow_writeback_cells: false,
        schema_filters: None,
        schema_refresh_schedule: None,
        schema_refresh_access: "ADMINS".to_owned(),
        members_access: "QUERY".to_owned(),
        guests_access: "NONE".to_owned(),
        public_access: "NONE".to_owned(),
        groups: Vec::new(),
        statuses: Vec::new(),
        created_at: timestamp::now(),
    };
    apply_settings(&caller, ws, &mut connection, &body, false)?;
    let answer = connection_json(ws, &connection);
    ws.connections.push(connection);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Changes a connection's settings; given details are merged into the stored ones (the type
/// cannot change). Answers `201`, as the spec says.
pub(crate) async fn edit(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Response, HexError> {
    let id = caller.uuid(path.get("dataConnectionId"), "dataConnectionId")?;
    let body = caller.body(&body)?;
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let index =
        ws.connections.iter().position(|c| c.id == id).ok_or_else(|| caller.not_found("Data connection"))?;
    let mut connection = ws.connections[index].clone();
    if body.has("name") {
        connection.name = body.nonempty("name")?;
    }
    if let Some(details) = body.opt_object("connectionDetails")? {
        if details.get(connection.kind.name).is_none() {
            return Err(caller.unprocessable(format!(
                "connectionDetails must be for a {} connection",
                connection.kind.name
            )));
        }
        connection.details.extend(details_of(&details, connection.kind.name)?);
    }
    apply_settings(&caller, ws, &mut connection, &body, true)?;
    let answer = connection_json(ws, &connection);
    ws.connections[index] = connection;
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `connectionDetails.<kind>`, checked: the only key is the connection's type, `port` a number.
fn details_of(details: &Fields, kind: &str) -> Result<Map<String, Value>, HexError> {
    let outer = details.clone().into_map();
    if let Some(other) = outer.keys().find(|k| *k != kind) {
        return Err(details.bad(other, &format!("does not match the connection type {kind}")));
    }
    let inner = details.object(kind)?;
    inner.opt_number("port")?;
    Ok(inner.into_map())
}

/// The optional settings shared by create and edit. `editing` reads sharing groups as
/// `{"upsert": […]}` and allows `schemaRefreshSchedule: null`.
fn apply_settings(
    caller: &Caller,
    ws: &Workspace,
    c: &mut DataConnection,
    body: &Fields,
    editing: bool,
) -> Result<(), HexError> {
    if let Some(description) = body.opt_str("description")? {
        c.description = Some(description);
    }
    let flags = [
        ("connectViaSsh", &mut c.connect_via_ssh),
        ("includeMagic", &mut c.include_magic),
        ("allowWritebackCells", &mut c.allow_writeback_cells),
    ];
    for (name, flag) in flags {
        if let Some(value) = body.opt_bool(name)? {
            *flag = value;
        }
    }
    if let Some(access) = body.opt_enum("schemaRefreshAccess", &REFRESH_ACCESS)? {
        c.schema_refresh_access = access;
    }
    if let Some(filters) = body.opt_object("schemaFilters")? {
        c.schema_filters = Some(Value::Object(filters.into_map()));
    }
    match body.opt_object("schemaRefreshSchedule")? {
        Some(schedule) => {
            schedule.enumerated("cadence", &["HOURLY", "DAILY", "WEEKLY", "MONTHLY", "CUSTOM"])?;
            schedule.opt_bool("enabled")?.ok_or_else(|| schedule.bad("enabled", "is required"))?;
            c.schema_refresh_schedule = Some(Value::Object(schedule.into_map()));
        }
        None if editing && body.get("schemaRefreshSchedule").is_some_and(Value::is_null) => {
            c.schema_refresh_schedule = None;
        }
        None => {}
    }
    let Some(sharing) = body.opt_object("sharing")? else { return Ok(()) };
    if let Some(workspace) = sharing.opt_object("workspace")? {
        if let Some(access) = workspace.opt_enum("public", &PUBLIC_ACCESS)? {
            c.public_access = access;
        }
        if let Some(access) = workspace.opt_enum("guests", &SHARING_ACCESS)? {
            c.guests_access = access;
        }
        if let Some(access) = workspace.opt_enum("members", &SHARING_ACCESS)? {
            c.members_access = access;
        }
    }
    let grants = match editing {
        true => sharing.opt_object("groups")?.map(|g| g.opt_objects("upsert")).transpose()?.flatten(),
        false => sharing.opt_objects("groups")?,
    };
    for grant in grants.unwrap_or_default() {
        let access = grant.enumerated("access", &SHARING_ACCESS)?;
        let id = caller.uuid(&grant.object("group")?.str("id")?, "group.id")?;
        if !ws.groups.iter().any(|g| g.id == id) {
            return Err(caller.not_found("Group"));
        }
        c.groups.retain(|(g, _)| *g != id);
        if access != "NONE" {
            c.groups.push((id, access));
        }
    }
    Ok(())
}

/// Sets statuses on the connection's databases, schemas and tables, all or nothing. Names
/// resolve against the connection's database and the tables its SQL cells query; failures come
/// back as `details` items (404 when every failure is `not_found`, else 400).
pub(crate) async fn update_schema(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let id = caller.uuid(path.get("dataConnectionId"), "dataConnectionId")?;
    let body = caller.body(&body)?;
    let mut updates = Vec::new();
    for update in body.objects("updates")? {
        let kind = update.enumerated("type", &["DATABASE", "SCHEMA", "TABLE"])?;
        let name = update.str("name")?;
        let status = update.nullable_str("status")?.ok_or_else(|| update.bad("status", "is required"))?;
        updates.push((kind, name, status));
    }
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let connection =
        ws.connections.iter().find(|c| c.id == id).ok_or_else(|| caller.not_found("Data connection"))?;
    let tables = ws.connection_tables(id);
    let mut resolved = Vec::new();
    let mut failures: Vec<Value> = Vec::new();
    for (kind, name, status) in updates {
        if let Some(bad) = status.as_deref().filter(|s| !Workspace::is_status(s)) {
            failures.push(json!({ "name": name, "type": kind, "reason": "invalid_status", "value": bad }));
            continue;
        }
        match resolve_schema_object(&kind, &name, connection.database(), &tables) {
            Ok(full) => resolved.push((kind, full, status)),
            Err(reason) => failures.push(json!({ "name": name, "type": kind, "reason": reason })),
        }
    }
    if !failures.is_empty() {
        let all_missing = failures.iter().all(|f| f["reason"] == "not_found");
        let (status, message) = match all_missing {
            true => (StatusCode::NOT_FOUND, "Schema objects not found"),
            false => (StatusCode::BAD_REQUEST, "Invalid schema object updates"),
        };
        return Err(caller.error(status, message).with_detail_list(failures));
    }
    let connection = ws.connections.iter_mut().find(|c| c.id == id).expect("found above");
    let mut updated = json!({ "tables": [], "schemas": [], "databases": [] });
    for (kind, name, status) in resolved {
        connection.set_status(&kind, &name, status.clone());
        let list = match kind.as_str() {
            "DATABASE" => "databases",
            "SCHEMA" => "schemas",
            _ => "tables",
        };
        updated[list].as_array_mut().expect("an array").push(json!({ "name": name, "status": status }));
    }
    Ok(Json(json!({ "updated": updated })))
}

/// A connection as `DataConnection` / `DataConnectionWithSensitiveFieldsApiResource` (secrets
/// left out).
fn connection_json(ws: &Workspace, c: &DataConnection) -> Value {
    let groups: Vec<Value> = c
        .groups
        .iter()
        .filter_map(|(id, access)| {
            let group = ws.groups.iter().find(|g| g.id == *id)?;
            Some(json!({ "access": access, "group": { "name": group.name, "id": id.to_string() } }))
        })
        .collect();
    let mut body = json!({
        "id": c.id.to_string(),
        "name": c.name,
        "type": c.kind.name,
        "connectionDetails": c.readable_details(),
        "connectViaSsh": c.connect_via_ssh,
        "includeMagic": c.include_magic,
        "allowWritebackCells": c.allow_writeback_cells,
        "schemaRefreshAccess": c.schema_refresh_access,
        "sharing": {
            "workspace": { "public": c.public_access, "guests": c.guests_access, "members": c.members_access },
            "groups": groups,
        },
    });
    if let Some(description) = &c.description {
        body["description"] = json!(description);
    }
    if let Some(filters) = &c.schema_filters {
        body["schemaFilters"] = filters.clone();
    }
    if let Some(schedule) = &c.schema_refresh_schedule {
        body["schemaRefreshSchedule"] = schedule.clone();
    }
    body
}

/// A connection as `DataConnectionBasic`.
fn basic_json(c: &DataConnection) -> Value {
    let mut body = json!({ "id": c.id.to_string(), "name": c.name, "type": c.kind.name });
    if let Some(description) = &c.description {
        body["description"] = json!(description);
    }
    body
}
