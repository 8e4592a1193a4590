//! Postgres for tests: a fresh database per test on the cluster tests/run.sh started
//! (`GWCTL_TEST_DATABASE_URL`), and [`PrivateCluster`], a cluster of the test's own that it can
//! stop and start again (for "Postgres went away" tests).

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sqlx::Connection;

/// The superuser URL tests/run.sh exports, if any.
pub fn admin_url() -> Option<String> {
    std::env::var("GWCTL_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A new, empty database `gwctl_t_<random>` on the test cluster, as a URL; `None` when
/// `GWCTL_TEST_DATABASE_URL` is unset (the caller prints a skip note). The database is left for
/// the cluster's removal at the end of the run.
pub async fn fresh_database() -> Option<String> {
    let admin = admin_url()?;
    let name = format!("gwctl_t_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("connect to GWCTL_TEST_DATABASE_URL: {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    conn.close().await.ok();
    Some(with_database(&admin, &name))
}

/// Apply the migrations to `url` with the real binary, as an operator would.
pub async fn migrate(url: &str) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .args(["migrate", "up", "--database-url", url, "--wait", "20"])
        .output()
        .await
        .expect("run gwctl migrate");
    assert!(
        out.status.success(),
        "migrate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh database with the migrations applied, or `None` without a test cluster.
pub async fn migrated_database() -> Option<String> {
    let url = fresh_database().await?;
    migrate(&url).await;
    Some(url)
}

/// Print the note a test leaves when there is no Postgres to test against.
pub fn skip_note(test: &str) {
    eprintln!(
        "skipped {test}: GWCTL_TEST_DATABASE_URL is not set (run the tests with tests/run.sh)"
    );
}

/// `url` with its database (the path) replaced by `db`, query kept.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => url.split_at(q),
        None => (url, ""),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{db}{query}", &base[..path_start])
}

/// A Postgres cluster of the test's own, on a free loopback port, with `fsync=off`. Stopped and
/// removed on drop.
pub struct PrivateCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl PrivateCluster {
    /// `initdb` in a temporary directory and `pg_ctl start` on a free port. Binaries come from
    /// `GWCTL_TEST_PG_BIN` (else /usr/lib/postgresql/15/bin); as root they run as `postgres`.
    pub fn start() -> PrivateCluster {
        let bin = std::env::var_os("GWCTL_TEST_PG_BIN").map_or_else(
            || PathBuf::from("/usr/lib/postgresql/15/bin"),
            PathBuf::from,
        );
        assert!(
            bin.join("initdb").exists(),
            "no initdb in {} (set GWCTL_TEST_PG_BIN)",
            bin.display()
        );
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let dir = std::env::temp_dir().join(format!(
            "gwctl-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("create cluster dir");
        if as_postgres {
            // initdb refuses to run as root; the postgres user must own (and reach) the dir.
            run(Command::new("chown").arg("postgres:postgres").arg(&dir));
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod cluster dir");
        }
        let mut cluster = PrivateCluster {
            dir,
            bin,
            port: 0,
            as_postgres,
            running: false,
        };
        let mut initdb = cluster.command("initdb");
        initdb.arg("-D").arg(cluster.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(&mut initdb);
        // The port may be taken between choosing and binding: try a few.
        for attempt in 1..=3 {
            cluster.port = free_port();
            if cluster.pg_ctl_start() {
                return cluster;
            }
            eprintln!(
                "private postgres did not start on port {} (attempt {attempt})",
                cluster.port
            );
        }
        panic!("private postgres did not start: {}", cluster.log());
    }

    /// Superuser URL of the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on (kept across [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop it (`pg_ctl -m fast`): clients are disconnected, the data stays.
    pub fn stop(&mut self) {
        if self.running {
            let mut stop = self.command("pg_ctl");
            stop.arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "-t", "30", "stop"]);
            run(&mut stop);
            self.running = false;
        }
    }

    /// Start it again after [`stop`](Self::stop): same port, same data.
    pub fn start_again(&mut self) {
        if self.running {
            return;
        }
        // Someone may have grabbed the port meanwhile; it is usually released quickly.
        for _ in 0..20 {
            if self.pg_ctl_start() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "private postgres did not start again on port {}: {}",
            self.port,
            self.log()
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn pg_ctl_start(&mut self) -> bool {
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "30", "start", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.display()
            ));
        let ok = start.output().is_ok_and(|o| o.status.success());
        self.running = ok;
        ok
    }

    /// `bin/program`, run as the postgres user when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.running {
            let mut stop = self.command("pg_ctl");
            stop.arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"]);
            let _ = stop.output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
