//! `gwctl up` with the real binaries: the gateway, two replicas of each sample service
//! registered through `gwctl register`, the stack's routes; login, alerts, round-robin; Ctrl-C
//! stops everything.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// The sample services' executables next to the gwctl under test (tests/run.sh builds them).
pub fn service_dir() -> PathBuf {
    let gwctl = PathBuf::from(env!("CARGO_BIN_EXE_gwctl"));
    let dir = gwctl.parent().expect("target dir").to_path_buf();
    for b in ["auth-service", "monitor-service"] {
        assert!(
            dir.join(b).is_file(),
            "{} missing: build the workspace's binaries first (`cargo build --workspace --bins`; \
             tests/run.sh does)",
            dir.join(b).display()
        );
    }
    dir
}

/// The value of `key=` in a text log line.
fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

/// `gwctl up` (text logs, 2 replicas, a free proxy port) with the OTLP endpoint `otlp`; returns
/// once it prints its `listening` line, with every output line collected.
async fn start_up(
    otlp: &str,
) -> (
    tokio::process::Child,
    Arc<Mutex<Vec<String>>>,
    String,
    crate::support::GroupKill,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args(["--log-format", "text", "up", "--replicas", "2"])
        .args(["--proxy-listen", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        // The services' batch processors: export quickly.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "200")
        .env_remove("GWCTL_LOG")
        .env_remove("GWCTL_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .expect("spawn gwctl up");
    let group = crate::support::GroupKill::of(&child);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = Arc::clone(&lines);
    tokio::spawn(async move {
        while let Ok(Some(l)) = err.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    let listening = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(l)) = out.next_line().await {
            lines.lock().unwrap().push(l.clone());
            if l.contains("listening") && l.contains("proxy=") {
                return Some(l);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(listening) = listening else {
        panic!("no listening line; output: {:#?}", lines.lock().unwrap());
    };
    let sink = Arc::clone(&lines);
    tokio::spawn(async move {
        while let Ok(Some(l)) = out.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    (child, lines, listening, group)
}

/// POST /api/auth/login through the gateway; the access token (asserts 200).
async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> String {
    let r = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// GET /api/monitor/alerts through the gateway with `token` (and extra headers).
async fn alerts(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = http
        .get(format!("{base}/api/monitor/alerts"))
        .bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// SIGINT (Ctrl-C); asserts `gwctl up` exits 0 within 40 s.
async fn ctrl_c(child: &mut tokio::process::Child, lines: &Mutex<Vec<String>>) {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .expect("gwctl up stops within 40 s")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{:#?}", lines.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_sample_system_and_ctrl_c_stops_it() {
    service_dir();
    let otlp = crate::support::otlp::OtlpReceiver::start().await;
    let (mut child, lines, listening, _group) = start_up(&otlp.url()).await;
    let proxy = field(&listening, "proxy").expect("proxy=");
    assert!(field(&listening, "admin").is_some(), "{listening}");
    let base = format!("http://{proxy}");
    let http = reqwest::Client::new();

    // Login with the default demo account.
    let token = login(&http, &base, "demo", "demo").await;
    let r = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": "demo", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Alerts: with the token the service sees the user; without it the gateway answers.
    let r = alerts(
        &http,
        &base,
        &token,
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["user"], "demo", "{body}");
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(2), "{body}");
    let r = http
        .get(format!("{base}/api/monitor/alerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // One trace from the client through the gateway into the monitor service: the gateway's
    // `kong` span continues the client's traceparent, and the service's server span is a child
    // of the gateway's balancer span.
    use crate::support::otlp::{attr_str, hex};
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let in_trace = || {
        otlp.spans()
            .into_iter()
            .filter(|(_, s)| hex(&s.trace_id) == trace)
            .collect::<Vec<_>>()
    };
    assert_eventually!(
        Duration::from_secs(20),
        {
            let spans = in_trace();
            spans
                .iter()
                .any(|(r, _)| attr_str(r, "service.name") == Some("monitor-service"))
                && spans.iter().any(|(_, s)| s.name == "kong")
        },
        "spans of trace {trace}: {:#?}",
        in_trace()
            .iter()
            .map(|(r, s)| (
                attr_str(r, "service.name").map(str::to_owned),
                s.name.clone()
            ))
            .collect::<Vec<_>>()
    );
    let spans = in_trace();
    let kong = spans.iter().find(|(_, s)| s.name == "kong").unwrap();
    assert_eq!(hex(&kong.1.parent_span_id), "00f067aa0ba902b7");
    let balancer: Vec<_> = spans
        .iter()
        .filter(|(_, s)| s.name == "kong.balancer")
        .map(|(_, s)| hex(&s.span_id))
        .collect();
    let service_root = spans.iter().find(|(r, s)| {
        attr_str(r, "service.name") == Some("monitor-service")
            && balancer.contains(&hex(&s.parent_span_id))
    });
    assert!(
        service_root.is_some(),
        "no monitor-service span whose parent is a kong.balancer span {balancer:?}: {:#?}",
        spans
            .iter()
            .map(|(r, s)| (
                attr_str(r, "service.name").map(str::to_owned),
                s.name.clone(),
                hex(&s.span_id),
                hex(&s.parent_span_id)
            ))
            .collect::<Vec<_>>()
    );
    // The service's nested span and its event.
    assert!(
        spans.iter().any(|(_, s)| s.name == "fetch_alerts"
            && s.events.iter().any(|e| e.name == "Fetched Alerts"
                && e.attributes.iter().any(|a| a.key == "num_alerts"))),
        "no fetch_alerts span with the Fetched Alerts event: {:#?}",
        spans
            .iter()
            .map(|(r, s)| (
                attr_str(r, "service.name").map(str::to_owned),
                s.name.clone(),
                s.events.iter().map(|e| e.name.clone()).collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>()
    );

    // Round-robin over the two auth replicas.
    let mut seen = HashSet::new();
    for _ in 0..6 {
        let r = http
            .get(format!("{base}/api/auth/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        seen.insert(
            r.headers()["x-app-instance-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // Ctrl-C: everything stops, exit 0.
    ctrl_c(&mut child, &lines).await;
    assert!(
        tokio::net::TcpStream::connect(proxy.as_str())
            .await
            .is_err(),
        "the proxy still accepts connections"
    );
    let text = lines.lock().unwrap().join("\n");
    assert!(
        !text.contains("jwt_secret") && !text.contains("JWT_SECRET="),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_without_a_collector_says_so_once_and_exports_nothing() {
    service_dir();
    let dead = crate::support::refused_addr();
    let (mut child, lines, listening, _group) = start_up(&format!("http://{dead}")).await;
    let proxy = field(&listening, "proxy").expect("proxy=");
    let admin = field(&listening, "admin").expect("admin=");
    let http = reqwest::Client::new();
    // The system works; the gateway has every stack plugin but opentelemetry.
    let base = format!("http://{proxy}");
    let token = login(&http, &base, "demo", "demo").await;
    assert_eq!(alerts(&http, &base, &token, &[]).await.status(), 200);
    let plugins: serde_json::Value = http
        .get(format!("http://{admin}/plugins"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = plugins["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"prometheus") && names.contains(&"jwt"),
        "{names:?}"
    );
    assert!(!names.contains(&"opentelemetry"), "{names:?}");
    // Give exporters time to fail, if any were still exporting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ctrl_c(&mut child, &lines).await;
    let lines = lines.lock().unwrap().clone();
    let notices = lines
        .iter()
        .filter(|l| l.contains("no OTLP collector answers"))
        .count();
    assert_eq!(notices, 1, "{lines:#?}");
    // One format on the terminal (the replicas' register lines too), no export failures.
    assert!(!lines.iter().any(|l| l.starts_with('{')), "{lines:#?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Export") || l.contains("could not export")),
        "{lines:#?}"
    );
}
