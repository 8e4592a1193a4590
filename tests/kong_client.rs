//! A real third-party Kong Admin API client against `gwctl serve`: aio-kong (PyPI) drives
//! `tests/clients/kong_client_crud.py`, which creates, reads, updates and deletes every entity
//! kind and pages through more than 100 consumers. Needs `GWCTL_TEST_KONG_CLIENT_PYTHON`, the
//! venv python of `tests/run.sh`'s `kongclient` component.

use std::process::Stdio;
use std::time::Duration;

use crate::support::pg::{migrated_database, skip_note};
use crate::support::{Gateway, TempDir, component};

/// The whole script takes about a second; a debug build on a busy machine gets much more.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aio_kong_crud_on_every_entity_kind() {
    run_script(None).await;
}

/// The same script against a node in Postgres mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aio_kong_crud_on_every_entity_kind_postgres() {
    let Some(url) = migrated_database().await else {
        skip_note("aio_kong_crud_on_every_entity_kind_postgres");
        return;
    };
    run_script(Some(url)).await;
}

async fn run_script(database_url: Option<String>) {
    let Some(python) = component("GWCTL_TEST_KONG_CLIENT_PYTHON", "kongclient") else {
        return;
    };
    let gw = Gateway::start_with("_format_version: \"3.0\"\n", |o| {
        o.admin_listen = "127.0.0.1:0".into();
        if database_url.is_some() {
            o.config = None;
            o.database_url = database_url;
        }
    })
    .await;
    let admin = gw.bound.admin.expect("admin listener");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/kong_client_crud.py"
    );

    // Output goes to files so that it can be shown even when the script hangs and is killed.
    let dir = TempDir::new();
    let out_path = dir.0.join("stdout");
    let err_path = dir.0.join("stderr");
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .arg(format!("http://{admin}"))
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("KONG_ADMIN_URL")
        .env_remove("KONG_URL")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (GWCTL_TEST_KONG_CLIENT_PYTHON): {e}"));
    let status = match tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await {
        Ok(status) => Some(status.expect("wait for the script")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let report = format!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
    let Some(status) = status else {
        panic!("kong_client_crud.py did not finish within {SCRIPT_TIMEOUT:?} (killed)\n{report}");
    };
    assert!(
        status.success(),
        "kong_client_crud.py failed ({status})\n{report}"
    );
    assert!(
        stdout.contains("all steps passed"),
        "kong_client_crud.py exited 0 without finishing\n{report}"
    );
    gw.stop().await;
}
