//! Reading request bodies and path ids with precise 4xx answers.
//!
//! axum's `Json` answers bad input with plain-text rejections; the contract
//! wants JSON errors with a reason, and a 400 that says which field is wrong.
//! [`JsonObject`] reads the (size-limited) body, insists on a JSON object, and
//! [`JsonObject::string_fields`] checks names and types against an allow-list.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{StatusCode, header, request::Parts},
};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A request body that is a JSON object.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A missing Content-Type is tolerated; any other type is a client
        // error (note `curl -d` sends x-www-form-urlencoded unless told
        // `-H 'Content-Type: application/json'`).
        // Every Content-Type header counts (a proxy may read another one than
        // we do), and a charset other than UTF-8 is not what we would decode.
        for ct in req.headers().get_all(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let mut parts = ct.split(';');
            let essence = parts.next().unwrap_or_default().trim();
            let unsupported = |why: String| {
                ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    why,
                )
            };
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(unsupported(format!(
                    "Content-Type must be application/json, got {essence:?}"
                )));
            }
            for param in parts {
                if let Some((name, value)) = param.split_once('=')
                    && name.trim() == "charset"
                    && !matches!(value.trim().trim_matches('"'), "utf-8" | "utf8")
                {
                    return Err(unsupported(format!(
                        "JSON bodies must be UTF-8, got charset {:?}",
                        value.trim()
                    )));
                }
            }
        }
        // The body is already in memory, read under the limit by the
        // listener (`listener::read_body`, the limit's one owner).
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            ApiError::bad_request("INVALID_BODY", format!("cannot read the request body: {r}"))
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "MALFORMED_JSON",
                "request body is empty; expected a JSON object",
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => {
                // serde_json keeps the last of repeated keys; a client (or a
                // proxy) may have meant the first. Ambiguity is an error.
                if let Err(e) = serde_json::from_slice::<UniqueKeys>(&bytes) {
                    return Err(ApiError::bad_request("DUPLICATE_FIELD", e.to_string()));
                }
                Ok(Self(map))
            }
            Ok(_) => Err(ApiError::bad_request(
                "INVALID_BODY",
                "request body must be a JSON object",
            )),
            Err(e) => Err(ApiError::bad_request(
                "MALFORMED_JSON",
                format!("request body is not valid JSON: {e}"),
            )),
        }
    }
}

/// A JSON object read only to refuse repeated keys (values are skipped).
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "field {key:?} appears more than once"
                        )));
                    }
                }
                Ok(UniqueKeys)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// How the edge treats one JSON field of a request body.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// Name in JSON (lowerCamelCase).
    pub json: &'static str,
    /// Name in the gRPC API (snake_case), used for update masks.
    pub proto: &'static str,
}

impl JsonObject {
    /// Returns `(field, value)` for every string field present in the body.
    ///
    /// Errors, checked in this order for every key: a `read_only` key → 400
    /// `READ_ONLY_FIELD` (never silently ignored, never applied); a key not in
    /// `allowed` → 400 `UNKNOWN_FIELD`; a value that is neither a string nor
    /// `null` → 400 `INVALID_FIELD_TYPE`. `null` counts as "not sent".
    pub fn string_fields(
        &self,
        allowed: &[Field],
        read_only: &[&str],
    ) -> Result<Vec<(Field, String)>, ApiError> {
        let mut out = Vec::with_capacity(self.0.len());
        for (key, value) in &self.0 {
            if read_only.contains(&key.as_str()) {
                return Err(ApiError::bad_request(
                    "READ_ONLY_FIELD",
                    format!("{key:?} is read-only and cannot be set by a client"),
                ));
            }
            let Some(field) = allowed.iter().find(|f| f.json == key) else {
                let names: Vec<&str> = allowed.iter().map(|f| f.json).collect();
                return Err(ApiError::bad_request(
                    "UNKNOWN_FIELD",
                    format!(
                        "unknown field {key:?}; expected any of {}",
                        names.join(", ")
                    ),
                ));
            };
            match value {
                Value::String(s) => out.push((*field, s.clone())),
                Value::Null => {}
                other => {
                    return Err(ApiError::bad_request(
                        "INVALID_FIELD_TYPE",
                        format!("{key:?} must be a string, got {}", type_name(other)),
                    ));
                }
            }
        }
        Ok(out)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A `{userId}` / `{id}` path segment: a positive int64, else 400 `INVALID_ID`.
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("INVALID_ID", format!("invalid id: {e}")))?;
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Self(id)),
            _ => Err(ApiError::bad_request(
                "INVALID_ID",
                format!("id must be a positive integer, got {raw:?}"),
            )),
        }
    }
}
