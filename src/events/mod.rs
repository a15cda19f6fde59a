//! Events (§8): the outbox rows that `Store::apply` writes in the same transaction as the change
//! that caused them, how a delivery is signed, and the worker ([`worker`]) that delivers them at
//! least once, off the request path, to `HEXBROKER_WEBHOOK_URL` and to the tenants' own
//! [`endpoints`] (§13).
//!
//! Each event fans out, in the transaction that records it, to one delivery per destination: the
//! deployment-wide URL (a delivery is always written for it, and sent only while it is set, so
//! setting it later delivers the backlog as before) and every enabled endpoint of the event's
//! tenant whose types match. Deliveries are claimed, retried and declared `dead` one by one; an
//! event's own `state`, `attempts`, `next_attempt_at` and `last_error` (what `GET /v1/events`
//! shows) summarise its deliveries: `pending` while any is pending, else `dead` if any is dead,
//! else `delivered`. Redelivering an event queues all its deliveries again.

pub mod endpoints;
pub mod guard;
pub mod worker;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::lifecycle::EventType;

/// Where an event is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventState {
    /// Not yet delivered; retried until `HEXBROKER_WEBHOOK_RETRY_FOR` has passed.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// Retries ran out; listed, and redeliverable.
    Dead,
}

impl EventState {
    /// Every state.
    pub const ALL: [EventState; 3] = [EventState::Pending, EventState::Delivered, EventState::Dead];

    /// Its name in SQL and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Pending => "pending",
            EventState::Delivered => "delivered",
            EventState::Dead => "dead",
        }
    }
}

/// A name that is not an event state.
#[derive(Debug, thiserror::Error)]
#[error("not an event state (pending, delivered or dead)")]
pub struct UnknownEventState;

impl std::str::FromStr for EventState {
    type Err = UnknownEventState;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EventState::ALL.into_iter().find(|s| s.as_str() == text).ok_or(UnknownEventState)
    }
}

crate::lifecycle::stored_as_text!(EventState);

/// An event as `GET /v1/events` lists it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct EventRecord {
    /// Its id (time-ordered; also the `hexbroker-event-id` header).
    pub id: Uuid,
    /// Its type, e.g. `connection.created`.
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: EventType,
    /// The connection it is about.
    pub connection_id: Uuid,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// Where it is in its delivery.
    pub state: EventState,
    /// Delivery attempts made since it was (re)queued.
    pub attempts: i32,
    /// When the next attempt is due (for a pending event).
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this type.
    pub kind: Option<EventType>,
    /// Only about this connection.
    pub connection_id: Option<Uuid>,
    /// Only in this state.
    pub state: Option<EventState>,
    /// Only events older than this id (the cursor).
    pub before_id: Option<Uuid>,
    /// At most this many.
    pub limit: u32,
}

/// One delivery of an event to one destination, claimed for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    /// The delivery's id.
    pub id: Uuid,
    /// The event's id (`webhook-id`, the same on every attempt and every destination).
    pub event_id: Uuid,
    /// The endpoint; `None`: the deployment-wide `HEXBROKER_WEBHOOK_URL`.
    pub endpoint_id: Option<Uuid>,
    /// The event's type.
    #[sqlx(rename = "type")]
    pub kind: String,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// The connection as it was (JSON), or for a `webhook.test` event its data.
    #[sqlx(json)]
    pub payload: serde_json::Value,
    /// Attempts of this delivery so far, this one included.
    pub attempts: i32,
    /// When it was (re)queued.
    pub queued_at: DateTime<Utc>,
}

/// The JSON body of a delivery: `{id, type, created_at, data: {connection}}` (a `webhook.test`
/// event's data is its own).
pub fn body(delivery: &Delivery, hex_url: Option<String>) -> Vec<u8> {
    let data = if delivery.kind == endpoints::TEST_EVENT {
        delivery.payload.clone()
    } else {
        let mut connection = delivery.payload.clone();
        if let (Some(object), Some(url)) = (connection.as_object_mut(), hex_url) {
            object.insert("hex_url".into(), url.into());
        }
        serde_json::json!({ "connection": connection })
    };
    let body = serde_json::json!({
        "id": delivery.event_id,
        "type": delivery.kind,
        "created_at": delivery.created_at,
        "data": data,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The Standard Webhooks `webhook-signature` header: `v1,<base64 HMAC-SHA256(key,
/// "{id}.{unix}.{body}")>` for each key, space-separated.
pub fn standard_signature<'a>(
    id: &str,
    unix: i64,
    body: &[u8],
    keys: impl IntoIterator<Item = &'a [u8]>,
) -> String {
    use base64::Engine as _;
    let mut header = String::new();
    for key in keys {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(unix.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str("v1,");
        header.push_str(&base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    }
    header
}

/// The `hexbroker-signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
/// with one `v1=` per secret, so a receiver can rotate its secret without a gap.
pub fn signature<'a>(unix: i64, body: &[u8], secrets: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut header = format!("t={unix}");
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
        mac.update(unix.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac.finalize().into_bytes()));
    }
    header
}

/// The types a caller may filter by.
pub fn is_known_type(text: &str) -> bool {
    text.parse::<EventType>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn the_standard_signature_matches_the_specifications_example() {
        let key = endpoints::key_bytes(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let header = standard_signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, [&key[..]]);
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let two = standard_signature("m", 1, b"{}", [&key[..], b"other".as_slice()]);
        assert_eq!(two.split(' ').count(), 2);
    }

    #[test]
    fn the_signature_has_one_v1_per_secret_over_time_and_body() {
        let header = signature(1_700_000_000, b"{}", [b"one".as_slice(), b"two".as_slice()]);
        let parts: Vec<&str> = header.split(',').collect();
        assert_eq!(parts[0], "t=1700000000");
        assert_eq!(parts.len(), 3);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"two").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(parts[2], format!("v1={}", hex::encode(mac.finalize().into_bytes())));
        assert_ne!(parts[1], parts[2]);
    }
}
