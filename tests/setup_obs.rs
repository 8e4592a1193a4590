//! `gwctl setup obs` against the OpenObserve stand-in of `support::openobserve` (OpenObserve's
//! documented API and failure answers, openobserve-otel.md §1), through the library with a
//! progress recorder and through the real binary (exit codes, no secret in any output). Also
//! checks the collector config the compose stack uses (`compose/otel-collector.yaml`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gwctl::ops::progress::{Event, Outcome, Recorder};
use gwctl::ops::setup_obs::{self, Change, SetupObsError, SetupObsOptions};
use serde_json::{Value, json};

use crate::support::openobserve::{Down, FakeObs, PASSCODE, ROOT_EMAIL, ROOT_PASSWORD};
use crate::support::{TempDir, refused_addr};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The header value the collector must send.
fn ingest_header() -> String {
    format!("Basic {}", b64(&format!("{ROOT_EMAIL}:{PASSCODE}")))
}

fn options(url: &str, env_file: PathBuf) -> SetupObsOptions {
    SetupObsOptions {
        url: url.to_owned(),
        user: ROOT_EMAIL.to_owned(),
        password: ROOT_PASSWORD.to_owned(),
        org: "default".to_owned(),
        env_file,
        wait: Duration::from_secs(20),
        collector_config: None,
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn stamp(p: &Path) -> (u64, i64, i64) {
    let m = std::fs::metadata(p).unwrap();
    (m.ino(), m.mtime(), m.mtime_nsec())
}

#[tokio::test]
async fn sets_the_org_settings_reads_the_passcode_and_writes_the_env_file() {
    let o2 = FakeObs::start().await;
    // An org whose UI-era field names differ from the ones the services log.
    o2.set_settings(
        "default",
        json!({"trace_id_field_name": "traceId", "span_id_field_name": "spanId"}),
    );
    let dir = TempDir::new();
    let env = dir.0.join("collector.env");
    let rec = Recorder::new();
    let report = setup_obs::run(options(&o2.url(), env.clone()), &rec)
        .await
        .unwrap();
    assert_eq!(report.settings, Change::Changed);
    assert_eq!(report.env_file, Change::Changed);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        format!(
            "OPENOBSERVE_AUTH={}\nOPENOBSERVE_ORG=default\n",
            ingest_header()
        )
    );
    assert_eq!(mode(&env), 0o600);
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        1,
        "no temporary file left"
    );

    let settings = o2.settings("default");
    assert_eq!(settings["trace_id_field_name"], "trace_id");
    assert_eq!(settings["span_id_field_name"], "span_id");

    let api = o2.api_requests();
    let calls: Vec<(&str, &str)> = api
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET", "/api/default/settings"),
            ("POST", "/api/default/settings"),
            ("GET", "/api/default/passcode"),
        ],
        "never PUT /passcode (it would rotate the token)"
    );
    let password_auth = format!("Basic {}", b64(&format!("{ROOT_EMAIL}:{ROOT_PASSWORD}")));
    for r in &api {
        assert_eq!(
            r.authorization.as_deref(),
            Some(password_auth.as_str()),
            "{r:?}"
        );
    }
    let post = &api[1];
    assert_eq!(post.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&post.body).unwrap(),
        json!({"trace_id_field_name": "trace_id", "span_id_field_name": "span_id"})
    );
    // Health first, without credentials.
    let first = &o2.requests()[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("GET", "/healthz")
    );
    assert_eq!(first.authorization, None);
    // Progress: each step started, then finished, before the next one (no nesting).
    let steps = steps(&rec);
    assert_eq!(
        steps,
        [
            (
                format!("waiting for OpenObserve at {}/", o2.url()),
                Outcome::Ok
            ),
            (
                "org default settings trace_id/span_id field names".to_owned(),
                Outcome::Ok
            ),
            (
                format!("reading the ingestion passcode of {ROOT_EMAIL}"),
                Outcome::Ok
            ),
            (format!("writing {}", env.display()), Outcome::Ok),
        ]
    );
}

