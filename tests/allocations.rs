//! What the hot path's steps allocate, counted by a global allocator that counts per thread:
//! a cache hit for the caller and for the target, the bearer header, the upstream URI, and a
//! request's metrics allocate nothing once warm (the `/v1/proxy` URI: its one path string).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use axum::http::Uri;
use hexbroker::audit::{Action, AuditContext};
use hexbroker::auth::{Callers, Scope, Scopes};
use hexbroker::crypto::Hasher;
use hexbroker::hex::TokenType;
use hexbroker::lifecycle::Status;
use hexbroker::metrics::{Metrics, Route};
use hexbroker::proxy::{Origins, Target, Targets};
use hexbroker::store::{self, Connection, NewApiKey};
use secrecy::SecretString;
use uuid::Uuid;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call goes to the system allocator unchanged; the count is a thread-local cell
// that needs no allocation of its own.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// How many allocations `f` made on this thread, with what it returned.
fn allocations_in<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (ALLOCATIONS.with(Cell::get) - before, out)
}

fn connection(tenant: &str) -> Connection {
    let now = store::now();
    Connection {
        id: Uuid::now_v7(),
        tenant: tenant.into(),
        end_user_id: "u1".into(),
        end_user_email: None,
        label: None,
        metadata: serde_json::json!({}),
        subdomain: "acme".into(),
        hex_url: None,
        token_type: TokenType::Personal,
        token_hint: "hxtp_…abcd".into(),
        hex_org_id: None,
        hex_user_email: None,
        token_expires_at: None,
        status: Status::Active,
        status_reason: None,
        last_verified_at: None,
        created_at: now,
        updated_at: now,
        rate_limit_per_minute: None,
        next_verify_at: None,
        last_used_at: None,
    }
}

fn origins() -> Origins {
    Origins::new(64, Duration::from_millis(10))
}

#[tokio::test(flavor = "current_thread")]
async fn a_cached_caller_is_found_without_allocating() {
    let store = store::open("sqlite::memory:", 1).await.unwrap();
    let hasher = Hasher::new([7; 32]);
    let hash = hasher.secret_hash("hxbk_secret");
    let new = NewApiKey {
        id: Uuid::now_v7(),
        tenant: "t1".into(),
        name: "ci".into(),
        prefix: "hxbk_secret".into(),
        hash: hash.to_vec(),
        scopes: Scopes::of(&[Scope::Proxy]),
        connection_id: None,
        expires_at: None,
    };
    store.insert_api_key(&new, &AuditContext::system(Action::KeyCreate)).await.unwrap();
    let callers = Callers::new(Duration::from_secs(60), 1000);
    assert!(callers.get(&hash).is_none(), "empty at first");
    callers.find(&store, hash).await.unwrap().expect("in the store");

    let (n, found) = allocations_in(|| callers.get(&hasher.secret_hash("hxbk_secret")));
    assert_eq!(found.map(|key| key.id), Some(new.id));
    assert_eq!(n, 0, "hashing the secret and a cache hit allocate nothing");

    callers.forget_key(new.id);
    assert!(callers.get(&hash).is_none(), "a revoked key is dropped by id");
}

#[test]
fn a_cached_target_gives_its_bearer_and_uri_without_allocating() {
    let connection = connection("t1");
    let token = SecretString::from("hxtp_secret");
    let target = Target::new(&connection, &token, "https://acme.hex.tech", &[1; 12], &origins()).unwrap();
    let targets = Targets::new(Duration::from_secs(60), 1000);
    targets.insert(targets.fill(), std::sync::Arc::new(target));
    let drop_in: Uri = "/api/v1/projects?limit=2".parse().unwrap();
    let proxied: Uri = "/v1/proxy/v1/projects?limit=2".parse().unwrap();

    let hit = || {
        let target = targets.get("t1", connection.id).expect("held");
        (target.bearer(), target.uri(&drop_in, "/v1/projects").unwrap())
    };
    // The first clone of bytes parsed from a string makes them shareable (one allocation, once).
    hit();
    let (n, (bearer, uri)) = allocations_in(hit);
    assert_eq!(uri, "https://acme.hex.tech/api/v1/projects?limit=2");
    assert_eq!(bearer.as_bytes(), b"Bearer hxtp_secret");
    assert!(bearer.is_sensitive());
    assert_eq!(n, 0, "a hit, the bearer value and the drop-in URI allocate nothing");

    let target = targets.get("t1", connection.id).unwrap();
    let (n, uri) = allocations_in(|| target.uri(&proxied, "/v1/projects").unwrap());
    assert_eq!(uri, "https://acme.hex.tech/api/v1/projects?limit=2");
    assert!(n <= 1, "the /v1/proxy URI is one path string: {n}");

    assert!(targets.get("t2", connection.id).is_none(), "another tenant never sees it");
    targets.forget(connection.id);
    assert!(targets.get("t1", connection.id).is_none());
}

#[test]
fn a_path_based_origin_keeps_its_base() {
    let connection = connection("t1");
    let token = SecretString::from("hxtp_secret");
    let target = Target::new(&connection, &token, "http://127.0.0.1:9/acme/", &[1; 12], &origins()).unwrap();
    let drop_in: Uri = "/api/v1/projects".parse().unwrap();
    let uri = target.uri(&drop_in, "/v1/projects").unwrap();
    assert_eq!(uri, "http://127.0.0.1:9/acme/api/v1/projects");
    assert!(Target::new(
        &connection,
        &SecretString::from("bad\ntoken"),
        "https://acme.hex.tech",
        &[1; 12],
        &origins()
    )
    .is_err());
}

#[test]
fn recording_a_request_allocates_nothing_once_its_labels_exist() {
    let metrics = Metrics::new();
    let request = axum::http::Request::new(());
    let record = || metrics.observe_request(Route::of(&request), "GET", 200, Duration::from_micros(300));
    record();
    let (n, ()) = allocations_in(record);
    assert_eq!(n, 0);
    let (n, ()) = allocations_in(|| metrics.observe_upstream("GET", 200, Duration::from_micros(200)));
    assert!(n > 0, "the first of a label set is made once");
    let (n, ()) = allocations_in(|| metrics.observe_upstream("GET", 200, Duration::from_micros(200)));
    assert_eq!(n, 0);
    assert!(metrics.render().contains("route=\"unmatched\""));
}

#[test]
fn the_checks_issue_18_added_to_a_proxied_call_allocate_nothing() {
    use futures_util::FutureExt as _;
    use hexbroker::proxy::{Linked, Relink};
    let connection = connection("t1");
    let token = SecretString::from("hxtp_secret");
    let target = Target::new(&connection, &token, "https://acme.hex.tech", &[1; 12], &origins()).unwrap();
    let id = Uuid::now_v7().to_string();
    let get = axum::http::Method::GET;

    let (n, (linked, parsed)) =
        allocations_in(|| (Linked::of(&get, "/v1/projects/p1"), hexbroker::input::canonical_uuid(&id)));
    assert_eq!((linked, parsed.map(|u| u.to_string())), (None, Some(id.clone())));
    assert_eq!(n, 0, "telling a linked answer apart and reading Connection-Id allocate nothing");

    // An answer that carries no link and no Location passes through as it came.
    let response = axum::http::Response::new(axum::body::Body::from("{}"));
    let relink = Relink { origin: target.hex_origin(), public: "https://broker.example", surface: "/api" };
    let (n, relayed) = allocations_in(|| relink.apply(response, None).now_or_never());
    assert!(relayed.expect("ready at once").is_ok());
    assert_eq!(n, 0, "no allocation for an answer without links");
}
