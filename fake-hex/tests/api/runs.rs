//! Runs, in both path forms: start (201), status over time, cancel (204 → KILLED), list.

use std::time::Duration;

use fake_hex::{RateLimits, RunStatus, Scope};
use reqwest::Method;
use serde_json::Value;

use crate::support::{
    assert_coded, assert_conforms, assert_tsoa, is_hex_timestamp, response_schema, spec, Harness,
};

/// Hex's current plural paths and the legacy singular ones.
#[derive(Clone, Copy, Debug)]
enum Form {
    Plural,
    Legacy,
}

impl Form {
    const BOTH: [Form; 2] = [Form::Plural, Form::Legacy];

    fn start(self, project: &str) -> String {
        match self {
            Form::Plural => format!("/v1/projects/{project}/runs"),
            Form::Legacy => format!("/v1/project/{project}/run"),
        }
    }

    fn run(self, project: &str, run: &str) -> String {
        format!("{}/{run}", self.start(project))
    }

    fn list(self, project: &str) -> String {
        match self {
            Form::Plural => format!("/v1/projects/{project}/runs"),
            Form::Legacy => format!("/v1/project/{project}/runs"),
        }
    }
}

async fn setup(h: &Harness) -> (String, String) {
    let token = h.hex.add_workspace_token("acme", &[Scope::ProjectsRead, Scope::ProjectsRun]);
    let project = h.hex.add_project("acme", "Nightly");
    (token, project)
}

