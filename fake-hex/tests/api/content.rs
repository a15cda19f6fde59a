//! The content side of the model: data connections, cells and what is derived from them (queried
//! tables, schema statuses, outputs, chart images, exports), threads, guides and semantic projects.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_coded, assert_tsoa, Harness};

async fn setup(h: &Harness) -> (String, String) {
    h.hex.set_rate_limits(fake_hex::RateLimits::unlimited());
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let project = h.hex.add_project("acme", "Revenue");
    (token, project)
}

async fn postgres(h: &Harness, token: &str, name: &str) -> String {
    let details = json!({ "postgres": {
        "hostname": "db.example.com", "port": 5432, "database": "analytics", "username": "hex", "password": "secret",
    }});
    let body = json!({ "name": name, "type": "postgres", "connectionDetails": details });
    h.json(Method::POST, "/v1/data-connections", token, Some(body), 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn sql_cell(h: &Harness, token: &str, project: &str, connection: Option<&str>, source: &str) -> Value {
    let body = json!({ "projectId": project, "cellType": "SQL",
        "contents": { "sqlCell": { "source": source, "dataConnectionId": connection } } });
    h.json(Method::POST, "/v1/cells", token, Some(body), 200).await
}

/// Decodes standard Base64.
fn unbase64(text: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digits: Vec<u32> =
        text.bytes().filter(|b| *b != b'=').map(|b| ALPHABET.find(b as char).unwrap() as u32).collect();
    let mut out = Vec::new();
    for group in digits.chunks(4) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, d)| n | (d << (18 - 6 * i)));
        for i in 0..group.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[tokio::test]
async fn a_data_connection_keeps_its_secrets_and_shows_the_rest() {
    let h = Harness::start().await;
    let (token, _) = setup(&h).await;
    let id = postgres(&h, &token, "Warehouse").await;
    let path = format!("/v1/data-connections/{id}");
    let got = h.get_json("acme", &path, &token, 200).await;
    assert_eq!(got["connectionDetails"]["postgres"]["database"], "analytics");
    assert!(got["connectionDetails"]["postgres"].get("password").is_none(), "{got}");
    assert_eq!(got["sharing"]["workspace"]["members"], "QUERY");

    let edit = json!({ "name": "Lake", "connectionDetails": { "postgres": { "port": 6543 } }, "includeMagic": false });
    let edited = h.json(Method::PATCH, &path, &token, Some(edit), 201).await;
    assert_eq!((edited["name"].as_str(), edited["includeMagic"].as_bool()), (Some("Lake"), Some(false)));
    assert_eq!(edited["connectionDetails"]["postgres"]["port"], 6543);
    assert_eq!(edited["connectionDetails"]["postgres"]["hostname"], "db.example.com");
    let list = h.get_json("acme", "/v1/data-connections", &token, 200).await;
    assert_eq!(list["values"][0]["name"], "Lake");

    // An editor sees the basic fields only.
    let editor = h.hex.add_personal_token("acme", "bo@example.com");
    let basic = h.get_json("acme", "/v1/data-connections", &editor, 200).await;
    assert!(basic["values"][0].get("connectionDetails").is_none());

    let clickhouse = json!({ "name": "CH", "type": "clickhouse", "connectionDetails": { "clickhouse": {} } });
    assert_tsoa(&h.json(Method::POST, "/v1/data-connections", &token, Some(clickhouse), 422).await);
    let missing =
        json!({ "name": "PG", "type": "postgres", "connectionDetails": { "postgres": { "hostname": "h" } } });
    assert_tsoa(&h.json(Method::POST, "/v1/data-connections", &token, Some(missing), 400).await);
    let other_type = json!({ "connectionDetails": { "snowflake": { "warehouse": "w" } } });
    assert_tsoa(&h.json(Method::PATCH, &path, &token, Some(other_type), 422).await);
    let group = json!({ "sharing": { "groups": { "upsert": [{ "access": "QUERY", "group": { "id": uuid::Uuid::new_v4() } }] } } });
    assert_tsoa(&h.json(Method::PATCH, &path, &token, Some(group), 404).await);
    assert_coded(&h.get_json("acme", "/v1/data-connections/nope", &token, 404).await, "NOT_FOUND");
}

#[tokio::test]
async fn cells_keep_notebook_order_and_can_be_updated_and_deleted() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    let create = |kind: &str, key: &str, source: &str, location: Value| json!({ "projectId": project, "cellType": kind, "label": source, "contents": { key: { "source": source } }, "location": location });
    let first = h
        .json(Method::POST, "/v1/cells", &token, Some(create("CODE", "codeCell", "a = 1", json!({}))), 200)
        .await;
    let last = h
        .json(
            Method::POST,
            "/v1/cells",
            &token,
            Some(create("MARKDOWN", "markdownCell", "# End", json!({}))),
            200,
        )
        .await;
    let between = create("CODE", "codeCell", "b = 2", json!({ "insertAfterCellId": first["id"] }));
    let middle = h.json(Method::POST, "/v1/cells", &token, Some(between), 200).await;
    let list = h.get_json("acme", &format!("/v1/cells?projectId={project}"), &token, 200).await;
    let order: Vec<&Value> = list["values"].as_array().unwrap().iter().map(|c| &c["id"]).collect();
    assert_eq!(order, [&first["id"], &middle["id"], &last["id"]]);

    let mismatched = create("SQL", "codeCell", "select 1", json!({}));
    assert_coded(&h.json(Method::POST, "/v1/cells", &token, Some(mismatched), 400).await, "BAD_REQUEST");
    let path = format!("/v1/cells/{}", middle["staticId"].as_str().unwrap());
    let update = json!({ "contents": { "codeCell": { "source": "b = 3" } } });
    assert_eq!(
        h.json(Method::PATCH, &path, &token, Some(update), 200).await["contents"]["codeCell"]["source"],
        "b = 3"
    );
    let wrong = json!({ "contents": { "sqlCell": { "source": "select 1" } } });
    assert_coded(&h.json(Method::PATCH, &path, &token, Some(wrong), 400).await, "BAD_REQUEST");
    assert_eq!(h.json(Method::DELETE, &path, &token, None, 200).await["cellId"], middle["id"]);
    assert_coded(&h.get_json("acme", &path, &token, 404).await, "NOT_FOUND");
    assert_coded(&h.get_json("acme", "/v1/cells", &token, 400).await, "BAD_REQUEST");
}

