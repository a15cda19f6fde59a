//! The SQL both backends run, one module per table, each statement a named constant with its
//! parameters said beside it. sqlx binds `$1`-style parameters on SQLite too, and the column
//! types map to the same Rust types on both, so every statement here runs (and is tested) on
//! Postgres and on SQLite alike; where the two need different SQL (a claim's `skip locked`), a
//! statement has a `_POSTGRES` and a `_SQLITE` form.
//!
//! The code that binds and runs them is written once for both backends (`store/backend.rs`,
//! `store/writes.rs`, `store/webhooks.rs`, `store/verify.rs`), and `postgres.rs`/`sqlite.rs` only
//! say which pool and which claims.

pub mod api_key;
pub mod connection;
pub mod event;
pub mod secret;
pub mod session;
pub mod verify;
pub mod webhook;

/// The channel on which replicas tell each other which cached entries are stale.
pub const INVALIDATION_CHANNEL: &str = "hexbroker_invalidate";
/// The channel that wakes every replica's delivery worker when an event is recorded.
pub const EVENT_CHANNEL: &str = "hexbroker_events";
/// Sends a notice ($2) on a channel ($1), delivered at commit (Postgres only).
pub const NOTIFY: &str = "select pg_notify($1, $2)";
/// Answers when the database does.
pub const PING: &str = "select 1";

/// A connection row with its sealed token (`connection::columns!()` and `token_columns!()`).
#[derive(sqlx::FromRow)]
pub struct ConnectionWithToken {
    #[sqlx(flatten)]
    pub connection: super::Connection,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub seal_version: i16,
}

impl ConnectionWithToken {
    /// The connection and its sealed token.
    pub fn split(self) -> (super::Connection, crate::crypto::Sealed) {
        let sealed = crate::crypto::Sealed {
            key_id: self.key_id,
            nonce: self.nonce,
            ciphertext: self.ciphertext,
            version: self.seal_version,
        };
        (self.connection, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement, for the checks below.
    const ALL: &[&str] = &[
        api_key::INSERT,
        api_key::BY_HASH,
        api_key::LIST,
        api_key::REVOKE,
        api_key::REVOKE_CONNECTION_KEY,
        connection::INSERT,
        connection::BY_FINGERPRINT,
        connection::BY_ID,
        connection::WITH_TOKEN_BY_ID,
        connection::LIST,
        connection::COUNT_BY_STATUS,
        connection::LOCK,
        connection::SET_VERIFIED,
        connection::SET_INVALID,
        connection::SET_EXPIRED,
        connection::MARK_EXPIRY_WARNED,
        connection::REPLACE_TOKEN,
        connection::UPDATE,
        connection::DELETE,
        connection::TOKENS_NOT_SEALED_BY,
        connection::COUNT_TOKENS_NOT_SEALED_BY,
        connection::RESEAL_TOKEN,
        event::INSERT_AUDIT,
        event::LIST_AUDIT,
        event::INSERT,
        event::LIST,
        event::REQUEUE,
        event::REQUEUE_DELIVERIES,
        event::PRUNE_AUDIT,
        event::PRUNE_DELIVERED,
        secret::BY_NAME,
        secret::INSERT_IF_ABSENT,
        secret::RESEAL,
        session::INSERT,
        session::BY_HASH,
        session::CLAIM,
        session::SET_RESULT,
        verify::UNSCHEDULED,
        verify::SCHEDULE,
        verify::CLAIM_DUE_POSTGRES,
        verify::CLAIM_DUE_SQLITE,
        verify::PASSED,
        verify::REFUSED,
        verify::EXPIRY_WARNINGS_DUE,
        verify::EXPIRIES_DUE,
        verify::MARK_LAST_USED,
        webhook::INSERT_ENDPOINT,
        webhook::ENDPOINT,
        webhook::LIST_ENDPOINTS,
        webhook::ENABLED_ENDPOINTS,
        webhook::UPDATE_ENDPOINT,
        webhook::LOCK_ENDPOINT,
        webhook::LOCK_ENDPOINT_EVENTS,
        webhook::ENDPOINT_EVENTS,
        webhook::DELETE_ENDPOINT,
        webhook::ROTATE_SECRET,
        webhook::SECRETS,
        webhook::SECRETS_NOT_SEALED_BY,
        webhook::RESEAL_SECRETS,
        webhook::INSERT_DELIVERY,
        webhook::CLAIM_DELIVERIES_POSTGRES,
        webhook::CLAIM_DELIVERIES_SQLITE,
        webhook::DELIVERY_EVENT,
        webhook::LOCK_EVENT,
        webhook::DELIVERED,
        webhook::FAILED,
        webhook::INSERT_ATTEMPT,
        webhook::HOLD_ENDPOINT,
        webhook::DEFER,
        webhook::NEXT_DUE,
        webhook::LIST_ATTEMPTS,
        webhook::SUMMARISE_EVENT,
    ];

    #[test]
    fn statements_are_one_line_with_single_spaces() {
        // A line continuation lost in a string leaves a newline and a run of spaces in the SQL.
        for statement in ALL {
            assert!(!statement.contains('\n') && !statement.contains("  "), "{statement}");
            assert_eq!(statement.trim(), *statement, "{statement}");
        }
    }

    #[test]
    fn every_placeholder_up_to_the_highest_is_used() {
        // A statement that skips a number binds a value nobody reads (or the wrong one).
        for statement in ALL {
            let used: Vec<usize> = statement
                .match_indices('$')
                .filter_map(|(at, _)| {
                    let digits: String =
                        statement[at + 1..].chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                })
                .collect();
            let highest = used.iter().copied().max().unwrap_or(0);
            for n in 1..=highest {
                assert!(used.contains(&n), "${n} is unused in {statement}");
            }
        }
    }
}
