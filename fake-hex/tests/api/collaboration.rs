//! The people side of the model: users, groups, collections, project sharing, new projects and
//! presigned embedding URLs. What is created is readable and listable afterwards, what is deleted
//! is gone, and unknown ids are a 404 in the endpoint's style.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{assert_coded, assert_plain_401, assert_tsoa, Harness};

async fn admin(h: &Harness) -> String {
    h.hex.set_rate_limits(fake_hex::RateLimits::unlimited());
    h.hex.add_personal_token("acme", "ada@example.com")
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_group_is_readable_listable_editable_and_gone_once_deleted() {
    let h = Harness::start().await;
    let token = admin(&h).await;
    let (bo, cy) =
        (h.hex.add_user("acme", "bo@example.com", None), h.hex.add_user("acme", "cy@example.com", None));
    let members = json!({ "users": [{ "id": bo }] });
    let group = h
        .json(
            Method::POST,
            "/v1/groups",
            &token,
            Some(json!({ "name": "Analysts", "members": members })),
            201,
        )
        .await;
    assert_eq!(group["members"], json!({ "users": [{ "id": bo }] }));
    let id = group["id"].as_str().unwrap();
    let path = format!("/v1/groups/{id}");
    assert_eq!(h.get_json("acme", &path, &token, 200).await["name"], "Analysts");
    assert_eq!(ids(&h.get_json("acme", "/v1/groups", &token, 200).await, "values"), [id]);

    let edit = json!({ "name": "Data", "members": { "add": { "users": [{ "id": cy }] }, "remove": { "users": [{ "id": bo }] } } });
    assert_eq!(h.json(Method::PATCH, &path, &token, Some(edit), 200).await["name"], "Data");
    let members = h.get_json("acme", &format!("/v1/users?groupId={id}"), &token, 200).await;
    assert_eq!(ids(&members, "values"), [cy]);

    let stranger = json!({ "members": { "add": { "users": [{ "id": uuid::Uuid::new_v4() }] } } });
    assert_tsoa(&h.json(Method::PATCH, &path, &token, Some(stranger), 400).await);
    assert_eq!(h.json(Method::DELETE, &path, &token, None, 204).await, Value::Null);
    assert_tsoa(&h.get_json("acme", &path, &token, 404).await);
    assert!(ids(&h.get_json("acme", "/v1/groups", &token, 200).await, "values").is_empty());
    assert_tsoa(&h.json(Method::DELETE, &path, &token, None, 404).await);
    assert_tsoa(&h.get_json("acme", "/v1/groups/not-a-uuid", &token, 400).await);
}

#[tokio::test]
async fn users_are_listed_by_name_or_email_page_by_page() {
    let h = Harness::start().await;
    let token = admin(&h).await;
    h.hex.add_user("acme", "zed@example.com", Some("Aaron"));
    h.hex.add_user("acme", "amy@example.com", Some("Zoe"));
    let names = |list: &Value| -> Vec<String> {
        list["values"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap().to_owned()).collect()
    };
    let by_name = h.get_json("acme", "/v1/users", &token, 200).await;
    // Aaron, ada@example.com (no name: sorted by email), Zoe.
    assert_eq!(names(&by_name), ["zed@example.com", "ada@example.com", "amy@example.com"]);
    assert!(by_name["values"][0]["lastLoginDate"].is_null(), "never signed in");
    let by_email = h.get_json("acme", "/v1/users?sortBy=EMAIL&sortDirection=DESC", &token, 200).await;
    assert_eq!(names(&by_email), ["zed@example.com", "amy@example.com", "ada@example.com"]);

    let first = h.get_json("acme", "/v1/users?limit=2", &token, 200).await;
    let after = first["pagination"]["after"].as_str().unwrap();
    let rest = h.get_json("acme", &format!("/v1/users?limit=2&after={after}"), &token, 200).await;
    assert_eq!(names(&rest), ["amy@example.com"]);
    assert!(rest["pagination"]["after"].is_null());
    let projects_cursor = "66616b656865783a70726f6a6563743a31";
    assert_coded(
        &h.get_json("acme", &format!("/v1/users?after={projects_cursor}"), &token, 400).await,
        "BAD_REQUEST",
    );
}

#[tokio::test]
async fn a_deactivated_user_leaves_the_list_and_their_token_stops_working() {
    let h = Harness::start().await;
    let token = admin(&h).await;
    let bo_token = h.hex.add_personal_token("acme", "bo@example.com");
    let bo = h.get_json("acme", "/v1/users/me", &bo_token, 200).await["id"].as_str().unwrap().to_owned();
    // Editors cannot deactivate anyone, and nobody can deactivate themselves.
    let ada = h.get_json("acme", "/v1/users/me", &token, 200).await["id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.call(Method::POST, "acme", &format!("/v1/users/{ada}/deactivate"), Some(&bo_token)).await.status(),
        403
    );
    assert_eq!(
        h.call(Method::POST, "acme", &format!("/v1/users/{ada}/deactivate"), Some(&token)).await.status(),
        400
    );

    let done = h.json(Method::POST, &format!("/v1/users/{bo}/deactivate"), &token, None, 200).await;
    assert_eq!(done["user"]["email"], "bo@example.com");
    assert_plain_401(h.get("acme", "/v1/users/me", &bo_token).await).await;
    assert_eq!(ids(&h.get_json("acme", "/v1/users", &token, 200).await, "values"), [ada]);
    let unknown = uuid::Uuid::new_v4();
    assert_coded(
        &h.json(Method::POST, &format!("/v1/users/{unknown}/deactivate"), &token, None, 404).await,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn a_collection_is_created_read_listed_and_edited() {
    let h = Harness::start().await;
    let token = admin(&h).await;
    let bo = h.hex.add_user("acme", "bo@example.com", None);
    let sharing = json!({ "users": [{ "id": bo, "access": "VIEW" }], "workspace": { "members": "VIEW" } });
    let body = json!({ "name": "Finance", "description": "Money", "sharing": sharing });
    let created = h.json(Method::POST, "/v1/collections", &token, Some(body), 201).await;
    assert_eq!(created["creator"]["email"], "ada@example.com");
    assert_eq!(created["sharing"]["users"], json!([{ "access": "VIEW", "id": bo }]));
    let id = created["id"].as_str().unwrap();
    h.json(Method::POST, "/v1/collections", &token, Some(json!({ "name": "Analytics" })), 201).await;

    let path = format!("/v1/collections/{id}");
    assert_eq!(h.get_json("acme", &path, &token, 200).await, created);
    let edit =
        json!({ "name": "Treasury", "sharing": { "upsert": { "users": [{ "id": bo, "access": "NONE" }] } } });
    let edited = h.json(Method::PATCH, &path, &token, Some(edit), 200).await;
    assert_eq!((edited["name"].as_str(), edited["description"].as_str()), (Some("Treasury"), Some("Money")));
    assert_eq!(edited["sharing"]["users"], json!([]));
    let list = h.get_json("acme", "/v1/collections", &token, 200).await;
    let names: Vec<&str> =
        list["values"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Analytics", "Treasury"]);
    assert_tsoa(&h.get_json("acme", &format!("/v1/collections/{}", uuid::Uuid::new_v4()), &token, 404).await);
}

#[tokio::test]
async fn sharing_edits_show_in_the_project_and_unknown_grantees_come_back_as_errors() {
    let h = Harness::start().await;
    let token = admin(&h).await;
    let project = h.hex.add_project("acme", "Revenue");
    let bo = h.hex.add_user("acme", "bo@example.com", None);
    let stranger = uuid::Uuid::new_v4().to_string();
    let users = json!({ "sharing": { "upsert": { "users": [
        { "user": { "id": bo }, "access": "CAN_EDIT" }, { "user": { "id": stranger }, "access": "CAN_VIEW" },
    ] } } });
    let shared = h
        .json(Method::PATCH, &format!("/v1/projects/{project}/sharing/users"), &token, Some(users), 200)
        .await;
    assert_eq!(shared["errors"][0]["userIds"], json!([stranger]));
    let emails = &shared["project"]["sharing"]["users"];
    assert_eq!(emails[1], json!({ "user": { "email": "bo@example.com" }, "access": "CAN_EDIT" }));

    let group = h.json(Method::POST, "/v1/groups", &token, Some(json!({ "name": "Analysts" })), 201).await;
    let groups = json!({ "sharing": { "upsert": { "groups": [{ "group": { "id": group["id"] }, "access": "APP_ONLY" }] } } });
    h.json(Method::PATCH, &format!("/v1/projects/{project}/sharing/groups"), &token, Some(groups), 200).await;
    let collection =
        h.json(Method::POST, "/v1/collections", &token, Some(json!({ "name": "Finance" })), 201).await;
    let collections = json!({ "sharing": { "upsert": { "collections": [
        { "collection": { "id": collection["id"] }, "access": "CAN_VIEW" },
    ] } } });
    h.json(
        Method::PATCH,
        &format!("/v1/projects/{project}/sharing/collections"),
        &token,
        Some(collections),
        200,
    )
    .await;
    let public = json!({ "sharing": { "workspace": "NONE", "publicWeb": "FULL_ACCESS" } });
    let path = format!("/v1/projects/{project}/sharing/workspaceAndPublic");
    let answer = h.json(Method::PATCH, &path, &token, Some(public), 200).await;
    assert_eq!(answer["errors"][0]["type"], "publicWeb");

    let sharing = h
        .get_json("acme", &format!("/v1/projects/{project}?includeSharing=true"), &token, 200)
        .await["sharing"]
        .clone();
    assert_eq!(sharing["groups"], json!([{ "group": { "name": "Analysts" }, "access": "APP_ONLY" }]));
    assert_eq!(
        sharing["collections"],
        json!([{ "collection": { "name": "Finance" }, "access": "CAN_VIEW" }])
    );
    assert_eq!(
        (sharing["workspace"]["access"].as_str(), sharing["publicWeb"]["access"].as_str()),
        (Some("NONE"), Some("NONE"))
    );
    let in_collection = h
        .get_json(
            "acme",
            &format!("/v1/projects?collectionId={}", collection["id"].as_str().unwrap()),
            &token,
            200,
        )
        .await;
    assert_eq!(ids(&in_collection, "values"), [project]);
    let unknown = format!("/v1/projects/{}/sharing/users", uuid::Uuid::new_v4());
    assert_coded(
        &h.json(
            Method::PATCH,
            &unknown,
            &token,
            Some(json!({ "sharing": { "upsert": { "users": [] } } })),
            404,
        )
        .await,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn a_created_project_is_a_draft_that_takes_statuses() {
    let h = Harness::start().await;
    let token = admin(&h).await;
    let body = json!({ "title": "Forecast", "description": "Next quarter" });
    let created = h.json(Method::POST, "/v1/projects", &token, Some(body), 201).await;
    assert!(created["lastPublishedAt"].is_null() && created["status"].is_null());
    assert_eq!(created["creator"]["email"], "ada@example.com");
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        h.get_json("acme", &format!("/v1/projects/{id}"), &token, 200).await["description"],
        "Next quarter"
    );
    let run = h.call(Method::POST, "acme", &format!("/v1/projects/{id}/runs"), Some(&token)).await;
    assert_eq!(run.status(), 422, "a draft has no published version to run");

    let path = format!("/v1/projects/{id}");
    let endorsed = h.json(Method::PATCH, &path, &token, Some(json!({ "status": "Endorsed" })), 200).await;
    assert_eq!(endorsed["status"], json!({ "name": "Endorsed" }));
    let filtered = h.get_json("acme", "/v1/projects?statuses=Endorsed", &token, 200).await;
    assert_eq!(ids(&filtered, "values"), [id]);
    assert_coded(
        &h.json(Method::PATCH, &path, &token, Some(json!({ "status": "Shiny" })), 400).await,
        "BAD_REQUEST",
    );
    assert!(
        h.json(Method::PATCH, &path, &token, Some(json!({ "status": null })), 200).await["status"].is_null()
    );
}

#[tokio::test]
async fn a_presigned_url_opens_once_then_is_gone() {
    let h = Harness::start().await;
    let token = admin(&h).await;
    let project = h.hex.add_project("acme", "Revenue <2024>");
    let body = json!({ "hexUserAttributes": { "tenant": "globex" }, "expiresIn": 60000 });
    let made = h
        .json(Method::POST, &format!("/v1/embedding/createPresignedUrl/{project}"), &token, Some(body), 200)
        .await;
    let url = made["url"].as_str().unwrap();
    let page = h.client.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Revenue &lt;2024&gt;") && html.contains("tenant: globex"), "{html}");
    assert_eq!(h.client.get(url).send().await.unwrap().status(), 410, "single use");

    let draft = h.json(Method::POST, "/v1/projects", &token, Some(json!({ "title": "Draft" })), 201).await;
    let draft_url = format!("/v1/embedding/createPresignedUrl/{}", draft["id"].as_str().unwrap());
    assert_tsoa(&h.json(Method::POST, &draft_url, &token, Some(json!({})), 422).await);
    let bad = json!({ "expiresIn": -5 });
    assert_tsoa(
        &h.json(Method::POST, &format!("/v1/embedding/createPresignedUrl/{project}"), &token, Some(bad), 400)
            .await,
    );
}