#[tokio::test]
async fn queried_tables_and_schema_statuses_come_from_sql_cells() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    let connection = postgres(&h, &token, "Warehouse").await;
    sql_cell(
        &h,
        &token,
        &project,
        Some(&connection),
        "select * from sales.orders o join sales.users u on o.u = u.id",
    )
    .await;
    sql_cell(&h, &token, &project, Some(&connection), "select * from finance.orders").await;
    sql_cell(&h, &token, &project, None, "select * from ignored.table_without_connection").await;

    let tables = h.get_json("acme", &format!("/v1/projects/{project}/queriedTables"), &token, 200).await;
    let names: Vec<&str> =
        tables["values"].as_array().unwrap().iter().map(|t| t["tableName"].as_str().unwrap()).collect();
    assert_eq!(names, ["sales.orders", "sales.users", "finance.orders"]);
    assert_eq!(tables["values"][0]["dataConnectionName"], "Warehouse");

    let path = format!("/v1/data-connections/{connection}/schema");
    let good = json!({ "updates": [
        { "type": "TABLE", "name": "users", "status": "Endorsed" },
        { "type": "SCHEMA", "name": "finance", "status": null },
        { "type": "DATABASE", "name": "analytics", "status": "Deprecated" },
    ] });
    let updated = h.json(Method::PATCH, &path, &token, Some(good), 200).await;
    assert_eq!(updated["updated"]["tables"], json!([{ "name": "sales.users", "status": "Endorsed" }]));
    assert_eq!(updated["updated"]["databases"], json!([{ "name": "analytics", "status": "Deprecated" }]));
    let ambiguous = json!({ "updates": [{ "type": "TABLE", "name": "orders", "status": "Endorsed" }] });
    let refused = h.json(Method::PATCH, &path, &token, Some(ambiguous), 400).await;
    assert_eq!(refused["details"][0]["reason"], "ambiguous_name");
    let missing = json!({ "updates": [{ "type": "TABLE", "name": "nowhere", "status": null }] });
    assert_eq!(
        h.json(Method::PATCH, &path, &token, Some(missing), 404).await["details"][0]["reason"],
        "not_found"
    );
}

