//! The release dashboard at `GET /ui`: three static files (`coordinator/ui/`) compiled into
//! the binary, so it needs no build step and loads no external asset.
//!
//! The page holds no data and no secret: it asks for the admin token, keeps it in the tab's
//! `sessionStorage` and sends it as `Authorization: Bearer` on every `fetch` of the admin
//! API, so the token never appears in a URL, a log line or the browser history. The
//! `Content-Security-Policy` allows nothing but this origin.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/app.css");

/// Only this origin, no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset_response(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

/// `GET /ui`: the dashboard page (it logs in itself; the page is not secret).
#[utoipa::path(get, path = "/ui", tag = "operations",
    responses((status = 200, description = "The release dashboard", body = String, content_type = "text/html")))]
pub async fn page() -> Response {
    asset_response("text/html; charset=utf-8", INDEX)
}

/// The dashboard's files besides the page.
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub enum Asset {
    /// The script.
    #[serde(rename = "app.js")]
    Script,
    /// The style sheet.
    #[serde(rename = "app.css")]
    Style,
}

/// `GET /ui/{asset}`: the dashboard's script and style sheet (any other name is a 400 from
/// the path extractor, answered as the JSON error body).
#[utoipa::path(get, path = "/ui/{asset}", tag = "operations",
    params(("asset" = Asset, Path, description = "`app.js` or `app.css`")),
    responses((status = 200, description = "The asset", content((String = "text/javascript"), (String = "text/css")))))]
pub async fn file(Path(asset): Path<Asset>) -> Response {
    match asset {
        Asset::Script => asset_response("text/javascript; charset=utf-8", SCRIPT),
        Asset::Style => asset_response("text/css; charset=utf-8", STYLE),
    }
}
