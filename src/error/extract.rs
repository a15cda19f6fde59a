//! The extractors whose rejections come out in the contract's error shape ([`Json`], [`Path`]),
//! and the description of a JSON body that does not fit, which never quotes the caller's value.

use std::marker::PhantomData;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{ApiError, Code};

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::UnsupportedMediaType,
                "Send the body as JSON with `Content-Type: application/json`.",
            ),
            JsonRejection::JsonDataError(e) => {
                Self::unprocessable(Code::InvalidBody, describe_data_error(&e))
            }
            JsonRejection::JsonSyntaxError(_) => {
                Self::bad_request(Code::InvalidJson, "The body is not valid JSON.")
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::BodyTooLarge,
                "The request body is larger than this endpoint accepts.",
            ),
            _ => Self::bad_request(Code::InvalidBody, "The request body could not be read."),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::bad_request(Code::InvalidPath, "The URL path could not be read (is it valid UTF-8?).")
    }
}

/// `axum::extract::Path` whose rejections come out in the contract's error shape.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::Json` whose rejections come out in the contract's error shape, and which reads only a
/// JSON object: serde's derived structs would also take an array (`[null, null]`), field by
/// field in order, which no request schema allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(Object(value)) = axum::Json::<Object<T>>::from_request(request, state).await?;
        Ok(Json(value))
    }
}

/// `T`, read from a JSON object only.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Visit(PhantomData)).map(Object)
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// What did not fit in a JSON body, naming the field and the rule it broke and never the value:
/// serde's messages quote the rejected value (`invalid type: string "…"`), and that value may be
/// a secret put in the wrong field. The field path comes from `serde_path_to_error` (which axum
/// uses), the rule from the head and the `expected …` tail of serde's message, which come from
/// hexbroker's own types.
fn describe_data_error(rejection: &axum::extract::rejection::JsonDataError) -> String {
    type PathError = serde_path_to_error::Error<serde_json::Error>;
    let mut source = std::error::Error::source(rejection);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<PathError>() {
            return describe(&field_path(found.path()), &found.inner().to_string());
        }
        source = e.source();
    }
    "The JSON body does not fit this endpoint's fields.".into()
}

/// `a.b[0]`, with any key that is not a plain field name shown as `…`.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(if is_field_name(key) { key } else { "…" });
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// A name shaped like hexbroker's own fields (`snake_case` letters), so one that a caller made up
/// with a secret's mix of cases and digits is not shown.
fn is_field_name(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// One sentence from a field path and serde's message, keeping only what hexbroker wrote.
fn describe(path: &str, message: &str) -> String {
    // serde_json appends ` at line L column C`; serde's `expected …` comes after the value.
    let message = message.rsplit_once(" at line ").map_or(message, |(head, _)| head);
    let expected = message.rsplit_once(", expected ").map(|(_, tail)| tail);
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('`')?.split_once('`'))
            .map(|(name, _)| name)
            .filter(|name| is_field_name(name))
    };
    let at = if path.is_empty() { String::new() } else { format!(" at `{path}`") };
    let rule = if let Some(field) = named("missing field ") {
        return format!("The JSON body lacks the required field `{field}`{}.", at);
    } else if message.starts_with("unknown field ") {
        // The unknown name is the caller's text, not hexbroker's: say what is taken instead.
        // (serde_path_to_error's path ends with that name, so it is not shown either.)
        let taken = expected.map(|e| format!("; expected {e}")).unwrap_or_default();
        return format!("The JSON body has a field that this endpoint does not take{taken}.");
    } else if message.starts_with("invalid type") {
        "has the wrong type"
    } else if message.starts_with("invalid length") {
        "has the wrong length"
    } else if message.starts_with("unknown variant") {
        "is not one of the accepted values"
    } else {
        "is not an accepted value"
    };
    match expected.filter(|e| !e.contains('"')) {
        Some(expected) => format!("The JSON body does not fit: the value{at} {rule}; expected {expected}."),
        None => format!("The JSON body does not fit: the value{at} {rule}."),
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::FromRequest;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        token: String,
        label: Option<std::collections::HashMap<String, String>>,
        scopes: Option<Vec<u32>>,
        kind: Option<Kind>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Personal,
    }

    async fn message_for(body: &str) -> (String, String) {
        let request = axum::http::Request::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        let rejection = axum::Json::<Body>::from_request(request, &()).await.unwrap_err();
        let error = ApiError::from(rejection);
        (error.code.as_str().to_owned(), error.message.into_owned())
    }

    #[tokio::test]
    async fn a_rejected_value_is_never_echoed_and_the_field_is_named() {
        let secret = "hxtp_SECRET";
        let hostile = [
            (format!(r#"{{"token": 1, "label": "{secret}"}}"#), "token"),
            (format!(r#"{{"token": "x", "label": "{secret}"}}"#), "label"),
            (format!(r#"{{"token": "x", "label": "a\"b {secret} \"c"}}"#), "label"),
            (format!(r#"{{"token": "x", "label": "\\\" {secret}"}}"#), "label"),
            (format!(r#"{{"token": "x", "label": {{"k": 5}}, "z": "{secret}"}}"#), "label.k"),
            (format!(r#"{{"token": "x", "scopes": ["{secret}"]}}"#), "scopes[0]"),
            (r#"{"token": "x", "scopes": [-1]}"#.to_owned(), "scopes[0]"),
            (format!(r#"{{"token": "x", "kind": "{secret}"}}"#), "kind"),
            (format!(r#"{{"token": "x", "{secret}": 1}}"#), "field"),
            (format!(r#"{{"token": "x", "label": {{"{secret}\"": 5}}}}"#), "label.…"),
            (format!(r#"{{"scopes": null, "z{secret}": 1}}"#), "field"),
            (r#"{"scopes": null}"#.to_owned(), "`token`"),
        ];
        for (body, names) in hostile {
            let (code, message) = message_for(&body).await;
            assert_eq!(code, "invalid_body", "{body}");
            assert!(!message.contains("SECRET"), "{body} gave {message}");
            assert!(message.contains(names), "{body} gave {message}, which should name {names}");
        }
    }

    #[tokio::test]
    async fn the_rule_comes_from_hexbrokers_types() {
        let (_, message) = message_for(r#"{"token": 5}"#).await;
        assert_eq!(
            message,
            "The JSON body does not fit: the value at `token` has the wrong type; expected a string."
        );
        let (_, message) = message_for(r#"{}"#).await;
        assert_eq!(message, "The JSON body lacks the required field `token`.");
        let (_, message) = message_for(r#"{"token": "x", "extra": 1}"#).await;
        assert!(
            message.starts_with("The JSON body has a field that this endpoint does not take; expected"),
            "{message}"
        );
    }
}
