//! The `connect_session` table: one-time connect links, by the keyed hash of their token.

/// The columns of a [`Session`](crate::store::Session).
macro_rules! columns {
    () => {
        "id, tenant, end_user_id, end_user_email, connection_id, expires_at, used_at, created_at"
    };
}

/// Stores a session.
pub const INSERT: &str = concat!(
    "insert into connect_session (id, tenant, token_hash, end_user_id, end_user_email, \
     connection_id, created_by_key, expires_at, created_at) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning ",
    columns!()
);

/// The session with this token hash.
pub const BY_HASH: &str = concat!("select ", columns!(), " from connect_session where token_hash = $1");

/// Claims session $1 at $2 from origin $3, if it is unused and unexpired (decided by the
/// database, so two racing requests cannot both win).
pub const CLAIM: &str = "update connect_session set used_at = $2, used_origin = $3 \
     where id = $1 and used_at is null and expires_at > $2";

/// Records the connection ($2) a session ($1) produced.
pub const SET_RESULT: &str = "update connect_session set result_connection_id = $2 where id = $1";
