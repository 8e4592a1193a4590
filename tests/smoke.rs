//! Issue 7's CI smoke test: the sample stack as local processes, wired as compose wires it.
//!
//! A throwaway Postgres database → `gwctl migrate up` → `gwctl serve --database-url` →
//! `gwctl setup kong -f compose/gateway.yml` → two replicas each of auth-service and
//! monitor-service, each started by `gwctl register ... -- <service>` (exec mode) → rotel as the
//! collector (the gateway's opentelemetry plugin and the services export to it; it forwards over
//! OTLP/HTTP to an in-process receiver standing in for OpenObserve). Then newman runs the
//! Postman collection against the gateway, the test checks that one trace in the collector's
//! output spans the gateway and the monitor service, and everything is stopped: the replicas
//! deregister themselves on SIGTERM, the gateway drains and exits 0.
//!
//! Needs the `postgres`, `rotel` and `newman` components of tests/run.sh, and the services'
//! binaries next to gwctl (tests/run.sh builds them).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::support::otlp::{OtlpReceiver, attr_str, hex};
use crate::support::rotel::Rotel;
use crate::support::{TempDir, component, pg, refused_addr};
use crate::up::service_dir;

const GWCTL: &str = env!("CARGO_BIN_EXE_gwctl");
/// The credential the gateway's consumer and the auth service share (compose's `.env`).
const JWT_KEY: &str = "smoke-test-key";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process whose output lines are collected (and printed when the test fails).
struct Proc {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _group: crate::support::GroupKill,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Self {
        let mut child = cmd
            .env_remove("GWCTL_LOG")
            .env_remove("RUST_LOG")
            .env_remove("GWCTL_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let group = crate::support::GroupKill::of(&child);
        let lines = crate::support::collect_output(&mut child);
        Self {
            name: name.to_owned(),
            child,
            lines,
            _group: group,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- {} ---\n{}",
            self.name,
            self.lines.lock().expect("lines").join("\n")
        )
    }

    /// The first output line containing all of `needles`, waiting up to `within`.
    async fn line_with(&mut self, needles: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "{} printed no line with {needles:?} within {within:?}:\n{}",
                self.name,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.child.id().expect("running") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).expect("kill");
    }

    /// SIGTERM, then the exit code (bounded wait).
    async fn stop(&mut self, within: Duration) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within {within:?}", self.name))
            .expect("wait");
        status.code()
    }
}

/// Run a command to completion; panics with its output unless it succeeds.
async fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} took over 300 s"))
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

/// The value of `key=` in a text log line.
fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

