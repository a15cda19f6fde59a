//! The identity in Hex's `users/me` answer, read leniently: a field of an unexpected type or
//! form is unknown, never a failed connect.

use chrono::{DateTime, Utc};

use crate::store::HexIdentity;

/// The identity in Hex's `users/me` answer (user fields only for personal tokens), or `None`
/// when the body is not the spec's shape: a JSON object with `org`. A field of an unexpected
/// type or form is kept as unknown: it never fails a connect.
pub(super) fn identity_from_me(body: &[u8]) -> Option<HexIdentity> {
    let me: serde_json::Value = serde_json::from_slice(body).ok()?;
    let me = me.as_object()?;
    let org = me.get("org")?;
    let org_id = org.get("id").and_then(|v| v.as_str()).map(str::trim).filter(|id| is_org_id(id));
    let user_email = me.get("email").and_then(|v| v.as_str()).map(str::trim).filter(|e| is_email(e));
    let exp = me.get("token").and_then(|t| t.get("exp")).and_then(serde_json::Value::as_f64);
    Some(HexIdentity {
        org_id: org_id.map(str::to_owned),
        user_email: user_email.map(str::to_owned),
        token_expires_at: exp.and_then(expiry_from_number),
    })
}

/// An org id as Hex gives them (a UUID in practice): 1–128 visible ASCII characters.
fn is_org_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Something that reads as one email address: `local@domain.tld`, visible characters, no spaces,
/// at most 254 bytes.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else { return false };
    text.len() <= 254
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && text.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

/// Hex sends `exp` as a number; read it as Unix seconds, or milliseconds when it is that large.
fn expiry_from_number(exp: f64) -> Option<DateTime<Utc>> {
    if !exp.is_finite() || exp <= 0.0 {
        return None;
    }
    let millis = if exp > 1e11 { exp } else { exp * 1000.0 };
    // Past the year 9999 or so the number is not a date anyone meant; keep it unknown.
    if millis > 253_402_300_799_000.0 {
        return None;
    }
    DateTime::from_timestamp_millis(millis as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_reads_seconds_or_milliseconds() {
        let t = expiry_from_number(1_767_225_600.0).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(expiry_from_number(1_767_225_600_000.0), Some(t));
        assert_eq!(expiry_from_number(0.0), None);
        assert_eq!(expiry_from_number(f64::NAN), None);
        assert_eq!(expiry_from_number(f64::MAX), None);
        assert_eq!(expiry_from_number(f64::INFINITY), None);
    }

    #[test]
    fn identity_fields_of_unexpected_types_or_forms_are_unknown() {
        let exp = 1_767_225_600;
        let good = format!(r#"{{"email":"ada@example.com","org":{{"id":"org-1"}},"token":{{"exp":{exp}}}}}"#);
        let identity = identity_from_me(good.as_bytes()).unwrap();
        assert_eq!(identity.org_id.as_deref(), Some("org-1"));
        assert_eq!(identity.user_email.as_deref(), Some("ada@example.com"));
        assert_eq!(identity.token_expires_at, expiry_from_number(exp as f64));
        let odd = [
            r#"{"org":{"id":42},"email":"not an email","token":{"exp":"2026-01-01"}}"#,
            r#"{"org":{"id":null},"email":17,"token":{"exp":{"seconds":1}}}"#,
            r#"{"org":{},"email":"a@b@c.d","token":"soon"}"#,
            r#"{"org":"acme","email":["ada@example.com"],"token":{"exp":1e300}}"#,
            r#"{"org":{"id":""},"email":"ada@localhost","token":{"exp":-5}}"#,
            r#"{"org":{"id":"bad id"},"email":"ada@exa mple.com","token":null}"#,
        ];
        for body in odd {
            assert_eq!(identity_from_me(body.as_bytes()), Some(HexIdentity::default()), "{body}");
        }
        for unreadable in ["", "null", "[]", "\"just text\"", "{\"email\":\"ada@example.com\"}", "<html>"] {
            assert_eq!(identity_from_me(unreadable.as_bytes()), None, "{unreadable}");
        }
    }
}
