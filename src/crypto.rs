//! Everything that touches key bytes: the AES-256-GCM keyring that seals Hex tokens (§9), the keyed
//! hash for API keys, session tokens and token fingerprints, and random secrets.
//!
//! A sealed token carries the id of the key that sealed it and binds the connection id in as
//! associated data, so a ciphertext copied onto another row does not open.

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
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed").field("key_id", &self.key_id).finish_non_exhaustive()
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

    /// Seals a connection's Hex token, binding the connection id.
    pub fn seal_token(&self, connection_id: Uuid, token: &SecretString) -> Sealed {
        self.seal(&token_aad(connection_id), token.expose_secret().as_bytes())
    }

    /// Opens a connection's Hex token.
    pub fn open_token(&self, connection_id: Uuid, sealed: &Sealed) -> Result<SecretString, CryptoError> {
        let bytes = self.open(&token_aad(connection_id), sealed)?;
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
        Sealed { key_id: self.active.clone(), nonce: nonce.to_vec(), ciphertext }
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

fn token_aad(connection_id: Uuid) -> Vec<u8> {
    let mut aad = b"hexbroker/connection-token/v1/".to_vec();
    aad.extend_from_slice(connection_id.as_bytes());
    aad
}

/// The associated data that binds the stored keyed-hash key.
pub const HASH_KEY_AAD: &[u8] = b"hexbroker/hash-key/v1";

/// HMAC-SHA256 under a 256-bit random key that lives in the database, sealed by the keyring.
/// Hashes of API keys and session tokens are looked up by equality; token fingerprints find
/// a token that is already connected without storing anything that opens it.
#[derive(Clone)]
pub struct Hasher {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher(..)")
    }
}

impl Hasher {
    /// A hasher over the given key bytes.
    pub fn new(key: [u8; KEY_LEN]) -> Self {
        Self { key: Zeroizing::new(key) }
    }

    /// The keyed hash of a bearer secret (API key, connection key, session token).
    pub fn secret_hash(&self, secret: &str) -> Vec<u8> {
        self.mac(&[b"secret\0", secret.as_bytes()])
    }

    /// The fingerprint of a Hex token in a workspace, for de-duplication.
    pub fn token_fingerprint(&self, subdomain: &str, token: &SecretString) -> Vec<u8> {
        self.mac(&[b"hex-token\0", subdomain.as_bytes(), b"\0", token.expose_secret().as_bytes()])
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_slice()).expect("HMAC takes any key length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
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

    fn entry(id: &str) -> String {
        let generated = Keyring::generate_entry();
        let (_, key) = generated.split_once(':').unwrap();
        format!("{id}:{key}")
    }

    #[test]
    fn a_token_round_trips() {
        let ring = keyring(&entry("k1"));
        let id = Uuid::now_v7();
        let sealed = ring.seal_token(id, &SecretString::from("hxtp_secret"));
        assert_eq!(sealed.key_id, "k1");
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(ring.open_token(id, &sealed).unwrap().expose_secret(), "hxtp_secret");
    }

    #[test]
    fn every_sealing_uses_a_fresh_nonce() {
        let ring = keyring(&entry("k1"));
        let id = Uuid::now_v7();
        let a = ring.seal_token(id, &SecretString::from("t"));
        let b = ring.seal_token(id, &SecretString::from("t"));
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn a_flipped_ciphertext_byte_fails_to_open() {
        let ring = keyring(&entry("k1"));
        let id = Uuid::now_v7();
        let mut sealed = ring.seal_token(id, &SecretString::from("hxtp_secret"));
        for i in 0..sealed.ciphertext.len() {
            sealed.ciphertext[i] ^= 0x01;
            assert_eq!(ring.open_token(id, &sealed).unwrap_err(), CryptoError::Tampered, "byte {i}");
            sealed.ciphertext[i] ^= 0x01;
        }
        sealed.nonce[0] ^= 0x80;
        assert_eq!(ring.open_token(id, &sealed).unwrap_err(), CryptoError::Tampered);
    }

    #[test]
    fn a_ciphertext_copied_to_another_connection_fails_to_open() {
        let ring = keyring(&entry("k1"));
        let sealed = ring.seal_token(Uuid::now_v7(), &SecretString::from("hxtp_secret"));
        assert_eq!(ring.open_token(Uuid::now_v7(), &sealed).unwrap_err(), CryptoError::Tampered);
    }

    #[test]
    fn a_missing_key_id_gives_a_clear_error() {
        let old = keyring(&entry("old"));
        let id = Uuid::now_v7();
        let sealed = old.seal_token(id, &SecretString::from("t"));
        let new = keyring(&entry("new"));
        let err = new.open_token(id, &sealed).unwrap_err();
        assert_eq!(err, CryptoError::UnknownKey("old".into()));
        assert!(err.to_string().contains("`old`"));
    }

    #[test]
    fn older_keys_still_open_and_the_first_key_seals() {
        let old_entry = entry("old");
        let id = Uuid::now_v7();
        let sealed = keyring(&old_entry).seal_token(id, &SecretString::from("t"));
        let rotated = keyring(&format!("{},{old_entry}", entry("new")));
        assert_eq!(rotated.active_key_id(), "new");
        assert_eq!(rotated.open_token(id, &sealed).unwrap().expose_secret(), "t");
        assert_eq!(rotated.seal_token(id, &SecretString::from("t")).key_id, "new");
    }

    #[test]
    fn malformed_keyrings_are_refused_without_echoing_key_bytes() {
        let short = STANDARD.encode([7u8; 16]);
        let cases = [
            String::new(),
            "nokeyhere".to_owned(),
            format!("k1:{short}"),
            "k1:***".to_owned(),
            format!("bad id:{}", STANDARD.encode([1u8; 32])),
            format!("{},{}", entry("dup"), entry("dup")),
        ];
        for case in cases {
            let err = Keyring::parse(&case).unwrap_err().to_string();
            assert!(!err.contains(&short), "{err}");
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
