//! The background checks' statements on the `connection` table (see `store/verify.rs`): finding
//! and claiming due work, and a check's writes that change no status.

use super::connection::{columns, token_columns};

/// Up to $1 connections with no check scheduled, with when their token was last known good.
pub const UNSCHEDULED: &str = "select id, coalesce(last_verified_at, created_at) from connection \
     where next_verify_at is null limit $1";

/// Schedules connection $1's next check at $2 (if $3, only when none is scheduled).
pub const SCHEDULE: &str = "update connection set next_verify_at = $2 \
     where id = $1 and (not $3 or next_verify_at is null)";

/// Claims up to $3 connections due for a check at $1 (invalid ones, and active ones whose token
/// has not expired), leasing them until $2. The outer condition is re-checked on a row a racing
/// replica may just have changed; on Postgres the inner select also skips rows another replica
/// holds locked.
macro_rules! claim_due {
    ($skip_locked:literal) => {
        concat!(
            "update connection set next_verify_at = $2 \
             where next_verify_at <= $1 and (status = 'invalid' or (status = 'active' \
             and (token_expires_at is null or token_expires_at > $1))) and id in (\
             select id from connection where next_verify_at <= $1 and (status = 'invalid' \
             or (status = 'active' and (token_expires_at is null or token_expires_at > $1))) \
             order by next_verify_at limit $3",
            $skip_locked,
            ") returning ",
            columns!(),
            token_columns!()
        )
    };
}

/// [`claim_due!`] on Postgres.
pub const CLAIM_DUE_POSTGRES: &str = claim_due!(" for update skip locked");
/// [`claim_due!`] on SQLite, which runs one writer at a time.
pub const CLAIM_DUE_SQLITE: &str = claim_due!("");

/// Records that Hex accepted the token sealed with nonce $2 of active connection $1: identity
/// (org $3, email $4, expiry $5) where Hex told it, next check at $6 (if given), at $7.
pub const PASSED: &str = concat!(
    "update connection set \
     hex_org_id = coalesce($3, hex_org_id), hex_user_email = coalesce($4, hex_user_email), \
     token_expires_at = coalesce($5, token_expires_at), last_verified_at = $7, \
     next_verify_at = coalesce($6, next_verify_at) \
     where id = $1 and nonce = $2 and status = 'active' returning ",
    columns!()
);

/// Records that Hex still refuses the token sealed with nonce $2 of invalid connection $1: the
/// reason $3, next check at $4 (if given).
pub const REFUSED: &str = concat!(
    "update connection set status_reason = $3, next_verify_at = coalesce($4, next_verify_at) \
     where id = $1 and nonce = $2 and status = 'invalid' returning ",
    columns!()
);

/// Up to $3 active connections whose token expires after $1 but by $2 and whose current token
/// has not been warned about.
pub const EXPIRY_WARNINGS_DUE: &str = "select tenant, id from connection where status = 'active' \
     and token_expires_at > $1 and token_expires_at <= $2 \
     and (expiry_warned_for is null or expiry_warned_for <> token_fingerprint) \
     order by token_expires_at limit $3";

/// Up to $2 connections stored `active` whose token expired by $1.
pub const EXPIRIES_DUE: &str = "select tenant, id from connection \
     where status = 'active' and token_expires_at <= $1 order by token_expires_at limit $2";

/// Raises connection $1's `last_used_at` to $2 (never lowers it).
pub const MARK_LAST_USED: &str = "update connection set last_used_at = $2 \
     where id = $1 and (last_used_at is null or last_used_at < $2)";
