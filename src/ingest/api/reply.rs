//! Replies and errors of the ingest API. Every failure is JSON
//! `{"success": false, "error": {"code", "message", "field"}}`; the code fixes the HTTP status, the `Retry-After`
//! hint and the reason counted in `mcp_ingest_requests_rejected_total`.

use serde_json::{json, Value};
use warp::http::{HeaderValue, StatusCode};

use crate::interaction::BadReport;
use crate::pipeline::SpoolError;
use crate::store::StoreError;

pub type Response = warp::reply::Response;

/// What went wrong, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    InvalidJson,
    InvalidReport,
    InvalidQuery,
    BodyTooLarge,
    BodyTimeout,
    Overloaded,
    UnsupportedMediaType,
    Unauthorized,
    BadSignature,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotReady,
    SpoolFull,
    SpoolUnavailable,
    StoreUnavailable,
    EncryptionUnavailable,
    UnknownCapability,
    NoneReady,
    Saturated,
    /// The name is taken by something self-registration may not change.
    Conflict,
    /// A registration was declared but has no ID and key yet.
    RegistrationPending,
    Internal,
}

impl ErrorCode {
    /// The `code` in the JSON error.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidReport => "invalid_report",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::BodyTimeout => "body_timeout",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::SpoolFull => "spool_full",
            ErrorCode::SpoolUnavailable => "spool_unavailable",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::EncryptionUnavailable => "encryption_unavailable",
            ErrorCode::UnknownCapability => "unknown_capability",
            ErrorCode::NoneReady => "none_ready",
            ErrorCode::Saturated => "saturated",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RegistrationPending => "registration_pending",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidJson
            | ErrorCode::InvalidReport
            | ErrorCode::InvalidQuery => StatusCode::BAD_REQUEST,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unauthorized | ErrorCode::BadSignature => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::UnknownCapability => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::SpoolFull => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::NotReady
            | ErrorCode::SpoolUnavailable
            | ErrorCode::StoreUnavailable
            | ErrorCode::EncryptionUnavailable
            | ErrorCode::NoneReady
            | ErrorCode::Overloaded
            | ErrorCode::Saturated
            | ErrorCode::RegistrationPending => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before trying again, for conditions that pass.
    pub fn retry_after(self) -> Option<u32> {
        match self {
            ErrorCode::SpoolFull
            | ErrorCode::SpoolUnavailable
            | ErrorCode::StoreUnavailable
            | ErrorCode::NoneReady
            | ErrorCode::RegistrationPending => Some(5),
            ErrorCode::Saturated | ErrorCode::Overloaded => Some(1),
            _ => None,
        }
    }

    /// The `reason` label of `mcp_ingest_requests_rejected_total`.
    pub fn metric_reason(self) -> &'static str {
        match self {
            ErrorCode::BodyTooLarge => "too_large",
            ErrorCode::BodyTimeout => "timeout",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadSignature => "signature",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::UnsupportedMediaType => "media_type",
            ErrorCode::SpoolFull | ErrorCode::SpoolUnavailable => "spool",
            ErrorCode::NotFound | ErrorCode::MethodNotAllowed => "route",
            _ => "invalid",
        }
    }
}

/// An API error: its code, a message for people, and the field at fault.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    /// The methods the path takes, for a 405's `Allow` header.
    pub allow: Option<String>,
}

impl From<crate::trust::Denied> for ApiError {
    fn from(denied: crate::trust::Denied) -> Self {
        use crate::trust::Denied;
        match denied {
            Denied::Unauthorized(message) => ApiError::new(ErrorCode::Unauthorized, message),
            Denied::Forbidden(message) => ApiError::new(ErrorCode::Forbidden, message),
        }
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            allow: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad(report: BadReport) -> Self {
        let field = (!report.field.is_empty()).then(|| report.field.clone());
        Self {
            field,
            ..Self::new(ErrorCode::InvalidReport, report.to_string())
        }
    }

    /// A bad query parameter.
    pub fn query(field: &str, problem: &str) -> Self {
        Self::new(ErrorCode::InvalidQuery, format!("{field}: {problem}")).with_field(field)
    }

    pub fn reply(&self) -> Response {
        // `success: false` as the seed's answers have it, beside the error.
        let mut body = json!({"success": false, "error": {"code": self.code.as_str(), "message": self.message}});
        if let Some(field) = &self.field {
            body["error"]["field"] = json!(field);
        }
        let mut r = json_reply(self.code.status(), &body);
        if let Some(secs) = self.code.retry_after() {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        if let Some(allow) = self
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            r.headers_mut().insert("allow", allow);
        }
        r
    }
}

impl From<SpoolError> for ApiError {
    fn from(e: SpoolError) -> Self {
        let code = match e {
            SpoolError::Full { .. } => ErrorCode::SpoolFull,
            SpoolError::TooLarge { .. } => ErrorCode::BodyTooLarge,
            _ => ErrorCode::SpoolUnavailable,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<crate::ingest::accept::Refusal> for ApiError {
    fn from(refusal: crate::ingest::accept::Refusal) -> Self {
        use crate::ingest::accept::Refusal;
        match refusal {
            Refusal::Bad(bad) => ApiError::bad(bad),
            Refusal::Forbidden(message) => ApiError::new(ErrorCode::Forbidden, message),
            Refusal::Sealing(message) => ApiError::new(ErrorCode::EncryptionUnavailable, message),
            Refusal::Spool(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooLarge(_) => ApiError::new(ErrorCode::InvalidQuery, e.to_string()),
            _ => ApiError::new(ErrorCode::StoreUnavailable, e.to_string()),
        }
    }
}

pub fn json_reply(status: StatusCode, body: &Value) -> Response {
    bytes_reply(status, body.to_string().into_bytes(), "application/json")
}

pub fn bytes_reply(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_status_retry_hint_and_field() {
        let r = ApiError::new(ErrorCode::SpoolFull, "full").reply();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "5");
        let r = ApiError::query("limit", "too big").reply();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get("retry-after").is_none());
        assert_eq!(ErrorCode::Saturated.retry_after(), Some(1));
        assert_eq!(ErrorCode::MethodNotAllowed.metric_reason(), "route");
        assert_eq!(ErrorCode::StoreUnavailable.metric_reason(), "invalid");
    }
}
