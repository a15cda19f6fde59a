//! Webhook endpoints per tenant (§13): what is stored about one, its signing secret (`whsec_` and
//! base64 of 32 random bytes, sealed by the keyring like tokens), and an attempt's history row.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, Keyring, Sealed};

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// How long a rotated-out secret goes on signing beside the new one.
pub const PREVIOUS_SECRET_FOR: chrono::Duration = chrono::Duration::hours(24);

/// The event type of `POST /v1/webhook-endpoints/{id}/test`.
pub const TEST_EVENT: &str = "webhook.test";

/// An endpoint as the API shows it (never its secret).
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Endpoint {
    /// Its id.
    pub id: Uuid,
    /// Its tenant (not shown: callers see only their own).
    #[serde(skip)]
    pub tenant: String,
    /// Where deliveries go.
    pub url: String,
    /// A note for people.
    pub description: Option<String>,
    /// The event types it receives; empty: all.
    #[sqlx(try_from = "String")]
    pub event_types: EventTypes,
    /// Whether events are delivered to it.
    pub enabled: bool,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// An endpoint's event types, stored comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EventTypes(pub Vec<String>);

impl From<String> for EventTypes {
    fn from(text: String) -> Self {
        Self(text.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect())
    }
}

impl EventTypes {
    /// As stored.
    pub fn to_column(&self) -> String {
        self.0.join(",")
    }

    /// Whether an event of `kind` goes to an endpoint with these types.
    pub fn matches(&self, kind: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|t| t == kind)
    }
}

/// An endpoint with its sealed secrets, for delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointSecrets {
    /// Its id.
    pub id: Uuid,
    /// Its tenant (bound into the seal).
    pub tenant: String,
    /// Where deliveries go.
    pub url: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// The current secret.
    pub key_id: String,
    /// Its nonce.
    pub nonce: Vec<u8>,
    /// Its ciphertext.
    pub ciphertext: Vec<u8>,
    /// The previous secret, while it still signs.
    pub previous_key_id: Option<String>,
    /// Its nonce.
    pub previous_nonce: Option<Vec<u8>>,
    /// Its ciphertext.
    pub previous_ciphertext: Option<Vec<u8>>,
    /// Until when the previous secret signs.
    pub previous_until: Option<DateTime<Utc>>,
}

impl EndpointSecrets {
    /// The current secret, sealed.
    pub fn current(&self) -> Sealed {
        Sealed {
            key_id: self.key_id.clone(),
            nonce: self.nonce.clone(),
            ciphertext: self.ciphertext.clone(),
            version: 1,
        }
    }

    /// The previous secret, sealed, if there is one (whether or not it still signs).
    pub fn previous(&self) -> Option<Sealed> {
        Some(Sealed {
            key_id: self.previous_key_id.clone()?,
            nonce: self.previous_nonce.clone()?,
            ciphertext: self.previous_ciphertext.clone()?,
            version: 1,
        })
    }

    /// The signing keys at `now`: the current secret's, and the previous one's within its 24 hours.
    pub fn signing_keys(
        &self,
        keyring: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, CryptoError> {
        let mut keys = vec![key_bytes(&open_secret(keyring, self.id, &self.tenant, &self.current())?)];
        if let (Some(previous), Some(until)) = (self.previous(), self.previous_until) {
            if until > now {
                keys.push(key_bytes(&open_secret(keyring, self.id, &self.tenant, &previous)?));
            }
        }
        Ok(keys)
    }
}

/// A new endpoint to store.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Its id (bound into the sealed secret).
    pub id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// Where deliveries go.
    pub url: String,
    /// A note.
    pub description: Option<String>,
    /// The types it receives.
    pub event_types: EventTypes,
    /// The sealed secret.
    pub sealed: Sealed,
}

/// A change to an endpoint: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    /// A new URL.
    pub url: Option<String>,
    /// A new note, or none.
    pub description: Option<Option<String>>,
    /// New types.
    pub event_types: Option<EventTypes>,
    /// Enabled or disabled.
    pub enabled: Option<bool>,
}

