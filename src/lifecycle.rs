//! A connection's life: its [`Status`], the [`EventType`]s of §8, and the one table
//! ([`transition`]) that says, for a connection's current status and a [`Change`] asked of it,
//! which status it ends in and which events that emits. Every write to a connection goes through
//! `Store::apply` (or `Store::insert_connection` for a new one), which consults this table inside
//! its transaction, so each event is emitted exactly once, by the write that caused it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::store::{ConnectionChange, HexIdentity, TokenReplacement};

/// Whether a connection can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Hex accepted the token when it was last asked, and it has not passed its expiry.
    Active,
    /// Hex refused the token.
    Invalid,
    /// The token has passed its `token_expires_at`.
    Expired,
}

impl Status {
    /// Every status, for metrics and validation.
    pub const ALL: [Status; 3] = [Status::Active, Status::Invalid, Status::Expired];

    /// The status's name in SQL, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Invalid => "invalid",
            Status::Expired => "expired",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a status.
#[derive(Debug, thiserror::Error)]
#[error("not a connection status (active, invalid or expired)")]
pub struct UnknownStatus;

impl FromStr for Status {
    type Err = UnknownStatus;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Status::ALL.into_iter().find(|s| s.as_str() == text).ok_or(UnknownStatus)
    }
}

/// `sqlx` impls for a vocabulary type stored as text on both backends (`as_str` to write,
/// `FromStr` to read): they delegate to `&str`, so one impl serves both.
macro_rules! stored_as_text {
    ($type:ty) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $type
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $type
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<&str as sqlx::Decode<DB>>::decode(value)?.parse::<$type>()?)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $type
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<DB>>::encode(self.as_str(), buf)
            }
        }
    };
}
pub(crate) use stored_as_text;

stored_as_text!(Status);
stored_as_text!(EventType);

/// The events of §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A new connection.
    #[serde(rename = "connection.created")]
    Created,
    /// A reconnect replaced the connection's token.
    #[serde(rename = "connection.credentials_replaced")]
    CredentialsReplaced,
    /// Hex refused the token.
    #[serde(rename = "connection.invalidated")]
    Invalidated,
    /// The token expires within `HEXBROKER_EXPIRY_WARNING`.
    #[serde(rename = "connection.expiring")]
    Expiring,
    /// The token passed its expiry.
    #[serde(rename = "connection.expired")]
    Expired,
    /// An invalid or expired connection is good again.
    #[serde(rename = "connection.reactivated")]
    Reactivated,
    /// The connection was deleted.
    #[serde(rename = "connection.deleted")]
    Deleted,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 7] = [
        EventType::Created,
        EventType::CredentialsReplaced,
        EventType::Invalidated,
        EventType::Expiring,
        EventType::Expired,
        EventType::Reactivated,
        EventType::Deleted,
    ];

    /// The type's name on the wire and in the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "connection.created",
            EventType::CredentialsReplaced => "connection.credentials_replaced",
            EventType::Invalidated => "connection.invalidated",
            EventType::Expiring => "connection.expiring",
            EventType::Expired => "connection.expired",
            EventType::Reactivated => "connection.reactivated",
            EventType::Deleted => "connection.deleted",
        }
    }
}

/// A name that is not an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an event type (§8)")]
pub struct UnknownEventType;

impl FromStr for EventType {
    type Err = UnknownEventType;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text).ok_or(UnknownEventType)
    }
}

