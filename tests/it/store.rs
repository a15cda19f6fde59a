//! Every `Store` operation, on both backends, through the trait.

use crate::common;

use common::{Backend, TestDb};
use hexbroker::audit::{Action, AuditContext};
use hexbroker::auth::{Scope, Scopes};
use hexbroker::crypto::{Keyring, Sealed, TokenBinding};
use hexbroker::hex::TokenType;
use hexbroker::lifecycle::{Change, Status};
use hexbroker::store::{
    self, Applied, ConnectionChange, ConnectionFilter, Credentials, DynStore, Expect, HexIdentity, Inserted,
    NewApiKey, NewConnection,
};
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

fn sys() -> AuditContext {
    AuditContext::system(Action::StatusChange)
}

async fn update(
    store: &DynStore,
    tenant: &str,
    id: Uuid,
    change: ConnectionChange,
) -> Option<store::Connection> {
    store.apply(tenant, id, &Change::Updated(&change), &sys(), &Expect::default()).await.unwrap().done()
}

async fn open(backend: Backend) -> Option<(DynStore, TestDb)> {
    let db = TestDb::new(backend).await?;
    let store = store::open(&db.url, 4).await.expect("open and migrate");
    Some((store, db))
}

fn new_connection(tenant: &str, user: &str, fingerprint: u8) -> NewConnection {
    let id = Uuid::now_v7();
    let keyring = Keyring::parse(&Keyring::generate_entry()).unwrap();
    NewConnection {
        id,
        tenant: tenant.into(),
        end_user_id: user.into(),
        end_user_email: Some("ada@example.com".into()),
        label: Some("label".into()),
        metadata: json!({"k": "v"}),
        credentials: Credentials {
            subdomain: "acme".into(),
            hex_url: None,
            token_type: TokenType::Personal,
            token_hint: "hxtp_…abcd".into(),
            token_fingerprint: vec![fingerprint; 32],
            sealed: keyring.seal_token(
                TokenBinding { connection_id: id, tenant, subdomain: "acme", hex_url: None },
                &SecretString::from("hxtp_secret"),
            ),
            identity: HexIdentity {
                org_id: Some("org-1".into()),
                user_email: Some("ada@hex".into()),
                token_expires_at: Some(store::now() + chrono::Duration::days(30)),
            },
        },
    }
}

async fn migrations_apply_twice_and_ping_answers(backend: Backend) {
    let Some((store, db)) = open(backend).await else { return };
    store.ping().await.unwrap();
    let again = store::open(&db.url, 2).await.expect("migrations are idempotent");
    again.ping().await.unwrap();
}

async fn sealed_secrets_keep_the_first_writer(backend: Backend) {
    let Some((store, _db)) = open(backend).await else { return };
    assert!(store.sealed_secret("x").await.unwrap().is_none());
    let first = Sealed { key_id: "k1".into(), nonce: vec![1; 12], ciphertext: vec![2; 48], version: 1 };
    let second = Sealed { key_id: "k2".into(), nonce: vec![3; 12], ciphertext: vec![4; 48], version: 1 };
    store.insert_sealed_secret_if_absent("x", &first).await.unwrap();
    store.insert_sealed_secret_if_absent("x", &second).await.unwrap();
    assert_eq!(store.sealed_secret("x").await.unwrap(), Some(first));
}

async fn api_keys_are_stored_found_listed_and_revoked(backend: Backend) {
    let Some((store, _db)) = open(backend).await else { return };
    let new = NewApiKey {
        id: Uuid::now_v7(),
        tenant: "t1".into(),
        name: "ci".into(),
        prefix: "hxbk_abcdefg".into(),
        hash: vec![9; 32],
        scopes: Scopes::of(&[Scope::Proxy, Scope::ConnectionsRead]),
        connection_id: None,
        expires_at: None,
    };
    let stored = store.insert_api_key(&new, &sys()).await.unwrap();
    assert_eq!(stored.id, new.id);
    assert_eq!(stored.scopes, new.scopes);
    assert!(stored.is_usable(store::now()));
    let found = store.api_key_by_hash(&[9; 32]).await.unwrap().unwrap();
    assert_eq!((found.id, found.tenant.as_str(), found.name.as_str()), (new.id, "t1", "ci"));
    assert!(store.api_key_by_hash(&[8; 32]).await.unwrap().is_none());
    let duplicate = NewApiKey { id: Uuid::now_v7(), ..new.clone() };
    assert!(store.insert_api_key(&duplicate, &sys()).await.is_err(), "hashes are unique");
    assert_eq!(store.list_api_keys().await.unwrap().len(), 1);
    assert!(store.revoke_api_key(new.id, &sys()).await.unwrap());
    assert!(!store.revoke_api_key(new.id, &sys()).await.unwrap(), "revoking twice reports nothing to do");
    assert!(!store.api_key_by_hash(&[9; 32]).await.unwrap().unwrap().is_usable(store::now()));
}