/// The steps of a run as (step, outcome), checking that each is started, maybe retried, and
/// finished before the next one starts.
fn steps(rec: &Recorder) -> Vec<(String, Outcome)> {
    let mut out = Vec::new();
    let mut open: Option<String> = None;
    for e in rec.events() {
        match e {
            Event::Started(s) => {
                assert!(
                    open.is_none(),
                    "{s} started inside {open:?}: {:?}",
                    rec.events()
                );
                open = Some(s);
            }
            Event::Retrying { step, .. } => assert_eq!(Some(&step), open.as_ref()),
            Event::Finished(s, outcome) => {
                assert_eq!(Some(&s), open.as_ref(), "{:?}", rec.events());
                open = None;
                out.push((s, outcome));
            }
        }
    }
    assert!(open.is_none(), "{open:?} never finished");
    out
}

#[tokio::test]
async fn a_second_run_changes_nothing() {
    let o2 = FakeObs::start().await;
    o2.set_settings("default", json!({"trace_id_field_name": "traceId"}));
    let dir = TempDir::new();
    let env = dir.0.join("o2.env");
    let first = setup_obs::run(options(&o2.url(), env.clone()), &Recorder::new())
        .await
        .unwrap();
    assert!(!first.is_unchanged());
    let bytes = std::fs::read(&env).unwrap();
    let before = stamp(&env);
    let posts = || {
        o2.api_requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
    };
    assert_eq!(posts(), 1);

    let rec = Recorder::new();
    let second = setup_obs::run(options(&o2.url(), env.clone()), &rec)
        .await
        .unwrap();
    assert!(second.is_unchanged(), "{second:?}");
    let outcomes: Vec<Outcome> = steps(&rec).into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        outcomes,
        [Outcome::Ok, Outcome::Skipped, Outcome::Ok, Outcome::Skipped],
        "health ok, settings already set, passcode read, env file unchanged"
    );
    assert_eq!(std::fs::read(&env).unwrap(), bytes, "same bytes");
    assert_eq!(
        stamp(&env),
        before,
        "the file was not rewritten (same inode and mtime)"
    );
    assert_eq!(
        posts(),
        1,
        "the settings were already right: no second POST"
    );
    assert_eq!(o2.passcode(), PASSCODE, "the passcode was not rotated");
}

#[tokio::test]
async fn settings_already_right_are_left_alone() {
    let o2 = FakeObs::start().await; // defaults: trace_id / span_id
    let dir = TempDir::new();
    let report = setup_obs::run(options(&o2.url(), dir.0.join("e")), &Recorder::new())
        .await
        .unwrap();
    assert_eq!(report.settings, Change::Unchanged);
    assert_eq!(report.env_file, Change::Changed);
    assert!(o2.api_requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn an_existing_env_file_keeps_its_other_lines_and_gets_mode_0600() {
    let o2 = FakeObs::start().await;
    let dir = TempDir::new();
    let env = dir.write(
        "stack.env",
        "# stack settings\nFOO=1\nOPENOBSERVE_AUTH=Basic stale\nBAR=2\n",
    );
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    setup_obs::run(options(&o2.url(), env.clone()), &Recorder::new())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        format!(
            "# stack settings\nFOO=1\nOPENOBSERVE_AUTH={}\nBAR=2\nOPENOBSERVE_ORG=default\n",
            ingest_header()
        )
    );
    assert_eq!(mode(&env), 0o600);
}

#[tokio::test]
async fn waits_for_a_late_start() {
    let o2 = FakeObs::start().await;
    // First connections are dropped (still starting), then /healthz answers 503, then 200.
    o2.down_for(Down::Close, Duration::from_millis(700));
    o2.down_for(Down::Unavailable, Duration::from_millis(700));
    let dir = TempDir::new();
    let rec = Recorder::new();
    let started = Instant::now();
    let report = setup_obs::run(options(&o2.url(), dir.0.join("e")), &rec)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(report.env_file, Change::Changed);
    let retries: Vec<String> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Retrying { step, cause, .. } if step.starts_with("waiting for OpenObserve") => {
                Some(cause)
            }
            _ => None,
        })
        .collect();
    assert!(
        retries.iter().any(|c| c.contains("503")),
        "a 503 was retried: {retries:?}"
    );
    assert!(
        retries.iter().any(|c| !c.contains("503")),
        "a dropped connection was retried: {retries:?}"
    );
    // No API call before the server was healthy.
    let reqs = o2.requests();
    let first_api = reqs
        .iter()
        .position(|r| r.path.starts_with("/api/"))
        .unwrap();
    assert!(
        reqs[..first_api].iter().all(|r| r.path == "/healthz"),
        "{reqs:?}"
    );
}

