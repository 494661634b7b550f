//! The one error table of the API: stable codes, their HTTP status, and the body
//! `{code, message, field?, errors?}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::job::EngineError;
use provsync_core::fault::Domain;
use provsync_core::store::StoreError;

/// Stable error codes and their HTTP status: `invalid_json`, `unknown_field`,
/// `invalid_value`, `invalid_job`, `invalid_parameter` 400; `unauthorized` 401;
/// `forbidden` 403; `job_not_found`, `not_found` 404; `method_not_allowed` 405;
/// `schedule_not_found` 404; `job_finished`, `job_not_finished`, `nothing_to_replay`,
/// `schedule_running` 409; `payload_too_large` 413; `too_many_requests` 429;
/// `internal` 500; `not_ready`, `upstream_unavailable` 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON (line and column in the message).
    InvalidJson,
    /// A field the request type does not have.
    UnknownField,
    /// A field with a value of the wrong type or out of range.
    InvalidValue,
    /// The job request does not hold together (see `errors`).
    InvalidJob,
    /// A query parameter is unknown or malformed.
    InvalidParameter,
    /// No bearer token, or an unknown one.
    Unauthorized,
    /// The token's role is too weak for the route.
    Forbidden,
    /// No such job.
    JobNotFound,
    /// No such route.
    NotFound,
    /// No schedule of that name is configured.
    ScheduleNotFound,
    /// The schedule's previous job is still active (its id is in `job_id`).
    ScheduleRunning,
    /// The route does not take this method.
    MethodNotAllowed,
    /// The job has already ended (or is finishing).
    JobFinished,
    /// The job has not ended yet (a replay waits for it).
    JobNotFinished,
    /// The run rejected or failed no record: nothing to replay.
    NothingToReplay,
    /// The body is larger than allowed.
    PayloadTooLarge,
    /// Too many refused tokens from this address: wait `Retry-After` seconds.
    TooManyRequests,
    /// The state store does not answer.
    NotReady,
    /// A source or target does not answer or is failing: its system's fault,
    /// not the request's, and a later retry may help.
    UpstreamUnavailable,
    /// Something failed on our side (the message says what, without secrets).
    Internal,
}

impl ErrorCode {
    /// The HTTP status of a code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::UnknownField
            | ErrorCode::InvalidValue
            | ErrorCode::InvalidJob
            | ErrorCode::InvalidParameter => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::JobNotFound | ErrorCode::NotFound | ErrorCode::ScheduleNotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::JobFinished
            | ErrorCode::JobNotFinished
            | ErrorCode::NothingToReplay
            | ErrorCode::ScheduleRunning => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::NotReady | ErrorCode::UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Stable code.
    pub code: ErrorCode,
    /// What is wrong.
    pub message: String,
    /// Dotted path of the field.
    pub field: String,
}

/// An API error response: `{code, message, field?, errors?}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// Field or parameter at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every field at fault (validation errors).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The job the error is about (`schedule_running`: the active job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