/// One delivery attempt, as `GET /v1/webhook-endpoints/{id}/deliveries` lists it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Attempt {
    /// Its id (the page cursor).
    pub id: Uuid,
    /// The event (also the `webhook-id` header).
    pub event_id: Uuid,
    /// The event's type.
    pub event_type: String,
    /// Which attempt of its delivery this was (from 1; a redelivery counts again from 1).
    pub attempt: i32,
    /// When it started.
    pub at: DateTime<Utc>,
    /// The receiver's status code, when it answered.
    pub status_code: Option<i32>,
    /// How long it took.
    pub duration_ms: i64,
    /// Why it failed, short (at most a bounded excerpt of the receiver's body).
    pub error: Option<String>,
}

/// What an attempt came to, for the store to record.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    /// The history row's id (time-ordered from `at`, so the history pages in start order).
    pub id: Uuid,
    /// When it started.
    pub at: DateTime<Utc>,
    /// The receiver's status code, when it answered.
    pub status_code: Option<u16>,
    /// How long it took.
    pub duration_ms: i64,
    /// `None` on success; else why, for the event's `last_error`.
    pub error: Option<String>,
    /// The same, with a bounded excerpt of the receiver's answer, for the history.
    pub detail: Option<String>,
    /// For a failure: when to try again, or `None` for `dead`.
    pub retry_at: Option<DateTime<Utc>>,
}

/// A fresh secret: `whsec_` and base64 of 32 random bytes.
pub fn new_secret() -> SecretString {
    let bytes = Zeroizing::new(crate::crypto::random_bytes::<32>());
    SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes.as_slice())))
}

/// The key bytes a Standard Webhooks secret stands for: base64-decoded after `whsec_`; any other
/// text (a deployment-wide secret written plainly) is its own bytes.
pub fn key_bytes(secret: &[u8]) -> Zeroizing<Vec<u8>> {
    if let Some(encoded) = secret.strip_prefix(SECRET_PREFIX.as_bytes()) {
        if let Ok(bytes) = STANDARD.decode(encoded) {
            return Zeroizing::new(bytes);
        }
    }
    Zeroizing::new(secret.to_vec())
}

/// The associated data binding a sealed endpoint secret to its endpoint and tenant.
fn secret_aad(id: Uuid, tenant: &str) -> Vec<u8> {
    let mut aad = b"hexbroker/webhook-secret/v1/".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad.extend_from_slice(&(tenant.len() as u64).to_be_bytes());
    aad.extend_from_slice(tenant.as_bytes());
    aad
}

/// Seals an endpoint's secret under the active key.
pub fn seal_secret(keyring: &Keyring, id: Uuid, tenant: &str, secret: &SecretString) -> Sealed {
    keyring.seal(&secret_aad(id, tenant), secret.expose_secret().as_bytes())
}

/// Opens an endpoint's secret (the `whsec_…` text's bytes).
pub fn open_secret(
    keyring: &Keyring,
    id: Uuid,
    tenant: &str,
    sealed: &Sealed,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    keyring.open(&secret_aad(id, tenant), sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_whsec_and_32_bytes_and_seals_to_its_endpoint_alone() {
        let secret = new_secret();
        let text = secret.expose_secret();
        assert!(text.starts_with("whsec_"));
        assert_eq!(key_bytes(text.as_bytes()).len(), 32);
        assert_eq!(&key_bytes(b"plain-secret")[..], b"plain-secret");
        let keyring = Keyring::parse(&Keyring::generate_entry()).unwrap();
        let id = Uuid::now_v7();
        let sealed = seal_secret(&keyring, id, "t1", &secret);
        assert_eq!(&open_secret(&keyring, id, "t1", &sealed).unwrap()[..], text.as_bytes());
        assert!(open_secret(&keyring, id, "t2", &sealed).is_err(), "bound to the tenant");
        assert!(open_secret(&keyring, Uuid::now_v7(), "t1", &sealed).is_err(), "bound to the endpoint");
    }

    #[test]
    fn empty_types_match_everything() {
        let all = EventTypes::from(String::new());
        assert!(all.matches("connection.created"));
        let some = EventTypes::from("connection.created,connection.deleted".to_owned());
        assert!(some.matches("connection.deleted") && !some.matches("connection.expired"));
        assert_eq!(some.to_column(), "connection.created,connection.deleted");
    }
}
