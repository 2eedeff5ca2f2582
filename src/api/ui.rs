//! The operator dashboard: a read-only page at `/ui/` on the API's port.
//!
//! Three static files (`ui/index.html`, `ui/app.js`, `ui/style.css`),
//! embedded in the binary: no build step, nothing fetched from elsewhere at
//! run time. They hold no data and need no token; the page asks the
//! operator for one (or takes it from the URL fragment, `/ui/#token=…`,
//! which browsers never send) and reads everything it shows with `fetch`
//! from the public API under `/v1` (the change feed too, read as a stream,
//! since `EventSource` cannot send a bearer header), so it can see and do
//! exactly what that token can through the API, and it writes nothing.
//!
//! These routes are not API operations: they are merged into the router
//! beside `routes()`, so the OpenAPI document and its route-table test do
//! not list them.

use super::ApiState;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// Scripts and styles only from this origin (no inline script, no `eval`),
/// data only from this API, never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page and its assets change only with the binary: a browser may keep
/// them a minute, then asks again.
const CACHE: &str = "public, max-age=60";

/// The dashboard's routes: `/ui` (redirects to `/ui/`), `/ui/`,
/// `/ui/app.js`, `/ui/style.css`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

/// One embedded file with its content type and the dashboard's headers.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(CACHE));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}