impl ApiError {
    /// An error without a field.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            errors: Vec::new(),
            job_id: None,
        }
    }

    /// An error about one field (also listed under `errors`).
    pub fn field(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self {
            code,
            message: format!("{field}: {message}"),
            field: Some(field.clone()),
            errors: vec![FieldError {
                code,
                message,
                field,
            }],
            job_id: None,
        }
    }

    /// A query parameter at fault.
    pub fn param(name: &str, message: impl Into<String>) -> Self {
        let mut e = Self::field(ErrorCode::InvalidParameter, name, message);
        e.errors.clear();
        e
    }

    /// A store failure: `job_not_found` or `internal`.
    pub fn store(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => {
                Self::new(ErrorCode::JobNotFound, format!("job {id} not found"))
            }
            other => {
                tracing::error!(error = %other, "state store failed");
                Self::new(ErrorCode::Internal, other.to_string())
            }
        }
    }

    /// An engine failure mapped to the table by whose it is: the request's
    /// (`invalid_job`), a source's or target's (`upstream_unavailable`), or ours.
    pub fn engine(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(errs) => {
                let errors: Vec<FieldError> = errs
                    .into_iter()
                    .map(|e| FieldError {
                        // a connector's unknown key, as serde names it
                        code: if e.message.starts_with("unknown field `") {
                            ErrorCode::UnknownField
                        } else {
                            ErrorCode::InvalidValue
                        },
                        message: e.message,
                        field: e.field,
                    })
                    .collect();
                let message = format!(
                    "invalid job request: {}",
                    errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                Self {
                    code: ErrorCode::InvalidJob,
                    message,
                    field: errors.first().map(|e| e.field.clone()),
                    errors,
                    job_id: None,
                }
            }
            EngineError::Store(s) => Self::store(s),
            other => {
                let code = match other.domain() {
                    Domain::User => ErrorCode::InvalidJob,
                    Domain::External => {
                        tracing::warn!(error = %other, "a source or target failed");
                        ErrorCode::UpstreamUnavailable
                    }
                    Domain::Internal => {
                        tracing::error!(error = %other, "engine failed");
                        ErrorCode::Internal
                    }
                };
                Self::new(code, other.to_string())
            }
        }
    }
}

/// One path segment of a route (`/v1/jobs/{id}`, `/v1/admin/sync/{schedule}`): a
/// segment that does not decode (`%ff`) is refused with the API's JSON error shape,
/// not axum's plain-text rejection.
pub struct Segment(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(segment)) => Ok(Segment(segment)),
            Err(e) => Err(ApiError::field(
                ErrorCode::InvalidParameter,
                "path",
                e.body_text(),
            )),
        }
    }
}

/// Why a token's role was refused (403), for the request log.
#[derive(Debug, Clone)]
pub struct Forbidden(pub String);

/// The job a response is about (a started, aborted, replayed or running job), for
/// the audit log: set from the `job_id` of the body.
#[derive(Debug, Clone)]
pub struct AboutJob(pub String);

impl ErrorCode {
    /// The code as the body spells it.
    pub fn name(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            _ => format!("{self:?}"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let code = self.code;
        let forbidden = (code == ErrorCode::Forbidden).then(|| Forbidden(self.message.clone()));
        let job = self.job_id.clone().map(AboutJob);
        let mut resp = (status, axum::Json(self)).into_response();
        if code == ErrorCode::Unauthorized {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(f) = forbidden {
            resp.extensions_mut().insert(f);
        }
        if let Some(j) = job {
            resp.extensions_mut().insert(j);
        }
        // The request log and the audit log read the code back from here.
        resp.extensions_mut().insert(code);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provsync_core::source::SourceError;
    use provsync_core::target::TargetError;

    #[test]
    fn engine_errors_map_by_whose_they_are() {
        let code = |e: EngineError| ApiError::engine(e).code;
        let down = TargetError::Unavailable("postgres target: connection refused".into());
        assert_eq!(code(down.into()), ErrorCode::UpstreamUnavailable);
        assert_eq!(ErrorCode::UpstreamUnavailable.status(), 503);
        assert_eq!(
            code(SourceError::Unavailable("503".into()).into()),
            ErrorCode::UpstreamUnavailable
        );
        assert_eq!(
            code(TargetError::Refused("bad password".into()).into()),
            ErrorCode::InvalidJob
        );
        assert_eq!(
            code(SourceError::Config("no url".into()).into()),
            ErrorCode::InvalidJob
        );
        assert_eq!(
            code(SourceError::BadCursor("x".into()).into()),
            ErrorCode::Internal
        );
        assert_eq!(code(EngineError::Task("panic".into())), ErrorCode::Internal);
        let e = ApiError::engine(TargetError::Unavailable("refused".into()).into());
        assert_eq!(e.message, "target unavailable: refused");
        assert_eq!(e.code.name(), "upstream_unavailable");
    }
}
