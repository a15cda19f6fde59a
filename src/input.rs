//! The strings callers send (§5), one `parse` per kind: end-user ids, emails, labels, metadata,
//! key names, tenants, query filters and a caller's request id. Each kind has its length rule,
//! and every kind refuses control characters (U+0000–U+001F, U+007F): Postgres cannot store
//! U+0000 in `text` or `jsonb` at all, and the others have no place in an id, a name or a log
//! line. Handlers parse first, before any call to Hex, any session use or any write, so a refused
//! string changes nothing, on either backend.
//!
//! A refusal says which field broke which rule and never quotes the value.

use std::borrow::Cow;

/// Why a caller's string was refused: a sentence that names the field and its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(Cow<'static, str>);

impl Refused {
    /// The sentence, for the caller.
    pub fn message(&self) -> &str {
        &self.0
    }

    /// The sentence, owned.
    pub fn into_message(self) -> Cow<'static, str> {
        self.0
    }

    fn control(field: &str) -> Self {
        Self(format!("{field} must not contain control characters (U+0000 to U+001F, U+007F).").into())
    }
}

/// Whether `text` holds a control character (U+0000–U+001F or U+007F). Every byte below 0x80 in
/// UTF-8 is the ASCII character itself, so a byte scan is exact.
pub fn has_control(text: &str) -> bool {
    text.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// `text` if it holds no control character, else a refusal naming `field`.
fn no_control<'a>(field: &str, text: &'a str) -> Result<&'a str, Refused> {
    if has_control(text) {
        Err(Refused::control(field))
    } else {
        Ok(text)
    }
}

/// The end user a connection or session belongs to: at most 256 characters as sent, not blank,
/// kept without its surrounding spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUserId(String);

impl EndUserId {
    /// The most characters an end-user id may have, as sent (the spec's `maxLength`).
    pub const MAX_CHARS: usize = 256;

