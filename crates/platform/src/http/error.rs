//! The error every REST handler returns, rendered as the `google.rpc.Status` JSON the original
//! system answered with (spec/api.md §1.5) so existing clients and tests keep matching on
//! `code` and `message`.
//!
//! One table ([`ErrorKind`]) maps each kind to its gRPC code, HTTP status and type code; the
//! HTTP status is derived from it only, as the original's gateway did.

use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The message of a 413, from the body-limit layer or a body extractor alike.
pub(crate) const BODY_TOO_LARGE: &str = "request body too large";

/// What went wrong, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is invalid (a blank name, malformed JSON).
    BadRequest,
    /// Who is asking is not allowed (customer authorization failed).
    Unauthorized,
    /// The addressed resource does not exist.
    NotFound,
    /// The resource exists already, or its state forbids the change.
    Conflict,
    /// The request body exceeds the server's limit.
    TooLarge,
    /// A known path with a method it does not serve (router level, as the original: 501).
    MethodNotAllowed,
    /// Our fault; the cause is logged, never sent.
    Internal,
    /// A dependency (another service, the broker) cannot answer right now; try again later.
    Unavailable,
}

impl ErrorKind {
    /// The one table: gRPC code, HTTP status, `TypeCode` in the details.
    const fn table(self) -> (i32, StatusCode, &'static str) {
        match self {
            ErrorKind::BadRequest => (3, StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            ErrorKind::Unauthorized => (16, StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ErrorKind::NotFound => (5, StatusCode::NOT_FOUND, "NOT_FOUND"),
            ErrorKind::Conflict => (6, StatusCode::CONFLICT, "ALREADY_EXISTS"),
            ErrorKind::TooLarge => (8, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            ErrorKind::MethodNotAllowed => (12, StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED"),
            ErrorKind::Internal => (13, StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            ErrorKind::Unavailable => (14, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        }
    }

    /// The gRPC status code carried in the body's `code`.
    pub const fn grpc_code(self) -> i32 {
        self.table().0
    }

    /// The HTTP status of the response.
    pub const fn status(self) -> StatusCode {
        self.table().1
    }

    /// The `TypeCode` of the `errors.ErrorType` detail.
    pub const fn type_code(self) -> &'static str {
        self.table().2
    }
}

/// An error answer: HTTP status and `google.rpc.Status` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    kind: ErrorKind,
    message: String,
    /// Application errors carry one `errors.ErrorType` detail; router-level ones carry none.
    typed: bool,
}

impl ApiError {
    /// An application error of `kind` with the exact `message` clients will see.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            typed: true,
        }
    }

    /// 400, code 3.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// 401, code 16 (with `WWW-Authenticate: <message>`, as the original).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }

    /// 404, code 5.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// 409, code 6.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// 503, code 14: a dependency cannot answer now (no responder, a timed-out query).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// 500, code 13, message `internal error`. The cause is logged here, with its whole chain,
    /// and never reaches the client: it may hold SQL, hostnames or other internals.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(
            error = format!("{cause:#}"),
            "internal error answering a request"
        );
        Self::new(ErrorKind::Internal, "internal error")
    }

    /// Router-level errors: same shape, empty `details` (as the original's gateway).
    pub(crate) fn router(kind: ErrorKind, message: &str) -> Self {
        ApiError {
            kind,
            message: message.to_owned(),
            typed: false,
        }
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The gRPC code in the body.
    pub fn code(&self) -> i32 {
        self.kind.grpc_code()
    }

    /// The message in the body.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with context, the way the original composed its messages
    /// (`"<context>: <message>"`); the kind is kept.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.kind.type_code(),
            self.code(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// Unexpected failures reached through `?` become 500s; the cause is logged.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(e)
    }
}

#[derive(Serialize)]
struct StatusBody<'a> {
    code: i32,
    message: &'a str,
    details: Vec<ErrorTypeDetail>,
}

/// `errors.ErrorType`; its int64 fields render as strings, as protojson does.
#[derive(Serialize)]
struct ErrorTypeDetail {
    #[serde(rename = "@type")]
    type_url: &'static str,
    #[serde(rename = "TypeCode")]
    type_code: &'static str,
    #[serde(rename = "HTTPCode")]
    http_code: String,
    #[serde(rename = "GRPCCode")]
    grpc_code: String,
}

impl ApiError {
    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self.status_body()).unwrap_or_default()
    }

    fn status_body(&self) -> StatusBody<'_> {
        let details = if self.typed {
            vec![ErrorTypeDetail {
                type_url: "type.googleapis.com/errors.ErrorType",
                type_code: self.kind.type_code(),
                http_code: self.status().as_u16().to_string(),
                grpc_code: self.code().to_string(),
            }]
        } else {
            Vec::new()
        };
        StatusBody {
            code: self.code(),
            message: &self.message,
            details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.status_body()).unwrap_or_default();
        let mut response = (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if self.kind == ErrorKind::Unauthorized
            && let Ok(value) = HeaderValue::from_str(&self.message)
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_match_the_spec_shape() {
        let err = ApiError::bad_request("the store name cannot be blank");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            err.body(),
            json!({
                "code": 3,
                "message": "the store name cannot be blank",
                "details": [{
                    "@type": "type.googleapis.com/errors.ErrorType",
                    "TypeCode": "BAD_REQUEST", "HTTPCode": "400", "GRPCCode": "3"
                }]
            })
        );
        let text = serde_json::to_string(&err.status_body()).unwrap();
        assert!(
            text.starts_with(r#"{"code":3,"message":"#),
            "field order: {text}"
        );
    }

    #[test]
    fn each_kind_maps_to_one_status_and_code() {
        let cases = [
            (ApiError::bad_request("x"), 400, 3, "BAD_REQUEST"),
            (ApiError::unauthorized("x"), 401, 16, "UNAUTHORIZED"),
            (ApiError::not_found("x"), 404, 5, "NOT_FOUND"),
            (ApiError::conflict("x"), 409, 6, "ALREADY_EXISTS"),
            (ApiError::internal("secret"), 500, 13, "INTERNAL"),
        ];
        for (err, status, code, type_code) in cases {
            assert_eq!(err.status().as_u16(), status);
            let body = err.body();
            assert_eq!(body["code"], code);
            assert_eq!(body["details"][0]["TypeCode"], type_code);
            assert_eq!(body["details"][0]["HTTPCode"], status.to_string());
            assert_eq!(body["details"][0]["GRPCCode"], code.to_string());
        }
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let err: ApiError = anyhow::anyhow!("password=hunter2")
            .context("loading")
            .into();
        assert_eq!(err.message(), "internal error");
        assert!(!err.body().to_string().contains("hunter2"));
    }

    #[test]
    fn router_errors_have_no_details_and_unauthorized_sets_the_header() {
        let err = ApiError::router(ErrorKind::NotFound, "Not Found");
        assert_eq!(
            err.body(),
            json!({"code": 5, "message": "Not Found", "details": []})
        );
        let response = ApiError::unauthorized("customer is not authorized").into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "customer is not authorized"
        );
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn context_prefixes_the_message() {
        let err = ApiError::not_found("store not found").context("error adding product");
        assert_eq!(err.message(), "error adding product: store not found");
        assert_eq!(err.code(), 5);
    }
}