async fn start_run(h: &Harness, form: Form, project: &str, token: &str) -> Value {
    let response = h.call(Method::POST, "acme", &form.start(project), Some(token)).await;
    assert_eq!(response.status(), 201, "{form:?}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn starting_a_run_answers_201_with_ids_urls_and_an_integer_version() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    for form in Form::BOTH {
        let started = start_run(&h, form, &project, &token).await;
        assert_eq!(started["projectId"], project.as_str());
        assert_eq!(started["projectVersion"], 1);
        let run_id = started["runId"].as_str().unwrap();
        assert!(started["runUrl"].as_str().unwrap().contains(run_id));
        assert!(started["traceId"].is_string());
        // The status URL works as given.
        let status_url = started["runStatusUrl"].as_str().unwrap();
        assert_eq!(status_url, h.url("acme", &form.run(&project, run_id)));
        let status = h.client.get(status_url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(status.status(), 200, "{form:?}");

        {
            let spec = spec();
            let path = "/v1/projects/{projectId}/runs";
            assert_conforms(&started, &response_schema(&spec, path, "post", "201"));
        }
    }
}

#[tokio::test]
async fn a_run_moves_from_pending_to_running_to_completed() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    // Polling two runs every 50 ms passes Hex's 30 reads a minute.
    h.hex.set_rate_limits(RateLimits::unlimited());
    h.hex.set_run_durations(Duration::from_millis(700), Duration::from_millis(700));
    let runs: Vec<(Form, String)> = futures_util::future::join_all(Form::BOTH.map(|form| {
        let (h, project, token) = (&h, &project, &token);
        async move {
            let started = start_run(h, form, project, token).await;
            (form, started["runId"].as_str().unwrap().to_owned())
        }
    }))
    .await;

    // Poll both runs side by side, noting each status change.
    let mut statuses: Vec<Vec<String>> = vec![Vec::new(); runs.len()];
    let mut last = vec![Value::Null; runs.len()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        for (i, (form, run_id)) in runs.iter().enumerate() {
            let body = h.get_json("acme", &form.run(&project, run_id), &token, 200).await;
            let status = body["status"].as_str().unwrap().to_owned();
            if statuses[i].last() != Some(&status) {
                statuses[i].push(status);
            }
            last[i] = body;
        }
        if last.iter().all(|body| body["status"] == "COMPLETED") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for (((form, run_id), statuses), last) in runs.iter().zip(statuses).zip(last) {
        assert_eq!(statuses, ["PENDING", "RUNNING", "COMPLETED"], "{form:?}");
        assert_eq!(last["projectVersion"], "1", "a numeric string here");
        assert_eq!(last["runTrigger"], "API");
        assert!(is_hex_timestamp(last["startTime"].as_str().unwrap()));
        assert!(is_hex_timestamp(last["endTime"].as_str().unwrap()));
        assert_eq!(last["elapsedTime"].as_i64(), Some(700));
        assert_eq!(h.hex.run_status("acme", run_id), Some(RunStatus::Completed));

        {
            let spec = spec();
            let path = "/v1/projects/{projectId}/runs/{runId}";
            assert_conforms(&last, &response_schema(&spec, path, "get", "200"));
        }
    }
}

#[tokio::test]
async fn cancelling_a_run_answers_204_and_the_run_is_killed() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    h.hex.set_run_durations(Duration::from_secs(60), Duration::from_secs(60));
    for form in Form::BOTH {
        let started = start_run(&h, form, &project, &token).await;
        let run = form.run(&project, started["runId"].as_str().unwrap());
        let pending = h.get_json("acme", &run, &token, 200).await;
        assert_eq!(pending["status"], "PENDING");
        assert!(pending["startTime"].is_null() && pending["endTime"].is_null());

        let cancelled = h.call(Method::DELETE, "acme", &run, Some(&token)).await;
        assert_eq!(cancelled.status(), 204, "{form:?}");
        assert_eq!(cancelled.bytes().await.unwrap().len(), 0);

        let killed = h.get_json("acme", &run, &token, 200).await;
        assert_eq!(killed["status"], "KILLED", "{form:?}");
        assert!(is_hex_timestamp(killed["endTime"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn a_finished_run_cannot_be_cancelled() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    h.hex.set_run_durations(Duration::ZERO, Duration::ZERO);
    h.hex.set_run_outcome(RunStatus::Errored);
    let started = start_run(&h, Form::Plural, &project, &token).await;
    let run = Form::Plural.run(&project, started["runId"].as_str().unwrap());
    assert_eq!(h.get_json("acme", &run, &token, 200).await["status"], "ERRORED");
    let response = h.call(Method::DELETE, "acme", &run, Some(&token)).await;
    assert_eq!(response.status(), 422);
    assert_tsoa(&response.json().await.unwrap());
}

#[tokio::test]
async fn unknown_and_malformed_runs_are_refused_in_each_endpoints_style() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    let unknown = Form::Plural.run(&project, &uuid::Uuid::new_v4().to_string());
    assert_coded(&h.get_json("acme", &unknown, &token, 404).await, "NOT_FOUND");
    let deleted = h.call(Method::DELETE, "acme", &unknown, Some(&token)).await;
    assert_eq!(deleted.status(), 404);
    assert_tsoa(&deleted.json().await.unwrap());

    let malformed = Form::Plural.run(&project, "nope");
    assert_coded(&h.get_json("acme", &malformed, &token, 400).await, "BAD_REQUEST");
    let no_project = Form::Plural.start(&uuid::Uuid::new_v4().to_string());
    let response = h.call(Method::POST, "acme", &no_project, Some(&token)).await;
    assert_eq!(response.status(), 404);
    assert_coded(&response.json().await.unwrap(), "NOT_FOUND");
}

#[tokio::test]
async fn running_needs_the_run_scope() {
    let h = Harness::start().await;
    let project = h.hex.add_project("acme", "Nightly");
    let read_only = h.hex.add_workspace_token("acme", &[Scope::ProjectsRead]);
    let response = h.call(Method::POST, "acme", &Form::Plural.start(&project), Some(&read_only)).await;
    assert_eq!(response.status(), 403);
    assert_coded(&response.json().await.unwrap(), "FORBIDDEN");
}

#[tokio::test]
async fn a_run_body_with_input_params_is_accepted_and_a_bad_one_is_a_400() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    let url = h.url("acme", &Form::Plural.start(&project));
    let ok = h
        .client
        .post(&url)
        .bearer_auth(&token)
        .json(&serde_json::json!({ "inputParams": { "day": "2024-01-01" }, "updateCache": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let bad = h.client.post(&url).bearer_auth(&token).body("[1, 2]").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_coded(&bad.json().await.unwrap(), "BAD_REQUEST");
}

#[tokio::test]
async fn the_runs_list_pages_by_offset_and_filters_by_status() {
    let h = Harness::start().await;
    let (token, project) = setup(&h).await;
    h.hex.set_run_durations(Duration::from_secs(60), Duration::from_secs(60));
    let mut run_ids = Vec::new();
    for _ in 0..3 {
        run_ids.push(start_run(&h, Form::Plural, &project, &token).await["runId"].clone());
    }
    let first = Form::Plural.run(&project, run_ids[0].as_str().unwrap());
    h.call(Method::DELETE, "acme", &first, Some(&token)).await;

    for form in Form::BOTH {
        let list = form.list(&project);
        let page = h.get_json("acme", &format!("{list}?limit=2"), &token, 200).await;
        let runs = page["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0]["runId"], run_ids[2], "newest first");
        assert!(page["previousPage"].is_null());
        assert!(page["traceId"].is_string());
        let next = page["nextPage"].as_str().unwrap();
        let rest: Value = h.client.get(next).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!(rest["runs"].as_array().unwrap().len(), 1);
        assert_eq!(rest["runs"][0]["runId"], run_ids[0]);
        assert!(rest["nextPage"].is_null());
        assert!(rest["previousPage"].is_string());

        let killed = h.get_json("acme", &format!("{list}?statusFilter=KILLED"), &token, 200).await;
        assert_eq!(killed["runs"].as_array().unwrap().len(), 1);
        assert_eq!(killed["runs"][0]["status"], "KILLED");

        for bad in ["limit=0", "limit=101", "offset=-1", "statusFilter=DONE"] {
            let body = h.get_json("acme", &format!("{list}?{bad}"), &token, 400).await;
            assert_coded(&body, "BAD_REQUEST");
        }
        {
            let spec = spec();
            let path = "/v1/projects/{projectId}/runs";
            assert_conforms(&page, &response_schema(&spec, path, "get", "200"));
        }
    }
}