#[tokio::test]
async fn never_healthy_explains_the_strong_password_rule() {
    let dir = TempDir::new();
    let url = format!("http://{}", refused_addr());
    let mut opts = options(&url, dir.0.join("e"));
    opts.wait = Duration::from_secs(2);
    opts.password = "secret".to_owned();
    let started = Instant::now();
    let err = setup_obs::run(opts, &Recorder::new()).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert!(matches!(err, SetupObsError::NeverHealthy { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in [
        "did not become healthy within 2 s",
        "v0.91",
        "ZO_ROOT_USER_PASSWORD is too weak",
        "8 to 128 characters",
        "lacks",
        "an upper-case letter",
    ] {
        assert!(msg.contains(needle), "{needle:?} in {msg}");
    }
    assert!(!msg.contains("secret"), "{msg}");
    assert!(!dir.0.join("e").exists());

    // A server that answers but never gets healthy, with a strong password: the rule is
    // explained without claiming the password breaks it.
    let o2 = FakeObs::start().await;
    o2.never_up(Down::Unavailable);
    let mut opts = options(&o2.url(), dir.0.join("e"));
    opts.wait = Duration::from_secs(1);
    let msg = setup_obs::run(opts, &Recorder::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("503"), "{msg}");
    assert!(msg.contains("ZO_ROOT_USER_PASSWORD"), "{msg}");
    assert!(!msg.contains("lacks"), "{msg}");
}

#[tokio::test]
async fn wrong_credentials_are_a_401_naming_the_user() {
    let o2 = FakeObs::start().await;
    let dir = TempDir::new();
    let mut opts = options(&o2.url(), dir.0.join("e"));
    opts.password = "Wr0ng-Passw0rd!".to_owned();
    let err = setup_obs::run(opts, &Recorder::new()).await.unwrap_err();
    assert!(
        matches!(err, SetupObsError::WrongCredentials { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(ROOT_EMAIL) && msg.contains("wrong email or password"),
        "{msg}"
    );
    assert!(!msg.contains("Wr0ng-Passw0rd!"), "{msg}");
    assert!(!dir.0.join("e").exists(), "nothing written");
    assert_eq!(o2.api_requests().len(), 1, "a 401 is not retried");
}

#[tokio::test]
async fn an_unknown_org_is_reported() {
    let o2 = FakeObs::start().await;
    let dir = TempDir::new();
    let mut opts = options(&o2.url(), dir.0.join("e"));
    opts.org = "nosuch".to_owned();
    let err = setup_obs::run(opts, &Recorder::new()).await.unwrap_err();
    assert!(matches!(err, SetupObsError::OrgNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("organization nosuch not found"), "{msg}");
    assert!(
        msg.contains("Organization not found") && msg.contains("--org"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_server_without_the_trace_settings_says_no_valid_field_found() {
    let o2 = FakeObs::start().await;
    o2.set_legacy();
    let dir = TempDir::new();
    let err = setup_obs::run(options(&o2.url(), dir.0.join("e")), &Recorder::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SetupObsError::Refused { status: 400, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("POST /api/default/settings"), "{msg}");
    assert!(
        msg.contains("No valid field found") && msg.contains("v0.13"),
        "{msg}"
    );
    assert!(!dir.0.join("e").exists());
}

#[tokio::test]
async fn server_errors_are_retried_until_they_stop() {
    let o2 = FakeObs::start().await;
    o2.set_settings("default", json!({"trace_id_field_name": "traceId"}));
    o2.fail_next(&[503, 500, 502]);
    let dir = TempDir::new();
    let rec = Recorder::new();
    let report = setup_obs::run(options(&o2.url(), dir.0.join("e")), &rec)
        .await
        .unwrap();
    assert_eq!(report.settings, Change::Changed);
    let retried = rec
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Retrying { cause, .. } if cause.contains("answered 50")))
        .count();
    assert_eq!(retried, 3, "{:?}", rec.events());
}

#[tokio::test]
async fn server_errors_until_the_deadline_fail_with_the_status() {
    let o2 = FakeObs::start().await;
    o2.fail_next(&[500; 10_000]);
    let dir = TempDir::new();
    let mut opts = options(&o2.url(), dir.0.join("e"));
    opts.wait = Duration::from_secs(2);
    let started = Instant::now();
    let err = setup_obs::run(opts, &Recorder::new()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(matches!(err, SetupObsError::Unavailable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("GET /api/default/settings answered 500"),
        "{msg}"
    );
    assert!(!dir.0.join("e").exists());
}

const COLLECTOR: &str = "\
# Collector config of a host that cannot read env vars. Comments stay.
receivers:
  otlp:
    protocols:
      http: {endpoint: 0.0.0.0:4318}
processors:
  batch: {}   # defaults
exporters:
  otlphttp/openobserve:
    # points at the stand-in
    endpoint: http://OBS/api/default
    headers:
      stream-name: default
      Authorization: \"Basic c3RhbGU=\"   # set by gwctl setup obs
  otlphttp/other:
    endpoint: http://127.0.0.2:9/api/default
    headers:
      Authorization: \"Basic dW50b3VjaGVk\"
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlphttp/openobserve, otlphttp/other]
";

#[tokio::test]
async fn collector_config_gets_the_header_and_keeps_everything_else() {
    let o2 = FakeObs::start().await;
    let dir = TempDir::new();
    let original = COLLECTOR.replace("OBS", &o2.addr().to_string());
    let cfg = dir.write("otelcol.yaml", &original);
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut opts = options(&o2.url(), dir.0.join("e"));
    opts.collector_config = Some(cfg.clone());
    let report = setup_obs::run(opts.clone(), &Recorder::new())
        .await
        .unwrap();
    assert_eq!(
        report.collector,
        Some((vec!["otlphttp/openobserve".to_owned()], Change::Changed))
    );
    let want = original.replace(
        "Authorization: \"Basic c3RhbGU=\"   # set by",
        &format!("Authorization: \"{}\"   # set by", ingest_header()),
    );
    assert_ne!(want, original);
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        want,
        "byte for byte"
    );
    assert_eq!(
        mode(&cfg),
        0o640,
        "its mode is kept (the collector must read it)"
    );

    let before = stamp(&cfg);
    let again = setup_obs::run(opts, &Recorder::new()).await.unwrap();
    assert!(again.is_unchanged(), "{again:?}");
    assert_eq!(stamp(&cfg), before, "not rewritten");
}

#[tokio::test]
async fn a_collector_config_without_an_openobserve_exporter_fails_before_any_call() {
    let o2 = FakeObs::start().await;
    let dir = TempDir::new();
    let cfg = dir.write("otelcol.yaml", &COLLECTOR.replace("OBS", "elsewhere:5080"));
    let mut opts = options(&o2.url(), dir.0.join("e"));
    opts.collector_config = Some(cfg.clone());
    let err = setup_obs::run(opts, &Recorder::new()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no exporter points at"), "{msg}");
    assert!(
        msg.contains("otlphttp/openobserve -> http://elsewhere:5080/api/default"),
        "{msg}"
    );
    assert!(
        o2.requests().is_empty(),
        "failed before contacting OpenObserve"
    );
    assert!(!dir.0.join("e").exists());
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        COLLECTOR.replace("OBS", "elsewhere:5080")
    );
}

async fn gwctl(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"));
    cmd.args(args)
        .env_remove("OPENOBSERVE_URL")
        .env_remove("OPENOBSERVE_USER")
        .env_remove("OPENOBSERVE_PASSWORD")
        .env_remove("OPENOBSERVE_ORG")
        .env("GWCTL_LOG", "debug")
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("gwctl finishes within 60 s")
        .expect("run gwctl")
}

/// No secret in stdout or stderr: not the password, not the passcode, not either Basic pair.
fn assert_no_secret(o: &Output, extra: &[&str]) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let secrets = [
        ROOT_PASSWORD.to_owned(),
        PASSCODE.to_owned(),
        b64(&format!("{ROOT_EMAIL}:{PASSCODE}")),
        b64(&format!("{ROOT_EMAIL}:{ROOT_PASSWORD}")),
    ];
    for s in secrets
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        assert!(!all.contains(s), "a secret was printed: {all}");
    }
}

#[tokio::test]
async fn the_binary_never_prints_a_secret() {
    let o2 = FakeObs::start().await;
    o2.set_settings("default", json!({"trace_id_field_name": "traceId"}));
    let dir = TempDir::new();
    let env = dir.0.join("o2.env");
    let cfg = dir.write(
        "otelcol.yaml",
        &COLLECTOR.replace("OBS", &o2.addr().to_string()),
    );
    let env_s = env.to_str().unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let url = o2.url();

    // Success, the password from the environment (as compose passes it).
    let ok = gwctl(
        &[
            "setup",
            "obs",
            "--url",
            &url,
            "--user",
            ROOT_EMAIL,
            "--env-file",
            env_s,
            "--collector-config",
            cfg_s,
        ],
        &[("OPENOBSERVE_PASSWORD", ROOT_PASSWORD)],
    )
    .await;
    let out = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains(&format!("env file {env_s}: updated")), "{out}");
    assert!(
        out.contains("(exporters otlphttp/openobserve): updated"),
        "{out}"
    );
    assert_no_secret(&ok, &[]);
    assert!(
        std::fs::read_to_string(&env)
            .unwrap()
            .contains(&ingest_header())
    );

    // Again: nothing to do.
    let again = gwctl(
        &[
            "setup",
            "obs",
            "--url",
            &url,
            "--user",
            ROOT_EMAIL,
            "--password",
            ROOT_PASSWORD,
            "--env-file",
            env_s,
            "--collector-config",
            cfg_s,
        ],
        &[],
    )
    .await;
    let out = String::from_utf8_lossy(&again.stdout).into_owned();
    assert_eq!(again.status.code(), Some(0), "{out}");
    assert!(out.contains("nothing to do"), "{out}");
    assert_no_secret(&again, &[]);

    // Wrong credentials: exit 1, the user named, the (wrong) password not.
    let wrong = gwctl(
        &[
            "setup",
            "obs",
            "--url",
            &url,
            "--user",
            ROOT_EMAIL,
            "--password",
            "An0ther-Secret!",
            "--env-file",
            env_s,
        ],
        &[],
    )
    .await;
    let err = String::from_utf8_lossy(&wrong.stderr).into_owned();
    assert_eq!(wrong.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(ROOT_EMAIL) && err.contains("wrong email or password"),
        "{err}"
    );
    assert_no_secret(&wrong, &["An0ther-Secret!"]);

    // Never healthy: exit 1 with the strong-password explanation.
    let dead = format!("http://{}", refused_addr());
    let down = gwctl(
        &[
            "setup",
            "obs",
            "--url",
            &dead,
            "--user",
            ROOT_EMAIL,
            "--password",
            ROOT_PASSWORD,
            "--env-file",
            env_s,
            "--wait",
            "1",
        ],
        &[],
    )
    .await;
    let err = String::from_utf8_lossy(&down.stderr).into_owned();
    assert_eq!(down.status.code(), Some(1), "{err}");
    assert!(err.contains("ZO_ROOT_USER_PASSWORD"), "{err}");
    assert_no_secret(&down, &[]);

    // A URL with credentials in it is refused without echoing them.
    let bad = gwctl(
        &[
            "setup",
            "obs",
            "--url",
            "http://root:Url-Secret9!@127.0.0.1:9",
            "--user",
            ROOT_EMAIL,
            "--password",
            ROOT_PASSWORD,
            "--env-file",
            env_s,
        ],
        &[],
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert_no_secret(&bad, &["Url-Secret9!"]);
}

/// The stack's collector config (openobserve-otel.md §2, §4 point 3): OTLP in on 0.0.0.0, batch,
/// the OpenObserve exporter reading exactly what `setup obs` writes into the env file.
#[test]
fn the_compose_collector_config_reads_the_env_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/compose/otel-collector.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let s = |v: &serde_yaml::Value| v.as_str().unwrap_or_else(|| panic!("{v:?}")).to_owned();
    let protocols = &doc["receivers"]["otlp"]["protocols"];
    assert_eq!(s(&protocols["grpc"]["endpoint"]), "0.0.0.0:4317");
    assert_eq!(s(&protocols["http"]["endpoint"]), "0.0.0.0:4318");
    assert!(doc["processors"].get("batch").is_some());
    let exporter = &doc["exporters"]["otlphttp/openobserve"];
    let endpoint = s(&exporter["endpoint"]);
    assert_eq!(
        endpoint,
        "http://openobserve:5080/api/${env:OPENOBSERVE_ORG}"
    );
    assert!(
        !endpoint.ends_with('/'),
        "a trailing slash makes //v1/logs (404)"
    );
    assert_eq!(
        s(&exporter["headers"]["Authorization"]),
        "${env:OPENOBSERVE_AUTH}"
    );
    for pipeline in ["traces", "logs"] {
        let p = &doc["service"]["pipelines"][pipeline];
        let list = |k: &str| -> Vec<String> {
            p[k].as_sequence()
                .unwrap_or_else(|| panic!("{pipeline}.{k}"))
                .iter()
                .map(s)
                .collect()
        };
        assert_eq!(list("receivers"), ["otlp"], "{pipeline}");
        assert_eq!(list("processors"), ["batch"], "{pipeline}");
        assert!(
            list("exporters").contains(&"otlphttp/openobserve".to_owned()),
            "{pipeline}"
        );
    }
    // The env references are exactly the env file's variables.
    let refs: std::collections::BTreeSet<&str> = text
        .match_indices("${env:")
        .map(|(i, _)| {
            let rest = &text[i + 6..];
            &rest[..rest.find(['}', ':']).unwrap()]
        })
        .collect();
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        [setup_obs::envfile::AUTH_VAR, setup_obs::envfile::ORG_VAR]
    );
    // And `--collector-config` would recognise its exporter as pointing at OpenObserve.
    let url = reqwest::Url::parse("http://openobserve:5080").unwrap();
    assert_eq!(
        setup_obs::collector::qualifying_exporters(&text, &url).unwrap(),
        ["otlphttp/openobserve"]
    );
}

/// On a terminal: each step is an indicatif spinner (a retry shows on its line), left as a
/// `✓ step` line; stdout has the results only and nothing shows a secret.
#[tokio::test]
async fn on_a_terminal_the_steps_are_a_spinner() {
    use crate::support::tty::run_on_tty;
    let o2 = FakeObs::start().await;
    o2.down_for(Down::Unavailable, Duration::from_millis(800));
    let dir = TempDir::new();
    let env = dir.0.join("o2.env");
    let cfg = dir.write(
        "otelcol.yaml",
        &COLLECTOR.replace("OBS", &o2.addr().to_string()),
    );
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"));
    cmd.args(["setup", "obs", "--url", &o2.url(), "--user", ROOT_EMAIL])
        .args(["--env-file", env.to_str().unwrap()])
        .args(["--collector-config", cfg.to_str().unwrap()])
        .env("OPENOBSERVE_PASSWORD", ROOT_PASSWORD)
        .env_remove("OPENOBSERVE_URL")
        .env_remove("OPENOBSERVE_USER")
        .env_remove("OPENOBSERVE_ORG")
        .env_remove("GWCTL_LOG");
    let o = run_on_tty(cmd, Duration::from_secs(60)).await;
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.terminal);
    assert!(
        !o.stdout.lines().any(|l| l.contains("started")),
        "no log line on stdout: {}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains(&format!("env file {}: updated", env.display())),
        "{}",
        o.stdout
    );
    assert!(o.redrew(), "{:?}", o.terminal);
    assert!(o.terminal.contains("(attempt 1: "), "{:?}", o.terminal);
    let screen = o.screen_lines();
    assert_eq!(
        screen,
        vec![
            format!("✓ waiting for OpenObserve at {}/", o2.url()),
            // The stand-in's settings are already right: skipped.
            "- org default settings trace_id/span_id field names".to_owned(),
            format!("✓ reading the ingestion passcode of {ROOT_EMAIL}"),
            format!("✓ writing {}", env.display()),
            format!("✓ setting the Authorization header in {}", cfg.display()),
        ],
        "{:?}",
        o.terminal
    );
    for secret in [ROOT_PASSWORD, PASSCODE] {
        assert!(!o.terminal.contains(secret) && !o.stdout.contains(secret));
    }
    assert!(!o.terminal.contains(&ingest_header()));
}
