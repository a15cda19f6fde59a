//! Cells of a project's draft (coded error style): ListCells, CreateCell, GetCell, UpdateCell,
//! DeleteCell and GetCellOutput. Cell ids are plain strings in the spec, so a malformed one is
//! simply not found; a cell's static id is accepted wherever its id is.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use super::body::Fields;
use super::caller::Caller;
use super::context::{Params, PathParams};
use crate::errors::HexError;
use crate::model::{paginate, Cell, CellType, Start, Workspace};
use crate::FakeHex;

/// A project's cells in notebook order, cursor-paginated.
pub(crate) async fn list(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, HexError> {
    let raw = params.get("projectId").filter(|p| !p.is_empty());
    let project_id = caller.id(raw.ok_or_else(|| caller.bad_request("projectId is required"))?, "Project")?;
    let request = caller.page_request(&params, "cell", 100, 25)?;
    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    ws.project(project_id).ok_or_else(|| caller.not_found("Project"))?;
    let cells: Vec<&Cell> = ws.cells.iter().filter(|c| c.project_id == project_id).collect();
    let page =
        paginate(cells, |c| c.seq, "cell", request, Start::First).map_err(|e| caller.bad_request(e))?;
    let values: Vec<Value> = page.items.iter().map(|c| cell_json(c)).collect();
    Ok(Json(json!({ "values": values, "pagination": { "after": page.after, "before": page.before } })))
}

/// Adds a Code, SQL or Markdown cell to a project's draft, where `location` says (default: at the
/// end). Answers `200` with the cell, as the spec says.
pub(crate) async fn create(
    State(hex): State<FakeHex>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let body = caller.body(&body)?;
    let project_id = caller.id(&body.str("projectId")?, "Project")?;
    let cell_type =
        CellType::creatable(&body.enumerated("cellType", &["CODE", "SQL", "MARKDOWN"])?).expect("checked");
    let label = body.opt_str("label")?;
    let contents = body.object("contents")?;
    let variant = contents.opt_object(cell_type.contents_key())?.ok_or_else(|| {
        contents.bad(cell_type.contents_key(), &format!("is required for a {} cell", cell_type.as_str()))
    })?;
    let source = variant.str("source")?;
    let location = body.opt_object("location")?;

    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    ws.project(project_id).ok_or_else(|| caller.not_found("Project"))?;
    let seq = ws.next_seq();
    let mut cell = Cell {
        id: Uuid::new_v4(),
        static_id: Uuid::new_v4(),
        seq,
        project_id,
        cell_type,
        label,
        source,
        output_dataframe: None,
        data_connection_id: None,
        dataframe_sql: false,
    };
    if cell_type == CellType::Sql {
        let connection = variant.opt_str("dataConnectionId")?;
        cell.dataframe_sql = variant.opt_bool("isDataframeSql")?.unwrap_or(false);
        if connection.is_some() && cell.dataframe_sql {
            return Err(variant.bad("dataConnectionId", "cannot be given with isDataframeSql"));
        }
        cell.data_connection_id = connection.map(|raw| connection_id(&caller, ws, &raw)).transpose()?;
        cell.output_dataframe =
            Some(variant.opt_str("outputDataframe")?.unwrap_or_else(|| format!("dataframe_{seq}")));
    }
    let index = position(&caller, ws, project_id, location)?;
    let answer = cell_json(&cell);
    ws.cells.insert(index, cell);
    ws.touch_project(project_id);
    Ok(Json(answer))
}

/// Where a new cell goes in `ws.cells`: after `insertAfterCellId`, first or last inside
/// `parentCellId`'s place, or after the project's last cell.
fn position(
    caller: &Caller,
    ws: &Workspace,
    project_id: Uuid,
    location: Option<Fields>,
) -> Result<usize, HexError> {
    let in_project = |raw: &str, name: &str| -> Result<usize, HexError> {
        let key = Uuid::parse_str(raw).ok();
        ws.cells
            .iter()
            .position(|c| c.project_id == project_id && key.is_some_and(|k| c.is(k)))
            .ok_or_else(|| caller.bad_request(format!("{name} {raw:?} is not a cell of this project")))
    };
    let end = ws.cells.iter().rposition(|c| c.project_id == project_id).map_or(ws.cells.len(), |i| i + 1);
    let Some(location) = location else { return Ok(end) };
    if let Some(after) = location.opt_str("insertAfterCellId")? {
        return Ok(in_project(&after, "insertAfterCellId")? + 1);
    }
    if let Some(parent) = location.opt_str("parentCellId")? {
        let parent = in_project(&parent, "parentCellId")?;
        let first = location.opt_enum("childPosition", &["FIRST", "LAST"])?.as_deref() == Some("FIRST");
        return Ok(if first { parent + 1 } else { end });
    }
    Ok(end)
}

/// A connection id given for a SQL cell: it must name a connection of the workspace.
fn connection_id(caller: &Caller, ws: &Workspace, raw: &str) -> Result<Uuid, HexError> {
    Uuid::parse_str(raw)
        .ok()
        .filter(|id| ws.connections.iter().any(|c| c.id == *id))
        .ok_or_else(|| caller.bad_request(format!("dataConnectionId {raw:?} names no data connection")))
}

/// One cell.
pub(crate) async fn get(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let key = caller.id(path.get("cellId"), "Cell")?;
    let model = hex.lock();
    let cell = model.ws(caller.subdomain()).cell(key).ok_or_else(|| caller.not_found("Cell"))?;
    Ok(Json(cell_json(cell)))
}

/// Changes a cell's source (the `contents` variant must match its type) and, for SQL cells, its
/// output dataframe and data connection (`null` detaches it).
pub(crate) async fn update(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
    body: Bytes,
) -> Result<Json<Value>, HexError> {
    let key = caller.id(path.get("cellId"), "Cell")?;
    let body = caller.body(&body)?;
    let connection = body.nullable_str("dataConnectionId")?;
    let contents = body.opt_object("contents")?;
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let mut cell = ws.cell(key).ok_or_else(|| caller.not_found("Cell"))?.clone();
    if let Some(contents) = contents {
        for key in ["codeCell", "sqlCell", "markdownCell"] {
            let Some(variant) = contents.opt_object(key)? else { continue };
            if key != cell.cell_type.contents_key() {
                return Err(contents.bad(key, &format!("does not fit a {} cell", cell.cell_type.as_str())));
            }
            cell.source = variant.str("source")?;
            if let Some(dataframe) = variant.opt_str("outputDataframe")? {
                cell.output_dataframe = Some(dataframe);
            }
        }
    }
    if let Some(connection) = connection {
        if cell.cell_type != CellType::Sql {
            return Err(body.bad("dataConnectionId", "applies to SQL cells only"));
        }
        cell.data_connection_id = connection.map(|raw| connection_id(&caller, ws, &raw)).transpose()?;
    }
    let answer = cell_json(&cell);
    let project_id = cell.project_id;
    if let Some(slot) = ws.cells.iter_mut().find(|c| c.id == cell.id) {
        *slot = cell;
    }
    ws.touch_project(project_id);
    Ok(Json(answer))
}

/// Deletes a cell from the draft: `200 {"cellId": …}`.
pub(crate) async fn delete(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let key = caller.id(path.get("cellId"), "Cell")?;
    let mut model = hex.lock();
    let ws = model.ws_mut(caller.subdomain());
    let index = ws.cells.iter().position(|c| c.is(key)).ok_or_else(|| caller.not_found("Cell"))?;
    let cell = ws.cells.remove(index);
    ws.touch_project(cell.project_id);
    Ok(Json(json!({ "cellId": cell.id.to_string() })))
}

/// The latest output of a SQL cell in the draft session: a one-row table echoing its query, or a
/// run error when it has neither a data connection nor dataframe SQL. Other cells: 400.
pub(crate) async fn output(
    State(hex): State<FakeHex>,
    caller: Caller,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let key = caller.id(path.get("cellId"), "Cell")?;
    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let cell = ws.cell(key).ok_or_else(|| caller.not_found("Cell"))?;
    if cell.cell_type != CellType::Sql {
        return Err(caller
            .bad_request(format!("Only SQL cells have output; this is a {} cell", cell.cell_type.as_str())));
    }
    let project = ws.project(cell.project_id).ok_or_else(|| caller.not_found("Project"))?;
    let result = if cell.data_connection_id.is_none() && !cell.dataframe_sql {
        json!({ "type": "cell_run_error", "message": "No data connection is selected for this SQL cell", "traceback": null })
    } else {
        json!({
            "type": "table",
            "rowLimit": 10000,
            "rowsReturned": 1,
            "totalRows": 1,
            "totalRowsKind": "EXACT",
            "truncated": false,
            "columns": [{ "name": "query", "type": "string" }],
            "rows": [{ "query": cell.source }],
        })
    };
    Ok(Json(json!({
        "projectId": cell.project_id.to_string(),
        "runId": project.session_run_id.to_string(),
        "cell": { "id": cell.id.to_string(), "staticId": cell.static_id.to_string(), "cellType": cell.cell_type.as_str() },
        "result": result,
    })))
}

/// A cell as Hex's cell endpoints answer it.
pub(crate) fn cell_json(cell: &Cell) -> Value {
    let mut contents = json!({ "codeCell": null, "sqlCell": null, "markdownCell": null });
    match cell.cell_type {
        CellType::Code => contents["codeCell"] = json!({ "source": cell.source }),
        CellType::Markdown => contents["markdownCell"] = json!({ "source": cell.source }),
        CellType::Sql => {
            contents["sqlCell"] = json!({ "source": cell.source, "outputDataframe": cell.output_dataframe });
        }
        CellType::Chart => {}
    }
    json!({
        "id": cell.id.to_string(),
        "staticId": cell.static_id.to_string(),
        "cellType": cell.cell_type.as_str(),
        "label": cell.label,
        "dataConnectionId": cell.data_connection_id.map(|id| id.to_string()),
        "contents": contents,
        "projectId": cell.project_id.to_string(),
    })
}
