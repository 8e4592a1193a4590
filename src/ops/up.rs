//! `gwctl up`: the whole sample system on one machine, no Docker, no database. The gateway runs
//! in this process on its embedded default; `setup kong`'s logic converges it to the stack's
//! configuration (`compose/gateway.yml`, embedded); each sample service replica runs as
//! `gwctl register --cidr 127.0.0.0/8 ... -- <service>` (register's exec mode: healthy first,
//! then registered; deregistered when it exits). Stopping (Ctrl-C / SIGTERM) stops the replicas
//! first (they deregister while the Admin API is still up), then the gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::progress::Reporter;
use super::setup_kong::{self, SetupKongOptions};
use crate::serve::{Bound, ServeOptions};

/// The stack's gateway configuration, embedded (the file `compose/gateway.yml`).
pub const STACK_CONFIG: &str = include_str!("../../compose/gateway.yml");

/// Input of [`run`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Replicas of each sample service.
    pub replicas: u32,
    /// The proxy's listen address.
    pub proxy_listen: String,
    /// The demo account: user name.
    pub user: String,
    /// The demo account: password (never logged).
    pub password: String,
    /// The gwctl executable (for `gwctl register` children).
    pub gwctl: PathBuf,
    /// Where `auth-service` and `monitor-service` are (next to gwctl).
    pub services_dir: PathBuf,
    /// OTLP/HTTP base URL for the services and the gateway's opentelemetry plugin.
    pub otlp_endpoint: String,
    /// The log format of the replicas' `gwctl register` (the same as `up`'s own, so that one
    /// terminal does not mix JSON and text lines).
    pub log_json: bool,
}

/// What `run` reports once everything is up (for the binary to print).
#[derive(Debug, Clone)]
pub struct Running {
    /// Bound listeners of the gateway.
    pub bound: Bound,
    /// Replica addresses per upstream.
    pub replicas: Vec<(String, SocketAddr)>,
}

/// A sample service the stack runs.
struct ServiceSpec {
    binary: &'static str,
    upstream: &'static str,
    listen_env: &'static str,
}

const SERVICES: [ServiceSpec; 2] = [
    ServiceSpec {
        binary: "auth-service",
        upstream: "auth-upstream",
        listen_env: "AUTH_LISTEN",
    },
    ServiceSpec {
        binary: "monitor-service",
        upstream: "monitor-upstream",
        listen_env: "MONITOR_LISTEN",
    },
];

