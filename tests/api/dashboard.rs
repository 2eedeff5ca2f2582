//! The dashboard's static files (`/ui/`): served without a token, with
//! their content types, a Content-Security-Policy that allows no inline
//! script, and a short cache; `/ui` redirects to `/ui/`. They are not API
//! operations (outside the route table, so outside the OpenAPI document),
//! and they hold no data: every data path still needs a token. The page
//! itself runs in a real browser in `scripts/ui-test.sh`.

use crate::harness::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn the_dashboards_files_need_no_token_and_allow_no_inline_script() {
    let n = start_node().await;
    for (path, content_type) in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let a = n.call(Method::GET, path, None, None, &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        let header = |name: &str| {
            a.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            header("content-type").starts_with(content_type),
            "{path}: {}",
            header("content-type")
        );
        let csp = header("content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(header("cache-control").contains("max-age="), "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    }

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(format!("{}/ui", n.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()["location"], "/ui/");

    // Nothing else under /ui/, and no API operation among them.
    n.call(Method::GET, "/ui/secrets.json", None, None, &[])
        .await
        .assert_error(404);
    assert!(drengine::api::route_table()
        .iter()
        .all(|(_, path)| !path.starts_with("/ui")));
    // The data is the API's, behind its token as before.
    n.call(Method::GET, "/v1/status", None, None, &[])
        .await
        .assert_error(401);
}
