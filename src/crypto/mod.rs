//! Everything that touches key bytes: the AES-256-GCM keyring that seals Hex tokens (§9), the keyed
//! hash for API keys, session tokens and token fingerprints, and random secrets; and, beside the
//! keyring, the one way a stored connection's token is opened for use ([`open_stored`]).
//!
//! A sealed token carries the id of the key that sealed it and binds its row in as associated
//! data: the connection id, its tenant and its subdomain (seal version 2), and for a connection on
//! one of the operator's own Hex origins that origin too (version 3), so a ciphertext copied onto
//! another row, or a row edited to another tenant, workspace or origin, does not open. Rows sealed
//! the earlier way (version 1: the connection id alone) still open until `hexbroker reencrypt`
//! re-seals them. Versions 1 and 2 bind no origin, so they open only on a row that names none.

mod stored;

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

pub use stored::{open_stored, StoredError};

/// Length of an AES-256 key, and of the keyed-hash key.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// A ciphertext with what is needed to open it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The id of the key that sealed it.
    pub key_id: String,
    /// The 96-bit nonce, fresh for every sealing.
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 128-bit tag.
    pub ciphertext: Vec<u8>,
    /// What the associated data binds: [`SEAL_V1`], [`SEAL_V2`] or [`SEAL_V3`] for tokens; always
    /// [`SEAL_V1`] for other sealed values, whose associated data the caller names.
    pub version: i16,
}

/// A token sealed the earlier way: the associated data binds the connection id alone.
pub const SEAL_V1: i16 = 1;
/// A token sealed with its connection id, tenant and subdomain bound in.
pub const SEAL_V2: i16 = 2;
/// A token sealed with its connection id, tenant, subdomain and Hex origin bound in: how the
/// token of a connection on one of `HEXBROKER_HEX_HOSTS` is sealed.
pub const SEAL_V3: i16 = 3;

/// The seal version a row is sealed with today: 3 when it names its own Hex origin, else 2.
pub fn current_seal_version(hex_url: Option<&str>) -> i16 {
    if hex_url.is_some() {
        SEAL_V3
    } else {
        SEAL_V2
    }
}

/// The row a Hex token is sealed for: every field is bound into the associated data.
#[derive(Debug, Clone, Copy)]
pub struct TokenBinding<'a> {
    /// The connection's id.
    pub connection_id: Uuid,
    /// The tenant it belongs to.
    pub tenant: &'a str,
    /// Its workspace subdomain, as stored.
    pub subdomain: &'a str,
    /// Its own Hex origin, as stored, for a connection on one of `HEXBROKER_HEX_HOSTS`; `None`
    /// for one whose origin comes from the template.
    pub hex_url: Option<&'a str>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why a keyring could not be built or a ciphertext could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The configured keyring is malformed.
    #[error("{0}")]
    BadKeyring(String),
    /// The ciphertext was sealed with a key that is not in the keyring.
    #[error("the key `{0}` that sealed this value is not in HEXBROKER_ENCRYPTION_KEYS")]
    UnknownKey(String),
    /// The ciphertext, nonce or associated data do not match.
    #[error("the sealed value failed authentication (tampered, or bound to another record)")]
    Tampered,
}