#[tokio::test]
async fn a_sql_cell_output_echoes_its_query_or_reports_a_missing_connection() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    let connection = postgres(&h, &token, "Warehouse").await;
    let connected = sql_cell(&h, &token, &project, Some(&connection), "select 42").await;
    let output = h
        .get_json("acme", &format!("/v1/cells/{}/output", connected["id"].as_str().unwrap()), &token, 200)
        .await;
    assert_eq!(output["result"]["rows"], json!([{ "query": "select 42" }]));
    let loose = sql_cell(&h, &token, &project, None, "select 1").await;
    let output = h
        .get_json("acme", &format!("/v1/cells/{}/output", loose["staticId"].as_str().unwrap()), &token, 200)
        .await;
    assert_eq!(output["result"]["type"], "cell_run_error");
    let code =
        json!({ "projectId": project, "cellType": "CODE", "contents": { "codeCell": { "source": "x" } } });
    let code = h.json(Method::POST, "/v1/cells", &token, Some(code), 200).await;
    assert_coded(
        &h.get_json("acme", &format!("/v1/cells/{}/output", code["id"].as_str().unwrap()), &token, 400).await,
        "BAD_REQUEST",
    );
}

#[tokio::test]
async fn chart_images_are_pngs_of_the_size_asked_for() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    let chart = h.hex.add_chart_cell("acme", &project, "Revenue by month").unwrap();
    let image = h
        .get_json(
            "acme",
            &format!("/v1/cells/{}/image?width=400&height=300&includeTitle=true", chart.id),
            &token,
            200,
        )
        .await;
    assert_eq!(image["mimeType"], "image/png");
    let png = unbase64(image["imageBase64"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(
        (
            u32::from_be_bytes(png[16..20].try_into().unwrap()),
            u32::from_be_bytes(png[20..24].try_into().unwrap())
        ),
        (400, 300)
    );
    assert_coded(
        &h.get_json("acme", &format!("/v1/cells/{}/image?width=50&height=50", chart.id), &token, 400).await,
        "BAD_REQUEST",
    );
    let sql = sql_cell(&h, &token, &project, None, "select 1").await;
    assert_coded(
        &h.get_json("acme", &format!("/v1/cells/{}/image", sql["id"].as_str().unwrap()), &token, 400).await,
        "BAD_REQUEST",
    );

    h.hex.set_run_durations(Duration::from_secs(60), Duration::from_secs(60));
    let pending = h.json(Method::POST, &format!("/v1/projects/{project}/runs"), &token, None, 201).await;
    let from_run = |run: &Value| {
        format!(
            "/v1/projects/{project}/runs/{}/cells/{}/image",
            run["runId"].as_str().unwrap(),
            chart.static_id
        )
    };
    assert_coded(&h.get_json("acme", &from_run(&pending), &token, 400).await, "BAD_REQUEST");
    h.hex.set_run_durations(Duration::ZERO, Duration::ZERO);
    let done = h.json(Method::POST, &format!("/v1/projects/{project}/runs"), &token, None, 201).await;
    let image = h.get_json("acme", &from_run(&done), &token, 200).await;
    assert_eq!(image["staticId"], chart.static_id.as_str());
    assert!(unbase64(image["imageBase64"].as_str().unwrap()).starts_with(b"\x89PNG"));
}

#[tokio::test]
async fn an_export_is_the_project_and_its_cells_as_yaml() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    sql_cell(&h, &token, &project, None, "select \"quoted\"").await;
    let export =
        h.json(Method::POST, "/v1/projects/export", &token, Some(json!({ "projectId": project })), 200).await;
    assert_eq!(export["filename"], "revenue.hex.yaml");
    let yaml = export["content"].as_str().unwrap();
    assert!(
        yaml.contains("title: \"Revenue\"") && yaml.contains("source: \"select \\\"quoted\\\"\""),
        "{yaml}"
    );
    let latest = json!({ "projectId": project, "version": "latest" });
    assert!(h.json(Method::POST, "/v1/projects/export", &token, Some(latest), 200).await["content"]
        .as_str()
        .unwrap()
        .contains("version: 1"));
    let missing = json!({ "projectId": project, "version": 2 });
    assert_coded(
        &h.json(Method::POST, "/v1/projects/export", &token, Some(missing), 400).await,
        "BAD_REQUEST",
    );
}

