//! The one error type of the HTTP layer: every failure becomes
//! `{"error":{"code":"...","message":"..."}}` with the right status. Internal errors are
//! logged with their cause and answered with a generic message: internals never leak.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use edgegen_shared::api::{ErrorBody, ErrorDetail};

/// An error answer.
#[derive(Debug)]
pub struct AppError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// One sentence for a human, naming what was wrong.
    pub message: String,
}

impl AppError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError { status, code, message: message.into() }
    }

    /// 400: the request is malformed; `message` names the field.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409: conflicts with the current state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422: well-formed but impossible.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 500: logs `cause`, answers without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (details are in the coordinator's log)",
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                // serde's message names the field ("tenants[1]: ..." / "missing field `x`").
                let detail = std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
                AppError::bad_request("invalid_body", format!("invalid request body: {detail}"))
            }
            JsonRejection::JsonSyntaxError(e) => {
                let detail = std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string());
                AppError::bad_request("invalid_json", format!("request body is not valid JSON: {detail}"))
            }
            JsonRejection::MissingJsonContentType(_) => AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "request body must be JSON (Content-Type: application/json)",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "request body is over the size limit")
            }
            other => AppError::bad_request("invalid_body", other.body_text()),
        }
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        AppError::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<crate::engine::EngineError> for AppError {
    fn from(err: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError;
        match err {
            EngineError::Blocked { code, message } => AppError::unprocessable(code, message),
            EngineError::AckRefused(message) => AppError::new(StatusCode::FORBIDDEN, "ack_refused", message),
            EngineError::Store(e) => e.into(),
            EngineError::Join(e) => AppError::internal(e),
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::domain::Refusal;
        use crate::store::StoreError;
        match err {
            StoreError::Refused(Refusal::NotFound(m)) => AppError::not_found("not_found", m),
            StoreError::Refused(Refusal::Conflict(m)) => AppError::conflict("conflict", m),
            StoreError::Refused(Refusal::Unprocessable(m)) => AppError::unprocessable("unprocessable", m),
            err @ StoreError::Internal { .. } => AppError::internal(err.chain()),
        }
    }
}
