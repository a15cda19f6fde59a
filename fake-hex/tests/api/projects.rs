//! ListProjects (cursor pagination, tsoa errors) and GetProject (coded errors).

use fake_hex::Scope;

use crate::support::{
    assert_coded, assert_conforms, assert_tsoa, component, is_hex_timestamp, response_schema, spec, Harness,
};

async fn workspace_with_projects(h: &Harness, n: usize) -> (String, Vec<String>) {
    let token = h.hex.add_workspace_token("acme", &[Scope::ProjectsRead]);
    let ids = (1..=n).map(|i| h.hex.add_project("acme", &format!("Project {i}"))).collect();
    (token, ids)
}

fn ids_of(page: &serde_json::Value) -> Vec<String> {
    page["values"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn pagination_walks_all_five_projects_two_at_a_time_newest_first() {
    let h = Harness::start().await;
    let (token, ids) = workspace_with_projects(&h, 5).await;

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut path = "/v1/projects?limit=2".to_owned();
    loop {
        let page = h.get_json("acme", &path, &token, 200).await;
        seen.extend(ids_of(&page));
        pages.push(page.clone());
        match page["pagination"]["after"].as_str() {
            Some(after) => path = format!("/v1/projects?limit=2&after={after}"),
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    let newest_first: Vec<String> = ids.into_iter().rev().collect();
    assert_eq!(seen, newest_first);
    assert_eq!(pages.len(), 3);
    assert!(pages[0]["pagination"]["before"].is_null());
    assert!(pages[2]["pagination"]["after"].is_null());

    // And back again from the last page.
    let before = pages[2]["pagination"]["before"].as_str().unwrap();
    let back = h.get_json("acme", &format!("/v1/projects?limit=2&before={before}"), &token, 200).await;
    assert_eq!(ids_of(&back), ids_of(&pages[1]));
}

#[tokio::test]
async fn the_default_page_holds_twenty_five_projects() {
    let h = Harness::start().await;
    let (token, _) = workspace_with_projects(&h, 26).await;
    let page = h.get_json("acme", "/v1/projects", &token, 200).await;
    assert_eq!(ids_of(&page).len(), 25);
    assert!(page["pagination"]["after"].is_string());
}

#[tokio::test]
async fn a_limit_out_of_range_gets_a_tsoa_400() {
    let h = Harness::start().await;
    let (token, _) = workspace_with_projects(&h, 1).await;
    for limit in ["0", "101", "-1", "ten", ""] {
        let path = format!("/v1/projects?limit={limit}");
        let body = h.get_json("acme", &path, &token, 400).await;
        assert_tsoa(&body);
    }
    assert_eq!(h.get("acme", "/v1/projects?limit=100", &token).await.status(), 200);
    assert_eq!(h.get("acme", "/v1/projects?limit=1", &token).await.status(), 200);
}

#[tokio::test]
async fn a_cursor_the_fake_did_not_make_gets_a_tsoa_400() {
    let h = Harness::start().await;
    let (token, _) = workspace_with_projects(&h, 1).await;
    let body = h.get_json("acme", "/v1/projects?after=bogus", &token, 400).await;
    assert_tsoa(&body);
}

#[tokio::test]
async fn projects_carry_every_field_the_spec_requires() {
    let h = Harness::start().await;
    let (token, ids) = workspace_with_projects(&h, 1).await;
    let list = h.get_json("acme", "/v1/projects", &token, 200).await;
    let one = h.get_json("acme", &format!("/v1/projects/{}", ids[0]), &token, 200).await;
    assert_eq!(list["values"][0], one);
    assert_eq!(one["title"], "Project 1");
    for field in ["createdAt", "lastEditedAt", "lastPublishedAt"] {
        assert!(is_hex_timestamp(one[field].as_str().unwrap()), "{field}: {one}");
    }
    assert!(one.get("sharing").is_none());
    let shared =
        h.get_json("acme", &format!("/v1/projects/{}?includeSharing=true", ids[0]), &token, 200).await;
    assert_eq!(shared["sharing"]["workspace"]["access"], "CAN_VIEW");

    {
        let spec = spec();
        assert_conforms(&list, &response_schema(&spec, "/v1/projects", "get", "200"));
        assert_conforms(&list["pagination"], &component(&spec, "PaginationApiResource"));
        assert_conforms(&list["values"][0], &component(&spec, "ProjectApiResource"));
        let get = response_schema(&spec, "/v1/projects/{projectId}", "get", "200");
        assert_conforms(&one, &get);
        assert_conforms(&shared["sharing"], &component(&spec, "SharingResource"));
    }
}

#[tokio::test]
async fn an_unknown_project_gets_a_coded_404() {
    let h = Harness::start().await;
    let (token, _) = workspace_with_projects(&h, 1).await;
    let unknown = uuid::Uuid::new_v4();
    for id in [unknown.to_string(), "not-a-uuid".to_owned()] {
        let body = h.get_json("acme", &format!("/v1/projects/{id}"), &token, 404).await;
        assert_coded(&body, "NOT_FOUND");
    }
}

#[tokio::test]
async fn a_workspace_sees_only_its_own_projects() {
    let h = Harness::start().await;
    let (token, _) = workspace_with_projects(&h, 2).await;
    let other = h.hex.add_project("globex", "Secret");
    let page = h.get_json("acme", "/v1/projects", &token, 200).await;
    assert_eq!(ids_of(&page).len(), 2);
    let body = h.get_json("acme", &format!("/v1/projects/{other}"), &token, 404).await;
    assert_coded(&body, "NOT_FOUND");
}
