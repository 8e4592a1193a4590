//! `auth-service`: serve the login API (settings from the environment), or
//! `auth-service hash-password` to turn a password read from stdin into a users-file hash.
//!
//! Environment: `AUTH_LISTEN` (default `0.0.0.0:8080`), `AUTH_USERS_FILE` (required; lines of
//! `username:hash`), `JWT_KEY` (the gateway credential's key, the token's `iss`), `JWT_SECRET`
//! or `JWT_SECRET_FILE` (its secret), `TOKEN_TTL` (seconds, default 3600).

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use auth_service::{AuthConfig, Users, hash_password, listen_addr};

fn main() -> ExitCode {
    // Telemetry first (console lines, OTLP traces and logs from the OTEL_* environment); the
    // guard flushes the exporters when main returns, after the runtime stopped.
    let guard =
        match svc_telemetry::TelemetryConfig::from_env("auth-service", env!("CARGO_PKG_VERSION"))
            .and_then(svc_telemetry::init)
        {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: telemetry: {e}");
                return ExitCode::from(1);
            }
        };
    let code = match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    };
    drop(guard);
    code
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => serve(),
        Some("hash-password") => {
            let mut pw = String::new();
            std::io::stdin()
                .read_to_string(&mut pw)
                .context("reading the password from stdin")?;
            let pw = pw.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!pw.is_empty(), "empty password on stdin");
            let hash = hash_password(pw).map_err(|e| anyhow::anyhow!("hashing: {e}"))?;
            #[allow(clippy::print_stdout)]
            {
                println!("{hash}");
            }
            Ok(())
        }
        Some("--help" | "-h" | "help") => {
            eprintln!(
                "usage: auth-service                 serve (see AUTH_* and JWT_* env vars)\n       \
                 auth-service hash-password   read a password on stdin, print its argon2 hash"
            );
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown argument '{other}' (try --help)"),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn config() -> anyhow::Result<AuthConfig> {
    let users_file = env("AUTH_USERS_FILE").context("AUTH_USERS_FILE is not set")?;
    let users = Users::load(std::path::Path::new(&users_file))?;
    let jwt_key = env("JWT_KEY").context("JWT_KEY is not set")?;
    let jwt_secret = match (env("JWT_SECRET"), env("JWT_SECRET_FILE")) {
        (Some(s), _) => s,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("reading JWT_SECRET_FILE {f}"))?
            .trim_end()
            .to_owned(),
        (None, None) => anyhow::bail!("JWT_SECRET (or JWT_SECRET_FILE) is not set"),
    };
    let ttl: u64 = env("TOKEN_TTL")
        .map(|v| {
            v.parse()
                .with_context(|| format!("TOKEN_TTL '{v}' is not a number of seconds"))
        })
        .transpose()?
        .unwrap_or(3600);
    Ok(AuthConfig {
        users,
        jwt_key,
        jwt_secret,
        token_ttl: Duration::from_secs(ttl),
        instance_id: uuid::Uuid::new_v4().simple().to_string(),
    })
}

fn serve() -> anyhow::Result<()> {
    let config = config()?;
    let addr = listen_addr(env("AUTH_LISTEN").as_deref()).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, instance = %config.instance_id, users = config.users.len(), "auth-service listening");
        auth_service::serve(listener, config, svc_telemetry::shutdown_signal())
            .await
            .context("serving")
    })
}