/// The AES-256-GCM keys by id; the first is active (seals), all open.
#[derive(Clone)]
pub struct Keyring {
    active: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring").field("active", &self.active).field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// Parses `KID:BASE64[,KID:BASE64…]`; each key must decode to 32 bytes, ids must be unique.
    /// Errors name the entry by position and key id, never by its bytes.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let mut active = None;
        let mut keys = HashMap::new();
        for (i, entry) in text.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let n = i + 1;
            let (id, b64) = entry
                .split_once(':')
                .ok_or_else(|| CryptoError::BadKeyring(format!("entry {n} is not KID:BASE64")))?;
            if !valid_key_id(id) {
                return Err(CryptoError::BadKeyring(format!(
                    "entry {n}: a key id is 1-64 letters, digits, `-`, `_` or `.`"
                )));
            }
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(b64.trim())
                    .map_err(|_| CryptoError::BadKeyring(format!("key `{id}` is not valid base64")))?,
            );
            if bytes.len() != KEY_LEN {
                return Err(CryptoError::BadKeyring(format!(
                    "key `{id}` is {} bytes; AES-256 needs 32",
                    bytes.len()
                )));
            }
            if keys.insert(id.to_owned(), Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes))).is_some() {
                return Err(CryptoError::BadKeyring(format!("key id `{id}` appears twice")));
            }
            active.get_or_insert_with(|| id.to_owned());
        }
        let active = active.ok_or_else(|| CryptoError::BadKeyring("no keys given".into()))?;
        Ok(Self { active, keys })
    }

    /// A fresh `KID:BASE64` entry, for `hexbroker encryption-key generate` and the SQLite key file.
    pub fn generate_entry() -> String {
        let key = Zeroizing::new(random_bytes::<KEY_LEN>());
        // The second it was made, for people; a random suffix, so that two made in the same
        // second (a script, a test) never share an id, which the keyring would refuse.
        let suffix = hex::encode(random_bytes::<4>());
        let id = format!("k{}-{suffix}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
        format!("{id}:{}", STANDARD.encode(key.as_slice()))
    }

    /// The id of the key that seals.
    pub fn active_key_id(&self) -> &str {
        &self.active
    }

    /// Seals a connection's Hex token under the active key, binding its row (seal version 2, or
    /// 3 for a row with its own Hex origin).
    pub fn seal_token(&self, binding: TokenBinding<'_>, token: &SecretString) -> Sealed {
        let version = current_seal_version(binding.hex_url);
        let sealed = self.seal(&token_aad(version, binding), token.expose_secret().as_bytes());
        Sealed { version, ..sealed }
    }

    /// Opens a connection's Hex token, checking that it was sealed for this row: a version 3
    /// seal checks id, tenant, subdomain and origin; a version 2 seal id, tenant and subdomain;
    /// a version 1 seal (the earlier way) the id alone. A row that names its own origin opens
    /// only under version 3, and one that names none never does: an origin written into an
    /// older row, or dropped from a newer one, fails as an edit.
    pub fn open_token(
        &self,
        binding: TokenBinding<'_>,
        sealed: &Sealed,
    ) -> Result<SecretString, CryptoError> {
        let fits = match sealed.version {
            SEAL_V1 | SEAL_V2 => binding.hex_url.is_none(),
            SEAL_V3 => binding.hex_url.is_some(),
            _ => false,
        };
        if !fits {
            return Err(CryptoError::Tampered);
        }
        let bytes = self.open(&token_aad(sealed.version, binding), sealed)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| CryptoError::Tampered)?;
        Ok(SecretString::from(text.to_owned()))
    }

    /// Seals `plaintext` under the active key, binding `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Sealed {
        let cipher = &self.keys[&self.active];
        let nonce = random_bytes::<NONCE_LEN>();
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        Sealed { key_id: self.active.clone(), nonce: nonce.to_vec(), ciphertext, version: SEAL_V1 }
    }

    /// Opens a value sealed by any key of the keyring, checking `aad`.
    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let cipher =
            self.keys.get(&sealed.key_id).ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.nonce.len() != NONCE_LEN {
            return Err(CryptoError::Tampered);
        }
        cipher
            .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Tampered)
    }
}

fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The associated data of a token sealed as `version`. Versions 2 and 3 length-prefix tenant,
/// subdomain (and origin), so no two different rows share associated data.
fn token_aad(version: i16, binding: TokenBinding<'_>) -> Vec<u8> {
    if version == SEAL_V1 {
        let mut aad = b"hexbroker/connection-token/v1/".to_vec();
        aad.extend_from_slice(binding.connection_id.as_bytes());
        return aad;
    }
    let mut aad = if version == SEAL_V3 {
        b"hexbroker/connection-token/v3/".to_vec()
    } else {
        b"hexbroker/connection-token/v2/".to_vec()
    };
    aad.extend_from_slice(binding.connection_id.as_bytes());
    let origin = if version == SEAL_V3 { binding.hex_url } else { None };
    for field in [Some(binding.tenant), Some(binding.subdomain), origin].into_iter().flatten() {
        aad.extend_from_slice(&(field.len() as u64).to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    aad
}

/// The associated data that binds the stored keyed-hash key.
pub const HASH_KEY_AAD: &[u8] = b"hexbroker/hash-key/v1";

/// HMAC-SHA256 under a 256-bit random key that lives in the database, sealed by the keyring.
/// Hashes of API keys and session tokens are looked up by equality; token fingerprints find
/// a token that is already connected without storing anything that opens it.
#[derive(Clone)]
pub struct Hasher {
    /// The HMAC with its key already absorbed: each hash starts from a copy of it rather than
    /// keying anew (two SHA-256 blocks saved per request).
    keyed: Hmac<Sha256>,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher(..)")
    }
}

impl Hasher {
    /// A hasher over the given key bytes.
    pub fn new(key: [u8; KEY_LEN]) -> Self {
        let key = Zeroizing::new(key);
        Self {
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(key.as_slice()).expect("HMAC takes any key length"),
        }
    }

    /// The keyed hash of a bearer secret (API key, connection key, session token).
    pub fn secret_hash(&self, secret: &str) -> [u8; 32] {
        self.mac(&[b"secret\0", secret.as_bytes()])
    }

    /// The fingerprint of a Hex token in a workspace, for de-duplication.
    pub fn token_fingerprint(&self, subdomain: &str, token: &SecretString) -> Vec<u8> {
        self.mac(&[b"hex-token\0", subdomain.as_bytes(), b"\0", token.expose_secret().as_bytes()]).to_vec()
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// `N` bytes from the operating system's generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A bearer secret: a recognisable prefix and 256 random bits, base64url.
pub fn new_secret(prefix: &str) -> SecretString {
    let bytes = Zeroizing::new(random_bytes::<32>());
    SecretString::from(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes.as_slice())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(text: &str) -> Keyring {
        Keyring::parse(text).unwrap()
    }

    fn row(connection_id: Uuid) -> TokenBinding<'static> {
        TokenBinding { connection_id, tenant: "default", subdomain: "acme", hex_url: None }
    }

    fn hosted(connection_id: Uuid) -> TokenBinding<'static> {
        TokenBinding {
            connection_id,
            tenant: "default",
            subdomain: "hex.mycorp.com",
            hex_url: Some("https://hex.mycorp.com"),
        }
    }

    fn entry(id: &str) -> String {
        let generated = Keyring::generate_entry();
        let (_, key) = generated.split_once(':').unwrap();
        format!("{id}:{key}")
    }

    #[test]
    fn a_token_round_trips() {
        let ring = keyring(&entry("k1"));
        let id = Uuid::now_v7();
        let sealed = ring.seal_token(row(id), &SecretString::from("hxtp_secret"));
        assert_eq!(sealed.key_id, "k1");
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(ring.open_token(row(id), &sealed).unwrap().expose_secret(), "hxtp_secret");
    }

    #[test]
    fn every_sealing_uses_a_fresh_nonce() {
        let ring = keyring(&entry("k1"));
        let id = Uuid::now_v7();
        let a = ring.seal_token(row(id), &SecretString::from("t"));
        let b = ring.seal_token(row(id), &SecretString::from("t"));
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn a_flipped_ciphertext_byte_fails_to_open() {
        let ring = keyring(&entry("k1"));
        let id = Uuid::now_v7();
        let mut sealed = ring.seal_token(row(id), &SecretString::from("hxtp_secret"));
        for i in 0..sealed.ciphertext.len() {
            sealed.ciphertext[i] ^= 0x01;
            assert_eq!(ring.open_token(row(id), &sealed).unwrap_err(), CryptoError::Tampered, "byte {i}");
            sealed.ciphertext[i] ^= 0x01;
        }
        sealed.nonce[0] ^= 0x80;
        assert_eq!(ring.open_token(row(id), &sealed).unwrap_err(), CryptoError::Tampered);
    }

    #[test]
    fn a_ciphertext_copied_to_another_connection_fails_to_open() {
        let ring = keyring(&entry("k1"));
        let sealed = ring.seal_token(row(Uuid::now_v7()), &SecretString::from("hxtp_secret"));
        assert_eq!(ring.open_token(row(Uuid::now_v7()), &sealed).unwrap_err(), CryptoError::Tampered);
    }

    #[test]
    fn a_row_edited_to_another_tenant_or_workspace_fails_to_open() {
        let ring = keyring(&entry("k1"));
        let id = Uuid::now_v7();
        let sealed = ring.seal_token(row(id), &SecretString::from("hxtp_secret"));
        assert_eq!(sealed.version, SEAL_V2);
        let edits = [
            TokenBinding { tenant: "other", ..row(id) },
            TokenBinding { subdomain: "evil", ..row(id) },
            // Moving bytes between the fields does not make the same associated data.
            TokenBinding { tenant: "defaulta", subdomain: "cme", ..row(id) },
        ];
        for edited in edits {
            assert_eq!(ring.open_token(edited, &sealed).unwrap_err(), CryptoError::Tampered, "{edited:?}");
        }
        let downgraded = Sealed { version: SEAL_V1, ..sealed.clone() };
        assert_eq!(ring.open_token(row(id), &downgraded).unwrap_err(), CryptoError::Tampered);
        let unknown = Sealed { version: 4, ..sealed };
        assert_eq!(ring.open_token(row(id), &unknown).unwrap_err(), CryptoError::Tampered);
    }

    #[test]
    fn a_row_on_its_own_origin_binds_the_origin() {
        let ring = keyring(&entry("k1"));
        let id = Uuid::now_v7();
        let sealed = ring.seal_token(hosted(id), &SecretString::from("hxtp_secret"));
        assert_eq!(sealed.version, SEAL_V3);
        assert_eq!(ring.open_token(hosted(id), &sealed).unwrap().expose_secret(), "hxtp_secret");
        let edits = [
            TokenBinding { hex_url: Some("https://hex.other.com"), ..hosted(id) },
            TokenBinding { hex_url: Some("https://hex.mycorp.com:8443"), ..hosted(id) },
            TokenBinding { hex_url: None, ..hosted(id) },
            TokenBinding { subdomain: "acme", ..hosted(id) },
            TokenBinding { tenant: "other", ..hosted(id) },
            // Moving bytes between subdomain and origin does not make the same associated data.
            TokenBinding {
                subdomain: "hex.mycorp.comhttps://hex.mycorp.co",
                hex_url: Some("m"),
                ..hosted(id)
            },
        ];
        for edited in edits {
            assert_eq!(ring.open_token(edited, &sealed).unwrap_err(), CryptoError::Tampered, "{edited:?}");
        }
        // Relabelled as an older seal, which binds no origin: it does not open either way.
        for version in [SEAL_V1, SEAL_V2] {
            let relabelled = Sealed { version, ..sealed.clone() };
            assert_eq!(ring.open_token(hosted(id), &relabelled).unwrap_err(), CryptoError::Tampered);
            let dropped = TokenBinding { hex_url: None, ..hosted(id) };
            assert_eq!(ring.open_token(dropped, &relabelled).unwrap_err(), CryptoError::Tampered);
        }
        // An origin written into a row sealed without one does not open.
        let plain = ring.seal_token(row(id), &SecretString::from("hxtp_secret"));
        assert_eq!(plain.version, SEAL_V2);
        let moved = TokenBinding { hex_url: Some("https://hex.mycorp.com"), ..row(id) };
        assert_eq!(ring.open_token(moved, &plain).unwrap_err(), CryptoError::Tampered);
        let v1 = ring.seal(&token_aad(SEAL_V1, row(id)), b"hxtp_old");
        assert_eq!(ring.open_token(moved, &v1).unwrap_err(), CryptoError::Tampered);
    }

    #[test]
    fn a_token_sealed_the_earlier_way_still_opens() {
        let ring = keyring(&entry("k1"));
        let id = Uuid::now_v7();
        let v1 = ring.seal(&token_aad(SEAL_V1, row(id)), b"hxtp_old");
        assert_eq!(v1.version, SEAL_V1);
        assert_eq!(ring.open_token(row(id), &v1).unwrap().expose_secret(), "hxtp_old");
        assert_eq!(ring.open_token(row(Uuid::now_v7()), &v1).unwrap_err(), CryptoError::Tampered);
    }

    #[test]
    fn a_missing_key_id_gives_a_clear_error() {
        let old = keyring(&entry("old"));
        let id = Uuid::now_v7();
        let sealed = old.seal_token(row(id), &SecretString::from("t"));
        let new = keyring(&entry("new"));
        let err = new.open_token(row(id), &sealed).unwrap_err();
        assert_eq!(err, CryptoError::UnknownKey("old".into()));
        assert!(err.to_string().contains("`old`"));
    }

    #[test]
    fn older_keys_still_open_and_the_first_key_seals() {
        let old_entry = entry("old");
        let id = Uuid::now_v7();
        let sealed = keyring(&old_entry).seal_token(row(id), &SecretString::from("t"));
        let rotated = keyring(&format!("{},{old_entry}", entry("new")));
        assert_eq!(rotated.active_key_id(), "new");
        assert_eq!(rotated.open_token(row(id), &sealed).unwrap().expose_secret(), "t");
        assert_eq!(rotated.seal_token(row(id), &SecretString::from("t")).key_id, "new");
    }

    #[test]
    fn malformed_keyrings_are_refused_without_echoing_key_bytes() {
        let short = STANDARD.encode([7u8; 16]);
        let good = STANDARD.encode([1u8; 32]);
        let dup = entry("dup");
        let dup_key = dup.split_once(':').unwrap().1.to_owned();
        // Each case, the reason it is refused, and the key bytes in it that the reason must not
        // repeat.
        let cases = [
            (String::new(), "no keys given", None),
            ("nokeyhere".to_owned(), "entry 1 is not KID:BASE64", None),
            (format!("k1:{short}"), "key `k1` is 16 bytes; AES-256 needs 32", Some(short.as_str())),
            ("k1:***".to_owned(), "key `k1` is not valid base64", Some("***")),
            (format!("bad id:{good}"), "entry 1: a key id is", Some(good.as_str())),
            (format!("{dup},{dup}"), "key id `dup` appears twice", Some(dup_key.as_str())),
        ];
        for (case, reason, key) in cases {
            let err = Keyring::parse(&case).unwrap_err().to_string();
            assert!(err.contains(reason), "{case:?}: {err}");
            if let Some(key) = key {
                assert!(!err.contains(key), "{case:?} echoes its key bytes: {err}");
            }
        }
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let text = entry("k1");
        let ring = keyring(&text);
        let debug = format!("{ring:?}");
        assert!(debug.contains("k1"));
        assert!(!debug.contains(text.split_once(':').unwrap().1));
    }

    #[test]
    fn secrets_carry_their_prefix_and_256_bits() {
        let secret = new_secret("hxbk_");
        let text = secret.expose_secret();
        assert!(text.starts_with("hxbk_"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&text[5..]).unwrap().len(), 32);
        assert_ne!(text, new_secret("hxbk_").expose_secret());
    }

    #[test]
    fn hashes_are_keyed_and_domain_separated() {
        let a = Hasher::new([1; KEY_LEN]);
        let b = Hasher::new([2; KEY_LEN]);
        assert_eq!(a.secret_hash("x"), a.secret_hash("x"));
        assert_ne!(a.secret_hash("x"), b.secret_hash("x"));
        let t = SecretString::from("x");
        assert_ne!(a.token_fingerprint("acme", &t), a.token_fingerprint("other", &t));
    }
}
