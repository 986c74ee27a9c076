//! JSON in and out of handlers, with the original's leniency: an empty body means `{}`, any
//! content type is accepted, and a body that does not parse is a 400 (code 3) in the common
//! error shape with serde's exact reason, instead of axum's plain-text rejection.
//!
//! The `de_*_lenient` helpers accept what protojson accepted for scalars: numbers sent as
//! strings, and `null` meaning the zero value. Use them per field together with
//! `#[serde(default)]` so missing fields also take the zero value:
//!
//! ```ignore
//! #[derive(serde::Deserialize)]
//! struct AddItem {
//!     #[serde(default, deserialize_with = "platform::de_i32_lenient")]
//!     quantity: i32,
//! }
//! ```

use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::{self, DeserializeOwned, Deserializer, Unexpected, Visitor};

use super::error::{ApiError, BODY_TOO_LARGE, ErrorKind};

/// A JSON request body (extractor) or response body (`IntoResponse`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorKind::TooLarge, BODY_TOO_LARGE)
            } else {
                ApiError::bad_request(format!(
                    "cannot read request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// Parses a request body the way [`ApiJson`] does (also for handlers that take raw bytes).
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let trimmed = bytes.trim_ascii();
    let bytes: &[u8] = if trimmed.is_empty() { b"{}" } else { bytes };
    // Request bodies are JSON objects. serde would read an array into a struct field by field,
    // so `[]` or `["x"]` would pass as a valid (and wrong) request.
    if trimmed.first().is_some_and(|b| *b != b'{') {
        return Err(ApiError::bad_request(
            "invalid request body: expected a JSON object",
        ));
    }
    let parsed = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    match scan(bytes) {
        Some(problem) => Err(ApiError::bad_request(format!(
            "invalid request body: {problem}"
        ))),
        None => Ok(parsed),
    }
}

/// Deepest nesting of arrays and objects a request body may have. The API's bodies nest three
/// levels; serde stops at 128 only for the fields it reads, while unknown fields (ignored) were
/// skipped at any depth.
pub const MAX_JSON_DEPTH: usize = 32;

/// What is wrong with a syntactically valid JSON text that serde accepted: nesting deeper than
/// [`MAX_JSON_DEPTH`], or a `\u0000` escape — PostgreSQL stores no NUL in text or jsonb, so such
/// a string would fail at the database as a 500 after the handler had started its work.
fn scan(json: &[u8]) -> Option<String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            // Every backslash (only valid inside strings) starts an escape: skipping the escaped
            // character tells `\u0000` from an escaped backslash followed by `u0000`.
            b'\\' => {
                if json.get(i + 1) == Some(&b'u')
                    && json.get(i + 2..i + 6) == Some(b"0000".as_slice())
                {
                    return Some("strings cannot contain NUL (\\u0000)".to_owned());
                }
                i += 1;
            }
            b'"' => in_string = !in_string,
            b'[' | b'{' if !in_string => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Some(format!("nested deeper than {MAX_JSON_DEPTH} levels"));
                }
            }
            b']' | b'}' if !in_string => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A `double` field: a number, a numeric string (`"5.5"`, `"NaN"`), or `null` for 0.
pub fn de_f64_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    deserializer.deserialize_any(F64Visitor)
}

/// An `int32` field: an integral number, a numeric string (`"3"`), or `null` for 0.
pub fn de_i32_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    let wide = deserializer.deserialize_any(IntVisitor {
        expected: "a 32-bit integer or a string holding one",
    })?;
    i32::try_from(wide)
        .map_err(|_| de::Error::invalid_value(Unexpected::Signed(wide), &"a 32-bit integer"))
}

/// An `int64` field: an integral number, a numeric string (protojson's usual form), or `null`.
pub fn de_i64_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(IntVisitor {
        expected: "a 64-bit integer or a string holding one",
    })
}

/// A `string` field: a string, or `null` for the empty string.
pub fn de_string_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_any(StringVisitor)
}

struct F64Visitor;

impl<'de> Visitor<'de> for F64Visitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a string holding one")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        v.trim()
            .parse()
            .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Ok(0.0)
    }

    fn visit_none<E: de::Error>(self) -> Result<f64, E> {
        Ok(0.0)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_any(self)
    }
}

struct IntVisitor {
    expected: &'static str,
}

