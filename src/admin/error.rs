//! Admin API errors and Kong's bodies for them (kong-compat §1.6).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::model::schema::FieldErrors;
use crate::store::StoreError;

/// Every way an admin request can fail, each with Kong's status code and body.
#[derive(Debug)]
pub enum AdminError {
    /// 404 `{"message":"Not found"}`.
    NotFound,
    /// 405 `{"message":"Method not allowed"}`.
    MethodNotAllowed,
    /// 400 with a bare message (`Cannot parse JSON body`, ...).
    BadRequest(String),
    /// 415, empty body.
    UnsupportedMediaType,
    /// 413 with a message.
    TooLarge,
    /// 401 (admin token).
    Unauthorized,
    /// 400 code 2.
    Schema(FieldErrors),
    /// 400 code 13: a foreign reference by endpoint key did not resolve.
    Unresolved {
        /// `service.name`.
        path: String,
        /// `{name="x"}`.
        key: String,
        /// `services`.
        target: &'static str,
    },
    /// 400 code 7: the token and why it is not an offset (`bad base64 encoding`,
    /// `bad json encoding`).
    InvalidOffset(String, &'static str),
    /// 400 code 9.
    InvalidSize(&'static str),
    /// 400 code 11 (uses `options`).
    InvalidOptions {
        /// Message.
        message: String,
        /// `{"tags": "..."}`.
        options: Value,
    },
    /// A store failure.
    Store(StoreError),
    /// 400 code 14 or a parse failure of `/config`.
    Declarative(Value),
    /// Any status with a bare message.
    Status(StatusCode, String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<FieldErrors> for AdminError {
    fn from(e: FieldErrors) -> Self {
        Self::Schema(e)
    }
}

fn body(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn message(status: StatusCode, m: &str) -> Response {
    body(status, json!({ "message": m }))
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => message(StatusCode::NOT_FOUND, "Not found"),
            Self::MethodNotAllowed => message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            Self::BadRequest(m) => message(StatusCode::BAD_REQUEST, &m),
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response(),
            Self::TooLarge => message(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large"),
            Self::Unauthorized => message(
                StatusCode::UNAUTHORIZED,
                "Invalid credentials. Token or User credentials required",
            ),
            Self::Schema(f) => body(StatusCode::BAD_REQUEST, f.to_admin_body()),
            Self::Unresolved { path, key, target } => {
                let msg = format!(
                    "the foreign key cannot be resolved with '{key}' for an existing '{target}' entity"
                );
                let (parent, child) = path.split_once('.').unwrap_or((path.as_str(), ""));
                body(
                    StatusCode::BAD_REQUEST,
                    json!({
                        "code": 13,
                        "name": "foreign keys unresolved",
                        "message": format!("foreign key unresolved ({path}: {msg})"),
                        "fields": { parent: { child: msg } },
                    }),
                )
            }
            Self::InvalidOffset(token, reason) => {
                let m = format!("'{token}' is not a valid offset: {reason}");
                body(
                    StatusCode::BAD_REQUEST,
                    json!({"code": 7, "name": "invalid offset", "message": m}),
                )
            }
            Self::InvalidSize(m) => body(
                StatusCode::BAD_REQUEST,
                json!({"code": 9, "name": "invalid size", "message": m}),
            ),
            Self::InvalidOptions { message, options } => body(
                StatusCode::BAD_REQUEST,
                json!({"code": 11, "name": "invalid options", "message": message, "options": options}),
            ),
            Self::Declarative(v) => body(StatusCode::BAD_REQUEST, v),
            Self::Status(s, m) => message(s, &m),
            Self::Store(e) => store_error(e),
        }
    }
}

fn store_error(e: StoreError) -> Response {
    let text = e.to_string();
    match e {
        StoreError::PrimaryKey { id, .. } => body(
            StatusCode::BAD_REQUEST,
            json!({"code": 3, "name": "primary key violation", "message": text,
                   "fields": {"id": id.to_string()}}),
        ),
        StoreError::Unique { fields, .. } => body(
            StatusCode::CONFLICT,
            json!({"code": 5, "name": "unique constraint violation", "message": text,
                   "fields": fields}),
        ),
        StoreError::ForeignKey { field, id, .. } => body(
            StatusCode::BAD_REQUEST,
            json!({"code": 4, "name": "foreign key violation", "message": text,
                   "fields": {field: {"id": id.to_string()}}}),
        ),
        StoreError::ReferencedBy { referenced_by, .. } => body(
            StatusCode::BAD_REQUEST,
            json!({"code": 4, "name": "foreign key violation", "message": text,
                   "fields": {"@referenced_by": referenced_by.name()}}),
        ),
        StoreError::Unsupported(m) => message(StatusCode::BAD_REQUEST, &m),
        StoreError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "admin write refused: database unavailable");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable: the change was not saved; retry when the database is back",
            )
        }
        StoreError::Internal(cause) => {
            tracing::error!(error = %cause, "admin write failed");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An unexpected error occurred",
            )
        }
    }
}
