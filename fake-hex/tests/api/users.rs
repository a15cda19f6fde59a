//! `GET /v1/users/me` for both kinds of token.

use chrono::{TimeDelta, Utc};
use fake_hex::{Scope, TokenKind, TokenSpec};

use crate::support::{assert_coded, assert_conforms, is_hex_timestamp, response_schema, spec, Harness};

#[tokio::test]
async fn a_personal_token_sees_its_user_and_expiry() {
    let h = Harness::start().await;
    let org_id = h.hex.add_workspace("acme");
    let expires_at = Utc::now() + TimeDelta::days(7);
    let token = h.hex.add_token(
        "acme",
        TokenSpec {
            kind: TokenKind::Personal { email: "ada@example.com".into(), name: Some("Ada Lovelace".into()) },
            scopes: vec![],
            expires_at: Some(expires_at),
            revoked: false,
        },
    );
    assert!(token.starts_with("hxtp_"));

    let me = h.get_json("acme", "/v1/users/me", &token, 200).await;
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["name"], "Ada Lovelace");
    assert_eq!(me["role"], "ADMIN");
    assert!(me["id"].as_str().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()));
    assert!(is_hex_timestamp(me["lastLoginDate"].as_str().unwrap()), "{me}");
    assert_eq!(me["org"]["id"], org_id.as_str());
    assert_eq!(me["token"]["exp"].as_i64(), Some(expires_at.timestamp()));
    {
        let spec = spec();
        let schema = response_schema(&spec, "/v1/users/me", "get", "200");
        assert_conforms(&me, &schema["anyOf"][0]);
    }
}

#[tokio::test]
async fn a_default_personal_token_expires_in_thirty_days() {
    let h = Harness::start().await;
    let token = h.hex.add_personal_token("acme", "ada@example.com");
    let me = h.get_json("acme", "/v1/users/me", &token, 200).await;
    let exp = me["token"]["exp"].as_i64().unwrap();
    let thirty_days = (Utc::now() + TimeDelta::days(30)).timestamp();
    assert!((thirty_days - exp).abs() < 60, "{me}");
    assert!(me["name"].is_null(), "name is required but nullable: {me}");
}

#[tokio::test]
async fn a_workspace_token_sees_only_the_org_and_a_null_expiry() {
    let h = Harness::start().await;
    let org_id = h.hex.add_workspace("acme");
    let token = h.hex.add_workspace_token("acme", &[Scope::UsersRead]);
    assert!(token.starts_with("hxtw_"));

    let me = h.get_json("acme", "/v1/users/me", &token, 200).await;
    assert_eq!(me, serde_json::json!({ "org": { "id": org_id }, "token": { "exp": null } }));
    {
        let spec = spec();
        let schema = response_schema(&spec, "/v1/users/me", "get", "200");
        assert_conforms(&me, &schema["anyOf"][1]);
    }
}

#[tokio::test]
async fn a_workspace_token_without_users_read_gets_a_json_403_from_users_me() {
    let h = Harness::start().await;
    let token = h.hex.add_workspace_token("acme", &[Scope::ProjectsRead]);
    let body = h.get_json("acme", "/v1/users/me", &token, 403).await;
    assert_coded(&body, "FORBIDDEN");
}