impl<'de> Visitor<'de> for IntVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        // `3.0` and `1e2` are integral; protojson took them for integer fields.
        if v.fract() == 0.0 && v >= i64::MIN as f64 && v <= i64::MAX as f64 {
            Ok(v as i64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        let t = v.trim();
        match t.parse::<i64>() {
            Ok(n) => Ok(n),
            Err(_) => match t.parse::<f64>() {
                Ok(f) if f.is_finite() => self.visit_f64(f),
                _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
            },
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
        Ok(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<i64, E> {
        Ok(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_any(self)
    }
}

struct StringVisitor;

impl<'de> Visitor<'de> for StringVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Item {
        #[serde(default, deserialize_with = "de_string_lenient")]
        name: String,
        #[serde(default, deserialize_with = "de_f64_lenient")]
        price: f64,
        #[serde(default, deserialize_with = "de_i32_lenient")]
        quantity: i32,
        #[serde(default, deserialize_with = "de_i64_lenient")]
        total: i64,
    }

    fn item(json: &str) -> Result<Item, ApiError> {
        parse_body(json.as_bytes())
    }

    #[test]
    fn only_objects_are_request_bodies() {
        for body in ["[]", "[\"x\", 1]", "5", "\"text\"", "null"] {
            let err = item(body).unwrap_err();
            assert_eq!(err.code(), 3, "{body}");
            assert_eq!(
                err.message(),
                "invalid request body: expected a JSON object",
                "{body}"
            );
        }
        assert!(item("  ").is_ok(), "an empty body is an empty object");
    }

    #[test]
    fn nul_characters_and_deep_nesting_are_refused_and_strings_are_not_mistaken_for_them() {
        for body in [
            r#"{"name":"a\u0000b"}"#,
            r#"{"name":"\u0000"}"#,
            r#"{"other":["\u0000"]}"#,
        ] {
            let err = item(body).unwrap_err();
            assert_eq!(err.code(), 3, "{body}");
            assert!(err.message().contains("NUL"), "{body}: {}", err.message());
        }
        let deep = |n: usize| format!(r#"{{"other":{}1{}}}"#, "[".repeat(n), "]".repeat(n));
        assert!(
            item(&deep(MAX_JSON_DEPTH - 1)).is_ok(),
            "an unknown field, nested"
        );
        let err = item(&deep(MAX_JSON_DEPTH)).unwrap_err();
        assert_eq!(
            err.message(),
            "invalid request body: nested deeper than 32 levels"
        );
        assert!(item(&deep(100_000)).is_err());
        assert!(item(r#"{"name":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"{{{"}"#).is_ok());
        let ok = item(r#"{"name":"a\\u0000b"}"#).unwrap();
        assert_eq!(ok.name, "a\\u0000b");
        assert_eq!(item(r#"{"name":"\u0041"}"#).unwrap().name, "A");
    }

    #[test]
    fn numbers_as_strings_and_nulls_are_accepted() {
        let expected = Item {
            name: "x".into(),
            price: 5.5,
            quantity: 3,
            total: 7,
        };
        assert_eq!(
            item(r#"{"name":"x","price":5.5,"quantity":3,"total":7}"#).unwrap(),
            expected
        );
        assert_eq!(
            item(r#"{"name":"x","price":"5.5","quantity":"3","total":"7"}"#).unwrap(),
            expected
        );
        assert_eq!(
            item(r#"{"name":"x","price":5.5,"quantity":3.0,"total":"7"}"#).unwrap(),
            expected
        );
        let zero = Item {
            name: String::new(),
            price: 0.0,
            quantity: 0,
            total: 0,
        };
        assert_eq!(
            item(r#"{"name":null,"price":null,"quantity":null,"total":null}"#).unwrap(),
            zero
        );
        assert_eq!(item("{}").unwrap(), zero);
        assert_eq!(item("  ").unwrap(), zero, "an empty body means {{}}");
    }

    #[test]
    fn bad_values_are_400_with_the_reason() {
        for (json, reason) in [
            (r#"{"price":"cheap"}"#, "cheap"),
            (r#"{"quantity":1.5}"#, "1.5"),
            (r#"{"quantity":3000000000}"#, "32-bit"),
            (r#"{"name":5}"#, "a string"),
            (r#"{"name":"x""#, "EOF"),
            ("not json", "expected"),
        ] {
            let err = item(json).unwrap_err();
            assert_eq!(err.code(), 3, "{json}");
            assert_eq!(err.status().as_u16(), 400);
            assert!(
                err.message().starts_with("invalid request body: "),
                "{}",
                err.message()
            );
            assert!(err.message().contains(reason), "{json}: {}", err.message());
        }
    }
}
