//! Extractors that turn every way a request can be malformed into a 4xx
//! `ApiError` naming the field: JSON bodies (syntax, types, unknown fields,
//! size), query parameters and ids in the path.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// A JSON request body. An empty body reads as `{}`, so actions whose
/// arguments are all optional can be posted without one.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if mime != "application/json" && !mime.ends_with("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("the body must be application/json, not {ct:?}"),
                )
                .field("Content-Type"));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "payload_too_large", "the request body is too large")
                    .field("body")
            } else {
                ApiError::bad_request("body", format!("cannot read the body: {e}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON body, naming the field at fault in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // The path names the field at fault, an unknown one included.
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        let what = if inner.is_syntax() || inner.is_eof() {
            "malformed JSON"
        } else {
            "wrong JSON"
        };
        ApiError::bad_request(field, format!("{what}: {message}"))
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request("body", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Query parameters, checked one by one. Unknown and repeated parameters are
/// refused, so a typo never silently means "no filter".
pub struct Params {
    map: BTreeMap<String, String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("query", e.body_text()))?;
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::bad_request(k, "given more than once"));
            }
        }
        Ok(Params { map })
    }
}

impl Params {
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.map.remove(key)
    }

    /// A `true`/`false` parameter.
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.take(key).as_deref() {
            None => Ok(None),
            Some("true") | Some("1") => Ok(Some(true)),
            Some("false") | Some("0") => Ok(Some(false)),
            Some(v) => Err(ApiError::bad_request(
                key,
                format!("{v:?} is not true or false"),
            )),
        }
    }

    /// A number within `1..=max`.
    pub fn take_limit(&mut self, key: &str, max: usize) -> Result<Option<usize>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::bad_request(
                    key,
                    format!("{v:?} is not a number from 1 to {max}"),
                )),
            },
        }
    }

    /// A parameter parsed by `parse`, whose error names the parameter.
    pub fn take_parsed<T, E: std::fmt::Display>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => parse(&v)
                .map(Some)
                .map_err(|e| ApiError::bad_request(key, e.to_string())),
        }
    }

    /// Refuses whatever parameter is left.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.map.into_keys().next() {
            None => Ok(()),
            Some(k) => Err(ApiError::bad_request(
                k.clone(),
                format!("unknown parameter {k:?}"),
            )),
        }
    }
}

/// Parses an id from the path; a malformed id is a 400 naming the parameter.
pub fn path_id<T>(field: &str, raw: &str) -> Result<T, ApiError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    raw.parse::<T>()
        .map_err(|e| ApiError::bad_request(field, format!("bad id {raw:?}: {e}")))
}

/// The parameters of the matched path (`{service}`, `{rp}`, `{message}`),
/// with a bad encoding answered as a 400 in our error shape.
pub struct PathParams(BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(pairs) =
            axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request("path", e.body_text()))?;
        Ok(PathParams(pairs.into_iter().collect()))
    }
}

impl PathParams {
    /// The parameter `name`, parsed as an id.
    pub fn id<T>(&self, name: &str) -> Result<T, ApiError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let raw = self
            .0
            .get(name)
            .ok_or_else(|| ApiError::bad_request(name, "missing from the path"))?;
        path_id(name, raw)
    }
}
