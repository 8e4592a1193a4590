use std::process::Output;

use crate::support::{Echo, Gateway, TempDir, refused_addr};

async fn gwctl(args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args(args)
        .env_remove("GWCTL_STATUS_URL")
        .env_remove("GWCTL_CONFIG")
        .env_remove("GWCTL_DATABASE_URL")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(std::time::Duration::from_secs(20), out)
        .await
        .expect("gwctl finishes within 20 s")
        .expect("run gwctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn version() {
    let o = gwctl(&["--version"]).await;
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "gwctl 0.1.0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exit_codes() {
    let echo = Echo::start("e").await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - url: {}\n    routes:\n      - paths: [\"/\"]\n",
        echo.url()
    );
    let gw = Gateway::start(&yaml).await;
    let o = gwctl(&["health", "--status-url", &gw.status_url()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let dead = format!("http://{}", refused_addr());
    let o = gwctl(&["health", "--status-url", &dead]).await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(&dead), "the reason names the URL: {err}");
}

#[tokio::test]
async fn serve_with_a_bad_config_exits_1_naming_the_field() {
    let dir = TempDir::new();
    let bad = dir.write(
        "bad.yml",
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:9\n    read_timeout: 0\n",
    );
    let o = gwctl(&[
        "serve",
        "--config",
        bad.to_str().expect("utf-8 path"),
        "--proxy-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "off",
        "--status-listen",
        "off",
    ])
    .await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("read_timeout"), "{err}");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    for args in [&["frobnicate"][..], &["serve", "--no-such-flag"], &[]] {
        let o = gwctl(args).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

/// CONTRACT: with `--log-format json` the listening line carries `proxy`, `admin`, `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_listening_line_has_the_bound_addresses() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = TempDir::new();
    let cfg = dir.write("kong.yml", "_format_version: \"3.0\"\n");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&cfg)
        .args([
            "--proxy-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--status-listen",
            "127.0.0.1:0",
            "--workers",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("listening") && l.contains("\"proxy\"") {
                return Some(l);
            }
        }
        None
    })
    .await
    .expect("listening line within 20 s")
    .expect("listening line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
    let proxy: std::net::SocketAddr = v["proxy"].as_str().expect("proxy").parse().expect("addr");
    assert_ne!(proxy.port(), 0);
    assert_eq!(v["admin"], "off");
    let status = v["status"].as_str().expect("status").to_owned();
    let o = gwctl(&["health", "--status-url", &format!("http://{status}")]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    child.kill().await.expect("kill");
}