#[tokio::test]
async fn a_thread_answers_at_once_and_keeps_its_messages() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    let topic = h.hex.add_topic("acme", "Churn");
    let body = json!({ "prompt": "Why did churn rise?", "projectId": project });
    let created = h.json(Method::POST, "/v1/threads", &token, Some(body), 200).await;
    assert_eq!(created["projectId"], project.as_str());
    let id = created["threadId"].as_str().unwrap();
    let thread = h.get_json("acme", &format!("/v1/threads/{id}"), &token, 200).await;
    assert_eq!((thread["status"].as_str(), thread["type"].as_str()), (Some("IDLE"), Some("NOTEBOOK")));
    assert!(thread["response"][0]["text"].as_str().unwrap().contains("Why did churn rise?"));
    assert_eq!(thread["topics"], json!([{ "id": topic, "name": "Churn" }]));

    let follow_up = json!({ "prompt": "And last month?" });
    h.json(Method::POST, &format!("/v1/threads/{id}/followup"), &token, Some(follow_up), 200).await;
    let messages = h.get_json("acme", &format!("/v1/threads/{id}/messages?limit=2"), &token, 200).await;
    let texts: Vec<&str> =
        messages["content"].as_array().unwrap().iter().map(|b| b["text"].as_str().unwrap()).collect();
    assert_eq!(texts[0], "User: And last month?", "the most recent page, oldest first");
    assert!(texts[1].starts_with("Assistant: "));
    let before = messages["pagination"]["before"].as_str().unwrap();
    let older =
        h.get_json("acme", &format!("/v1/threads/{id}/messages?limit=2&before={before}"), &token, 200).await;
    assert_eq!(older["content"][0]["text"], "User: Why did churn rise?");

    h.json(Method::POST, "/v1/threads", &token, Some(json!({ "prompt": "Plain question" })), 200).await;
    let notebooks = h.get_json("acme", "/v1/threads?type=NOTEBOOK", &token, 200).await;
    assert_eq!(notebooks["threads"].as_array().unwrap().len(), 1);
    let by_topic = h.get_json("acme", &format!("/v1/threads?topicIds={topic}"), &token, 200).await;
    assert_eq!(by_topic["threads"][0]["id"], id);
    let topics = h.get_json("acme", "/v1/context/topics", &token, 200).await;
    assert_eq!(topics["topics"], json!([{ "id": topic, "name": "Churn" }]));
    assert_coded(
        &h.get_json("acme", &format!("/v1/threads/{}", uuid::Uuid::new_v4()), &token, 404).await,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn guide_drafts_are_upserted_listed_published_and_deleted() {
    let h = Harness::start().await;
    let (token, _) = setup(&h).await;
    let github = json!({ "source": "github", "owner": "acme", "repo": "guides", "branch": "main", "commitHash": "abc", "path": "a.md" });
    let files = json!({ "files": [
        { "filePath": "a.md", "contents": "# A", "externalSource": github },
        { "filePath": "b.md", "contents": "# B" },
    ] });
    let upserted = h.json(Method::PUT, "/v1/guides/draft", &token, Some(files), 200).await;
    let (a, b) = (upserted["files"][0]["id"].clone(), upserted["files"][1]["id"].clone());
    let drafts = h.get_json("acme", "/v1/guides/draft/list", &token, 200).await;
    assert_eq!(drafts["values"].as_array().unwrap().len(), 2);
    let from_github = h.get_json("acme", "/v1/guides/draft/list?externalSource=github", &token, 200).await;
    assert_eq!(from_github["values"], json!([{ "id": a, "filePath": "a.md" }]));

    // A hand edit does not overwrite a synced guide unless forced.
    let by_hand = json!({ "files": [{ "filePath": "a.md", "contents": "# Mine" }] });
    let skipped = h.json(Method::PUT, "/v1/guides/draft", &token, Some(by_hand.clone()), 200).await;
    assert_eq!(
        (skipped["files"].as_array().unwrap().len(), skipped["warnings"].as_array().unwrap().len()),
        (0, 1)
    );
    let mut forced = by_hand;
    forced["forceWrite"] = json!(true);
    assert_eq!(h.json(Method::PUT, "/v1/guides/draft", &token, Some(forced), 200).await["files"][0]["id"], a);

    let published = h
        .json(Method::POST, "/v1/guides/publish", &token, Some(json!({ "orgGuideFileIds": [a] })), 200)
        .await;
    assert_eq!(published["publishedGuides"], json!([{ "id": a, "filePath": "a.md" }]));
    let drafts = h.get_json("acme", "/v1/guides/draft/list", &token, 200).await;
    assert_eq!(drafts["values"], json!([{ "id": b, "filePath": "b.md" }]));
    let path = format!("/v1/guides/draft/{}", b.as_str().unwrap());
    assert_eq!(h.json(Method::DELETE, &path, &token, None, 204).await, Value::Null);
    assert_tsoa(&h.json(Method::DELETE, &path, &token, None, 404).await);
    let everything = h.json(Method::POST, "/v1/guides/publish", &token, Some(json!({})), 200).await;
    assert_eq!(everything["publishedGuides"], json!([]));
}

#[tokio::test]
async fn semantic_ingest_lists_what_it_synced_and_takes_zip_uploads() {
    let h = Harness::start().await;
    let (token, _) = setup(&h).await;
    let id = h.hex.add_semantic_project("acme", "Metrics", &["orders"], &["revenue"]);
    let ingest = format!("/v1/semantic-models/{id}/ingest");
    let synced = h.json(Method::POST, &ingest, &token, Some(json!({ "debug": true })), 201).await;
    assert_eq!(synced["contents"], json!(["dataset:orders", "view:revenue"]));
    assert!(synced["debug"].is_object());
    let quiet = h.json(Method::POST, &ingest, &token, Some(json!({ "verbose": false })), 201).await;
    assert_eq!(quiet["contents"], json!([]));

    let upload = |content_type: &'static str, bytes: &'static [u8]| {
        h.client
            .post(h.url("acme", &ingest))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(bytes)
            .send()
    };
    assert_eq!(upload("application/zip", b"PK\x03\x04rest-of-a-zip").await.unwrap().status(), 201);
    assert_eq!(upload("application/octet-stream", b"not a zip").await.unwrap().status(), 400);
    let unsupported = upload("text/plain", b"hello").await.unwrap();
    assert_eq!(unsupported.status(), 415);
    assert_tsoa(&unsupported.json().await.unwrap());
}