    /// Checks `raw`.
    pub fn parse(raw: &str) -> Result<Self, Refused> {
        let raw = no_control("end_user_id", raw)?;
        let trimmed = raw.trim();
        if trimmed.is_empty() || raw.chars().count() > Self::MAX_CHARS {
            return Err(Refused("end_user_id is 1 to 256 characters.".into()));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The id.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An end user's email as the caller knows it: at most 320 characters (no format is imposed:
/// it is the caller's record, shown back as given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUserEmail(String);

impl EndUserEmail {
    /// Checks `raw`.
    pub fn parse(raw: String) -> Result<Self, Refused> {
        no_control("end_user_email", &raw)?;
        if raw.chars().count() > 320 {
            return Err(Refused("end_user_email is at most 320 characters.".into()));
        }
        Ok(Self(raw))
    }

    /// Checks `raw` when there is one.
    pub fn parse_optional(raw: Option<String>) -> Result<Option<String>, Refused> {
        raw.map(|raw| Self::parse(raw).map(|email| email.0)).transpose()
    }
}

/// A connection's label: at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    /// Checks `raw`.
    pub fn parse(raw: String) -> Result<Self, Refused> {
        no_control("label", &raw)?;
        if raw.chars().count() > 200 {
            return Err(Refused("label is at most 200 characters.".into()));
        }
        Ok(Self(raw))
    }

    /// Checks `raw` when there is one.
    pub fn parse_optional(raw: Option<String>) -> Result<Option<String>, Refused> {
        raw.map(|raw| Self::parse(raw).map(|label| label.0)).transpose()
    }
}

/// A connection's metadata: a JSON object of at most 16 KiB, with no control character in any
/// key or string at any depth.
#[derive(Debug)]
pub struct Metadata;

impl Metadata {
    /// The largest metadata object, serialised.
    pub const MAX_BYTES: usize = 16 * 1024;

    /// Checks `value`, and gives it back.
    pub fn parse(value: serde_json::Value) -> Result<serde_json::Value, Refused> {
        if !value.is_object() || serde_json::to_vec(&value).map_or(true, |v| v.len() > Self::MAX_BYTES) {
            return Err(Refused("metadata is a JSON object of at most 16 KiB.".into()));
        }
        // serde_json refuses input nested deeper than 128 levels, so the walk's stack is bounded.
        let mut pending = vec![&value];
        while let Some(value) = pending.pop() {
            match value {
                serde_json::Value::String(text) => {
                    no_control("metadata", text)?;
                }
                serde_json::Value::Array(items) => pending.extend(items),
                serde_json::Value::Object(map) => {
                    for (key, item) in map {
                        no_control("metadata", key)?;
                        pending.push(item);
                    }
                }
                _ => {}
            }
        }
        Ok(value)
    }
}

/// The name of an API key or connection key: at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    /// Checks `raw`.
    pub fn parse(raw: String) -> Result<Self, Refused> {
        no_control("name", &raw)?;
        if raw.chars().count() > 200 {
            return Err(Refused("name is at most 200 characters.".into()));
        }
        Ok(Self(raw))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tenant's name (the command line's `--tenant`): 1 to 128 characters, kept without its
/// surrounding spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(String);

impl Tenant {
    /// Checks `raw`.
    pub fn parse(raw: &str) -> Result<Self, Refused> {
        let trimmed = no_control("tenant", raw)?.trim();
        if trimmed.is_empty() || trimmed.len() > 128 {
            return Err(Refused("tenant is 1 to 128 characters.".into()));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The tenant.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A query filter's value (`?end_user_id=`, `?actor=`): any text without control characters.
pub fn filter(field: &'static str, raw: Option<String>) -> Result<Option<String>, Refused> {
    match raw {
        Some(raw) if has_control(&raw) => Err(Refused::control(field)),
        raw => Ok(raw),
    }
}

/// An id as the API gives it out: a UUID in its canonical hyphenated form (8-4-4-4-12 hex
/// digits). The `urn:uuid:`, braced and dashless spellings that the `uuid` crate also reads name
/// nothing here, so that one id has one spelling in paths, headers and logs.
pub fn canonical_uuid(raw: &str) -> Option<uuid::Uuid> {
    // The crate reads a 36-character input only as the hyphenated form.
    (raw.len() == 36).then(|| uuid::Uuid::try_parse(raw).ok()).flatten()
}

/// A caller's `X-Request-Id` that hexbroker keeps beside its own (§5): 1 to 128 characters of
/// `[A-Za-z0-9._-]`. Anything else is ignored, never echoed or stored.
pub fn caller_request_id(raw: &[u8]) -> Option<&str> {
    let fits = (1..=128).contains(&raw.len())
        && raw.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fits {
        std::str::from_utf8(raw).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_control_character_is_refused_in_every_kind_and_the_value_is_not_quoted() {
        let controls = (0u8..0x20).chain([0x7f]).map(char::from);
        for c in controls {
            let text = format!("a{c}SECRET");
            let refusals = [
                EndUserId::parse(&text).unwrap_err(),
                EndUserEmail::parse(text.clone()).unwrap_err(),
                Label::parse(text.clone()).unwrap_err(),
                KeyName::parse(text.clone()).unwrap_err(),
                Tenant::parse(&text).unwrap_err(),
                filter("actor", Some(text.clone())).unwrap_err(),
                Metadata::parse(json!({ "k": text })).unwrap_err(),
                Metadata::parse(json!({ text.clone(): 1 })).unwrap_err(),
                Metadata::parse(json!({ "a": [{ "b": [text.clone()] }] })).unwrap_err(),
            ];
            for refused in refusals {
                assert!(refused.message().contains("control characters"), "{:?}: {refused}", c);
                assert!(!refused.message().contains("SECRET"));
            }
        }
    }

    #[test]
    fn each_kind_keeps_its_length_rule_and_takes_what_it_took_before() {
        // Table: kind, input, accepted.
        let x = |n: usize| "é".repeat(n);
        let cases: [(&str, String, bool); 14] = [
            ("end_user_id", " u1 ".into(), true),
            ("end_user_id", "   ".into(), false),
            ("end_user_id", x(256), true),
            ("end_user_id", x(257), false),
            ("email", x(320), true),
            ("email", x(321), false),
            ("label", x(200), true),
            ("label", x(201), false),
            ("label", "Ünïcödé ✓ and spaces".into(), true),
            ("name", String::new(), true),
            ("name", x(201), false),
            ("tenant", " acme ".into(), true),
            ("tenant", String::new(), false),
            ("tenant", "a".repeat(129), false),
        ];
        for (kind, input, accepted) in cases {
            let ok = match kind {
                "end_user_id" => EndUserId::parse(&input).is_ok(),
                "email" => EndUserEmail::parse(input.clone()).is_ok(),
                "label" => Label::parse(input.clone()).is_ok(),
                "name" => KeyName::parse(input.clone()).is_ok(),
                _ => Tenant::parse(&input).is_ok(),
            };
            assert_eq!(ok, accepted, "{kind} {input:?}");
        }
        assert_eq!(EndUserId::parse(" u1 ").unwrap().into_inner(), "u1");
        assert_eq!(Tenant::parse(" acme ").unwrap().as_str(), "acme");
        assert!(Metadata::parse(json!([])).is_err());
        assert!(Metadata::parse(json!({ "k": "v".repeat(17 * 1024) })).is_err());
        assert!(Metadata::parse(json!({ "plan": "pro", "n": [1, null, { "é": "ü" }] })).is_ok());
        assert_eq!(filter("end_user_id", None), Ok(None));
    }

    #[test]
    fn only_the_canonical_spelling_of_an_id_names_it() {
        let id = uuid::Uuid::now_v7();
        let hyphenated = id.to_string();
        assert_eq!(canonical_uuid(&hyphenated), Some(id));
        assert_eq!(canonical_uuid(&hyphenated.to_uppercase()), Some(id));
        for other in [
            id.urn().to_string(),
            id.braced().to_string(),
            id.simple().to_string(),
            format!(" {hyphenated}"),
            format!("{hyphenated},{hyphenated}"),
            hyphenated.replace('-', "_"),
            String::new(),
        ] {
            assert_eq!(canonical_uuid(&other), None, "{other}");
        }
    }

    #[test]
    fn a_caller_request_id_is_kept_only_in_its_shape() {
        let long = "a".repeat(128);
        let too_long = "a".repeat(129);
        let cases: [(&[u8], bool); 9] = [
            (b"abc-123_X.y", true),
            (long.as_bytes(), true),
            (too_long.as_bytes(), false),
            (b"", false),
            (b"has space", false),
            (b"semi;colon", false),
            (b"tab\t", false),
            ("é".as_bytes(), false),
            (b"a/b", false),
        ];
        for (raw, kept) in cases {
            assert_eq!(caller_request_id(raw).is_some(), kept, "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
