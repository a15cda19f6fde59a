//! The `sealed_secret` table: hexbroker's own named secrets, sealed by the keyring.

/// A named secret.
pub const BY_NAME: &str = "select key_id, nonce, ciphertext from sealed_secret where name = $1";

/// Stores a named secret unless one is there already.
pub const INSERT_IF_ABSENT: &str = "insert into sealed_secret (name, key_id, nonce, ciphertext) \
     values ($1, $2, $3, $4) on conflict (name) do nothing";

/// Re-seals secret $1 (key $3, nonce $4, ciphertext $5) if it is still the one sealed with
/// nonce $2.
pub const RESEAL: &str = "update sealed_secret set key_id = $3, nonce = $4, ciphertext = $5 \
     where name = $1 and nonce = $2";
