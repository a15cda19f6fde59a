//! The `connection` table: one row per connected Hex token, sealed.

/// The columns of a [`Connection`](crate::store::Connection), in its field order.
macro_rules! columns {
    () => {
        "id, tenant, end_user_id, end_user_email, label, metadata, subdomain, hex_url, token_type, \
         token_hint, hex_org_id, hex_user_email, token_expires_at, status, status_reason, \
         last_verified_at, created_at, updated_at, rate_limit_per_minute, next_verify_at, last_used_at"
    };
}
pub(in crate::store) use columns;

/// The sealed token's columns, after [`columns!`] (see `ConnectionWithToken`).
macro_rules! token_columns {
    () => {
        ", key_id, nonce, ciphertext, seal_version"
    };
}
pub(in crate::store) use token_columns;

/// Inserts a connection (`active`, verified now: $17) unless its token is already connected
/// for the same tenant, end user and workspace; then it returns no row.
pub const INSERT: &str = concat!(
    "insert into connection (id, tenant, end_user_id, end_user_email, label, metadata, subdomain, \
     token_type, token_hint, token_fingerprint, key_id, nonce, ciphertext, hex_org_id, \
     hex_user_email, token_expires_at, status, last_verified_at, created_at, updated_at, \
     seal_version, hex_url) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 'active', \
     $17, $17, $17, $18, $19) \
     on conflict (tenant, end_user_id, subdomain, token_fingerprint) do nothing returning ",
    columns!()
);

/// The connection of `tenant` ($1) holding a token: end user $2, subdomain $3, fingerprint $4.
pub const BY_FINGERPRINT: &str = concat!(
    "select ",
    columns!(),
    " from connection where tenant = $1 and end_user_id = $2 and subdomain = $3 \
     and token_fingerprint = $4"
);

/// A connection of `tenant` ($1) by id ($2).
pub const BY_ID: &str = concat!("select ", columns!(), " from connection where tenant = $1 and id = $2");

/// A connection of `tenant` ($1) by id ($2), with its sealed token.
pub const WITH_TOKEN_BY_ID: &str =
    concat!("select ", columns!(), token_columns!(), " from connection where tenant = $1 and id = $2");

/// A page of `tenant`'s ($1) connections, newest first: end user $2, before id $3, status $4
/// (`active` and `expired` as of $5, from the expiry), at most $6, subdomain $7.
pub const LIST: &str = concat!(
    "select ",
    columns!(),
    " from connection where tenant = $1 \
     and ($2 is null or end_user_id = $2) \
     and ($3 is null or id < $3) \
     and ($4 is null \
          or ($4 = 'active' and status = 'active' \
              and (token_expires_at is null or token_expires_at > $5)) \
          or ($4 = 'expired' and (status = 'expired' \
              or (status = 'active' and token_expires_at <= $5))) \
          or ($4 = 'invalid' and status = 'invalid')) \
     and ($7 is null or subdomain = $7) \
     order by id desc limit $6"
);

/// How many connections there are in each status (`expired` derived from the expiry, as of $1).
pub const COUNT_BY_STATUS: &str =
    "select case when status = 'active' and token_expires_at <= $1 then 'expired' else status end as s, \
     count(*) from connection group by s";

/// A no-op write on a connection of `tenant` ($1) by id ($2): it takes the row lock (Postgres)
/// or the write lock (SQLite), so a read after it cannot be overtaken by another writer.
pub const LOCK: &str = "update connection set updated_at = updated_at where tenant = $1 and id = $2";

/// Stores `active` with Hex's identity (org $3, email $4, expiry $5) verified at $6.
pub const SET_VERIFIED: &str = concat!(
    "update connection set status = 'active', status_reason = null, hex_org_id = $3, \
     hex_user_email = $4, token_expires_at = $5, last_verified_at = $6, updated_at = $6 \
     where tenant = $1 and id = $2 returning ",
    columns!()
);

/// Stores `invalid`, with the reason $3, at $4.
pub const SET_INVALID: &str = concat!(
    "update connection set status = 'invalid', status_reason = $3, updated_at = $4 \
     where tenant = $1 and id = $2 returning ",
    columns!()
);

/// Stores `expired`, with the reason $3, at $4.
pub const SET_EXPIRED: &str = concat!(
    "update connection set status = 'expired', status_reason = $3, updated_at = $4 \
     where tenant = $1 and id = $2 returning ",
    columns!()
);

/// Marks the current token as warned about its expiry, unless it was already.
pub const MARK_EXPIRY_WARNED: &str = "update connection set expiry_warned_for = token_fingerprint \
     where tenant = $1 and id = $2 \
     and (expiry_warned_for is null or expiry_warned_for <> token_fingerprint)";

/// Replaces the token (subdomain $3, type $4, hint $5, fingerprint $6, sealed $7-$9 and $14,
/// identity $10-$12) verified at $13, and makes the connection `active`.
pub const REPLACE_TOKEN: &str = concat!(
    "update connection set subdomain = $3, token_type = $4, token_hint = $5, \
     token_fingerprint = $6, key_id = $7, nonce = $8, ciphertext = $9, hex_org_id = $10, \
     hex_user_email = $11, token_expires_at = $12, status = 'active', status_reason = null, \
     last_verified_at = $13, updated_at = $13, seal_version = $14 \
     where tenant = $1 and id = $2 returning ",
    columns!()
);

/// Changes what the caller set: the label ($4, if $3), metadata ($6, if $5), the rate limit
/// ($8, if $7), at $9.
pub const UPDATE: &str = concat!(
    "update connection set \
     label = case when $3 then $4 else label end, \
     metadata = case when $5 then $6 else metadata end, \
     rate_limit_per_minute = case when $7 then $8 else rate_limit_per_minute end, \
     updated_at = $9 \
     where tenant = $1 and id = $2 returning ",
    columns!()
);

/// Deletes a connection of `tenant` ($1) by id ($2).
pub const DELETE: &str = "delete from connection where tenant = $1 and id = $2";

/// Up to $3 sealed tokens after id $2 that want re-sealing: not sealed by key $1, or not at the
/// current seal version ($5 for a row with its own Hex origin, else $4).
pub const TOKENS_NOT_SEALED_BY: &str =
    "select id, tenant, subdomain, hex_url, key_id, nonce, ciphertext, seal_version from connection \
     where (key_id <> $1 or seal_version <> case when hex_url is null then $4 else $5 end) \
     and ($2 is null or id > $2) order by id limit $3";

/// How many tokens [`TOKENS_NOT_SEALED_BY`] would find in all.
pub const COUNT_TOKENS_NOT_SEALED_BY: &str = "select count(*) from connection where key_id <> $1 \
     or seal_version <> case when hex_url is null then $2 else $3 end";

/// Re-seals a token (key $3, nonce $4, ciphertext $5, version $6) if the row still holds the
/// one sealed with nonce $2.
pub const RESEAL_TOKEN: &str =
    "update connection set key_id = $3, nonce = $4, ciphertext = $5, seal_version = $6 \
     where id = $1 and nonce = $2";
