//! Chart images (coded error style, `hex-chart-image` rate group): GetChartImageFromLogic (a chart
//! cell of the draft) and GetChartImageFromRun (a chart cell, by static id, as of a completed run).
//! Images are small PNGs drawn from the chart's label; `width` and `height` (100–2000) apply only
//! when both are given, as the spec says.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::caller::Caller;
use super::context::{Params, PathParams};
use super::runs::find_run;
use crate::errors::HexError;
use crate::model::{Cell, CellType, RunStatus};
use crate::{png, timestamp, FakeHex};

/// Size when the caller gives none.
const DEFAULT_SIZE: (u32, u32) = (320, 200);

/// The image of a chart cell in the draft, by cell id or static id.
pub(crate) async fn from_logic(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let key = caller.id(path.get("cellId"), "Cell")?;
    let (width, height, title) = image_params(&caller, &params)?;
    let model = hex.lock();
    let cell = model.ws(caller.subdomain()).cell(key).ok_or_else(|| caller.not_found("Cell"))?;
    let image = render(&caller, cell, width, height, title)?;
    Ok(Json(json!({ "cellId": cell.id.to_string(), "imageBase64": image, "mimeType": "image/png" })))
}

/// The image of a chart cell as rendered by a completed run of its project.
pub(crate) async fn from_run(
    State(hex): State<FakeHex>,
    caller: Caller,
    params: Params,
    path: PathParams,
) -> Result<Json<Value>, HexError> {
    let project_id = caller.id(path.get("projectId"), "Project")?;
    let run_id = caller.id(path.get("runId"), "Run")?;
    let static_id = caller.id(path.get("staticId"), "Cell")?;
    let (width, height, title) = image_params(&caller, &params)?;
    let model = hex.lock();
    let ws = model.ws(caller.subdomain());
    let run = find_run(ws, project_id, run_id).ok_or_else(|| caller.not_found("Run"))?;
    let status = run.status(timestamp::now());
    if status != RunStatus::Completed {
        return Err(
            caller.bad_request(format!("The run is {}; images come from completed runs", status.as_str()))
        );
    }
    let cell = ws
        .cells
        .iter()
        .find(|c| c.static_id == static_id && c.project_id == project_id)
        .ok_or_else(|| caller.not_found("Cell"))?;
    let image = render(&caller, cell, width, height, title)?;
    Ok(Json(json!({
        "projectId": project_id.to_string(),
        "runId": run_id.to_string(),
        "staticId": static_id.to_string(),
        "imageBase64": image,
        "mimeType": "image/png",
    })))
}

/// `width`, `height` (both or neither apply) and `includeTitle`.
fn image_params(caller: &Caller, params: &Params) -> Result<(u32, u32, bool), HexError> {
    let bad = |details: String| caller.bad_request(details);
    let width = params.int("width", 100, 2000, 0).map_err(bad)?;
    let height = params.int("height", 100, 2000, 0).map_err(bad)?;
    let title = params.flag("includeTitle").map_err(bad)?;
    let size = if width > 0 && height > 0 { (width as u32, height as u32) } else { DEFAULT_SIZE };
    Ok((size.0, size.1, title))
}

/// The Base64 PNG of a chart cell; other cells are a 400.
fn render(caller: &Caller, cell: &Cell, width: u32, height: u32, title: bool) -> Result<String, HexError> {
    if cell.cell_type != CellType::Chart {
        return Err(caller.bad_request(format!(
            "Only chart cells have images; this is a {} cell",
            cell.cell_type.as_str()
        )));
    }
    Ok(png::base64(&png::chart(width, height, cell.label.as_deref().unwrap_or_default(), title)))
}
