//! Scopes: a workspace token gets a JSON 403 in the endpoint's style for each group of endpoints
//! it holds no scope for, and through where it does. Personal tokens hold every scope.

use fake_hex::{RateLimits, Scope};
use reqwest::Method;
use serde_json::json;

use crate::support::{assert_coded, assert_tsoa, Harness};

/// (scope, a GET the scope opens, whether the endpoint answers in the tsoa style)
const SAMPLE: [(Scope, &str, bool); 9] = [
    (Scope::ProjectsRead, "/v1/projects", true),
    (Scope::UsersRead, "/v1/users", false),
    (Scope::Groups, "/v1/groups", true),
    (Scope::Collections, "/v1/collections", true),
    (Scope::DataConnections, "/v1/data-connections", false),
    (Scope::Cells, "/v1/cells?projectId={project}", false),
    (Scope::Guides, "/v1/guides/draft/list", false),
    (Scope::Threads, "/v1/threads", false),
    (Scope::ProjectsQueriedTables, "/v1/projects/{project}/queriedTables", true),
];

#[tokio::test]
async fn each_endpoint_group_needs_its_own_scope() {
    let h = Harness::start().await;
    h.hex.set_rate_limits(RateLimits::unlimited());
    let project = h.hex.add_project("acme", "Revenue");
    for (scope, path, tsoa) in SAMPLE {
        let path = path.replace("{project}", &project);
        let others: Vec<Scope> = Scope::all().into_iter().filter(|s| *s != scope).collect();
        let without = h.hex.add_workspace_token("acme", &others);
        let response = h.get("acme", &path, &without).await;
        assert_eq!(response.status(), 403, "{path} without {scope:?}");
        let body = response.json().await.unwrap();
        if tsoa {
            assert_tsoa(&body);
        } else {
            assert_coded(&body, "FORBIDDEN");
        }
        let with = h.hex.add_workspace_token("acme", &[scope]);
        assert_eq!(h.get("acme", &path, &with).await.status(), 200, "{path} with {scope:?}");
    }
}

#[tokio::test]
async fn writes_need_write_scopes() {
    let h = Harness::start().await;
    let project = h.hex.add_project("acme", "Revenue");
    let read_only = h.hex.add_workspace_token("acme", &[Scope::ProjectsRead, Scope::UsersRead]);
    let create =
        h.send(Method::POST, "acme", "/v1/projects", &read_only, Some(&json!({ "title": "x" }))).await;
    assert_eq!(create.status(), 403);
    assert_coded(&create.json().await.unwrap(), "FORBIDDEN");
    let user = h.hex.add_user("acme", "bo@example.com", None);
    let deactivate =
        h.call(Method::POST, "acme", &format!("/v1/users/{user}/deactivate"), Some(&read_only)).await;
    assert_eq!(deactivate.status(), 403);
    let run = h.call(Method::POST, "acme", &format!("/v1/projects/{project}/runs"), Some(&read_only)).await;
    assert_eq!(run.status(), 403);
}

#[tokio::test]
async fn sharing_a_project_with_collections_needs_both_projects_write_and_collections() {
    let h = Harness::start().await;
    let project = h.hex.add_project("acme", "Revenue");
    let admin = h.hex.add_personal_token("acme", "ada@example.com");
    let collection =
        h.json(Method::POST, "/v1/collections", &admin, Some(json!({ "name": "Finance" })), 201).await;
    let body = json!({ "sharing": { "upsert": { "collections": [
        { "collection": { "id": collection["id"] }, "access": "CAN_VIEW" },
    ] } } });
    let path = format!("/v1/projects/{project}/sharing/collections");
    let write_only = h.hex.add_workspace_token("acme", &[Scope::ProjectsWrite]);
    let refused = h.send(Method::PATCH, "acme", &path, &write_only, Some(&body)).await;
    assert_eq!(refused.status(), 403);
    assert_tsoa(&refused.json().await.unwrap());
    let both = h.hex.add_workspace_token("acme", &[Scope::ProjectsWrite, Scope::Collections]);
    assert_eq!(h.send(Method::PATCH, "acme", &path, &both, Some(&body)).await.status(), 200);
}

#[tokio::test]
async fn roles_limit_personal_tokens_where_hex_says_so() {
    let h = Harness::start().await;
    let admin = h.hex.add_personal_token("acme", "ada@example.com");
    let editor = h.hex.add_personal_token("acme", "bo@example.com");
    // ListThreads needs the Manager role or higher.
    assert_eq!(h.get("acme", "/v1/threads", &admin).await.status(), 200);
    let refused = h.get("acme", "/v1/threads", &editor).await;
    assert_eq!(refused.status(), 403);
    assert_coded(&refused.json().await.unwrap(), "FORBIDDEN");
}
