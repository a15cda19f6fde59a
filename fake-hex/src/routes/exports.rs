//! ExportProject and GetQueriedTables: two views of a project computed from its cells.
//!
//! - ExportProject (coded error style) writes the project in a `*.hex.yaml` shape: its metadata
//!   and its cells in notebook order. The fake keeps only the draft's cells, so every version
//!   exports the current cells; a version that was never published is a 400.
//! - GetQueriedTables (tsoa) lists the warehouse tables the project's SQL cells query (see
//!   `model/cells.rs`), cursor-paginated.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::caller::Caller;
use super::context::{Params, PathParams};
use crate::errors::HexError;
use crate::model::{paginate, Start};
use crate::FakeHex;

/// Exports a project as YAML: `{filename, content}`.
pub(crate) async fn export(
    State(hex): State<FakeHex>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let body = caller.body(&body)?;
    let project_id = caller.id(&body.str("projectId")?, "Project")?;
    let version = body.get("version").cloned().unwrap_or(json!("draft"));
    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let project = ws.project(project_id).ok_or_else(|| caller.not_found("Project"))?;
    let version = match &version {
        Value::String(s) if s == "draft" => json!("draft"),
        Value::String(s) if s == "latest" && project.is_published() => json!(project.published_version),
        Value::Number(n)
            if n.as_u64().is_some_and(|v| v >= 1 && v <= u64::from(project.published_version)) =>
        {
            version.clone()
        }
        Value::String(_) | Value::Number(_) => {
            return Err(body.bad("version", &format!("names no published version of this project: {version}")))
        }
        _ => return Err(body.bad("version", "must be a version number, \"draft\" or \"latest\"")),
    };
    let quote = |s: &str| Value::String(s.to_owned()).to_string();
    let mut yaml = format!(
        "schemaVersion: 1\nmeta:\n  projectId: {}\n  title: {}\n  description: {}\n  version: {version}\ncells:\n",
        quote(&project.id.to_string()),
        quote(&project.title),
        project.description.as_deref().map_or("null".to_owned(), quote),
    );
    let cells: Vec<_> = ws.cells.iter().filter(|c| c.project_id == project_id).collect();
    if cells.is_empty() {
        yaml = yaml.replace("cells:\n", "cells: []\n");
    }
    for cell in cells {
        yaml.push_str(&format!(
            "  - cellId: {}\n    cellType: {}\n",
            quote(&cell.static_id.to_string()),
            cell.cell_type.as_str()
        ));
        if let Some(label) = &cell.label {
            yaml.push_str(&format!("    label: {}\n", quote(label)));
        }
        if let Some(connection) = cell.data_connection_id {
            yaml.push_str(&format!("    dataConnectionId: {}\n", quote(&connection.to_string())));
        }
        yaml.push_str(&format!("    source: {}\n", quote(&cell.source)));
    }
    let slug: String = project
        .title
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let slug = slug.split('-').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-");
    let filename = format!("{}.hex.yaml", if slug.is_empty() { "project" } else { &slug });
    Ok(Json(json!({ "filename": filename, "content": yaml })))
}

/// The tables a project queries, with their connections.
pub(crate) async fn queried_tables(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let project_id = caller.uuid(path.get("projectId"), "projectId")?;
    let request = caller.page_request(&params, "queried-table", 100, 25)?;
    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    ws.project(project_id).ok_or_else(|| caller.not_found("Project"))?;
    let tables: Vec<(u64, Value)> = ws
        .queried_tables(project_id)
        .into_iter()
        .filter_map(|(connection_id, table)| {
            let connection = ws.connections.iter().find(|c| c.id == connection_id)?;
            Some(json!({ "dataConnectionId": connection_id.to_string(), "dataConnectionName": connection.name, "tableName": table }))
        })
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect();
    let page = paginate(tables, |(i, _)| *i, "queried-table", request, Start::First)
        .map_err(|e| caller.bad_request(e))?;
    let values: Vec<Value> = page.items.into_iter().map(|(_, v)| v).collect();
    Ok(Json(json!({
        "values": values,
        "pagination": { "after": page.after, "before": page.before },
        "traceId": caller.trace.as_str(),
    })))
}