async fn connections_round_trip_every_field(backend: Backend) {
    let Some((store, _db)) = open(backend).await else { return };
    let new = new_connection("t1", "u1", 1);
    let Inserted::Created(c) = store.insert_connection(&new, &sys()).await.unwrap() else {
        panic!("created")
    };
    assert_eq!(c.id, new.id);
    assert_eq!(c.end_user_email.as_deref(), Some("ada@example.com"));
    assert_eq!(c.metadata, json!({"k": "v"}));
    assert_eq!(c.token_type, TokenType::Personal);
    assert_eq!(c.hex_org_id.as_deref(), Some("org-1"));
    assert_eq!(c.token_expires_at, new.credentials.identity.token_expires_at);
    assert_eq!(c.status, Status::Active);
    assert!(c.last_verified_at.is_some());

    let row = store.connection_with_token("t1", new.id).await.unwrap().unwrap();
    let (read, sealed) = &*row;
    assert_eq!(read.created_at, c.created_at);
    assert_eq!(sealed, &new.credentials.sealed);
    assert!(store.connection("t2", new.id).await.unwrap().is_none(), "tenants are walls");
    assert!(store.connection_with_token("t2", new.id).await.unwrap().is_none());
}

async fn the_same_fingerprint_is_one_connection(backend: Backend) {
    let Some((store, _db)) = open(backend).await else { return };
    let first = new_connection("t1", "u1", 7);
    store.insert_connection(&first, &sys()).await.unwrap();
    let again = new_connection("t1", "u1", 7);
    let Inserted::Existing(existing) = store.insert_connection(&again, &sys()).await.unwrap() else {
        panic!("existing")
    };
    assert_eq!(existing.id, first.id);
    let found = store.connection_by_fingerprint("t1", "u1", "acme", &[7; 32]).await.unwrap().unwrap();
    assert_eq!(found.id, first.id);
    assert!(store.connection_by_fingerprint("t1", "u2", "acme", &[7; 32]).await.unwrap().is_none());
    let Inserted::Created(_) = store.insert_connection(&new_connection("t1", "u2", 7), &sys()).await.unwrap()
    else {
        panic!("created")
    };
}

async fn connections_page_and_filter(backend: Backend) {
    let Some((store, _db)) = open(backend).await else { return };
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let mut c = new_connection("t1", if i < 3 { "a" } else { "b" }, i);
        if i == 4 {
            c.credentials.identity.token_expires_at = Some(store::now() - chrono::Duration::hours(1));
        }
        store.insert_connection(&c, &sys()).await.unwrap();
        ids.push(c.id);
    }
    store.insert_connection(&new_connection("t2", "a", 99), &sys()).await.unwrap();
    let list = |filter: ConnectionFilter| {
        let store = store.clone();
        async move {
            store.list_connections("t1", &filter).await.unwrap().into_iter().map(|c| c.id).collect::<Vec<_>>()
        }
    };
    let all = list(ConnectionFilter { limit: 10, ..Default::default() }).await;
    assert_eq!(all, ids.iter().rev().copied().collect::<Vec<_>>());
    let page = list(ConnectionFilter { limit: 2, before_id: Some(ids[3]), ..Default::default() }).await;
    assert_eq!(page, vec![ids[2], ids[1]]);
    let of_a =
        list(ConnectionFilter { limit: 10, end_user_id: Some("a".into()), ..Default::default() }).await;
    assert_eq!(of_a.len(), 3);
    let expired =
        list(ConnectionFilter { limit: 10, status: Some(Status::Expired), ..Default::default() }).await;
    assert_eq!(expired, vec![ids[4]]);
    let active =
        list(ConnectionFilter { limit: 10, status: Some(Status::Active), ..Default::default() }).await;
    assert_eq!(active.len(), 4);
}

