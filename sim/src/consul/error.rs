//! `ApiError`: the status codes and plain-text bodies Consul's HTTP layer answers errors with (api-contract.md A1).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answer, rendered exactly as Consul's `wrap`/`handleErr` renders it: the status code and the plain error
/// text as the body, with `Content-Type: text/plain; charset=utf-8`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Any error with an explicit status code (400 `Missing key name`, 413 `Request body(...) too large...`,
    /// 500 RPC/FSM errors, 404 `Session id '...' not found`).
    #[error("{1}")]
    Status(StatusCode, String),
    /// A method the endpoint does not accept: 405 with `Allow: OPTIONS,<methods>` and `method X not allowed`.
    #[error("method {method} not allowed")]
    MethodNotAllowed {
        /// The method that was used.
        method: String,
        /// The `Allow` header value, e.g. `OPTIONS,GET,PUT,DELETE`.
        allow: &'static str,
    },
}

impl ApiError {
    /// 400 with the given text.
    pub fn bad_request(text: impl Into<String>) -> ApiError {
        ApiError::Status(StatusCode::BAD_REQUEST, text.into())
    }

    /// 500 with the given text (what Consul answers for every untyped RPC or FSM error).
    pub fn internal(text: impl Into<String>) -> ApiError {
        ApiError::Status(StatusCode::INTERNAL_SERVER_ERROR, text.into())
    }

    /// 403 with the given text (`Permission denied: ...` or `ACL not found`).
    pub fn forbidden(text: impl Into<String>) -> ApiError {
        ApiError::Status(StatusCode::FORBIDDEN, text.into())
    }

    /// 413 with the given text.
    pub fn too_large(text: impl Into<String>) -> ApiError {
        ApiError::Status(StatusCode::PAYLOAD_TOO_LARGE, text.into())
    }

    /// 404 with the given text.
    pub fn not_found(text: impl Into<String>) -> ApiError {
        ApiError::Status(StatusCode::NOT_FOUND, text.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let plain = HeaderValue::from_static("text/plain; charset=utf-8");
        match self {
            ApiError::Status(code, text) => (code, [(header::CONTENT_TYPE, plain)], text).into_response(),
            ApiError::MethodNotAllowed { method, allow } => (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::CONTENT_TYPE, plain), (header::ALLOW, HeaderValue::from_static(allow))],
                format!("method {method} not allowed"),
            )
                .into_response(),
        }
    }
}
