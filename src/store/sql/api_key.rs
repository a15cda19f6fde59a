//! The `api_key` table: internal API keys and connection keys, by the keyed hash of the secret.

/// The columns of an [`ApiKey`](crate::store::ApiKey).
macro_rules! columns {
    () => {
        "id, tenant, name, prefix, scopes, connection_id, created_at, expires_at, revoked_at"
    };
}

/// Stores a key.
pub const INSERT: &str = concat!(
    "insert into api_key (id, tenant, name, prefix, hash, scopes, connection_id, created_at, \
     expires_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning ",
    columns!()
);

/// The key with this hash.
pub const BY_HASH: &str = concat!("select ", columns!(), " from api_key where hash = $1");

/// Every key, newest first.
pub const LIST: &str = concat!("select ", columns!(), " from api_key order by created_at desc, id desc");

/// Revokes key $1 at $2, unless it is revoked already.
pub const REVOKE: &str = "update api_key set revoked_at = $2 where id = $1 and revoked_at is null \
     returning tenant, connection_id";

/// Revokes key $1 of `tenant` $2 bound to connection $3 at $4, unless it is revoked already.
pub const REVOKE_CONNECTION_KEY: &str = "update api_key set revoked_at = $4 \
     where id = $1 and tenant = $2 and connection_id = $3 and revoked_at is null";

/// A tenant's API keys (not connection keys), newest first, before id `$2` if given, at most `$3`
/// (the console's list).
pub const LIST_IN_TENANT: &str = concat!(
    "select ",
    columns!(),
    " from api_key where tenant = $1 and connection_id is null and ($2 is null or id < $2) order by id desc limit $3"
);

/// A connection's keys in a tenant, newest first (at most 200).
pub const OF_CONNECTION: &str = concat!(
    "select ",
    columns!(),
    " from api_key where tenant = $1 and connection_id = $2 order by id desc limit 200"
);

/// A tenant's key by id.
pub const IN_TENANT: &str = concat!("select ", columns!(), " from api_key where tenant = $1 and id = $2");
