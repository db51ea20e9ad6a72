//! `ApiError`: an error answered with Nomad's status code and plain-text body (B1).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error response exactly as Nomad's HTTP agent writes it: a status and a `text/plain` body.
///
/// `index` is set when the real server still sends `X-Nomad-Index` with the error (404s on reads).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: StatusCode,
    /// Body text, byte for byte.
    pub message: String,
    /// `X-Nomad-Index` to send with the error, when the endpoint does so.
    pub index: Option<u64>,
}

impl ApiError {
    /// An error with the given status and body.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), index: None }
    }
    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// 403 `Permission denied`.
    pub fn permission_denied() -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "Permission denied")
    }
    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    /// 405 `Invalid method`.
    pub fn invalid_method() -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Invalid method")
    }
    /// 500: everything the agent's `wrap` does not map to another code (validation, EnforceIndex, …).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// Attaches the `X-Nomad-Index` header value sent with this error.
    pub fn with_index(mut self, index: u64) -> ApiError {
        self.index = Some(index);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.message).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if let Some(index) = self.index {
            resp.headers_mut().insert("X-Nomad-Index", HeaderValue::from(index.max(1)));
        }
        resp
    }
}

/// Formats errors the way `hashicorp/go-multierror`'s default `ListFormatFunc` does.
///
/// One error: `1 error occurred:\n\t* e\n\n`; more: `N errors occurred:\n\t* a\n\t* b\n\n`.
pub fn multierror(errors: &[String]) -> String {
    let points: Vec<String> = errors.iter().map(|e| format!("* {e}")).collect();
    if errors.len() == 1 {
        format!("1 error occurred:\n\t{}\n\n", points[0])
    } else {
        format!("{} errors occurred:\n\t{}\n\n", errors.len(), points.join("\n\t"))
    }
}