async fn connections_are_verified_updated_and_deleted(backend: Backend) {
    let Some((store, _db)) = open(backend).await else { return };
    let new = new_connection("t1", "u1", 3);
    store.insert_connection(&new, &sys()).await.unwrap();
    let identity = HexIdentity { org_id: Some("org-2".into()), user_email: None, token_expires_at: None };
    let verify = |tenant: &'static str| {
        let (store, identity) = (store.clone(), identity.clone());
        async move {
            store
                .apply(tenant, new.id, &Change::Verified(&identity), &sys(), &Expect::default())
                .await
                .unwrap()
        }
    };
    let verified = verify("t1").await.done().unwrap();
    assert_eq!(verified.hex_org_id.as_deref(), Some("org-2"));
    assert!(verified.token_expires_at.is_none());
    assert!(matches!(verify("t2").await, Applied::Missing));

    let relabelled = update(
        &store,
        "t1",
        new.id,
        ConnectionChange { label: Some(Some("new".into())), ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!(relabelled.label.as_deref(), Some("new"));
    assert_eq!(relabelled.metadata, json!({"k": "v"}));
    let remeta = update(
        &store,
        "t1",
        new.id,
        ConnectionChange {
            metadata: Some(json!({"x": [1, 2]})),
            rate_limit_per_minute: Some(Some(7)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(remeta.label.as_deref(), Some("new"));
    assert_eq!(remeta.metadata, json!({"x": [1, 2]}));
    assert_eq!(remeta.rate_limit_per_minute, Some(7));
    let cleared = update(
        &store,
        "t1",
        new.id,
        ConnectionChange { label: Some(None), rate_limit_per_minute: Some(None), ..Default::default() },
    )
    .await
    .unwrap();
    assert!(cleared.label.is_none());
    assert!(cleared.rate_limit_per_minute.is_none());
    assert!(update(
        &store,
        "t2",
        new.id,
        ConnectionChange { label: Some(Some("x".into())), ..Default::default() }
    )
    .await
    .is_none());

    let delete = |tenant: &'static str| {
        let store = store.clone();
        async move { store.apply(tenant, new.id, &Change::Deleted, &sys(), &Expect::default()).await.unwrap() }
    };
    assert!(matches!(delete("t2").await, Applied::Missing));
    assert!(matches!(delete("t1").await, Applied::Done(_)));
    assert!(matches!(delete("t1").await, Applied::Missing));
    assert!(store.connection("t1", new.id).await.unwrap().is_none());
}

async fn each_change_emits_its_events_once_and_conditions_hold(backend: Backend) {
    let Some((store, _db)) = open(backend).await else { return };
    let mut new = new_connection("t1", "u1", 5);
    new.credentials.identity.token_expires_at = Some(store::now() - chrono::Duration::minutes(1));
    store.insert_connection(&new, &sys()).await.unwrap();
    let events = |store: DynStore| async move {
        let filter = hexbroker::events::EventFilter { limit: 50, ..Default::default() };
        let listed = store.list_events("t1", &filter).await.unwrap();
        listed.into_iter().rev().map(|e| e.kind.as_str()).collect::<Vec<_>>()
    };
    let apply = |change: Change<'static>, expect: Expect| {
        let store = store.clone();
        async move { store.apply("t1", new.id, &change, &sys(), &expect).await.unwrap() }
    };
    // Past its expiry but stored active: the watcher's write stores `expired`, once.
    let Applied::Done(expired) = apply(Change::Expired, Expect::default()).await else { panic!("done") };
    assert_eq!(expired.status, Status::Expired);
    apply(Change::Expired, Expect::default()).await;
    assert_eq!(events(store.clone()).await, ["connection.created", "connection.expired"]);

    // Conditions: another token's failure, or a status that moved on, write nothing.
    let other_token = Expect { token_nonce: Some(vec![0; 12]), status: None };
    assert!(matches!(apply(Change::Refused("revoked"), other_token).await, Applied::Unmet(_)));
    let was_active = Expect { token_nonce: None, status: Some(Status::Active) };
    assert!(matches!(apply(Change::Refused("revoked"), was_active).await, Applied::Unmet(_)));
    let this_token =
        Expect { token_nonce: Some(new.credentials.sealed.nonce.clone()), status: Some(Status::Expired) };
    static IDENTITY: HexIdentity = HexIdentity { org_id: None, user_email: None, token_expires_at: None };
    let Applied::Done(back) = apply(Change::Verified(&IDENTITY), this_token).await else { panic!("done") };
    assert_eq!(back.status, Status::Active);
    assert_eq!(
        events(store.clone()).await,
        ["connection.created", "connection.expired", "connection.reactivated"]
    );

    let filter = hexbroker::audit::AuditFilter { limit: 50, ..Default::default() };
    let trail = store.list_audit("t1", &filter).await.unwrap();
    let details: Vec<Option<&str>> = trail.iter().rev().map(|e| e.detail.as_deref()).collect();
    assert_eq!(details, [None, Some("active -> expired"), None, Some("expired -> active")]);
    assert!(store.list_audit("t2", &filter).await.unwrap().is_empty(), "tenants are walls");
}

async fn pruning_drops_old_audit_entries_and_delivered_events_only(backend: Backend) {
    let Some((store, _db)) = open(backend).await else { return };
    let (first, second) = (new_connection("t1", "u1", 1), new_connection("t1", "u2", 2));
    store.insert_connection(&first, &sys()).await.unwrap();
    store.insert_connection(&second, &sys()).await.unwrap();
    let lease = store::now() + chrono::Duration::seconds(30);
    let claimed = store.claim_events(lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(store.claim_events(lease, 10).await.unwrap().is_empty(), "a claimed event is not claimed twice");
    let outcome = |error: Option<&str>| hexbroker::events::endpoints::AttemptOutcome {
        id: Uuid::now_v7(),
        at: store::now(),
        status_code: Some(if error.is_some() { 500 } else { 200 }),
        duration_ms: 1,
        error: error.map(str::to_owned),
        detail: error.map(str::to_owned),
        retry_at: None,
    };
    store.record_attempt(&claimed[0], &outcome(None)).await.unwrap();
    store.record_attempt(&claimed[1], &outcome(Some("the receiver answered 500"))).await.unwrap();

    assert_eq!(
        store.prune(store::now() - chrono::Duration::hours(1)).await.unwrap(),
        0,
        "nothing is old yet"
    );
    let pruned = store.prune(store::now() + chrono::Duration::seconds(1)).await.unwrap();
    assert_eq!(pruned, 2 + 1, "both audit entries and the delivered event");
    let filter = hexbroker::events::EventFilter { limit: 10, ..Default::default() };
    let left = store.list_events("t1", &filter).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].id, left[0].state.as_str()),
        (claimed[1].event_id, "dead"),
        "a dead event stays to be redelivered"
    );
}