/// A change asked of an existing connection. New connections are `Store::insert_connection`'s.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Hex accepted the token (a verify, a background check, or the same token connected again):
    /// active, with the identity Hex reported.
    Verified(&'a HexIdentity),
    /// Hex refused the token, for this reason: invalid.
    Refused(&'a str),
    /// The token passed its `token_expires_at` (no need to ask Hex): expired.
    Expired,
    /// The token's expiry is near: emits `connection.expiring`; the status stays.
    Expiring,
    /// A reconnect brought new credentials: active, with the new token and identity.
    Replaced(&'a TokenReplacement),
    /// Label, metadata or rate limit changed (no event).
    Updated(&'a ConnectionChange),
    /// The connection and its token are gone.
    Deleted,
}

/// What a change does to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Its status afterwards.
    pub status: Status,
    /// The events it emits, in order.
    pub events: &'static [EventType],
}

/// The one table of the connection's life. `current` is the connection's stored status (not
/// the `expired` that readers derive from a past `token_expires_at`), so every event marks one
/// stored change: `connection.expired` comes from the write that stores `expired`.
pub fn transition(current: Status, change: &Change<'_>) -> Transition {
    use EventType as E;
    use Status::{Active, Expired, Invalid};
    let (status, events): (Status, &'static [EventType]) = match (change, current) {
        (Change::Verified(_), Active) => (Active, &[]),
        (Change::Verified(_), Invalid | Expired) => (Active, &[E::Reactivated]),
        (Change::Refused(_), Invalid) => (Invalid, &[]),
        (Change::Refused(_), Active | Expired) => (Invalid, &[E::Invalidated]),
        (Change::Expired, Active) => (Expired, &[E::Expired]),
        // An invalid connection stays invalid: it is the more useful thing to know.
        (Change::Expired, s @ (Invalid | Expired)) => (s, &[]),
        (Change::Expiring, Active) => (Active, &[E::Expiring]),
        (Change::Expiring, s) => (s, &[]),
        // A reconnect always says so; one that brings a dead connection back says that too.
        (Change::Replaced(_), Active) => (Active, &[E::CredentialsReplaced]),
        (Change::Replaced(_), Invalid | Expired) => (Active, &[E::CredentialsReplaced, E::Reactivated]),
        (Change::Updated(_), s) => (s, &[]),
        (Change::Deleted, s) => (s, &[E::Deleted]),
    };
    Transition { status, events }
}

/// What a new connection emits.
pub const CREATED: Transition = Transition { status: Status::Active, events: &[EventType::Created] };

#[cfg(test)]
mod tests {
    use super::*;
    use EventType as E;
    use Status::{Active, Expired, Invalid};

    #[test]
    fn every_change_from_every_status_ends_where_the_table_says() {
        let identity = HexIdentity::default();
        let replacement = TokenReplacement::for_tests();
        let update = ConnectionChange::default();
        let verified = Change::Verified(&identity);
        let refused = Change::Refused("revoked");
        let replaced = Change::Replaced(&replacement);
        let updated = Change::Updated(&update);
        #[rustfmt::skip]
        let table: &[(Status, Change<'_>, Status, &[EventType])] = &[
            (Active,  verified, Active,  &[]),
            (Invalid, verified, Active,  &[E::Reactivated]),
            (Expired, verified, Active,  &[E::Reactivated]),
            (Active,  refused,  Invalid, &[E::Invalidated]),
            (Invalid, refused,  Invalid, &[]),
            (Expired, refused,  Invalid, &[E::Invalidated]),
            (Active,  Change::Expired, Expired, &[E::Expired]),
            (Invalid, Change::Expired, Invalid, &[]),
            (Expired, Change::Expired, Expired, &[]),
            (Active,  Change::Expiring, Active, &[E::Expiring]),
            (Invalid, Change::Expiring, Invalid, &[]),
            (Expired, Change::Expiring, Expired, &[]),
            (Active,  replaced, Active, &[E::CredentialsReplaced]),
            (Invalid, replaced, Active, &[E::CredentialsReplaced, E::Reactivated]),
            (Expired, replaced, Active, &[E::CredentialsReplaced, E::Reactivated]),
            (Active,  updated, Active,  &[]),
            (Invalid, updated, Invalid, &[]),
            (Expired, updated, Expired, &[]),
            (Active,  Change::Deleted, Active,  &[E::Deleted]),
            (Invalid, Change::Deleted, Invalid, &[E::Deleted]),
            (Expired, Change::Deleted, Expired, &[E::Deleted]),
        ];
        for (from, change, to, events) in table {
            let t = transition(*from, change);
            assert_eq!((t.status, t.events), (*to, *events), "{from} + {change:?}");
        }
        assert_eq!(table.len(), 7 * 3, "every change from every status");
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert!("revoked".parse::<Status>().is_err());
    }
}
