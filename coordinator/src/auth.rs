//! Bearer-token authentication for the admin and edge APIs.
//!
//! Tokens are compared in constant time over their SHA-256 digests (so neither the content
//! nor the length of the expected token leaks through timing). A missing or wrong token is
//! 401; the *other* role's valid token is 403 (authenticated, not allowed here).

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AppError;

/// The tokens a route group accepts and refuses.
#[derive(Clone)]
pub struct Guard {
    role: &'static str,
    allowed: [u8; 32],
    other_role: [u8; 32],
}

impl Guard {
    /// Accepts `allowed`; answers 403 to `other` (the other role's token).
    pub fn new(role: &'static str, allowed: &str, other: &str) -> Self {
        Guard { role, allowed: digest(allowed), other_role: digest(other) }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Middleware: lets the request through only with the guard's token.
pub async fn require_token(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| digest(t.trim()));
    let Some(presented) = presented else {
        return unauthorized(guard.role, "missing bearer token (Authorization: Bearer <token>)");
    };
    if bool::from(presented.ct_eq(&guard.allowed)) {
        return next.run(request).await;
    }
    if bool::from(presented.ct_eq(&guard.other_role)) {
        let message = format!("this token may not use the {} API", guard.role);
        return AppError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response();
    }
    unauthorized(guard.role, "invalid bearer token")
}

fn unauthorized(role: &str, message: &str) -> Response {
    let mut response = AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    let challenge = format!("Bearer realm=\"edgegen-{role}\"");
    if let Ok(value) = challenge.parse() {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
