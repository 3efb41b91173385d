//! One error shape for every answer, including the ones no handler writes: axum's
//! extractor rejections (a path or query that does not decode, e.g. invalid UTF-8 in
//! `/v1/tenants/{id}`), the body-limit and the timeout layers answer in plain text or with
//! an empty body. [`json_errors`] rewrites any such error answer into the JSON error body, so
//! a client parses failures one way.

use axum::body::{Body, to_bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use edgegen_shared::api::{ErrorBody, ErrorDetail};

/// Longest plain-text error body kept as the message (rejection texts are one line).
const MAX_TEXT: usize = 4096;

/// The code of an error answer that no handler wrote.
fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::NOT_FOUND => "no_route",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    }
}

/// Response middleware (`axum::middleware::map_response`): error answers that are not JSON
/// become `{"error":{"code","message"}}`, keeping their status and their other headers.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text =
        to_bytes(body, MAX_TEXT).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned()).unwrap_or_default();
    let message =
        if text.is_empty() { status.canonical_reason().unwrap_or("request failed").to_lowercase() } else { text };
    let body = ErrorBody { error: ErrorDetail { code: code(status).to_owned(), message } };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    (parts, Body::from(json)).into_response()
}
