//! `gwctl migrate up|status`: the real binary against a fresh database per test (CONTRACT.md
//! "gwctl migrate"): applies and reports, is idempotent and safe to run twice at once, refuses a
//! database migrated by a newer gwctl, waits for Postgres within a bound, never prints the
//! password.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use gwctl::ops::migrate::{embedded, latest_version};
use sqlx::Connection;

use crate::support::pg::{self, PrivateCluster};
use crate::support::refused_addr;

/// The binary with a clean environment; JSON logs (stdout is not a terminal anyway).
fn gwctl(args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"));
    c.args(args)
        .env_remove("GWCTL_DATABASE_URL")
        .env("GWCTL_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn finish(child: tokio::process::Child) -> Output {
    tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("gwctl migrate finishes within 90 s")
        .expect("wait for gwctl")
}

async fn migrate(args: &[&str]) -> Output {
    finish(gwctl(args).spawn().expect("spawn gwctl")).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether stdout has exactly this line (log lines are interleaved on stdout too).
fn has_line(o: &Output, line: &str) -> bool {
    stdout(o).lines().any(|l| l == line)
}

fn up_to_date() -> String {
    format!("database is up to date (version {})", latest_version())
}

async fn connect(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url).await.expect("connect")
}

async fn table_exists(url: &str, table: &str) -> bool {
    let mut conn = connect(url).await;
    sqlx::query_scalar(&format!("SELECT to_regclass('{table}') IS NOT NULL"))
        .fetch_one(&mut conn)
        .await
        .expect("to_regclass")
}

async fn history_rows(url: &str) -> i64 {
    let mut conn = connect(url).await;
    sqlx::query_scalar("SELECT count(*) FROM refinery_schema_history")
        .fetch_one(&mut conn)
        .await
        .expect("count history")
}

async fn exec(url: &str, sql: &str) {
    let mut conn = connect(url).await;
    sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
}

macro_rules! fresh_db_or_skip {
    ($test:literal) => {
        match pg::fresh_database().await {
            Some(url) => url,
            None => {
                pg::skip_note($test);
                return;
            }
        }
    };
}

#[tokio::test]
async fn status_then_up_then_up_again() {
    let url = fresh_db_or_skip!("status_then_up_then_up_again");

    let o = migrate(&["migrate", "status", "--database-url", &url]).await;
    assert_eq!(
        o.status.code(),
        Some(3),
        "pending -> 3: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(has_line(&o, "pending V1 init"), "{}", stdout(&o));
    assert!(
        !table_exists(&url, "refinery_schema_history").await,
        "status changes nothing"
    );

    let o = migrate(&["migrate", "up", "--database-url", &url]).await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    for m in embedded() {
        assert!(has_line(&o, &format!("applied {m}")), "{m}: {}", stdout(&o));
    }
    assert!(has_line(&o, "applied V1__init"), "{}", stdout(&o));
    assert!(table_exists(&url, "services").await);
    assert!(table_exists(&url, "gwctl_changes").await);

    // The action defaults to `up`; the URL may come from the environment.
    let o = finish(
        gwctl(&["migrate"])
            .env("GWCTL_DATABASE_URL", &url)
            .spawn()
            .expect("spawn"),
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(has_line(&o, &up_to_date()), "{}", stdout(&o));
    assert!(
        !stdout(&o).lines().any(|l| l.starts_with("applied ")),
        "{}",
        stdout(&o)
    );

    let o = migrate(&["migrate", "status", "--database-url", &url]).await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(has_line(&o, "applied V1 init"), "{}", stdout(&o));
    assert!(
        !stdout(&o).lines().any(|l| l.starts_with("pending ")),
        "{}",
        stdout(&o)
    );
    assert_eq!(history_rows(&url).await, embedded().len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_ups_apply_once() {
    let url = fresh_db_or_skip!("two_concurrent_ups_apply_once");
    let args = ["migrate", "up", "--database-url", &url];
    let a = gwctl(&args).spawn().expect("spawn a");
    let b = gwctl(&args).spawn().expect("spawn b");
    let (a, b) = tokio::join!(finish(a), finish(b));
    for o in [&a, &b] {
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(o), stderr(o));
    }
    let appliers = [&a, &b]
        .iter()
        .filter(|o| has_line(o, "applied V1__init"))
        .count();
    assert_eq!(appliers, 1, "a: {}\nb: {}", stdout(&a), stdout(&b));
    let idle = [&a, &b]
        .iter()
        .filter(|o| has_line(o, &up_to_date()))
        .count();
    assert_eq!(idle, 1, "a: {}\nb: {}", stdout(&a), stdout(&b));
    assert_eq!(history_rows(&url).await, embedded().len() as i64);
    assert!(table_exists(&url, "services").await);
}

#[tokio::test]
async fn a_database_from_a_newer_gwctl_is_refused_before_anything_is_applied() {
    let url = fresh_db_or_skip!("a_database_from_a_newer_gwctl_is_refused");
    // refinery's table as refinery creates it, holding only a migration from the future.
    exec(
        &url,
        "CREATE TABLE refinery_schema_history (version INT4 PRIMARY KEY, name VARCHAR(255), \
         applied_on VARCHAR(255), checksum VARCHAR(255)); \
         INSERT INTO refinery_schema_history VALUES \
         (9999, 'future', '2030-01-01T00:00:00Z', '42')",
    )
    .await;
    let expected = format!(
        "error: the database was migrated by a newer gwctl (version 9999 applied; this gwctl knows up to {})",
        latest_version()
    );
    for action in ["up", "status"] {
        let o = migrate(&["migrate", action, "--database-url", &url]).await;
        assert_eq!(
            o.status.code(),
            Some(1),
            "{action}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert_eq!(
            stderr(&o).lines().next(),
            Some(expected.as_str()),
            "{action}"
        );
    }
    assert!(!table_exists(&url, "services").await, "nothing was applied");
    assert_eq!(history_rows(&url).await, 1);
}

#[tokio::test]
async fn a_newer_row_after_a_normal_migration_is_refused() {
    let url = fresh_db_or_skip!("a_newer_row_after_a_normal_migration_is_refused");
    let o = migrate(&["migrate", "up", "--database-url", &url]).await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let next = latest_version() + 1;
    exec(
        &url,
        &format!(
            "INSERT INTO refinery_schema_history VALUES \
             ({next}, 'next', '2030-01-01T00:00:00Z', '42')"
        ),
    )
    .await;
    let expected = format!(
        "error: the database was migrated by a newer gwctl (version {next} applied; this gwctl knows up to {})",
        latest_version()
    );
    for action in ["up", "status"] {
        let o = migrate(&["migrate", action, "--database-url", &url]).await;
        assert_eq!(
            o.status.code(),
            Some(1),
            "{action}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert_eq!(
            stderr(&o).lines().next(),
            Some(expected.as_str()),
            "{action}"
        );
    }
}

#[tokio::test]
async fn a_changed_migration_is_refused() {
    let url = fresh_db_or_skip!("a_changed_migration_is_refused");
    let o = migrate(&["migrate", "up", "--database-url", &url]).await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    exec(
        &url,
        "UPDATE refinery_schema_history SET checksum = '42' WHERE version = 1",
    )
    .await;
    for action in ["up", "status"] {
        let o = migrate(&["migrate", action, "--database-url", &url]).await;
        assert_eq!(
            o.status.code(),
            Some(1),
            "{action}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(
            stderr(&o).starts_with("error: the database was migrated by a newer gwctl ("),
            "{action}: {}",
            stderr(&o)
        );
    }
}

#[tokio::test]
async fn an_unreachable_database_fails_in_bounded_time_without_the_password() {
    let addr = refused_addr();
    let url = format!("postgres://gwuser:s3cr3t-pw@{addr}/gw");
    let started = Instant::now();
    let o = migrate(&["migrate", "up", "--database-url", &url, "--wait", "1"]).await;
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("error: database not reachable at {addr}: ")),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "it waited about 1 s: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "bounded: {took:?}");
    for text in [stdout(&o), err] {
        assert!(!text.contains("s3cr3t-pw"), "password printed: {text}");
    }
}

#[tokio::test]
async fn a_missing_url_is_an_error() {
    let o = migrate(&["migrate", "status"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: --database-url (or GWCTL_DATABASE_URL) is required\n"
    );
}

/// `up` started while Postgres is down waits for it, then migrates.
#[tokio::test]
async fn up_waits_for_postgres_to_come_up() {
    if pg::admin_url().is_none() {
        pg::skip_note("up_waits_for_postgres_to_come_up");
        return;
    }
    let mut cluster = PrivateCluster::start();
    cluster.stop();
    let url = cluster.url();
    let child = gwctl(&["migrate", "up", "--database-url", &url, "--wait", "60"])
        .spawn()
        .expect("spawn");
    cluster.start_again();
    let o = finish(child).await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(has_line(&o, "applied V1__init"), "{}", stdout(&o));
    assert!(table_exists(&url, "services").await);
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        pg::with_database("postgres://u@127.0.0.1:5/postgres?sslmode=disable", "x"),
        "postgres://u@127.0.0.1:5/x?sslmode=disable"
    );
    assert_eq!(
        pg::with_database("postgres://u@h:5", "x"),
        "postgres://u@h:5/x"
    );
}

/// On a terminal: an indicatif spinner per step on stderr, left as `✓ step` lines, and no log
/// line on stdout; a wait that gives up is left as a `✗` line with the error under it.
#[tokio::test]
async fn on_a_terminal_the_steps_are_a_spinner() {
    use crate::support::tty::run_on_tty;
    let url = fresh_db_or_skip!("on_a_terminal_the_steps_are_a_spinner");
    let o = run_on_tty(
        gwctl(&["migrate", "up", "--database-url", &url]),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.terminal);
    let applied: Vec<String> = embedded().iter().map(|m| format!("applied {m}")).collect();
    assert_eq!(
        o.stdout.lines().collect::<Vec<_>>(),
        applied,
        "only the results"
    );
    assert!(o.redrew(), "{:?}", o.terminal);
    let screen = o.screen_lines();
    assert!(
        screen[0].starts_with("✓ waiting for postgres at 127.0.0.1:"),
        "{screen:?}"
    );
    let steps: Vec<String> = embedded()
        .iter()
        .map(|m| format!("✓ applying {m}"))
        .collect();
    assert_eq!(screen[1..], steps[..], "{screen:?}");

    let addr = refused_addr();
    let url = format!("postgres://gwuser:s3cr3t-pw@{addr}/gw");
    let o = run_on_tty(
        gwctl(&["migrate", "up", "--database-url", &url, "--wait", "2"]),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(o.code, Some(1), "{}{}", o.stdout, o.terminal);
    assert_eq!(o.stdout, "", "no log line on stdout");
    let screen = o.screen_lines();
    assert_eq!(
        screen[0],
        format!("✗ waiting for postgres at {addr}"),
        "{screen:?}"
    );
    assert!(
        screen[1].starts_with(&format!("error: database not reachable at {addr}: ")),
        "{screen:?}"
    );
    assert!(
        o.terminal.contains("(attempt 1: "),
        "retries are shown on the spinner line: {:?}",
        o.terminal
    );
    assert!(!o.terminal.contains("s3cr3t-pw"), "password shown");
}