/// Run the sample system until `shutdown` turns true. `on_up` sees the addresses once every
/// replica is registered.
pub async fn run(
    options: UpOptions,
    mut shutdown: watch::Receiver<bool>,
    reporter: &dyn Reporter,
    on_up: impl FnOnce(&Running),
) -> anyhow::Result<()> {
    for s in &SERVICES {
        let p = options.services_dir.join(s.binary);
        anyhow::ensure!(
            p.is_file(),
            "{} not found next to gwctl (looked for {}); build it with `cargo build -p {}`",
            s.binary,
            p.display(),
            s.binary
        );
    }
    let dir = TempDir::new().context("creating a temporary directory")?;

    // Secrets of this run: a fresh jwt credential, and the demo user's argon2 hash.
    let jwt_key = "gwctl-up".to_owned();
    let jwt_secret = random_hex(32);
    let users = dir.0.join("users.txt");
    let hash = hash_password(
        &options.services_dir.join("auth-service"),
        &options.password,
    )
    .await
    .context("hashing the demo password")?;
    write_private(&users, &format!("{}:{hash}\n", options.user))?;
    // Without a collector, export nothing rather than fill the terminal with export failures.
    let collector = collector_answers(&options.otlp_endpoint).await;
    let stack = if collector {
        STACK_CONFIG.to_owned()
    } else {
        tracing::warn!(
            endpoint = %options.otlp_endpoint,
            "no OTLP collector answers: traces and logs are not exported (start one there, or \
             point OTEL_EXPORTER_OTLP_ENDPOINT at one)"
        );
        without_plugin(STACK_CONFIG, "opentelemetry")?
    };
    let config = dir.0.join("gateway.yml");
    std::fs::write(&config, stack).context("writing the stack configuration")?;

    // The gateway, in this process.
    let (gw_tx, gw_rx) = watch::channel(false);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let serve = ServeOptions {
        config: None,
        database_url: None,
        proxy_listen: vec![options.proxy_listen.clone()],
        proxy_tls_listen: Vec::new(),
        tls_cert: None,
        tls_key: None,
        admin_listen: "127.0.0.1:0".to_owned(),
        status_listen: "127.0.0.1:0".to_owned(),
        admin_token: None,
        workers: 2,
        drain_timeout: Duration::from_secs(5),
        trusted_ips: Vec::new(),
        access_log: Default::default(),
    };
    let gateway = tokio::spawn(crate::serve::run_embedded(serve, gw_rx, move |b| {
        let _ = bound_tx.send(b.clone());
    }));
    let bound = bound_rx.await.context("the gateway did not start")?;
    let admin = bound.admin.context("the gateway has no admin listener")?;
    let admin_url = format!("http://{admin}");

    // Its configuration.
    let env: HashMap<String, String> = [
        ("JWT_KEY", jwt_key.clone()),
        ("JWT_SECRET", jwt_secret.clone()),
        (
            "OTEL_TRACES_ENDPOINT",
            format!("{}/v1/traces", options.otlp_endpoint),
        ),
        (
            "OTEL_LOGS_ENDPOINT",
            format!("{}/v1/logs", options.otlp_endpoint),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let setup = SetupKongOptions {
        file: config,
        admin_url: admin_url.clone(),
        admin_token: None,
        dry_run: false,
        prune: false,
        wait: Duration::from_secs(30),
        env,
    };
    let report = setup_kong::run(&setup, reporter)
        .await
        .context("configuring the gateway")?;
    tracing::info!(summary = %report.summary(), "gateway configured");

    // The replicas.
    let mut children: Vec<(String, SocketAddr, Child)> = Vec::new();
    let started = async {
        for spec in &SERVICES {
            for _ in 0..options.replicas {
                let addr = free_port().context("finding a free port")?;
                let child = Command::new(&options.gwctl)
                    .args(["register", "--upstream", spec.upstream, "--port"])
                    .arg(addr.port().to_string())
                    .args(["--cidr", "127.0.0.0/8", "--admin-url", &admin_url])
                    .args(["--health-path", "/health", "--wait", "60", "--"])
                    .arg(options.services_dir.join(spec.binary))
                    .env(spec.listen_env, addr.to_string())
                    .env("AUTH_USERS_FILE", &users)
                    .env("JWT_KEY", &jwt_key)
                    .env("JWT_SECRET", &jwt_secret)
                    .env("OTEL_SERVICE_NAME", spec.binary)
                    .env("OTEL_EXPORTER_OTLP_ENDPOINT", &options.otlp_endpoint)
                    .env(
                        "OTEL_SDK_DISABLED",
                        if collector { "false" } else { "true" },
                    )
                    .env(
                        "GWCTL_LOG_FORMAT",
                        if options.log_json { "json" } else { "text" },
                    )
                    .env_remove("GWCTL_ADMIN_TOKEN")
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting {}", spec.binary))?;
                children.push((spec.upstream.to_owned(), addr, child));
            }
        }
        anyhow::Ok(())
    };
    let result = started.await;
    let result = match result {
        Ok(()) => wait_registered(&admin_url, &children, &mut shutdown).await,
        Err(e) => Err(e),
    };
    if result.is_ok() {
        crate::serve::log_listening(&bound);
        on_up(&Running {
            bound: bound.clone(),
            replicas: children.iter().map(|(u, a, _)| (u.clone(), *a)).collect(),
        });
        // Run until asked to stop, or until a replica dies for good.
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {}
            dead = first_exit(&mut children) => {
                tracing::error!(replica = %dead, "a replica exited; stopping");
            }
        }
    }
    stop_children(&mut children).await;
    let _ = gw_tx.send(true);
    if let Ok(Err(e)) = gateway.await {
        tracing::error!(error = %e, "gateway stopped with an error");
    }
    result
}

/// Whether something accepts TCP connections at the OTLP endpoint's host and port (1 s).
async fn collector_answers(endpoint: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(endpoint) else {
        return false;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect((host, port))
        )
        .await,
        Ok(Ok(_))
    )
}

