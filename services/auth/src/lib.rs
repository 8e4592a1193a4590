//! gwctl's sample auth service. `POST /login {username, password}` checks the password against
//! the users file (argon2 hashes) and answers `{access_token}`: an HS256 JWT whose `iss` is the
//! gateway consumer's jwt credential key, `sub` the username, `exp` now + the token TTL, signed
//! with that credential's secret — what the gateway's `jwt` plugin verifies. `GET /health`: 204.
//! Every response carries `X-App-Instance-ID` (this process), so round-robin is visible.

pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{EncodingKey, Header};
use serde::{Deserialize, Serialize};

pub use users::{Users, hash_password};

/// The service's settings (from the environment in `main`).
#[derive(Clone)]
pub struct AuthConfig {
    /// Known users.
    pub users: Users,
    /// The jwt credential's key: the token's `iss`.
    pub jwt_key: String,
    /// The jwt credential's secret (HS256).
    pub jwt_secret: String,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// This process's id for `X-App-Instance-ID`.
    pub instance_id: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("users", &self.users.len())
            .field("jwt_key", &self.jwt_key)
            .field("jwt_secret", &"<redacted>")
            .field("token_ttl", &self.token_ttl)
            .field("instance_id", &self.instance_id)
            .finish()
    }
}

struct AppState {
    config: AuthConfig,
    key: EncodingKey,
}

/// The service's routes. Fails when the secret cannot be used as an HS256 key.
pub fn app(config: AuthConfig) -> Result<Router, jsonwebtoken::errors::Error> {
    let instance = HeaderValue::from_str(&config.instance_id)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    let state = Arc::new(AppState {
        key: EncodingKey::from_secret(config.jwt_secret.as_bytes())?,
        config,
    });
    Ok(Router::new()
        .route("/login", post(login))
        .route("/health", get(health))
        .with_state(state)
        .layer(svc_telemetry::TraceLayer::new())
        .layer(axum::middleware::map_response(move |mut resp: Response| {
            let v = instance.clone();
            async move {
                resp.headers_mut().insert("x-app-instance-id", v);
                resp
            }
        })))
}

/// A login request.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    /// The user.
    pub username: String,
    /// The password.
    pub password: String,
}

/// The token's claims.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The credential key (the gateway finds the consumer by it).
    pub iss: String,
    /// The user.
    pub sub: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
}

async fn login(
    State(state): State<Arc<AppState>>,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "detail": format!("invalid login request: {}", e.body_text()) })),
            )
                .into_response();
        }
    };
    tracing::info!(user = %req.username, "login request");
    // argon2 is deliberately slow: keep it off the async workers.
    let users = state.config.users.clone();
    let (user, password) = (req.username.clone(), req.password);
    let ok = tokio::task::spawn_blocking(move || users.verify(&user, &password))
        .await
        .unwrap_or(false);
    if !ok {
        tracing::warn!(user = %req.username, "login refused");
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({ "detail": "Invalid credentials" })),
        )
            .into_response();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        iss: state.config.jwt_key.clone(),
        sub: req.username.clone(),
        iat: now,
        exp: now + state.config.token_ttl.as_secs(),
    };
    match jsonwebtoken::encode(&Header::default(), &claims, &state.key) {
        Ok(token) => {
            tracing::info!(user = %req.username, "token issued");
            Json(serde_json::json!({ "access_token": token })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "signing the token failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Serve on `listener` until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: AuthConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(config).map_err(std::io::Error::other)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The address to listen on: `AUTH_LISTEN`, else `0.0.0.0:8080`.
pub fn listen_addr(value: Option<&str>) -> Result<SocketAddr, String> {
    value
        .unwrap_or("0.0.0.0:8080")
        .parse()
        .map_err(|e| format!("AUTH_LISTEN: {e}"))
}