/// The targets (as `host:port`) of an upstream, from the Admin API.
async fn targets(http: &reqwest::Client, admin: &str, upstream: &str) -> HashSet<String> {
    let url = format!("{admin}/upstreams/{upstream}/targets?size=1000");
    let Ok(r) = http.get(&url).send().await else {
        return HashSet::new();
    };
    let body: Value = r.json().await.unwrap_or_default();
    body["data"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["target"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_passes_the_postman_collection_and_traces_span_gateway_and_service() {
    let Some(newman) = component("GWCTL_TEST_NEWMAN", "newman") else {
        return;
    };
    let Some(agent) = component("GWCTL_TEST_ROTEL", "rotel") else {
        return;
    };
    if pg::admin_url().is_none() {
        // Not skippable silently: the smoke test is what CI runs the stack with.
        component("GWCTL_TEST_DATABASE_URL", "postgres");
        return;
    }
    let services = service_dir();
    let dir = TempDir::new();
    let http = crate::support::client();

    // Postgres and the schema, as compose's `migrate` job.
    let db = pg::fresh_database().await.expect("a test cluster");
    run_ok(
        "gwctl migrate up",
        Command::new(GWCTL).args(["migrate", "up", "--database-url", &db, "--wait", "30"]),
    )
    .await;

    // The collector: receives from the gateway and the services, forwards to "OpenObserve".
    let backend = OtlpReceiver::start().await;
    let rotel = Rotel::start(&agent, &Rotel::forward_to(&backend.url())).await;

    // The gateway on the database.
    let mut gateway = Proc::spawn(
        "gwctl serve",
        Command::new(GWCTL)
            .args(["--log-format", "text", "serve", "--database-url", &db])
            .args([
                "--proxy-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--status-listen", "127.0.0.1:0", "--workers", "2"])
            .args(["--drain-timeout", "10"]),
    );
    let listening = gateway
        .line_with(&["listening", "proxy="], Duration::from_secs(60))
        .await;
    let proxy = format!("http://{}", field(&listening, "proxy").expect("proxy="));
    let admin = format!("http://{}", field(&listening, "admin").expect("admin="));
    let status = field(&listening, "status").expect("status=");
    // Compose's health check.
    run_ok(
        "gwctl health",
        Command::new(GWCTL).args(["health", "--status-url", &format!("http://{status}")]),
    )
    .await;

    // The stack's configuration, as compose's `gateway-setup` job; a second run converges.
    let jwt_secret = format!("{:032x}", rand::random::<u128>());
    let setup = || {
        let mut c = Command::new(GWCTL);
        c.args(["setup", "kong", "-f"])
            .arg(root().join("compose/gateway.yml"))
            .args(["--admin-url", &admin, "--wait", "30"])
            .env("JWT_KEY", JWT_KEY)
            .env("JWT_SECRET", &jwt_secret)
            .env("OTEL_TRACES_ENDPOINT", format!("{}/v1/traces", rotel.url()))
            .env("OTEL_LOGS_ENDPOINT", format!("{}/v1/logs", rotel.url()))
            .env_remove("GWCTL_ADMIN_TOKEN");
        c
    };
    run_ok("gwctl setup kong", &mut setup()).await;
    let again = run_ok("gwctl setup kong (again)", &mut setup()).await;
    assert!(
        again.contains("0 created, 0 updated, 0 deleted"),
        "the second setup run changed something:\n{again}"
    );

    // The users file (compose's `auth_users` secret).
    let password = format!("pw-{:016x}", rand::random::<u64>());
    let users = dir.write(
        "auth_users.txt",
        &format!(
            "demo:{}\n",
            gwctl::ops::up::hash_password(&services.join("auth-service"), &password)
                .await
                .expect("auth-service hash-password")
        ),
    );

    // Two replicas of each service, each through `gwctl register` exec mode.
    let mut replicas = Vec::new();
    for (binary, upstream, listen_env) in [
        ("auth-service", "auth-upstream", "AUTH_LISTEN"),
        ("auth-service", "auth-upstream", "AUTH_LISTEN"),
        ("monitor-service", "monitor-upstream", "MONITOR_LISTEN"),
        ("monitor-service", "monitor-upstream", "MONITOR_LISTEN"),
    ] {
        let addr = refused_addr();
        let p = Proc::spawn(
            &format!("register {binary} {addr}"),
            Command::new(GWCTL)
                .args(["--log-format", "text", "register", "--upstream", upstream])
                .args(["--port", &addr.port().to_string(), "--cidr", "127.0.0.0/8"])
                .args(["--admin-url", &admin, "--health-path", "/health"])
                .args(["--wait", "60", "--"])
                .arg(services.join(binary))
                .env(listen_env, addr.to_string())
                .env("AUTH_USERS_FILE", &users)
                .env("JWT_KEY", JWT_KEY)
                .env("JWT_SECRET", &jwt_secret)
                .env("OTEL_SERVICE_NAME", binary)
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.url())
                .env("OTEL_BSP_SCHEDULE_DELAY", "200")
                .env("OTEL_BLRP_SCHEDULE_DELAY", "200"),
        );
        replicas.push((upstream, addr.to_string(), p));
    }
    let all_output = |gateway: &Proc, replicas: &[(&str, String, Proc)]| {
        let mut s = gateway.output();
        for (_, _, p) in replicas {
            s.push('\n');
            s.push_str(&p.output());
        }
        s.push_str("\n--- rotel ---\n");
        s.push_str(&rotel.output());
        s
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut missing = Vec::new();
        for (upstream, addr, _) in &replicas {
            if !targets(&http, &admin, upstream).await.contains(addr) {
                missing.push(format!("{upstream} {addr}"));
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not registered within 120 s: {missing:?}\n{}",
            all_output(&gateway, &replicas)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // newman runs the Postman collection against the gateway.
    let report = dir.0.join("newman.json");
    let out = Command::new(&newman)
        .arg("run")
        .arg(root().join("postman/gwctl.postman_collection.json"))
        .arg("-e")
        .arg(root().join("postman/gwctl.postman_environment.json"))
        .args(["--env-var", &format!("gateway_auth_host={proxy}/api/auth")])
        .args([
            "--env-var",
            &format!("gateway_sound_monitor_host={proxy}/api/monitor"),
        ])
        .args(["--env-var", "username=demo"])
        .args(["--env-var", &format!("password={password}")])
        .args(["--env-var", &format!("jwt_key={JWT_KEY}")])
        .args(["--env-var", &format!("jwt_secret={jwt_secret}")])
        .args(["--reporters", "cli,json", "--reporter-json-export"])
        .arg(&report)
        .args(["--color", "off", "--timeout-request", "10000"])
        .output()
        .await
        .expect("run newman");
    let cli =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "newman failed ({}):\n{cli}\n{}",
        out.status,
        all_output(&gateway, &replicas)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("newman report"))
            .expect("newman's JSON report");
    let stats = &summary["run"]["stats"];
    let ran = |k: &str| stats[k]["total"].as_u64().unwrap_or(0);
    let failed = |k: &str| stats[k]["failed"].as_u64().unwrap_or(u64::MAX);
    // Every request of the collection ran, with its assertions (the rate-limit and round-robin
    // checks send more through pm.sendRequest, which newman does not count as requests).
    assert!(ran("requests") >= 10, "{stats}\n{cli}");
    assert!(ran("assertions") >= 18, "{stats}\n{cli}");
    assert_eq!(failed("assertions"), 0, "{stats}\n{cli}");
    assert_eq!(failed("requests"), 0, "{stats}\n{cli}");
    assert_eq!(failed("testScripts"), 0, "{stats}\n{cli}");
    assert_eq!(failed("prerequestScripts"), 0, "{stats}\n{cli}");

    // One trace spans the gateway and the monitor service, in what the collector forwarded:
    // the gateway's `kong` root span and a monitor-service server span whose parent is the
    // gateway's `kong.balancer` span of the same trace, with the service's nested span.
    let spans_of = |trace: &[u8]| {
        backend
            .spans()
            .into_iter()
            .filter(|(_, s)| s.trace_id == trace)
            .collect::<Vec<_>>()
    };
    let spanning = || {
        backend.spans().into_iter().find_map(|(r, s)| {
            if attr_str(&r, "service.name") != Some("monitor-service") {
                return None;
            }
            let trace = spans_of(&s.trace_id);
            let parent = trace
                .iter()
                .find(|(_, p)| p.span_id == s.parent_span_id && p.name == "kong.balancer")?;
            (attr_str(&parent.0, "service.name") == Some("gwctl-gateway")
                && trace.iter().any(|(_, k)| k.name == "kong")
                && trace.iter().any(|(_, f)| {
                    f.name == "fetch_alerts" && f.events.iter().any(|e| e.name == "Fetched Alerts")
                }))
            .then(|| hex(&s.trace_id))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let trace = loop {
        if let Some(t) = spanning() {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no trace spans gwctl-gateway and monitor-service in the collector's output; spans: \
             {:#?}\n{}",
            backend
                .spans()
                .iter()
                .map(|(r, s)| (
                    attr_str(r, "service.name").map(str::to_owned),
                    s.name.clone(),
                    hex(&s.trace_id),
                    hex(&s.span_id),
                    hex(&s.parent_span_id)
                ))
                .collect::<Vec<_>>(),
            all_output(&gateway, &replicas)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The collector forwarded logs too: the services' lines carry the trace ids.
    assert!(
        backend
            .log_records()
            .iter()
            .any(
                |(r, l)| attr_str(r, "service.name") == Some("monitor-service")
                    && hex(&l.trace_id) == trace
            ),
        "no monitor-service log record of trace {trace} reached the collector's backend"
    );

    // Stop: each replica deregisters itself and exits 0; the gateway drains and exits 0.
    let mut codes = Vec::new();
    for (upstream, addr, p) in &mut replicas {
        codes.push((
            upstream.to_string(),
            addr.clone(),
            p.stop(Duration::from_secs(30)).await,
        ));
    }
    for (upstream, addr, code) in &codes {
        assert_eq!(*code, Some(0), "{upstream} {addr}");
        assert!(
            !targets(&http, &admin, upstream).await.contains(addr),
            "{addr} still a target of {upstream} after its register stopped"
        );
    }
    assert_eq!(
        gateway.stop(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        gateway.output()
    );
    let text = all_output(&gateway, &replicas);
    assert!(!text.contains(&jwt_secret), "a secret leaked into the logs");
    assert!(
        !text.contains(&password),
        "the password leaked into the logs"
    );
}