/// The declarative `yaml` without the global plugin `name` (comments are not kept).
fn without_plugin(yaml: &str, name: &str) -> anyhow::Result<String> {
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(yaml).context("parsing the stack configuration")?;
    if let Some(plugins) = doc
        .get_mut("plugins")
        .and_then(serde_yaml::Value::as_sequence_mut)
    {
        plugins.retain(|p| p.get("name").and_then(serde_yaml::Value::as_str) != Some(name));
    }
    serde_yaml::to_string(&doc).context("writing the stack configuration")
}

/// A temporary directory removed on drop (holds the run's users file and configuration).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("gwctl-up-{}-{}", std::process::id(), random_hex(4)));
        std::fs::create_dir_all(&dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `n` random bytes as hex.
fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Write a file only its owner can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The argon2 hash of `password`, from `auth-service hash-password` (password on stdin, never
/// on a command line).
pub async fn hash_password(auth_service: &Path, password: &str) -> anyhow::Result<String> {
    let mut child = Command::new(auth_service)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", auth_service.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(password.as_bytes()).await?;
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("auth-service hash-password took over 60 s")??;
    anyhow::ensure!(
        out.status.success(),
        "auth-service hash-password failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    anyhow::ensure!(
        hash.starts_with('$'),
        "auth-service hash-password printed no hash"
    );
    Ok(hash)
}

/// A free port on 127.0.0.1 (bound and released; the replica binds it a moment later).
fn free_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Wait until every replica is a target of its upstream (each `gwctl register` child registers
/// once its service is healthy), a child exits, or `shutdown` turns true.
async fn wait_registered(
    admin_url: &str,
    children: &[(String, SocketAddr, Child)],
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut missing = Vec::new();
        for (upstream, addr, _) in children {
            let url = format!("{admin_url}/upstreams/{upstream}/targets?size=1000");
            let body: serde_json::Value = match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
                _ => serde_json::Value::Null,
            };
            let target = addr.to_string();
            let found = body["data"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|t| t["target"] == target.as_str()));
            if !found {
                missing.push(format!("{upstream} {target}"));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "replicas not registered within 90 s: {}",
            missing.join(", ")
        );
        if *shutdown.borrow() {
            anyhow::bail!("stopped before every replica was registered");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Resolves with a description of the first replica that exits.
async fn first_exit(children: &mut [(String, SocketAddr, Child)]) -> String {
    loop {
        for (upstream, addr, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return format!("{upstream} {addr} ({status})");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// SIGTERM every replica (`gwctl register` forwards it to the service and deregisters), wait
/// for them (bounded), then kill what is left.
async fn stop_children(children: &mut [(String, SocketAddr, Child)]) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for (_, _, child) in children.iter() {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for (upstream, addr, child) in children.iter_mut() {
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(%upstream, %addr, "replica did not stop in time; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_without_opentelemetry_keeps_everything_else() {
        let full: serde_yaml::Value = serde_yaml::from_str(STACK_CONFIG).unwrap();
        let names = |v: &serde_yaml::Value| -> Vec<String> {
            v["plugins"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert!(names(&full).contains(&"opentelemetry".to_owned()));
        let stripped: serde_yaml::Value =
            serde_yaml::from_str(&without_plugin(STACK_CONFIG, "opentelemetry").unwrap()).unwrap();
        let mut expected = names(&full);
        expected.retain(|n| n != "opentelemetry");
        assert_eq!(names(&stripped), expected);
        assert_eq!(stripped["services"], full["services"]);
        assert_eq!(stripped["consumers"], full["consumers"]);
        assert_eq!(stripped["upstreams"], full["upstreams"]);
    }

    #[tokio::test]
    async fn a_collector_is_found_only_where_something_listens() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        assert!(collector_answers(&format!("http://{addr}")).await);
        drop(l);
        assert!(!collector_answers(&format!("http://{addr}")).await);
        assert!(!collector_answers("not a url").await);
    }
}