async fn a_claim_that_was_never_finished_lapses_with_its_lease(backend: Backend) {
    let Some((store, _db)) = open(backend).await else { return };
    store.insert_connection(&new_connection("t1", "u1", 1), &sys()).await.unwrap();
    // A replica claims the event and dies before recording anything.
    // The lease is long enough that a slow machine still sees it held, and its end is polled
    // for rather than slept past.
    let short = store::now() + chrono::Duration::seconds(2);
    let first = store.claim_events(short, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(store.claim_events(short, 10).await.unwrap().is_empty(), "held while the lease runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let again = loop {
        let claimed = store.claim_events(store::now() + chrono::Duration::seconds(30), 10).await.unwrap();
        if !claimed.is_empty() {
            break claimed;
        }
        assert!(std::time::Instant::now() < deadline, "the lease never lapsed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(store::now() >= short, "not taken over before the lease ran out");
    assert_eq!(
        again.iter().map(|d| d.id).collect::<Vec<_>>(),
        [first[0].id],
        "another replica takes it over"
    );
    assert_eq!(again[0].attempts, 2);
}

on_both_backends!(
    a_claim_that_was_never_finished_lapses_with_its_lease,
    pruning_drops_old_audit_entries_and_delivered_events_only,
    each_change_emits_its_events_once_and_conditions_hold,
    migrations_apply_twice_and_ping_answers,
    sealed_secrets_keep_the_first_writer,
    api_keys_are_stored_found_listed_and_revoked,
    connections_round_trip_every_field,
    the_same_fingerprint_is_one_connection,
    connections_page_and_filter,
    connections_are_verified_updated_and_deleted,
);
